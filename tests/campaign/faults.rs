//! Every QBO fault at once, at high rates: the run completes, and the report's request and
//! retry counts account for what the sandbox saw.

use qbo::sandbox::{Faults, SandboxConfig};

use crate::common::*;

/// Sums a numeric column of `qbo report --format json` over every chunk of every entity.
fn total(rows: &[serde_json::Value], key: &str) -> u64 {
    rows.iter().map(|r| r[key].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_faults_together_at_high_rates_and_the_run_still_completes() {
    let w = World::new(SandboxConfig {
        invoices: 160,
        ..small_company()
    })
    .await;
    w.faults(Faults {
        // Storms of three 429s with Retry-After: 1, and single 429s without it.
        throttle_every: 19,
        throttle_burst: 3,
        throttle_retry_after_secs: Some(1),
        bare_throttle_every: 9,
        server_error_every: 11,
        drop_every: 13,
        fault_in_200_every: 23,
        fault_in_query_response_every: 29,
        // Answers that take longer than the client's 1 s timeout.
        slow_every: 17,
        slow_ms: 2_500,
        // Every access token dies after a few requests; each refresh rotates the refresh token.
        expire_access_every: 6,
        ..Faults::default()
    });
    let mut summaries = String::new();
    for entity in ["invoices", "customers", "items"] {
        let run = w
            .backfill(
                entity,
                "2024-01-01",
                "2024-03-31",
                &[
                    "--chunk-days",
                    "31",
                    "--page-size",
                    "25",
                    "--concurrency",
                    "2",
                    "--max-attempts",
                    "12",
                    "--request-timeout-secs",
                    "1",
                ],
            )
            .await;
        run.assert_code(0);
        summaries.push_str(&run.stdout);
    }
    let stats = w.sandbox.stats();
    for (fault, n) in [
        ("throttled", stats.throttled),
        ("server errors", stats.server_errors),
        ("dropped", stats.dropped),
        ("slowed", stats.slowed),
        ("unauthorized", stats.unauthorized),
    ] {
        assert!(n > 0, "no {fault}: {stats:?}");
    }
    assert!(stats.refreshes > 3, "tokens rotated: {}", stats.refreshes);
    assert_eq!(stats.retired_refresh_token_uses, 0);
    let with_retry_after = stats
        .request_log
        .iter()
        .filter(|e| e.fault.as_deref() == Some("throttle_every"))
        .count();
    let without = stats
        .request_log
        .iter()
        .filter(|e| e.fault.as_deref() == Some("bare_throttle_every"))
        .count();
    assert!(
        with_retry_after >= 3 && without > 0,
        "{with_retry_after} {without}"
    );
    for (qbo_name, table) in [
        ("Invoice", "raw.qb_invoices"),
        ("Customer", "raw.qb_customers"),
        ("Item", "raw.qb_items"),
    ] {
        w.assert_raw_matches_sandbox_entity(qbo_name, table).await;
    }

    let report = w.run(&["report", "--format", "json"]).await;
    report.assert_code(0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&report.stdout).unwrap();
    assert!(rows.iter().all(|r| r["status"] == "success"), "{rows:?}");
    // Every request qbo sent, retries and timed-out ones included, is in the report: the
    // windows' own, and the runs' (their changed-since sweeps belong to no window).
    let (run_requests, run_retries): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(run_requests), 0)::bigint, coalesce(sum(run_retries), 0)::bigint
         FROM ops.backfill_runs",
    )
    .fetch_one(&w.db.pool().await)
    .await
    .unwrap();
    assert!(run_requests > 0, "multi-page windows were swept");
    assert_eq!(
        total(&rows, "requests") + run_requests as u64,
        stats.query_requests
    );
    let retries = total(&rows, "retries") + run_retries as u64;
    // Each injected failure of a query cost one retry (a 401 costs a refresh instead).
    let failures = stats.throttled + stats.server_errors + stats.dropped + stats.slowed;
    assert!(
        retries >= failures,
        "{retries} retries for {failures} failures: {stats:?}"
    );
    // The summaries count the same retries, the runs' own included.
    let summarised: u64 = summaries
        .lines()
        .filter(|l| l.contains(": run "))
        .filter_map(|l| {
            let before = &l[..l.find(" retries,")?];
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(
        summarised, retries,
        "the summaries count every retry: {summaries}"
    );
}

/// Four workers share one access token, and the sandbox kills it every 6th request: the
/// other workers' requests then fail with 401 while another worker refreshes, which must cost
/// a retry at most, never the chunk (it used to fail the chunk at once: half the chunks of
/// this run failed). Every third token issued is also refused at its first use, as when
/// another client's refresh revoked it in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_token_rejected_after_a_refresh_costs_a_retry_not_the_chunk() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        expire_access_every: 6,
        reject_fresh_access_every: 3,
        latency_ms: 5,
        ..Faults::default()
    });
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &[
                "--chunk-days",
                "3",
                "--page-size",
                "10",
                "--concurrency",
                "4",
                "--max-attempts",
                "10",
            ],
        )
        .await;
    run.assert_code(0);
    assert_eq!(w.sandbox.stats().retired_refresh_token_uses, 0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

/// One worker, so the order is fixed: its 5th request kills the token, the refresh issues
/// token 2, and the sandbox refuses token 2 at its first use. A 401 right after a refresh is
/// retried with another refresh and counted as a retry; the chunk still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_access_token_refused_at_once_is_refreshed_again() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        expire_access_every: 5,
        reject_fresh_access_every: 2,
        ..Faults::default()
    });
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &[
                "--chunk-days",
                "31",
                "--page-size",
                "10",
                "--concurrency",
                "1",
            ],
        )
        .await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("QBO rejected a fresh access token; refreshing again"),
        "a refused fresh token is refreshed again: {}",
        run.stderr
    );
    assert_eq!(w.sandbox.stats().retired_refresh_token_uses, 0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let report = w.run(&["report", "--format", "json"]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&report.stdout).unwrap();
    assert!(rows.iter().all(|r| r["status"] == "success"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r["retries"].as_u64() > Some(0)),
        "the refused fresh token cost a retry: {rows:?}"
    );
}
