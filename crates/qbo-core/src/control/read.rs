//! Reading: the companies with their queues, runs (filtered, newest first), one run with its
//! windows (the rows `qbo report` prints).

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{Control, ControlError, RunRef};
use crate::companies::CompanyStatus;
use crate::queue::{RunKind, RunStatus};
use crate::store::{ChunkRow, ReportFilter};

/// Runs listed when the request says no `limit`.
pub const DEFAULT_RUNS: i64 = 50;
/// The most runs one request lists.
pub const MAX_RUNS: i64 = 1000;

/// A company of `qbo companies list`, with its windows by state as `qbo report --companies`
/// counts them (over its latest run of each entity and kind). A realm with runs that is not
/// in `qbo companies` is listed too, with `in_fleet: false` and no status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompanyView {
    pub realm_id: String,
    pub name: Option<String>,
    pub environment: Option<&'static str>,
    pub status: Option<CompanyStatus>,
    pub status_reason: Option<String>,
    pub status_changed_at: Option<DateTime<Utc>>,
    pub added_at: Option<DateTime<Utc>>,
    pub last_loaded_at: Option<DateTime<Utc>>,
    /// In `qbo companies` (workers load only those, once the table has any).
    pub in_fleet: bool,
    pub runs: i64,
    /// Windows `pending`, waiting for a worker.
    pub queued: i64,
    /// Windows `running` or `paged`.
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub last_claimed_at: Option<DateTime<Utc>>,
}

/// Which runs to list. Every field is optional; the API takes them from the query string.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFilter {
    pub realm_id: Option<String>,
    pub entity: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<String>,
}

/// A run's windows by state.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WindowCounts {
    pub total: i64,
    pub pending: i64,
    pub running: i64,
    pub paged: i64,
    pub success: i64,
    pub error: i64,
    pub cancelled: i64,
}

/// One run, as lists show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunView {
    pub run_id: Uuid,
    pub realm_id: String,
    pub entity: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub range_start: NaiveDate,
    pub range_end: NaiveDate,
    pub window_field: String,
    /// Planned for the workers (`--enqueue`, the API), rather than loaded by a command.
    pub queued: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub windows: WindowCounts,
    /// Records its windows loaded.
    pub rows: i64,
    /// What QBO's COUNT(*)s said its windows hold (those counted so far).
    pub expected: i64,
    /// Requests of its windows and its own (planning COUNTs, the sweep).
    pub requests: i64,
}

/// One run and its windows (`qbo report --run ID --format json`'s rows).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunDetail {
    pub run: RunView,
    /// How it was planned (chunk_days or window_pages, page_size, ...).
    pub options: serde_json::Value,
    /// Its windows in window order: status, range, expected vs loaded rows, attempts,
    /// error, intuit_tid, requests (the report's rows).
    pub windows: Vec<ChunkRow>,
}

struct ValidFilter {
    realm_id: Option<String>,
    entity: Option<&'static str>,
    status: Option<RunStatus>,
    kind: Option<RunKind>,
    limit: i64,
}

impl RunFilter {
    fn validate(&self) -> Result<ValidFilter, ControlError> {
        let realm_id = match given(&self.realm_id) {
            Some(r) => {
                crate::config::validate_realm_id(r)
                    .map_err(|e| ControlError::Invalid(e.to_string()))?;
                Some(r.to_string())
            }
            None => None,
        };
        let entity = match given(&self.entity) {
            Some(e) => Some(
                crate::entities::find(e)
                    .map(|e| e.cli_name)
                    .ok_or_else(|| {
                        ControlError::Invalid(format!(
                            "unknown entity `{e}`; expected one of: {} (or none, for every entity)",
                            crate::entities::cli_names().join(", ")
                        ))
                    })?,
            ),
            None => None,
        };
        let status = match given(&self.status) {
            Some(s) => Some(s.parse::<RunStatus>().map_err(|_| {
                ControlError::Invalid(format!(
                    "unknown run status `{s}`; expected one of: {}",
                    names(RunStatus::ALL.iter().map(|s| s.as_str()))
                ))
            })?),
            None => None,
        };
        let kind = match given(&self.kind) {
            Some(k) => Some(k.parse::<RunKind>().map_err(|_| {
                ControlError::Invalid(format!(
                    "unknown run kind `{k}`; expected one of: {}",
                    names(RunKind::ALL.iter().map(|k| k.as_str()))
                ))
            })?),
            None => None,
        };
        let limit = match given(&self.limit) {
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_RUNS).contains(n))
                .ok_or_else(|| {
                    ControlError::Invalid(format!(
                        "limit must be a whole number from 1 to {MAX_RUNS}, got `{l}`"
                    ))
                })?,
            None => DEFAULT_RUNS,
        };
        Ok(ValidFilter {
            realm_id,
            entity,
            status,
            kind,
            limit,
        })
    }
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    all.collect::<Vec<_>>().join(", ")
}

impl Control {
    /// Every company of `qbo companies` (and every realm with runs that is not in it), by
    /// realm id, with its queue.
    pub async fn companies(&self) -> Result<Vec<CompanyView>, ControlError> {
        let fleet = crate::companies::list(self.store.pool()).await?;
        let mut queues: std::collections::BTreeMap<String, crate::store::fleet::CompanyQueue> =
            self.store
                .company_queues(None)
                .await?
                .into_iter()
                .map(|q| (q.realm_id.clone(), q))
                .collect();
        let mut out = Vec::with_capacity(fleet.len() + queues.len());
        for c in fleet {
            let q = queues.remove(&c.realm_id);
            out.push(CompanyView {
                name: c.display_name,
                environment: Some(c.environment.as_str()),
                status: Some(c.status),
                status_reason: c.status_reason,
                status_changed_at: Some(c.status_changed_at),
                added_at: Some(c.added_at),
                last_loaded_at: c.last_loaded_at,
                in_fleet: true,
                ..queue_view(c.realm_id, q)
            });
        }
        for (realm, q) in queues {
            out.push(queue_view(realm, Some(q)));
        }
        out.sort_by(|a, b| a.realm_id.cmp(&b.realm_id));
        Ok(out)
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunView>, ControlError> {
        let f = filter.validate()?;
        self.run_views(
            f.realm_id.as_deref(),
            f.entity,
            f.status,
            f.kind,
            None,
            f.limit,
        )
        .await
    }

    /// One run (a whole id or a unique prefix) with its windows.
    pub async fn run(&self, run: &RunRef) -> Result<RunDetail, ControlError> {
        let run_id = run.resolve(&self.store).await?;
        let view = self
            .run_views(None, None, None, None, Some(run_id), 1)
            .await?
            .pop()
            .ok_or_else(|| not_found(run_id))?;
        let options = self
            .store
            .run(run_id)
            .await?
            .map(|r| r.options)
            .unwrap_or_default();
        let windows = self
            .store
            .chunks(&ReportFilter {
                run_id: Some(run_id),
                ..Default::default()
            })
            .await?;
        Ok(RunDetail {
            run: view,
            options,
            windows,
        })
    }

    async fn run_views(
        &self,
        realm_id: Option<&str>,
        entity: Option<&str>,
        status: Option<RunStatus>,
        kind: Option<RunKind>,
        run_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<RunView>, ControlError> {
        let rows = sqlx::query!(
            r#"WITH picked AS (
                   SELECT * FROM ops.backfill_runs r
                   WHERE ($1::text IS NULL OR r.realm_id = $1)
                     AND ($2::text IS NULL OR r.entity = $2)
                     AND ($3::text IS NULL OR r.status = $3)
                     AND ($4::text IS NULL OR r.kind = $4)
                     AND ($5::uuid IS NULL OR r.run_id = $5)
                   ORDER BY r.started_at DESC, r.run_id
                   LIMIT $6
               )
               SELECT p.run_id, p.realm_id, p.entity, p.kind AS "kind: RunKind",
                      p.status AS "status: RunStatus", p.range_start, p.range_end,
                      p.window_field,
                      COALESCE((p.options->>'queued')::boolean, false) AS "queued!",
                      p.started_at, p.finished_at,
                      w.total AS "total!", w.pending AS "pending!", w.running AS "running!",
                      w.paged AS "paged!", w.success AS "success!", w.error AS "error!",
                      w.cancelled AS "cancelled!", w.rows AS "rows!",
                      w.expected AS "expected!",
                      (w.requests + p.run_requests) AS "requests!"
               FROM picked p
               CROSS JOIN LATERAL (
                   SELECT count(*) AS total,
                          count(*) FILTER (WHERE c.status = 'pending') AS pending,
                          count(*) FILTER (WHERE c.status = 'running') AS running,
                          count(*) FILTER (WHERE c.status = 'paged') AS paged,
                          count(*) FILTER (WHERE c.status = 'success') AS success,
                          count(*) FILTER (WHERE c.status = 'error') AS error,
                          count(*) FILTER (WHERE c.status = 'cancelled') AS cancelled,
                          COALESCE(sum(c.row_count), 0)::bigint AS rows,
                          COALESCE(sum(c.expected_count), 0)::bigint AS expected,
                          COALESCE(sum(c.requests), 0)::bigint AS requests
                   FROM ops.backfill_report c WHERE c.run_id = p.run_id
               ) w
               ORDER BY p.started_at DESC, p.run_id"#,
            realm_id,
            entity,
            status.map(RunStatus::as_str),
            kind.map(RunKind::as_str),
            run_id,
            limit,
        )
        .fetch_all(self.store.pool())
        .await
        .map_err(crate::store::StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(|r| RunView {
                run_id: r.run_id,
                realm_id: r.realm_id,
                entity: r.entity,
                kind: r.kind,
                status: r.status,
                range_start: r.range_start,
                range_end: r.range_end,
                window_field: r.window_field,
                queued: r.queued,
                started_at: r.started_at,
                finished_at: r.finished_at,
                windows: WindowCounts {
                    total: r.total,
                    pending: r.pending,
                    running: r.running,
                    paged: r.paged,
                    success: r.success,
                    error: r.error,
                    cancelled: r.cancelled,
                },
                rows: r.rows,
                expected: r.expected,
                requests: r.requests,
            })
            .collect())
    }
}

/// `BackfillError::RunNotFound`'s message: what the CLI says of an unknown run.
pub(super) fn not_found(run_id: Uuid) -> ControlError {
    ControlError::NotFound(crate::backfill::BackfillError::RunNotFound(run_id).to_string())
}

fn queue_view(realm_id: String, q: Option<crate::store::fleet::CompanyQueue>) -> CompanyView {
    let q = q.unwrap_or(crate::store::fleet::CompanyQueue {
        realm_id: realm_id.clone(),
        runs: 0,
        queued: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        last_claimed_at: None,
    });
    CompanyView {
        realm_id,
        name: None,
        environment: None,
        status: None,
        status_reason: None,
        status_changed_at: None,
        added_at: None,
        last_loaded_at: None,
        in_fleet: false,
        runs: q.runs,
        queued: q.queued,
        running: q.running,
        succeeded: q.succeeded,
        failed: q.failed,
        last_claimed_at: q.last_claimed_at,
    }
}
