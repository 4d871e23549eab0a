//! What a sync did to one entity, read back from its run's report rows.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SyncError, Syncer, Target};
use crate::client::ChangeSource;
use crate::queue::{ChunkStatus, RunStatus};
use crate::store::{ChunkRow, ReportFilter};

/// What one sync did to one entity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncSummary {
    pub run_id: Uuid,
    pub entity: &'static str,
    pub status: RunStatus,
    /// How the rows were read, in order, e.g. `cdc` or `query+reconcile`.
    pub via: String,
    pub from: DateTime<Utc>,
    pub watermark: Option<DateTime<Utc>>,
    pub rows: i64,
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
    pub deleted: i64,
    /// Pages read (for `exchange_rates`, the days whose rates QBO answered).
    pub pages: i64,
    pub requests: i64,
    pub retries: i64,
    pub failed_steps: usize,
    pub interrupted: bool,
}

impl<S: ChangeSource + 'static> Syncer<S> {
    pub(super) async fn summarize(
        &self,
        t: &Target,
        realm_id: &str,
    ) -> Result<SyncSummary, SyncError> {
        let watermark = self
            .store
            .watermark(realm_id, t.entity.cli_name)
            .await?
            .map(|w| w.watermark_utc);
        self.summarize_run(t.run_id, t.entity.cli_name, t.from, watermark)
            .await
    }

    /// Settles run `run_id` of `entity` and sums its report rows.
    pub(super) async fn summarize_run(
        &self,
        run_id: Uuid,
        entity: &'static str,
        from: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> Result<SyncSummary, SyncError> {
        let status = self.queue.settle_run(run_id).await?;
        let rows = self
            .store
            .chunks(&ReportFilter {
                run_id: Some(run_id),
                ..Default::default()
            })
            .await?;
        let mut via: Vec<&str> = Vec::new();
        for r in &rows {
            if !via.contains(&r.read_via.as_str()) {
                via.push(&r.read_via);
            }
        }
        let sum = |f: fn(&ChunkRow) -> i64| rows.iter().map(f).sum::<i64>();
        Ok(SyncSummary {
            run_id,
            entity,
            status,
            via: if via.is_empty() {
                "nothing".into()
            } else {
                via.join("+")
            },
            from,
            watermark,
            rows: sum(|c| c.row_count),
            inserted: sum(|c| c.inserted),
            updated: sum(|c| c.updated),
            skipped: sum(|c| c.skipped),
            deleted: sum(|c| c.deleted),
            pages: sum(|c| i64::from(c.pages)),
            requests: sum(|c| c.requests as i64),
            retries: sum(|c| c.retries as i64),
            failed_steps: rows
                .iter()
                .filter(|c| c.status == ChunkStatus::Error)
                .count(),
            interrupted: self.cancel.is_cancelled(),
        })
    }
}
