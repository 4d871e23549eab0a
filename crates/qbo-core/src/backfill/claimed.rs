//! Loading one chunk a `qbo worker` already claimed (`Queue::claim_next_any`), whatever run
//! and company it belongs to: the worker decides which window is loaded next (the fleet's
//! fairness order), the engine loads it as a run's own workers would.
//!
//! A window that took several pages is proved complete by a changed-since sweep of its own
//! right after it is paged (an in-process run sweeps all its parked windows at once; a
//! worker's windows of one run may be loaded by any worker at any time, so each proves
//! itself). The run is settled once none of its windows is left unfinished: `success` only
//! when every window succeeded on its own evidence.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{retry_transient, Backfill, BackfillError, Chunking, Options, Prepared, RunCtx};
use crate::client::QuerySource;
use crate::queue::{ClaimMode, ClaimedChunk, QueueError, RunKind, RunStatus};
use crate::store::StoreError;

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
        let raw_had_rows = crate::store::raw::has_rows(self.store.pool(), entity, &run.realm_id)
            .await
            .map_err(StoreError::from)?;
        let Prepared {
            field, chunking, ..
        } = Prepared::of(&run, ClaimMode::Unfinished);
        let page_size = run
            .options
            .get("page_size")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n.clamp(1, u64::from(crate::query::MAX_PAGE_SIZE)) as u32)
            .unwrap_or(opts.page_size);
        let progress = self.progress.begin(entity.cli_name, 1, 0);
        let ctx = Arc::new(RunCtx {
            run_id,
            entity,
            field,
            chunking,
            probe_first: matches!(chunking, Chunking::ByCount { .. })
                && (entity.common || raw_had_rows),
            mode: Mutex::new(ClaimMode::Unfinished),
            invocation: claim.invocation(),
            opts: Options { page_size, ..opts },
            // Unknown here: the window's log lines give only its number.
            total_chunks: 0.into(),
            progress: progress.clone(),
            paged: Mutex::new(Vec::new()),
            split: false.into(),
        });
        let span = tracing::info_span!("backfill", %run_id, realm_id = %run.realm_id, entity = entity.cli_name, chunk = row.chunk_index);
        let keep_paged_leased = self.spawn_paged_heartbeat(&ctx);
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
        let parked = ctx.take_paged();
        let swept = if parked.is_empty() {
            Ok(())
        } else if loaded.is_err() || self.cancel.is_cancelled() {
            self.hand_back(&ctx, parked).await
        } else {
            let round = parked.iter().map(|(_, p)| p.pass).max().unwrap_or(1);
            tracing::Instrument::instrument(self.sweep(&ctx, parked, round), span.clone())
                .await
                .map(|_| ())
        };
        keep_paged_leased.abort();
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
}
