//! What `qbo worker`s ask Postgres besides claiming windows (`Queue::claim_next_any`, the
//! one fairness order across companies): whether any queued work is left, and the per-company view of the queue `qbo report`
//! shows. A queued run is a backfill `qbo backfill --enqueue` planned (`"queued": true` in
//! its options); runs of in-process commands are theirs to finish (`--resume`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, StoreError};

/// One company's windows across its latest runs (one per entity and kind).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompanyQueue {
    pub realm_id: String,
    pub runs: i64,
    /// `pending`: planned, waiting for a worker.
    pub queued: i64,
    /// `running` or `paged` (loaded, waiting for the run's sweep).
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// When a window of the company was last claimed.
    pub last_claimed_at: Option<DateTime<Utc>>,
}

impl PgStore {
    /// Per company: its queued runs' unsettled windows (`pending`, `running`, `paged`), and
    /// whether they are being skipped (the company is in `skip` or `needs_reauth`, or the
    /// window's run is in `skip_runs`). Paused companies are left out: they wait on purpose;
    /// so are removed ones (not in a non-empty `qbo companies`): no worker takes them.
    /// No row means the queue is empty; rows all skipped mean only a human can empty it.
    pub async fn unfinished_queued_by_company(
        &self,
        skip: &[String],
        skip_runs: &[Uuid],
    ) -> Result<Vec<(String, bool, i64)>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT r.realm_id AS "realm_id!",
                      (r.realm_id = ANY($1::text[]) OR r.run_id = ANY($2::uuid[])
                       OR co.status IS NOT DISTINCT FROM 'needs_reauth') AS "skipped!",
                      count(*) AS "n!"
               FROM ops.backfill_report c
               JOIN ops.backfill_runs r USING (run_id)
               LEFT JOIN ops.companies co ON co.realm_id = r.realm_id
               WHERE c.status IN ('pending', 'running', 'paged')
                 AND r.status IN ('running', 'incomplete')
                 AND r.kind IN ('backfill', 'report')
                 AND (r.options->>'queued')::boolean IS TRUE
                 AND co.status IS DISTINCT FROM 'paused'
                 AND (co.realm_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM ops.companies))
               GROUP BY 1, 2
               ORDER BY 1, 2"#,
            skip,
            skip_runs,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.realm_id, r.skipped, r.n))
            .collect())
    }

    /// Per company (or only `realm_id`'s): its windows by state across its latest run of
    /// each entity and kind, as `qbo report` shows runs by default.
    pub async fn company_queues(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<CompanyQueue>, StoreError> {
        Ok(sqlx::query_as!(
            CompanyQueue,
            r#"WITH latest AS (
                   SELECT DISTINCT ON (realm_id, entity, kind) run_id, realm_id
                   FROM ops.backfill_runs
                   WHERE $1::text IS NULL OR realm_id = $1
                   ORDER BY realm_id, entity, kind, started_at DESC
               )
               SELECT l.realm_id AS "realm_id!",
                      count(DISTINCT l.run_id) AS "runs!",
                      count(*) FILTER (WHERE c.status = 'pending') AS "queued!",
                      count(*) FILTER (WHERE c.status IN ('running', 'paged')) AS "running!",
                      count(*) FILTER (WHERE c.status = 'success') AS "succeeded!",
                      count(*) FILTER (WHERE c.status = 'error') AS "failed!",
                      max(c.started_at) AS last_claimed_at
               FROM latest l JOIN ops.backfill_report c USING (run_id)
               GROUP BY l.realm_id
               ORDER BY l.realm_id"#,
            realm_id,
        )
        .fetch_all(self.pool())
        .await?)
    }
}
