//! A run's own state: running while workers load it, then settled from its chunks. A
//! `cancelled` run stays cancelled: neither an engine that was loading it nor one that
//! picked it up just before the cancel brings it back.

use uuid::Uuid;

use super::{Queue, QueueError, RunStatus};

impl Queue {
    /// Marks the run `running` (an engine starts on it); a cancelled run stays cancelled.
    pub async fn mark_run_running(&self, run_id: Uuid) -> Result<(), QueueError> {
        sqlx::query!(
            "UPDATE ops.backfill_runs SET status = 'running', finished_at = NULL, updated_at = now()
             WHERE run_id = $1 AND status <> 'cancelled'",
            run_id
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Derives the run's status from its chunks and stores it: `incomplete` while any chunk
    /// is unfinished (or it has none), else `success`, `partial` or `error`. A cancelled run
    /// keeps `cancelled` (and when it was cancelled).
    ///
    /// The run's row is locked first, and the status derived after the lock is taken: two
    /// workers finishing the run's last two windows at once each settle it, and without the
    /// lock the one that read its chunks before the other's window committed (`incomplete`)
    /// could write last, leaving a finished run looking unfinished.
    pub async fn settle_run(&self, run_id: Uuid) -> Result<RunStatus, QueueError> {
        Ok(self
            .settle(run_id, false)
            .await?
            .unwrap_or(RunStatus::Incomplete))
    }

    /// Settles the run only if none of its chunks is unfinished (what a `qbo worker` does
    /// after each window: the run stays `running` while windows of it are left, whoever
    /// holds them). None: windows are left, the run's status is untouched.
    pub async fn settle_run_if_finished(
        &self,
        run_id: Uuid,
    ) -> Result<Option<RunStatus>, QueueError> {
        self.settle(run_id, true).await
    }

    async fn settle(
        &self,
        run_id: Uuid,
        only_finished: bool,
    ) -> Result<Option<RunStatus>, QueueError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query!(
            "SELECT run_id FROM ops.backfill_runs WHERE run_id = $1 FOR UPDATE",
            run_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        let status = sqlx::query_scalar!(
            r#"UPDATE ops.backfill_runs r
               SET status = CASE WHEN r.status = 'cancelled' THEN r.status ELSE s.status END,
                   updated_at = now(),
                   finished_at = CASE WHEN r.status = 'cancelled' THEN r.finished_at
                                      ELSE now() END
               FROM (
                   SELECT CASE
                       WHEN count(*) = 0 OR bool_or(status IN ('pending', 'running', 'paged'))
                           THEN 'incomplete'
                       WHEN bool_and(status = 'success') THEN 'success'
                       WHEN bool_or(status = 'success') THEN 'partial'
                       ELSE 'error' END AS status
                   FROM ops.backfill_report WHERE run_id = $1
               ) s
               WHERE r.run_id = $1 AND NOT ($2 AND s.status = 'incomplete')
               RETURNING r.status AS "status: RunStatus""#,
            run_id,
            only_finished,
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(status)
    }
}
