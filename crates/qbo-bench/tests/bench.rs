//! `qbo-bench` runs end to end on a tiny company and prints every contender and target.
//! Only the shape of the output is checked, never a speed.

use std::process::Command;

/// The `qbo` binary the bench runs as its contender: the workspace's, built beside
/// `qbo-bench` (a `cargo test` at the workspace root builds both).
fn qbo_bin() -> String {
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_qbo-bench"));
    let qbo = bench.with_file_name(format!("qbo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        qbo.is_file(),
        "{} is missing: build it first (`cargo build --bin qbo`, or run `cargo test` at the workspace root)",
        qbo.display()
    );
    qbo.to_string_lossy().into_owned()
}

fn admin_url() -> String {
    std::env::var("QBO_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("set QBO_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres (a server where the user may CREATE DATABASE)")
}

#[test]
fn the_benchmark_runs_every_contender_and_prints_the_targets() {
    let admin = admin_url();
    let out = Command::new(env!("CARGO_BIN_EXE_qbo-bench"))
        .args([
            "--sizes",
            "300",
            "--baseline-rows",
            "300",
            "--api-records",
            "100",
            "--api-chunk-days",
            "366",
            "--api-latency-ms",
            "10",
            "--skip-api-cost",
            "--qbo",
            &qbo_bin(),
        ])
        .env("DATABASE_URL", admin)
        .output()
        .expect("run qbo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "machine: ",
        "N = 300 records",
        "(1)   qbo backfill, default options",
        "(1c)  qbo backfill --concurrency 1",
        "(2)   seed method",
        "(3)   COPY of the same payloads",
        "(3f)  fetch from the sandbox",
        "(4)   API-bound",
        "theoretical minimum",
        "Targets:",
        "(1)/(2)",
        "(1)/(3)",
        "qbo peak memory",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    // Every contender that loads everything loaded exactly the sandbox's records.
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert_eq!(stdout.matches("    300 rows in").count(), 5, "{stdout}");
}

/// The API cost section alone, quick: both companies, the four contenders each, their
/// requests against the minimum, and the targets. The ratios depend on the engine, so only
/// their presence is checked; every contender must load every record.
#[test]
fn the_api_cost_section_runs_alone_and_prints_its_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_qbo-bench"))
        .args([
            "--quick",
            "--only",
            "api-cost",
            "--api-invoices",
            "3000",
            "--qbo",
            &qbo_bin(),
        ])
        .env("DATABASE_URL", admin_url())
        .output()
        .expect("run qbo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "(5) API cost under QBO's limits",
        "time-scaled x30",
        "the ratios are scale-free",
        "(5a) small company: ",
        "minimum 38 requests",
        "(5b) 3000 invoices",
        "minimum 3 requests",
        "x min",
        "bound QBO",
        "qbo backfill all (defaults)",
        "qbo backfill invoices (defaults)",
        "same, --enqueue + 2 qbo worker",
        "(5b) qbo workers / in-process requests = ",
        "cursor loader (Singer tap)",
        "seed method",
        "Targets:",
        "(5a) qbo requests / minimum = ",
        "(5a) qbo wall in QBO time = ",
        "(5b) qbo wall / shortest schedule",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    // Neither the sizes nor the API-bound run: --only means only.
    assert!(!stdout.contains("N = "), "{stdout}");
    assert!(!stdout.contains("(4)   API-bound"), "{stdout}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert_eq!(
        stdout.matches("[MISSED] (5a) qbo loaded").count(),
        0,
        "{stdout}"
    );
}

/// The fleet section (6) alone, tiny: two companies, two `qbo worker` processes. Only the
/// shape of its output is checked (the figures, the target line, every record loaded), never
/// a rate: the full-size run is `qbo-bench --only fleet`.
#[test]
fn the_fleet_section_runs_workers_and_prints_rates_per_worker_and_the_cpu() {
    let out = Command::new(env!("CARGO_BIN_EXE_qbo-bench"))
        .args([
            "--only",
            "fleet",
            "--fleet-companies",
            "2",
            "--fleet-invoices",
            "60",
            "--fleet-workers",
            "2",
            "--fleet-latency-ms",
            "5",
            "--qbo",
            &qbo_bin(),
        ])
        .env("DATABASE_URL", admin_url())
        .output()
        .expect("run qbo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "(6) Fleet: 2 companies x 60 invoices",
        "worker 1: ",
        "worker 2: ",
        "all: ",
        "requests: ",
        "(bound 2 x 500 = 1000/min)",
        "busiest company: ",
        "Targets:",
        "(6) fleet requests/min / (0.9 x 2 x 500) = ",
        "rows/s per worker ",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    // Every invoice of both companies loaded, by the two workers together.
    assert!(stdout.contains("      120 rows in"), "{stdout}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    assert!(!stdout.contains("N = "), "{stdout}");
}

/// The staging section (7) alone on a tiny company: every materialized view is refreshed
/// twice (first fill, then concurrently) with its rows, time and size, and the ledger check
/// is clean. Only the shape is checked, never a time: the full run is `--only staging`.
#[test]
fn the_staging_section_refreshes_every_view_and_checks_the_ledger() {
    let out = Command::new(env!("CARGO_BIN_EXE_qbo-bench"))
        .args([
            "--only",
            "staging",
            "--staging-invoices",
            "200",
            "--qbo",
            &qbo_bin(),
        ])
        .env("DATABASE_URL", admin_url())
        .output()
        .expect("run qbo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(7)   staging: qbo model refresh on 200 invoices"),
        "{stdout}"
    );
    assert!(stdout.contains("first fill: ") && stdout.contains("again (concurrently): "));
    for view in [
        "staging.transactions",
        "staging.transaction_lines",
        "staging.general_ledger",
        "staging.general_ledger_cash",
    ] {
        // The name and the padding after it: staging.general_ledger is a prefix of
        // staging.general_ledger_cash.
        let line = format!("{view} ");
        assert_eq!(stdout.matches(&line).count(), 2, "{view} twice: {stdout}");
    }
    // 200 invoices of 1 to 4 item lines (by id % 4) and a sub-total line each.
    assert!(stdout.contains("  200 rows"), "{stdout}");
    assert!(stdout.contains("  700 rows"), "{stdout}");
    assert!(
        stdout.contains("ledger: 0 unbalanced transactions, 0 invoice lines missing or extra"),
        "{stdout}"
    );
    assert!(!stdout.contains("WRONG"), "{stdout}");
}
