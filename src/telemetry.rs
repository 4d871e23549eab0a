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

/// The progress bar on screen, if any: log lines are printed above it instead of through it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// `level` applies to qbo itself; libraries stay at `warn` unless RUST_LOG says otherwise,
/// because their trace output is noise (and no place to risk a header).
pub fn init(format: LogFormat, level: &str) {
    let _ = FORMAT.set(format);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("warn,qbo={level}")));
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

/// stderr, stepping around the progress bar. tracing writes each event in one call.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        above_progress_bar(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
