use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_matches_after_a_backfill_and_finds_a_planted_mismatch() {
    let w = World::new(small_company()).await;
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-03-31",
        &["--chunk-days", "30"],
    )
    .await
    .assert_code(0);

    let clean = w
        .run(&[
            "verify",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ])
        .await;
    clean.assert_code(0);
    assert!(!clean.stdout.contains("MISMATCH"), "{}", clean.stdout);
    let total = w.sandbox_versions("Invoice").len();
    assert!(
        clean.stdout.contains(&format!("qbo {total}, raw {total}")),
        "{}",
        clean.stdout
    );

    // Lose one row of February in the raw zone, as a bad manual fix would.
    let pool = w.db.pool().await;
    let lost: String = sqlx::query_scalar(
        "DELETE FROM raw.qb_invoices WHERE id = (SELECT id FROM raw.qb_invoices
            WHERE last_updated_utc >= '2024-02-15' ORDER BY last_updated_utc LIMIT 1)
         RETURNING to_char(last_updated_utc, 'YYYY-MM-DD')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let found = w
        .run(&[
            "verify",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--format",
            "json",
        ])
        .await;
    found.assert_code(1);
    let windows: Vec<serde_json::Value> = serde_json::from_str(&found.stdout).unwrap();
    let bad: Vec<_> = windows.iter().filter(|w| w["qbo"] != w["raw"]).collect();
    assert_eq!(
        bad.len(),
        1,
        "exactly the window that lost a row: {windows:?}"
    );
    let (start, end) = (
        bad[0]["window_start_utc"].as_str().unwrap(),
        bad[0]["window_end_utc"].as_str().unwrap(),
    );
    assert!(
        start[..10] <= lost[..] && lost[..] < end[..10],
        "{lost} in {start}..{end}"
    );
    assert_eq!(
        bad[0]["qbo"].as_i64().unwrap() - bad[0]["raw"].as_i64().unwrap(),
        1
    );

    // The table form names the window and says what to do; the default range is the raw span.
    let table = w.run(&["verify", "invoices"]).await;
    table.assert_code(1);
    assert!(
        table.stdout.contains("MISMATCH invoices"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains("backfill this window again"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_on_an_empty_table_asks_for_a_range() {
    let w = World::new(small_company()).await;
    w.run(&["migrate"]).await.assert_code(0);
    let run = w.run(&["verify", "invoices"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("--start and --end"), "{}", run.stderr);
}
