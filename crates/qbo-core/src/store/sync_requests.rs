//! `ops.sync_requests`: syncs queued for the `qbo worker`s (`qbo sync --enqueue`, the API's
//! "sync now", sync schedules). One worker slot runs a request whole under a lease it
//! heartbeats; every write of the worker is fenced on the lease owner and the attempt, so a
//! worker whose lease ran out (and whose request another worker took over) changes nothing.
//! `crate::fleet::sync_requests` is the API over this.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PgStore, StoreError};

/// Where a sync request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "ops.sync_request_status", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SyncRequestStatus {
    /// Waiting for a worker (also after a worker was drained mid-sync).
    Queued,
    /// A worker runs it under a lease (taken over by another once the lease runs out).
    Running,
    /// Every entity synced.
    Success,
    /// Some entities synced, some failed (their watermarks did not move).
    Partial,
    /// Nothing synced (the company needs a login, a first sync without a start day, ...).
    Error,
    /// Cancelled while queued, or merged into an older request for the same selection.
    Cancelled,
}

impl SyncRequestStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            SyncRequestStatus::Queued => "queued",
            SyncRequestStatus::Running => "running",
            SyncRequestStatus::Success => "success",
            SyncRequestStatus::Partial => "partial",
            SyncRequestStatus::Error => "error",
            SyncRequestStatus::Cancelled => "cancelled",
        }
    }

    /// Queued or running: not finished.
    pub fn is_open(self) -> bool {
        matches!(self, SyncRequestStatus::Queued | SyncRequestStatus::Running)
    }
}

impl std::fmt::Display for SyncRequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type, serde::Serialize)]
#[sqlx(type_name = "ops.sync_requester", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    /// `qbo sync --enqueue`.
    Cli,
    /// `qbo serve`'s API.
    Api,
    /// A sync schedule's tick.
    Schedule,
}

impl Requester {
    pub const fn as_str(self) -> &'static str {
        match self {
            Requester::Cli => "cli",
            Requester::Api => "api",
            Requester::Schedule => "schedule",
        }
    }
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `ops.sync_requests`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SyncRequestRow {
    pub request_id: Uuid,
    pub realm_id: String,
    /// `["all"]`, or entity names in registry order.
    pub entities: Vec<String>,
    pub options: serde_json::Value,
    pub status: SyncRequestStatus,
    pub requested_by: Requester,
    pub schedule_id: Option<Uuid>,
    pub requested_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub run_ids: Vec<Uuid>,
    pub error: Option<String>,
}

/// A new request, as `insert_sync_request` records it.
pub struct NewSyncRequest<'a> {
    pub realm_id: &'a str,
    pub entities: &'a [String],
    pub options: &'a serde_json::Value,
    pub requested_by: Requester,
    pub schedule_id: Option<Uuid>,
}

/// A request a worker holds: what fences its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLease {
    pub request_id: Uuid,
    pub owner: String,
    pub attempt: i32,
}

/// Per company: its requests queued and running.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompanySyncs {
    pub realm_id: String,
    pub queued: i64,
    pub running: i64,
}

impl PgStore {
    /// Records a queued request, or returns the id of the one already queued for the same
    /// company and entities (`Err`: nothing was recorded).
    pub async fn insert_sync_request(
        &self,
        request_id: Uuid,
        new: &NewSyncRequest<'_>,
    ) -> Result<Result<Uuid, Uuid>, StoreError> {
        // A queued duplicate can start running between the refused insert and the read, so
        // try again: each round either inserts or finds a queued one, barring that race.
        loop {
            let inserted = sqlx::query_scalar!(
                r#"INSERT INTO ops.sync_requests
                       (request_id, realm_id, entities, options, requested_by, schedule_id)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (realm_id, entities) WHERE status = 'queued' DO NOTHING
                   RETURNING request_id"#,
                request_id,
                new.realm_id,
                new.entities,
                new.options,
                new.requested_by as Requester,
                new.schedule_id,
            )
            .fetch_optional(self.pool())
            .await?;
            if let Some(id) = inserted {
                return Ok(Ok(id));
            }
            let existing = sqlx::query_scalar!(
                r#"SELECT request_id FROM ops.sync_requests
                   WHERE realm_id = $1 AND entities = $2 AND status = 'queued'"#,
                new.realm_id,
                new.entities,
            )
            .fetch_optional(self.pool())
            .await?;
            if let Some(id) = existing {
                return Ok(Err(id));
            }
        }
    }

    pub async fn sync_request(&self, id: Uuid) -> Result<Option<SyncRequestRow>, StoreError> {
        Ok(sqlx::query_as!(
            SyncRequestRow,
            r#"SELECT request_id, realm_id, entities, options,
                      status AS "status: SyncRequestStatus",
                      requested_by AS "requested_by: Requester", schedule_id, requested_at,
                      lease_owner, lease_expires_at, attempts, started_at, finished_at, run_ids,
                      error
               FROM ops.sync_requests WHERE request_id = $1"#,
            id,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The company's queued or running requests whose entities overlap `entities` (`all`
    /// overlaps everything), oldest first. A running request whose worker died counts until
    /// another worker has run it.
    pub async fn open_sync_requests(
        &self,
        realm_id: &str,
        entities: &[String],
    ) -> Result<Vec<SyncRequestRow>, StoreError> {
        Ok(sqlx::query_as!(
            SyncRequestRow,
            r#"SELECT request_id, realm_id, entities, options,
                      status AS "status: SyncRequestStatus",
                      requested_by AS "requested_by: Requester", schedule_id, requested_at,
                      lease_owner, lease_expires_at, attempts, started_at, finished_at, run_ids,
                      error
               FROM ops.sync_requests
               WHERE realm_id = $1 AND status IN ('queued', 'running')
                 AND (entities && $2 OR 'all' = ANY(entities) OR 'all' = ANY($2))
               ORDER BY requested_at, request_id"#,
            realm_id,
            entities,
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The latest requests (of one company, or all), newest first.
    pub async fn recent_sync_requests(
        &self,
        realm_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SyncRequestRow>, StoreError> {
        Ok(sqlx::query_as!(
            SyncRequestRow,
            r#"SELECT request_id, realm_id, entities, options,
                      status AS "status: SyncRequestStatus",
                      requested_by AS "requested_by: Requester", schedule_id, requested_at,
                      lease_owner, lease_expires_at, attempts, started_at, finished_at, run_ids,
                      error
               FROM ops.sync_requests
               WHERE $1::text IS NULL OR realm_id = $1
               ORDER BY requested_at DESC, request_id
               LIMIT $2"#,
            realm_id,
            limit,
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Cancels a queued request; a running or finished one is left as it is. The request's
    /// status afterwards (`None`: no such request).
    pub async fn cancel_sync_request(
        &self,
        id: Uuid,
    ) -> Result<Option<SyncRequestStatus>, StoreError> {
        let cancelled = sqlx::query_scalar!(
            r#"UPDATE ops.sync_requests
               SET status = 'cancelled', finished_at = now(), error = 'cancelled while queued'
               WHERE request_id = $1 AND status = 'queued'
               RETURNING status AS "status: SyncRequestStatus""#,
            id,
        )
        .fetch_optional(self.pool())
        .await?;
        if cancelled.is_some() {
            return Ok(cancelled);
        }
        Ok(sqlx::query_scalar!(
            r#"SELECT status AS "status: SyncRequestStatus" FROM ops.sync_requests
               WHERE request_id = $1"#,
            id,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// Per company with any: its requests queued and running.
    pub async fn open_syncs_by_company(
        &self,
        realm_id: Option<&str>,
    ) -> Result<Vec<CompanySyncs>, StoreError> {
        Ok(sqlx::query_as!(
            CompanySyncs,
            r#"SELECT realm_id AS "realm_id!",
                      count(*) FILTER (WHERE status = 'queued') AS "queued!",
                      count(*) FILTER (WHERE status = 'running') AS "running!"
               FROM ops.sync_requests
               WHERE status IN ('queued', 'running') AND ($1::text IS NULL OR realm_id = $1)
               GROUP BY realm_id
               ORDER BY realm_id"#,
            realm_id,
        )
        .fetch_all(self.pool())
        .await?)
    }
}

/// A request a worker took: what to run, and the lease that fences its writes.
#[derive(Debug, Clone)]
pub struct ClaimedSyncRequest {
    pub lease: SyncLease,
    pub realm_id: String,
    pub entities: Vec<String>,
    pub options: serde_json::Value,
}

/// How a worker ends a request it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEnd {
    /// Finished: success, partial or error.
    Finished(SyncRequestStatus),
    /// Handed back to the queue (the worker was drained, the company needs a login, another
    /// sync holds the company's lock): another worker runs it again, whole.
    HandedBack,
}

impl PgStore {
    /// Takes the oldest request a worker may run: queued, or running under a lease that ran
    /// out (its worker died), not in `skip_requests`, of a company not in `skip`, not paused
    /// by a 429 and `active` in `qbo companies` (any realm while that list is empty), and
    /// whose company has no other request running (under a live lease) for overlapping
    /// entities. Companies in `busy` (served by this worker now) come last.
    pub async fn claim_sync_request(
        &self,
        owner: &str,
        lease: std::time::Duration,
        skip: &[String],
        busy: &[String],
        skip_requests: &[Uuid],
    ) -> Result<Option<ClaimedSyncRequest>, StoreError> {
        let row = sqlx::query!(
            r#"WITH candidate AS (
                   SELECT q.request_id FROM ops.sync_requests q
                   WHERE (q.status = 'queued'
                          OR (q.status = 'running' AND q.lease_expires_at < now()))
                     AND NOT (q.realm_id = ANY($3::text[]))
                     AND NOT (q.request_id = ANY($5::uuid[]))
                     AND NOT EXISTS (
                         SELECT 1 FROM ops.company_throttle t
                         WHERE t.realm_id = q.realm_id AND t.paused_until > now())
                     AND (EXISTS (
                              SELECT 1 FROM ops.companies co
                              WHERE co.realm_id = q.realm_id AND co.status = 'active')
                          OR NOT EXISTS (SELECT 1 FROM ops.companies))
                     AND NOT EXISTS (
                         SELECT 1 FROM ops.sync_requests o
                         WHERE o.realm_id = q.realm_id AND o.request_id <> q.request_id
                           AND o.status = 'running' AND o.lease_expires_at >= now()
                           AND (o.entities && q.entities OR 'all' = ANY(o.entities)
                                OR 'all' = ANY(q.entities)))
                   ORDER BY q.realm_id = ANY($4::text[]), q.requested_at, q.request_id
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED
               )
               UPDATE ops.sync_requests s
               SET status = 'running', lease_owner = $1,
                   lease_expires_at = now() + make_interval(secs => $2),
                   attempts = s.attempts + 1, started_at = coalesce(s.started_at, now())
               FROM candidate c
               WHERE s.request_id = c.request_id
               RETURNING s.request_id, s.realm_id, s.entities, s.options, s.attempts"#,
            owner,
            lease.as_secs_f64(),
            skip,
            busy,
            skip_requests,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| ClaimedSyncRequest {
            lease: SyncLease {
                request_id: r.request_id,
                owner: owner.to_string(),
                attempt: r.attempts,
            },
            realm_id: r.realm_id,
            entities: r.entities,
            options: r.options,
        }))
    }

    /// Extends the lease; `false`: the request is no longer this worker's (its lease ran out
    /// and another worker took it over), so the worker stops and writes nothing more.
    pub async fn heartbeat_sync_request(
        &self,
        lease: &SyncLease,
        extend: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            r#"UPDATE ops.sync_requests
               SET lease_expires_at = now() + make_interval(secs => $4)
               WHERE request_id = $1 AND lease_owner = $2 AND attempts = $3
                 AND status = 'running'"#,
            lease.request_id,
            lease.owner,
            lease.attempt,
            extend.as_secs_f64(),
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a request this worker holds, adding the sync runs it produced; `false`: it was
    /// no longer this worker's, nothing was written. A request handed back while another
    /// was queued for the same selection meanwhile replaces that one, which is cancelled
    /// (merged): the older request keeps its place in the queue.
    pub async fn end_sync_request(
        &self,
        lease: &SyncLease,
        end: SyncEnd,
        run_ids: &[Uuid],
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let held = sqlx::query!(
            r#"SELECT realm_id, entities FROM ops.sync_requests
               WHERE request_id = $1 AND lease_owner = $2 AND attempts = $3
                 AND status = 'running'
               FOR UPDATE"#,
            lease.request_id,
            lease.owner,
            lease.attempt,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(held) = held else {
            return Ok(false);
        };
        let status = match end {
            SyncEnd::Finished(status) => status,
            SyncEnd::HandedBack => {
                sqlx::query!(
                    r#"UPDATE ops.sync_requests
                       SET status = 'cancelled', finished_at = now(),
                           error = 'merged into request ' || $3::uuid
                                   || ' (queued earlier for the same company and entities)'
                       WHERE realm_id = $1 AND entities = $2 AND status = 'queued'"#,
                    held.realm_id,
                    &held.entities,
                    lease.request_id,
                )
                .execute(&mut *tx)
                .await?;
                SyncRequestStatus::Queued
            }
        };
        sqlx::query!(
            r#"UPDATE ops.sync_requests
               SET status = $2::ops.sync_request_status, lease_owner = NULL,
                   lease_expires_at = NULL,
                   finished_at = CASE WHEN $2::ops.sync_request_status = 'queued' THEN NULL
                                      ELSE now() END,
                   run_ids = run_ids || $3, error = $4
               WHERE request_id = $1"#,
            lease.request_id,
            status as SyncRequestStatus,
            run_ids,
            error,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Per company: its open requests (queued, or running under any lease), and whether they
    /// are being skipped (the company is in `skip` or `needs_reauth`, or the request is in
    /// `skip_requests`). Paused companies' requests wait and are left out, as are removed
    /// companies' (not in a non-empty `qbo companies`). No row: no sync is left to run.
    pub async fn unfinished_sync_requests_by_company(
        &self,
        skip: &[String],
        skip_requests: &[Uuid],
    ) -> Result<Vec<(String, bool, i64)>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT q.realm_id AS "realm_id!",
                      (q.realm_id = ANY($1::text[]) OR q.request_id = ANY($2::uuid[])
                       OR co.status IS NOT DISTINCT FROM 'needs_reauth') AS "skipped!",
                      count(*) AS "n!"
               FROM ops.sync_requests q
               LEFT JOIN ops.companies co ON co.realm_id = q.realm_id
               WHERE q.status IN ('queued', 'running')
                 AND co.status IS DISTINCT FROM 'paused'
                 AND (co.realm_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM ops.companies))
               GROUP BY 1, 2
               ORDER BY 1, 2"#,
            skip,
            skip_requests,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.realm_id, r.skipped, r.n))
            .collect())
    }
}
