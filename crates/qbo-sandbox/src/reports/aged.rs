//! AgedReceivables and AgedPayables as of `report_date`: per customer (vendor), the open
//! balances of its invoices (bills) dated on or before that day, in aging buckets by days
//! past the due date (Current, 1 - 30, 31 - 60, 61 - 90, 91 and over) and their Total, then
//! a GrandTotal. A document's open balance as of the day is its `Balance` now plus what
//! payments (bill payments) dated after the day applied to it, in home currency. Credit memos, vendor credits
//! and unapplied payments are not aged (QBO lists them too; the sandbox does not).

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

/// Each open document as of `day`: (party id, party name, bucket, open cents).
pub fn open_documents(
    store: &Store,
    side: Side,
    day: NaiveDate,
) -> Vec<(String, String, usize, i64)> {
    // Payments dated after `day`, per document they paid: added back to its balance.
    let mut later: BTreeMap<String, i64> = BTreeMap::new();
    for pay in live_records(store, side.payment()) {
        if date(&pay["TxnDate"]).is_none_or(|d| d <= day) {
            continue;
        }
        for line in pay["Line"].as_array().into_iter().flatten() {
            for link in line["LinkedTxn"].as_array().into_iter().flatten() {
                if link["TxnType"] == side.document() {
                    if let (Some(id), Some(c)) = (link["TxnId"].as_str(), cents(&line["Amount"])) {
                        *later.entry(id.to_string()).or_default() += c;
                    }
                }
            }
        }
    }
    let (party_ref, _) = side.party();
    let mut out = Vec::new();
    for doc in live_records(store, side.document()) {
        let Some(txn_date) = date(&doc["TxnDate"]) else {
            continue;
        };
        if txn_date > day {
            continue;
        }
        let id = doc["Id"].as_str().unwrap_or_default();
        // In home currency, as QBO ages: HomeBalance for a foreign document (else Balance at
        // its rate), and later payments at its rate.
        let rate = rate_e4(&doc["ExchangeRate"]);
        let balance = cents(&doc["HomeBalance"])
            .unwrap_or_else(|| currency::home_cents(cents(&doc["Balance"]).unwrap_or(0), rate));
        let open = balance + currency::home_cents(later.get(id).copied().unwrap_or(0), rate);
        if open == 0 {
            continue;
        }
        let due = date(&doc["DueDate"]).unwrap_or(txn_date);
        let party = &doc[party_ref];
        out.push((
            party["value"].as_str().unwrap_or_default().to_string(),
            party["name"].as_str().unwrap_or_default().to_string(),
            bucket((day - due).num_days()),
            open,
        ));
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
