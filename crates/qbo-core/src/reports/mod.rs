//! QBO's reports (ProfitAndLoss, ProfitAndLossDetail, BalanceSheet, TrialBalance,
//! GeneralLedger, CashFlow, AgedReceivables, AgedPayables, TransactionList): loading them into `raw.qb_reports` / `raw.qb_report_cells` (`pull`), and the tie-out of
//! the staging ledger against them (`tieout`). Not to be confused with `crate::report`, the
//! run report of backfills and syncs.
//!
//! Reports cannot be paged: a range is asked for in pieces, one per period (Intuit advises
//! at most six months a call), and a piece QBO answers is too large is split (months, then
//! weeks, then days) and asked for again; the split is recorded with the pieces. The aged
//! reports are a snapshot as of one day (`report_date`), not a range: they are asked for once
//! per period, as of the period's last day, and cannot be split.

pub mod parse;
pub mod pull;
pub mod tieout;

use chrono::{Datelike, Duration, NaiveDate};

use crate::client::ClientError;
use crate::queue::QueueError;
use crate::store::StoreError;

/// The reports qbo loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum ReportName {
    #[value(name = "ProfitAndLoss", alias = "profit-and-loss")]
    ProfitAndLoss,
    #[value(name = "BalanceSheet", alias = "balance-sheet")]
    BalanceSheet,
    #[value(name = "TrialBalance", alias = "trial-balance")]
    TrialBalance,
    #[value(name = "GeneralLedger", alias = "general-ledger")]
    GeneralLedger,
    #[value(name = "ProfitAndLossDetail", alias = "profit-and-loss-detail")]
    ProfitAndLossDetail,
    #[value(name = "CashFlow", alias = "cash-flow")]
    CashFlow,
    #[value(name = "AgedReceivables", alias = "aged-receivables")]
    AgedReceivables,
    #[value(name = "AgedPayables", alias = "aged-payables")]
    AgedPayables,
    #[value(name = "TransactionList", alias = "transaction-list")]
    TransactionList,
}

impl ReportName {
    pub const ALL: [ReportName; 9] = [
        ReportName::ProfitAndLoss,
        ReportName::BalanceSheet,
        ReportName::TrialBalance,
        ReportName::GeneralLedger,
        ReportName::ProfitAndLossDetail,
        ReportName::CashFlow,
        ReportName::AgedReceivables,
        ReportName::AgedPayables,
        ReportName::TransactionList,
    ];

    pub fn qbo_name(self) -> &'static str {
        match self {
            ReportName::ProfitAndLoss => "ProfitAndLoss",
            ReportName::BalanceSheet => "BalanceSheet",
            ReportName::TrialBalance => "TrialBalance",
            ReportName::GeneralLedger => "GeneralLedger",
            ReportName::ProfitAndLossDetail => "ProfitAndLossDetail",
            ReportName::CashFlow => "CashFlow",
            ReportName::AgedReceivables => "AgedReceivables",
            ReportName::AgedPayables => "AgedPayables",
            ReportName::TransactionList => "TransactionList",
        }
    }

    /// The aged reports are a snapshot as of one day (`report_date`), not a range.
    pub fn is_as_of(self) -> bool {
        matches!(self, ReportName::AgedReceivables | ReportName::AgedPayables)
    }

    /// Whether the report takes `accounting_method` (CashFlow, the aged reports and
    /// TransactionList do not).
    pub fn takes_basis(self) -> bool {
        matches!(
            self,
            ReportName::ProfitAndLoss
                | ReportName::ProfitAndLossDetail
                | ReportName::BalanceSheet
                | ReportName::TrialBalance
                | ReportName::GeneralLedger
        )
    }

    /// Whether the report takes `summarize_column_by` (qbo always asks for one Total column).
    fn takes_columns(self) -> bool {
        matches!(
            self,
            ReportName::ProfitAndLoss
                | ReportName::BalanceSheet
                | ReportName::TrialBalance
                | ReportName::GeneralLedger
                | ReportName::CashFlow
        )
    }
}

/// QBO's `accounting_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Accrual,
    Cash,
}

impl Method {
    pub fn qbo_name(self) -> &'static str {
        match self {
            Method::Accrual => "Accrual",
            Method::Cash => "Cash",
        }
    }
}

/// How a range is cut into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Period {
    Month,
    Quarter,
    Year,
}

/// One request: a report over one piece of the range (for an as-of report, `start` and
/// `end` are both its `report_date`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: ReportName,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub method: Method,
}

impl Request {
    /// The request for `name` over `[start, end]`: an as-of report is asked for as of `end`.
    pub fn new(name: ReportName, start: NaiveDate, end: NaiveDate, method: Method) -> Request {
        let start = if name.is_as_of() { end } else { start };
        Request {
            name,
            start,
            end,
            method,
        }
    }

    /// The URL parameters, in a fixed order (their text is the request's key).
    pub fn params(&self) -> Vec<(&'static str, String)> {
        if self.name.is_as_of() {
            return vec![("report_date", self.end.to_string())];
        }
        let mut out = Vec::new();
        if self.name.takes_basis() {
            out.push(("accounting_method", self.method.qbo_name().to_string()));
        }
        out.push(("end_date", self.end.to_string()));
        out.push(("start_date", self.start.to_string()));
        if self.name.takes_columns() {
            out.push(("summarize_column_by", "Total".to_string()));
        }
        out
    }

    /// What raw.qb_reports.accounting_method records: the basis asked for, or `None` for a
    /// report that takes none.
    pub fn basis_text(&self) -> &'static str {
        if self.name.takes_basis() {
            self.method.qbo_name()
        } else {
            "None"
        }
    }

    pub fn params_text(&self) -> String {
        self.params()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("QBO request for the {report} report of {start}..{end} failed")]
    Qbo {
        report: &'static str,
        start: NaiveDate,
        end: NaiveDate,
        #[source]
        source: ClientError,
    },
    #[error("QBO says the {report} report of the single day {day} is too large to display; qbo cannot split it further")]
    DayTooLarge {
        report: &'static str,
        day: NaiveDate,
    },
    #[error("QBO says the {report} report as of {day} is too large to display; a report as of one day cannot be split")]
    AsOfTooLarge {
        report: &'static str,
        day: NaiveDate,
    },
    #[error("saving the {report} report of {start}..{end} failed")]
    Store {
        report: &'static str,
        start: NaiveDate,
        end: NaiveDate,
        #[source]
        source: StoreError,
    },
    #[error("there is no report run of {reports} for realm {realm_id} to continue; start one with --start and --end")]
    NothingToResume { reports: String, realm_id: String },
    #[error("run {0} does not exist (see `qbo report --all-runs` for run ids)")]
    RunNotFound(uuid::Uuid),
    #[error("run {run_id} is {actual}, not {requested}")]
    WrongRun {
        run_id: uuid::Uuid,
        actual: String,
        requested: String,
    },
    #[error("run {run_id} ({entity}) was cancelled: its unfinished windows are never loaded; start a new run with --start and --end")]
    RunCancelled { run_id: uuid::Uuid, entity: String },
    #[error("report run {run_id} cannot be continued: {why}")]
    BadRun { run_id: uuid::Uuid, why: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("reading the staging ledger failed (run `qbo model refresh` after a load)")]
    Staging(#[source] sqlx::Error),
    #[error("the report of {0} is not of a shape qbo knows: {1}")]
    Shape(String, String),
}

impl ReportError {
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            ReportError::Qbo { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub fn last_of_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).map_or(d, |n| n - Duration::days(1))
}

/// `[start, end]` cut at period boundaries (calendar months, quarters or years).
pub fn pieces(start: NaiveDate, end: NaiveDate, period: Period) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let mut from = start;
    while from <= end {
        let mut to = last_of_month(from);
        let months_more = match period {
            Period::Month => 0,
            Period::Quarter => 2 - (from.month0() % 3),
            Period::Year => 12 - from.month(),
        };
        for _ in 0..months_more {
            to = last_of_month(to + Duration::days(1));
        }
        let to = to.min(end);
        out.push((from, to));
        from = to + Duration::days(1);
    }
    out
}

/// The last `months` calendar months through `today`: from the first day of the month
/// `months - 1` before today's, to today (what `qbo sync --reports` refreshes).
pub fn recent(today: NaiveDate, months: u32) -> (NaiveDate, NaiveDate) {
    let back = months.saturating_sub(1);
    let start = today
        .with_day(1)
        .and_then(|d| d.checked_sub_months(chrono::Months::new(back)))
        .unwrap_or(today);
    (start, today)
}

/// How a piece QBO found too large is split: into months if it spans more than one, else
/// into weeks (7 days), else into days. None for a single day.
pub fn split(start: NaiveDate, end: NaiveDate) -> Option<Vec<(NaiveDate, NaiveDate)>> {
    if end == start {
        return None;
    }
    if (start.year(), start.month()) != (end.year(), end.month()) {
        return Some(pieces(start, end, Period::Month));
    }
    let step = if (end - start).num_days() >= 7 { 7 } else { 1 };
    let mut out = Vec::new();
    let mut from = start;
    while from <= end {
        let to = (from + Duration::days(step - 1)).min(end);
        out.push((from, to));
        from = to + Duration::days(1);
    }
    Some(out)
}

/// Cents as QBO writes money: `-1234.56`.
pub fn shape_money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_are_cut_at_calendar_boundaries() {
        assert_eq!(
            pieces(d("2024-01-15"), d("2024-03-10"), Period::Month),
            vec![
                (d("2024-01-15"), d("2024-01-31")),
                (d("2024-02-01"), d("2024-02-29")),
                (d("2024-03-01"), d("2024-03-10")),
            ]
        );
        assert_eq!(
            pieces(d("2024-02-01"), d("2024-12-31"), Period::Quarter),
            vec![
                (d("2024-02-01"), d("2024-03-31")),
                (d("2024-04-01"), d("2024-06-30")),
                (d("2024-07-01"), d("2024-09-30")),
                (d("2024-10-01"), d("2024-12-31")),
            ]
        );
        assert_eq!(
            pieces(d("2023-06-01"), d("2024-02-01"), Period::Year),
            vec![
                (d("2023-06-01"), d("2023-12-31")),
                (d("2024-01-01"), d("2024-02-01"))
            ]
        );
    }

    #[test]
    fn recent_months_run_from_a_month_start_through_today() {
        assert_eq!(
            recent(d("2024-03-10"), 2),
            (d("2024-02-01"), d("2024-03-10"))
        );
        assert_eq!(
            recent(d("2024-01-31"), 3),
            (d("2023-11-01"), d("2024-01-31"))
        );
        assert_eq!(
            recent(d("2024-05-01"), 1),
            (d("2024-05-01"), d("2024-05-01"))
        );
    }

    #[test]
    fn a_too_large_piece_splits_into_months_then_weeks_then_days() {
        assert_eq!(split(d("2024-01-01"), d("2024-03-31")).unwrap().len(), 3);
        let weeks = split(d("2024-01-01"), d("2024-01-31")).unwrap();
        assert_eq!(weeks.len(), 5);
        assert_eq!(weeks[4], (d("2024-01-29"), d("2024-01-31")));
        assert_eq!(split(d("2024-01-01"), d("2024-01-07")).unwrap().len(), 7);
        assert_eq!(split(d("2024-01-03"), d("2024-01-03")), None);
    }
}
