//! Loading reports as a run of windows (issue 12). A report load is a run of kind `report`
//! in `ops.backfill_runs`; its windows (rows of `ops.backfill_report`) are the report pieces,
//! one per (report, period piece), each of entity `report:<ReportName>` and read via
//! `report`. Every window goes through the queue's one claimed-chunk handle
//! ([`ClaimedChunk`]): claimed under a lease that heartbeats, and settled by writes fenced
//! on the lease and the attempt, so `--resume`, `--retry-failed`, leases and `qbo report`
//! work for reports as they do for entities.
//!
//! A window is `success` in the very transaction that stores its piece (`raw.qb_reports`
//! and its cells): never one without the other. A piece QBO answers is too large is split
//! (months, then weeks, then days) through the handle's split, so the windows table holds
//! the smaller windows; the stored pieces record the piece they were split from. An as-of
//! report (the aged reports) too large, or a single day too large, fails its window.
//!
//! What the run asks for (its reports, period and accounting method) is kept in the run's
//! options, so a `--resume` or `--retry-failed` asks QBO exactly what the first invocation
//! did, whatever it is told. Report runs are never queued for `qbo worker`s
//! (`Queue::claim_next_any` takes queued backfills only).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::ValueEnum;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::parse::{self, Read};
use super::{pieces, split, Method, Period, ReportError, ReportName, Request};
use crate::chunks::Window;
use crate::client::{ClientError, QboClient, RequestCounters};
use crate::queue::{
    retry_transient, ChunkStatus, ClaimMode, ClaimedChunk, Claimer, PlannedWindow, Progress, Queue,
    QueueError, RunKind, RunStatus,
};
use crate::store::reports::{self as stored, Piece};
use crate::store::{NewRun, PgStore, ReportFilter, RunRow};

/// The entity of a report window is this followed by the report's QBO name.
pub const WINDOW_PREFIX: &str = "report:";
/// `read_via` of a report window.
pub const READ_VIA: &str = "report";
/// `window_field` of a report run: its windows are report periods.
pub const WINDOW_FIELD: &str = "period";

/// The entity of a window of `name`: `report:ProfitAndLoss`.
pub fn window_entity(name: ReportName) -> String {
    format!("{WINDOW_PREFIX}{}", name.qbo_name())
}

/// The report a window's entity names; None for anything else.
pub fn report_of(entity: &str) -> Option<ReportName> {
    let name = entity.strip_prefix(WINDOW_PREFIX)?;
    ReportName::ALL
        .iter()
        .copied()
        .find(|r| r.qbo_name() == name)
}

/// The entity of a run of these reports: `report:all` for every report, else their names
/// (`report:ProfitAndLoss`, `report:AgedReceivables,ProfitAndLoss`). What `--resume` looks
/// the latest run up by.
pub fn run_entity(names: &[ReportName]) -> String {
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    if names == {
        let mut all = ReportName::ALL.to_vec();
        all.sort();
        all
    } {
        return format!("{WINDOW_PREFIX}all");
    }
    let list: Vec<&str> = names.iter().map(|n| n.qbo_name()).collect();
    format!("{WINDOW_PREFIX}{}", list.join(","))
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// A period `[start, end]` (inclusive days) as a window: half-open UTC midnights.
pub fn window_of(start: NaiveDate, end: NaiveDate) -> Window {
    Window {
        start: midnight(start),
        end: midnight(end + chrono::Duration::days(1)),
    }
}

/// The period (inclusive days) a report window stands for.
pub fn period_of(w: &Window) -> (NaiveDate, NaiveDate) {
    let start = w.start.date_naive();
    let end = (w.end - chrono::Duration::days(1)).date_naive();
    (start, end.max(start))
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
        }
    }
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Accrual => "accrual",
            Method::Cash => "cash",
        }
    }
}

/// What a report run asks QBO: kept in the run's options, so a resume asks the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub names: Vec<ReportName>,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub period: Period,
    pub method: Method,
}

impl Plan {
    fn options(&self) -> serde_json::Value {
        let names: Vec<&str> = self.names.iter().map(|n| n.qbo_name()).collect();
        json!({
            "reports": names,
            "period": self.period.as_str(),
            "accounting_method": self.method.as_str(),
        })
    }

    /// The plan a stored run was made with; Err says what its options lack.
    fn of_run(run: &RunRow) -> Result<Plan, String> {
        let bad = |what: &str| format!("its options have no valid {what}: {}", run.options);
        let text = |key: &str| run.options.get(key).and_then(serde_json::Value::as_str);
        let names = run
            .options
            .get("reports")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("reports"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|n| ReportName::ALL.iter().copied().find(|r| r.qbo_name() == n))
                    .ok_or_else(|| bad("reports"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let period = text("period")
            .and_then(|p| Period::from_str(p, true).ok())
            .ok_or_else(|| bad("period"))?;
        let method = text("accounting_method")
            .and_then(|m| Method::from_str(m, true).ok())
            .ok_or_else(|| bad("accounting_method"))?;
        Ok(Plan {
            names,
            start: run.range_start,
            end: run.range_end,
            period,
            method,
        })
    }

    /// One window per (report, period piece), report by report.
    fn windows(&self) -> Vec<(String, Window)> {
        let periods = pieces(self.start, self.end, self.period);
        self.names
            .iter()
            .flat_map(|n| {
                periods
                    .iter()
                    .map(move |(s, e)| (window_entity(*n), window_of(*s, *e)))
            })
            .collect()
    }

    /// The wider piece `[from, to]` was split from (its parent in the split tree of the
    /// planned piece holding it), or None for a planned piece. Splitting is deterministic
    /// (`super::split`), so the parent follows from the plan without being stored.
    fn split_from(&self, from: NaiveDate, to: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let holds = |p: &(NaiveDate, NaiveDate)| p.0 <= from && to <= p.1;
        let mut current = pieces(self.start, self.end, self.period)
            .into_iter()
            .find(holds)?;
        let mut parent = None;
        while current != (from, to) {
            let next = split(current.0, current.1)?.into_iter().find(holds)?;
            parent = Some(current);
            current = next;
        }
        parent
    }
}

/// What a load does: start a run, or continue one.
#[derive(Debug, Clone)]
pub enum Mode {
    New(Plan),
    /// Continue the run's unfinished windows (this run, or the latest of the selection).
    Resume(Option<Uuid>),
    /// Load the run's failed windows again (this run, or the latest of the selection).
    RetryFailed(Option<Uuid>),
}

/// What one invocation did for one report.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    pub report: &'static str,
    /// Pieces stored (after splitting).
    pub pieces: usize,
    /// Pieces QBO answered were too large, each replaced by its split.
    pub splits: usize,
    pub rows: usize,
    pub cells: usize,
    pub requests: u32,
    pub retries: u32,
}

impl Pulled {
    fn new(report: ReportName) -> Pulled {
        Pulled {
            report: report.qbo_name(),
            pieces: 0,
            splits: 0,
            rows: 0,
            cells: 0,
            requests: 0,
            retries: 0,
        }
    }
}

/// A window that failed, for the command's error lines.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub entity: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub error: String,
}

/// What one invocation did to a report run.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    pub run_id: Uuid,
    /// The run's entity (`report:all`, `report:ProfitAndLoss`, ...).
    pub entity: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub status: RunStatus,
    /// This invocation's work, per report of the run, in the run's order.
    pub pulled: Vec<Pulled>,
    /// The run's windows now, by state.
    pub windows: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub pending: usize,
    pub cancelled: usize,
    /// The run's failed windows and why.
    pub failures: Vec<Failure>,
    /// Ctrl-C or SIGTERM: the window being loaded was handed back.
    pub interrupted: bool,
}

/// Loads report runs of one company.
pub struct Loader<'a> {
    pub client: &'a QboClient,
    pub store: &'a PgStore,
    pub realm_id: &'a str,
    /// How long a claimed window stays ours without a heartbeat.
    pub lease: Duration,
    /// Ctrl-C or SIGTERM: hand the window back and stop.
    pub cancel: CancellationToken,
}

/// How loading one claimed window ended.
enum Ended {
    Stored,
    Split,
    Failed,
    /// Handed back (interrupted) or no longer ours (lease lost): not a failure.
    Left,
}

impl Loader<'_> {
    /// Runs (or resumes, or retries) a report run to its end. `selection` names the reports
    /// asked for (what `--resume` without a run id looks the latest run up by).
    pub async fn run(&self, selection: &[ReportName], mode: Mode) -> Result<Loaded, ReportError> {
        let (run_id, plan, claim_mode) = self.prepare(selection, mode).await?;
        let entity = run_entity(&plan.names);
        let span =
            tracing::info_span!("reports", %run_id, realm_id = %self.realm_id, entity = %entity);
        self.run_windows(run_id, plan, claim_mode)
            .instrument(span)
            .await
    }

    async fn run_windows(
        &self,
        run_id: Uuid,
        plan: Plan,
        mut claim_mode: ClaimMode,
    ) -> Result<Loaded, ReportError> {
        let queue = Queue::new(self.store.clone());
        retry_transient(&self.cancel, "marking the run running", || {
            queue.mark_run_running(run_id)
        })
        .await?;
        let entity = run_entity(&plan.names);
        tracing::info!(start = %plan.start, end = %plan.end, period = plan.period.as_str(), "starting");
        let mut pulled: Vec<Pulled> = plan.names.iter().map(|n| Pulled::new(*n)).collect();
        let invocation = Uuid::new_v4();
        let claimer = Claimer {
            owner: crate::backfill::lease_owner(invocation, 0),
            invocation,
            lease: self.lease,
            cancel: self.cancel.clone(),
        };
        let mut stored_now = 0usize;
        let mut told_about_leases = false;
        let mut fatal = None;
        while !self.cancel.is_cancelled() {
            let claimed = retry_transient(&self.cancel, "claiming a report window", || {
                queue.claim_holding_none(run_id, claim_mode, &claimer)
            })
            .await?;
            let Some(chunk) = claimed else {
                if claim_mode == ClaimMode::FailedOnly {
                    break;
                }
                // A window still leased by a process that died (or lives elsewhere): wait for
                // its lease to run out rather than load it twice at once.
                let held = retry_transient(&self.cancel, "looking for leased windows", || {
                    queue.leased_elsewhere(run_id, invocation)
                })
                .await?;
                if held == 0 {
                    break;
                }
                if !told_about_leases {
                    tracing::warn!(
                        windows = held,
                        lease_secs = self.lease.as_secs(),
                        "report windows are leased by another process (or one that was killed); waiting for the lease to run out"
                    );
                    told_about_leases = true;
                }
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    _ = tokio::time::sleep(self.lease.min(Duration::from_secs(1))) => {}
                }
                continue;
            };
            failpoint_hang(stored_now, &chunk).await;
            let row = chunk.row();
            let span = tracing::info_span!("window", chunk = row.chunk_index, entity = %row.entity, attempt = row.attempts);
            match self.load(&plan, chunk, &mut pulled).instrument(span).await {
                Ok(Ended::Stored) => stored_now += 1,
                // Retrying failed windows: the split's smaller windows are `pending`, which
                // claiming failed windows only never takes; take them as a resume would.
                Ok(Ended::Split) => claim_mode = ClaimMode::Unfinished,
                Ok(Ended::Failed | Ended::Left) => {}
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        let status = retry_transient(&CancellationToken::new(), "settling the run", || {
            queue.settle_run(run_id)
        })
        .await?;
        if let Some(e) = fatal {
            return Err(e);
        }
        let rows = self
            .store
            .chunks(&ReportFilter {
                run_id: Some(run_id),
                ..Default::default()
            })
            .await
            .map_err(QueueError::from)?;
        let count = |s: ChunkStatus| rows.iter().filter(|c| c.status == s).count();
        let failures = rows
            .iter()
            .filter(|c| c.status == ChunkStatus::Error)
            .map(|c| {
                let (start, end) = period_of(&Window {
                    start: c.window_start_utc,
                    end: c.window_end_utc,
                });
                Failure {
                    entity: c.entity.clone(),
                    start,
                    end,
                    error: c.error_message.clone().unwrap_or_default(),
                }
            })
            .collect();
        tracing::info!(status = %status, "report run settled");
        Ok(Loaded {
            run_id,
            entity,
            start: plan.start,
            end: plan.end,
            status,
            pulled,
            windows: rows.len(),
            succeeded: count(ChunkStatus::Success),
            failed: count(ChunkStatus::Error),
            pending: count(ChunkStatus::Pending)
                + count(ChunkStatus::Running)
                + count(ChunkStatus::Paged),
            cancelled: count(ChunkStatus::Cancelled),
            failures,
            interrupted: self.cancel.is_cancelled(),
        })
    }

    /// The run to work on, what it asks for, and which of its windows to claim.
    async fn prepare(
        &self,
        selection: &[ReportName],
        mode: Mode,
    ) -> Result<(Uuid, Plan, ClaimMode), ReportError> {
        let (run, claim) = match mode {
            Mode::New(plan) => {
                let run_id = plan_run(self.store, self.realm_id, &plan, false).await?;
                return Ok((run_id, plan, ClaimMode::Unfinished));
            }
            Mode::Resume(id) => (self.chosen_run(selection, id).await?, ClaimMode::Unfinished),
            Mode::RetryFailed(id) => (self.chosen_run(selection, id).await?, ClaimMode::FailedOnly),
        };
        let plan = Plan::of_run(&run).map_err(|why| ReportError::BadRun {
            run_id: run.run_id,
            why,
        })?;
        Ok((run.run_id, plan, claim))
    }

    /// The run `id` names, which must be a report run of this company, or the latest
    /// report run of the selection; never a cancelled one.
    async fn chosen_run(
        &self,
        selection: &[ReportName],
        id: Option<Uuid>,
    ) -> Result<RunRow, ReportError> {
        let wanted = run_entity(selection);
        let run = match id {
            Some(id) => {
                let run = self
                    .store
                    .run(id)
                    .await
                    .map_err(QueueError::from)?
                    .ok_or(ReportError::RunNotFound(id))?;
                if run.kind != RunKind::Report || run.realm_id != self.realm_id {
                    return Err(ReportError::WrongRun {
                        run_id: id,
                        actual: format!("{} ({}) of realm {}", run.entity, run.kind, run.realm_id),
                        requested: format!("a report run of realm {}", self.realm_id),
                    });
                }
                run
            }
            None => self
                .store
                .latest_run_of_kind(self.realm_id, &wanted, RunKind::Report)
                .await
                .map_err(QueueError::from)?
                .ok_or_else(|| ReportError::NothingToResume {
                    reports: wanted.clone(),
                    realm_id: self.realm_id.to_string(),
                })?,
        };
        if run.status == RunStatus::Cancelled {
            return Err(ReportError::RunCancelled {
                run_id: run.run_id,
                entity: run.entity,
            });
        }
        Ok(run)
    }

    /// Loads one claimed window: asks QBO for its piece and stores it with the window's
    /// success, splits it, or fails it. Err only for what stops the whole run (a refresh
    /// token a human must replace, Postgres gone for good).
    async fn load(
        &self,
        plan: &Plan,
        claim: ClaimedChunk,
        pulled: &mut [Pulled],
    ) -> Result<Ended, ReportError> {
        let row = claim.row().clone();
        let (from, to) = period_of(&claim.window());
        let mut progress = Progress {
            pages: 0,
            requests: row.requests,
            retries: row.retries,
            ..Progress::default()
        };
        let Some(name) = report_of(&row.entity) else {
            let why = format!(
                "`{}` is not a report this qbo loads (a window of a report run names `report:<ReportName>`)",
                row.entity
            );
            return self.fail(claim, &progress, &why).await;
        };
        let slot = plan.names.iter().position(|n| *n == name);
        let req = Request::new(name, from, to, plan.method);
        let params = req.params();
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut counters = RequestCounters::default();
        let stop = claim.stop().clone();
        let answer = tokio::select! {
            a = self.client.fetch_report(name.qbo_name(), &params, &mut counters, |v| {
                parse::read(v, &req).map(drop)
            }) => Some(a),
            _ = stop.cancelled() => None,
        };
        progress.requests += counters.requests as i32;
        progress.retries += counters.retries as i32;
        if let Some(p) = slot.and_then(|i| pulled.get_mut(i)) {
            p.requests += counters.requests;
            p.retries += counters.retries;
        }
        let answer = match answer {
            // Interrupted, or the lease was lost (another process owns the window now).
            None | Some(Err(ClientError::Cancelled)) => return self.leave(claim).await,
            Some(Err(ClientError::Auth(auth))) if auth.needs_human() => {
                let _ = self.leave(claim).await;
                return Err(ReportError::Qbo {
                    report: name.qbo_name(),
                    start: from,
                    end: to,
                    source: ClientError::Auth(auth),
                });
            }
            Some(Err(source)) => {
                let e = ReportError::Qbo {
                    report: name.qbo_name(),
                    start: req.start,
                    end: req.end,
                    source,
                };
                return self.fail(claim, &progress, &crate::errors::chain(&e)).await;
            }
            Some(Ok(a)) => a,
        };
        let report = match parse::read(&answer.value, &req) {
            Ok(Read::Complete(r)) => r,
            Ok(Read::TooLarge) => {
                return self.too_large(name, claim, &progress, slot, pulled).await
            }
            Err(why) => {
                let e = ReportError::Shape(req.params_text(), why);
                return self.fail(claim, &progress, &e.to_string()).await;
            }
        };
        progress.pages = 1;
        progress.row_count = report.rows.len() as i64;
        let piece = Piece {
            realm_id: self.realm_id,
            request: &req,
            split_from: plan.split_from(from, to),
            payload: &answer.value,
            intuit_tid: answer.intuit_tid.as_deref(),
            report: &report,
            run_id: row.run_id,
        };
        match self.store_piece(&claim, &piece, &progress).await {
            Ok(cells) => {
                drop(claim);
                if let Some(p) = slot.and_then(|i| pulled.get_mut(i)) {
                    p.pieces += 1;
                    p.rows += report.rows.len();
                    p.cells += cells;
                }
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    "{} {from} .. {to} success: {} rows, {cells} cells, {} requests",
                    name.qbo_name(),
                    report.rows.len(),
                    progress.requests,
                );
                Ok(Ended::Stored)
            }
            Err(QueueError::LeaseLost { .. }) => {
                tracing::warn!("lost the lease on this report window; another process owns it now");
                Ok(Ended::Left)
            }
            Err(e) => {
                let e = ReportError::Store {
                    report: name.qbo_name(),
                    start: from,
                    end: to,
                    source: match e {
                        QueueError::Store(s) => s,
                        QueueError::LeaseLost { .. } => unreachable!("matched above"),
                        // Only a backfill's sweep can lose its sweep lease.
                        QueueError::SweepLost { .. } => {
                            unreachable!("a report window is never swept")
                        }
                    },
                };
                self.fail(claim, &progress, &crate::errors::chain(&e)).await
            }
        }
    }

    /// The piece and the window's success, in one transaction.
    async fn store_piece(
        &self,
        claim: &ClaimedChunk,
        piece: &Piece<'_>,
        progress: &Progress,
    ) -> Result<usize, QueueError> {
        let mut tx = self.store.pool().begin().await?;
        let cells = stored::save(&mut tx, piece).await?;
        claim.succeed_in(&mut tx, progress).await?;
        tx.commit().await?;
        Ok(cells)
    }

    /// QBO found the piece too large: split it through the handle (recorded in the windows
    /// table), or fail it when it cannot be split.
    async fn too_large(
        &self,
        name: ReportName,
        claim: ClaimedChunk,
        progress: &Progress,
        slot: Option<usize>,
        pulled: &mut [Pulled],
    ) -> Result<Ended, ReportError> {
        let (from, to) = period_of(&claim.window());
        if name.is_as_of() {
            let e = ReportError::AsOfTooLarge {
                report: name.qbo_name(),
                day: to,
            };
            return self.fail(claim, progress, &e.to_string()).await;
        }
        let Some(parts) = split(from, to) else {
            let e = ReportError::DayTooLarge {
                report: name.qbo_name(),
                day: from,
            };
            return self.fail(claim, progress, &e.to_string()).await;
        };
        let leaves: Vec<PlannedWindow> = parts
            .iter()
            .map(|(s, e)| PlannedWindow {
                window: window_of(*s, *e),
                count: None,
            })
            .collect();
        match claim.split(&leaves, progress).await {
            Ok(()) => {}
            Err(QueueError::LeaseLost { .. }) => return Ok(Ended::Left),
            Err(e) => return Err(e.into()),
        }
        if let Some(p) = slot.and_then(|i| pulled.get_mut(i)) {
            p.splits += 1;
        }
        tracing::info!(
            target: crate::telemetry::WINDOW_TARGET,
            "{} {from} .. {to} is too large for QBO: split into {} windows",
            name.qbo_name(),
            parts.len(),
        );
        Ok(Ended::Split)
    }

    async fn fail(
        &self,
        claim: ClaimedChunk,
        progress: &Progress,
        message: &str,
    ) -> Result<Ended, ReportError> {
        tracing::error!(error = %message, "report window failed; the run goes on with the others");
        match claim.fail(progress, message).await {
            Ok(()) => Ok(Ended::Failed),
            Err(QueueError::LeaseLost { .. }) => Ok(Ended::Left),
            Err(e) => Err(e.into()),
        }
    }

    /// Interrupted: the window goes back to `pending` for `--resume`. Lease lost: it is
    /// someone else's, nothing to write.
    async fn leave(&self, claim: ClaimedChunk) -> Result<Ended, ReportError> {
        if self.cancel.is_cancelled() {
            match claim.hand_back().await {
                Ok(()) | Err(QueueError::LeaseLost { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            tracing::warn!("lost the lease on this report window; another process owns it now");
        }
        Ok(Ended::Left)
    }
}

/// Records a new report run and its windows, all `pending`, asking QBO nothing. `queued`:
/// planned for `qbo worker`s (`qbo reports --enqueue`), which claim its windows like a
/// queued backfill's (`Queue::claim_next_any`); otherwise the process that planned it loads
/// it.
pub async fn plan_run(
    store: &PgStore,
    realm_id: &str,
    plan: &Plan,
    queued: bool,
) -> Result<Uuid, ReportError> {
    let mut options = plan.options();
    if queued {
        options["queued"] = json!(true);
    }
    Ok(store
        .create_run_of_windows(
            &NewRun {
                realm_id,
                entity: &run_entity(&plan.names),
                range_start: plan.start,
                range_end: plan.end,
                window_field: WINDOW_FIELD,
                options,
                kind: RunKind::Report,
                read_via: READ_VIA,
            },
            &plan.windows(),
        )
        .await
        .map_err(QueueError::from)?)
}

impl Loader<'_> {
    /// Loads one window a `qbo worker` claimed (`Queue::claim_next_any`) of a queued report
    /// run, as its run's plan says, and settles the run when none of its windows is left
    /// unfinished. Ok(Some(status)) when this settled the run. Err only for what the worker
    /// must act on (a refresh token a human must replace, Postgres gone, a run it cannot
    /// read).
    pub async fn load_claimed(
        &self,
        claim: ClaimedChunk,
    ) -> Result<Option<RunStatus>, ReportError> {
        let run_id = claim.run_id();
        let run = self
            .store
            .run(run_id)
            .await
            .map_err(QueueError::from)?
            .ok_or(ReportError::RunNotFound(run_id))?;
        if run.kind != RunKind::Report || run.realm_id != self.realm_id {
            return Err(ReportError::WrongRun {
                run_id,
                actual: format!("{} ({}) of realm {}", run.entity, run.kind, run.realm_id),
                requested: format!("a report run of realm {}", self.realm_id),
            });
        }
        let plan = Plan::of_run(&run).map_err(|why| ReportError::BadRun { run_id, why })?;
        let mut pulled: Vec<Pulled> = plan.names.iter().map(|n| Pulled::new(*n)).collect();
        self.load(&plan, claim, &mut pulled).await?;
        let queue = Queue::new(self.store.clone());
        Ok(
            retry_transient(&CancellationToken::new(), "settling the run", || {
                queue.settle_run_if_finished(run_id)
            })
            .await?,
        )
    }
}

/// Test hook, built only with the `failpoints` feature (the test builds enable it; a release
/// build has no trace of it): `QBO_TEST_FAILPOINT=reports-hang-after:N` makes the process,
/// once it has stored N pieces, claim the next window and hang holding it (its lease
/// heartbeating), after a line on stderr, so a test can SIGKILL it at that exact point.
#[cfg(feature = "failpoints")]
async fn failpoint_hang(stored: usize, chunk: &ClaimedChunk) {
    let Ok(v) = std::env::var("QBO_TEST_FAILPOINT") else {
        return;
    };
    let Some(n) = v
        .strip_prefix("reports-hang-after:")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return;
    };
    if stored == n {
        eprintln!(
            "failpoint reports-hang-after:{n}: hanging, holding window {} of run {}",
            chunk.index(),
            chunk.run_id()
        );
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "failpoints"))]
async fn failpoint_hang(_stored: usize, _chunk: &ClaimedChunk) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn windows_and_entities_round_trip() {
        let w = window_of(d("2024-01-01"), d("2024-01-31"));
        assert_eq!(w.end, midnight(d("2024-02-01")));
        assert_eq!(period_of(&w), (d("2024-01-01"), d("2024-01-31")));
        for n in ReportName::ALL {
            assert_eq!(report_of(&window_entity(n)), Some(n));
        }
        assert_eq!(report_of("invoices"), None);
        assert_eq!(run_entity(&ReportName::ALL), "report:all");
        assert_eq!(
            run_entity(&[ReportName::AgedReceivables, ReportName::ProfitAndLoss]),
            "report:ProfitAndLoss,AgedReceivables"
        );
    }

    #[test]
    fn a_split_piece_knows_the_piece_it_was_split_from() {
        let plan = Plan {
            names: vec![ReportName::GeneralLedger],
            start: d("2024-01-01"),
            end: d("2024-06-30"),
            period: Period::Quarter,
            method: Method::Accrual,
        };
        assert_eq!(plan.split_from(d("2024-01-01"), d("2024-03-31")), None);
        assert_eq!(
            plan.split_from(d("2024-02-01"), d("2024-02-29")),
            Some((d("2024-01-01"), d("2024-03-31")))
        );
        assert_eq!(
            plan.split_from(d("2024-02-08"), d("2024-02-14")),
            Some((d("2024-02-01"), d("2024-02-29")))
        );
        assert_eq!(
            plan.split_from(d("2024-02-09"), d("2024-02-09")),
            Some((d("2024-02-08"), d("2024-02-14")))
        );
        assert_eq!(plan.windows().len(), 2);
    }
}
