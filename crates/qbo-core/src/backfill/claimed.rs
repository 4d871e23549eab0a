//! Loading one chunk a `qbo worker` already claimed (`Queue::claim_next_any`), whatever run
//! and company it belongs to: the worker decides which window is loaded next (the fleet's
//! fairness order), the engine loads it as a run's own workers would.
//!
//! A window that took several pages is parked durably (what it read kept in Postgres, see
//! `queue::SweepClaim`), and the run's one changed-since sweep settles every parked window
//! at once, as an in-process run's does: it is done by the worker that settles the run's last
//! window to be loaded (`sweep_if_due`), or, if that worker died, by whichever worker polls
//! next (`sweep_claimed`, from the worker's loop). The run is settled once none of its
//! windows is left unfinished: `success` only when every window succeeded on its own
//! evidence, a parked one on the sweep's.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::window::PagedWindow;
use super::{
    lease_owner, retry_transient, Backfill, BackfillError, Chunking, Options, Prepared, RunCtx,
};
use crate::client::QuerySource;
use crate::entities::Entity;
use crate::queue::{
    ClaimMode, ClaimedChunk, Claimer, PagedVerdict, QueueError, RunKind, RunStatus, SweepClaim,
};
use crate::store::{RunRow, StoreError};

/// What loading one claimed chunk did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChunkSummary {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: &'static str,
    pub chunk: i32,
    /// The run's status once this chunk was settled, when that settled the run (no window
    /// of it left unfinished); None while windows of it are left.
    pub run_status: Option<RunStatus>,
    /// Distinct records this chunk's load wrote.
    pub rows_loaded_now: u64,
    pub interrupted: bool,
}

/// What a worker's sweep of a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepSummary {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: &'static str,
    /// Parked windows it settled (success, error, or sent back to be read again).
    pub settled: usize,
    /// The run's status once swept, when that settled the run.
    pub run_status: Option<RunStatus>,
}

impl<S: QuerySource + 'static> Backfill<S> {
    /// Loads a chunk already claimed (by `Queue::claim_next_any`) under the run's stored
    /// options: counts and splits it when its run plans by count, pages it, proves it
    /// complete (or parks and sweeps it), and settles the run when it was its last window.
    /// The claim is this engine's to end: every state change goes through it. `opts` gives
    /// this worker's lease and pace; the page size is the run's.
    pub async fn load_claimed(
        self: &Arc<Self>,
        claim: ClaimedChunk,
        opts: Options,
    ) -> Result<ChunkSummary, BackfillError> {
        let row = claim.row().clone();
        let run_id = row.run_id;
        let (run, entity) = self.claimed_run(run_id).await?;
        let raw_had_rows = crate::store::raw::has_rows(self.store.pool(), entity, &run.realm_id)
            .await
            .map_err(StoreError::from)?;
        let ctx = self.worker_ctx(&run, entity, claim.invocation(), opts, raw_had_rows);
        let progress = ctx.progress.clone();
        let span = tracing::info_span!("backfill", %run_id, realm_id = %run.realm_id, entity = entity.cli_name, chunk = row.chunk_index);
        let loaded =
            tracing::Instrument::instrument(self.run_chunk(&ctx, claim), span.clone()).await;
        let loaded = match loaded {
            // The chunk is someone else's now: not a failure of the window or the run.
            Err(BackfillError::Queue(QueueError::LeaseLost { .. })) => {
                tracing::warn!(parent: &span, "lost the lease on this chunk; another worker owns it now");
                Ok(())
            }
            other => other,
        };
        // A multi-page window was parked durably (`RunCtx::durable_park`): the run's sweep
        // is this worker's to do if nothing of the run is left to load.
        let swept = if loaded.is_ok() && !self.cancel.is_cancelled() {
            tracing::Instrument::instrument(self.sweep_if_due(&ctx), span.clone()).await
        } else {
            Ok(())
        };
        let interrupted = self.cancel.is_cancelled();
        let run_status = retry_transient(&CancellationToken::new(), "settling the run", || {
            self.queue.settle_run_if_finished(run_id)
        })
        .await?;
        if let Some(auth) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(BackfillError::Auth(auth));
        }
        loaded?;
        swept?;
        if run_status == Some(RunStatus::Success) && !interrupted {
            // A sync watermark where none exists (crate::watermark::after_backfill).
            crate::watermark::seed_after_backfill(&self.store, run_id, entity).await?;
            tracing::info!(parent: &span, "run success: every window complete");
        }
        Ok(ChunkSummary {
            run_id,
            realm_id: run.realm_id,
            entity: entity.cli_name,
            chunk: row.chunk_index,
            run_status,
            rows_loaded_now: progress.snapshot().rows,
            interrupted,
        })
    }

    /// Sweeps a run whose sweep this worker took (`Queue::claim_any_sweep`): a run whose
    /// last window was settled by a worker that died before sweeping, or whose sweeper died.
    pub async fn sweep_claimed(
        self: &Arc<Self>,
        claim: SweepClaim,
        opts: Options,
    ) -> Result<SweepSummary, BackfillError> {
        let run_id = claim.run_id();
        let (run, entity) = match self.claimed_run(run_id).await {
            Ok(found) => found,
            Err(e) => {
                // Not this engine's to sweep (another company's, an unknown entity): the
                // next worker may be.
                let _ = claim.release().await;
                return Err(e);
            }
        };
        let ctx = self.worker_ctx(&run, entity, Uuid::new_v4(), opts, true);
        let span = tracing::info_span!("sweep", %run_id, realm_id = %run.realm_id, entity = entity.cli_name);
        let settled =
            tracing::Instrument::instrument(self.run_sweep(&ctx, claim), span.clone()).await?;
        let run_status = retry_transient(&CancellationToken::new(), "settling the run", || {
            self.queue.settle_run_if_finished(run_id)
        })
        .await?;
        if let Some(auth) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(BackfillError::Auth(auth));
        }
        if run_status == Some(RunStatus::Success) && !self.cancel.is_cancelled() {
            crate::watermark::seed_after_backfill(&self.store, run_id, entity).await?;
            tracing::info!(parent: &span, "run success: every window complete");
        }
        Ok(SweepSummary {
            run_id,
            realm_id: run.realm_id,
            entity: entity.cli_name,
            settled,
            run_status,
        })
    }

    /// Sweeps the run now if the window just settled was the last one to be loaded (no
    /// window `pending` or `running`, some parked): of the workers that settle windows of
    /// the run at once, the one whose claim of the sweep lease wins; the others see it held.
    async fn sweep_if_due(&self, ctx: &RunCtx) -> Result<(), BackfillError> {
        let invocation = Uuid::new_v4();
        let claimer = Claimer {
            owner: format!("{}:sweep", lease_owner(invocation, 0)),
            invocation,
            lease: ctx.opts.lease,
            cancel: self.cancel.clone(),
        };
        let claim = retry_transient(&self.cancel, "looking for the run's sweep", || {
            self.queue.claim_sweep(ctx.run_id, &claimer)
        })
        .await?;
        match claim {
            Some(claim) => self.run_sweep(ctx, claim).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// The sweep of a run whose sweep lease this worker holds: reads what changed since its
    /// first parked window began paging and settles every parked window in one transaction
    /// fenced on the lease. Interrupted (or the lease lost), it settles nothing and frees
    /// the lease, so the next worker sweeps. Returns the windows settled.
    async fn run_sweep(&self, ctx: &RunCtx, claim: SweepClaim) -> Result<usize, BackfillError> {
        crate::failpoint::hold("worker-sweep-claimed").await;
        let parked = retry_transient(claim.stop(), "reading the parked windows", || {
            claim.parked()
        })
        .await;
        let parked = match parked {
            Ok(parked) => parked,
            Err(e) => {
                let _ = claim.release().await;
                return Err(e.into());
            }
        };
        let attempts: Vec<(i32, i32)> = parked.iter().map(|p| (p.chunk, p.attempt)).collect();
        let windows: Vec<PagedWindow> = parked.into_iter().map(PagedWindow::from_stored).collect();
        tracing::info!(
            windows = windows.len(),
            "sweeping the run's parked windows (one changed-since sweep for all of them)"
        );
        let refs: Vec<&PagedWindow> = windows.iter().collect();
        let stop = claim.stop().clone();
        let verdicts = match self.judge(ctx, &refs, None, &stop).await {
            Ok(verdicts) => verdicts,
            Err(e) => {
                let _ = claim.release().await;
                return Err(e);
            }
        };
        if stop.is_cancelled() {
            // Interrupted or taken over: what it loaded stays (the raw zone takes a record's
            // newest version), the windows stay parked for the next sweep.
            return match claim.release().await {
                Ok(()) | Err(QueueError::SweepLost { .. }) => Ok(0),
                Err(e) => Err(e.into()),
            };
        }
        let verdicts: Vec<(i32, i32, PagedVerdict)> = attempts
            .into_iter()
            .zip(verdicts)
            .map(|((chunk, attempt), v)| (chunk, attempt, v))
            .collect();
        match claim.finish(&verdicts).await {
            Ok(settled) => {
                for (chunk, verdict) in &settled {
                    self.settle_one(ctx, *chunk, verdict);
                }
                Ok(settled.len())
            }
            Err(QueueError::SweepLost { .. }) => {
                tracing::warn!("the sweep's lease ran out and another worker took it over; it settles the windows");
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The run of a claimed window or sweep, which must be a backfill of this engine's
    /// company and of an entity this qbo knows.
    async fn claimed_run(&self, run_id: Uuid) -> Result<(RunRow, &'static Entity), BackfillError> {
        let run = self
            .store
            .run(run_id)
            .await?
            .ok_or(BackfillError::RunNotFound(run_id))?;
        let entity = crate::entities::find(&run.entity)
            .filter(|_| run.kind == RunKind::Backfill && run.realm_id == self.source.realm_id())
            .ok_or_else(|| BackfillError::WrongRun {
                run_id,
                actual: format!("{} ({}) of realm {}", run.entity, run.kind, run.realm_id),
                requested: format!(
                    "a known entity (backfill) of realm {}",
                    self.source.realm_id()
                ),
            })?;
        Ok((run, entity))
    }

    /// A worker's context for one window or sweep of `run`, under the run's stored options
    /// (`opts` gives this worker's lease and pace; the page size is the run's).
    fn worker_ctx(
        &self,
        run: &RunRow,
        entity: &'static Entity,
        invocation: Uuid,
        opts: Options,
        raw_had_rows: bool,
    ) -> Arc<RunCtx> {
        let Prepared {
            field, chunking, ..
        } = Prepared::of(run, ClaimMode::Unfinished);
        let page_size = run
            .options
            .get("page_size")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n.clamp(1, u64::from(crate::query::MAX_PAGE_SIZE)) as u32)
            .unwrap_or(opts.page_size);
        Arc::new(RunCtx {
            run_id: run.run_id,
            entity,
            field,
            chunking,
            probe_first: matches!(chunking, Chunking::ByCount { .. })
                && (entity.common || raw_had_rows),
            mode: Mutex::new(ClaimMode::Unfinished),
            invocation,
            opts: Options { page_size, ..opts },
            // Unknown here: the window's log lines give only its number.
            total_chunks: 0.into(),
            progress: self.progress.begin(entity.cli_name, 1, 0),
            paged: Mutex::new(Vec::new()),
            split: false.into(),
            durable_park: true,
        })
    }
}
