//! Showing a run while it goes: a progress bar for a person at a terminal, a `progress` log
//! event every few seconds otherwise (plain text or JSON, whatever the logs are). For `all`,
//! whose entities run several at once, both count the whole invocation (windows and records
//! across entities) and say which entities are running.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backfill::{EntitiesSnapshot, ProgressSnapshot, RunProgress};
use crate::telemetry;

/// How a run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Bar,
    Lines(Duration),
    Off,
}

impl Display {
    /// A bar on a terminal (text logs); log events every `every` elsewhere; zero turns both off.
    pub fn choose(every: Duration) -> Display {
        if every.is_zero() {
            Display::Off
        } else if telemetry::is_interactive() {
            Display::Bar
        } else {
            Display::Lines(every)
        }
    }
}

/// Watches an invocation (one entity, or every entity of `all`) until `finish`.
pub struct Reporter {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn spawn(progress: Arc<RunProgress>, display: Display) -> Reporter {
        let (tx, rx) = oneshot::channel();
        let task = match display {
            Display::Off => None,
            Display::Bar => Some(tokio::spawn(show_bar(progress, rx))),
            Display::Lines(every) => Some(tokio::spawn(log_lines(progress, every, rx))),
        };
        Reporter {
            stop: Some(tx),
            task,
        }
    }

    /// Stops watching; the bar, if any, stays on screen in its final state.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Requests started in the last minute (so far, in a run younger than that): the number
/// QBO's 500-a-minute limit is about.
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    /// `elapsed` is the run's age: the run started with no requests.
    fn per_minute(&mut self, requests: u64, elapsed: Duration) -> u64 {
        let now = Instant::now();
        if self.samples.is_empty() {
            self.samples
                .push_back((now.checked_sub(elapsed).unwrap_or(now), 0));
        }
        self.samples.push_back((now, requests));
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.samples.pop_front();
        }
        let oldest = self.samples.front().map_or(0, |(_, r)| *r);
        requests.saturating_sub(oldest)
    }
}

async fn log_lines(progress: Arc<RunProgress>, every: Duration, mut stop: oneshot::Receiver<()>) {
    let mut rate = Rate::default();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let s = progress.snapshot();
        if s.entities.started == 0 {
            continue;
        }
        if let Some(entity) = s.entity {
            log_line(&s, &mut rate, entity, None);
        } else {
            log_line(&s, &mut rate, "all", Some(&s.entities));
        }
    }
}

/// One `progress` event. `entities`: of `all`, where its entities stand.
fn log_line(
    s: &ProgressSnapshot,
    rate: &mut Rate,
    entity: &str,
    entities: Option<&EntitiesSnapshot>,
) {
    let running = entities.map(|e| e.running.join(","));
    tracing::info!(
        entity,
        entities_done = entities.map(|e| e.finished),
        entities_total = entities.map(|e| e.planned),
        running = running.as_deref(),
        chunks_done = s.chunks_finished(),
        chunks_to_do = s.chunks_to_do(),
        chunks_failed = s.chunks_failed,
        rows = s.rows,
        rows_per_sec = s.rows_per_sec().round() as u64,
        requests = s.requests,
        requests_per_min = rate.per_minute(s.requests, s.elapsed),
        retries = s.retries,
        elapsed_secs = s.elapsed.as_secs(),
        eta_secs = s.eta().map(|d| d.as_secs()),
        "progress"
    );
}

async fn show_bar(progress: Arc<RunProgress>, mut stop: oneshot::Receiver<()>) {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} chunks{msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    telemetry::set_progress_bar(Some(bar.clone()));
    let mut rate = Rate::default();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let stopping = tokio::select! {
            _ = &mut stop => true,
            _ = tick.tick() => false,
        };
        let s = progress.snapshot();
        draw(&bar, &s, rate.per_minute(s.requests, s.elapsed));
        if stopping {
            break;
        }
    }
    telemetry::set_progress_bar(None);
    bar.abandon();
}

fn draw(bar: &ProgressBar, s: &ProgressSnapshot, per_minute: u64) {
    match s.entity {
        Some(entity) => bar.set_prefix(entity),
        None if s.entities.started > 0 => bar.set_prefix(format!(
            "all {}/{}",
            s.entities.finished,
            s.entities.planned.max(s.entities.started)
        )),
        None => {}
    }
    bar.set_length(s.chunks_to_do());
    bar.set_position(s.chunks_finished());
    let eta = s
        .eta()
        .map(|d| format!("ETA {}", human(d)))
        .unwrap_or_else(|| "ETA -".into());
    let failed = if s.chunks_failed > 0 {
        format!(" ({} failed)", s.chunks_failed)
    } else {
        String::new()
    };
    let running = match s.entity {
        Some(_) => String::new(),
        None => running_now(&s.entities.running),
    };
    bar.set_message(format!(
        "{failed}, {} rows, {} req/min, {} retries, {eta}{running}",
        s.rows, per_minute, s.retries
    ));
}

/// `, running: bills, invoices +3`: the first few names, so the line stays on one screen row.
fn running_now(running: &[&str]) -> String {
    const SHOWN: usize = 3;
    if running.is_empty() {
        return String::new();
    }
    let mut text = format!(
        ", running: {}",
        running[..running.len().min(SHOWN)].join(", ")
    );
    if running.len() > SHOWN {
        text.push_str(&format!(" +{}", running.len() - SHOWN));
    }
    text
}

/// `1h02m`, `3m07s`, `12s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(187)), "3m07s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_running_entities_fit_on_the_bar() {
        assert_eq!(running_now(&[]), "");
        assert_eq!(running_now(&["bills"]), ", running: bills");
        assert_eq!(
            running_now(&["a", "b", "c", "d", "e"]),
            ", running: a, b, c +2"
        );
    }
}
