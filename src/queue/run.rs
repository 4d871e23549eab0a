//! A run's own state: running while workers load it, then settled from its chunks.

use uuid::Uuid;

use super::{Queue, QueueError, RunStatus};

impl Queue {
    pub async fn mark_run_running(&self, run_id: Uuid) -> Result<(), QueueError> {
        sqlx::query!(
            "UPDATE ops.backfill_runs SET status = 'running', finished_at = NULL, updated_at = now()
             WHERE run_id = $1",
            run_id
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Derives the run's status from its chunks and stores it: `incomplete` while any chunk
    /// is unfinished (or it has none), else `success`, `partial` or `error`.
    pub async fn settle_run(&self, run_id: Uuid) -> Result<RunStatus, QueueError> {
        Ok(sqlx::query_scalar!(
            r#"UPDATE ops.backfill_runs r
               SET status = s.status, updated_at = now(),
                   finished_at = now()
               FROM (
                   SELECT CASE
                       WHEN count(*) = 0 OR bool_or(status IN ('pending', 'running', 'paged'))
                           THEN 'incomplete'
                       WHEN bool_and(status = 'success') THEN 'success'
                       WHEN bool_or(status = 'success') THEN 'partial'
                       ELSE 'error' END AS status
                   FROM ops.backfill_report WHERE run_id = $1
               ) s
               WHERE r.run_id = $1
               RETURNING r.status AS "status: RunStatus""#,
            run_id
        )
        .fetch_one(self.pool())
        .await?)
    }
}
