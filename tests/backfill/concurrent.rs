//! `qbo backfill all` loads several entities at once under the company's one budget: every
//! entity still lands exactly, Ctrl-C stops them all (each hands its windows back) and
//! `all --resume` finishes them, and the summary and `qbo report` show the requests used
//! beside the minimum for the data.

use std::time::Duration;

use qbo::entities::ENTITIES;
use qbo::sandbox::Faults;

use crate::common::*;

/// Requests the sandbox answered for the API (tokens aside): what QBO would have counted.
fn api_requests(w: &World) -> u64 {
    let s = w.sandbox.stats();
    s.query_requests + s.cdc_requests + s.read_requests + s.batch_requests
}

/// `max(1, ceil(records / 1000))` per entity, summed: computed here from the sandbox's
/// records, not by qbo's own function.
fn minimum_for_the_sandbox(w: &World) -> u64 {
    ENTITIES
        .iter()
        .map(|e| {
            let n = w.sandbox.records(e.qbo_name).len() as u64;
            n.div_ceil(1000).max(1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_all_loads_entities_at_once_and_shows_what_it_cost() {
    // 1,500 invoices: two requests at least for them, one for every other entity.
    let w = World::new(qbo::sandbox::SandboxConfig {
        invoices: 1500,
        ..small_company()
    })
    .await;
    // Every request is slow, so each entity's run lasts a while whatever the machine.
    w.faults(Faults {
        latency_ms: 30,
        ..Default::default()
    });
    let run = w
        .backfill("all", "2024-01-01", "2024-03-31", &["--chunk-days", "31"])
        .await;
    run.assert_code(0);
    w.assert_raw_matches_sandbox().await;

    // Runs of different entities were under way at the same time: one was created before
    // another had finished, and the other way round. One after another, none overlap.
    let pool = w.db.pool().await;
    let overlapping: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_runs a JOIN ops.backfill_runs b
           ON a.entity < b.entity
          AND a.started_at < b.finished_at AND b.started_at < a.finished_at",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(overlapping > 0, "no two entity runs overlapped");

    // One summary line per entity, in the order `qbo entities` lists them, then the total.
    let lines: Vec<&str> = run.stdout.lines().collect();
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(": run ").map(|(e, _)| e))
        .collect();
    let registry: Vec<&str> = ENTITIES.iter().map(|e| e.cli_name).collect();
    assert_eq!(order, registry, "{}", run.stdout);

    let requests = api_requests(&w);
    let minimum = minimum_for_the_sandbox(&w);
    assert_eq!(minimum, 37, "1,500 invoices and 35 small entities");
    let cost = format!(
        "requests {requests} (minimum {minimum}, {:.1}x)",
        requests as f64 / minimum as f64
    );
    let total = lines.last().copied().unwrap_or_default();
    assert!(
        total.starts_with(&format!("total: {} entities, ", ENTITIES.len()))
            && total.contains(&cost),
        "the total should say {cost}:\n{}",
        run.stdout
    );
    let invoices = lines
        .iter()
        .find(|l| l.starts_with("invoices: run "))
        .unwrap();
    assert!(invoices.contains("(minimum 2, "), "{invoices}");

    // `qbo report` shows the same: each run's cost, and that of the 36 together.
    let report = w.run(&["report"]).await;
    report.assert_code(0);
    assert!(
        report
            .stdout
            .contains(&format!("{} backfill runs: {cost}", ENTITIES.len())),
        "the report should say {cost}:\n{}",
        report.stdout
    );
    let invoice_cost = report
        .stdout
        .lines()
        .find(|l| l.starts_with("run ") && l.contains(" invoices: requests "))
        .unwrap_or_else(|| panic!("no cost of the invoices run:\n{}", report.stdout));
    assert!(invoice_cost.contains("(minimum 2, "), "{invoice_cost}");
}

/// Ctrl-C while several entities are loading: every one of them hands its windows back and
/// the command exits 130; `all --resume` then finishes every entity, at once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_every_entity_of_a_concurrent_all_and_resume_finishes_them() {
    let w = World::new(small_company()).await;
    // The sandbox holds the 3rd query and every later one, so entities stay mid-request.
    w.faults(Faults {
        hang_from_request: 3,
        ..Default::default()
    });
    let child = w
        .qbo(&[
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "31",
        ])
        .env("QBO_LEASE_SECS", "600")
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // qbo creates the database: wait for it before connecting.
    while !w.db.exists().await {
        assert!(tokio::time::Instant::now() < deadline, "no database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pool = w.db.pool().await;
    let running = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(DISTINCT r.entity) FROM ops.backfill_runs r
             JOIN ops.backfill_report c USING (run_id) WHERE c.status = 'running'",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0)
    };
    // Wait until windows of at least two entities are loading at the same time (one entity
    // at a time never gets there).
    while running().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never two entities loading at once"
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
    let left_running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE status = 'running'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left_running, 0, "every entity handed its windows back");

    // With a 600 s lease, a window left `running` would make --resume wait that long.
    w.faults(Faults::default());
    let resumed = tokio::time::timeout(
        Duration::from_secs(300),
        w.run(&["backfill", "all", "--resume"]),
    )
    .await
    .expect("--resume waited on a lease: a window was not handed back");
    resumed.assert_code(0);
    w.assert_raw_matches_sandbox().await;
}

/// A refresh token QBO rejects stops every entity of a concurrent `all`, not only the one
/// that met it: exit 3, one window carries the error, every other window waits, pending, for
/// the `all --resume` that follows `qbo auth login`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_refresh_token_stops_every_entity_of_a_concurrent_all() {
    let w = World::new(small_company()).await;
    let run = w
        .run_with(
            &[
                "backfill",
                "all",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
                "--chunk-days",
                "31",
            ],
            &[("QBO_REFRESH_TOKEN", Some("not-a-token-qbo-ever-issued"))],
        )
        .await;
    run.assert_code(3);
    assert!(run.stderr.contains("qbo auth login"), "{}", run.stderr);
    let pool = w.db.pool().await;
    let (runs, errors, not_pending): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM ops.backfill_runs),
                count(*) FILTER (WHERE status = 'error'),
                count(*) FILTER (WHERE status NOT IN ('pending', 'error'))
         FROM ops.backfill_report",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(runs > 1, "several entities had begun ({runs} runs)");
    assert!(
        runs < ENTITIES.len() as i64,
        "no entity begins after the stop"
    );
    assert_eq!(
        (errors, not_pending),
        (1, 0),
        "one window carries the error"
    );

    // With the token back, `all --resume` loads everything.
    let resumed = w.run(&["backfill", "all", "--resume"]).await;
    resumed.assert_code(0);
    w.assert_raw_matches_sandbox().await;
}
