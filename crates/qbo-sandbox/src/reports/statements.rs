//! ProfitAndLoss and BalanceSheet from the company's postings, one money column per period
//! (plus Total when there are several), in QBO's sections and groups.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use super::ledger::{Account, Books, Class};
use super::params::Params;
use super::shape::{self, amounts, blank_header, data_row, section};

type Period = (NaiveDate, NaiveDate);

/// An account's natural sign: debits for assets and expenses, credits for the rest.
pub fn natural(a: &Account, cents: i64) -> i64 {
    match a.class {
        Class::Asset | Class::Expense => cents,
        _ => -cents,
    }
}

/// Per account, the sum of its postings within each period.
fn activity(books: &Books, periods: &[Period]) -> BTreeMap<u64, Vec<i64>> {
    let mut out: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for p in &books.postings {
        if let Some(i) = periods
            .iter()
            .position(|(a, b)| *a <= p.date && p.date <= *b)
        {
            out.entry(p.account)
                .or_insert_with(|| vec![0; periods.len()])[i] += p.cents;
        }
    }
    out
}

/// The values a row shows: one per period, then their total when there are several.
fn with_total(mut v: Vec<i64>) -> Vec<i64> {
    if v.len() > 1 {
        let t = v.iter().sum();
        v.push(t);
    }
    v
}

fn add(a: &[i64], b: &[i64], sign: i64) -> Vec<i64> {
    a.iter().zip(b).map(|(x, y)| x + sign * y).collect()
}

fn account_label(a: &Account) -> Value {
    json!({ "value": a.name, "id": a.id.to_string() })
}

/// A section of the accounts of `types`, or None when none of them has anything to show.
fn account_section(
    books: &Books,
    values: &BTreeMap<u64, Vec<i64>>,
    types: &[&str],
    group: &str,
    label: &str,
    n: usize,
) -> Option<(Value, Vec<i64>)> {
    let mut rows = Vec::new();
    let mut total = vec![0; n];
    for (id, v) in values {
        let Some(a) = books.accounts.get(id) else {
            continue;
        };
        if !types.contains(&a.account_type.as_str()) || v.iter().all(|c| *c == 0) {
            continue;
        }
        let v: Vec<i64> = v.iter().map(|c| natural(a, *c)).collect();
        total = add(&total, &v, 1);
        rows.push(data_row(amounts(account_label(a), &with_total(v), true)));
    }
    if rows.is_empty() {
        return None;
    }
    let width = with_total(total.clone()).len() + 1;
    let summary = amounts(
        shape::text(&format!("Total {label}")),
        &with_total(total.clone()),
        false,
    );
    Some((
        section(group, Some(blank_header(label, width)), rows, summary),
        total,
    ))
}

fn summary_only(group: &str, label: &str, v: &[i64]) -> Value {
    section(
        group,
        None,
        Vec::new(),
        amounts(shape::text(label), &with_total(v.to_vec()), false),
    )
}

pub fn profit_and_loss(books: &Books, p: &Params, time: &str) -> Value {
    let periods = p.periods();
    let n = periods.len();
    let values = activity(books, &periods);
    let part = |types: &[&str], group: &str, label: &str| {
        account_section(books, &values, types, group, label, n)
    };
    let total = |s: &Option<(Value, Vec<i64>)>| s.as_ref().map_or(vec![0; n], |(_, t)| t.clone());
    let income = part(&["Income"], "Income", "Income");
    let cogs = part(&["Cost of Goods Sold"], "COGS", "Cost of Goods Sold");
    let expenses = part(&["Expense"], "Expenses", "Expenses");
    let other_income = part(&["Other Income"], "OtherIncome", "Other Income");
    let other_expenses = part(&["Other Expense"], "OtherExpenses", "Other Expenses");
    let gross = add(&total(&income), &total(&cogs), -1);
    let operating = add(&gross, &total(&expenses), -1);
    let net_other = add(&total(&other_income), &total(&other_expenses), -1);
    let net = add(&operating, &net_other, 1);
    let has_other = other_income.is_some() || other_expenses.is_some();
    let mut rows = Vec::new();
    rows.extend(income.map(|s| s.0));
    rows.extend(cogs.map(|s| s.0));
    rows.push(summary_only("GrossProfit", "Gross Profit", &gross));
    rows.extend(expenses.map(|s| s.0));
    rows.push(summary_only(
        "NetOperatingIncome",
        "Net Operating Income",
        &operating,
    ));
    rows.extend(other_income.map(|s| s.0));
    rows.extend(other_expenses.map(|s| s.0));
    if has_other {
        rows.push(summary_only(
            "NetOtherIncome",
            "Net Other Income",
            &net_other,
        ));
    }
    rows.push(summary_only("NetIncome", "Net Income", &net));
    let no_data = values.values().all(|v| v.iter().all(|c| *c == 0));
    shape::report(
        shape::header("ProfitAndLoss", p, time, no_data),
        shape::money_columns(p, &periods),
        rows,
    )
}

/// Per account, its balance at the end of each period; and per period the company's net
/// income of earlier years (retained earnings) and of the year so far (net income).
struct Balances {
    accounts: BTreeMap<u64, Vec<i64>>,
    retained: Vec<i64>,
    net_income: Vec<i64>,
}

fn balances(books: &Books, periods: &[Period]) -> Balances {
    let n = periods.len();
    let mut b = Balances {
        accounts: BTreeMap::new(),
        retained: vec![0; n],
        net_income: vec![0; n],
    };
    let re = books.retained_earnings().map(|a| a.id);
    for p in &books.postings {
        let Some(a) = books.accounts.get(&p.account) else {
            continue;
        };
        for (i, (_, end)) in periods.iter().enumerate() {
            if p.date > *end {
                continue;
            }
            if re == Some(a.id) {
                // Direct postings to the retained-earnings account show on its one line.
                b.retained[i] -= p.cents;
            } else if a.class.is_profit_and_loss() {
                // Credits (income) raise equity.
                let year_start = NaiveDate::from_ymd_opt(end.year(), 1, 1).unwrap_or(*end);
                if p.date < year_start {
                    b.retained[i] -= p.cents;
                } else {
                    b.net_income[i] -= p.cents;
                }
            } else {
                b.accounts.entry(p.account).or_insert_with(|| vec![0; n])[i] += p.cents;
            }
        }
    }
    b
}

pub fn balance_sheet(books: &Books, p: &Params, time: &str) -> Value {
    let periods = p.periods();
    let n = periods.len();
    let b = balances(books, &periods);
    // A balance sheet's Total column is the last period's balance, not a sum.
    let last = |v: &[i64]| -> Vec<i64> {
        let mut v = v.to_vec();
        if n > 1 {
            v.push(*v.last().unwrap_or(&0));
        }
        v
    };
    let width = last(&vec![0; n]).len() + 1;
    let group = |types: &[&str], group: &str, label: &str| -> Option<(Value, Vec<i64>)> {
        let mut rows = Vec::new();
        let mut total = vec![0; n];
        for (id, v) in &b.accounts {
            let Some(a) = books.accounts.get(id) else {
                continue;
            };
            if !types.contains(&a.account_type.as_str()) || v.iter().all(|c| *c == 0) {
                continue;
            }
            let v: Vec<i64> = v.iter().map(|c| natural(a, *c)).collect();
            total = add(&total, &v, 1);
            rows.push(data_row(amounts(account_label(a), &last(&v), false)));
        }
        (!rows.is_empty()).then(|| {
            let summary = amounts(shape::text(&format!("Total {label}")), &last(&total), false);
            (
                section(group, Some(blank_header(label, width)), rows, summary),
                total,
            )
        })
    };
    let parent =
        |parts: Vec<Option<(Value, Vec<i64>)>>, group: &str, label: &str, total_label: &str| {
            let mut rows = Vec::new();
            let mut total = vec![0; n];
            for (s, t) in parts.into_iter().flatten() {
                rows.push(s);
                total = add(&total, &t, 1);
            }
            let summary = amounts(shape::text(total_label), &last(&total), false);
            (
                section(group, Some(blank_header(label, width)), rows, summary),
                total,
            )
        };
    let current_assets = parent(
        vec![
            group(&["Bank"], "BankAccounts", "Bank Accounts"),
            group(&["Accounts Receivable"], "AR", "Accounts Receivable"),
            group(
                &["Other Current Asset"],
                "OtherCurrentAssets",
                "Other Current Assets",
            ),
        ],
        "CurrentAssets",
        "Current Assets",
        "Total Current Assets",
    );
    let assets = parent(
        vec![
            Some(current_assets),
            group(&["Fixed Asset"], "FixedAssets", "Fixed Assets"),
            group(&["Other Asset"], "OtherAssets", "Other Assets"),
        ],
        "TotalAssets",
        "ASSETS",
        "TOTAL ASSETS",
    );
    let current_liabilities = parent(
        vec![
            group(&["Accounts Payable"], "AP", "Accounts Payable"),
            group(&["Credit Card"], "CreditCards", "Credit Cards"),
            group(
                &["Other Current Liability"],
                "OtherCurrentLiabilities",
                "Other Current Liabilities",
            ),
        ],
        "CurrentLiabilities",
        "Current Liabilities",
        "Total Current Liabilities",
    );
    let liabilities = parent(
        vec![
            Some(current_liabilities),
            group(
                &["Long Term Liability"],
                "LongTermLiabilities",
                "Long-Term Liabilities",
            ),
        ],
        "Liabilities",
        "Liabilities",
        "Total Liabilities",
    );
    let equity = {
        let mut rows = Vec::new();
        let mut total = vec![0; n];
        if let Some((s, t)) = group(&["Equity"], "EquityAccounts", "Equity accounts") {
            // QBO lists equity accounts directly under Equity.
            rows.extend(s["Rows"]["Row"].as_array().cloned().unwrap_or_default());
            total = add(&total, &t, 1);
        }
        let retained = books
            .retained_earnings()
            .map_or_else(|| shape::text("Retained Earnings"), account_label);
        for (label, v) in [
            (retained, &b.retained),
            (shape::text("Net Income"), &b.net_income),
        ] {
            rows.push(data_row(amounts(label, &last(v), false)));
            total = add(&total, v, 1);
        }
        let summary = amounts(shape::text("Total Equity"), &last(&total), false);
        (
            section("Equity", Some(blank_header("Equity", width)), rows, summary),
            total,
        )
    };
    let le = parent(
        vec![Some(liabilities), Some(equity)],
        "TotalLiabilitiesAndEquity",
        "LIABILITIES AND EQUITY",
        "TOTAL LIABILITIES AND EQUITY",
    );
    let no_data = b.accounts.is_empty();
    shape::report(
        shape::header("BalanceSheet", p, time, no_data),
        shape::money_columns(p, &periods),
        vec![assets.0, le.0],
    )
}
