//! The multi-currency company (`SandboxConfig::multi_currency`): home currency USD, some
//! customers and vendors in EUR, GBP or CAD, and their transactions in that currency with
//! QBO's multicurrency fields. Applied to a record after it renders, so the default
//! single-currency company renders exactly as it always has.
//!
//! What a foreign-currency transaction carries, as Intuit documents it: `CurrencyRef` (the
//! currency every amount on it is in), `ExchangeRate` (home-currency units per one unit of
//! that currency) and, on the sales forms, `HomeTotalAmt` (and `HomeBalance` on invoices and
//! bills). QBO books each line in home currency rounded to the cent, and a total as the sum
//! of what it totals, so `HomeTotalAmt` is that sum (not `TotalAmt x ExchangeRate` rounded
//! once): `staging.general_ledger` and the sandbox's reports rely on it to balance.

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use super::{money, Keys};

/// The foreign currencies the company deals in, with the rate each hovers around (in
/// ten-thousandths of a home unit). They are the active `CompanyCurrency` records.
const FOREIGN: &[(&str, &str, i64)] = &[
    ("EUR", "Euro", 10_850),
    ("GBP", "British Pound Sterling", 12_700),
    ("CAD", "Canadian Dollar", 7_400),
];

/// The currency of customer `id`: three in five deal in a foreign one.
pub fn customer_currency(id: u64) -> Option<&'static str> {
    match id % 5 {
        1 => Some("EUR"),
        2 => Some("GBP"),
        3 => Some("CAD"),
        _ => None,
    }
}

/// The currency of vendor `id`: half of them are abroad.
pub fn vendor_currency(id: u64) -> Option<&'static str> {
    match id % 4 {
        1 => Some("EUR"),
        2 => Some("CAD"),
        _ => None,
    }
}

/// The foreign currencies' codes.
pub const FOREIGN_CODES: &[&str] = &["EUR", "GBP", "CAD"];

fn name_of(code: &str) -> &'static str {
    FOREIGN
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("United States Dollar", |(_, name, _)| name)
}

/// The rate of `code` on `day` in ten-thousandths (`None` for a currency the company does
/// not use): around its base, moving a little every day, the same on every call.
pub fn rate_e4(code: &str, day: NaiveDate) -> Option<i64> {
    let (_, _, base) = FOREIGN.iter().find(|(c, _, _)| *c == code)?;
    let n = i64::from(day.num_days_from_ce());
    Some(base + (n * 37).rem_euclid(201) - 100)
}

/// A rate as QBO writes it, e.g. `1.0851`.
pub fn rate_value(e4: i64) -> Value {
    serde_json::Number::from_f64(e4 as f64 / 10_000.0).map_or(Value::Null, Value::Number)
}

/// `cents` in home cents at `rate_e4`, rounded half away from zero (as Postgres' `round`).
pub fn home_cents(cents: i64, rate_e4: i64) -> i64 {
    let x = i128::from(cents) * i128::from(rate_e4);
    let half = if x < 0 { -5_000 } else { 5_000 };
    ((x + half) / 10_000) as i64
}

/// Whole cents of a JSON amount.
fn cents(v: &Value) -> Option<i64> {
    v.as_f64().map(|f| (f * 100.0).round() as i64)
}

/// Which name a transaction of `qbo_name` is in the currency of.
enum Party {
    Customer,
    Vendor,
}

fn party(qbo_name: &str) -> Option<Party> {
    match qbo_name {
        "Invoice" | "SalesReceipt" | "CreditMemo" | "RefundReceipt" | "Estimate" | "Payment" => {
            Some(Party::Customer)
        }
        "Bill" | "VendorCredit" | "BillPayment" | "PurchaseOrder" => Some(Party::Vendor),
        _ => None,
    }
}

/// The forms QBO sends `HomeTotalAmt` on.
const HOME_TOTAL: &[&str] = &[
    "Invoice",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
    "Estimate",
];

/// Makes record `v` of `qbo_name` what the multi-currency company holds.
pub fn apply(qbo_name: &str, k: &Keys, v: &mut Value) {
    let code = match qbo_name {
        "Customer" => customer_currency(k.id),
        "Vendor" => vendor_currency(k.id),
        _ => match party(qbo_name) {
            Some(Party::Customer) => ref_id(&v["CustomerRef"]).and_then(customer_currency),
            Some(Party::Vendor) => ref_id(&v["VendorRef"]).and_then(vendor_currency),
            None => None,
        },
    };
    let Some(code) = code else {
        return;
    };
    v["CurrencyRef"] = json!({ "value": code, "name": name_of(code) });
    if party(qbo_name).is_none() {
        return;
    }
    let Some(day) = v["TxnDate"].as_str().and_then(|s| s.parse().ok()) else {
        return;
    };
    let Some(rate) = rate_e4(code, day) else {
        return;
    };
    v["ExchangeRate"] = rate_value(rate);
    if HOME_TOTAL.contains(&qbo_name) {
        v["HomeTotalAmt"] = money(home_total(qbo_name, v, rate));
    }
    if matches!(qbo_name, "Invoice" | "Bill") {
        if let Some(balance) = cents(&v["Balance"]) {
            v["HomeBalance"] = money(home_cents(balance, rate));
        }
    }
}

fn ref_id(v: &Value) -> Option<u64> {
    v.get("value")?.as_str()?.parse().ok()
}

/// The home-currency total QBO books for a form: each line that posts and the tax, each
/// rounded to the cent, with the sign it has in the total (discounts subtract).
pub fn home_total(qbo_name: &str, txn: &Value, rate: i64) -> i64 {
    let mut sum = 0;
    for l in posting_lines(txn) {
        let sign = match (qbo_name, l["DetailType"].as_str()) {
            (_, Some("SalesItemLineDetail")) => 1,
            (_, Some("DiscountLineDetail")) => -1,
            (_, Some("ItemBasedExpenseLineDetail" | "AccountBasedExpenseLineDetail")) => 1,
            _ => 0,
        };
        if sign != 0 {
            sum += sign * home_cents(cents(&l["Amount"]).unwrap_or(0), rate);
        }
    }
    let tax = cents(&txn["TxnTaxDetail"]["TotalTax"]).unwrap_or(0);
    sum + home_cents(tax, rate)
}

/// A transaction's lines, a bundle's members instead of the bundle.
fn posting_lines(txn: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for l in txn["Line"].as_array().into_iter().flatten() {
        match l["GroupLineDetail"]["Line"].as_array() {
            Some(inner) => out.extend(inner),
            None => out.push(l),
        }
    }
    out
}
