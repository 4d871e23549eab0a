//! Changing things: start a backfill for the workers, pause or resume a company, and cancel,
//! resume or retry a run. Validation and messages are the CLI's.

use uuid::Uuid;

use super::read::not_found;
use super::{Control, ControlError, RunRef};
use crate::backfill::{BackfillError, Chunking, Options};
use crate::chunks::{DateRange, WindowField};
use crate::companies::{Company, CompanyStatus};
use crate::entities::Selection;
use crate::fleet::{enqueue_backfill, BackfillRequest};
use crate::queue::{Queue, Refusal, RunStatus};

/// What `qbo backfill <entity> --start --end --enqueue` takes, as JSON:
/// `{"entity": "invoices", "start": "2024-01-01", "end": "2024-03-31", "realm_id": "..."}`
/// or `"all_companies": true` instead of `realm_id`; optionally `chunk_days` (or
/// `window_pages`), `page_size`, `window_field` (`last-updated` or `txn-date`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSpec {
    /// An entity (see `qbo entities`) or `all`.
    pub entity: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub realm_id: Option<String>,
    #[serde(default)]
    pub all_companies: bool,
    pub chunk_days: Option<i64>,
    pub window_pages: Option<i64>,
    pub page_size: Option<i64>,
    pub window_field: Option<String>,
}

/// The limits the CLI's flags have (`qbo backfill --help`).
const CHUNK_DAYS: std::ops::RangeInclusive<i64> = 1..=3660;
const WINDOW_PAGES: std::ops::RangeInclusive<i64> = 1..=1000;
const PAGE_SIZE: std::ops::RangeInclusive<i64> = 1..=1000;

/// One run a backfill planned.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartedRun {
    pub realm_id: String,
    pub entity: &'static str,
    pub run_id: Uuid,
}

/// What starting a backfill planned.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Started {
    pub runs: Vec<StartedRun>,
    /// The `backfill all` recorded per company (so `qbo backfill all --resume` finds it).
    pub invocations: Vec<Uuid>,
    /// One line per company `all_companies` left out (paused, needs_reauth, the other
    /// environment).
    pub skipped: Vec<String>,
    pub message: String,
}

/// What to do to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    Cancel,
    /// Hand a run whose process died to the workers.
    Resume,
    /// Failed windows back to the workers.
    RetryFailed,
}

/// What a run action did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunChanged {
    pub run_id: Uuid,
    pub status: RunStatus,
    /// Windows cancelled, or sent to the workers.
    pub windows: i64,
    /// Of those, windows being loaded under a live lease when it happened.
    pub leased: i64,
    pub message: String,
}

struct Valid {
    selection: Selection,
    range: DateRange,
    options: Options,
}

impl BackfillSpec {
    fn validate(&self) -> Result<Valid, ControlError> {
        let invalid = |m: String| ControlError::Invalid(m);
        let entity = required(
            &self.entity,
            "entity",
            "an entity (see `qbo entities`) or `all`",
        )?;
        let selection: Selection = entity
            .parse()
            .map_err(|e: crate::entities::UnknownEntity| invalid(e.to_string()))?;
        let start = required(&self.start, "start", "the first day, YYYY-MM-DD")?;
        let end = required(&self.end, "end", "the last day (inclusive), YYYY-MM-DD")?;
        let start = crate::chunks::parse_date(start).map_err(|e| invalid(e.to_string()))?;
        let end = crate::chunks::parse_date(end).map_err(|e| invalid(e.to_string()))?;
        let range = DateRange::new(start, end).map_err(|e| invalid(e.to_string()))?;
        let chunking = match (self.chunk_days, self.window_pages) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "chunk_days and window_pages cannot be used together: chunk_days cuts \
                     calendar windows, window_pages sizes windows planned by count"
                        .into(),
                ))
            }
            (Some(days), None) => Chunking::Days(in_range("chunk_days", days, CHUNK_DAYS)?),
            (None, pages) => Chunking::ByCount {
                window_pages: in_range(
                    "window_pages",
                    pages.unwrap_or(i64::from(crate::backfill::DEFAULT_WINDOW_PAGES)),
                    WINDOW_PAGES,
                )? as u32,
            },
        };
        let page_size = in_range(
            "page_size",
            self.page_size
                .unwrap_or(i64::from(crate::query::MAX_PAGE_SIZE)),
            PAGE_SIZE,
        )? as u32;
        let window_field = match self.window_field.as_deref().map(str::trim) {
            None | Some("") => WindowField::LastUpdated,
            Some(f) => WindowField::parse_stored(f).ok_or_else(|| {
                invalid(format!(
                    "unknown window_field `{f}`; expected last-updated or txn-date"
                ))
            })?,
        };
        if window_field == WindowField::TxnDate {
            if let Some(e) = selection.entities().into_iter().find(|e| !e.has_txn_date()) {
                return Err(ControlError::Backfill(BackfillError::NoTxnDate(e.cli_name)));
            }
        }
        Ok(Valid {
            selection,
            range,
            options: Options {
                chunking,
                page_size,
                window_field,
                ..Options::default()
            },
        })
    }
}

fn required<'a>(v: &'a Option<String>, name: &str, what: &str) -> Result<&'a str, ControlError> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ControlError::Invalid(format!("say what to load: give `{name}`, {what}")))
}

fn in_range(name: &str, v: i64, range: std::ops::RangeInclusive<i64>) -> Result<i64, ControlError> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(ControlError::Invalid(format!(
            "{name} must be between {} and {}, got {v}",
            range.start(),
            range.end()
        )))
    }
}

pub(super) fn valid_realm(realm: &str) -> Result<(), ControlError> {
    crate::config::validate_realm_id(realm).map_err(|e| ControlError::Invalid(e.to_string()))
}

impl Control {
    /// Plans the runs of a backfill for the workers, exactly as `qbo backfill ... --enqueue`
    /// does (one run per entity per company, every window `pending`), and returns at once.
    /// A company named by `realm_id` joins `qbo companies` if it is not there (keeping its
    /// status if it is: a paused company's runs wait for its resume).
    pub async fn start_backfill(&self, spec: &BackfillSpec) -> Result<Started, ControlError> {
        let valid = spec.validate()?;
        let realm = spec
            .realm_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let (realms, skipped) = match (realm, spec.all_companies) {
            (Some(_), true) => {
                return Err(ControlError::Invalid(
                    "give realm_id or all_companies: true, not both".into(),
                ))
            }
            (None, false) => {
                return Err(ControlError::Invalid(
                    "say which company: realm_id, or all_companies: true for every active one"
                        .into(),
                ))
            }
            (Some(realm), false) => {
                valid_realm(realm)?;
                crate::companies::add(self.store.pool(), realm, self.environment, None).await?;
                (vec![realm.to_string()], Vec::new())
            }
            (None, true) => self.active_realms().await?,
        };
        let mut started = Started {
            runs: Vec::new(),
            invocations: Vec::new(),
            skipped,
            message: String::new(),
        };
        for realm_id in &realms {
            let enqueued = enqueue_backfill(
                &self.store,
                &BackfillRequest {
                    realm_id,
                    selection: valid.selection,
                    range: valid.range,
                    options: &valid.options,
                    minor_version: self.minor_version,
                },
            )
            .await?;
            started.invocations.extend(enqueued.invocation);
            started.runs.extend(
                enqueued
                    .runs
                    .into_iter()
                    .map(|(entity, run_id)| StartedRun {
                        realm_id: realm_id.clone(),
                        entity,
                        run_id,
                    }),
            );
        }
        started.message = format!(
            "enqueued {} runs of {} companies; the workers (`qbo serve --workers N`, `qbo worker`) load them",
            started.runs.len(),
            realms.len()
        );
        Ok(started)
    }

    /// The active companies of this environment, and a line for each one left out.
    pub(super) async fn active_realms(&self) -> Result<(Vec<String>, Vec<String>), ControlError> {
        let fleet = crate::companies::fleet(self.store.pool()).await?;
        let mut skipped = fleet.skip_lines();
        let mut realms = Vec::new();
        for c in fleet.active {
            if c.environment == self.environment {
                realms.push(c.realm_id);
            } else {
                skipped.push(format!(
                    "skipped company {}: it is a {} company and QBO_ENVIRONMENT is {}",
                    c.label(),
                    c.environment.as_str(),
                    self.environment.as_str()
                ));
            }
        }
        if realms.is_empty() {
            return Err(ControlError::Conflict(crate::companies::no_active_company(
                self.environment.as_str(),
            )));
        }
        Ok((realms, skipped))
    }

    /// `qbo companies pause`: the workers leave the company's windows alone until resumed.
    pub async fn pause_company(
        &self,
        realm_id: &str,
        reason: Option<&str>,
    ) -> Result<Company, ControlError> {
        valid_realm(realm_id)?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        Ok(crate::companies::set_status(
            self.store.pool(),
            realm_id,
            CompanyStatus::Paused,
            Some(reason.unwrap_or("paused by hand")),
        )
        .await?)
    }

    /// `qbo companies resume`: active again (a needs_reauth one too: if its token is still
    /// refused, the next load marks it again).
    pub async fn resume_company(&self, realm_id: &str) -> Result<Company, ControlError> {
        valid_realm(realm_id)?;
        Ok(
            crate::companies::set_status(self.store.pool(), realm_id, CompanyStatus::Active, None)
                .await?,
        )
    }

    /// Cancels, resumes (hands to the workers) or retries (failed windows, by the workers)
    /// a backfill run.
    pub async fn act_on_run(
        &self,
        run: &RunRef,
        action: RunAction,
    ) -> Result<RunChanged, ControlError> {
        let run_id = run.resolve(&self.store).await?;
        let queue = Queue::new(self.store.clone());
        let outcome = match action {
            RunAction::Cancel => queue.cancel_run(run_id).await?,
            RunAction::Resume => queue.queue_unfinished(run_id).await?,
            RunAction::RetryFailed => queue.queue_failed(run_id).await?,
        };
        let changed = match outcome {
            Ok(changed) => changed,
            Err(refusal) => return Err(refused(run_id, action, refusal)),
        };
        let row = self
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| not_found(run_id))?;
        if action != RunAction::Cancel {
            // Workers load only companies of `qbo companies` (once it has any): the run's
            // joins it, as `--enqueue` makes it join.
            crate::companies::add(self.store.pool(), &row.realm_id, self.environment, None).await?;
        }
        let message = match action {
            RunAction::Cancel => format!(
                "run {run_id} is cancelled: {} unfinished windows will not be loaded ({} were being loaded; their workers stop)",
                changed.windows, changed.leased
            ),
            RunAction::Resume => format!(
                "run {run_id} is queued: the workers load its {} unfinished windows ({} held by a lease are taken over once it runs out)",
                changed.windows, changed.leased
            ),
            RunAction::RetryFailed => format!(
                "run {run_id} is queued: the workers load its {} failed windows again",
                changed.windows
            ),
        };
        Ok(RunChanged {
            run_id,
            status: row.status,
            windows: changed.windows,
            leased: changed.leased,
            message,
        })
    }
}

/// Why a run refused an action, in the words the CLI uses.
fn refused(run_id: Uuid, action: RunAction, refusal: Refusal) -> ControlError {
    let conflict = ControlError::Conflict;
    match refusal {
        Refusal::NotFound => not_found(run_id),
        Refusal::NotBackfill(kind) => conflict(format!(
            "run {run_id} is a {kind}: only backfill runs can be cancelled, resumed or retried (a sync: run it again)"
        )),
        Refusal::Cancelled if action == RunAction::Cancel => {
            conflict(format!("run {run_id} was already cancelled"))
        }
        Refusal::Cancelled => conflict(format!(
            "run {run_id} was cancelled: its unfinished windows are never loaded; start a new run with start and end"
        )),
        Refusal::Finished(status) if action == RunAction::Cancel => conflict(format!(
            "run {run_id} has already finished ({status}); there is nothing to cancel"
        )),
        Refusal::Finished(status) | Refusal::NothingToDo(status)
            if action == RunAction::Resume =>
        {
            let failed = match status {
                RunStatus::Partial | RunStatus::Error => {
                    format!("; retry its failed windows with POST /api/runs/{run_id}/retry-failed")
                }
                _ => String::new(),
            };
            conflict(format!(
                "run {run_id} has no unfinished windows to resume ({status}){failed}"
            ))
        }
        Refusal::StillRunning { leased } => conflict(format!(
            "run {run_id} is still running ({leased} windows being loaded); retry its failed windows once it has finished"
        )),
        Refusal::Finished(status) | Refusal::NothingToDo(status) => conflict(format!(
            "run {run_id} has no failed windows to retry ({status})"
        )),
    }
}
