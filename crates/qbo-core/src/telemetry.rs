//! Logging: human lines on a terminal, JSON for log shippers. Always to stderr, so stdout
//! carries only what a command produces (a report, a summary).

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use indicatif::ProgressBar;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, EnvFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Target of the INFO line each window logs as it finishes. While a progress bar is on screen
/// the bar says the same, and a line per window (366 with `--chunk-days 1`) would scroll it
/// away: those lines are then dropped unless the level is debug or finer (or RUST_LOG is set).
/// Warnings and errors, whatever their target, always print (above the bar).
pub const WINDOW_TARGET: &str = "qbo::window";

/// Whether per-window lines print under a progress bar (debug, trace or RUST_LOG).
static VERBOSE: OnceLock<bool> = OnceLock::new();

/// The progress bar on screen, if any: log lines are printed above it instead of through it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// `level` applies to qbo itself; libraries stay at `warn` unless RUST_LOG says otherwise,
/// because their trace output is noise (and no place to risk a header).
pub fn init(format: LogFormat, level: &str) {
    // `--log-level` takes any case (`DEBUG`); compare and filter on one spelling.
    let level = level.to_ascii_lowercase();
    let _ = FORMAT.set(format);
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok());
    let _ = VERBOSE.set(rust_log.is_some() || matches!(level.as_str(), "debug" | "trace"));
    let filter = rust_log.unwrap_or_else(|| EnvFilter::new(format!("warn,qbo={level}")));
    let builder = fmt().with_env_filter(filter).with_writer(Stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        // Colours only for a person at a terminal; files and log collectors get plain text.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// The format chosen at start-up (text if logging was never set up, as in library use).
fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or(LogFormat::Text)
}

/// A person is watching: stderr is a terminal and the logs are meant for reading.
pub fn is_interactive() -> bool {
    format() == LogFormat::Text && std::io::stderr().is_terminal()
}

/// Routes log lines around `bar` while it is shown; `None` when it is gone.
pub fn set_progress_bar(bar: Option<ProgressBar>) {
    *BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// Runs `f` (which prints to the terminal) with the progress bar, if any, out of the way.
pub fn above_progress_bar<T>(f: impl FnOnce() -> T) -> T {
    let bar = BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// Whether an event is a per-window line that the progress bar on screen stands for.
fn shown_by_the_bar(meta: &tracing::Metadata<'_>) -> bool {
    meta.target() == WINDOW_TARGET
        && *meta.level() >= tracing::Level::INFO
        && !VERBOSE.get().copied().unwrap_or(false)
        && BAR.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// stderr, stepping around the progress bar. tracing writes each event in one call.
struct Stderr;

/// Where one event goes: stderr, or nowhere (a per-window line under the bar).
enum EventWriter {
    Stderr,
    Dropped,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> Self::Writer {
        EventWriter::Stderr
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if shown_by_the_bar(meta) {
            EventWriter::Dropped
        } else {
            EventWriter::Stderr
        }
    }
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let EventWriter::Stderr = self {
            above_progress_bar(|| std::io::stderr().write_all(buf))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A log line that would repeat on every retry of something that keeps failing (a heartbeat
/// during a Postgres outage): let through once per `every`, process-wide, with how many
/// were held back since the last one.
pub struct RareLine {
    every: std::time::Duration,
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl RareLine {
    pub const fn new(every: std::time::Duration) -> Self {
        RareLine {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Some(lines held back since the last one) when this one should be logged.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.0 {
            Some(last) if now.duration_since(last) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

#[cfg(test)]
mod rare_line_tests {
    use super::RareLine;
    use std::time::Duration;

    #[test]
    fn lets_one_line_through_per_period_and_counts_the_rest() {
        let line = RareLine::new(Duration::from_secs(3600));
        assert_eq!(line.allow(), Some(0));
        assert_eq!(line.allow(), None);
        assert_eq!(line.allow(), None);
        let now = RareLine::new(Duration::ZERO);
        assert_eq!(now.allow(), Some(0));
        assert_eq!(now.allow(), Some(0));
    }
}
