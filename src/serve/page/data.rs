//! What the status page reads: runs with their windows counted by state (through
//! `crate::control`, as the JSON API reads them), and each company's health (status, last
//! successful sync, how far its sync watermarks lag). Reads only.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::companies::{CompaniesError, Company};
use crate::control::{Control, ControlError, RunFilter, RunRef, RunView};
use crate::queue::{RunKind, RunStatus};
use crate::store::{ChunkRow, PgStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Companies(#[from] CompaniesError),
}

/// A run and its windows counted by state, as the page shows it.
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
    /// `running` or `paged`: being loaded, or loaded and waiting for the run's sweep (a
    /// worker's parked window holds no lease: its reads wait in `ops.paged_reads`).
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

/// The latest `limit` runs of every company, latest first, as the JSON API lists them.
pub async fn runs(control: &Control, limit: i64) -> Result<Vec<RunSummary>, ControlError> {
    let filter = RunFilter {
        limit: Some(limit.to_string()),
        ..RunFilter::default()
    };
    Ok(control
        .runs(&filter)
        .await?
        .into_iter()
        .map(summary)
        .collect())
}

/// One run (a full id) and its windows in window order, as the JSON API shows it.
pub async fn run(
    control: &Control,
    run_id: Uuid,
) -> Result<(RunSummary, Vec<ChunkRow>), ControlError> {
    let detail = control.run(&RunRef::Id(run_id)).await?;
    Ok((summary(detail.run), detail.windows))
}

fn summary(r: RunView) -> RunSummary {
    RunSummary {
        run_id: r.run_id,
        realm_id: r.realm_id,
        entity: r.entity,
        kind: r.kind,
        status: r.status,
        range_start: r.range_start,
        range_end: r.range_end,
        started_at: r.started_at,
        finished_at: r.finished_at,
        windows: r.windows.total,
        succeeded: r.windows.success,
        failed: r.windows.error,
        active: r.windows.running + r.windows.paged,
        loaded: r.rows,
        expected: r.expected,
    }
}

/// Every company of `qbo companies` with its health.
pub async fn companies(store: &PgStore) -> Result<Vec<CompanyHealth>, DataError> {
    let list = crate::companies::list(store.pool()).await?;
    // Each company's newest successful sync, one index probe each
    // (backfill_runs_last_sync_idx), not a scan of every run: the page reloads every 5 s.
    let syncs: HashMap<String, DateTime<Utc>> = sqlx::query!(
        r#"SELECT c.realm_id, s.finished_at AS "at!"
             FROM ops.companies c
             CROSS JOIN LATERAL (
                 SELECT r.finished_at FROM ops.backfill_runs r
                  WHERE r.realm_id = c.realm_id AND r.kind = 'sync' AND r.status = 'success'
                    AND r.finished_at IS NOT NULL
                  ORDER BY r.finished_at DESC
                  LIMIT 1
             ) s"#
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
