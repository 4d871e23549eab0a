//! `ops.backfill_invocations`: what a `qbo backfill all` with a range asked for, so that
//! `--resume` finishes every entity of it, not only those the killed process had reached.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{PgStore, StoreError};

/// One `qbo backfill all --start .. --end ..`.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub invocation_id: Uuid,
    pub realm_id: String,
    /// Every entity it set out to load, in the order it loads them.
    pub entities: Vec<String>,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub window_field: String,
    /// Calendar windows (`--chunk-days`); `None` when windows are planned by count.
    pub chunk_days: Option<i32>,
    /// Pages per window when planned by count.
    pub window_pages: Option<i32>,
    pub page_size: i32,
    pub started_at: DateTime<Utc>,
}

impl PgStore {
    pub async fn create_invocation(&self, inv: &Invocation) -> Result<(), StoreError> {
        sqlx::query!(
            r#"INSERT INTO ops.backfill_invocations
                   (invocation_id, realm_id, entities, range_start, range_end, window_field,
                    chunk_days, window_pages, page_size)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
            inv.invocation_id,
            inv.realm_id,
            &inv.entities,
            inv.range_start,
            inv.range_end,
            inv.window_field,
            inv.chunk_days,
            inv.window_pages,
            inv.page_size,
        )
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest `backfill all` of a realm, for `all --resume` and `all --retry-failed`.
    pub async fn latest_invocation(
        &self,
        realm_id: &str,
    ) -> Result<Option<Invocation>, StoreError> {
        Ok(sqlx::query_as!(
            Invocation,
            r#"SELECT invocation_id, realm_id, entities, range_start, range_end, window_field,
                      chunk_days, window_pages, page_size, started_at
               FROM ops.backfill_invocations
               WHERE realm_id = $1
               ORDER BY started_at DESC
               LIMIT 1"#,
            realm_id,
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The latest run of each entity that an invocation created, as (entity, run id).
    pub async fn invocation_runs(
        &self,
        invocation_id: Uuid,
    ) -> Result<Vec<(String, Uuid)>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT DISTINCT ON (entity) entity, run_id
               FROM ops.backfill_runs
               WHERE options ? 'invocation' AND options->>'invocation' = $1::uuid::text
               ORDER BY entity, started_at DESC"#,
            invocation_id,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| (r.entity, r.run_id)).collect())
    }
}
