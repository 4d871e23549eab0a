//! `GET /v3/company/{realm}/reports/{name}`: ProfitAndLoss, ProfitAndLossDetail,
//! BalanceSheet, TrialBalance, GeneralLedger, CashFlow, AgedReceivables, AgedPayables and
//! TransactionList computed from the sandbox's own live transactions (see `ledger`), in QBO's
//! report JSON (see `shape`), behind the same gate as every data endpoint. Each report takes
//! its own parameters (`params::Accepts`); one it does not take is a 400 ValidationFault. Past
//! `Faults::report_max_cells` cells (QBO's cap is 400,000) a report is cut short the way QBO
//! cuts it: still a 200, ending in a row that reads "Unable to display more data...".

mod aged;
mod cashflow;
mod detail;
mod ledger;
mod listings;
mod params;
mod shape;
mod statements;

use params::Accepts;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::gate::{self, Kind, Reply, Req};
use super::{envelope, Inner};

/// The reports the sandbox computes, and the parameters each takes.
pub const SERVED: &[(&str, Accepts)] = &[
    ("ProfitAndLoss", Accepts::RangeBasisColumns),
    ("ProfitAndLossDetail", Accepts::RangeBasis),
    ("BalanceSheet", Accepts::RangeBasisColumns),
    ("TrialBalance", Accepts::RangeBasisColumns),
    ("GeneralLedger", Accepts::RangeBasisColumns),
    ("CashFlow", Accepts::RangeColumns),
    ("AgedReceivables", Accepts::AsOf),
    ("AgedPayables", Accepts::AsOf),
    ("TransactionList", Accepts::Range),
];

/// Reports QBO serves that the sandbox does not compute: refused by name, not "not found".
const KNOWN: &[&str] = &[
    "AgedReceivableDetail",
    "AgedPayableDetail",
    "BalanceSheetDetail",
    "CustomerBalance",
    "VendorBalance",
    "JournalReport",
];

pub async fn endpoint(
    State(inner): State<Arc<Inner>>,
    Path((realm, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = gate::params(raw.clone());
    let log = format!("reports/{name}?{}", raw.unwrap_or_default());
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Report,
        Some(&log),
        |req, time| answer(req, &realm, &name, time),
    )
    .await
}

fn answer(req: &Req<'_>, realm: &str, name: &str, time: &str) -> Reply {
    let Some(&(name, accepts)) = SERVED.iter().find(|n| n.0 == name) else {
        let detail = if KNOWN.contains(&name) {
            let served: Vec<&str> = SERVED.iter().map(|s| s.0).collect();
            format!(
                "the sandbox does not compute the {name} report; it serves {}",
                served.join(", ")
            )
        } else {
            format!("Operation Could not find resource for relative : /v3/company/{realm}/reports/{name} is not supported.")
        };
        return req.bad(envelope::fault(
            "ValidationFault",
            "500",
            "Unsupported Operation",
            &detail,
            time,
        ));
    };
    let today = super::clock::local_date(req.inner.now());
    let p = match params::Params::parse(req.params, today, name, accepts) {
        Ok(p) => p,
        Err(r) => {
            return req.bad(envelope::fault(
                "ValidationFault",
                r.code,
                r.message,
                &r.detail,
                time,
            ))
        }
    };
    // `fail_window_containing`: a report whose days hold that instant's date answers 500
    // (a failure that lasts while the knob is set, so a window of it fails for good).
    let failing_day = req
        .faults
        .fail_window_containing
        .as_deref()
        .and_then(|s| s.get(..10))
        .and_then(|d| d.parse::<chrono::NaiveDate>().ok());
    if failing_day.is_some_and(|day| p.start <= day && day <= p.end) {
        let body = envelope::system_error(500, time);
        return Reply::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, body, req.xml)
            .note("fail_window_containing");
    }
    let cash_basis = matches!(name, "ProfitAndLoss" | "ProfitAndLossDetail");
    if p.method == params::Method::Cash && !cash_basis {
        return req.bad(envelope::fault(
            "ValidationFault",
            "2030",
            "Invalid parameter",
            &format!(
                "accounting_method: the sandbox computes the {name} report on the accrual basis only (Cash: ProfitAndLoss and ProfitAndLossDetail)"
            ),
            time,
        ));
    }
    let one_column = matches!(name, "TrialBalance" | "GeneralLedger");
    if one_column && p.columns != params::Columns::Total {
        return req.bad(envelope::fault(
            "ValidationFault",
            "2030",
            "Invalid parameter",
            &format!("summarize_column_by: the {name} report has no period columns"),
            time,
        ));
    }
    let store = &req.realm.store;
    let mut report = match name {
        "AgedReceivables" => aged::aged(store, aged::Side::Receivables, &p, time),
        "AgedPayables" => aged::aged(store, aged::Side::Payables, &p, time),
        _ => {
            let mut books = ledger::Books::of(store);
            if p.method == params::Method::Cash {
                books = books.cash_basis(store);
            }
            match name {
                "ProfitAndLoss" => statements::profit_and_loss(&books, &p, time),
                "ProfitAndLossDetail" => detail::profit_and_loss_detail(&books, &p, time),
                "BalanceSheet" => statements::balance_sheet(&books, &p, time),
                "TrialBalance" => listings::trial_balance(&books, &p, time),
                "CashFlow" => cashflow::cash_flow(&books, &p, time),
                "TransactionList" => detail::transaction_list(&books, &p, time),
                _ => listings::general_ledger(&books, &p, time),
            }
        }
    };
    if shape::cap(&mut report, req.faults.report_max_cells) {
        return req.ok(report).note("report_max_cells");
    }
    req.ok(report)
}
