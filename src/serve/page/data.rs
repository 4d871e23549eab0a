//! What the status page reads: runs with their windows counted by state, and each
//! company's health (status, last successful sync, how far its sync watermarks lag).
//! Reads only; every change goes through the same operations as the JSON API.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::companies::{CompaniesError, Company};
use crate::queue::{RunKind, RunStatus};
use crate::store::{PgStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Companies(#[from] CompaniesError),
}

/// A run and its windows counted by state.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub windows: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// `running` or `paged`: held by a worker now.
    pub active: i64,
    pub loaded: i64,
    pub expected: i64,
}

/// A company, when it last synced successfully and its sync watermarks (entity, watermark).
#[derive(Debug, Clone)]
pub struct CompanyHealth {
    pub company: Company,
    pub last_sync: Option<DateTime<Utc>>,
    pub watermarks: Vec<(String, DateTime<Utc>)>,
}

impl CompanyHealth {
    /// The entity whose watermark is oldest, and its watermark.
    pub fn worst_lag(&self) -> Option<&(String, DateTime<Utc>)> {
        self.watermarks.iter().min_by_key(|(_, at)| *at)
    }
}

/// The latest `limit` runs of every company (or of `realm_id`), latest first.
pub async fn runs(
    store: &PgStore,
    realm_id: Option<&str>,
    limit: i64,
) -> Result<Vec<RunSummary>, StoreError> {
    Ok(sqlx::query_as!(
        RunSummary,
        r#"SELECT r.run_id, r.realm_id, r.entity, r.kind AS "kind: RunKind",
                  r.status AS "status: RunStatus", r.range_start, r.range_end, r.started_at,
                  r.finished_at,
                  count(c.chunk_index) AS "windows!",
                  count(*) FILTER (WHERE c.status = 'success') AS "succeeded!",
                  count(*) FILTER (WHERE c.status = 'error') AS "failed!",
                  count(*) FILTER (WHERE c.status IN ('running', 'paged')) AS "active!",
                  COALESCE(sum(c.row_count), 0)::bigint AS "loaded!",
                  COALESCE(sum(c.expected_count), 0)::bigint AS "expected!"
             FROM ops.backfill_runs r
             LEFT JOIN ops.backfill_report c USING (run_id)
            WHERE ($1::text IS NULL OR r.realm_id = $1)
            GROUP BY r.run_id
            ORDER BY r.started_at DESC, r.run_id
            LIMIT $2"#,
        realm_id,
        limit,
    )
    .fetch_all(store.pool())
    .await?)
}

/// One run counted as `runs` counts it.
pub async fn run(store: &PgStore, run_id: Uuid) -> Result<Option<RunSummary>, StoreError> {
    Ok(sqlx::query_as!(
        RunSummary,
        r#"SELECT r.run_id, r.realm_id, r.entity, r.kind AS "kind: RunKind",
                  r.status AS "status: RunStatus", r.range_start, r.range_end, r.started_at,
                  r.finished_at,
                  count(c.chunk_index) AS "windows!",
                  count(*) FILTER (WHERE c.status = 'success') AS "succeeded!",
                  count(*) FILTER (WHERE c.status = 'error') AS "failed!",
                  count(*) FILTER (WHERE c.status IN ('running', 'paged')) AS "active!",
                  COALESCE(sum(c.row_count), 0)::bigint AS "loaded!",
                  COALESCE(sum(c.expected_count), 0)::bigint AS "expected!"
             FROM ops.backfill_runs r
             LEFT JOIN ops.backfill_report c USING (run_id)
            WHERE r.run_id = $1
            GROUP BY r.run_id"#,
        run_id,
    )
    .fetch_optional(store.pool())
    .await?)
}

/// Every company of `qbo companies` with its health.
pub async fn companies(store: &PgStore) -> Result<Vec<CompanyHealth>, DataError> {
    let list = crate::companies::list(store.pool()).await?;
    let syncs: HashMap<String, DateTime<Utc>> = sqlx::query!(
        r#"SELECT realm_id, max(finished_at) AS "at!"
             FROM ops.backfill_runs
            WHERE kind = 'sync' AND status = 'success' AND finished_at IS NOT NULL
            GROUP BY realm_id"#
    )
    .fetch_all(store.pool())
    .await
    .map_err(StoreError::from)?
    .into_iter()
    .map(|r| (r.realm_id, r.at))
    .collect();
    let mut marks: HashMap<String, Vec<(String, DateTime<Utc>)>> = HashMap::new();
    for r in sqlx::query!(
        "SELECT realm_id, entity, watermark_utc FROM ops.sync_watermarks ORDER BY realm_id, entity"
    )
    .fetch_all(store.pool())
    .await
    .map_err(StoreError::from)?
    {
        marks
            .entry(r.realm_id)
            .or_default()
            .push((r.entity, r.watermark_utc));
    }
    Ok(list
        .into_iter()
        .map(|company| CompanyHealth {
            last_sync: syncs.get(&company.realm_id).copied(),
            watermarks: marks.remove(&company.realm_id).unwrap_or_default(),
            company,
        })
        .collect())
}
