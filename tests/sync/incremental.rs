use chrono::{Duration, Utc};

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_after_a_backfill_reads_only_the_changes_through_cdc() {
    let w = World::new(recent_company(120)).await;
    backfill_recent(&w).await;
    let invoices = w.sandbox.records("Invoice");
    let id = |i: usize| invoices[i]["Id"].as_str().unwrap().to_string();
    for i in 0..3 {
        w.sandbox.touch_record("Invoice", &id(i));
    }
    w.sandbox.delete_record("Invoice", &id(3));
    w.sandbox.delete_record("Invoice", &id(4));
    w.sandbox
        .put_record("Invoice", new_record(&w, "Invoice", "990001", Utc::now()));
    let customer = w.sandbox.records("Customer")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.touch_record("Customer", &customer);

    let before = log_len(&w);
    let run = w.run(&["sync", "invoices", "customers", "items"]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("invoices: sync run"), "{}", run.stdout);
    assert!(run.stdout.contains("via cdc"), "{}", run.stdout);

    // One request for QBO's clock and one CDC call for the three entities: no windows.
    let log = requests_since(&w, before);
    let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "cdc").count(), 1, "{log:#?}");
    assert!(
        kinds.iter().all(|k| ["cdc", "count", "token"].contains(k)),
        "a sync after a backfill reads no windows: {log:#?}"
    );
    assert!(log.iter().any(|e| e
        .query
        .as_deref()
        .is_some_and(|q| q.contains("entities=Customer,Invoice,Item"))));

    let report = sync_report(&w, "invoices").await;
    assert_eq!(latest_run_vias(&report), ["cdc"]);
    assert_eq!(latest_run_sum(&report, "inserted"), 1);
    assert_eq!(latest_run_sum(&report, "updated"), 3);
    assert_eq!(latest_run_sum(&report, "deleted"), 2);
    let customers = sync_report(&w, "customers").await;
    assert_eq!(latest_run_sum(&customers, "updated"), 1);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
    assert_synced(&w, "Item", "raw.qb_items").await;

    // Nothing changed: the next sync writes nothing, and the watermark never moves back (it
    // is QBO's clock in whole seconds, so two quick syncs may share one).
    let first = invoice_watermark(&w).await.expect("a watermark");
    assert!(first > Utc::now() - Duration::minutes(5));
    let again = w.run(&["sync", "invoices"]).await;
    again.assert_code(0);
    assert!(
        again.stdout.contains("(0 inserted, 0 updated"),
        "{}",
        again.stdout
    );
    let second = invoice_watermark(&w).await.expect("a watermark");
    assert!(second >= first, "the watermark moved back");

    // `qbo report` shows the backfill and the sync side by side.
    let table = w.run(&["report", "invoices"]).await;
    table.assert_code(0);
    assert!(table.stdout.contains("backfill"), "{}", table.stdout);
    assert!(table.stdout.contains(" sync "), "{}", table.stdout);
    assert!(table.stdout.contains("DELETED"), "{}", table.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_backfills_from_since_and_sets_the_watermark() {
    let w = World::new(recent_company(80)).await;
    let run = w.run(&["sync", "invoices", "--since", &days_ago(21)]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("via query+reconcile"), "{}", run.stdout);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;

    // The next one needs no --since and goes through CDC.
    let id = w.sandbox.records("Invoice")[5]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.touch_record("Invoice", &id);
    let next = w.run(&["sync", "invoices"]).await;
    next.assert_code(0);
    assert!(next.stdout.contains("via cdc"), "{}", next.stdout);
    assert!(
        next.stdout.contains(" inserted, 1 updated,"),
        "{}",
        next.stdout
    );
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}

async fn watermark_row(w: &World) -> Option<(bool, String, bool)> {
    let pool = w.db.pool().await;
    sqlx::query_as(
        "SELECT w.watermark_utc = r.started_at - interval '5 minutes', w.source, w.needs_reconcile
         FROM ops.sync_watermarks w JOIN ops.backfill_runs r USING (run_id)
         WHERE w.entity = 'invoices'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_leave_a_watermark_only_when_it_is_safe() {
    let w = World::new(recent_company(40)).await;
    // By transaction date: no watermark (LastUpdatedTime coverage unknown).
    w.backfill(
        "invoices",
        &days_ago(21),
        &today(),
        &["--window-field", "txn-date"],
    )
    .await
    .assert_code(0);
    assert_eq!(watermark_row(&w).await, None);
    let pool = w.db.pool().await;
    sqlx::query("TRUNCATE raw.qb_invoices")
        .execute(&pool)
        .await
        .unwrap();

    // Into an empty table, up to today: the run's start (less clock skew), nothing to reconcile.
    w.backfill("invoices", &days_ago(21), &today(), &[])
        .await
        .assert_code(0);
    assert_eq!(
        watermark_row(&w).await,
        Some((true, "backfill".into(), false))
    );

    // An existing watermark is never moved by a backfill.
    w.backfill("invoices", &days_ago(21), &today(), &[])
        .await
        .assert_code(0);
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.sync_watermarks w JOIN ops.backfill_runs r USING (run_id)
         WHERE r.started_at = (SELECT min(started_at) FROM ops.backfill_runs WHERE window_field = 'last-updated')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1, "still the first last-updated backfill's watermark");

    // Into a table that had rows: deletes before the run may be missing, so the next sync
    // reconciles once, then goes back to CDC alone.
    sqlx::query("DELETE FROM ops.sync_watermarks")
        .execute(&pool)
        .await
        .unwrap();
    w.backfill("invoices", &days_ago(21), &today(), &[])
        .await
        .assert_code(0);
    assert_eq!(
        watermark_row(&w).await,
        Some((true, "backfill".into(), true))
    );
    let id = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.delete_record("Invoice", &id);
    let first = w.run(&["sync", "invoices"]).await;
    first.assert_code(0);
    assert!(
        first.stdout.contains("via cdc+reconcile"),
        "{}",
        first.stdout
    );
    let second = w.run(&["sync", "invoices"]).await;
    second.assert_code(0);
    assert!(second.stdout.contains("via cdc from"), "{}", second.stdout);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}
