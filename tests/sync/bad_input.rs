use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_without_since_exits_2_and_writes_nothing() {
    let w = World::new(recent_company(20)).await;
    let run = w.run(&["sync", "invoices"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("--since"), "{}", run.stderr);
    assert!(run.stderr.contains("invoices"), "{}", run.stderr);
    let pool = w.db.pool().await;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.backfill_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);

    let bad = w.run(&["sync", "invoices", "--lookback", "ten"]).await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("10m"), "{}", bad.stderr);
    let unknown = w.run(&["sync", "invoicez"]).await;
    unknown.assert_code(2);
    let help = w.run(&["sync", "--help"]).await;
    help.assert_code(0);
    for word in [
        "Watermark",
        "lookback",
        "30 days",
        "1000",
        "deleted_at_utc IS NULL",
    ] {
        assert!(
            help.stdout.contains(word),
            "--help lacks {word}: {}",
            help.stdout
        );
    }
}

/// With a watermark, a --since later than it would skip changes: the sync reads from the
/// watermark and says that --since had no effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_later_than_the_watermark_is_ignored_with_a_warning() {
    let w = World::new(recent_company(20)).await;
    w.backfill("invoices", &days_ago(21), &days_ago(3), &[])
        .await
        .assert_code(0);
    let run = w.run(&["sync", "invoices", "--since", &today()]).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("has no effect") && run.stderr.contains("later than the watermark"),
        "{}",
        run.stderr
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

/// `--retry-failed --run` takes backfill runs only: the id of a sync run is refused (exit 2,
/// naming what it is) before anything is fetched, instead of being re-read as a backfill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_refuses_the_run_of_a_sync() {
    let w = World::new(recent_company(20)).await;
    w.run(&["sync", "invoices", "--since", &days_ago(21)])
        .await
        .assert_code(0);
    let pool = w.db.pool().await;
    let sync_run: String =
        sqlx::query_scalar("SELECT run_id::text FROM ops.backfill_runs WHERE kind = 'sync'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let before = w.sandbox.stats().query_requests;
    let run = w
        .run(&["backfill", "invoices", "--retry-failed", "--run", &sync_run])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains(&format!("run {sync_run} belongs to invoices (sync)")),
        "{}",
        run.stderr
    );
    assert_eq!(
        w.sandbox.stats().query_requests,
        before,
        "nothing was fetched"
    );
}
