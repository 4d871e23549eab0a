use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_1000_changes_split_the_batch_and_lose_nothing() {
    let w = World::new(recent_company(1150)).await;
    backfill_recent(&w).await;
    let invoices = w.sandbox.records("Invoice");
    for r in invoices.iter().take(1100) {
        w.sandbox.touch_record("Invoice", r["Id"].as_str().unwrap());
    }
    for r in invoices.iter().skip(1100).take(3) {
        w.sandbox
            .delete_record("Invoice", r["Id"].as_str().unwrap());
    }
    for r in w.sandbox.records("Customer").iter().take(5) {
        w.sandbox
            .touch_record("Customer", r["Id"].as_str().unwrap());
    }

    let before = log_len(&w);
    let run = w.run(&["sync", "invoices", "customers"]).await;
    run.assert_code(0);
    let cdc: Vec<String> = requests_since(&w, before)
        .into_iter()
        .filter(|e| e.kind == "cdc")
        .map(|e| e.query.unwrap_or_default())
        .collect();
    // Both (1000: maybe truncated), then each alone: invoices still at 1000, customers not.
    assert_eq!(cdc.len(), 3, "{cdc:#?}");
    assert!(cdc[0].contains("entities=Customer,Invoice "), "{cdc:#?}");
    let invoices_report = sync_report(&w, "invoices").await;
    assert_eq!(
        latest_run_vias(&invoices_report).last().map(String::as_str),
        Some("reconcile")
    );
    assert!(latest_run_vias(&invoices_report).contains(&"query".to_string()));
    assert_eq!(latest_run_sum(&invoices_report, "deleted"), 3);
    assert_eq!(
        latest_run_vias(&sync_report(&w, "customers").await),
        ["cdc"]
    );
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
}
