//! `ops.backfill_runs` and `ops.backfill_report`: creating runs, claiming chunks under a
//! lease, recording progress, and reading the report.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PgStore, StoreError, UpsertCounts};
use crate::chunks::Window;

#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub realm_id: &'a str,
    pub entity: &'a str,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub window_field: &'a str,
    pub options: serde_json::Value,
    /// `backfill` or `sync`.
    pub kind: &'a str,
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
    pub status: String,
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChunkRow {
    pub run_id: Uuid,
    /// `backfill` or `sync` (the run's kind).
    pub kind: String,
    pub chunk_index: i32,
    pub realm_id: String,
    pub entity: String,
    pub window_start_utc: DateTime<Utc>,
    pub window_end_utc: DateTime<Utc>,
    pub status: String,
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

/// Which chunks an invocation may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// A new run or `--resume`: everything not yet `success` (pending, failed, or running
    /// under a lease that has expired because its worker died).
    Unfinished,
    /// `--retry-failed`: only chunks whose status is `error`.
    FailedOnly,
}

/// Progress of the chunk attempt, written with each page.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub expected_count: Option<i64>,
    pub row_count: i64,
    pub counts: UpsertCounts,
    pub pages: i32,
    pub requests: i32,
    pub retries: i32,
    pub passes: i32,
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
            run.kind,
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

    /// The latest backfill (never a sync) of an entity, for `--resume` and `--retry-failed`.
    pub async fn latest_run(
        &self,
        realm_id: &str,
        entity: &str,
    ) -> Result<Option<RunRow>, StoreError> {
        Ok(sqlx::query_as!(
            RunRow,
            r#"SELECT run_id, realm_id, entity, range_start, range_end, window_field, options,
                      status, kind, started_at, finished_at
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
                      status, kind, started_at, finished_at
               FROM ops.backfill_runs WHERE run_id = $1"#,
            run_id,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn mark_run_running(&self, run_id: Uuid) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE ops.backfill_runs SET status = 'running', finished_at = NULL, updated_at = now()
             WHERE run_id = $1",
            run_id
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes the next chunk this invocation has not tried yet. `SKIP LOCKED` lets several
    /// workers (tasks now, machines later) claim concurrently without ever sharing a chunk.
    pub async fn claim_chunk(
        &self,
        run_id: Uuid,
        mode: ClaimMode,
        invocation: Uuid,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<ChunkRow>, StoreError> {
        let failed_only = mode == ClaimMode::FailedOnly;
        let lease_secs = lease.as_secs_f64();
        Ok(sqlx::query_as!(
            ChunkRow,
            r#"UPDATE ops.backfill_report r
               SET status = 'running', attempts = r.attempts + 1,
                   lease_owner = $4, lease_expires_at = now() + make_interval(secs => $5),
                   last_invocation = $3, started_at = now(), finished_at = NULL,
                   error_message = NULL, expected_count = NULL, row_count = 0, inserted = 0,
                   updated = 0, skipped = 0, pages = 0
               WHERE (r.run_id, r.chunk_index) = (
                   SELECT c.run_id, c.chunk_index FROM ops.backfill_report c
                   WHERE c.run_id = $1
                     AND c.last_invocation IS DISTINCT FROM $3
                     AND CASE WHEN $2 THEN c.status = 'error'
                              ELSE c.status IN ('pending', 'error')
                                   OR (c.status IN ('running', 'paged')
                                       AND c.lease_expires_at < now())
                         END
                   ORDER BY c.chunk_index
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
               RETURNING r.run_id,
                         (SELECT kind FROM ops.backfill_runs k WHERE k.run_id = r.run_id) AS "kind!",
                         r.chunk_index, r.realm_id, r.entity, r.window_start_utc,
                         r.window_end_utc, r.status, r.attempts, r.expected_count,
                         r.planned_count, r.row_count,
                         r.inserted, r.updated, r.skipped, r.deleted, r.read_via, r.pages,
                         r.requests, r.retries, r.passes, r.started_at, r.finished_at,
                         r.error_message, r.last_intuit_tid"#,
            run_id,
            failed_only,
            invocation,
            worker,
            lease_secs,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// Chunks still held by a live lease of another worker (so `--resume` can say why it waits).
    pub async fn leased_elsewhere(
        &self,
        run_id: Uuid,
        invocation: Uuid,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ops.backfill_report
               WHERE run_id = $1 AND status IN ('running', 'paged') AND lease_expires_at >= now()
                 AND last_invocation IS DISTINCT FROM $2"#,
            run_id,
            invocation
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Extends the lease; false if another worker has taken the chunk.
    pub async fn heartbeat(
        &self,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query!(
            "UPDATE ops.backfill_report SET lease_expires_at = now() + make_interval(secs => $4)
             WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND status = 'running'",
            run_id,
            chunk,
            worker,
            lease.as_secs_f64()
        )
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records progress inside the page's transaction; fails (so the page rolls back) if the
    /// lease is no longer ours. This fencing stops a stalled worker's late writes.
    pub async fn record_progress(
        tx: &mut Transaction<'_, Postgres>,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
        p: &Progress,
        intuit_tid: Option<&str>,
    ) -> Result<(), StoreError> {
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET expected_count = $4, row_count = $5, inserted = $6, updated = $7, skipped = $8,
                   pages = $9, requests = $10, retries = $11, passes = $12,
                   last_intuit_tid = COALESCE($13, last_intuit_tid)
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND status = 'running'"#,
            run_id,
            chunk,
            worker,
            p.expected_count,
            p.row_count,
            p.counts.inserted,
            p.counts.updated,
            p.counts.skipped,
            p.pages,
            p.requests,
            p.retries,
            p.passes,
            intuit_tid,
        )
        .execute(&mut **tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::LeaseLost { run_id, chunk });
        }
        Ok(())
    }

    /// Ends the attempt as `success` or `error`, with its final counters. Idempotent for the
    /// worker that holds the chunk (it keeps `lease_owner`), so a retry after a lost reply
    /// from Postgres is harmless.
    pub async fn finish_chunk(
        &self,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
        p: &Progress,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = if error.is_some() { "error" } else { "success" };
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = $4, error_message = $5, finished_at = now(),
                   lease_expires_at = NULL, expected_count = $6, row_count = $7, inserted = $8,
                   updated = $9, skipped = $10, pages = $11, requests = $12, retries = $13,
                   passes = $14
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                 AND (status = 'running' OR status = $4)"#,
            run_id,
            chunk,
            worker,
            status,
            error,
            p.expected_count,
            p.row_count,
            p.counts.inserted,
            p.counts.updated,
            p.counts.skipped,
            p.pages,
            p.requests,
            p.retries,
            p.passes,
        )
        .execute(self.pool())
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::LeaseLost { run_id, chunk });
        }
        Ok(())
    }

    /// Gives a chunk back (interrupted by the operator) so `--resume` can take it at once.
    pub async fn release_chunk(
        &self,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                   error_message = 'interrupted', finished_at = now()
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND status = 'running'"#,
            run_id,
            chunk,
            worker
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Derives the run's status from its chunks and stores it.
    pub async fn settle_run(&self, run_id: Uuid) -> Result<String, StoreError> {
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
               RETURNING r.status"#,
            run_id
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn chunks(&self, filter: &ReportFilter) -> Result<Vec<ChunkRow>, StoreError> {
        Ok(sqlx::query_as!(
            ChunkRow,
            r#"SELECT c.run_id, r.kind, c.chunk_index, c.realm_id, c.entity, c.window_start_utc,
                      c.window_end_utc, c.status, c.attempts, c.expected_count,
                      c.planned_count, c.row_count,
                      c.inserted, c.updated, c.skipped, c.deleted, c.read_via, c.pages,
                      c.requests, c.retries, c.passes, c.started_at, c.finished_at,
                      c.error_message, c.last_intuit_tid
               FROM ops.backfill_report c JOIN ops.backfill_runs r USING (run_id)
               WHERE ($1::text IS NULL OR c.realm_id = $1)
                 AND ($2::text IS NULL OR c.entity = $2)
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
               FROM ops.backfill_runs
               WHERE ($1::text IS NULL OR realm_id = $1) AND ($2::text IS NULL OR entity = $2)
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
    pub kind: String,
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
            r#"SELECT run_id, entity, kind, started_at
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

/// How the run's changed-since sweep settles a window that was parked as `paged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagedVerdict {
    /// Nothing it read moved while it paged and it holds what COUNT(*) promised.
    Complete,
    /// Read it again (with a fresh COUNT(*), so the planned count is dropped).
    Reread,
    Failed(String),
}

/// A window a split leaves behind: its bounds and, when the planner could count it, how
/// many records COUNT(*) said it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    pub window: Window,
    pub count: Option<i64>,
}

impl PgStore {
    /// Parks a window whose pages are all loaded until the run's sweep settles it. It stays
    /// leased to this invocation (`extend_paged` keeps the lease), so a dead process's parked
    /// windows become claimable again like its running ones.
    pub async fn park_chunk(
        &self,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
        p: &Progress,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = 'paged', lease_expires_at = now() + make_interval(secs => $4),
                   expected_count = $5, row_count = $6, inserted = $7, updated = $8,
                   skipped = $9, pages = $10, requests = $11, retries = $12, passes = $13
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                 AND status = 'running'"#,
            run_id,
            chunk,
            worker,
            lease.as_secs_f64(),
            p.expected_count,
            p.row_count,
            p.counts.inserted,
            p.counts.updated,
            p.counts.skipped,
            p.pages,
            p.requests,
            p.retries,
            p.passes,
        )
        .execute(self.pool())
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::LeaseLost { run_id, chunk });
        }
        Ok(())
    }

    /// Keeps this invocation's parked windows leased while it sweeps.
    pub async fn extend_paged(
        &self,
        run_id: Uuid,
        invocation: Uuid,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
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

    /// Settles a parked window of this invocation. False when it is no longer ours (its
    /// lease ran out and another process claimed it).
    pub async fn settle_paged(
        &self,
        run_id: Uuid,
        chunk: i32,
        invocation: Uuid,
        verdict: &PagedVerdict,
    ) -> Result<bool, StoreError> {
        let (status, error) = match verdict {
            PagedVerdict::Complete => ("success", None),
            PagedVerdict::Reread => ("pending", None),
            PagedVerdict::Failed(message) => ("error", Some(message.as_str())),
        };
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = $4, error_message = $5, lease_owner = NULL, lease_expires_at = NULL,
                   finished_at = CASE WHEN $4 = 'pending' THEN finished_at ELSE now() END,
                   planned_count = CASE WHEN $4 = 'pending' THEN NULL ELSE planned_count END,
                   -- Sent back for another pass: this invocation may claim it again.
                   last_invocation = CASE WHEN $4 = 'pending' THEN NULL ELSE last_invocation END
               WHERE run_id = $1 AND chunk_index = $2 AND last_invocation = $3
                 AND status = 'paged'"#,
            run_id,
            chunk,
            invocation,
            status,
            error,
        )
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces a claimed window by the windows its counts split it into, in one
    /// transaction: the first keeps its index, the others take new ones after the run's last.
    /// What the window spent planning is moved to the run's own requests, since its row goes.
    pub async fn split_chunk(
        &self,
        run_id: Uuid,
        chunk: i32,
        worker: &str,
        leaves: &[PlannedWindow],
        spent: &Progress,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let parent = sqlx::query!(
            r#"DELETE FROM ops.backfill_report
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND status = 'running'
               RETURNING realm_id, entity, read_via"#,
            run_id,
            chunk,
            worker,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::LeaseLost { run_id, chunk })?;
        let next: i32 = sqlx::query_scalar!(
            r#"SELECT coalesce(max(chunk_index), 0) + 1 AS "n!" FROM ops.backfill_report
               WHERE run_id = $1"#,
            run_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let indexes: Vec<i32> = std::iter::once(chunk)
            .chain(next..)
            .take(leaves.len())
            .collect();
        let starts: Vec<DateTime<Utc>> = leaves.iter().map(|l| l.window.start).collect();
        let ends: Vec<DateTime<Utc>> = leaves.iter().map(|l| l.window.end).collect();
        let counts: Vec<Option<i64>> = leaves.iter().map(|l| l.count).collect();
        sqlx::query!(
            r#"INSERT INTO ops.backfill_report
                   (run_id, chunk_index, realm_id, entity, window_start_utc, window_end_utc,
                    read_via, planned_count)
               SELECT $1, i, $2, $3, s, e, $4, n
               FROM UNNEST($5::int[], $6::timestamptz[], $7::timestamptz[], $8::bigint[])
                    AS t(i, s, e, n)"#,
            run_id,
            parent.realm_id,
            parent.entity,
            parent.read_via,
            &indexes,
            &starts,
            &ends,
            &counts as &[Option<i64>],
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE ops.backfill_runs
             SET run_requests = run_requests + $2, run_retries = run_retries + $3
             WHERE run_id = $1",
            run_id,
            spent.requests,
            spent.retries,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

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
