//! `qbo backfill --enqueue` plans and returns; `qbo worker`s load the queue, hand their
//! windows back on SIGTERM, and take over the windows of a worker that was killed.

use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::process::Child;
use tokio::time::Instant;

use crate::common::*;

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn windows_in(pool: &sqlx::PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Waits (without bounding how long a busy machine may take, beyond a safety net) until at
/// least `n` windows succeeded.
async fn wait_for_successes(pool: &sqlx::PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while windows_in(pool, "success").await < n {
        assert!(Instant::now() < deadline, "the workers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn worker(w: &World, extra: &[&str]) -> Child {
    let mut args = vec!["worker", "--poll-ms", "50"];
    args.extend_from_slice(extra);
    w.qbo(&args).spawn().expect("start qbo worker")
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let ok = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {name} {pid}");
}

async fn finished(child: Child) -> Run {
    Run::from(child.wait_with_output().await.expect("wait for qbo worker"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_returns_at_once_and_two_workers_load_every_entity() {
    let w = World::new(small_company()).await;
    // Planning needs no QBO credentials (the workers have them) and asks QBO nothing.
    let planned = w
        .run_with(
            &[
                "backfill",
                "all",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
                "--window-pages",
                "1",
                "--page-size",
                "20",
                "--enqueue",
            ],
            &[
                ("QBO_CLIENT_ID", None),
                ("QBO_CLIENT_SECRET", None),
                ("QBO_REFRESH_TOKEN", None),
            ],
        )
        .await;
    planned.assert_code(0);
    let entities = qbo::entities::ENTITIES.len();
    assert!(
        planned.stdout.contains(&format!(
            "realm {}: {entities} runs queued",
            w.sandbox.realm_id()
        )),
        "{}",
        planned.stdout
    );
    assert_eq!(planned.stdout.matches(": run ").count(), entities);
    let stats = w.sandbox.stats();
    assert_eq!(stats.query_requests + stats.token_requests, 0, "{stats:?}");
    let pool = w.db.pool().await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM raw.qb_invoices").await,
        0
    );
    assert_eq!(windows_in(&pool, "pending").await as usize, entities);

    let args = [
        "--idle-exit",
        "--companies-at-once",
        "2",
        "--concurrency",
        "2",
    ];
    let (a, b) = (worker(&w, &args), worker(&w, &args));
    let (a, b) = (finished(a).await, finished(b).await);
    for out in [&a, &b] {
        out.assert_code(0);
        assert!(
            out.stdout.contains("worker stopped (the queue is empty)"),
            "{}",
            out.stdout
        );
    }
    w.assert_raw_matches_sandbox().await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE status <> 'success'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_runs WHERE status <> 'success'"
        )
        .await,
        0
    );
    // The invoices were split into pages of 20: several windows, loaded once each.
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE entity = 'invoices'"
        )
        .await
            > 1
    );
}

/// Invoices in windows of one page of 5 records: many windows, each a few requests.
async fn enqueue_invoices(w: &World) {
    w.run(&[
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "2",
        "--page-size",
        "5",
        "--enqueue",
    ])
    .await
    .assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_windows_back_and_exits_0() {
    let w = World::new(small_company()).await;
    enqueue_invoices(&w).await;
    let pool = w.db.pool().await;
    w.faults(Faults {
        latency_ms: 20,
        ..Faults::default()
    });
    let child = worker(&w, &["--concurrency", "2", "--companies-at-once", "1"]);
    wait_for_successes(&pool, 2).await;
    signal(&child, "-TERM");
    let out = finished(child).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("worker stopped (drained)"),
        "{}",
        out.stdout
    );
    // Nothing is left held: what was being loaded went back to the queue.
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE status IN ('running', 'paged') OR lease_owner IS NOT NULL AND status <> 'success'"
        )
        .await,
        0
    );
    assert!(windows_in(&pool, "pending").await > 0, "it stopped midway");

    w.faults(Faults::default());
    let rest = finished(worker(&w, &["--idle-exit"])).await;
    rest.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    assert_eq!(
        windows_in(&pool, "success").await,
        count(&pool, "SELECT count(*) FROM ops.backfill_report").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_windows_are_taken_over_once_its_lease_runs_out() {
    let w = World::new(small_company()).await;
    enqueue_invoices(&w).await;
    let pool = w.db.pool().await;
    w.faults(Faults {
        latency_ms: 20,
        ..Faults::default()
    });
    let mut doomed = worker(&w, &["--concurrency", "3", "--companies-at-once", "1"]);
    wait_for_successes(&pool, 2).await;
    doomed.start_kill().unwrap(); // SIGKILL: nothing is handed back
    doomed.wait().await.unwrap();
    w.faults(Faults::default());
    let rest = finished(worker(&w, &["--idle-exit"])).await;
    rest.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    assert_eq!(
        windows_in(&pool, "success").await,
        count(&pool, "SELECT count(*) FROM ops.backfill_report").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_refuses_what_it_cannot_plan() {
    let w = World::new(small_company()).await;
    let no_realm = w
        .run_with(
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-31",
                "--enqueue",
            ],
            &[("QBO_REALM_ID", None)],
        )
        .await;
    no_realm.assert_code(2);
    assert!(
        no_realm.stderr.contains("--realm-id"),
        "{}",
        no_realm.stderr
    );
    w.run(&["backfill", "invoices", "--resume", "--enqueue"])
        .await
        .assert_code(2);
    w.run(&["backfill", "invoices", "--enqueue"])
        .await
        .assert_code(2);
}
