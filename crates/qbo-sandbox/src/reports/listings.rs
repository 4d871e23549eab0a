//! TrialBalance and GeneralLedger: one row per account (with its debit or credit balance),
//! and one section per account listing its postings with a running balance.
//!
//! The trial balance of `[start, end]`: balance-sheet accounts as of `end`, income and
//! expense accounts over the range, and the income of everything before `start` in a
//! Retained Earnings row, which carries the id of the company's retained-earnings account and
//! also holds whatever was posted to that account directly, as QBO's does. So debits equal
//! credits whenever every transaction balances.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use super::ledger::Books;
use super::params::Params;
use super::shape::{self, cell, data_row, section, text};
use super::statements::natural;

fn debit_credit(cents: i64) -> [Value; 2] {
    if cents >= 0 {
        [cell(cents), text("")]
    } else {
        [text(""), cell(-cents)]
    }
}

pub fn trial_balance(books: &Books, p: &Params, time: &str) -> Value {
    let mut per_account: BTreeMap<u64, i64> = BTreeMap::new();
    let mut retained = 0;
    let re = books.retained_earnings();
    for post in books.postings.iter().filter(|x| x.date <= p.end) {
        let Some(a) = books.accounts.get(&post.account) else {
            continue;
        };
        let closed = a.class.is_profit_and_loss() && post.date < p.start;
        if closed || re.is_some_and(|r| r.id == a.id) {
            retained += post.cents;
        } else {
            *per_account.entry(post.account).or_default() += post.cents;
        }
    }
    let (mut debits, mut credits) = (0, 0);
    let mut rows = Vec::new();
    let mut row = |label: Value, cents: i64| {
        if cents >= 0 {
            debits += cents;
        } else {
            credits -= cents;
        }
        let [d, c] = debit_credit(cents);
        rows.push(data_row(vec![label, d, c]));
    };
    for (id, cents) in per_account.iter().filter(|(_, c)| **c != 0) {
        let name = books.accounts.get(id).map_or("", |a| a.name.as_str());
        row(json!({ "value": name, "id": id.to_string() }), *cents);
    }
    if retained != 0 {
        let label = match re {
            Some(r) => json!({ "value": r.name, "id": r.id.to_string() }),
            // A company without one (QBO always has one) still shows the line.
            None => text("Retained Earnings"),
        };
        row(label, retained);
    }
    let no_data = rows.is_empty();
    rows.push(section(
        "GrandTotal",
        None,
        Vec::new(),
        vec![
            text("TOTAL"),
            text(&shape::money(debits)),
            text(&shape::money(credits)),
        ],
    ));
    let columns = json!({ "Column": [
        { "ColTitle": "", "ColType": "Account", "MetaData": [{ "Name": "ColKey", "Value": "account" }] },
        { "ColTitle": "Debit", "ColType": "Money", "MetaData": [{ "Name": "ColKey", "Value": "debt_amt" }] },
        { "ColTitle": "Credit", "ColType": "Money", "MetaData": [{ "Name": "ColKey", "Value": "credit_amt" }] },
    ]});
    shape::report(
        shape::header("TrialBalance", p, time, no_data),
        columns,
        rows,
    )
}

const GL_COLUMNS: &[(&str, &str, &str)] = &[
    ("Date", "Date", "tx_date"),
    ("Transaction Type", "String", "txn_type"),
    ("Num", "String", "doc_num"),
    ("Memo/Description", "String", "memo"),
    ("Amount", "Money", "subt_nat_amount"),
    ("Balance", "Money", "rbal_nat_amount"),
];

/// QBO's spelling of a transaction type in reports.
pub fn type_label(kind: &str) -> &'static str {
    match kind {
        "Invoice" => "Invoice",
        "SalesReceipt" => "Sales Receipt",
        "CreditMemo" => "Credit Memo",
        "RefundReceipt" => "Refund",
        "Bill" => "Bill",
        "VendorCredit" => "Vendor Credit",
        "Purchase" => "Expense",
        "JournalEntry" => "Journal Entry",
        "Deposit" => "Deposit",
        "Payment" => "Payment",
        "BillPayment" => "Bill Payment",
        "Transfer" => "Transfer",
        "CreditCardPayment" => "Credit Card Payment",
        _ => "Transaction",
    }
}

/// Where an account's beginning balance starts counting: income and expense accounts start
/// afresh each year, balance-sheet accounts carry everything before.
fn counts_toward_opening(p_and_l: bool, date: NaiveDate, start: NaiveDate) -> bool {
    date < start && (!p_and_l || date.year() == start.year())
}

pub fn general_ledger(books: &Books, p: &Params, time: &str) -> Value {
    let mut opening: BTreeMap<u64, i64> = BTreeMap::new();
    let mut within: BTreeMap<u64, Vec<&super::ledger::Posting>> = BTreeMap::new();
    for post in &books.postings {
        let Some(a) = books.accounts.get(&post.account) else {
            continue;
        };
        if counts_toward_opening(a.class.is_profit_and_loss(), post.date, p.start) {
            *opening.entry(a.id).or_default() += natural(a, post.cents);
        } else if post.date >= p.start && post.date <= p.end {
            within.entry(a.id).or_default().push(post);
        }
    }
    let mut sections = Vec::new();
    for (id, a) in &books.accounts {
        let open = opening.get(id).copied().unwrap_or(0);
        let posts = within.get(id).map_or(&[][..], Vec::as_slice);
        if open == 0 && posts.is_empty() {
            continue;
        }
        let mut rows = vec![data_row(vec![
            text("Beginning Balance"),
            text(""),
            text(""),
            text(""),
            text(""),
            text(&shape::money(open)),
        ])];
        let (mut running, mut sum) = (open, 0);
        for post in posts {
            let amount = natural(a, post.cents);
            running += amount;
            sum += amount;
            rows.push(data_row(vec![
                text(&post.date.to_string()),
                json!({ "value": type_label(post.txn_type), "id": post.txn_id }),
                text(post.doc_number.as_deref().unwrap_or("")),
                text(post.memo.as_deref().unwrap_or("")),
                text(&shape::money(amount)),
                text(&shape::money(running)),
            ]));
        }
        let mut header = shape::blank_header(&a.name, GL_COLUMNS.len());
        header["ColData"][0]["id"] = json!(id.to_string());
        let summary = vec![
            text(&format!("Total for {}", a.name)),
            text(""),
            text(""),
            text(""),
            text(&shape::money(sum)),
            text(""),
        ];
        sections.push(section("", Some(header), rows, summary));
    }
    for s in &mut sections {
        if let Some(o) = s.as_object_mut() {
            o.remove("group");
        }
    }
    let no_data = sections.is_empty();
    let columns: Vec<Value> = GL_COLUMNS
        .iter()
        .map(|(title, kind, key)| {
            json!({ "ColTitle": title, "ColType": kind, "MetaData": [{ "Name": "ColKey", "Value": key }] })
        })
        .collect();
    shape::report(
        shape::header("GeneralLedger", p, time, no_data),
        json!({ "Column": columns }),
        sections,
    )
}
