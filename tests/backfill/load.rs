use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backfill_lands_exactly_the_sandbox_records() {
    let w = World::new(small_company()).await;
    // Monthly windows: `all` is 36 entities, and QBO allows 500 requests a minute.
    let run = w
        .backfill("all", "2024-01-01", "2024-03-31", &["--chunk-days", "31"])
        .await;
    run.assert_code(0);
    assert!(run.stdout.contains("invoices: run"), "{}", run.stdout);
    w.assert_raw_matches_sandbox().await;

    // Inactive names are loaded too: QBO hides them unless asked.
    let pool = w.db.pool().await;
    let inactive: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM raw.qb_customers WHERE payload->>'Active' = 'false'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        inactive > 0,
        "the sandbox has inactive customers and they must land"
    );

    // Every chunk succeeded, and what it loaded is what COUNT(*) promised.
    let (bad, mismatched): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status <> 'success'),
                count(*) FILTER (WHERE expected_count IS DISTINCT FROM row_count)
         FROM ops.backfill_report",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((bad, mismatched), (0, 0));

    // The metadata a user relies on is there, and the request never carries a token.
    let (pages, payload_query): (i64, String) = sqlx::query_as(
        "SELECT count(DISTINCT page_number), min(request_payload->>'query') FROM raw.qb_invoices",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(pages >= 1);
    assert!(payload_query.starts_with("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '"));
    let with_tid: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices WHERE intuit_tid IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(with_tid > 0, "intuit_tid is kept with the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_duplicates_nothing_and_reports_updates_and_skips() {
    let w = World::new(small_company()).await;
    w.backfill("invoices", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    let total = w.sandbox_versions("Invoice").len() as i64;

    let again = w
        .backfill("invoices", "2024-01-01", "2024-03-31", &[])
        .await;
    again.assert_code(0);
    assert!(
        again
            .stdout
            .contains(&format!("0 inserted, 0 updated, {total} skipped")),
        "{}",
        again.stdout
    );

    // An edited record moves into a later window; a re-run covering it updates one row.
    let pool = w.db.pool().await;
    let id = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.touch_record("Invoice", &id);
    let today = chrono::Utc::now().date_naive().to_string();
    let third = w
        .backfill("invoices", "2024-01-01", &today, &["--chunk-days", "400"])
        .await;
    third.assert_code(0);
    assert!(
        third.stdout.contains("0 inserted, 1 updated"),
        "{}",
        third.stdout
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, total);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_window_boundaries_load_once_into_the_window_they_start() {
    let w = World::new(small_company()).await;
    let mut template = w.sandbox.records("Invoice")[0].clone();
    // 2024-01-08T00:00:00Z is where the second 7-day window starts; QBO writes it in the
    // company's offset. One second earlier belongs to the first window.
    for (id, lut) in [
        ("900001", "2024-01-07T16:00:00-08:00"),
        ("900002", "2024-01-07T15:59:59-08:00"),
        ("900003", "2024-01-01T00:00:00+00:00"),
    ] {
        template["Id"] = json!(id);
        template["MetaData"]["LastUpdatedTime"] = json!(lut);
        w.sandbox.put_record("Invoice", template.clone());
    }
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-03-31",
        &["--chunk-days", "7"],
    )
    .await
    .assert_code(0);
    let pool = w.db.pool().await;
    let windows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, to_char(extract_window_start_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD')
         FROM raw.qb_invoices WHERE id IN ('900001','900002','900003') ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        windows,
        vec![
            ("900001".into(), "2024-01-08".into()),
            ("900002".into(), "2024-01-01".into()),
            ("900003".into(), "2024-01-01".into()),
        ]
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_edited_while_a_window_is_paged_are_not_lost() {
    let w = World::new(small_company()).await;
    // Every 5th later page, the sandbox edits the window's first record before answering:
    // a plain offset pager then skips one record per edit.
    w.faults(qbo::sandbox::Faults {
        mutate_while_paging_every: 5,
        ..Default::default()
    });
    let today = chrono::Utc::now().date_naive().to_string();
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            &today,
            &["--page-size", "25", "--chunk-days", "30"],
        )
        .await;
    run.assert_code(0);
    assert!(w.sandbox.stats().mutations > 0, "the fault fired");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let pool = w.db.pool().await;
    let repaged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE passes > 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(repaged > 0, "some windows were read again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_share_a_run_without_loading_a_window_twice() {
    let w = World::new(small_company()).await;
    // Slow answers make the 16 workers queue behind the client's in-flight limit.
    w.faults(qbo::sandbox::Faults {
        latency_ms: 40,
        ..Default::default()
    });
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &[
                "--concurrency",
                "16",
                "--chunk-days",
                "3",
                "--log-format",
                "json",
            ],
        )
        .await;
    run.assert_code(0);
    // Log shippers get one JSON object per line, with the run's context on chunk lines.
    let lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["name"] == "chunk" && l["level"] == "INFO"),
        "{}",
        run.stderr
    );
    let states = w.chunk_states("invoices").await;
    assert_eq!(states.len(), 31);
    assert!(
        states
            .iter()
            .all(|(s, attempts)| s == "success" && *attempts == 1),
        "{states:?}"
    );
    // 16 workers, but never more than QBO's 10 requests in flight, so never throttled.
    let stats = w.sandbox.stats();
    assert!(
        stats.max_in_flight <= 10,
        "{} in flight",
        stats.max_in_flight
    );
    assert_eq!(stats.throttled, 0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_can_be_windowed_by_txn_date() {
    let w = World::new(small_company()).await;
    let run = w
        .backfill(
            "invoices",
            "2023-01-01",
            "2024-12-31",
            &["--window-field", "txn-date", "--chunk-days", "60"],
        )
        .await;
    run.assert_code(0);
    let pool = w.db.pool().await;
    let q: String =
        sqlx::query_scalar("SELECT min(request_payload->>'query') FROM raw.qb_invoices")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(q.contains("TxnDate >= '"), "{q}");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;

    let customers = w
        .backfill(
            "customers",
            "2024-01-01",
            "2024-01-31",
            &["--window-field", "txn-date"],
        )
        .await;
    customers.assert_code(2);
    assert!(
        customers.stderr.contains("no TxnDate"),
        "{}",
        customers.stderr
    );
}
