//! `qbo reports`: QBO's reports over a range into raw.qb_reports (whole, as
//! received) and raw.qb_report_cells (flattened).

use chrono::NaiveDate;
use clap::{Args, ValueEnum};

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::{parse_date_arg, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::client::ClientError;
use crate::reports::pull::{Job, Pulled};
use crate::reports::{Method, Period, ReportError, ReportName};

pub const AFTER_HELP: &str = "\
Reports: ProfitAndLoss, ProfitAndLossDetail, BalanceSheet, TrialBalance, GeneralLedger,
CashFlow, AgedReceivables, AgedPayables, TransactionList (or all).

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

When QBO answers that a piece is too large (\"Unable to display more data. Please reduce the
date range.\", which QBO sends as an ordinary answer past 400,000 cells), the piece is asked
for again split into months, then weeks, then days; the split pieces record the piece they
were split from (split_from_start/_end).

Each piece is one row of raw.qb_reports: realm_id, report_name, the request's parameters
(params, params_text and their md5, params_hash, the row's key), period_start/period_end,
accounting_method, the whole JSON exactly as QBO sent it (payload) and intuit_tid. Its rows
are flattened into raw.qb_report_cells: one row per report row (data rows and section
summaries) and column, with the section path, the account id, the column's key, title and
dates, the text value and, for money columns, the amount as numeric. Loading a piece again
replaces it (payload and cells), and storing a piece removes the stored pieces of the same
report and basis that overlap it (another --period's, or the wider piece a split replaces):
no day is covered twice, so re-runs never duplicate and sums over pieces never count twice.

An answer that is not the report asked for (another name, range or basis), or whose rows qbo
cannot read, is an error after the usual retries, never stored. The first piece that fails
stops that report; the pieces stored before it stay.

Exit codes: 0 every report loaded, 1 a report failed (the error says which piece), 2 bad
usage or configuration, 3 the refresh token was rejected (run `qbo auth login`), 130
interrupted.

Example SQL (P&L by month and account):
  SELECT r.period_start, c.label AS account, c.amount
  FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
  WHERE r.report_name = 'ProfitAndLoss' AND c.row_kind = 'data' AND c.account_id IS NOT NULL
  ORDER BY 1, 2;

Examples:
  qbo reports ProfitAndLoss --start 2024-01-01 --end 2024-12-31
  qbo reports all --start 2023-01-01 --end 2024-12-31 --period quarter";

#[derive(Debug, Args)]
pub struct ReportsArgs {
    /// ProfitAndLoss, ProfitAndLossDetail, BalanceSheet, TrialBalance, GeneralLedger,
    /// CashFlow, AgedReceivables, AgedPayables, TransactionList, or all of them.
    #[arg(value_parser = parse_reports)]
    pub report: Selection,
    /// First day of the range (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date_arg)]
    pub start: NaiveDate,
    /// Last day of the range, inclusive.
    #[arg(long, value_parser = parse_date_arg)]
    pub end: NaiveDate,
    /// One request per calendar month, quarter or year of the range.
    #[arg(long, value_enum, default_value = "month")]
    pub period: Period,
    /// QBO's accounting basis, for the reports that take one (the sandbox computes Cash for
    /// ProfitAndLoss and ProfitAndLossDetail only; `qbo verify --tie-out` is accrual only).
    #[arg(long, value_enum, default_value = "accrual")]
    pub accounting_method: Method,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

#[derive(Debug, Clone)]
pub struct Selection(pub Vec<ReportName>);

pub fn parse_reports(s: &str) -> Result<Selection, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Selection(ReportName::ALL.to_vec()));
    }
    ReportName::from_str(s, true)
        .map(|r| Selection(vec![r]))
        .map_err(|_| {
            let names: Vec<&str> = ReportName::ALL.iter().map(|r| r.qbo_name()).collect();
            format!("unknown report {s:?}: use {} or all", names.join(", "))
        })
}

pub async fn run(args: ReportsArgs) -> Result<Outcome, CliError> {
    if args.end < args.start {
        return Err(CliError::usage(anyhow::anyhow!("--end is before --start")));
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = connect(&args.db).await?;
    let tokens = super::auth_cmd::open_token_store(&settings, &store).await?;
    let client = build_client(
        &settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        &store,
        on_interrupt("interrupted: the pieces loaded so far are kept; run the command again"),
    )
    .await?;
    let job = Job {
        client: client.as_ref(),
        store: &store,
        realm_id: &settings.realm_id,
        method: args.accounting_method,
        period: args.period,
    };
    let mut result = Ok(Outcome::Success);
    for name in &args.report.0 {
        match job.pull(*name, args.start, args.end).await {
            Ok(p) => outln!("{}", line(&p)),
            Err(e) => {
                result = Err(classify(e));
                break;
            }
        }
    }
    client.finish().await;
    result
}

pub fn line(p: &Pulled) -> String {
    format!(
        "{}: {} pieces loaded ({} split as too large), {} rows, {} cells, {} requests, {} retries",
        p.report, p.pieces, p.splits, p.rows, p.cells, p.requests, p.retries
    )
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
        _ => CliError::failed(e),
    }
}
