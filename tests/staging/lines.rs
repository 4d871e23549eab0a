//! Every line of every transaction lands once, typed, adding up to its transaction's total,
//! and the general ledger balances per transaction.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgPool;

use crate::common::*;
use crate::refresh;

/// (QBO type, its staging lines view).
const LINE_VIEWS: &[(&str, &str)] = &[
    ("Invoice", "staging.invoice_lines"),
    ("SalesReceipt", "staging.sales_receipt_lines"),
    ("CreditMemo", "staging.credit_memo_lines"),
    ("RefundReceipt", "staging.refund_receipt_lines"),
    ("Estimate", "staging.estimate_lines"),
    ("Bill", "staging.bill_lines"),
    ("VendorCredit", "staging.vendor_credit_lines"),
    ("Purchase", "staging.purchase_lines"),
    ("PurchaseOrder", "staging.purchase_order_lines"),
    ("JournalEntry", "staging.journal_entry_lines"),
    ("Deposit", "staging.deposit_lines"),
    ("Payment", "staging.payment_lines"),
    ("BillPayment", "staging.bill_payment_lines"),
];

/// The types that post to the ledger.
const POSTING: &[&str] = &[
    "Invoice",
    "SalesReceipt",
    "CreditMemo",
    "RefundReceipt",
    "Bill",
    "VendorCredit",
    "Purchase",
    "JournalEntry",
    "Deposit",
    "Payment",
    "BillPayment",
    "Transfer",
    "CreditCardPayment",
];

/// A line as the tests compare it: (detail type, amount in cents).
type Line = (Option<String>, Option<i64>);
/// (transaction id, line index from 1, index inside a bundle or 0) -> line.
type Lines = BTreeMap<(String, i32, i32), Line>;

fn cents(v: &Value) -> Option<i64> {
    v.as_f64().map(|a| (a * 100.0).round() as i64)
}

fn line_of(l: &Value) -> Line {
    (
        l["DetailType"].as_str().map(str::to_string),
        cents(&l["Amount"]),
    )
}

/// Every line of the sandbox's records of `qbo_name`, bundle members included.
fn sandbox_lines(w: &World, qbo_name: &str) -> Lines {
    let mut lines = Lines::new();
    for r in w.sandbox.records(qbo_name) {
        let id = r["Id"].as_str().unwrap().to_string();
        for (i, l) in r["Line"].as_array().into_iter().flatten().enumerate() {
            let i = i as i32 + 1;
            lines.insert((id.clone(), i, 0), line_of(l));
            let members = l["GroupLineDetail"]["Line"]
                .as_array()
                .into_iter()
                .flatten();
            for (j, m) in members.enumerate() {
                lines.insert((id.clone(), i, j as i32 + 1), line_of(m));
            }
        }
    }
    lines
}

/// A staged line row: (transaction id, line index, sub index, detail type, cents).
type LineRow = (String, i32, i32, Option<String>, Option<i64>);

async fn staged_lines(pool: &PgPool, view: &str) -> Lines {
    let rows: Vec<LineRow> = sqlx::query_as(&format!(
        "SELECT txn_id, line_index, sub_index, detail_type, (amount * 100)::bigint FROM {view}"
    ))
    .fetch_all(pool)
    .await
    .unwrap();
    let n = rows.len();
    let lines: Lines = rows
        .into_iter()
        .map(|(id, i, j, kind, amount)| ((id, i, j), (kind, amount)))
        .collect();
    assert_eq!(lines.len(), n, "{view}: a line twice");
    lines
}

/// The SQL type of each column of a staging relation (views and materialized views alike).
async fn column_types(pool: &PgPool, relation: &str) -> BTreeMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(relation)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_lands_once_adds_up_and_the_ledger_balances() {
    let w = World::new(small_company()).await;
    w.backfill(
        "all",
        "2024-01-01",
        "2024-03-31",
        &["--chunk-days", "31", "--concurrency", "4"],
    )
    .await
    .assert_code(0);
    let out = refresh(&w).await;
    assert!(
        out.contains("refreshed staging.general_ledger"),
        "the command says what it refreshed: {out}"
    );
    let pool = w.db.pool().await;

    // Every line of every transaction, exactly once, with its detail type and amount.
    for (qbo_name, view) in LINE_VIEWS {
        let expected = sandbox_lines(&w, qbo_name);
        assert!(!expected.is_empty(), "{qbo_name}: the sandbox has lines");
        let got = staged_lines(&pool, view).await;
        assert_eq!(got.len(), expected.len(), "{view}: line count");
        assert_eq!(got, expected, "{view}: lines");
    }

    // Per transaction, the lines that carry amounts (not the sub-total, not a bundle's own
    // row, whose members are counted), less discounts, plus tax and what a payment left
    // unapplied, come to QBO's TotalAmt; a journal entry's total is its debits.
    let mismatched: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT t.source_entity, t.txn_id, s.total::text, t.total_amount::text
         FROM staging.transactions t
         LEFT JOIN (
             SELECT realm_id, source_entity, txn_id, sum(CASE
                 WHEN detail_type = 'DiscountLineDetail' THEN -amount
                 WHEN detail_type IN ('SubTotalLineDetail', 'GroupLineDetail', 'DescriptionOnly') THEN 0
                 WHEN detail_type = 'JournalEntryLineDetail' AND posting_type = 'Credit' THEN 0
                 ELSE amount END) AS total
             FROM staging.transaction_lines GROUP BY 1, 2, 3
         ) s USING (realm_id, source_entity, txn_id)
         WHERE t.source_entity NOT IN ('Transfer', 'CreditCardPayment')
           AND coalesce(s.total, 0) + coalesce(t.total_tax, 0) + coalesce(t.unapplied_amount, 0)
               <> t.total_amount",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        mismatched.is_empty(),
        "lines do not add up to TotalAmt: {mismatched:?}"
    );
    let taxed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM staging.transactions WHERE total_tax > 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        taxed > 0,
        "some transactions carry tax, so the check covers it"
    );

    // Every posting transaction is in the ledger, balanced, and on named accounts.
    for kind in POSTING {
        let records = w.sandbox.records(kind).len() as i64;
        assert!(records > 0, "{kind}: the sandbox has some");
        let (txns, unbalanced, unmapped): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE debits <> credits), sum(unmapped)::bigint
             FROM (SELECT source_id, sum(debit) AS debits, sum(credit) AS credits,
                          count(*) FILTER (WHERE account_id IS NULL OR account_name IS NULL) AS unmapped
                   FROM staging.general_ledger WHERE source_entity = $1 GROUP BY source_id) g",
        )
        .bind(kind)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(txns, records, "{kind}: every transaction posts");
        assert_eq!(
            unbalanced, 0,
            "{kind}: debits equal credits per transaction"
        );
        assert_eq!(
            unmapped, 0,
            "{kind}: every posting names an existing account"
        );
    }
    let non_posting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM staging.general_ledger
         WHERE source_entity IN ('Estimate', 'PurchaseOrder')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(non_posting, 0, "estimates and purchase orders post nothing");

    // Typed columns: numbers are numeric, dates are dates, flags are booleans.
    let lines = column_types(&pool, "staging.invoice_lines").await;
    for (column, kind) in [
        ("amount", "numeric"),
        ("home_amount", "numeric"),
        ("quantity", "numeric"),
        ("unit_price", "numeric"),
        ("exchange_rate", "numeric"),
        ("txn_date", "date"),
        ("line_index", "integer"),
    ] {
        assert_eq!(lines[column], kind, "invoice_lines.{column}");
    }
    let gl = column_types(&pool, "staging.general_ledger").await;
    for (column, kind) in [
        ("debit", "numeric"),
        ("credit", "numeric"),
        ("home_amount", "numeric"),
        ("txn_date", "date"),
    ] {
        assert_eq!(gl[column], kind, "general_ledger.{column}");
    }
    let txns = column_types(&pool, "staging.transactions").await;
    for (column, kind) in [
        ("total_amount", "numeric"),
        ("balance", "numeric"),
        ("due_date", "date"),
        ("is_credit", "boolean"),
        ("updated_at", "timestamp with time zone"),
    ] {
        assert_eq!(txns[column], kind, "transactions.{column}");
    }

    // A second refresh (CONCURRENTLY, now that the views hold data) changes nothing.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM staging.general_ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    let again = refresh(&w).await;
    assert!(again.contains("(concurrently)"), "{again}");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM staging.general_ledger")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(before, after);
}
