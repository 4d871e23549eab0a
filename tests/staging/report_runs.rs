//! `qbo reports` loads are runs (issue 12): one window per (report, period piece) in
//! ops.backfill_report, each claimed under a lease and settled through the queue's handle, so
//! a killed load continues with `--resume`, failed windows are asked for again with
//! `--retry-failed`, a split is recorded as windows, and `qbo report` lists them.

use std::collections::BTreeMap;
use std::time::Duration;

use qbo::sandbox::Faults;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

const ALL: [&str; 9] = [
    "ProfitAndLoss",
    "BalanceSheet",
    "TrialBalance",
    "GeneralLedger",
    "ProfitAndLossDetail",
    "CashFlow",
    "AgedReceivables",
    "AgedPayables",
    "TransactionList",
];

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The only report run: (run id, status, entity, options).
async fn the_run(pool: &PgPool) -> (uuid::Uuid, String, String, serde_json::Value) {
    sqlx::query_as(
        "SELECT run_id, status, entity, options FROM ops.backfill_runs WHERE kind = 'report'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The run's windows: (entity, first day, last day, status, attempts), in period order.
async fn windows(pool: &PgPool, run_id: uuid::Uuid) -> Vec<(String, String, String, String, i32)> {
    sqlx::query_as(
        "SELECT entity, window_start_utc::date::text,
                (window_end_utc - interval '1 day')::date::text, status, attempts
         FROM ops.backfill_report WHERE run_id = $1 AND read_via = 'report'
         ORDER BY entity, window_start_utc",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many times the sandbox was asked for each report piece (`Name start..end`, or
/// `Name @date` for an as-of report).
fn asked(w: &World) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in w.sandbox.stats().request_log {
        if e.kind != "report" {
            continue;
        }
        let q = e.query.unwrap_or_default();
        let (path, params) = q.split_once('?').unwrap_or((&q, ""));
        let name = path.trim_start_matches("reports/");
        let get = |k: &str| {
            params
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or("")
                .to_string()
        };
        let key = match get("report_date").as_str() {
            "" => format!("{name} {}..{}", get("start_date"), get("end_date")),
            day => format!("{name} @{day}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_over_two_years_is_a_run_with_one_window_per_piece() {
    let w = World::new(small_company()).await;
    // Quarters keep the test short (72 windows); months are the other tests' period.
    let out = w
        .run(&[
            "reports",
            "all",
            "--start",
            "2023-01-01",
            "--end",
            "2024-12-31",
            "--period",
            "quarter",
        ])
        .await;
    out.assert_code(0);
    for name in ALL {
        assert!(
            out.stdout
                .contains(&format!("{name}: 8 pieces loaded (0 split as too large)")),
            "{}",
            out.stdout
        );
    }
    let pool = w.db.pool().await;
    let (run_id, status, entity, options) = the_run(&pool).await;
    assert_eq!(
        (status.as_str(), entity.as_str()),
        ("success", "report:all")
    );
    assert_eq!(options["period"], "quarter");
    assert_eq!(options["accounting_method"], "accrual");
    assert!(
        out.stdout.contains(&format!(
            "report:all: run {run_id} success (2023-01-01..2024-12-31) - 72 windows (72 success, 0 error, 0 not done)"
        )),
        "{}",
        out.stdout
    );
    let ws = windows(&pool, run_id).await;
    assert_eq!(ws.len(), 9 * 8);
    for name in ALL {
        let mine: Vec<_> = ws
            .iter()
            .filter(|x| x.0 == format!("report:{name}"))
            .collect();
        assert_eq!(mine.len(), 8, "{name}");
        assert_eq!(
            (mine[0].1.as_str(), mine[0].2.as_str()),
            ("2023-01-01", "2023-03-31")
        );
        assert_eq!(
            (mine[7].1.as_str(), mine[7].2.as_str()),
            ("2024-10-01", "2024-12-31")
        );
        assert!(
            mine.iter().all(|x| x.3 == "success" && x.4 == 1),
            "{mine:?}"
        );
    }
    // Every piece stored once, with its run, and asked for once.
    let stored = scalar(
        &pool,
        &format!("SELECT count(*) FROM raw.qb_reports WHERE run_id = '{run_id}'"),
    )
    .await;
    assert_eq!(stored, 72);
    let asked = asked(&w);
    assert_eq!(asked.len(), 72, "{asked:?}");
    assert!(asked.values().all(|n| *n == 1), "{asked:?}");
    // The per-report views issue 12 names.
    for (view, name) in [
        ("profit_and_loss", "ProfitAndLoss"),
        ("aged_receivables", "AgedReceivables"),
        ("transaction_list", "TransactionList"),
    ] {
        let n = scalar(
            &pool,
            &format!(
                "SELECT count(*) FROM raw.qb_report_{view}
                 WHERE report_name = '{name}' AND run_id = '{run_id}'"
            ),
        )
        .await;
        assert_eq!(n, 8, "raw.qb_report_{view}");
    }

    // `qbo report` lists the run's windows, by report and period.
    let short = &run_id.to_string()[..8];
    let report = w.run(&["report", "--run", short]).await;
    report.assert_code(0);
    assert!(
        report.stdout.contains("report:GeneralLedger")
            && report.stdout.contains("2024-01-01 .. 2024-03-31 (period)"),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains("72 chunks: 72 success, 0 error"),
        "{}",
        report.stdout
    );
    let one = w.run(&["report", "report:CashFlow"]).await;
    one.assert_code(0);
    assert!(one.stdout.contains("8 chunks: 8 success"), "{}", one.stdout);
    assert!(
        !one.stdout.contains("report:GeneralLedger"),
        "{}",
        one.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_month_becomes_split_windows_and_the_run_still_completes() {
    let w = World::new(small_company()).await;
    let january = ["--start", "2024-01-01", "--end", "2024-01-31"];
    let mut args = vec!["reports", "GeneralLedger"];
    args.extend(january);
    w.run(&args).await.assert_code(0);
    let pool = w.db.pool().await;
    let month_cells = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_report_cells WHERE report_name = 'GeneralLedger'",
    )
    .await as u64;
    sqlx::query("DELETE FROM ops.backfill_runs")
        .execute(&pool)
        .await
        .unwrap();
    w.faults(Faults {
        report_max_cells: month_cells * 6 / 10,
        ..Faults::default()
    });
    let out = w.run(&args).await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("GeneralLedger: 5 pieces loaded (1 split as too large)"),
        "{}",
        out.stdout
    );
    let (run_id, status, entity, _) = the_run(&pool).await;
    assert_eq!(
        (status.as_str(), entity.as_str()),
        ("success", "report:GeneralLedger")
    );
    let ws: Vec<(String, String, String)> = windows(&pool, run_id)
        .await
        .into_iter()
        .map(|(_, s, e, st, _)| (s, e, st))
        .collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string(), "success".to_string());
    assert_eq!(
        ws,
        [
            s("2024-01-01", "2024-01-07"),
            s("2024-01-08", "2024-01-14"),
            s("2024-01-15", "2024-01-21"),
            s("2024-01-22", "2024-01-28"),
            s("2024-01-29", "2024-01-31"),
        ],
        "the month's window is replaced by its weeks"
    );
    let stored: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT period_start::text, split_from_start::text || '..' || split_from_end::text,
                run_id::text
         FROM raw.qb_reports WHERE report_name = 'GeneralLedger' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 5, "{stored:?}");
    let run = run_id.to_string();
    assert!(
        stored
            .iter()
            .all(|(_, from, r)| from == "2024-01-01..2024-01-31"
                && r.as_deref() == Some(run.as_str())),
        "{stored:?}"
    );
    let report = w.run(&["report", "--run", &run]).await;
    report.assert_code(0);
    assert!(
        report.stdout.contains("5 chunks: 5 success"),
        "{}",
        report.stdout
    );
}

/// `qbo reports <args>` that hangs, holding a claimed window, once it has stored `after`
/// pieces: waits for its failpoint line on stderr, then SIGKILLs it.
async fn kill_after(w: &World, args: &[&str], after: usize) {
    let mut cmd = w.qbo(args);
    cmd.env("QBO_TEST_FAILPOINT", format!("reports-hang-after:{after}"));
    let mut child = cmd.spawn().expect("start qbo");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let waited = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains("failpoint reports-hang-after") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(waited, Ok(true), "qbo reached the failpoint");
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait for qbo");
    assert_eq!(status.code(), None, "killed by a signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_load_resumes_and_asks_for_each_period_once() {
    let w = World::new(small_company()).await;
    let load = [
        "reports",
        "ProfitAndLoss,GeneralLedger",
        "--start",
        "2024-01-01",
        "--end",
        "2024-12-31",
    ];
    kill_after(&w, &load, 10).await;
    let pool = w.db.pool().await;
    let (run_id, status, entity, _) = the_run(&pool).await;
    assert_eq!(entity, "report:ProfitAndLoss,GeneralLedger");
    assert_eq!(status, "running", "nobody settled the killed run");
    let by_status = |ws: &[(String, String, String, String, i32)], s: &str| {
        ws.iter().filter(|x| x.3 == s).count()
    };
    let ws = windows(&pool, run_id).await;
    assert_eq!(ws.len(), 24);
    assert_eq!(by_status(&ws, "success"), 10);
    assert_eq!(by_status(&ws, "running"), 1, "the window it held, leased");
    assert_eq!(by_status(&ws, "pending"), 13);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM raw.qb_reports").await,
        10,
        "a piece is stored exactly when its window succeeded"
    );
    // A run `qbo reports` made without --enqueue is its own: a worker leaves it alone.
    w.run(&["worker", "--idle-exit", "--poll-ms", "50"])
        .await
        .assert_code(0);
    let ws = windows(&pool, run_id).await;
    assert_eq!(by_status(&ws, "pending"), 13, "no worker took a window");
    assert_eq!(asked_total(&w), 10);

    // --resume continues the latest run of these reports: the dead process's window once
    // its lease runs out, the others at once; nothing stored is asked for again.
    let out = w
        .run(&["reports", "ProfitAndLoss,GeneralLedger", "--resume"])
        .await;
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!(
            "run {run_id} success (2024-01-01..2024-12-31) - 24 windows (24 success"
        )),
        "{}",
        out.stdout
    );
    let (_, status, _, _) = the_run(&pool).await;
    assert_eq!(status, "success");
    let ws = windows(&pool, run_id).await;
    assert_eq!(by_status(&ws, "success"), 24);
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT report_name || ' ' || period_start, count(*) FROM raw.qb_reports
         WHERE run_id = $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(run_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 24, "{stored:?}");
    let asked = asked(&w);
    assert_eq!(asked.len(), 24, "{asked:?}");
    assert!(
        asked.values().all(|n| *n == 1),
        "each period asked for once: {asked:?}"
    );
    // Nothing left to resume is not an error: the run is done.
    w.run(&["reports", "ProfitAndLoss,GeneralLedger", "--resume"])
        .await
        .assert_code(0);
    assert_eq!(asked_total(&w), 24, "a finished run asks for nothing");
    // Another selection has no run to continue.
    let none = w.run(&["reports", "CashFlow", "--resume"]).await;
    none.assert_code(2);
    assert!(
        none.stderr.contains("no report run of report:CashFlow"),
        "{}",
        none.stderr
    );
}

fn asked_total(w: &World) -> usize {
    asked(w).values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_window_makes_the_run_partial_and_retry_failed_completes_it() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        fail_window_containing: Some("2024-02-15T12:00:00Z".into()),
        ..Faults::default()
    });
    let out = w
        .run(&[
            "reports",
            "ProfitAndLoss",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--accounting-method",
            "cash",
            "--max-attempts",
            "1",
        ])
        .await;
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("report:ProfitAndLoss 2024-02-01..2024-02-29 failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--retry-failed --run"),
        "{}",
        out.stderr
    );
    let pool = w.db.pool().await;
    let (run_id, status, _, options) = the_run(&pool).await;
    assert_eq!(status, "partial");
    assert_eq!(options["accounting_method"], "cash");
    let ws = windows(&pool, run_id).await;
    let states: Vec<&str> = ws.iter().map(|x| x.3.as_str()).collect();
    assert_eq!(states, ["success", "error", "success"]);
    let report = w.run(&["report", "--run", &run_id.to_string()]).await;
    assert!(
        report.stdout.contains("3 chunks: 2 success, 1 error"),
        "{}",
        report.stdout
    );

    // The fault passes; --retry-failed asks only for February, with the run's own basis.
    w.faults(Faults::default());
    let out = w.run(&["reports", "ProfitAndLoss", "--retry-failed"]).await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("ProfitAndLoss: 1 pieces loaded (0 split as too large)"),
        "{}",
        out.stdout
    );
    let (_, status, _, _) = the_run(&pool).await;
    assert_eq!(status, "success");
    let ws = windows(&pool, run_id).await;
    assert_eq!(
        ws.iter().map(|x| (x.3.as_str(), x.4)).collect::<Vec<_>>(),
        [("success", 1), ("success", 2), ("success", 1)]
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM raw.qb_reports WHERE accounting_method = 'Cash'
               AND params->>'accounting_method' = 'Cash'"
        )
        .await,
        3
    );
    let asked = asked(&w);
    assert_eq!(asked["ProfitAndLoss 2024-01-01..2024-01-31"], 1);
    assert_eq!(asked["ProfitAndLoss 2024-02-01..2024-02-29"], 2);
    assert_eq!(asked["ProfitAndLoss 2024-03-01..2024-03-31"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueued_report_run_is_loaded_by_a_worker() {
    let w = World::new(small_company()).await;
    // Planning needs no QBO credentials (the workers have them) and asks QBO nothing.
    let planned = w
        .run_with(
            &[
                "reports",
                "ProfitAndLoss,AgedReceivables",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
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
    assert!(
        planned.stdout.contains("enqueued report run")
            && planned
                .stdout
                .contains("report:ProfitAndLoss,AgedReceivables (2024-01-01..2024-03-31)"),
        "{}",
        planned.stdout
    );
    assert_eq!(asked_total(&w), 0);
    let pool = w.db.pool().await;
    let (run_id, status, _, options) = the_run(&pool).await;
    assert_eq!(status, "running");
    assert_eq!(options["queued"], true);
    let ws = windows(&pool, run_id).await;
    assert_eq!(ws.len(), 6);
    assert!(ws.iter().all(|x| x.3 == "pending"), "{ws:?}");

    let worker = w.run(&["worker", "--idle-exit", "--poll-ms", "50"]).await;
    worker.assert_code(0);
    let (_, status, _, _) = the_run(&pool).await;
    assert_eq!(status, "success", "the worker settled the run");
    let ws = windows(&pool, run_id).await;
    assert!(ws.iter().all(|x| x.3 == "success"), "{ws:?}");
    assert_eq!(
        scalar(
            &pool,
            &format!("SELECT count(*) FROM raw.qb_reports WHERE run_id = '{run_id}'")
        )
        .await,
        6
    );
    let asked = asked(&w);
    assert_eq!(asked.len(), 6, "{asked:?}");
    assert!(asked.values().all(|n| *n == 1), "{asked:?}");
    assert_eq!(asked["AgedReceivables @2024-02-29"], 1);
    // `qbo report` names the run by its reports.
    let report = w
        .run(&["report", "report:ProfitAndLoss,AgedReceivables"])
        .await;
    report.assert_code(0);
    assert!(
        report.stdout.contains("6 chunks: 6 success, 0 error"),
        "{}",
        report.stdout
    );
}
