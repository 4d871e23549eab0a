//! What `qbo worker`s ask Postgres: which queued run to work next (fairly across companies),
//! whether any queued work is left, and the per-company view of the queue `qbo report`
//! shows. A queued run is a backfill `qbo backfill --enqueue` planned (`"queued": true` in
//! its options); runs of in-process commands are theirs to finish (`--resume`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, StoreError};

/// A queued run a worker may take a window of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRun {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: String,
    pub options: serde_json::Value,
}

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
    /// The queued run to work next: one with a window nobody holds (`pending`, or held under
    /// a lease that ran out because its worker died), not in `skip_runs`, of a company not
    /// in `skip`, not paused by a 429 and `active` in `qbo companies` (a company removed from
    /// it is never worked; only while `qbo companies` is empty is any realm's run worked).
    /// Companies not in `busy` (those this worker already serves) come
    /// first, then the one whose window was claimed least recently (never first), then the
    /// oldest run.
    pub async fn next_queued_run(
        &self,
        skip: &[String],
        busy: &[String],
        skip_runs: &[Uuid],
    ) -> Result<Option<QueuedRun>, StoreError> {
        Ok(sqlx::query_as!(
            QueuedRun,
            r#"WITH open_runs AS (
                   SELECT DISTINCT c.run_id FROM ops.backfill_report c
                   WHERE c.status = 'pending'
                      OR (c.status IN ('running', 'paged') AND c.lease_expires_at < now())
               ),
               candidates AS (
                   SELECT DISTINCT ON (r.realm_id) r.run_id, r.realm_id, r.entity, r.options,
                          r.started_at
                   FROM ops.backfill_runs r JOIN open_runs o USING (run_id)
                   WHERE r.kind = 'backfill'
                     AND (r.options->>'queued')::boolean IS TRUE
                     AND NOT (r.realm_id = ANY($1::text[]))
                     AND NOT (r.run_id = ANY($3::uuid[]))
                     AND NOT EXISTS (
                         SELECT 1 FROM ops.company_throttle t
                         WHERE t.realm_id = r.realm_id AND t.paused_until > now())
                     AND (EXISTS (
                              SELECT 1 FROM ops.companies co
                              WHERE co.realm_id = r.realm_id AND co.status = 'active')
                          OR NOT EXISTS (SELECT 1 FROM ops.companies))
                   ORDER BY r.realm_id, r.started_at, r.run_id
               )
               SELECT c.run_id AS "run_id!", c.realm_id AS "realm_id!", c.entity AS "entity!",
                      c.options AS "options!"
               FROM candidates c
               ORDER BY c.realm_id = ANY($2::text[]),
                        (SELECT max(s.started_at) FROM ops.backfill_report s
                         WHERE s.realm_id = c.realm_id) ASC NULLS FIRST,
                        c.started_at, c.run_id
               LIMIT 1"#,
            skip,
            busy,
            skip_runs,
        )
        .fetch_optional(self.pool())
        .await?)
    }

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
                 AND r.kind = 'backfill'
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
