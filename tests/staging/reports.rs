//! `qbo reports` loads QBO's reports into raw.qb_reports / raw.qb_report_cells (again
//! without duplicates, split when QBO finds a piece too large, and still complete), and
//! `qbo verify --tie-out` compares the staging ledger with QBO's own P&L and trial balance.

use chrono::{Duration, Utc};
use qbo::sandbox::{Faults, SandboxConfig};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::*;
use crate::refresh;

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Per account, the sum of the GeneralLedger's Amount column over January's pieces:
/// `split` picks the pieces a split made, or the whole month's.
async fn january_gl(pool: &PgPool, split: bool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT c.section_path[1], sum(c.amount)::text
         FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'GeneralLedger' AND r.period_start >= '2024-01-01'
           AND r.period_end <= '2024-01-31' AND (r.split_from_start IS NOT NULL) = $1
           AND c.row_kind = 'data' AND c.column_key = 'subt_nat_amount' AND c.amount IS NOT NULL
         GROUP BY 1 ORDER BY 1",
    )
    .bind(split)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_loads_once_and_a_too_large_month_is_split_and_still_complete() {
    let w = World::new(small_company()).await;
    let range = ["--start", "2024-01-01", "--end", "2024-03-31"];
    let mut args = vec!["reports", "all"];
    args.extend(range);
    let out = w.run(&args).await;
    out.assert_code(0);
    for name in [
        "ProfitAndLoss",
        "BalanceSheet",
        "TrialBalance",
        "GeneralLedger",
    ] {
        assert!(
            out.stdout
                .contains(&format!("{name}: 3 pieces loaded (0 split")),
            "{}",
            out.stdout
        );
    }
    let pool = w.db.pool().await;
    let reports = "SELECT count(*) FROM raw.qb_reports";
    let cells = "SELECT count(*) FROM raw.qb_report_cells";
    assert_eq!(scalar(&pool, reports).await, 12, "4 reports x 3 months");
    let n_cells = scalar(&pool, cells).await;
    assert!(n_cells > 100, "{n_cells} cells");

    // Typed: QBO's P&L net income of each month is a number, and the payload is kept whole.
    let net: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT r.period_start::text, c.amount::text
         FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'ProfitAndLoss' AND c.section_group = 'NetIncome'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(net.len(), 3, "{net:?}");
    assert!(net.iter().all(|(_, a)| a.is_some()), "{net:?}");
    let kept: i64 = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports WHERE payload->'Header'->>'ReportName' = report_name
         AND intuit_tid IS NOT NULL AND params->>'start_date' = period_start::text",
    )
    .await;
    assert_eq!(kept, 12);

    // Loading again replaces the pieces: nothing doubles.
    w.run(&args).await.assert_code(0);
    assert_eq!(scalar(&pool, reports).await, 12);
    assert_eq!(scalar(&pool, cells).await, n_cells);

    // January's ledger, too large for QBO at a cap below its size, is split into weeks.
    let month_cells = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'GeneralLedger' AND r.period_start = '2024-01-01'",
    )
    .await as u64;
    let whole = january_gl(&pool, false).await;
    assert!(!whole.is_empty());
    w.faults(Faults {
        report_max_cells: month_cells * 6 / 10,
        ..Faults::default()
    });
    let out = w
        .run(&[
            "reports",
            "GeneralLedger",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ])
        .await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("GeneralLedger: 5 pieces loaded (1 split as too large)"),
        "{}",
        out.stdout
    );
    let split_from: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT split_from_start::text, split_from_end::text FROM raw.qb_reports
         WHERE split_from_start IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        split_from,
        [("2024-01-01".to_string(), "2024-01-31".to_string())]
    );
    assert_eq!(
        january_gl(&pool, true).await,
        whole,
        "the weeks add up to the month"
    );
    assert!(
        january_gl(&pool, false).await.is_empty(),
        "the weeks replaced the month"
    );
    let overlapping = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports a JOIN raw.qb_reports b
           ON a.realm_id = b.realm_id AND a.report_name = b.report_name
          AND a.accounting_method = b.accounting_method AND a.params_hash < b.params_hash
          AND daterange(a.period_start, a.period_end, '[]') && daterange(b.period_start, b.period_end, '[]')",
    )
    .await;
    assert_eq!(overlapping, 0, "no day is covered twice");
    assert_eq!(
        scalar(&pool, reports).await,
        12 - 1 + 5,
        "January's ledger is 5 weeks now"
    );

    // Another --period replaces the months it covers.
    w.faults(Faults::default());
    let mut quarter = vec!["reports", "ProfitAndLoss", "--period", "quarter"];
    quarter.extend(range);
    w.run(&quarter).await.assert_code(0);
    let pl: Vec<(String, String)> = sqlx::query_as(
        "SELECT period_start::text, period_end::text FROM raw.qb_reports
         WHERE report_name = 'ProfitAndLoss'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(pl, [("2024-01-01".to_string(), "2024-03-31".to_string())]);
    let cut = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports WHERE payload::text LIKE '%Unable to display more data%'",
    )
    .await;
    assert_eq!(cut, 0, "a cut answer is never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_qbo_refuses_fails_the_command_with_its_fault() {
    let w = World::new(small_company()).await;
    let out = w
        .run(&[
            "reports",
            "ProfitAndLoss",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
            "--accounting-method",
            "cash",
        ])
        .await;
    out.assert_code(1);
    assert!(out.stderr.contains("accounting_method"), "{}", out.stderr);
    let bad = w
        .run(&[
            "reports",
            "CashFlowish",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ])
        .await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("unknown report"), "{}", bad.stderr);
}

/// A company whose records were last updated 20 to 2 days ago: inside CDC's 30 days, so a
/// `qbo sync` sees an edit.
fn recent_company() -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices: 60,
        customers: 20,
        items: 10,
        data_start: today - Duration::days(20),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    }
}

/// An invoice's first item line made 100.00 larger (and its total), as a user edit now.
fn edit_invoice(w: &World) -> (String, String, String) {
    let mut inv: Value = w
        .sandbox
        .records("Invoice")
        .into_iter()
        .find(|r| {
            r["Line"][0]["DetailType"] == "SalesItemLineDetail"
                && r["Line"][0]["SalesItemLineDetail"]["ItemAccountRef"]["value"].is_string()
        })
        .expect("an invoice whose first line sells an item");
    let line = &mut inv["Line"][0];
    line["Amount"] = json!(line["Amount"].as_f64().unwrap() + 100.0);
    let account = line["SalesItemLineDetail"]["ItemAccountRef"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    inv["TotalAmt"] = json!(inv["TotalAmt"].as_f64().unwrap() + 100.0);
    inv["Balance"] = json!(inv["Balance"].as_f64().unwrap() + 100.0);
    let token: u64 = inv["SyncToken"].as_str().unwrap().parse().unwrap();
    inv["SyncToken"] = json!((token + 1).to_string());
    inv["MetaData"]["LastUpdatedTime"] = json!(Utc::now().to_rfc3339());
    let month = inv["TxnDate"].as_str().unwrap()[..7].to_string();
    let id = inv["Id"].as_str().unwrap().to_string();
    w.sandbox.put_record("Invoice", inv);
    (id, month, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tie_out_matches_reports_an_edit_and_matches_again_after_a_sync() {
    let w = World::new(recent_company()).await;
    let today = Utc::now().date_naive();
    let start = (today - Duration::days(21)).to_string();
    let end = today.to_string();
    w.backfill("all", &start, &end, &["--concurrency", "4"])
        .await
        .assert_code(0);
    refresh(&w).await;
    let tie_out = ["verify", "--tie-out", "--start", &start, "--end", &end];

    let out = w.run(&tie_out).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
    assert!(
        out.stdout.contains("MATCH") && out.stdout.contains("ProfitAndLoss"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(" 0 differ"), "{}", out.stdout);

    let (_, month, account) = edit_invoice(&w);
    let out = w.run(&tie_out).await;
    out.assert_code(1);
    let expected = format!("{month} ProfitAndLoss account {account} ");
    assert!(
        out.stdout.contains(&expected),
        "names {expected}: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(staging - qbo -100.00)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("DIFF  {month} TrialBalance")),
        "{}",
        out.stdout
    );

    w.run(&["sync", "invoices"]).await.assert_code(0);
    refresh(&w).await;
    let out = w.run(&tie_out).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
}
