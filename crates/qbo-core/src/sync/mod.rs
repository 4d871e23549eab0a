//! Incremental sync: per company and entity, read what changed since the watermark (minus a
//! lookback) and land it, deletes included, moving the watermark in the same transaction as
//! the last rows it covers.
//!
//! How each entity is read:
//! - CDC (`cdc.rs`): entities QBO's CDC serves, whose watermark is inside CDC's 30-day horizon.
//!   Several entities per call; an answer at QBO's 1000-object cap may be truncated, so the
//!   batch is split, and a single entity still at the cap falls back to windows.
//! - Windows (`windows.rs`): LastUpdatedTime windows from the start to QBO's now, read by the
//!   backfill's window loader, then an id reconciliation (`reconcile.rs`) that finds deletes.
//!   Used on a first sync, past the horizon, for entities CDC does not serve, and on fallback.
//! - Whole: entities QBO cannot window are re-read whole every time, then reconciled.

mod cdc;
mod rates;
mod reconcile;
mod summary;
mod windows;

pub use crate::watermark;
pub use summary::SyncSummary;

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::AuthError;
use crate::backfill::{self, Backfill, BackfillError};
use crate::chunks::Window;
use crate::client::{ChangeSource, ClientError, RequestCounters};
use crate::entities::Entity;
use crate::query::Query;
use crate::queue::{retry_transient, Queue, QueueError, RunKind};
use crate::store::sync_lock::Busy;
use crate::store::{NewRun, PgStore, StepRow, StoreError};

#[derive(Debug, Clone)]
pub struct Options {
    /// Read from watermark - lookback, to catch records QBO stamped a little before they
    /// became visible.
    pub lookback: Duration,
    /// Where a first sync (no watermark) starts; with a watermark, an earlier date re-reads.
    pub since: Option<NaiveDate>,
    /// Window size, page size, concurrency and lease for the window path.
    pub backfill: backfill::Options,
    /// Entities per CDC call at most (QBO takes a comma list).
    pub cdc_batch: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{} never synced for realm {realm_id}: give --since YYYY-MM-DD for the first sync (it backfills from that day to now), or run `qbo backfill` first", .entities.join(", "))]
    NeedsSince {
        entities: Vec<&'static str>,
        realm_id: String,
    },
    #[error("another `qbo sync` of realm {realm_id} is still running for {}; this one stops without reading anything (run it again once that one ends)", .entities.join(", "))]
    Busy {
        entities: Vec<String>,
        realm_id: String,
    },
    #[error("reading QBO's clock")]
    Clock(#[source] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    #[error(transparent)]
    Auth(AuthError),
    #[error("interrupted before anything was read; run `qbo sync` again")]
    Interrupted,
}

/// How an entity is read this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Cdc,
    Windows,
    Whole,
}

/// One entity's sync: its run and where it starts.
#[derive(Debug, Clone)]
struct Target {
    entity: &'static Entity,
    run_id: Uuid,
    from: DateTime<Utc>,
    path: Path,
    needs_reconcile: bool,
    /// The watermark this sync committed, once it has.
    watermark: Option<DateTime<Utc>>,
    /// Set when a step failed: no later step and no watermark for this entity.
    failed: bool,
    /// The report row the next step writes (this sync holds the entity's lock, so nobody
    /// else numbers rows of its run).
    next_index: i32,
}

impl Target {
    /// Reserves `n` report-row numbers and returns the first.
    fn take_indexes(&mut self, n: usize) -> i32 {
        let first = self.next_index;
        self.next_index += n as i32;
        first
    }
}

pub struct Syncer<S> {
    source: Arc<S>,
    store: PgStore,
    queue: Queue,
    cancel: CancellationToken,
    backfill: Arc<Backfill<S>>,
}

impl<S: ChangeSource + 'static> Syncer<S> {
    pub fn new(source: Arc<S>, store: PgStore, cancel: CancellationToken) -> Self {
        let backfill = Backfill::new(source.clone(), store.clone(), cancel.clone());
        Syncer {
            source,
            queue: Queue::new(store.clone()),
            store,
            cancel,
            backfill,
        }
    }

    /// Syncs `entities` of the client's company; one run (and summary) per entity.
    pub async fn run(
        &self,
        entities: &[&'static Entity],
        opts: &Options,
    ) -> Result<Vec<SyncSummary>, SyncError> {
        let Some(first) = entities.first() else {
            return Ok(Vec::new());
        };
        let realm_id = self.source.realm_id().to_string();
        let names: Vec<&str> = entities.iter().map(|e| e.cli_name).collect();
        let lock = match self.store.lock_sync(&realm_id, &names).await? {
            Ok(lock) => lock,
            Err(Busy(busy)) => {
                return Err(SyncError::Busy {
                    entities: busy,
                    realm_id,
                })
            }
        };
        let result = self.run_locked(entities, first, opts).await;
        lock.release().await;
        result
    }

    async fn run_locked(
        &self,
        entities: &[&'static Entity],
        first: &Entity,
        opts: &Options,
    ) -> Result<Vec<SyncSummary>, SyncError> {
        let realm_id = self.source.realm_id().to_string();
        let names: Vec<&str> = entities.iter().map(|e| e.cli_name).collect();
        // Read under the lock, so no other sync moves them between here and the commits.
        let starts = self.store.watermarks(&realm_id, &names).await?;
        let missing: Vec<&'static str> = entities
            .iter()
            .zip(&starts)
            .filter(|(e, wm)| wm.is_none() && opts.since.is_none() && !e.is_whole())
            .map(|(e, _)| e.cli_name)
            .collect();
        if !missing.is_empty() {
            return Err(SyncError::NeedsSince {
                entities: missing,
                realm_id,
            });
        }
        let qbo_now = self.qbo_now(first).await?;
        let mut targets = Vec::with_capacity(entities.len());
        for (entity, wm) in entities.iter().zip(starts) {
            let since = opts.since.map(|d| d.and_time(NaiveTime::MIN).and_utc());
            let from = match (&wm, since) {
                (Some(w), Some(s)) => {
                    let from_watermark = w.watermark_utc - opts.lookback;
                    if s > from_watermark {
                        tracing::warn!(
                            entity = entity.cli_name,
                            watermark = %w.watermark_utc,
                            "--since {} has no effect: it is later than the watermark, and a sync never skips changes past it; reading from the watermark",
                            s.date_naive()
                        );
                    }
                    from_watermark.min(s)
                }
                (Some(w), None) => w.watermark_utc - opts.lookback,
                (None, Some(s)) => s,
                (None, None) => qbo_now,
            };
            let path = if entity.is_whole() {
                Path::Whole
            } else if wm.is_some() && entity.cdc && watermark::within_cdc_horizon(from, qbo_now) {
                Path::Cdc
            } else {
                Path::Windows
            };
            let run_id = self.create_run(entity, from, qbo_now, opts).await?;
            targets.push(Target {
                entity,
                run_id,
                from,
                path,
                needs_reconcile: wm.is_some_and(|w| w.needs_reconcile),
                watermark: None,
                failed: false,
                next_index: 0,
            });
        }
        self.sync_cdc(&mut targets, opts.cdc_batch).await?;
        for t in targets.iter_mut() {
            if self.cancel.is_cancelled() {
                break;
            }
            if t.path != Path::Cdc {
                self.sync_windows(t, qbo_now, opts).await?;
            } else if let (true, false, Some(wm)) = (t.needs_reconcile, t.failed, t.watermark) {
                self.reconcile_step(t, wm).await?;
            }
        }
        // After the entities, so the rates cover what this sync loaded.
        let rates = if self.cancel.is_cancelled() {
            None
        } else {
            self.rates_step(qbo_now.date_naive()).await?
        };
        let mut summaries = Vec::with_capacity(targets.len() + 1);
        for t in &targets {
            summaries.push(self.summarize(t, &realm_id).await?);
        }
        summaries.extend(rates);
        Ok(summaries)
    }

    /// QBO's clock, which decides the CDC horizon and where catch-up windows end.
    async fn qbo_now(&self, entity: &Entity) -> Result<DateTime<Utc>, SyncError> {
        let mut counters = Default::default();
        let answer = self
            .source
            .fetch_count(&Query::count(entity).render(), &mut counters)
            .await;
        match answer {
            Ok(a) => Ok(a
                .value
                .1
                .unwrap_or_else(|| Utc::now() - Duration::minutes(watermark::CLOCK_SKEW_MINUTES))),
            Err(ClientError::Auth(auth)) => Err(SyncError::Auth(auth)),
            Err(ClientError::Cancelled) => Err(SyncError::Interrupted),
            Err(e) => Err(SyncError::Clock(e)),
        }
    }

    async fn create_run(
        &self,
        entity: &Entity,
        from: DateTime<Utc>,
        qbo_now: DateTime<Utc>,
        opts: &Options,
    ) -> Result<Uuid, SyncError> {
        let run_id = self
            .store
            .create_run(
                &NewRun {
                    realm_id: self.source.realm_id(),
                    entity: entity.cli_name,
                    range_start: from.date_naive(),
                    range_end: qbo_now.date_naive().max(from.date_naive()),
                    window_field: "last-updated",
                    options: json!({
                        "from": from,
                        "lookback_secs": opts.lookback.num_seconds(),
                        "chunk_days": opts.backfill.chunking.days_or(7),
                        "page_size": opts.backfill.page_size,
                        "minor_version": self.source.minor_version(),
                    }),
                    kind: RunKind::Sync,
                    read_via: "query",
                },
                &[],
            )
            .await?;
        self.queue.mark_run_running(run_id).await?;
        Ok(run_id)
    }

    /// Records a failed step of one entity; a failure that needs a human stops the sync.
    async fn step_failed(
        &self,
        t: &mut Target,
        read_via: &str,
        window: Window,
        counters: RequestCounters,
        error: StepError,
    ) -> Result<(), SyncError> {
        if matches!(error, StepError::Client(ClientError::Cancelled)) {
            // Ctrl-C / SIGTERM: nothing failed; the watermark stays and the next sync reads on.
            t.failed = true;
            return Ok(());
        }
        self.record_failure(t, read_via, window, counters, &error.message())
            .await?;
        self.stop_if_human(error)
    }

    /// A failure only a human can fix (the refresh token is gone) stops the whole sync; any
    /// other failure is the step's alone.
    fn stop_if_human(&self, error: StepError) -> Result<(), SyncError> {
        match error {
            StepError::Client(ClientError::Auth(auth)) if auth.needs_human() => {
                self.cancel.cancel();
                Err(SyncError::Auth(auth))
            }
            _ => Ok(()),
        }
    }

    async fn record_failure(
        &self,
        t: &mut Target,
        read_via: &str,
        window: Window,
        counters: RequestCounters,
        message: &str,
    ) -> Result<(), SyncError> {
        t.failed = true;
        tracing::error!(entity = t.entity.cli_name, read_via, error = %message, "sync step failed; the watermark stays where it was");
        let index = t.take_indexes(1);
        let realm_id = self.source.realm_id().to_string();
        let row = StepRow {
            run_id: t.run_id,
            chunk_index: index,
            realm_id: &realm_id,
            entity: t.entity.cli_name,
            window,
            read_via,
            expected_count: None,
            row_count: 0,
            counts: Default::default(),
            deleted: 0,
            pages: 0,
            requests: counters.requests as i32,
            retries: counters.retries as i32,
            error: Some(message),
            intuit_tid: None,
        };
        retry_transient(&CancellationToken::new(), "recording a failed step", || {
            PgStore::insert_step(self.store.pool(), &row)
        })
        .await?;
        Ok(())
    }
}

/// Why a step (a CDC read, a reconciliation) failed: QBO or Postgres.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> Self {
        StepError::Store(StoreError::Db(e))
    }
}

impl StepError {
    fn message(&self) -> String {
        match self {
            StepError::Client(e) => crate::errors::chain(e),
            StepError::Store(e) => crate::errors::chain(e),
        }
    }
}

/// Test hook, built only with the `failpoints` feature (the test builds enable it; a release
/// build has no trace of it): `QBO_TEST_FAILPOINT=sync-before-commit` aborts the process
/// right before a sync commits rows with their watermark, the worst moment for a crash.
#[cfg(feature = "failpoints")]
fn failpoint(name: &str) {
    if std::env::var("QBO_TEST_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn failpoint(_name: &str) {}
