//! CashFlow (QBO's statement of cash flows, indirect method) from the postings: net income,
//! then the change of every balance-sheet account that is not cash, as cash it used or
//! provided, in QBO's sections: operating (net income and the working-capital accounts:
//! A/R, other current assets, A/P, credit cards, other current liabilities), investing
//! (fixed and other assets) and financing (long-term liabilities and equity). Cash is the
//! accounts of type Bank. As every transaction balances, the net cash increase is the change
//! of the bank accounts over the period, and the report's Cash at end of period is the bank
//! balance then.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::ledger::{Account, Books};
use super::params::Params;
use super::shape::{self, amounts, blank_header, data_row, section};

type Period = (NaiveDate, NaiveDate);

const OPERATING: &[&str] = &[
    "Accounts Receivable",
    "Other Current Asset",
    "Accounts Payable",
    "Credit Card",
    "Other Current Liability",
];
const INVESTING: &[&str] = &["Fixed Asset", "Other Asset"];
const FINANCING: &[&str] = &["Long Term Liability", "Equity"];

pub fn is_cash(a: &Account) -> bool {
    a.account_type == "Bank"
}

fn with_total(mut v: Vec<i64>) -> Vec<i64> {
    if v.len() > 1 {
        let t = v.iter().sum();
        v.push(t);
    }
    v
}

pub fn cash_flow(books: &Books, p: &Params, time: &str) -> Value {
    let periods: Vec<Period> = p.periods();
    let n = periods.len();
    let width = with_total(vec![0; n]).len() + 1;
    // Cash each account provided per period: minus its debits.
    let mut provided: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    let mut net_income = vec![0; n];
    let mut opening_cash = vec![0; n];
    for post in &books.postings {
        let Some(a) = books.accounts.get(&post.account) else {
            continue;
        };
        for (i, (from, to)) in periods.iter().enumerate() {
            if is_cash(a) {
                if post.date < *from {
                    opening_cash[i] += post.cents;
                }
                continue;
            }
            if post.date < *from || post.date > *to {
                continue;
            }
            if a.class.is_profit_and_loss() {
                net_income[i] -= post.cents;
            } else {
                provided.entry(a.id).or_insert_with(|| vec![0; n])[i] -= post.cents;
            }
        }
    }
    let label = |a: &Account| json!({ "value": a.name, "id": a.id.to_string() });
    let rows_of = |types: &[&str]| -> (Vec<Value>, Vec<i64>) {
        let mut rows = Vec::new();
        let mut total = vec![0; n];
        for (id, v) in &provided {
            let Some(a) = books.accounts.get(id) else {
                continue;
            };
            if !types.contains(&a.account_type.as_str()) || v.iter().all(|c| *c == 0) {
                continue;
            }
            for (t, c) in total.iter_mut().zip(v) {
                *t += c;
            }
            rows.push(data_row(amounts(label(a), &with_total(v.clone()), true)));
        }
        (rows, total)
    };
    let summary =
        |text: &str, v: &[i64]| amounts(shape::text(text), &with_total(v.to_vec()), false);
    let (adjust_rows, adjust) = rows_of(OPERATING);
    let mut operating_rows = vec![data_row(amounts(
        shape::text("Net Income"),
        &with_total(net_income.clone()),
        true,
    ))];
    const ADJUST: &str = "Adjustments to reconcile Net Income to Net Cash provided by operations:";
    if !adjust_rows.is_empty() {
        operating_rows.push(section(
            "OperatingAdjustments",
            Some(blank_header(ADJUST, width)),
            adjust_rows,
            summary(&format!("Total {ADJUST}"), &adjust),
        ));
    }
    let operating: Vec<i64> = net_income.iter().zip(&adjust).map(|(a, b)| a + b).collect();
    let mut rows = vec![section(
        "OperatingActivities",
        Some(blank_header("OPERATING ACTIVITIES", width)),
        operating_rows,
        summary("Net cash provided by operating activities", &operating),
    )];
    let mut increase = operating.clone();
    for (types, group, title, total_label) in [
        (
            INVESTING,
            "InvestingActivities",
            "INVESTING ACTIVITIES",
            "Net cash provided by investing activities",
        ),
        (
            FINANCING,
            "FinancingActivities",
            "FINANCING ACTIVITIES",
            "Net cash provided by financing activities",
        ),
    ] {
        let (r, t) = rows_of(types);
        if r.is_empty() {
            continue;
        }
        for (i, c) in increase.iter_mut().zip(&t) {
            *i += c;
        }
        rows.push(section(
            group,
            Some(blank_header(title, width)),
            r,
            summary(total_label, &t),
        ));
    }
    // Beginning and end of period are balances: their Total column is the first period's
    // beginning and the last period's end, not a sum.
    let ending: Vec<i64> = opening_cash
        .iter()
        .zip(&increase)
        .map(|(a, b)| a + b)
        .collect();
    let balance = |v: &[i64], pick_first: bool| -> Vec<i64> {
        let mut v = v.to_vec();
        if n > 1 {
            let t = if pick_first { v[0] } else { v[n - 1] };
            v.push(t);
        }
        v
    };
    rows.push(section(
        "CashIncrease",
        None,
        Vec::new(),
        summary("Net cash increase for period", &increase),
    ));
    rows.push(section(
        "BeginningCash",
        None,
        Vec::new(),
        amounts(
            shape::text("Cash at beginning of period"),
            &balance(&opening_cash, true),
            false,
        ),
    ));
    rows.push(section(
        "EndingCash",
        None,
        Vec::new(),
        amounts(
            shape::text("Cash at end of period"),
            &balance(&ending, false),
            false,
        ),
    ));
    let no_data = provided.is_empty() && net_income.iter().all(|c| *c == 0);
    shape::report(
        shape::header_without_basis("CashFlow", p, time, no_data, &[]),
        shape::money_columns(p, &periods),
        rows,
    )
}
