//! Parked (`paged`) windows: loaded, still leased, waiting for their run's changed-since
//! sweep to settle them (see `backfill::sweep`).

use std::time::Duration;

use uuid::Uuid;

use super::{ChunkStatus, Queue, QueueError};

/// How the run's changed-since sweep settles a window that was parked as `paged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagedVerdict {
    /// Nothing it read moved while it paged and it holds what COUNT(*) promised.
    Complete,
    /// Read it again (with a fresh COUNT(*), so the planned count is dropped).
    Reread,
    Failed(String),
}

/// A window `ClaimedChunk::park` parked: what settling it is fenced on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedChunk {
    pub(super) run_id: Uuid,
    pub(super) chunk: i32,
    pub(super) owner: String,
    pub(super) attempt: i32,
}

impl ParkedChunk {
    pub fn index(&self) -> i32 {
        self.chunk
    }
}

impl Queue {
    /// Keeps an invocation's parked windows of a run leased while it sweeps (their
    /// `ClaimedChunk`s, and so their heartbeats, ended when they were parked).
    pub async fn extend_paged(
        &self,
        run_id: Uuid,
        invocation: Uuid,
        lease: Duration,
    ) -> Result<(), QueueError> {
        sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET lease_expires_at = now() + make_interval(secs => $3)
               WHERE run_id = $1 AND status = 'paged' AND last_invocation = $2"#,
            run_id,
            invocation,
            lease.as_secs_f64(),
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Settles a parked window: `success`, `error`, or back to `pending` to be read again
    /// (by this invocation too). `LeaseLost` when it is no longer ours (its lease ran out and
    /// another worker claimed it): nothing changes.
    pub async fn settle_paged(
        &self,
        parked: &ParkedChunk,
        verdict: &PagedVerdict,
    ) -> Result<(), QueueError> {
        let (status, error) = match verdict {
            PagedVerdict::Complete => (ChunkStatus::Success, None),
            PagedVerdict::Reread => (ChunkStatus::Pending, None),
            PagedVerdict::Failed(message) => (ChunkStatus::Error, Some(message.as_str())),
        };
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = $5, error_message = $6, lease_owner = NULL, lease_expires_at = NULL,
                   finished_at = CASE WHEN $5 = 'pending' THEN finished_at ELSE now() END,
                   planned_count = CASE WHEN $5 = 'pending' THEN NULL ELSE planned_count END,
                   -- Sent back for another pass: this invocation may claim it again.
                   last_invocation = CASE WHEN $5 = 'pending' THEN NULL ELSE last_invocation END
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND attempts = $4
                 AND status = 'paged'"#,
            parked.run_id,
            parked.chunk,
            parked.owner,
            parked.attempt,
            status.as_str(),
            error,
        )
        .execute(self.pool())
        .await?;
        if r.rows_affected() == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost {
                run_id: parked.run_id,
                chunk: parked.chunk,
            })
        }
    }
}
