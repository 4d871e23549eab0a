use qbo::sandbox::Faults;

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cdc_read_exits_1_keeps_the_watermark_and_the_next_sync_catches_up() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let before = invoice_watermark(&w)
        .await
        .expect("the backfill left a watermark");
    let id = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.delete_record("Invoice", &id);
    // The clock request passes; the CDC call (the sync's 2nd request) fails, with no retry
    // allowed. The sandbox numbers requests from its start, the backfill's included.
    let s = w.sandbox.stats();
    let sent = s.query_requests + s.cdc_requests + s.read_requests + s.batch_requests;
    w.faults(Faults {
        server_error_every: (sent + 2) as u32,
        ..Default::default()
    });
    let failed = w
        .run_with(&["sync", "invoices"], &[("QBO_MAX_ATTEMPTS", Some("1"))])
        .await;
    failed.assert_code(1);
    assert!(
        failed.stdout.contains("run `qbo sync invoices` again"),
        "{}",
        failed.stdout
    );
    assert_eq!(invoice_watermark(&w).await, Some(before));
    let report = sync_report(&w, "invoices").await;
    assert_eq!(report.last().unwrap()["status"], "error");
    assert_eq!(report.last().unwrap()["read_via"], "cdc");

    // Throttles, 5xx and dropped connections are retried; the sync lands everything.
    w.faults(Faults {
        throttle_every: 3,
        server_error_every: 4,
        drop_every: 5,
        ..Default::default()
    });
    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert!(invoice_watermark(&w).await > Some(before));
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert!(raw_rows(&w, "raw.qb_invoices").await[&id].deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_130_and_the_next_sync_finishes() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let id = w.sandbox.records("Invoice")[1]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.delete_record("Invoice", &id);
    w.faults(Faults {
        latency_ms: 1000,
        ..Default::default()
    });
    let child = w.qbo(&["sync", "invoices", "customers"]).spawn().unwrap();
    let pool = w.db.pool().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    // The runs exist once QBO's clock is read; the CDC call is then in flight.
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM ops.backfill_runs WHERE kind = 'sync'")
        .fetch_one(&pool)
        .await
        .unwrap()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = common::Run::from(child.wait_with_output().await.unwrap());
    out.assert_code(130);

    w.faults(Faults::default());
    w.run(&["sync", "invoices", "customers"])
        .await
        .assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
}
