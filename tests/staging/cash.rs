//! `qbo verify --tie-out --accounting-method cash`: QBO's cash-basis ProfitAndLoss against
//! `staging.general_ledger_cash`, month by month over two years; a payment QBO has and the
//! load lacks shows as that month's and account's difference (the accrual P&L, which a
//! payment does not move, still matches), and a sync plus a refresh ties it out again.

use chrono::{Duration, NaiveDate, Utc};
use qbo::sandbox::SandboxConfig;
use serde_json::{json, Value};

use crate::common::*;
use crate::refresh;

/// Two years of data, last updated up to 2 days ago.
fn two_year_company() -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices: 240,
        customers: 40,
        items: 12,
        data_start: today - Duration::days(731),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    }
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(chrono::Datelike::day(&d)) - 1)
}

/// An unpaid invoice (Balance = TotalAmt) that sells through an item line naming its income
/// account, dated at least 40 days before `before`.
fn unpaid_invoice(w: &World, before: NaiveDate) -> Value {
    w.sandbox
        .records("Invoice")
        .into_iter()
        .find(|r| {
            let total = r["TotalAmt"].as_f64().unwrap_or(0.0);
            let day: NaiveDate = r["TxnDate"].as_str().unwrap().parse().unwrap();
            total > 0.0
                && r["Balance"].as_f64() == Some(total)
                && day + Duration::days(40) < before
                && r["Line"][0]["DetailType"] == "SalesItemLineDetail"
                && r["Line"][0]["SalesItemLineDetail"]["ItemAccountRef"]["value"].is_string()
        })
        .expect("an unpaid invoice selling an item")
}

/// A new payment, made now in QBO, applying the whole of `invoice` on `day`; the invoice
/// shows it paid, as QBO updates it.
fn pay_in_full(w: &World, mut invoice: Value, day: NaiveDate) {
    let payments = w.sandbox.records("Payment");
    let next = payments
        .iter()
        .map(|r| r["Id"].as_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap()
        + 1000;
    let now = Utc::now().to_rfc3339();
    let total = invoice["TotalAmt"].clone();
    let mut pay = payments[0].clone();
    pay["Id"] = json!(next.to_string());
    pay["SyncToken"] = json!("0");
    pay["TxnDate"] = json!(day.to_string());
    pay["CustomerRef"] = invoice["CustomerRef"].clone();
    pay["TotalAmt"] = total.clone();
    pay["UnappliedAmt"] = json!(0);
    pay["Line"] = json!([{ "Amount": total,
        "LinkedTxn": [{ "TxnId": invoice["Id"], "TxnType": "Invoice" }] }]);
    pay["MetaData"] = json!({ "CreateTime": now, "LastUpdatedTime": now });
    w.sandbox.put_record("Payment", pay);

    invoice["Balance"] = json!(0);
    invoice["LinkedTxn"] = json!([{ "TxnId": next.to_string(), "TxnType": "Payment" }]);
    let token: u64 = invoice["SyncToken"].as_str().unwrap().parse().unwrap();
    invoice["SyncToken"] = json!((token + 1).to_string());
    invoice["MetaData"]["LastUpdatedTime"] = json!(now);
    w.sandbox.put_record("Invoice", invoice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cash_tie_out_matches_two_years_reports_a_new_payment_and_matches_after_a_sync() {
    let w = World::new(two_year_company()).await;
    let today = Utc::now().date_naive();
    // Whole months: the first of the month two years ago to the end of last month.
    let end = month_start(today) - Duration::days(1);
    let start = month_start(end)
        .checked_sub_months(chrono::Months::new(23))
        .unwrap();
    let (start_s, end_s) = (start.to_string(), end.to_string());
    let first_load = (today - Duration::days(735)).to_string();
    w.backfill(
        "all",
        &first_load,
        &today.to_string(),
        &["--concurrency", "4"],
    )
    .await
    .assert_code(0);
    let refreshed = refresh(&w).await;
    assert!(
        refreshed.contains("refreshed staging.general_ledger_cash"),
        "{refreshed}"
    );
    let cash = [
        "verify",
        "--tie-out",
        "--accounting-method",
        "cash",
        "--start",
        &start_s,
        "--end",
        &end_s,
    ];
    let accrual = ["verify", "--tie-out", "--start", &start_s, "--end", &end_s];

    // Every month of the two years ties out on the cash basis.
    let out = w.run(&cash).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("(cash; ProfitAndLoss only, the trial balance is not compared on the cash basis): 24 reports compared, 24 match, 0 differ"),
        "{}",
        out.stdout
    );
    // The bases differ on this company (else the comparison would prove nothing new).
    let pool = w.db.pool().await;
    let moved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM staging.general_ledger_cash WHERE txn_date <> document_date",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(moved > 0, "some income is recognized after its invoice");

    // A payment made now in QBO, dated in a month of the range, for an invoice of earlier.
    let invoice = unpaid_invoice(&w, end);
    let account = invoice["Line"][0]["SalesItemLineDetail"]["ItemAccountRef"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let invoice_day: NaiveDate = invoice["TxnDate"].as_str().unwrap().parse().unwrap();
    let paid_on = invoice_day + Duration::days(35);
    let month = paid_on.format("%Y-%m").to_string();
    pay_in_full(&w, invoice, paid_on);

    let out = w.run(&cash).await;
    out.assert_code(1);
    let expected = format!("{month} ProfitAndLoss account {account} ");
    assert!(
        out.stdout.contains(&expected),
        "names {expected}: {}",
        out.stdout
    );
    // QBO now counts the income; staging does not yet.
    let line = out.stdout.lines().find(|l| l.contains(&expected)).unwrap();
    assert!(line.contains("(staging - qbo -"), "{line}");
    assert!(
        out.stdout
            .contains(": 24 reports compared, 23 match, 1 differ"),
        "{}",
        out.stdout
    );

    // On the accrual basis a payment moves no income or expense: that month's P&L matches
    // (its trial balance does not: A/R and the deposit account moved).
    let out = w.run(&accrual).await;
    out.assert_code(1);
    assert!(
        out.stdout.contains(&format!("MATCH {month} ProfitAndLoss")),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(&format!("DIFF  {month} ProfitAndLoss")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("DIFF  {month} TrialBalance")),
        "{}",
        out.stdout
    );

    // Sync and refresh: both bases tie out again.
    w.run(&["sync", "payments"]).await.assert_code(0);
    w.run(&["sync", "invoices"]).await.assert_code(0);
    refresh(&w).await;
    let out = w.run(&cash).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
    let out = w.run(&accrual).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
}
