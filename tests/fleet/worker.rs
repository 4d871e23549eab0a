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

/// A worker whose log goes to a file (a pipe nobody reads while it runs would fill and
/// block it); its stdout (one line at the end) is piped.
fn worker(w: &World, extra: &[&str]) -> Child {
    let mut args = vec!["worker", "--poll-ms", "50"];
    args.extend_from_slice(extra);
    let log = tempfile::tempfile_in(w.dir.path()).unwrap();
    w.qbo(&args).stderr(log).spawn().expect("start qbo worker")
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
    // From the next query on, the sandbox holds every request unanswered: windows are being
    // loaded when SIGTERM comes, however fast the machine (a fixed latency let a quick
    // worker finish everything first).
    let s = w.sandbox.stats();
    w.faults(Faults {
        hang_from_request: s.query_requests + s.cdc_requests + 1,
        ..Faults::default()
    });
    signal(&child, "-TERM");
    let out = finished(child).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("worker stopped (drained)"),
        "{}",
        out.stdout
    );
    // Nothing is left held: what was being loaded went back to the queue (a window parked
    // for the run's sweep holds no lease: whichever worker comes next sweeps it).
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM ops.backfill_report WHERE status = 'running' OR lease_owner IS NOT NULL AND status <> 'success'"
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

/// A realm the sandbox does not serve (no tokens anywhere), and one paused by hand.
const NO_TOKENS: &str = "4620816365000100";
const PAUSED: &str = "4620816365000101";

async fn three_companies(w: &World) {
    for r in [w.sandbox.realm_id(), NO_TOKENS, PAUSED] {
        w.run(&["companies", "add", "--realm-id", r])
            .await
            .assert_code(0);
    }
    w.run(&["companies", "pause", "--realm-id", PAUSED])
        .await
        .assert_code(0);
}

async fn status_of(pool: &sqlx::PgPool, realm: &str) -> String {
    sqlx::query_scalar("SELECT status::text FROM ops.companies WHERE realm_id = $1")
        .bind(realm)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_companies_enqueued_the_worker_loads_the_healthy_one_and_marks_the_other() {
    let w = World::new(small_company()).await;
    three_companies(&w).await;
    let r = w
        .run(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--all-companies",
            "--enqueue",
        ])
        .await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("enqueued 2 runs of 2 companies"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains(&format!("skipped company {PAUSED}: paused")),
        "{}",
        r.stderr
    );
    // The company without tokens keeps windows queued: the queue is not empty, a human must
    // act (3), and the worker names the company.
    let out = finished(worker(&w, &["--idle-exit"])).await;
    out.assert_code(3);
    assert!(!out.stdout.contains("the queue is empty"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("left: realm {NO_TOKENS}: 1 windows")),
        "{}",
        out.stdout
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let pool = w.db.pool().await;
    assert_eq!(status_of(&pool, NO_TOKENS).await, "needs_reauth");
    assert_eq!(status_of(&pool, w.sandbox.realm_id()).await, "active");
    // The company without tokens keeps its window queued, untouched, for after `auth import`.
    let theirs: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM ops.backfill_report WHERE realm_id = $1")
            .bind(NO_TOKENS)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(theirs, vec![("pending".to_string(), 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_companies_in_process_loads_each_active_company_in_turn() {
    let w = World::new(small_company()).await;
    three_companies(&w).await;
    // QBO_REFRESH_TOKEN seeds no company of a fleet: the token is imported.
    crate::companies::import(&w, w.sandbox.realm_id(), &w.initial_refresh_token, &[])
        .await
        .assert_code(0);
    let r = w
        .backfill("invoices", "2024-01-01", "2024-03-31", &["--all-companies"])
        .await;
    // The company without tokens needs a human (3); the healthy one is loaded regardless.
    r.assert_code(3);
    let realm = w.sandbox.realm_id();
    assert!(
        r.stdout.contains(&format!("company {realm}:")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("invoices: run "), "{}", r.stdout);
    assert!(r.stdout.contains("2 companies: "), "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("company {NO_TOKENS} is now needs_reauth")),
        "{}",
        r.stderr
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let pool = w.db.pool().await;
    assert_eq!(status_of(&pool, NO_TOKENS).await, "needs_reauth");
    assert_eq!(
        count(
            &pool,
            &format!("SELECT count(*) FROM ops.backfill_runs WHERE realm_id = '{PAUSED}'")
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_companies_shows_each_companys_windows_by_state() {
    let w = World::new(small_company()).await;
    enqueue_invoices(&w).await;
    let realm = w.sandbox.realm_id();
    let before = w.run(&["report", "--companies", "--format", "json"]).await;
    before.assert_code(0);
    let lines: Vec<serde_json::Value> = serde_json::from_str(&before.stdout).unwrap();
    assert_eq!(lines.len(), 1, "{}", before.stdout);
    assert_eq!(lines[0]["realm_id"], realm);
    assert_eq!(lines[0]["runs"], 1);
    let queued = lines[0]["queued"].as_i64().unwrap();
    assert!(queued > 1, "{}", before.stdout);
    assert_eq!(lines[0]["succeeded"], 0);

    finished(worker(&w, &["--idle-exit"])).await.assert_code(0);
    let after = w.run(&["report", "--companies"]).await;
    after.assert_code(0);
    let mut rows = after.stdout.lines();
    assert!(
        rows.next().unwrap().starts_with("REALM"),
        "{}",
        after.stdout
    );
    let cells: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(
        cells[..6],
        [realm, "1", "0", "0", &queued.to_string(), "0"],
        "{}",
        after.stdout
    );
}

/// Two engines of one process (two slots of one `qbo worker`) on one run: once the first's
/// lease on a window ran out and the second re-claimed it, the first's hand-back must be
/// refused, or it would set `pending` a window the second loads. Every write is fenced on
/// (lease owner, attempt), and the owners of two engines differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_of_one_process_never_share_a_lease_owner() {
    use qbo::queue::{ClaimMode, Claimer, Queue};
    use tokio_util::sync::CancellationToken;
    const LEASE: Duration = Duration::from_secs(600);
    let w = World::new(small_company()).await;
    enqueue_invoices(&w).await;
    let store = qbo::store::PgStore::connect_and_migrate(&w.db.url.clone().into())
        .await
        .unwrap();
    let run_id: uuid::Uuid = sqlx::query_scalar("SELECT run_id FROM ops.backfill_runs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let queue = Queue::new(store.clone());
    // Both engines' first worker: index 0 in each.
    let claimer = |invocation: uuid::Uuid| Claimer {
        owner: qbo::backfill::lease_owner(invocation, 0),
        invocation,
        lease: LEASE,
        cancel: CancellationToken::new(),
    };
    let (a_claimer, b_claimer) = (claimer(uuid::Uuid::new_v4()), claimer(uuid::Uuid::new_v4()));
    assert_ne!(a_claimer.owner, b_claimer.owner);
    let a = queue
        .claim(run_id, ClaimMode::Unfinished, &a_claimer)
        .await
        .unwrap()
        .expect("a window to claim");
    // A's lease runs out (its slot stalled, or Postgres was unreachable for a while).
    sqlx::query(
        "UPDATE ops.backfill_report SET lease_expires_at = now() - interval '1 minute'
         WHERE run_id = $1 AND chunk_index = $2",
    )
    .bind(run_id)
    .bind(a.index())
    .execute(store.pool())
    .await
    .unwrap();
    let b = queue
        .claim(run_id, ClaimMode::Unfinished, &b_claimer)
        .await
        .unwrap()
        .expect("the expired window to claim");
    assert_eq!(a.index(), b.index(), "B re-claims A's expired window");
    let index = a.index();
    let refused = a.hand_back().await.expect_err("A's hand-back was accepted");
    assert!(refused.is_lease_lost(), "{refused}");
    let (status, owner): (String, String) = sqlx::query_as(
        "SELECT status::text, lease_owner FROM ops.backfill_report
         WHERE run_id = $1 AND chunk_index = $2",
    )
    .bind(run_id)
    .bind(index)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        status, "running",
        "A's hand-back released the window B loads"
    );
    assert_eq!(owner, b_claimer.owner);
    b.hand_back().await.unwrap();
}

/// A company removed from `qbo companies` is never worked: its queued window stays pending,
/// untouched, and the worker finds the queue empty (exit 0) rather than trying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_companys_queued_windows_are_left_alone() {
    let w = World::new(small_company()).await;
    three_companies(&w).await;
    w.run(&[
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--all-companies",
        "--enqueue",
    ])
    .await
    .assert_code(0);
    w.run(&["companies", "remove", "--realm-id", NO_TOKENS])
        .await
        .assert_code(0);
    let out = finished(worker(&w, &["--idle-exit"])).await;
    out.assert_code(0);
    assert!(out.stdout.contains("the queue is empty"), "{}", out.stdout);
    assert!(!out.stdout.contains(NO_TOKENS), "{}", out.stdout);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let theirs: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM ops.backfill_report WHERE realm_id = $1")
            .bind(NO_TOKENS)
            .fetch_all(&w.db.pool().await)
            .await
            .unwrap();
    assert_eq!(theirs, vec![("pending".to_string(), 0)]);
}
