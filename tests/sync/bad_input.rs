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
