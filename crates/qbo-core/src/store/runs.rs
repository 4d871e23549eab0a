//! `ops.backfill_runs` and `ops.backfill_report`: creating runs and reading them and the
//! report. Claiming chunks and changing their state is `crate::queue`'s.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{PgStore, StoreError};
use crate::chunks::Window;
// The state enums are plain types with no dependencies (a leaf of the queue module); the
// queue's operations on these tables live in `crate::queue`.
use crate::queue::{ChunkStatus, RunKind, RunStatus};

#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub realm_id: &'a str,
    pub entity: &'a str,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub window_field: &'a str,
    pub options: serde_json::Value,
    pub kind: RunKind,
    /// How the windows are read: `query` (date windows) or `whole`.
    pub read_via: &'a str,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: String,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub window_field: String,
    pub options: serde_json::Value,
    pub status: RunStatus,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChunkRow {
    pub run_id: Uuid,
    /// The run's kind.
    pub kind: RunKind,
    pub chunk_index: i32,
    pub realm_id: String,
    pub entity: String,
    pub window_start_utc: DateTime<Utc>,
    pub window_end_utc: DateTime<Utc>,
    pub status: ChunkStatus,
    pub attempts: i32,
    pub expected_count: Option<i64>,
    /// What the planner's COUNT(*) said the window held (windows planned by count).
    pub planned_count: Option<i64>,
    pub row_count: i64,
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
    /// Rows this chunk marked deleted.
    pub deleted: i64,
    /// How the records were read: query, whole, cdc or reconcile.
    pub read_via: String,
    pub pages: i32,
    pub requests: i32,
    pub retries: i32,
    pub passes: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
    pub last_intuit_tid: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct ReportFilter {
    pub realm_id: Option<String>,
    pub entity: Option<String>,
    pub run_id: Option<Uuid>,
}

/// Pending report rows for windows of a run, numbered from `first_index`.
pub(super) struct WindowRows<'a> {
    pub run_id: Uuid,
    pub realm_id: &'a str,
    pub entity: &'a str,
    pub first_index: i32,
    pub read_via: &'a str,
}

impl WindowRows<'_> {
    pub async fn insert<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        windows: &[Window],
    ) -> Result<(), StoreError> {
        let indexes: Vec<i32> = (0..windows.len() as i32)
            .map(|i| self.first_index + i)
            .collect();
        let starts: Vec<DateTime<Utc>> = windows.iter().map(|w| w.start).collect();
        let ends: Vec<DateTime<Utc>> = windows.iter().map(|w| w.end).collect();
        sqlx::query!(
            r#"INSERT INTO ops.backfill_report
                   (run_id, chunk_index, realm_id, entity, window_start_utc, window_end_utc,
                    read_via)
               SELECT $1, i, $2, $3, s, e, $7
               FROM UNNEST($4::int[], $5::timestamptz[], $6::timestamptz[]) AS t(i, s, e)"#,
            self.run_id,
            self.realm_id,
            self.entity,
            &indexes,
            &starts,
            &ends,
            self.read_via,
        )
        .execute(executor)
        .await?;
        Ok(())
    }
}

impl PgStore {
    /// Creates the run and one `pending` report row per window, atomically.
    pub async fn create_run(
        &self,
        run: &NewRun<'_>,
        windows: &[Window],
    ) -> Result<Uuid, StoreError> {
        let run_id = Uuid::new_v4();
        let mut tx = self.pool().begin().await?;
        sqlx::query!(
            r#"INSERT INTO ops.backfill_runs
                   (run_id, realm_id, entity, range_start, range_end, window_field, options, kind)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
            run_id,
            run.realm_id,
            run.entity,
            run.range_start,
            run.range_end,
            run.window_field,
            run.options,
            run.kind.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        let rows = WindowRows {
            run_id,
            realm_id: run.realm_id,
            entity: run.entity,
            first_index: 0,
            read_via: run.read_via,
        };
        rows.insert(&mut *tx, windows).await?;
        tx.commit().await?;
        Ok(run_id)
    }

    /// Creates a run whose windows name their own entity (a report run: each window is one
    /// report's piece, `report:<ReportName>`), all `pending`, atomically.
    pub async fn create_run_of_windows(
        &self,
        run: &NewRun<'_>,
        windows: &[(String, Window)],
    ) -> Result<Uuid, StoreError> {
        let run_id = Uuid::new_v4();
        let mut tx = self.pool().begin().await?;
        sqlx::query!(
            r#"INSERT INTO ops.backfill_runs
                   (run_id, realm_id, entity, range_start, range_end, window_field, options, kind)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
            run_id,
            run.realm_id,
            run.entity,
            run.range_start,
            run.range_end,
            run.window_field,
            run.options,
            run.kind.as_str(),
        )
        .execute(&mut *tx)
        .await?;
        let indexes: Vec<i32> = (0..windows.len() as i32).collect();
        let entities: Vec<String> = windows.iter().map(|(e, _)| e.clone()).collect();
        let starts: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.start).collect();
        let ends: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.end).collect();
        sqlx::query!(
            r#"INSERT INTO ops.backfill_report
                   (run_id, chunk_index, realm_id, entity, window_start_utc, window_end_utc,
                    read_via)
               SELECT $1, i, $2, e, s, t, $7
               FROM UNNEST($3::int[], $4::text[], $5::timestamptz[], $6::timestamptz[])
                    AS x(i, e, s, t)"#,
            run_id,
            run.realm_id,
            &indexes,
            &entities,
            &starts,
            &ends,
            run.read_via,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(run_id)
    }

    /// The latest run of `kind` named `entity` of a company (a report run's entity names
    /// its reports, e.g. `report:all`), for `--resume` and `--retry-failed`.
    pub async fn latest_run_of_kind(
        &self,
        realm_id: &str,
        entity: &str,
        kind: RunKind,
    ) -> Result<Option<RunRow>, StoreError> {
        Ok(sqlx::query_as!(
            RunRow,
            r#"SELECT run_id, realm_id, entity, range_start, range_end, window_field, options,
                      status AS "status: RunStatus", kind AS "kind: RunKind", started_at,
                      finished_at
               FROM ops.backfill_runs
               WHERE realm_id = $1 AND entity = $2 AND kind = $3
               ORDER BY started_at DESC
               LIMIT 1"#,
            realm_id,
            entity,
            kind.as_str(),
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The latest backfill (never a sync) of an entity, for `--resume` and `--retry-failed`.
    pub async fn latest_run(
        &self,
        realm_id: &str,
        entity: &str,
    ) -> Result<Option<RunRow>, StoreError> {
        Ok(sqlx::query_as!(
            RunRow,
            r#"SELECT run_id, realm_id, entity, range_start, range_end, window_field, options,
                      status AS "status: RunStatus", kind AS "kind: RunKind", started_at,
                      finished_at
               FROM ops.backfill_runs
               WHERE realm_id = $1 AND entity = $2 AND kind = 'backfill'
               ORDER BY started_at DESC
               LIMIT 1"#,
            realm_id,
            entity,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn run(&self, run_id: Uuid) -> Result<Option<RunRow>, StoreError> {
        Ok(sqlx::query_as!(
            RunRow,
            r#"SELECT run_id, realm_id, entity, range_start, range_end, window_field, options,
                      status AS "status: RunStatus", kind AS "kind: RunKind", started_at,
                      finished_at
               FROM ops.backfill_runs WHERE run_id = $1"#,
            run_id,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn chunks(&self, filter: &ReportFilter) -> Result<Vec<ChunkRow>, StoreError> {
        Ok(sqlx::query_as!(
            ChunkRow,
            r#"SELECT c.run_id, r.kind AS "kind: RunKind", c.chunk_index, c.realm_id, c.entity,
                      c.window_start_utc, c.window_end_utc, c.status AS "status: ChunkStatus",
                      c.attempts, c.expected_count,
                      c.planned_count, c.row_count,
                      c.inserted, c.updated, c.skipped, c.deleted, c.read_via, c.pages,
                      c.requests, c.retries, c.passes, c.started_at, c.finished_at,
                      c.error_message, c.last_intuit_tid
               FROM ops.backfill_report c JOIN ops.backfill_runs r USING (run_id)
               WHERE ($1::text IS NULL OR c.realm_id = $1)
                 -- A window's entity, or its run's (`report:all` names a run of reports).
                 AND ($2::text IS NULL OR c.entity = $2 OR r.entity = $2)
                 AND ($3::uuid IS NULL OR c.run_id = $3)
               ORDER BY c.entity, r.started_at, c.run_id, c.window_start_utc, c.chunk_index"#,
            filter.realm_id,
            filter.entity,
            filter.run_id,
        )
        .fetch_all(self.pool())
        .await?)
    }
}

impl PgStore {
    /// The latest backfill and the latest sync of each entity of a realm (or of every realm),
    /// for `qbo report`'s default view.
    pub async fn latest_run_ids(
        &self,
        realm_id: Option<&str>,
        entity: Option<&str>,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT DISTINCT ON (realm_id, entity, kind) run_id AS "run_id!"
               FROM ops.backfill_runs r
               WHERE ($1::text IS NULL OR realm_id = $1)
                 AND ($2::text IS NULL OR entity = $2
                      -- A report run of several reports holds windows of `report:<Name>`.
                      OR (kind = 'report' AND EXISTS (
                          SELECT 1 FROM ops.backfill_report c
                          WHERE c.run_id = r.run_id AND c.entity = $2)))
               ORDER BY realm_id, entity, kind, started_at DESC"#,
            realm_id,
            entity
        )
        .fetch_all(self.pool())
        .await?)
    }
}

/// A run whose id starts with a prefix someone typed (`qbo report` prints 8 characters).
#[derive(Debug, Clone)]
pub struct RunMatch {
    pub run_id: Uuid,
    pub entity: String,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
}

impl PgStore {
    /// Runs whose id, as hex digits without dashes, starts with `hex` (lowercase hex digits,
    /// no dashes). At most `limit`, the newest first.
    pub async fn runs_with_prefix(
        &self,
        hex: &str,
        limit: i64,
    ) -> Result<Vec<RunMatch>, StoreError> {
        Ok(sqlx::query_as!(
            RunMatch,
            r#"SELECT run_id, entity, kind AS "kind: RunKind", started_at
               FROM ops.backfill_runs
               WHERE replace(run_id::text, '-', '') LIKE $1 || '%'
               ORDER BY started_at DESC
               LIMIT $2"#,
            hex,
            limit,
        )
        .fetch_all(self.pool())
        .await?)
    }
}

impl PgStore {
    /// The requests (and their retries) the run spent outside any window.
    pub async fn run_own_requests(&self, run_id: Uuid) -> Result<(i64, i64), StoreError> {
        let r = sqlx::query!(
            r#"SELECT run_requests::bigint AS "requests!", run_retries::bigint AS "retries!"
               FROM ops.backfill_runs WHERE run_id = $1"#,
            run_id
        )
        .fetch_one(self.pool())
        .await?;
        Ok((r.requests, r.retries))
    }

    /// Adds requests (and their retries) the run spent outside any window (its sweep).
    pub async fn add_run_requests(
        &self,
        run_id: Uuid,
        requests: i32,
        retries: i32,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE ops.backfill_runs
             SET run_requests = run_requests + $2, run_retries = run_retries + $3
             WHERE run_id = $1",
            run_id,
            requests,
            retries,
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
