//! A transaction QBO deletes leaves the staging schema at the next sync and refresh.

use chrono::{Duration, Utc};
use qbo::sandbox::SandboxConfig;

use crate::common::*;
use crate::refresh;

/// A company whose records were last updated 20 to 2 days ago: inside CDC's 30 days.
fn recent_company() -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices: 40,
        customers: 20,
        items: 10,
        data_start: today - Duration::days(20),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    }
}

async fn count(w: &World, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&w.db.pool().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_invoice_leaves_lines_transactions_and_ledger() {
    let w = World::new(recent_company()).await;
    let today = Utc::now().date_naive();
    let start = (today - Duration::days(21)).to_string();
    for entity in ["invoices", "accounts", "items"] {
        w.backfill(entity, &start, &today.to_string(), &[])
            .await
            .assert_code(0);
    }
    refresh(&w).await;
    let id = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let lines_sql = "SELECT count(*) FROM staging.invoice_lines WHERE txn_id = $1";
    let gl_sql = "SELECT count(*) FROM staging.general_ledger
                  WHERE source_entity = 'Invoice' AND source_id = $1";
    let txn_sql = "SELECT count(*) FROM staging.transactions
                   WHERE source_entity = 'Invoice' AND txn_id = $1";
    assert!(
        count(&w, lines_sql, &id).await > 0,
        "the invoice's lines are staged"
    );
    assert!(count(&w, gl_sql, &id).await > 0, "the invoice posts");
    let others = count(
        &w,
        "SELECT count(DISTINCT txn_id) FROM staging.invoice_lines WHERE txn_id <> $1",
        &id,
    )
    .await;

    w.sandbox.delete_record("Invoice", &id);
    w.run(&["sync", "invoices"]).await.assert_code(0);
    refresh(&w).await;

    assert_eq!(count(&w, lines_sql, &id).await, 0, "its lines are gone");
    assert_eq!(count(&w, gl_sql, &id).await, 0, "its postings are gone");
    assert_eq!(count(&w, txn_sql, &id).await, 0, "its header is gone");
    let still = count(
        &w,
        "SELECT count(DISTINCT txn_id) FROM staging.invoice_lines WHERE txn_id <> $1",
        &id,
    )
    .await;
    assert_eq!(still, others, "the other invoices stay");
}
