//! Live counters of an invocation in progress, for whoever wants to watch it (the CLI's
//! progress bar or periodic log lines). The engine only adds to them; observers take
//! snapshots. Plain atomics, so watching costs the engine nothing and the engine knows
//! nothing of terminals.
//!
//! One `RunProgress` counts a whole invocation (one entity, or `qbo backfill all` with
//! several entities running at once); each entity run adds through its own
//! [`EntityProgress`], which keeps that run's figures for its summary and adds them to the
//! invocation's as well.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The figures an entity run and an invocation both keep.
#[derive(Debug, Default)]
struct Counters {
    chunks_total: AtomicU64,
    chunks_done_before: AtomicU64,
    chunks_succeeded: AtomicU64,
    chunks_failed: AtomicU64,
    rows: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Counters {
    fn snapshot(&self, elapsed: Duration) -> ProgressSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ProgressSnapshot {
            entity: None,
            elapsed,
            chunks_total: get(&self.chunks_total),
            chunks_done_before: get(&self.chunks_done_before),
            chunks_succeeded: get(&self.chunks_succeeded),
            chunks_failed: get(&self.chunks_failed),
            rows: get(&self.rows),
            requests: get(&self.requests),
            retries: get(&self.retries),
            entities: EntitiesSnapshot::default(),
        }
    }
}

/// Counters of one invocation: every entity run of it adds to them, several at once.
#[derive(Debug, Default)]
pub struct RunProgress {
    /// When the first entity run began.
    started: Mutex<Option<Instant>>,
    /// Entities the invocation will run (0: not said).
    entities_planned: AtomicU64,
    entities_finished: AtomicU64,
    /// Entities whose run has begun and not ended, in the order they began.
    running: Mutex<Vec<&'static str>>,
    /// Every entity that has begun, in the order it began.
    begun: Mutex<Vec<&'static str>>,
    totals: Counters,
}

/// Where the entities of an invocation stand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntitiesSnapshot {
    /// Entities the invocation will run (0: not said, as when a library caller runs one).
    pub planned: u64,
    pub started: u64,
    pub finished: u64,
    /// Those running now, in the order they began.
    pub running: Vec<&'static str>,
}

/// What a run (or an invocation) has done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressSnapshot {
    /// The entity: of an entity run, or of an invocation that has begun exactly one.
    pub entity: Option<&'static str>,
    pub elapsed: Duration,
    /// Chunks of the runs begun so far, including those finished by earlier invocations.
    pub chunks_total: u64,
    /// Chunks already `success` when this invocation started (on `--resume`).
    pub chunks_done_before: u64,
    pub chunks_succeeded: u64,
    pub chunks_failed: u64,
    /// Distinct records loaded by this invocation's chunk attempts.
    pub rows: u64,
    pub requests: u64,
    pub retries: u64,
    /// Of an invocation; empty for an entity run.
    pub entities: EntitiesSnapshot,
}

impl ProgressSnapshot {
    /// Chunks this invocation set out to load (of the runs begun so far).
    pub fn chunks_to_do(&self) -> u64 {
        self.chunks_total.saturating_sub(self.chunks_done_before)
    }

    /// Chunks this invocation has finished, either way.
    pub fn chunks_finished(&self) -> u64 {
        self.chunks_succeeded + self.chunks_failed
    }

    /// Time left at the pace so far, once at least one chunk has finished and every entity
    /// has begun (before that, the chunks of the entities still waiting are unknown).
    pub fn eta(&self) -> Option<Duration> {
        let done = self.chunks_finished();
        let left = self.chunks_to_do().saturating_sub(done);
        let all_begun = self.entities.started >= self.entities.planned;
        (done > 0 && all_begun).then(|| self.elapsed.mul_f64(left as f64 / done as f64))
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunProgress {
    /// Says how many entities the invocation will run, so that a display can show
    /// `entities 3/36` and hold its ETA until every one has begun.
    pub fn plan_entities(&self, n: usize) {
        self.entities_planned.store(n as u64, Ordering::Relaxed);
    }

    /// An entity run begins: its counters, which also add to the invocation's. The entity
    /// counts as running until the returned handle is dropped.
    pub(super) fn begin(
        self: &Arc<Self>,
        entity: &'static str,
        chunks_total: u64,
        done_before: u64,
    ) -> Arc<EntityProgress> {
        let now = Instant::now();
        lock(&self.started).get_or_insert(now);
        lock(&self.running).push(entity);
        lock(&self.begun).push(entity);
        let own = Counters::default();
        for c in [&own, &self.totals] {
            c.chunks_total.fetch_add(chunks_total, Ordering::Relaxed);
            c.chunks_done_before
                .fetch_add(done_before, Ordering::Relaxed);
        }
        Arc::new(EntityProgress {
            entity,
            started: now,
            own,
            invocation: self.clone(),
        })
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        let elapsed = lock(&self.started).map(|t| t.elapsed()).unwrap_or_default();
        let begun = lock(&self.begun).clone();
        let planned = self.entities_planned.load(Ordering::Relaxed);
        ProgressSnapshot {
            entity: match (begun.as_slice(), planned) {
                ([only], 0 | 1) => Some(*only),
                _ => None,
            },
            entities: EntitiesSnapshot {
                planned,
                started: begun.len() as u64,
                finished: self.entities_finished.load(Ordering::Relaxed),
                running: lock(&self.running).clone(),
            },
            ..self.totals.snapshot(elapsed)
        }
    }
}

/// The counters of one entity run within its invocation.
#[derive(Debug)]
pub struct EntityProgress {
    entity: &'static str,
    started: Instant,
    own: Counters,
    invocation: Arc<RunProgress>,
}

impl EntityProgress {
    fn both(&self) -> [&Counters; 2] {
        [&self.own, &self.invocation.totals]
    }

    /// A window was split into more: the run has `n` more to do.
    pub(super) fn windows_added(&self, n: u64) {
        for c in self.both() {
            c.chunks_total.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(super) fn chunk_finished(&self, success: bool) {
        for c in self.both() {
            let n = if success {
                &c.chunks_succeeded
            } else {
                &c.chunks_failed
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn add(&self, rows: u64, requests: u64, retries: u64) {
        for c in self.both() {
            c.rows.fetch_add(rows, Ordering::Relaxed);
            c.requests.fetch_add(requests, Ordering::Relaxed);
            c.retries.fetch_add(retries, Ordering::Relaxed);
        }
    }

    /// This run's figures alone.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            entity: Some(self.entity),
            ..self.own.snapshot(self.started.elapsed())
        }
    }
}

impl Drop for EntityProgress {
    /// However the run ended (done, failed, interrupted), it is no longer running.
    fn drop(&mut self) {
        let mut running = lock(&self.invocation.running);
        if let Some(i) = running.iter().position(|e| *e == self.entity) {
            running.remove(i);
        }
        self.invocation
            .entities_finished
            .fetch_add(1, Ordering::Relaxed);
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
    fn eta_waits_until_every_entity_has_begun() {
        let p = Arc::new(RunProgress::default());
        p.plan_entities(2);
        let invoices = p.begin("invoices", 4, 0);
        invoices.chunk_finished(true);
        assert_eq!(
            p.snapshot().eta(),
            None,
            "customers' chunks are not known yet"
        );
        let _customers = p.begin("customers", 2, 0);
        assert!(p.snapshot().eta().is_some());
    }

    #[test]
    fn entity_runs_at_once_add_up_in_the_invocation_and_keep_their_own_figures() {
        let p = Arc::new(RunProgress::default());
        p.plan_entities(3);
        let invoices = p.begin("invoices", 5, 1);
        let customers = p.begin("customers", 4, 0);
        invoices.add(100, 3, 1);
        customers.add(7, 2, 0);
        invoices.chunk_finished(true);
        customers.chunk_finished(false);

        let own = invoices.snapshot();
        assert_eq!(own.entity, Some("invoices"));
        assert_eq!((own.rows, own.requests, own.retries), (100, 3, 1));
        assert_eq!((own.chunks_to_do(), own.chunks_finished()), (4, 1));

        let all = p.snapshot();
        assert_eq!(all.entity, None, "two entities are running");
        assert_eq!((all.rows, all.requests, all.retries), (107, 5, 1));
        assert_eq!((all.chunks_to_do(), all.chunks_finished()), (8, 2));
        assert_eq!(all.chunks_failed, 1);
        assert_eq!(all.entities.running, vec!["invoices", "customers"]);

        drop(invoices);
        let all = p.snapshot();
        assert_eq!(all.entities.running, vec!["customers"]);
        assert_eq!(
            (
                all.entities.planned,
                all.entities.started,
                all.entities.finished
            ),
            (3, 2, 1)
        );
        assert_eq!(
            all.rows, 107,
            "a finished entity's figures stay in the total"
        );
    }

    #[test]
    fn an_invocation_of_one_entity_is_named_by_it() {
        let p = Arc::new(RunProgress::default());
        assert_eq!(p.snapshot().entity, None, "nothing has begun");
        let _run = p.begin("invoices", 13, 0);
        assert_eq!(p.snapshot().entity, Some("invoices"));
    }
}
