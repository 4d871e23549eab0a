use qbo::sandbox::Faults;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_with_retry_after_is_honoured() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        throttle_every: 12,
        throttle_retry_after_secs: Some(1),
        ..Default::default()
    });
    w.backfill(
        "customers",
        "2024-01-01",
        "2024-03-31",
        &["--chunk-days", "3", "--concurrency", "4"],
    )
    .await
    .assert_code(0);
    let stats = w.sandbox.stats();
    assert!(stats.throttled > 0);
    // A 429 is about the company's quota, so every worker waits out Retry-After: in the
    // second after one, only the requests already in flight (the other 3 workers', plus one
    // each that may leave before the 429 reaches qbo) reach QBO. Without the pause, dozens do.
    let log = &stats.request_log;
    let mut checked = 0;
    for (i, throttled) in log.iter().enumerate().filter(|(_, e)| e.status == 429) {
        let soon = log[i + 1..]
            .iter()
            .take_while(|e| e.at_ms < throttled.at_ms + 1000)
            .count();
        assert!(
            soon <= 6,
            "{soon} requests within 1 s of a 429 with Retry-After: 1"
        );
        checked += 1;
    }
    assert!(checked > 0);
    w.assert_raw_matches_sandbox_entity("Customer", "raw.qb_customers")
        .await;
    // Retries are counted in the report.
    let pool = w.db.pool().await;
    let retries: i64 = sqlx::query_scalar("SELECT sum(retries)::bigint FROM ops.backfill_report")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(retries as u64 >= stats.throttled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_dropped_connections_and_xml_throttles_are_retried() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        server_error_every: 7,
        drop_every: 11,
        throttle_every: 13,
        throttle_as_xml: true,
        fault_in_200_every: 17,
        ..Default::default()
    });
    let run = w
        .backfill(
            "all",
            "2024-01-01",
            "2024-03-31",
            // `all` runs entities at once, so which request meets which every-Nth fault is
            // random: about 3 in 10 requests fault, and 12 attempts make a request that fails
            // every one of them (0.3^12 per request) practically impossible.
            &["--max-attempts", "12", "--chunk-days", "46"],
        )
        .await;
    run.assert_code(0);
    let stats = w.sandbox.stats();
    assert!(stats.server_errors > 0 && stats.dropped > 0 && stats.throttled > 0);
    w.assert_raw_matches_sandbox().await;
}
