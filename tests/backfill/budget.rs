//! One strict budget per company across qbo processes, leased from Postgres: processes
//! backfilling the same company at once never pass its requests per minute nor its seats in
//! flight (the sandbox, scaled down, answers no 429 and sees no more in flight than the
//! limit), a SIGKILLed process's seats free themselves after their lease, and the app's
//! monthly read cap stops a run with its error, exit code 1 and nothing lost.

use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::time::Instant;

use crate::common::*;

/// Generous: only a process that hangs runs into it.
const BOUND: Duration = Duration::from_secs(240);

/// The company's limits, scaled down, on both sides.
const PER_MINUTE: &str = "12";
const IN_FLIGHT: u32 = 2;

fn budget_args<'a>(entity: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "backfill",
        entity,
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--requests-per-minute",
        PER_MINUTE,
        "--max-in-flight",
        "2",
        "--concurrency",
        "3",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_backfilling_one_company_at_once_stay_inside_its_budget_together() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        latency_ms: 30,
        max_requests_per_minute: PER_MINUTE.parse().unwrap(),
        max_concurrent: IN_FLIGHT,
        ..Faults::default()
    });
    // One process first, so the others find a fresh access token in the store instead of
    // all refreshing the same refresh token.
    w.run(&budget_args("company_info", &[]))
        .await
        .assert_code(0);
    let entities = ["invoices", "customers", "items"];
    let children: Vec<_> = entities
        .iter()
        .map(|e| {
            w.qbo(&budget_args(e, &["--chunk-days", "31"]))
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, entity) in children.into_iter().zip(entities) {
        let out = tokio::time::timeout(BOUND, child.wait_with_output())
            .await
            .expect("a process hung")
            .unwrap();
        Run::from(out).assert_code(0);
        let e = qbo::entities::find(entity).unwrap();
        w.assert_raw_matches_sandbox_entity(e.qbo_name, e.table)
            .await;
    }
    let stats = w.sandbox.stats();
    let requests = stats.query_requests + stats.read_requests + stats.batch_requests;
    // For the record: more than one minute's worth, so the window really was shared.
    eprintln!(
        "{requests} requests, peak in flight {}",
        stats.max_in_flight
    );
    assert!(
        requests > PER_MINUTE.parse::<u64>().unwrap(),
        "the processes needed more than one minute's budget ({requests} requests)"
    );
    assert_eq!(
        stats.throttled, 0,
        "the sandbox refused requests: {stats:?}"
    );
    assert!(
        (1..=u64::from(IN_FLIGHT)).contains(&stats.max_in_flight),
        "peak in flight {}",
        stats.max_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_processs_seats_free_themselves_after_their_lease() {
    let w = World::new(small_company()).await;
    // Slow answers, so the first process holds its seat when it is killed.
    w.faults(Faults {
        latency_ms: 400,
        max_concurrent: 1,
        ..Faults::default()
    });
    let one_seat = |entity: &'static str| {
        vec![
            "backfill",
            entity,
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "7",
            "--max-in-flight",
            "1",
        ]
    };
    let mut first = w.qbo(&one_seat("invoices")).spawn().unwrap();
    let pool = loop {
        if let Ok(pool) = sqlx::PgPool::connect(&w.db.url).await {
            break pool;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let deadline = Instant::now() + BOUND;
    loop {
        let held: Option<i64> =
            sqlx::query_scalar("SELECT sum(seats) FROM ops.company_seats WHERE expires_at > now()")
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
        if held.unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first process never held a seat"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let killed_holder: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT holder FROM ops.company_seats WHERE seats > 0")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        killed_holder.len(),
        1,
        "the dead process still holds its seat"
    );

    // The company's only seat is the dead process's until its lease ends; then it is free.
    let second = w.qbo(&one_seat("customers")).spawn().unwrap();
    let out = tokio::time::timeout(BOUND, second.wait_with_output())
        .await
        .expect("the second process never got the dead process's seat")
        .unwrap();
    Run::from(out).assert_code(0);
    w.assert_raw_matches_sandbox_entity("Customer", "raw.qb_customers")
        .await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.company_seats")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "the dead process's row expired, the live one gave its seat back"
    );
    let stats = w.sandbox.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.max_in_flight, 1);
}

/// The backfill the read-cap tests run: weekly windows one at a time, so the cap stops it
/// between requests of a run far from done.
const CAPPED_BACKFILL: [&str; 10] = [
    "backfill",
    "invoices",
    "--start",
    "2024-01-01",
    "--end",
    "2024-03-31",
    "--chunk-days",
    "7",
    "--concurrency",
    "1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_read_cap_stops_a_run_with_its_error_and_loses_nothing() {
    let w = World::new(small_company()).await;
    let args = CAPPED_BACKFILL;
    let capped = w
        .run_with(&args, &[("QBO_MONTHLY_READ_CAP", Some("5"))])
        .await;
    capped.assert_code(1);
    let said = format!("{}{}", capped.stdout, capped.stderr);
    assert!(said.contains("reached QBO_MONTHLY_READ_CAP (5)"), "{said}");
    let stats = w.sandbox.stats();
    let sent = stats.query_requests + stats.read_requests + stats.batch_items;
    assert!(
        (5..=6).contains(&sent),
        "the cap stopped new requests: {sent} sent"
    );
    let states = w.chunk_states("invoices").await;
    assert!(
        states.iter().any(|(s, _)| s != "success"),
        "windows stay to do: {states:?}"
    );
    let pool = w.db.pool().await;
    let reads: i64 = sqlx::query_scalar("SELECT sum(reads)::int8 FROM ops.app_reads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(reads as u64, sent, "every request sent was counted");

    let report = w
        .run_with(&["report"], &[("QBO_MONTHLY_READ_CAP", Some("5"))])
        .await;
    report.assert_code(0);
    assert!(
        report
            .stdout
            .contains(&format!("QBO reads this month (UTC): {sent} of cap 5")),
        "{}",
        report.stdout
    );

    // Without the cap, --resume loads what the capped run left.
    w.run(&["backfill", "invoices", "--resume"])
        .await
        .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

/// The monthly read cap is the app's: the reads one company spent count against a load of
/// another. The counter keeps one row per company (so companies never queue on one row), and
/// `qbo report` shows their sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_read_cap_counts_every_companys_reads() {
    let w = World::new(small_companies(2)).await;
    let realms = w.realm_ids();
    let args = CAPPED_BACKFILL;
    w.run_for(&realms[0], &args).await.assert_code(0);
    let pool = w.db.pool().await;
    let reads_of = |realm: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT coalesce(sum(reads), 0)::int8 FROM ops.app_reads WHERE realm_id = $1",
            )
            .bind(realm)
            .fetch_one(&pool)
            .await
            .unwrap() as u64
        }
    };
    let first = reads_of(realms[0].clone()).await;
    assert!(
        first >= w.realm_stats(&realms[0]).requests && first > 5,
        "the first company's load counted {first} reads"
    );

    // Three reads left under the cap for the app: the second company stops there.
    let cap = (first + 3).to_string();
    let mut capped = w.qbo_for(&realms[1], &args);
    capped.env("QBO_MONTHLY_READ_CAP", &cap);
    let capped = Run::from(capped.output().await.unwrap());
    capped.assert_code(1);
    let said = format!("{}{}", capped.stdout, capped.stderr);
    assert!(
        said.contains(&format!("reached QBO_MONTHLY_READ_CAP ({cap})")),
        "{said}"
    );
    let second = reads_of(realms[1].clone()).await;
    assert!(
        (3..=4).contains(&second) && w.realm_stats(&realms[1]).requests <= second,
        "the second company read {second} times under a cap the first had nearly spent"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.app_reads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2, "one row per company and month");

    let report = w.run(&["report"]).await;
    report.assert_code(0);
    assert!(
        report
            .stdout
            .contains(&format!("QBO reads this month (UTC): {}", first + second)),
        "{}",
        report.stdout
    );
}

/// Issue 10's "Ctrl-C a backfill and `--resume` at once under the real 500/min limit":
/// QBO's own limit, unscaled (the sandbox's 500 requests a minute per realm, qbo's default
/// budget), and no other process. The first process spends most of a minute's 500 requests
/// (pages of one record make a backfill of well over 500 requests), is interrupted with
/// SIGINT as a Ctrl-C would, and `--resume` starts at once: it counts the requests the first
/// one made in the last minute (they are leased in `ops.company_budget`), waits for them to
/// age out instead of meeting 429s, and the run ends `success`. It takes about two minutes
/// (the backfill needs over 1,100 requests, so the resume waits twice): the real limit's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_and_resume_at_once_under_the_real_500_a_minute_ends_success() {
    let w = World::new(qbo::sandbox::SandboxConfig {
        invoices: 700,
        ..small_company()
    })
    .await;
    let args = [
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "7",
        "--page-size",
        "1",
        "--concurrency",
        "8",
    ];
    let mut first = w
        .qbo(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the first backfill");
    let deadline = Instant::now() + BOUND;
    while w.sandbox.realm_stats().requests < 450 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first backfill ended before spending 450 requests"
        );
        assert!(
            Instant::now() < deadline,
            "the first backfill made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = first.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(BOUND, first.wait())
        .await
        .expect("the interrupted backfill exits")
        .unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C exits 130");
    let spent = w.sandbox.realm_stats().requests;

    // At once, as a user would.
    let resumed = w
        .run(&[
            "backfill",
            "invoices",
            "--resume",
            "--page-size",
            "1",
            "--concurrency",
            "8",
        ])
        .await;
    resumed.assert_code(0);
    let s = w.sandbox.realm_stats();
    eprintln!(
        "first process: {spent} requests; both: {} requests, peak {} a minute, {} throttled; the resume waited for the budget: {}",
        s.requests,
        s.peak_requests_per_minute,
        s.throttled,
        resumed.stderr.contains("waiting for the company's request budget")
    );
    assert!(
        s.requests > 500,
        "the backfill needs more than a minute's 500: {s:?}"
    );
    assert!(s.peak_requests_per_minute <= 500, "{s:?}");
    assert_eq!(s.throttled, 0, "the resumed process met 429s: {s:?}");
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, status FROM ops.backfill_runs WHERE entity = 'invoices'")
            .fetch_all(&w.db.pool().await)
            .await
            .unwrap();
    assert_eq!(runs, [("backfill".to_string(), "success".to_string())]);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}
