//! Volumetry: QBO's `COUNT(*)` against the raw table, window by window. This is the seed
//! pipeline's manual check ("count in QBO, count in Postgres, compare"), done by the tool.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::chunks::{self, DateRange, PlanError, Window, WindowField};
use crate::client::{ClientError, QuerySource, RequestCounters};
use crate::entities::Entity;
use crate::query::Query;
use crate::store::PgStore;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("counting in QBO")]
    Qbo(#[source] ClientError),
    #[error("counting in the raw table")]
    Db(#[source] sqlx::Error),
}

/// One window's two counts.
#[derive(Debug, Clone, Serialize)]
pub struct WindowCount {
    pub entity: &'static str,
    pub window_start_utc: DateTime<Utc>,
    pub window_end_utc: DateTime<Utc>,
    /// Read whole: the window stands for the entire entity.
    pub whole: bool,
    pub qbo: u64,
    /// Rows in the raw table that exist in QBO (not marked deleted).
    pub raw: i64,
}

impl WindowCount {
    pub fn matches(&self) -> bool {
        self.raw >= 0 && self.raw as u64 == self.qbo
    }

    /// What an operator should make of a mismatch.
    pub fn hint(&self) -> &'static str {
        if self.matches() {
            ""
        } else if (self.raw as u64) < self.qbo {
            "raw is missing records: backfill this window again (or run qbo sync)"
        } else {
            "raw has records QBO no longer has here (edited since, or deleted): run qbo sync"
        }
    }
}

/// The windows `qbo verify` compares: `range` cut into `chunk_days`, or one window for an
/// entity QBO cannot filter by time.
pub fn plan(entity: &Entity, range: DateRange, chunk_days: i64) -> Result<Vec<Window>, PlanError> {
    if entity.is_whole() {
        Ok(vec![chunks::whole_range(range)])
    } else {
        chunks::plan(range, chunk_days)
    }
}

/// The first and last day the raw table holds for this entity: the default range to verify.
pub async fn raw_span(
    store: &PgStore,
    entity: &Entity,
    realm_id: &str,
) -> Result<Option<(NaiveDate, NaiveDate)>, VerifyError> {
    let sql = format!(
        "SELECT min(last_updated_utc), max(last_updated_utc) FROM {} WHERE realm_id = $1",
        entity.table
    );
    let (min, max): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(&sql)
        .bind(realm_id)
        .fetch_one(store.pool())
        .await
        .map_err(VerifyError::Db)?;
    Ok(min.zip(max).map(|(a, b)| (a.date_naive(), b.date_naive())))
}

/// Counts every window on both sides. Windows filter on LastUpdatedTime, so a record
/// edited after it was loaded counts in a later window in QBO and an earlier one in raw:
/// a mismatch then means "not current", which `qbo sync` fixes.
pub async fn count_windows<S: QuerySource>(
    source: &S,
    store: &PgStore,
    entity: &'static Entity,
    windows: &[Window],
    counters: &mut RequestCounters,
) -> Result<Vec<WindowCount>, VerifyError> {
    let raw = raw_counts(store, entity, source.realm_id(), windows).await?;
    let mut out = Vec::with_capacity(windows.len());
    for (w, raw) in windows.iter().zip(raw) {
        let query = if entity.is_whole() {
            Query::count(entity)
        } else {
            w.constrain(Query::count(entity), WindowField::LastUpdated)
        };
        let answer = source
            .fetch_count(&query.render(), counters)
            .await
            .map_err(VerifyError::Qbo)?;
        out.push(WindowCount {
            entity: entity.cli_name,
            window_start_utc: w.start,
            window_end_utc: w.end,
            whole: entity.is_whole(),
            qbo: answer.value.0,
            raw,
        });
    }
    Ok(out)
}

/// All windows' raw counts in one statement.
async fn raw_counts(
    store: &PgStore,
    entity: &Entity,
    realm_id: &str,
    windows: &[Window],
) -> Result<Vec<i64>, VerifyError> {
    let time_filter = if entity.is_whole() {
        ""
    } else {
        "AND r.last_updated_utc >= w.s AND r.last_updated_utc < w.e"
    };
    let sql = format!(
        r#"
SELECT w.i, count(r.id)
FROM UNNEST($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
LEFT JOIN {table} r
       ON r.realm_id = $1 AND r.deleted_at_utc IS NULL {time_filter}
GROUP BY w.i
ORDER BY w.i
"#,
        table = entity.table
    );
    let starts: Vec<_> = windows.iter().map(|w| w.start).collect();
    let ends: Vec<_> = windows.iter().map(|w| w.end).collect();
    let rows: Vec<(i64, i64)> = sqlx::query_as(&sql)
        .bind(realm_id)
        .bind(&starts)
        .bind(&ends)
        .fetch_all(store.pool())
        .await
        .map_err(VerifyError::Db)?;
    Ok(rows.into_iter().map(|(_, n)| n).collect())
}
