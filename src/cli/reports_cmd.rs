//! `qbo reports`: QBO's reports over a range into raw.qb_reports (whole, as
//! received) and raw.qb_report_cells (flattened), as a run of windows (`reports::pull`).

use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::run_ref::RunRef;
use super::{parse_date_arg, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::client::ClientError;
use crate::queue::RunStatus;
use crate::reports::pull::{Loaded, Loader, Mode, Plan, Pulled, WINDOW_PREFIX};
use crate::reports::{Method, Period, ReportError, ReportName};

pub const AFTER_HELP: &str = "\
Reports: ProfitAndLoss, ProfitAndLossDetail, BalanceSheet, TrialBalance, GeneralLedger,
CashFlow, AgedReceivables, AgedPayables, TransactionList (several comma-separated, or all).

Reports cannot be paged, so the range is asked for one --period at a time (calendar months
by default; Intuit advises at most six months a request), with summarize_column_by=Total for
the reports that take it (ProfitAndLoss, BalanceSheet, TrialBalance, GeneralLedger,
CashFlow). --accounting-method goes to the reports that take a basis (ProfitAndLoss,
ProfitAndLossDetail, BalanceSheet, TrialBalance, GeneralLedger); CashFlow, the aged reports
and TransactionList take none, and their accounting_method column reads None.

The aged reports (AgedReceivables, AgedPayables) are a snapshot as of one day, not a range:
they are asked for once per period, as of its last day (report_date), so
`--start 2024-01-01 --end 2024-03-31` loads the aging at Jan 31, Feb 29 and Mar 31; their
period_start and period_end are both that day. An as-of report cannot be split: one QBO
finds too large is an error.

A load is a run (kind report in `qbo report`) with one window per report and period piece,
entity report:<ReportName> (report:ProfitAndLoss, ...). Each window is claimed under a lease
that heartbeats (QBO_LEASE_SECS), and is `success` in the transaction that stores its piece.
The run keeps its reports, range, --period and --accounting-method: --resume and
--retry-failed ask QBO exactly what it asked.

When QBO answers that a piece is too large (\"Unable to display more data. Please reduce the
date range.\", which QBO sends as an ordinary answer past 400,000 cells), the window is split
into months, then weeks, then days: the run's windows table holds the smaller windows, and
the stored pieces record the piece they were split from (split_from_start/_end). A single day,
or an as-of report, too large fails its window.

Each piece is one row of raw.qb_reports (and of the view raw.qb_report_<name>, e.g.
raw.qb_report_profit_and_loss): realm_id, report_name, the request's parameters (params,
params_text and their md5, params_hash, the row's key), period_start/period_end,
accounting_method, the whole JSON exactly as QBO sent it (payload), intuit_tid and run_id. Its
rows are flattened into raw.qb_report_cells: one row per report row (data rows and section
summaries) and column, with the section path, the account id, the column's key, title and
dates, the text value and, for money columns, the amount as numeric. Loading a piece again
replaces it (payload and cells), and storing a piece removes the stored pieces of the same
report and basis that overlap it (another --period's, or the wider piece a split replaces):
no day is covered twice, so re-runs never duplicate and sums over pieces never count twice.

An answer that is not the report asked for (another name, range or basis), or whose rows qbo
cannot read, is an error after the usual retries, never stored. A window that fails does not
stop the others: the run ends partial (or error), each failed window is printed on stderr,
and `--retry-failed` asks for those windows again. After a crash or Ctrl-C, `--resume`
continues the run: windows already success are not asked for again; a window a killed
process held is taken once its lease runs out. `qbo report --run ID` (or `qbo report
report:ProfitAndLoss`) lists the windows.

--enqueue records the run for `qbo worker`s (or `qbo serve --workers N`) instead of loading
it here, and returns at once printing its id: the workers claim its windows like a queued
backfill's, one at a time, under the same leases; a worker's window too large is split and
the smaller windows go back to the queue. QBO credentials are not needed to enqueue.

Exit codes: 0 every window loaded, 1 a window failed (stderr says which, and how to retry), 2
bad usage or configuration (or nothing to resume), 3 the refresh token was rejected (run `qbo
auth login`), 130 interrupted (continue with --resume).

Example SQL (P&L by month and account):
  SELECT r.period_start, c.label AS account, c.amount
  FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
  WHERE r.report_name = 'ProfitAndLoss' AND c.row_kind = 'data' AND c.account_id IS NOT NULL
  ORDER BY 1, 2;

Examples:
  qbo reports ProfitAndLoss --start 2024-01-01 --end 2024-12-31
  qbo reports all --start 2023-01-01 --end 2024-12-31 --period quarter
  qbo reports all --resume                     # after a crash or Ctrl-C
  qbo reports ProfitAndLoss --retry-failed     # only the windows whose status is error
  qbo reports all --retry-failed --run 1c9e04b2
  qbo reports all --start 2024-01-01 --end 2024-12-31 --enqueue   # for qbo workers";

#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// ProfitAndLoss, ProfitAndLossDetail, BalanceSheet, TrialBalance, GeneralLedger,
    /// CashFlow, AgedReceivables, AgedPayables, TransactionList (several comma-separated),
    /// or all of them.
    #[arg(value_parser = parse_reports)]
    pub report: Selection,
    /// First day of the range (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date_arg, requires = "end", conflicts_with_all = ["resume", "retry_failed"])]
    pub start: Option<NaiveDate>,
    /// Last day of the range, inclusive.
    #[arg(long, value_parser = parse_date_arg, requires = "start")]
    pub end: Option<NaiveDate>,
    /// One request per calendar month, quarter or year of the range (a new run; --resume
    /// and --retry-failed ask what their run asked).
    #[arg(long, value_enum, default_value = "month")]
    pub period: Period,
    /// QBO's accounting basis, for the reports that take one (the sandbox computes Cash for
    /// ProfitAndLoss and ProfitAndLossDetail only; `qbo verify --tie-out --accounting-method
    /// cash` compares the P&L only). A new run's; --resume and --retry-failed use their run's.
    #[arg(long, value_enum, default_value = "accrual")]
    pub accounting_method: Method,
    /// Continue the latest report run of these reports (or --run): windows already
    /// `success` are not asked for again; windows a killed process still holds are taken
    /// once their lease runs out.
    #[arg(long, conflicts_with = "retry_failed")]
    pub resume: bool,
    /// Ask again only for the windows whose status is `error` (of the latest report run of
    /// these reports, or of --run).
    #[arg(long)]
    pub retry_failed: bool,
    /// The run to resume or retry: its id from `qbo report`, or the start of it (at least 4
    /// hex digits).
    #[arg(long)]
    pub run: Option<RunRef>,
    /// Plan the run for `qbo worker`s and return at once, printing its id: no QBO
    /// credentials needed here (the workers have them). Needs --start and --end.
    #[arg(long, conflicts_with_all = ["resume", "retry_failed", "run"])]
    pub enqueue: bool,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

#[derive(Debug, Clone)]
pub struct Selection(pub Vec<ReportName>);

/// `all`, one report name, or several comma-separated.
pub fn parse_reports(s: &str) -> Result<Selection, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Selection(ReportName::ALL.to_vec()));
    }
    let mut names = Vec::new();
    for one in s.split(',').map(str::trim) {
        let name = ReportName::from_str(one, true).map_err(|_| {
            let names: Vec<&str> = ReportName::ALL.iter().map(|r| r.qbo_name()).collect();
            format!("unknown report {one:?}: use {} or all", names.join(", "))
        })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Selection(names))
}

impl ReportsArgs {
    fn mode(&self, run: Option<uuid::Uuid>) -> Result<Mode, CliError> {
        if self.run.is_some() && !self.resume && !self.retry_failed {
            return Err(CliError::usage(anyhow::anyhow!(
                "--run names the run to --resume or --retry-failed; give one of them"
            )));
        }
        if self.resume {
            return Ok(Mode::Resume(run));
        }
        if self.retry_failed {
            return Ok(Mode::RetryFailed(run));
        }
        match (self.start, self.end) {
            (Some(start), Some(end)) if end < start => {
                Err(CliError::usage(anyhow::anyhow!("--end is before --start")))
            }
            (Some(start), Some(end)) => Ok(Mode::New(Plan {
                names: self.report.0.clone(),
                start,
                end,
                period: self.period,
                method: self.accounting_method,
            })),
            _ => Err(CliError::usage(anyhow::anyhow!(
                "say what to load: --start YYYY-MM-DD --end YYYY-MM-DD for a new run, --resume to continue the latest one, or --retry-failed"
            ))),
        }
    }
}

pub async fn run(args: ReportsArgs) -> Result<Outcome, CliError> {
    // Checked before anything is written anywhere.
    let planned = args.mode(None)?;
    if args.enqueue {
        return enqueue(&args, planned).await;
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = connect(&args.db).await?;
    let run_id = match &args.run {
        Some(run) => Some(run.resolve(&store).await?),
        None => None,
    };
    let mode = args.mode(run_id)?;
    let tokens = super::auth_cmd::open_token_store(&settings, &store).await?;
    let cancel =
        on_interrupt("interrupted: handing the current report window back; continue with --resume");
    let client = build_client(
        &settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        &store,
        cancel.clone(),
    )
    .await?;
    let loader = Loader {
        client: client.as_ref(),
        store: &store,
        realm_id: &settings.realm_id,
        lease: args.requests.lease(),
        cancel,
    };
    let result = loader.run(&args.report.0, mode).await;
    client.finish().await;
    let loaded = result.map_err(classify)?;
    Ok(print_loaded(&loaded, ""))
}

/// `--enqueue`: records the run, queued, for the workers of the company, and returns.
async fn enqueue(args: &ReportsArgs, mode: Mode) -> Result<Outcome, CliError> {
    let Mode::New(plan) = mode else {
        return Err(CliError::usage(anyhow::anyhow!(
            "--enqueue plans a new run: give --start and --end"
        )));
    };
    let realm = super::fleet::named_realm(&args.qbo)?;
    let store = connect(&args.db).await?;
    let (realms, outcome) = super::fleet::enqueue_targets(&store, &args.qbo, Some(realm)).await?;
    for realm in realms {
        let run_id = crate::reports::pull::plan_run(&store, &realm, &plan, true)
            .await
            .map_err(CliError::failed)?;
        outln!(
            "enqueued report run {run_id} of {realm}: {} ({}..{}); `qbo worker`s load its windows (`qbo report --run {run_id}`)",
            crate::reports::pull::run_entity(&plan.names),
            plan.start,
            plan.end
        );
    }
    Ok(outcome)
}

/// Prints what a report run did: a line per report (this invocation's pieces), the run's
/// line, and on stderr each failed window with how to go on. `suffix` ends each report line.
pub fn print_loaded(l: &Loaded, suffix: &str) -> Outcome {
    for p in &l.pulled {
        outln!("{}{suffix}", line(p));
    }
    outln!("{}", run_line(l));
    let selection = l.entity.strip_prefix(WINDOW_PREFIX).unwrap_or(&l.entity);
    for f in &l.failures {
        eprintln!("{} {}..{} failed: {}", f.entity, f.start, f.end, f.error);
    }
    if l.failed > 0 {
        eprintln!(
            "  re-run the failed windows with: qbo reports {selection} --retry-failed --run {}",
            l.run_id
        );
    }
    if l.status == RunStatus::Cancelled {
        eprintln!("  the run was cancelled: its unfinished windows are not loaded");
    } else if l.interrupted || l.pending > 0 {
        eprintln!(
            "  continue with: qbo reports {selection} --resume --run {}",
            l.run_id
        );
    }
    if l.interrupted {
        Outcome::Interrupted
    } else if l.status == RunStatus::Success {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    }
}

pub fn line(p: &Pulled) -> String {
    format!(
        "{}: {} pieces loaded ({} split as too large), {} rows, {} cells, {} requests, {} retries",
        p.report, p.pieces, p.splits, p.rows, p.cells, p.requests, p.retries
    )
}

/// `reports: run 1c9e... success - 27 windows (27 success, 0 error, 0 not done)`.
pub fn run_line(l: &Loaded) -> String {
    let mut line = format!(
        "{}: run {} {} ({}..{}) - {} windows ({} success, {} error, {} not done",
        l.entity, l.run_id, l.status, l.start, l.end, l.windows, l.succeeded, l.failed, l.pending
    );
    if l.cancelled > 0 {
        line.push_str(&format!(", {} cancelled", l.cancelled));
    }
    line.push(')');
    line
}

pub fn classify(e: ReportError) -> CliError {
    match e.client_error() {
        Some(ClientError::Auth(auth)) if auth.needs_human() => {
            let ReportError::Qbo {
                source: ClientError::Auth(auth),
                ..
            } = e
            else {
                return CliError::failed(e);
            };
            CliError::from_auth(auth)
        }
        Some(ClientError::Cancelled) => CliError {
            outcome: Outcome::Interrupted,
            error: anyhow::anyhow!("interrupted by Ctrl-C or SIGTERM"),
        },
        _ if matches!(
            e,
            ReportError::NothingToResume { .. }
                | ReportError::RunNotFound(_)
                | ReportError::WrongRun { .. }
                | ReportError::RunCancelled { .. }
                | ReportError::BadRun { .. }
        ) =>
        {
            CliError::usage(e)
        }
        _ => CliError::failed(e),
    }
}
