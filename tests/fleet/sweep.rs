//! A queued run's multi-page windows are settled by ONE changed-since sweep, as an
//! in-process run's are (issue 10): done by the worker that settles the run's last window to
//! be loaded, or, when a worker is killed after parking (or while sweeping), by another
//! worker. Crash points are failpoints (`QBO_TEST_FAILPOINT`) that hold the worker where it
//! is; the test waits for what that point leaves in Postgres, then SIGKILLs it.

use std::time::Duration;

use qbo::sandbox::{RequestLogEntry, Stats};
use tokio::process::Child;
use tokio::time::Instant;

use crate::common::*;

const START: &str = "2024-01-01";
const END: &str = "2024-03-31";
/// Pages of 5 and windows of at most 4 pages: the 240 invoices are split into a dozen or
/// more windows of about three pages each, every one parked for the sweep.
const PAGING: [&str; 4] = ["--page-size", "5", "--window-pages", "4"];

/// The sweep's requests: whole-entity queries from a LastUpdatedTime on, with no upper
/// bound (a window's query has one, a COUNT is no page).
fn is_sweep(e: &RequestLogEntry) -> bool {
    e.kind == "query"
        && e.query.as_deref().is_some_and(|q| {
            q.starts_with("SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >=")
                && !q.contains("MetaData.LastUpdatedTime <")
        })
}

fn sweep_requests(s: &Stats) -> usize {
    s.request_log.iter().filter(|e| is_sweep(e)).count()
}

/// Sweep requests, and query requests in all (COUNTs included).
fn cost(s: &Stats) -> (usize, u64) {
    (sweep_requests(s), s.query_requests)
}

async fn enqueue(w: &World) {
    let mut args = vec!["backfill", "invoices", "--start", START, "--end", END];
    args.extend(PAGING);
    args.push("--enqueue");
    w.run(&args).await.assert_code(0);
}

fn worker(w: &World, extra: &[&str], failpoint: Option<&str>) -> Child {
    let mut args = vec!["worker", "--poll-ms", "50"];
    args.extend_from_slice(extra);
    let log = tempfile::tempfile_in(w.dir.path()).unwrap();
    let mut cmd = w.qbo(&args);
    if let Some(name) = failpoint {
        cmd.env("QBO_TEST_FAILPOINT", name);
    }
    cmd.stderr(log).spawn().expect("start qbo worker")
}

async fn finished(child: Child) -> Run {
    Run::from(child.wait_with_output().await.expect("wait for qbo worker"))
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Waits (a generous safety net, never a timing assumption) until `sql` counts at least one.
async fn wait_until(pool: &sqlx::PgPool, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while scalar(pool, sql).await < 1 {
        assert!(Instant::now() < deadline, "never came true: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every window succeeded, none was read twice, and the run is success.
async fn assert_run_success_each_window_read_once(w: &World) {
    let pool = w.db.pool().await;
    let states = w.chunk_states("invoices").await;
    assert!(states.len() > 5, "{states:?}");
    assert!(
        states
            .iter()
            .all(|(s, attempts)| s == "success" && *attempts == 1),
        "{states:?}"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_runs WHERE status = 'success'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM ops.paged_reads").await,
        0,
        "the sweep keeps nothing it settled"
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

/// The same backfill in process: what it costs.
async fn in_process_cost() -> (usize, u64) {
    let w = World::new(small_company()).await;
    w.backfill("invoices", START, END, &PAGING)
        .await
        .assert_code(0);
    let pool = w.db.pool().await;
    assert!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE pages > 1"
        )
        .await
            > 5,
        "the windows are not multi-page"
    );
    cost(&w.sandbox.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_sweep_a_run_of_many_multi_page_windows_once_as_in_process() {
    let (in_process_sweeps, in_process_queries) = in_process_cost().await;
    assert_eq!(in_process_sweeps, 1, "an in-process run sweeps once");

    let w = World::new(small_company()).await;
    enqueue(&w).await;
    let args = ["--idle-exit", "--concurrency", "2"];
    let workers = [
        worker(&w, &args, None),
        worker(&w, &args, None),
        worker(&w, &args, None),
    ];
    for child in workers {
        finished(child).await.assert_code(0);
    }
    assert_run_success_each_window_read_once(&w).await;
    let pool = w.db.pool().await;
    assert!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE pages > 1"
        )
        .await
            > 5
    );
    let (sweeps, queries) = cost(&w.sandbox.stats());
    assert_eq!(
        sweeps, in_process_sweeps,
        "the workers swept the run more than once"
    );
    assert_eq!(
        queries, in_process_queries,
        "the workers' load cost other than the in-process one"
    );
}

/// A worker killed right after parking a window (holding no lease on it: it was parked
/// durably) loses nothing: the other workers load the rest, and the one that settles the
/// last window sweeps all of them, the killed worker's included, which is never read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_parking_leaves_its_window_to_the_runs_one_sweep() {
    let w = World::new(small_company()).await;
    enqueue(&w).await;
    let pool = w.db.pool().await;
    // One slot: when it holds after parking, no other window of the run is in flight (a
    // window being loaded when the worker dies is read again, which is not this test's
    // point).
    let mut doomed = worker(
        &w,
        &["--companies-at-once", "1", "--concurrency", "1"],
        Some("worker-after-park"),
    );
    wait_until(
        &pool,
        "SELECT count(*) FROM ops.backfill_report WHERE status = 'paged'",
    )
    .await;
    doomed.start_kill().unwrap(); // SIGKILL
    doomed.wait().await.unwrap();
    let parked: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT chunk_index, attempts FROM ops.backfill_report WHERE status = 'paged'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(sweep_requests(&w.sandbox.stats()), 0);

    let args = ["--idle-exit", "--concurrency", "2"];
    let (a, b) = (worker(&w, &args, None), worker(&w, &args, None));
    finished(a).await.assert_code(0);
    finished(b).await.assert_code(0);
    // The killed worker's window was settled by the sweep, on its first attempt.
    assert_run_success_each_window_read_once(&w).await;
    assert_eq!(sweep_requests(&w.sandbox.stats()), 1);
}

/// A worker killed while it holds the run's sweep (after parking the last window) leaves a
/// sweep lease that runs out: another worker takes the sweep over and the run ends success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_holding_the_sweep_is_taken_over_once_its_lease_runs_out() {
    let w = World::new(small_company()).await;
    enqueue(&w).await;
    let pool = w.db.pool().await;
    let mut doomed = worker(&w, &["--concurrency", "2"], Some("worker-sweep-claimed"));
    wait_until(
        &pool,
        "SELECT count(*) FROM ops.backfill_runs WHERE sweep_owner IS NOT NULL",
    )
    .await;
    doomed.start_kill().unwrap(); // SIGKILL
    doomed.wait().await.unwrap();
    // Everything is loaded and parked; nothing settled them yet.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE status NOT IN ('paged', 'success')"
        )
        .await,
        0
    );
    assert!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE status = 'paged'"
        )
        .await
            > 5
    );
    assert_eq!(sweep_requests(&w.sandbox.stats()), 0);

    finished(worker(&w, &["--idle-exit"], None))
        .await
        .assert_code(0);
    assert_run_success_each_window_read_once(&w).await;
    assert_eq!(sweep_requests(&w.sandbox.stats()), 1);
}
