//! AgedReceivables and AgedPayables as of `report_date`: per customer (vendor), what is open
//! with it that day, in aging buckets (Current, 1 - 30, 31 - 60, 61 - 90, 91 and over) and
//! their Total, then a GrandTotal, in home currency. As QBO ages them, that is:
//! - its invoices (bills), by days past their due date: the open balance as of the day is the
//!   `Balance` now plus what payments (bill payments) dated after the day applied to it;
//! - its open credit memos (vendor credits), negative: `Balance` (the credit not yet applied)
//!   plus what later payments applied of it;
//! - the unapplied part of its payments (bill payments) dated by then, negative: a payment's
//!   `UnappliedAmt`, a bill payment's total less what its lines apply;
//! - journal entry lines to an Accounts Receivable (Accounts Payable) account naming it: a
//!   debit (credit) is owed by (to) it, the other way round a credit, less what payments dated
//!   by then applied to the entry.
//!
//! Everything but invoices and bills is aged from its transaction date (it has no due date).
//! So the GrandTotal is the A/R (A/P) balance the documents leave open.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{json, Value};

use super::super::data::currency;
use super::super::store::Store;
use super::ledger::{cents, live_records, rate_e4};
use super::params::Params;
use super::shape::{self, amounts, data_row, section};

/// Which side of the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Receivables,
    Payables,
}

impl Side {
    pub fn report_name(self) -> &'static str {
        match self {
            Side::Receivables => "AgedReceivables",
            Side::Payables => "AgedPayables",
        }
    }
    fn document(self) -> &'static str {
        match self {
            Side::Receivables => "Invoice",
            Side::Payables => "Bill",
        }
    }
    fn credit(self) -> &'static str {
        match self {
            Side::Receivables => "CreditMemo",
            Side::Payables => "VendorCredit",
        }
    }
    fn payment(self) -> &'static str {
        match self {
            Side::Receivables => "Payment",
            Side::Payables => "BillPayment",
        }
    }
    fn party(self) -> (&'static str, &'static str) {
        match self {
            Side::Receivables => ("CustomerRef", "Customer"),
            Side::Payables => ("VendorRef", "Vendor"),
        }
    }
    /// The AccountType of the control account a journal entry line posts to.
    fn account_type(self) -> &'static str {
        match self {
            Side::Receivables => "Accounts Receivable",
            Side::Payables => "Accounts Payable",
        }
    }
    /// The journal entry posting that adds to what is owed.
    fn owed_posting(self) -> &'static str {
        match self {
            Side::Receivables => "Debit",
            Side::Payables => "Credit",
        }
    }
}

const BUCKETS: &[(&str, &str)] = &[
    ("Current", "current"),
    ("1 - 30", "0"),
    ("31 - 60", "1"),
    ("61 - 90", "2"),
    ("91 and over", "3"),
];

/// The bucket of a document `days` past due.
pub fn bucket(days: i64) -> usize {
    match days {
        i64::MIN..=0 => 0,
        1..=30 => 1,
        31..=60 => 2,
        61..=90 => 3,
        _ => 4,
    }
}

fn date(v: &Value) -> Option<NaiveDate> {
    v.as_str()?.parse().ok()
}

/// One open item: (party id, party name, bucket, open cents; negative for a credit).
pub type Open = (String, String, usize, i64);

/// What payments (bill payments) applied to each transaction they link, by (TxnType, TxnId),
/// counting only the payments dated as `when` says.
fn applied(
    store: &Store,
    side: Side,
    when: impl Fn(NaiveDate) -> bool,
) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for pay in live_records(store, side.payment()) {
        if !date(&pay["TxnDate"]).is_some_and(&when) {
            continue;
        }
        for line in pay["Line"].as_array().into_iter().flatten() {
            for link in line["LinkedTxn"].as_array().into_iter().flatten() {
                if let (Some(kind), Some(id), Some(c)) = (
                    link["TxnType"].as_str(),
                    link["TxnId"].as_str(),
                    cents(&line["Amount"]),
                ) {
                    *out.entry((kind.to_string(), id.to_string())).or_default() += c;
                }
            }
        }
    }
    out
}

fn party_of(v: &Value) -> (String, String) {
    (
        v["value"].as_str().unwrap_or_default().to_string(),
        v["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// Everything open with a customer (vendor) as of `day`.
pub fn open_documents(store: &Store, side: Side, day: NaiveDate) -> Vec<Open> {
    // Applications dated after `day` are added back: as of `day` they had not happened.
    let later = applied(store, side, |d| d > day);
    let later_of = |kind: &str, id: &str| {
        later
            .get(&(kind.to_string(), id.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let age = |from: NaiveDate| bucket((day - from).num_days());
    let (party_ref, _) = side.party();
    let mut out = Vec::new();
    let mut push = |party: (String, String), bucket: usize, open: i64| {
        if open != 0 {
            out.push((party.0, party.1, bucket, open));
        }
    };
    for (kind, sign) in [(side.document(), 1), (side.credit(), -1)] {
        for doc in live_records(store, kind) {
            let Some(txn_date) = date(&doc["TxnDate"]).filter(|d| *d <= day) else {
                continue;
            };
            let id = doc["Id"].as_str().unwrap_or_default();
            // In home currency, as QBO ages: HomeBalance for a foreign document (else Balance
            // at its rate), and later applications at its rate.
            let rate = rate_e4(&doc["ExchangeRate"]);
            let balance = cents(&doc["HomeBalance"])
                .unwrap_or_else(|| currency::home_cents(cents(&doc["Balance"]).unwrap_or(0), rate));
            let open = balance + currency::home_cents(later_of(kind, id), rate);
            // An invoice (bill) ages from its due date, a credit from its date.
            let from = if sign > 0 {
                date(&doc["DueDate"]).unwrap_or(txn_date)
            } else {
                txn_date
            };
            push(party_of(&doc[party_ref]), age(from), sign * open);
        }
    }
    for pay in live_records(store, side.payment()) {
        let Some(txn_date) = date(&pay["TxnDate"]).filter(|d| *d <= day) else {
            continue;
        };
        let unapplied = match side {
            Side::Receivables => cents(&pay["UnappliedAmt"]).unwrap_or(0),
            Side::Payables => {
                let lines: i64 = pay["Line"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| cents(&l["Amount"]))
                    .sum();
                cents(&pay["TotalAmt"]).unwrap_or(0) - lines
            }
        };
        let home = currency::home_cents(unapplied, rate_e4(&pay["ExchangeRate"]));
        push(party_of(&pay[party_ref]), age(txn_date), -home);
    }
    let control: Vec<String> = live_records(store, "Account")
        .iter()
        .filter(|a| a["AccountType"] == side.account_type())
        .filter_map(|a| a["Id"].as_str().map(str::to_string))
        .collect();
    let ever = applied(store, side, |d| d <= day);
    for je in live_records(store, "JournalEntry") {
        let Some(txn_date) = date(&je["TxnDate"]).filter(|d| *d <= day) else {
            continue;
        };
        let rate = rate_e4(&je["ExchangeRate"]);
        let mut lines = Vec::new();
        for l in je["Line"].as_array().into_iter().flatten() {
            let d = &l["JournalEntryLineDetail"];
            let to_control = d["AccountRef"]["value"]
                .as_str()
                .is_some_and(|a| control.iter().any(|c| c == a));
            let (Some(amount), true) = (cents(&l["Amount"]), to_control) else {
                continue;
            };
            let sign = if d["PostingType"] == side.owed_posting() {
                1
            } else {
                -1
            };
            lines.push((party_of(&d["Entity"]["EntityRef"]), sign * amount));
        }
        // What payments dated by `day` applied to the entry settles its (first) line owed.
        let id = je["Id"].as_str().unwrap_or_default();
        let mut settled = ever
            .get(&("JournalEntry".to_string(), id.to_string()))
            .copied()
            .unwrap_or(0);
        for (party, amount) in lines {
            let take = if amount > 0 { settled.min(amount) } else { 0 };
            settled -= take;
            push(
                party,
                age(txn_date),
                currency::home_cents(amount - take, rate),
            );
        }
    }
    out
}

pub fn aged(store: &Store, side: Side, p: &Params, time: &str) -> Value {
    let day = p.report_date;
    // Per party (by name, then id, as QBO sorts them): the buckets.
    let mut per: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for (id, name, b, open) in open_documents(store, side, day) {
        per.entry((name, id))
            .or_insert_with(|| vec![0; BUCKETS.len()])[b] += open;
    }
    let with_total = |v: &[i64]| -> Vec<i64> {
        let mut v = v.to_vec();
        v.push(v.iter().sum());
        v
    };
    let mut total = vec![0; BUCKETS.len()];
    let mut rows = Vec::new();
    for ((name, id), v) in &per {
        for (t, c) in total.iter_mut().zip(v) {
            *t += c;
        }
        rows.push(data_row(amounts(
            json!({ "value": name, "id": id }),
            &with_total(v),
            true,
        )));
    }
    let no_data = rows.is_empty();
    rows.push(section(
        "GrandTotal",
        None,
        Vec::new(),
        amounts(shape::text("TOTAL"), &with_total(&total), false),
    ));
    let mut columns = vec![json!({ "ColTitle": "", "ColType": side.party().1 })];
    for (title, key) in BUCKETS.iter().chain(&[("Total", "total")]) {
        columns.push(json!({
            "ColTitle": title, "ColType": "Money",
            "MetaData": [{ "Name": "ColKey", "Value": key }],
        }));
    }
    shape::report(
        shape::header_without_basis(
            side.report_name(),
            p,
            time,
            no_data,
            &[("report_date", day.to_string())],
        ),
        json!({ "Column": columns }),
        rows,
    )
}
