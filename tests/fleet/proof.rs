//! The fleet proof: N companies enqueued with `backfill all --all-companies --enqueue`, three
//! `qbo worker` processes, one of them SIGKILLed and Postgres made unreachable midway (a
//! proxy plays the outage; the shared server is never touched). At the end every company's
//! raw zone equals its sandbox data exactly, and the sandbox's per-realm counters show QBO's
//! limits were kept and no refresh token was ever lost. Tokens are in Postgres
//! (`QBO_TOKEN_STORE=postgres`), as a fleet keeps them.

use std::time::Duration;

use qbo::sandbox::SandboxConfig;
use tokio::process::Child;
use tokio::time::Instant;

use crate::common::pg_proxy::PgProxy;
use crate::common::*;

/// Companies in the fleet. Twenty is the figure; each is small (a few hundred
/// records over 36 entities) so that the whole test stays a couple of minutes on a shared
/// two-core machine.
const COMPANIES: usize = 20;

/// The fleet's token key (32 bytes, base64): tokens live in Postgres, as in production.
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const TOKENS_IN_POSTGRES: [(&str, &str); 2] =
    [("QBO_TOKEN_STORE", "postgres"), ("QBO_TOKEN_KEY", KEY)];

fn companies() -> SandboxConfig {
    SandboxConfig {
        companies: COMPANIES,
        invoices: 60,
        customers: 20,
        items: 10,
        ..small_company()
    }
}

async fn windows(pool: &sqlx::PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn wait_for_successes(pool: &sqlx::PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while windows(pool, "success").await < n {
        assert!(Instant::now() < deadline, "the workers made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A worker through the proxy. Its log goes to a file (a pipe nobody reads while it runs
/// would fill and block it).
fn worker(w: &World, proxy: &PgProxy, n: usize) -> Child {
    let log = std::fs::File::create(w.dir.path().join(format!("worker-{n}.log"))).unwrap();
    w.qbo(&[
        "worker",
        "--idle-exit",
        "--poll-ms",
        "100",
        "--companies-at-once",
        "4",
        "--concurrency",
        "2",
    ])
    .env("DATABASE_URL", proxy.url(&w.db.url))
    // A fleet's tokens are all in the store; no company is seeded from the environment.
    .env_remove("QBO_REALM_ID")
    .env_remove("QBO_REFRESH_TOKEN")
    .envs(TOKENS_IN_POSTGRES)
    .stderr(log)
    .spawn()
    .expect("start qbo worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_load_every_company_through_a_kill_and_an_outage() {
    let w = World::new(companies()).await;
    let realms = w.realm_ids();
    assert_eq!(realms.len(), COMPANIES);
    for realm in &realms {
        let token = &w.initial_refresh_tokens[realm];
        crate::companies::import(&w, realm, token, &TOKENS_IN_POSTGRES)
            .await
            .assert_code(0);
    }
    let planned = w
        .run(&[
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--all-companies",
            "--enqueue",
        ])
        .await;
    planned.assert_code(0);
    let runs = COMPANIES * qbo::entities::ENTITIES.len();
    assert!(
        planned
            .stdout
            .contains(&format!("enqueued {runs} runs of {COMPANIES} companies")),
        "{}",
        planned.stdout
    );

    let pool = w.db.pool().await;
    let total = windows(&pool, "pending").await;
    let proxy = PgProxy::start(&w.db.url).await;
    let mut doomed = worker(&w, &proxy, 0);
    let (b, c) = (worker(&w, &proxy, 1), worker(&w, &proxy, 2));

    wait_for_successes(&pool, total / 4).await;
    doomed.start_kill().unwrap(); // SIGKILL: its windows stay leased until the lease runs out
    doomed.wait().await.unwrap();

    wait_for_successes(&pool, total / 2).await;
    proxy.cut();
    // The outage lasts until a worker has tried to reconnect through it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.refused() == 0 {
        assert!(Instant::now() < deadline, "no worker noticed the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();

    for (n, out) in [(1, b), (2, c)] {
        let out = Run::from(out.wait_with_output().await.unwrap());
        let log = std::fs::read_to_string(w.dir.path().join(format!("worker-{n}.log"))).unwrap();
        let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
        assert!(
            out.code == Some(0) && out.stdout.contains("worker stopped (the queue is empty)"),
            "worker {n}: exit {:?}\n{}\n--- its last log lines, newest first\n{tail}",
            out.code,
            out.stdout
        );
    }

    let left: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT realm_id, status, count(*) FROM ops.backfill_report WHERE status <> 'success'
         GROUP BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(left.is_empty(), "windows not loaded: {left:?}");
    for realm in &realms {
        w.assert_realm_raw_matches_sandbox(realm).await;
        let s = w.realm_stats(realm);
        assert!(s.requests > 0, "{realm}: {s:?}");
        assert!(s.peak_requests_per_minute <= 500, "{realm}: {s:?}");
        assert!(s.peak_in_flight <= 10, "{realm}: {s:?}");
        assert_eq!(s.invalid_grants, 0, "{realm}: {s:?}");
        assert_eq!(s.retired_token_uses, 0, "{realm}: {s:?}");
    }
}
