//! ProfitAndLossDetail and TransactionList: the P&L's accounts with every posting to them
//! (one row per posting, a running balance, a "Total for" summary per account, in the P&L's
//! sections), and one row per transaction of the range.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::ledger::{Books, Posting};
use super::listings::type_label;
use super::params::Params;
use super::shape::{self, blank_header, data_row, section, text};
use super::statements::natural;

const PL_DETAIL_COLUMNS: &[(&str, &str, &str)] = &[
    ("Date", "Date", "tx_date"),
    ("Transaction Type", "String", "txn_type"),
    ("Num", "String", "doc_num"),
    ("Name", "String", "name"),
    ("Memo/Description", "String", "memo"),
    ("Split", "String", "split_acc"),
    ("Amount", "Money", "subt_nat_amount"),
    ("Balance", "Money", "rbal_nat_amount"),
];

const LIST_COLUMNS: &[(&str, &str, &str)] = &[
    ("Date", "Date", "tx_date"),
    ("Transaction Type", "String", "txn_type"),
    ("Num", "String", "doc_num"),
    ("Posting", "Boolean", "is_no_post"),
    ("Name", "String", "name"),
    ("Memo/Description", "String", "memo"),
    ("Account", "String", "account_name"),
    ("Split", "String", "other_account"),
    ("Amount", "Money", "subt_nat_amount"),
];

/// Per transaction (index into `books.txns`), the accounts its postings touch.
fn accounts_of(books: &Books) -> BTreeMap<usize, Vec<&Posting>> {
    let mut out: BTreeMap<usize, Vec<&Posting>> = BTreeMap::new();
    for p in &books.postings {
        out.entry(p.txn).or_default().push(p);
    }
    out
}

fn account_name(books: &Books, id: u64) -> String {
    books
        .accounts
        .get(&id)
        .map_or_else(String::new, |a| a.name.clone())
}

/// QBO's Split column: the one other account the transaction posts to, or "-Split-".
fn split(books: &Books, postings: &[&Posting], not: u64) -> String {
    let others: BTreeSet<u64> = postings
        .iter()
        .map(|p| p.account)
        .filter(|a| *a != not)
        .collect();
    match others.len() {
        0 => String::new(),
        1 => others
            .iter()
            .next()
            .map_or_else(String::new, |a| account_name(books, *a)),
        _ => "-Split-".to_string(),
    }
}

fn name_cell(books: &Books, txn: usize) -> Value {
    match books.txns.get(txn).and_then(|t| t.name.as_ref()) {
        Some((id, name)) => json!({ "value": name, "id": id }),
        None => text(""),
    }
}

fn amount_summary(label: &str, cents: i64, width: usize, at: usize) -> Vec<Value> {
    let mut cells = vec![text(label)];
    cells.resize(width, text(""));
    cells[at] = text(&shape::money(cents));
    cells
}

pub fn profit_and_loss_detail(books: &Books, p: &Params, time: &str) -> Value {
    let width = PL_DETAIL_COLUMNS.len();
    let by_txn = accounts_of(books);
    let mut per_account: BTreeMap<u64, Vec<&Posting>> = BTreeMap::new();
    for post in &books.postings {
        let pl = books
            .accounts
            .get(&post.account)
            .is_some_and(|a| a.class.is_profit_and_loss());
        if pl && post.date >= p.start && post.date <= p.end {
            per_account.entry(post.account).or_default().push(post);
        }
    }
    // One section per account type, as the P&L groups them; the value is the natural total.
    let part = |types: &[&str], group: &str, label: &str| -> Option<(Value, i64)> {
        let mut sections = Vec::new();
        let mut total = 0;
        for (id, posts) in &per_account {
            let Some(a) = books.accounts.get(id) else {
                continue;
            };
            if !types.contains(&a.account_type.as_str()) {
                continue;
            }
            let (mut rows, mut running) = (Vec::new(), 0);
            for post in posts {
                let amount = natural(a, post.cents);
                running += amount;
                let others = by_txn.get(&post.txn).map_or(&[][..], Vec::as_slice);
                rows.push(data_row(vec![
                    text(&post.date.to_string()),
                    json!({ "value": type_label(post.txn_type), "id": post.txn_id }),
                    text(post.doc_number.as_deref().unwrap_or("")),
                    name_cell(books, post.txn),
                    text(post.memo.as_deref().unwrap_or("")),
                    text(&split(books, others, a.id)),
                    text(&shape::money(amount)),
                    text(&shape::money(running)),
                ]));
            }
            total += running;
            let mut header = blank_header(&a.name, width);
            header["ColData"][0]["id"] = json!(id.to_string());
            let summary = amount_summary(&format!("Total for {}", a.name), running, width, 6);
            let mut s = section("", Some(header), rows, summary);
            if let Some(o) = s.as_object_mut() {
                o.remove("group");
            }
            sections.push(s);
        }
        (!sections.is_empty()).then(|| {
            let summary = amount_summary(&format!("Total {label}"), total, width, 6);
            (
                section(group, Some(blank_header(label, width)), sections, summary),
                total,
            )
        })
    };
    let total = |s: &Option<(Value, i64)>| s.as_ref().map_or(0, |(_, t)| *t);
    let income = part(&["Income"], "Income", "Income");
    let cogs = part(&["Cost of Goods Sold"], "COGS", "Cost of Goods Sold");
    let expenses = part(&["Expense"], "Expenses", "Expenses");
    let other_income = part(&["Other Income"], "OtherIncome", "Other Income");
    let other_expenses = part(&["Other Expense"], "OtherExpenses", "Other Expenses");
    let gross = total(&income) - total(&cogs);
    let operating = gross - total(&expenses);
    let net_other = total(&other_income) - total(&other_expenses);
    let has_other = other_income.is_some() || other_expenses.is_some();
    let only = |group: &str, label: &str, cents: i64| {
        section(
            group,
            None,
            Vec::new(),
            amount_summary(label, cents, width, 6),
        )
    };
    let mut rows = Vec::new();
    rows.extend(income.map(|s| s.0));
    rows.extend(cogs.map(|s| s.0));
    rows.push(only("GrossProfit", "Gross Profit", gross));
    rows.extend(expenses.map(|s| s.0));
    rows.push(only(
        "NetOperatingIncome",
        "Net Operating Income",
        operating,
    ));
    rows.extend(other_income.map(|s| s.0));
    rows.extend(other_expenses.map(|s| s.0));
    if has_other {
        rows.push(only("NetOtherIncome", "Net Other Income", net_other));
    }
    rows.push(only("NetIncome", "Net Income", operating + net_other));
    shape::report(
        shape::header("ProfitAndLossDetail", p, time, per_account.is_empty()),
        shape::fixed_columns(PL_DETAIL_COLUMNS),
        rows,
    )
}

/// One row per live transaction dated in the range, by date, then type and id: its main
/// account (the one its header posts to: A/R, A/P, the bank or card), the Split (the other
/// account, or "-Split-"), and its total.
pub fn transaction_list(books: &Books, p: &Params, time: &str) -> Value {
    let by_txn = accounts_of(books);
    let mut txns: Vec<(usize, &super::ledger::Txn)> = books
        .txns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.date >= p.start && t.date <= p.end)
        .collect();
    txns.sort_by(|a, b| {
        (a.1.date, a.1.kind, a.1.id.parse::<u64>().unwrap_or(0)).cmp(&(
            b.1.date,
            b.1.kind,
            b.1.id.parse::<u64>().unwrap_or(0),
        ))
    });
    let rows: Vec<Value> = txns
        .iter()
        .map(|(i, t)| {
            let posts = by_txn.get(i).map_or(&[][..], Vec::as_slice);
            let main = posts
                .iter()
                .find(|p| !p.line)
                .or_else(|| posts.first())
                .map(|p| p.account);
            let (account, other) = match main {
                Some(m) => (account_name(books, m), split(books, posts, m)),
                None => (String::new(), String::new()),
            };
            data_row(vec![
                text(&t.date.to_string()),
                json!({ "value": type_label(t.kind), "id": t.id }),
                text(t.doc_number.as_deref().unwrap_or("")),
                text("Yes"),
                name_cell(books, *i),
                text(t.memo.as_deref().unwrap_or("")),
                text(&account),
                text(&other),
                text(&shape::money(t.total)),
            ])
        })
        .collect();
    shape::report(
        shape::header_without_basis("TransactionList", p, time, rows.is_empty(), &[]),
        shape::fixed_columns(LIST_COLUMNS),
        rows,
    )
}
