//! `ops.backfill_runs.run_requests`: requests a run spent outside any window (the COUNTs that
//! planned it, its changed-since sweep). A run's cost is these plus its windows' requests.

use std::collections::HashMap;

use uuid::Uuid;

use super::{PgStore, StoreError};

impl PgStore {
    /// Each of these runs' own requests (runs that do not exist are left out).
    pub async fn run_requests(&self, run_ids: &[Uuid]) -> Result<HashMap<Uuid, u64>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT run_id, run_requests FROM ops.backfill_runs WHERE run_id = ANY($1)"#,
            run_ids,
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.run_id, u64::try_from(r.run_requests).unwrap_or(0)))
            .collect())
    }
}
