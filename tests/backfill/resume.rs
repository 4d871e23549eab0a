use std::time::Duration;

use qbo::sandbox::Faults;

use crate::common::*;

async fn successes(w: &World) -> i64 {
    let Ok(pool) = sqlx::PgPool::connect(&w.db.url).await else {
        return 0;
    };
    sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE status = 'success'")
        .fetch_one(&pool)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_its_last_successful_window_and_ends_complete() {
    let w = World::new(small_company()).await;
    // Slow enough to be caught in the middle.
    w.faults(Faults {
        latency_ms: 60,
        ..Default::default()
    });
    let mut child = w
        .qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "3",
            "--page-size",
            "20",
        ])
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while successes(&w).await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap(); // SIGKILL: no cleanup, no goodbye.
    child.wait().await.unwrap();
    let states = w.chunk_states("invoices").await;
    assert!(
        states.iter().any(|(s, _)| s != "success"),
        "killed before the end"
    );
    // Which windows had succeeded: with four workers they need not be the first ones.
    let done_before: Vec<usize> = (0..states.len())
        .filter(|i| states[*i].0 == "success")
        .collect();

    w.faults(Faults::default());
    let resumed = w.run(&["backfill", "invoices", "--resume"]).await;
    resumed.assert_code(0);
    let states = w.chunk_states("invoices").await;
    assert!(states.iter().all(|(s, _)| s == "success"), "{states:?}");
    // Windows that had succeeded were not fetched again.
    let retried_successes = done_before.iter().filter(|i| states[**i].1 > 1).count();
    assert_eq!(retried_successes, 0, "{done_before:?} {states:?}");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_reruns_only_the_failed_chunk() {
    let w = World::new(small_company()).await;
    // Any query whose window contains this instant fails with a 500, every time.
    w.faults(Faults {
        fail_window_containing: Some("2024-02-14T12:00:00Z".into()),
        ..Default::default()
    });
    let first = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &["--max-attempts", "2", "--chunk-days", "7"],
        )
        .await;
    first.assert_code(1);
    assert!(
        first.stdout.contains("--retry-failed"),
        "says how to re-run: {}",
        first.stdout
    );
    let states = w.chunk_states("invoices").await;
    let failed: Vec<usize> = states
        .iter()
        .enumerate()
        .filter(|(_, (s, _))| s == "error")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        failed,
        vec![6],
        "only the window of Feb 12-19 fails: {states:?}"
    );
    let report = w.run(&["report", "invoices"]).await;
    report.assert_code(0);
    assert!(
        report.stdout.contains("error") && report.stdout.contains("HTTP 500"),
        "{}",
        report.stdout
    );

    w.faults(Faults::default());
    let retry = w.run(&["backfill", "invoices", "--retry-failed"]).await;
    retry.assert_code(0);
    let after = w.chunk_states("invoices").await;
    for (i, ((s_before, a_before), (s_after, a_after))) in states.iter().zip(&after).enumerate() {
        assert_eq!(s_after, "success");
        if i == 6 {
            assert_eq!(*a_after, a_before + 1, "the failed chunk ran again");
        } else {
            assert_eq!(
                (s_after, a_after),
                (s_before, a_before),
                "chunk {i} was left alone"
            );
        }
    }
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let json = w.run(&["report", "invoices", "--format", "json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_nothing_to_resume_says_how_to_start() {
    let w = World::new(small_company()).await;
    let run = w.run(&["backfill", "items", "--resume"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("--start and --end"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_hands_windows_back_exits_130_and_resume_finishes_at_once() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        latency_ms: 60,
        ..Default::default()
    });
    let child = w
        .qbo(&[
            "backfill",
            "items",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "2",
            "--page-size",
            "5",
        ])
        .env("QBO_LEASE_SECS", "600")
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while successes(&w).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run made no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = Run::from(child.wait_with_output().await.unwrap());
    out.assert_code(130);
    assert!(out.stdout.contains("--resume"), "{}", out.stdout);
    let states = w.chunk_states("items").await;
    assert!(
        states.iter().all(|(s, _)| s == "success" || s == "pending"),
        "nothing left running: {states:?}"
    );

    // With a 600 s lease, a chunk left `running` would make --resume wait that long; handed
    // back, it does not. The bound is half the lease, not a guess at how fast the machine is.
    w.faults(Faults::default());
    tokio::time::timeout(
        Duration::from_secs(300),
        w.run(&["backfill", "items", "--resume"]),
    )
    .await
    .expect("--resume waited on a lease: a chunk was not handed back")
    .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Item", "raw.qb_items")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_and_is_idempotent() {
    let w = World::new(small_company()).await;
    assert!(!w.db.exists().await);
    w.run(&["migrate"]).await.assert_code(0);
    w.run(&["migrate"]).await.assert_code(0);
    let pool = w.db.pool().await;
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables
         WHERE table_schema IN ('raw', 'ops') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<String> = [
        "ops.backfill_invocations",
        "ops.backfill_report",
        "ops.backfill_runs",
        "ops.app_reads",
        "ops.companies",
        "ops.company_budget",
        "ops.company_seats",
        "ops.company_throttle",
        "ops.exchange_rate_days",
        "ops.oauth_tokens",
        "ops.paged_reads",
        "ops.realm_service",
        "ops.schedule_firings",
        "ops.schedules",
        "ops.sync_requests",
        "ops.sync_watermarks",
        "raw.qb_exchange_rates",
        "raw.qb_report_aged_payables",
        "raw.qb_report_aged_receivables",
        "raw.qb_report_balance_sheet",
        "raw.qb_report_cash_flow",
        "raw.qb_report_cells",
        "raw.qb_report_general_ledger",
        "raw.qb_report_profit_and_loss",
        "raw.qb_report_profit_and_loss_detail",
        "raw.qb_report_transaction_list",
        "raw.qb_report_trial_balance",
        "raw.qb_reports",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(qbo::entities::ENTITIES.iter().map(|e| e.table.to_string()))
    .collect();
    expected.sort();
    tables.sort();
    assert_eq!(
        tables, expected,
        "the ops tables, one raw table per entity, and one view per report"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_all_continues_what_exists_and_skips_the_rest() {
    let w = World::new(small_company()).await;
    w.backfill("customers", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    let run = w.run(&["backfill", "all", "--resume"]).await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("invoices: no earlier run to continue; skipped"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("customers: run"), "{}", run.stdout);
    let retry = w
        .run(&[
            "backfill",
            "all",
            "--retry-failed",
            "--run",
            "00000000-0000-0000-0000-000000000000",
        ])
        .await;
    retry.assert_code(2);
    assert!(
        retry.stderr.contains("instead of `all`"),
        "{}",
        retry.stderr
    );
}

/// `backfill all` killed on its first entity, then `all --resume`: the entities it never
/// reached are loaded too (fresh runs over the same range and options, each named), and every
/// table ends equal to the sandbox. `all --retry-failed` in between retries what failed and
/// says the unreached entities are still owed (exit 1). One entity at a time, so that a
/// single run exists when it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backfill_all_resumes_every_entity_including_those_never_reached() {
    let w = World::new(small_company()).await;
    // The sandbox holds the 3rd query and every later one: the process is on its first
    // entity when it is killed, whatever the machine's speed.
    w.faults(Faults {
        hang_from_request: 3,
        ..Default::default()
    });
    let mut child = w
        .qbo(&[
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "30",
            "--page-size",
            "200",
            "--entities-at-once",
            "1",
        ])
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while w.sandbox.stats().hung == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request held");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    w.faults(Faults::default());
    let pool = w.db.pool().await;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.backfill_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(runs, 1, "killed on its first entity");

    let retry = w.run(&["backfill", "all", "--retry-failed"]).await;
    retry.assert_code(1);
    assert!(
        retry
            .stdout
            .contains("invoices: not reached by the `backfill all` of 2024-01-01..2024-03-31")
            && retry.stdout.contains("qbo backfill all --resume"),
        "{}",
        retry.stdout
    );

    // A backfill of the killed entity on its own since then: `all --resume` must still
    // finish the invocation's run, not take this newer one for it.
    let (killed_entity, invocation_run): (String, uuid::Uuid) =
        sqlx::query_as("SELECT entity, run_id FROM ops.backfill_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    w.run(&[
        "backfill",
        &killed_entity,
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-02",
    ])
    .await
    .assert_code(0);

    let resumed = w.run(&["backfill", "all", "--resume"]).await;
    resumed.assert_code(0);
    let status: String =
        sqlx::query_scalar("SELECT status FROM ops.backfill_runs WHERE run_id = $1")
            .bind(invocation_run)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        status, "success",
        "all --resume finished the invocation's own {killed_entity} run"
    );
    for entity in ["invoices", "customers", "items"] {
        assert!(
            resumed.stdout.contains(&format!(
                "{entity}: not reached by the `backfill all` of 2024-01-01..2024-03-31"
            )) && resumed.stdout.contains("starting it fresh"),
            "{}",
            resumed.stdout
        );
    }
    w.assert_raw_matches_sandbox().await;
    // The fresh runs took the killed invocation's options, not the flags' defaults: 30-day
    // windows (4 over the range, not 13) of 200 records.
    let (chunks, page_size): (i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ops.backfill_report c WHERE c.run_id = r.run_id),
                r.options->>'page_size'
         FROM ops.backfill_runs r WHERE entity = 'invoices'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((chunks, page_size.as_str()), (4, "200"));

    // Everything of it is loaded: a second resume starts nothing and succeeds.
    let again = w.run(&["backfill", "all", "--resume"]).await;
    again.assert_code(0);
    assert!(
        !again.stdout.contains("starting it fresh"),
        "{}",
        again.stdout
    );
}
