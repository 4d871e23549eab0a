//! `ops.sync_watermarks` and the report rows a sync writes (one per CDC read, window load or
//! reconciliation), next to the rows they describe.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{PgStore, StoreError, UpsertCounts};
use crate::chunks::Window;
use crate::queue::ChunkStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub watermark_utc: DateTime<Utc>,
    pub source: String,
    pub needs_reconcile: bool,
}

/// A finished step of a sync, written as one report row.
#[derive(Debug, Clone)]
pub struct StepRow<'a> {
    pub run_id: Uuid,
    pub chunk_index: i32,
    pub realm_id: &'a str,
    pub entity: &'a str,
    pub window: Window,
    pub read_via: &'a str,
    pub expected_count: Option<i64>,
    pub row_count: i64,
    pub counts: UpsertCounts,
    pub deleted: i64,
    pub pages: i32,
    pub requests: i32,
    pub retries: i32,
    pub error: Option<&'a str>,
    pub intuit_tid: Option<&'a str>,
}

impl PgStore {
    pub async fn watermark(
        &self,
        realm_id: &str,
        entity: &str,
    ) -> Result<Option<Watermark>, StoreError> {
        Ok(sqlx::query_as!(
            Watermark,
            "SELECT watermark_utc, source, needs_reconcile FROM ops.sync_watermarks
             WHERE realm_id = $1 AND entity = $2",
            realm_id,
            entity
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The watermarks of several entities in one query, in the order asked (None: never set).
    pub async fn watermarks(
        &self,
        realm_id: &str,
        entities: &[&str],
    ) -> Result<Vec<Option<Watermark>>, StoreError> {
        let names: Vec<String> = entities.iter().map(|e| e.to_string()).collect();
        let rows = sqlx::query!(
            "SELECT entity, watermark_utc, source, needs_reconcile FROM ops.sync_watermarks
             WHERE realm_id = $1 AND entity = ANY($2)",
            realm_id,
            &names
        )
        .fetch_all(self.pool())
        .await?;
        Ok(entities
            .iter()
            .map(|e| {
                rows.iter().find(|r| r.entity == *e).map(|r| Watermark {
                    watermark_utc: r.watermark_utc,
                    source: r.source.clone(),
                    needs_reconcile: r.needs_reconcile,
                })
            })
            .collect())
    }

    /// Moves a sync's watermark inside the transaction that commits the last rows it covers.
    /// It never moves back; a sync that reconciled clears `needs_reconcile`.
    pub async fn advance_watermark(
        tx: &mut Transaction<'_, Postgres>,
        realm_id: &str,
        entity: &str,
        watermark: DateTime<Utc>,
        run_id: Uuid,
        reconciled: bool,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            r#"INSERT INTO ops.sync_watermarks (realm_id, entity, watermark_utc, run_id, source)
               VALUES ($1, $2, $3, $4, 'sync')
               ON CONFLICT (realm_id, entity) DO UPDATE SET
                   watermark_utc = GREATEST(ops.sync_watermarks.watermark_utc, EXCLUDED.watermark_utc),
                   run_id = EXCLUDED.run_id, source = 'sync', updated_at = now(),
                   needs_reconcile = ops.sync_watermarks.needs_reconcile AND NOT $5"#,
            realm_id,
            entity,
            watermark,
            run_id,
            reconciled,
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// A backfill's watermark: only where there is none yet (an existing one already says
    /// what sync has covered, deletes included). Returns whether it was set.
    pub async fn seed_watermark(
        &self,
        realm_id: &str,
        entity: &str,
        watermark: DateTime<Utc>,
        run_id: Uuid,
        needs_reconcile: bool,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query!(
            r#"INSERT INTO ops.sync_watermarks
                   (realm_id, entity, watermark_utc, run_id, source, needs_reconcile)
               VALUES ($1, $2, $3, $4, 'backfill', $5)
               ON CONFLICT (realm_id, entity) DO NOTHING"#,
            realm_id,
            entity,
            watermark,
            run_id,
            needs_reconcile,
        )
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds pending window rows to a sync run, for the backfill engine to claim.
    pub async fn add_windows(
        &self,
        run_id: Uuid,
        realm_id: &str,
        entity: &str,
        first_index: i32,
        windows: &[Window],
        read_via: &str,
    ) -> Result<(), StoreError> {
        super::runs::WindowRows {
            run_id,
            realm_id,
            entity,
            first_index,
            read_via,
        }
        .insert(self.pool(), windows)
        .await
    }

    /// Writes a finished step (success or error) as a report row, in the caller's transaction
    /// when it goes with rows, so the report never claims rows that are not there.
    pub async fn insert_step<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        row: &StepRow<'_>,
    ) -> Result<(), StoreError> {
        let status = if row.error.is_some() {
            ChunkStatus::Error
        } else {
            ChunkStatus::Success
        };
        sqlx::query!(
            r#"INSERT INTO ops.backfill_report
                   (run_id, chunk_index, realm_id, entity, window_start_utc, window_end_utc,
                    status, attempts, expected_count, row_count, inserted, updated, skipped,
                    deleted, read_via, pages, requests, retries, passes, started_at,
                    finished_at, error_message, last_intuit_tid)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $11, $12, $13, $14, $15,
                       $16, $17, 1, now(), now(), $18, $19)"#,
            row.run_id,
            row.chunk_index,
            row.realm_id,
            row.entity,
            row.window.start,
            row.window.end,
            status.as_str(),
            row.expected_count,
            row.row_count,
            row.counts.inserted,
            row.counts.updated,
            row.counts.skipped,
            row.deleted,
            row.read_via,
            row.pages,
            row.requests,
            row.retries,
            row.error,
            row.intuit_tid,
        )
        .execute(executor)
        .await?;
        Ok(())
    }
}
