use crate::common::*;

async fn assert_rejected(w: &World, args: &[&str], says: &str) {
    let run = w.run(args).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains(says),
        "`qbo {}` should say `{says}`:\n{}",
        args.join(" "),
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        !w.db.exists().await,
        "`qbo {}` wrote to the database",
        args.join(" ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_explained_exits_2_and_writes_nothing() {
    let w = World::new(small_company()).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-02-01",
                "--end",
                "2024-01-01",
            ],
            "before --start",
        ),
        (
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-13-01",
                "--end",
                "2024-12-31",
            ],
            "not a date; use YYYY-MM-DD",
        ),
        (
            &[
                "backfill",
                "invoices",
                "--start",
                "01/02/2024",
                "--end",
                "2024-12-31",
            ],
            "not a date",
        ),
        (
            &[
                "backfill",
                "bills",
                "--start",
                "2024-01-01",
                "--end",
                "2024-12-31",
            ],
            "unknown entity `bills`",
        ),
        (
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-01-01",
                "--end",
                "2024-12-31",
                "--page-size",
                "1001",
            ],
            "1001",
        ),
        (&["backfill", "invoices", "--start", "2024-01-01"], "--end"),
        (&["backfill", "invoices"], "--start"),
        (
            &[
                "backfill",
                "invoices",
                "--resume",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
            ],
            "cannot be used with",
        ),
        (
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-02",
                "--chunk-days",
                "0",
            ],
            "--chunk-days",
        ),
    ];
    for (args, says) in cases {
        assert_rejected(&w, args, says).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_is_named() {
    let w = World::new(small_company()).await;
    let run = Run::from(
        w.qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        ])
        .env_remove("QBO_CLIENT_SECRET")
        .output()
        .await
        .unwrap(),
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("QBO_CLIENT_SECRET is not set"),
        "{}",
        run.stderr
    );
    let run = Run::from(
        w.qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        ])
        .env("QBO_TOKEN_STORE", "vault:x")
        .output()
        .await
        .unwrap(),
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("QBO_TOKEN_STORE must be"),
        "{}",
        run.stderr
    );
    assert!(!w.db.exists().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_configuration_error() {
    let w = World::new(small_company()).await;
    let run = Run::from(
        w.qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
        ])
        .env("DATABASE_URL", "postgres://qbo:hunter2@127.0.0.1:1/qbo")
        .output()
        .await
        .unwrap(),
    );
    run.assert_code(2);
    assert!(
        run.stderr.contains("cannot reach Postgres") && run.stderr.contains("DATABASE_URL"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("hunter2"),
        "the database password leaked: {}",
        run.stderr
    );
    assert_eq!(w.sandbox.stats().query_requests, 0, "nothing was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_output_logs_or_tables_even_at_trace_level() {
    let w = World::new(small_company()).await;
    w.faults(qbo::sandbox::Faults {
        expire_access_every: 5,
        throttle_every: 9,
        ..Default::default()
    });
    let run = Run::from(
        w.qbo(&[
            "--log-level",
            "trace",
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
        ])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap(),
    );
    run.assert_code(0);
    let tokens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.token_file()).unwrap()).unwrap();
    let realm = &tokens["realms"][w.sandbox.realm_id()];
    let secrets = [
        w.sandbox.client_secret().to_string(),
        w.initial_refresh_token.clone(),
        realm["refresh_token"].as_str().unwrap().to_string(),
        realm["access_token"].as_str().unwrap().to_string(),
    ];
    let pool = w.db.pool().await;
    let tables: String = sqlx::query_scalar(
        "SELECT concat_ws(' ',
            (SELECT string_agg(r::text, ' ') FROM ops.backfill_runs r),
            (SELECT string_agg(c::text, ' ') FROM ops.backfill_report c),
            (SELECT string_agg(request_payload::text, ' ') FROM raw.qb_invoices),
            (SELECT string_agg(request_payload::text, ' ') FROM raw.qb_customers))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        run.stderr.len() > 10_000,
        "trace logging was on ({} bytes)",
        run.stderr.len()
    );
    for s in &secrets {
        assert!(!s.is_empty());
        assert!(!run.stdout.contains(s.as_str()), "a secret is in stdout");
        assert!(!run.stderr.contains(s.as_str()), "a secret is in the logs");
        assert!(!tables.contains(s.as_str()), "a secret is in the database");
    }
}
