//! `GET /v3/company/{realm}/reports/{name}`: ProfitAndLoss, BalanceSheet, TrialBalance and
//! GeneralLedger computed from the sandbox's own live transactions (see `ledger`), in QBO's
//! report JSON (see `shape`), behind the same gate as every data endpoint. Past
//! `Faults::report_max_cells` cells (QBO's cap is 400,000) a report is cut short the way QBO
//! cuts it: still a 200, ending in a row that reads "Unable to display more data...".

mod ledger;
mod listings;
mod params;
mod shape;
mod statements;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::gate::{self, Kind, Reply, Req};
use super::{envelope, Inner};

/// The reports the sandbox computes.
pub const SERVED: &[&str] = &[
    "ProfitAndLoss",
    "BalanceSheet",
    "TrialBalance",
    "GeneralLedger",
];

/// Reports QBO serves that the sandbox does not compute: refused by name, not "not found".
const KNOWN: &[&str] = &[
    "ProfitAndLossDetail",
    "CashFlow",
    "AgedReceivables",
    "AgedReceivableDetail",
    "AgedPayables",
    "AgedPayableDetail",
    "TransactionList",
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
    let Some(&name) = SERVED.iter().find(|n| **n == name) else {
        let detail = if KNOWN.contains(&name) {
            format!(
                "the sandbox does not compute the {name} report; it serves {}",
                SERVED.join(", ")
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
    let p = match params::Params::parse(req.params, today) {
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
    if p.method == params::Method::Cash {
        return req.bad(envelope::fault(
            "ValidationFault",
            "2030",
            "Invalid parameter",
            "accounting_method: the sandbox computes accrual-basis reports only",
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
    let books = ledger::Books::of(&req.realm.store);
    let mut report = match name {
        "ProfitAndLoss" => statements::profit_and_loss(&books, &p, time),
        "BalanceSheet" => statements::balance_sheet(&books, &p, time),
        "TrialBalance" => listings::trial_balance(&books, &p, time),
        _ => listings::general_ledger(&books, &p, time),
    };
    if shape::cap(&mut report, req.faults.report_max_cells) {
        return req.ok(report).note("report_max_cells");
    }
    req.ok(report)
}
