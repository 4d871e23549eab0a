//! A report request's parameters, checked as strictly as QBO checks them: a malformed date,
//! an end before the start, an accounting method or column grouping QBO does not know is a
//! 400 ValidationFault naming the parameter. Parameters QBO knows that the sandbox does not
//! implement are refused the same way (rather than silently ignored, which would hand the
//! caller an unfiltered report it did not ask for).

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};

/// QBO's `accounting_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Accrual,
    Cash,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Accrual => "Accrual",
            Method::Cash => "Cash",
        }
    }
}

/// QBO's `summarize_column_by` (the time groupings; the sandbox has no others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    Total,
    Days,
    Week,
    Month,
    Quarter,
    Year,
}

impl Columns {
    pub fn name(self) -> &'static str {
        match self {
            Columns::Total => "Total",
            Columns::Days => "Days",
            Columns::Week => "Week",
            Columns::Month => "Month",
            Columns::Quarter => "Quarter",
            Columns::Year => "Year",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Params {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub method: Method,
    pub columns: Columns,
    /// The as-of date of the aged reports (`report_date`, default today); `start` and `end`
    /// are both this date for them.
    pub report_date: NaiveDate,
}

/// Which parameters a report takes (the ones the sandbox implements; QBO knows more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// start_date, end_date, accounting_method, summarize_column_by.
    RangeBasisColumns,
    /// start_date, end_date, accounting_method.
    RangeBasis,
    /// start_date, end_date, summarize_column_by.
    RangeColumns,
    /// start_date, end_date.
    Range,
    /// report_date.
    AsOf,
}

impl Accepts {
    fn takes(self, param: &str) -> bool {
        match param {
            "start_date" | "end_date" => self != Accepts::AsOf,
            "accounting_method" => matches!(self, Accepts::RangeBasisColumns | Accepts::RangeBasis),
            "summarize_column_by" => {
                matches!(self, Accepts::RangeBasisColumns | Accepts::RangeColumns)
            }
            "report_date" => self == Accepts::AsOf,
            _ => false,
        }
    }
}

/// Report parameters the sandbox implements for some report (each report takes a subset).
const IMPLEMENTED: &[&str] = &[
    "start_date",
    "end_date",
    "accounting_method",
    "summarize_column_by",
    "report_date",
];

/// Parameters every API request may carry.
const GENERAL: &[&str] = &["minorversion", "requestid"];

/// A refused parameter: QBO's code and the detail that names it.
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: &'static str,
    pub detail: String,
}

fn invalid(detail: String) -> Refusal {
    Refusal {
        code: "2030",
        message: "Invalid parameter",
        detail,
    }
}

/// Parameters QBO's report service knows that the sandbox does not compute.
const UNSUPPORTED: &[&str] = &[
    "date_macro",
    "customer",
    "vendor",
    "item",
    "class",
    "department",
    "account",
    "account_type",
    "columns",
    "sort_by",
    "sort_order",
    "qzurl",
    "source_account",
    "source_account_type",
    "adjusted_gain_loss",
    "aging_period",
    "num_periods",
    "aging_method",
    "past_due",
    "term",
    "shipvia",
    "group_by",
    "transaction_type",
    "payment_method",
    "cleared",
    "printed",
    "name",
    "memo",
    "docnum",
];

fn date(params: &HashMap<String, String>, name: &str) -> Result<Option<NaiveDate>, Refusal> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "{name}: the date {text:?} is not valid; use the format yyyy-MM-dd"
            ))
        })
}

impl Params {
    /// `today` stands in for a missing range: QBO's default is this year to date.
    pub fn parse(
        params: &HashMap<String, String>,
        today: NaiveDate,
        report: &str,
        accepts: Accepts,
    ) -> Result<Params, Refusal> {
        if let Some(p) = UNSUPPORTED.iter().find(|p| params.contains_key(**p)) {
            return Err(invalid(format!(
                "{p}: the sandbox does not implement this report parameter"
            )));
        }
        let mut names: Vec<&String> = params.keys().collect();
        names.sort();
        for p in names {
            if GENERAL.contains(&p.as_str()) {
                continue;
            }
            if !IMPLEMENTED.contains(&p.as_str()) {
                return Err(invalid(format!("{p}: not a report parameter QBO knows")));
            }
            if !accepts.takes(p) {
                return Err(invalid(format!(
                    "{p}: not a parameter of the {report} report"
                )));
            }
        }
        let report_date = date(params, "report_date")?.unwrap_or(today);
        if accepts == Accepts::AsOf {
            return Ok(Params {
                start: report_date,
                end: report_date,
                method: Method::Accrual,
                columns: Columns::Total,
                report_date,
            });
        }
        let start = date(params, "start_date")?;
        let end = date(params, "end_date")?;
        let year_start = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
        let (start, end) = match (start, end) {
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => (s, today.max(s)),
            (None, Some(e)) => (year_start.min(e), e),
            (None, None) => (year_start, today),
        };
        if end < start {
            return Err(invalid(format!(
                "end_date {end} is before start_date {start}"
            )));
        }
        let method = match params
            .get("accounting_method")
            .map(|m| m.to_ascii_lowercase())
        {
            None => Method::Accrual,
            Some(m) if m == "accrual" => Method::Accrual,
            Some(m) if m == "cash" => Method::Cash,
            Some(m) => {
                return Err(invalid(format!(
                    "accounting_method {m:?} is not valid; use Accrual or Cash"
                )))
            }
        };
        let columns = match params.get("summarize_column_by").map(String::as_str) {
            None | Some("Total") => Columns::Total,
            Some("Days") => Columns::Days,
            Some("Week") => Columns::Week,
            Some("Month") => Columns::Month,
            Some("Quarter") => Columns::Quarter,
            Some("Year") => Columns::Year,
            Some(other) => {
                return Err(invalid(format!(
                    "summarize_column_by {other:?} is not valid here; use Total, Days, Week, Month, Quarter or Year"
                )))
            }
        };
        Ok(Params {
            start,
            end,
            method,
            columns,
            report_date,
        })
    }

    /// The report's column periods, in order, clipped to the range (one for `Total`).
    pub fn periods(&self) -> Vec<(NaiveDate, NaiveDate)> {
        let mut out = Vec::new();
        let mut from = self.start;
        while from <= self.end {
            let to = match self.columns {
                Columns::Total => self.end,
                Columns::Days => from,
                // QBO's weeks run Sunday to Saturday.
                Columns::Week => {
                    from + Duration::days(6 - i64::from(from.weekday().num_days_from_sunday()))
                }
                Columns::Month => last_of_month(from.year(), from.month()),
                Columns::Quarter => last_of_month(from.year(), (from.month() - 1) / 3 * 3 + 3),
                Columns::Year => last_of_month(from.year(), 12),
            }
            .min(self.end);
            out.push((from, to));
            from = to + Duration::days(1);
        }
        out
    }
}

pub fn last_of_month(year: i32, month: u32) -> NaiveDate {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.map_or(NaiveDate::MAX, |d| d - Duration::days(1))
}

/// A column's title as QBO writes it: `Jan 2024`, `Q1 2024`, `2024`, `Jan 7-13, 2024`.
pub fn title(columns: Columns, (from, to): (NaiveDate, NaiveDate)) -> String {
    match columns {
        Columns::Total => "Total".into(),
        Columns::Days => from.format("%b %-d, %Y").to_string(),
        Columns::Week if from.month() == to.month() => {
            format!(
                "{} {}-{}, {}",
                from.format("%b"),
                from.day(),
                to.day(),
                from.year()
            )
        }
        Columns::Week => format!("{} - {}", from.format("%b %-d"), to.format("%b %-d, %Y")),
        Columns::Month => from.format("%b %Y").to_string(),
        Columns::Quarter => format!("Q{} {}", (from.month() - 1) / 3 + 1, from.year()),
        Columns::Year => from.year().to_string(),
    }
}
