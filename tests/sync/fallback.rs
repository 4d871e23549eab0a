use chrono::{Duration, Utc};
use qbo::sandbox::SandboxConfig;

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_past_cdcs_30_days_reads_windows_and_still_finds_deletes() {
    let today = Utc::now().date_naive();
    let w = World::new(SandboxConfig {
        invoices: 90,
        customers: 20,
        items: 10,
        data_start: today - Duration::days(60),
        data_end: today - Duration::days(40),
        ..SandboxConfig::default()
    })
    .await;
    // Leaves a watermark 34 days back: past CDC's horizon.
    w.backfill("invoices", &days_ago(61), &days_ago(35), &[])
        .await
        .assert_code(0);
    let records = w.sandbox.records("Invoice");
    let id = |i: usize| records[i]["Id"].as_str().unwrap().to_string();
    w.sandbox.delete_record("Invoice", &id(0));
    w.sandbox.delete_record("Invoice", &id(1));
    w.sandbox.touch_record("Invoice", &id(2));
    w.sandbox
        .put_record("Invoice", new_record(&w, "Invoice", "990003", Utc::now()));

    let before = log_len(&w);
    let run = w.run(&["sync", "invoices"]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("via query+reconcile"), "{}", run.stdout);
    assert!(
        run.stdout.contains("skipped), 2 deleted,"),
        "{}",
        run.stdout
    );
    let log = requests_since(&w, before);
    assert!(
        log.iter().all(|e| e.kind != "cdc"),
        "CDC cannot reach a 34-day-old watermark: {log:#?}"
    );
    assert!(log.iter().any(|e| e
        .query
        .as_deref()
        .is_some_and(|q| q.starts_with("SELECT Id FROM Invoice"))));
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    let raw = raw_rows(&w, "raw.qb_invoices").await;
    assert!(raw[&id(0)].deleted && raw[&id(1)].deleted);
    assert_eq!(raw[&id(0)].payload, records[0], "the last payload is kept");

    // Caught up: the next sync is CDC again.
    let next = w.run(&["sync", "invoices"]).await;
    next.assert_code(0);
    assert!(next.stdout.contains("via cdc"), "{}", next.stdout);
}
