//! One worker slot, two companies: one with a big run, one with a small one. The worker
//! claims windows, not runs, the least recently served company first, so the small
//! company's windows are claimed in turn with the big one's rather than after all of them.
//! The claim order is read from the queue (`ops.backfill_report.started_at`, stamped by
//! each claim), never from timing.

use qbo::sandbox::SandboxConfig;

use crate::common::*;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const TOKENS_IN_POSTGRES: [(&str, &str); 2] =
    [("QBO_TOKEN_STORE", "postgres"), ("QBO_TOKEN_KEY", KEY)];

async fn enqueue(w: &World, realm: &str, chunk_days: &str) {
    w.run(&[
        "backfill",
        "invoices",
        "--realm-id",
        realm,
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        chunk_days,
        "--enqueue",
    ])
    .await
    .assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_serves_a_small_company_between_the_windows_of_a_big_run() {
    let w = World::new(SandboxConfig {
        companies: 2,
        ..small_company()
    })
    .await;
    let realms = w.realm_ids();
    let (big, small) = (&realms[0], &realms[1]);
    for realm in &realms {
        crate::companies::import(
            &w,
            realm,
            &w.initial_refresh_tokens[realm],
            &TOKENS_IN_POSTGRES,
        )
        .await
        .assert_code(0);
    }
    // The big run first, so that a worker serving whole runs would load all of it first.
    enqueue(&w, big, "3").await;
    enqueue(&w, small, "31").await;
    let pool = w.db.pool().await;
    let windows = |realm: &str| {
        let (pool, realm) = (pool.clone(), realm.to_string());
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM ops.backfill_report WHERE realm_id = $1",
            )
            .bind(realm)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (n_big, n_small) = (windows(big).await, windows(small).await);
    assert!(n_big >= 10 && n_small <= 3, "{n_big} {n_small}");

    let out = w
        .qbo(&[
            "worker",
            "--idle-exit",
            "--poll-ms",
            "50",
            "--companies-at-once",
            "1",
            "--concurrency",
            "1",
        ])
        .env_remove("QBO_REALM_ID")
        .env_remove("QBO_REFRESH_TOKEN")
        .envs(TOKENS_IN_POSTGRES)
        .output()
        .await
        .expect("run qbo worker");
    let out = Run::from(out);
    out.assert_code(0);
    assert!(
        out.stdout.contains("worker stopped (the queue is empty)"),
        "{}",
        out.stdout
    );

    // Every window of both runs loaded once, in claim order.
    let order: Vec<(String, String)> = sqlx::query_as(
        "SELECT realm_id, status FROM ops.backfill_report ORDER BY started_at, realm_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(order.iter().all(|(_, s)| s == "success"), "{order:?}");
    let positions: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, (r, _))| r == small)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len() as i64, n_small);
    // Served in turn: the small company's k-th window is among the first 2k claims.
    for (k, at) in positions.iter().enumerate() {
        assert!(
            *at < 2 * (k + 1),
            "the small company's window {k} was claimed {at}th: {order:?}"
        );
    }
    let runs: Vec<String> =
        sqlx::query_scalar("SELECT status FROM ops.backfill_runs ORDER BY started_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs, ["success", "success"]);
    for realm in &realms {
        let expected = w.sandbox_versions_of(realm, "Invoice");
        assert!(!expected.is_empty());
        assert_eq!(w.raw_versions_of(realm, "raw.qb_invoices").await, expected);
    }
}
