//! Live counters of the run in progress, for whoever wants to watch it (the CLI's progress
//! bar or periodic log lines). The engine only adds to them; observers take snapshots. Plain
//! atomics, so watching costs the engine nothing and the engine knows nothing of terminals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counters of one `Backfill::run` at a time; `begin` resets them for the next entity.
#[derive(Debug, Default)]
pub struct RunProgress {
    started: Mutex<Option<(&'static str, Instant)>>,
    chunks_total: AtomicU64,
    chunks_done_before: AtomicU64,
    chunks_succeeded: AtomicU64,
    chunks_failed: AtomicU64,
    rows: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// What a run has done so far in this invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// `None` until a run has started.
    pub entity: Option<&'static str>,
    pub elapsed: Duration,
    /// Chunks of the whole run, including those finished by earlier invocations.
    pub chunks_total: u64,
    /// Chunks already `success` when this invocation started (on `--resume`).
    pub chunks_done_before: u64,
    pub chunks_succeeded: u64,
    pub chunks_failed: u64,
    /// Distinct records loaded by this invocation's chunk attempts.
    pub rows: u64,
    pub requests: u64,
    pub retries: u64,
}

impl ProgressSnapshot {
    /// Chunks this invocation set out to load.
    pub fn chunks_to_do(&self) -> u64 {
        self.chunks_total.saturating_sub(self.chunks_done_before)
    }

    /// Chunks this invocation has finished, either way.
    pub fn chunks_finished(&self) -> u64 {
        self.chunks_succeeded + self.chunks_failed
    }

    /// Time left at the pace so far, once at least one chunk has finished.
    pub fn eta(&self) -> Option<Duration> {
        let done = self.chunks_finished();
        let left = self.chunks_to_do().saturating_sub(done);
        (done > 0).then(|| self.elapsed.mul_f64(left as f64 / done as f64))
    }

    pub fn rows_per_sec(&self) -> f64 {
        per_sec(self.rows, self.elapsed)
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

impl RunProgress {
    pub(super) fn begin(&self, entity: &'static str, chunks_total: u64, done_before: u64) {
        for c in [
            &self.chunks_succeeded,
            &self.chunks_failed,
            &self.rows,
            &self.requests,
            &self.retries,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.chunks_total.store(chunks_total, Ordering::Relaxed);
        self.chunks_done_before
            .store(done_before, Ordering::Relaxed);
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some((entity, Instant::now()));
    }

    pub(super) fn chunk_finished(&self, success: bool) {
        let c = if success {
            &self.chunks_succeeded
        } else {
            &self.chunks_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add(&self, rows: u64, requests: u64, retries: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.requests.fetch_add(requests, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let started = *self.started.lock().unwrap_or_else(|p| p.into_inner());
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProgressSnapshot {
            entity: started.map(|(e, _)| e),
            elapsed: started.map(|(_, t)| t.elapsed()).unwrap_or_default(),
            chunks_total: get(&self.chunks_total),
            chunks_done_before: get(&self.chunks_done_before),
            chunks_succeeded: get(&self.chunks_succeeded),
            chunks_failed: get(&self.chunks_failed),
            rows: get(&self.rows),
            requests: get(&self.requests),
            retries: get(&self.retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_pace_of_finished_chunks() {
        let s = ProgressSnapshot {
            elapsed: Duration::from_secs(30),
            chunks_total: 12,
            chunks_done_before: 2,
            chunks_succeeded: 2,
            chunks_failed: 1,
            ..Default::default()
        };
        assert_eq!(s.chunks_to_do(), 10);
        assert_eq!(s.eta(), Some(Duration::from_secs(70)));
        assert_eq!(ProgressSnapshot::default().eta(), None);
    }

    #[test]
    fn begin_resets_the_previous_entity() {
        let p = RunProgress::default();
        p.begin("invoices", 5, 0);
        p.add(100, 3, 1);
        p.chunk_finished(true);
        p.begin("customers", 4, 1);
        let s = p.snapshot();
        assert_eq!(s.entity, Some("customers"));
        assert_eq!(
            (s.rows, s.requests, s.retries, s.chunks_finished()),
            (0, 0, 0, 0)
        );
        assert_eq!(s.chunks_to_do(), 3);
    }
}
