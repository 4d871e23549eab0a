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
