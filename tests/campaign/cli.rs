//! Every invalid flag combination of `qbo backfill` and `qbo report` exits 2 with a message
//! that names what to fix, before anything is written. (tests/backfill/bad_input.rs covers
//! dates, the entity, --page-size, --chunk-days 0 and missing configuration.)

use crate::common::*;

const RANGE: &[&str] = &["--start", "2024-01-01", "--end", "2024-01-02"];
const RUN_ID: &str = "6f1c0000-0000-0000-0000-000000000000";

fn backfill(extra: &[&'static str]) -> Vec<&'static str> {
    [&["backfill", "invoices"], RANGE, extra].concat()
}

/// Arguments, variables to set, and what the message must say.
type Case = (
    Vec<&'static str>,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

fn cases() -> Vec<Case> {
    let none = Vec::new;
    vec![
        // sync, verify and entities validate like backfill.
        (
            vec!["verify", "invoices", "--start", "2024-01-01"],
            none(),
            "--end <END>",
        ),
        (
            vec!["verify", "nope"],
            none(),
            "run `qbo entities` for the list",
        ),
        (
            vec!["verify", "invoices", "--chunk-days", "0"],
            none(),
            "0 is not in 1..=3660",
        ),
        (
            vec!["sync", "invoices", "--lookback", "5x"],
            none(),
            "use s, m, h or d",
        ),
        (
            vec!["sync", "invoices", "--lookback", "10"],
            none(),
            "has no unit; use s, m, h or d",
        ),
        (
            vec!["sync", "invoices", "--since", "2999-01-01"],
            none(),
            "2999-01-01 is in the future",
        ),
        (
            vec!["sync", "invoices", "--since", "2024-13-01"],
            none(),
            "use YYYY-MM-DD",
        ),
        (
            vec!["entities", "--format", "xml"],
            none(),
            "[possible values: table, json]",
        ),
        // Modes that exclude each other, and flags that need another.
        (
            vec!["backfill", "invoices", "--resume", "--retry-failed"],
            none(),
            "'--resume' cannot be used with '--retry-failed'",
        ),
        (
            backfill(&["--retry-failed"]),
            none(),
            "cannot be used with '--retry-failed'",
        ),
        (
            vec!["backfill", "invoices", "--end", "2024-01-01"],
            none(),
            "--start <START>",
        ),
        (
            vec!["backfill", "invoices", "--run", RUN_ID],
            none(),
            "--retry-failed",
        ),
        (
            vec!["backfill", "invoices", "--resume", "--run", RUN_ID],
            none(),
            "'--resume' cannot be used with '--run <RUN>'",
        ),
        (
            vec!["backfill", "invoices", "--retry-failed", "--run", "last"],
            none(),
            "invalid value 'last' for '--run <RUN>'",
        ),
        (
            vec!["backfill", "all", "--retry-failed", "--run", RUN_ID],
            none(),
            "give that entity instead of `all`",
        ),
        (vec!["backfill", "--resume"], none(), "<ENTITY>"),
        (
            backfill(&["--chunk-size", "3"]),
            none(),
            "a similar argument exists: '--chunk-days'",
        ),
        // Numbers out of range, or not numbers.
        (
            backfill(&["--chunk-days", "3661"]),
            none(),
            "3661 is not in 1..=3660",
        ),
        (
            backfill(&["--chunk-days", "week"]),
            none(),
            "invalid value 'week' for '--chunk-days",
        ),
        (
            backfill(&["--page-size", "0"]),
            none(),
            "0 is not in 1..=1000",
        ),
        (
            backfill(&["--concurrency", "0"]),
            none(),
            "0 is not in 1..=32",
        ),
        (
            backfill(&["--concurrency", "33"]),
            none(),
            "33 is not in 1..=32",
        ),
        (
            backfill(&["--max-attempts", "0"]),
            none(),
            "0 is not in 1..=20",
        ),
        (
            backfill(&["--max-attempts", "21"]),
            none(),
            "21 is not in 1..=20",
        ),
        (
            backfill(&["--retry-base-ms", "0"]),
            none(),
            "0 is not in 1..=120000",
        ),
        (
            backfill(&["--request-timeout-secs", "601"]),
            none(),
            "601 is not in 1..=600",
        ),
        (
            backfill(&["--requests-per-minute", "501"]),
            none(),
            "501 is not in 1..=500",
        ),
        (
            backfill(&["--lease-secs", "1"]),
            none(),
            "1 is not in 2..=3600",
        ),
        (
            backfill(&["--minor-version", "74"]),
            none(),
            "QBO_MINOR_VERSION must be at least 75",
        ),
        // Words that are not one of the choices.
        (
            backfill(&["--window-field", "created"]),
            none(),
            "[possible values: last-updated, txn-date]",
        ),
        (
            backfill(&["--environment", "staging"]),
            none(),
            "[possible values: production, sandbox]",
        ),
        (
            backfill(&["--log-format", "xml"]),
            none(),
            "[possible values: text, json]",
        ),
        (
            backfill(&["--log-level", "loud"]),
            none(),
            "[possible values: off, error, warn, info, debug, trace]",
        ),
        (
            vec![
                "backfill",
                "customers",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
                "--window-field",
                "txn-date",
            ],
            none(),
            "customers has no TxnDate (use last-updated)",
        ),
        (
            vec![
                "backfill",
                "all",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
                "--window-field",
                "txn-date",
            ],
            none(),
            "has no TxnDate (use last-updated)",
        ),
        (
            backfill(&["--api-base-url", "quickbooks.example"]),
            none(),
            "QBO_API_BASE_URL is not a valid URL",
        ),
        (
            backfill(&["--token-url", "/oauth2/v1/tokens"]),
            none(),
            "QBO_TOKEN_URL is not a valid URL",
        ),
        // The same through the environment.
        (
            backfill(&[]),
            vec![("QBO_MAX_ATTEMPTS", "many")],
            "invalid value 'many' for '--max-attempts",
        ),
        (
            backfill(&[]),
            vec![("QBO_LEASE_SECS", "0")],
            "0 is not in 2..=3600",
        ),
        (
            backfill(&[]),
            vec![("QBO_LOG_LEVEL", "verbose")],
            "invalid value 'verbose' for '--log-level",
        ),
        (
            backfill(&[]),
            vec![("QBO_ENVIRONMENT", "dev")],
            "invalid value 'dev' for '--environment",
        ),
        (
            backfill(&[]),
            vec![("QBO_MINOR_VERSION", "70")],
            "QBO_MINOR_VERSION must be at least 75",
        ),
        // `qbo report`.
        (
            vec!["report", "--run", RUN_ID, "--all-runs"],
            none(),
            "'--run <RUN>' cannot be used with '--all-runs'",
        ),
        (
            vec!["report", "--run", "latest"],
            none(),
            "invalid value 'latest' for '--run <RUN>'",
        ),
        (
            vec!["report", "--format", "csv"],
            none(),
            "[possible values: table, json]",
        ),
        (
            vec!["report", "widgets"],
            none(),
            "unknown entity `widgets`; expected one of: ",
        ),
        (vec!["report", "all"], none(), "(or none, for every entity)"),
        (
            vec!["report", "--realm-id", "acme"],
            none(),
            "numeric realm id",
        ),
        (
            vec!["report"],
            vec![("QBO_REALM_ID", "acme")],
            "numeric realm id",
        ),
        (
            vec!["report", "--since", "2024-01-01"],
            none(),
            "unexpected argument '--since'",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_flag_combination_exits_2_and_says_what_to_fix() {
    let w = World::new(small_company()).await;
    for (args, env, says) in cases() {
        let env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, Some(*v))).collect();
        let run = w.run_with(&args, &env).await;
        let shown = format!("`qbo {}` {env:?}", args.join(" "));
        assert_eq!(run.code, Some(2), "{shown}: exit code\n{}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "{shown} should say `{says}`:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{shown}:\n{}", run.stderr);
        assert!(
            run.stdout.is_empty(),
            "{shown} printed on stdout:\n{}",
            run.stdout
        );
    }
    assert!(
        !w.db.exists().await,
        "a rejected command created the database"
    );
    let s = w.sandbox.stats();
    assert_eq!(
        (s.query_requests, s.cdc_requests, s.token_requests),
        (0, 0, 0),
        "a rejected command called QBO (or refreshed, and so rotated, the token)"
    );
}

/// The usage line after a missing flag shows the command's own shape, not every flag the
/// environment filled in (those read as if they were required too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_line_for_a_missing_flag_lists_no_flag_set_from_the_environment() {
    let w = World::new(small_company()).await;
    let run = w
        .run(&["backfill", "invoices", "--end", "2024-01-01"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("--start <START>"), "{}", run.stderr);
    let usage = run
        .stderr
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_else(|| panic!("no usage line:\n{}", run.stderr));
    assert_eq!(usage, "Usage: qbo backfill [OPTIONS] <ENTITY>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_do_not_fit_the_command_exit_2_and_name_the_run() {
    let w = World::new(small_company()).await;
    w.backfill("items", "2024-01-01", "2024-01-31", &[])
        .await
        .assert_code(0);
    let items_run: String = {
        let pool = w.db.pool().await;
        sqlx::query_scalar("SELECT run_id::text FROM ops.backfill_runs")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["backfill", "invoices", "--retry-failed", "--run", RUN_ID],
            format!("run {RUN_ID} does not exist"),
        ),
        (
            vec![
                "backfill",
                "invoices",
                "--retry-failed",
                "--run",
                &items_run,
            ],
            format!("run {items_run} belongs to items"),
        ),
        (
            vec!["backfill", "customers", "--retry-failed"],
            "there is no backfill of customers".to_string(),
        ),
    ];
    let before = w.sandbox.stats().query_requests;
    for (args, says) in cases {
        let run = w.run(&args).await;
        run.assert_code(2);
        assert!(
            run.stderr.contains(&says),
            "`{}`:\n{}",
            args.join(" "),
            run.stderr
        );
    }
    assert_eq!(
        w.sandbox.stats().query_requests,
        before,
        "nothing was fetched"
    );
}

/// `qbo report --format json | head -1`: the reader goes away before qbo prints. Like any
/// Unix tool, qbo stops printing and ends as it would have, without a panic or a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_every_command_quietly() {
    let w = World::new(small_company()).await;
    let commands: &[&[&str]] = &[
        &[
            "backfill",
            "items",
            "--start",
            "2024-01-01",
            "--end",
            "2024-12-31",
        ],
        &["report", "--format", "json"],
        &["report"],
        &["entities"],
        &["entities", "--format", "json"],
        &["migrate"],
    ];
    for args in commands {
        // A pipe whose reading end is closed before qbo starts: its first write meets a
        // broken pipe, whatever the machine's speed.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let mut cmd = w.qbo(args);
        cmd.stdout(writer);
        let run = Run::from(cmd.output().await.expect("run qbo"));
        let shown = format!("`qbo {}`", args.join(" "));
        assert_eq!(run.code, Some(0), "{shown}:\n{}", run.stderr);
        for text in ["panicked", "Broken pipe", "stdout"] {
            assert!(
                !run.stderr.contains(text),
                "{shown} said {text}:\n{}",
                run.stderr
            );
        }
    }
    w.assert_raw_matches_sandbox_entity("Item", "raw.qb_items")
        .await;
}

/// `qbo report` prints 8 hex digits of each run id; every `--run` takes them (or any unique
/// start of an id, in any case). A start shared by several runs lists them; one that matches
/// nothing says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_named_by_any_unique_start_of_its_id() {
    let w = World::new(small_company()).await;
    for entity in ["items", "customers"] {
        w.backfill(entity, "2024-01-01", "2024-12-31", &[])
            .await
            .assert_code(0);
    }
    let pool = w.db.pool().await;
    let items_run: String =
        sqlx::query_scalar("SELECT run_id::text FROM ops.backfill_runs WHERE entity = 'items'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let short = items_run[..8].to_uppercase();

    let report = w.run(&["report", "--run", &short]).await;
    report.assert_code(0);
    assert!(report.stdout.contains(&items_run[..8]), "{}", report.stdout);
    assert!(
        report.stdout.contains("items") && !report.stdout.contains("customers"),
        "only the items run:\n{}",
        report.stdout
    );
    w.run(&[
        "backfill",
        "items",
        "--retry-failed",
        "--run",
        &items_run[..6],
    ])
    .await
    .assert_code(0);

    // Two runs whose ids share a start (copies of the items run, so their rows are real).
    for id in [
        "abcd1234-0000-4000-8000-000000000001",
        "abcd1234-0000-4000-8000-000000000002",
    ] {
        sqlx::query(
            "INSERT INTO ops.backfill_runs (run_id, realm_id, entity, range_start, range_end,
                                            window_field, options, status, kind)
             SELECT $1::uuid, realm_id, entity, range_start, range_end, window_field, options,
                    status, kind
             FROM ops.backfill_runs WHERE run_id = $2::uuid",
        )
        .bind(id)
        .bind(&items_run)
        .execute(&pool)
        .await
        .unwrap();
    }
    let ambiguous = w.run(&["report", "--run", "abcd1234"]).await;
    ambiguous.assert_code(2);
    for id in [
        "abcd1234-0000-4000-8000-000000000001",
        "abcd1234-0000-4000-8000-000000000002",
    ] {
        assert!(ambiguous.stderr.contains(id), "{}", ambiguous.stderr);
    }
    assert!(
        ambiguous.stderr.contains("more than one run") && ambiguous.stderr.contains("items"),
        "{}",
        ambiguous.stderr
    );
    let retry = w
        .run(&["backfill", "items", "--retry-failed", "--run", "abcd"])
        .await;
    retry.assert_code(2);
    assert!(
        retry.stderr.contains("more than one run"),
        "{}",
        retry.stderr
    );
    w.run(&["report", "--run", "abcd1234-0000-4000-8000-000000000002"])
        .await
        .assert_code(0);

    let unknown = w.run(&["report", "--run", "0000ffff"]).await;
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("no run id starts with 0000ffff"),
        "{}",
        unknown.stderr
    );
    let short = w.run(&["report", "--run", "abc"]).await;
    short.assert_code(2);
    assert!(short.stderr.contains("at least 4"), "{}", short.stderr);
}
