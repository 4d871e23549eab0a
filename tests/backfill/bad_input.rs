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
                "invoice_lines",
                "--start",
                "2024-01-01",
                "--end",
                "2024-12-31",
            ],
            "unknown entity `invoice_lines`",
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

const SHORT_RUN: &[&str] = &[
    "backfill",
    "invoices",
    "--start",
    "2024-01-01",
    "--end",
    "2024-01-02",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_configuration_is_named() {
    let w = World::new(small_company()).await;
    let run = w.run_with(SHORT_RUN, &[("QBO_CLIENT_SECRET", None)]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("QBO_CLIENT_SECRET is not set"),
        "{}",
        run.stderr
    );
    let run = w
        .run_with(SHORT_RUN, &[("QBO_TOKEN_STORE", Some("vault:x"))])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("QBO_TOKEN_STORE must be"),
        "{}",
        run.stderr
    );
    let run = w
        .run_with(SHORT_RUN, &[("QBO_REALM_ID", Some("acme"))])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("numeric realm id"), "{}", run.stderr);
    assert!(!w.db.exists().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_variables_count_as_unset() {
    let w = World::new(small_company()).await;
    // As a compose file or `FOO=` in a shell leaves them: set, but empty.
    let empty = [
        "QBO_ENVIRONMENT",
        "QBO_MINOR_VERSION",
        "QBO_LOG_FORMAT",
        "QBO_AUTHORIZE_URL",
        "QBO_MAX_ATTEMPTS",
    ];
    let env: Vec<(&str, Option<&str>)> = empty.iter().map(|n| (*n, Some(""))).collect();
    let run = w.run_with(SHORT_RUN, &env).await;
    run.assert_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_configuration_error() {
    let w = World::new(small_company()).await;
    let run = w
        .run_with(
            SHORT_RUN,
            &[(
                "DATABASE_URL",
                Some("postgres://qbo:hunter2@127.0.0.1:1/qbo"),
            )],
        )
        .await;
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

/// Every token the sandbox ever issued has one of its shapes: access tokens start with
/// `eyJsbx.`, refresh tokens are `AB11` and 64 hex digits.
fn find_token(text: &str) -> Option<&str> {
    if let Some(i) = text.find("eyJsbx.") {
        return Some(&text[i..(i + 20).min(text.len())]);
    }
    text.match_indices("AB11").find_map(|(i, _)| {
        let rest = &text[i + 4..];
        let hex = rest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        (hex >= 64).then(|| &text[i..i + 20])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_output_logs_or_tables_even_at_trace_level() {
    let w = World::new(small_company()).await;
    // Many access tokens (one per expiry) and refresh tokens (one per refresh) go by.
    w.faults(qbo::sandbox::Faults {
        expire_access_every: 5,
        throttle_every: 9,
        ..Default::default()
    });
    let run = w
        .run_with(
            &[
                "--log-level",
                "trace",
                "backfill",
                "all",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
                "--chunk-days",
                "31",
                // Tokens die every 5th request: one entity at a time keeps the 401s to a
                // rate a run survives (this test is about what is printed, not throughput).
                "--entities-at-once",
                "1",
            ],
            &[("RUST_LOG", Some("trace"))],
        )
        .await;
    run.assert_code(0);
    assert!(
        w.sandbox.stats().refreshes > 3,
        "tokens rotated during the run"
    );
    assert!(
        run.stderr.len() > 10_000,
        "trace logging was on ({} bytes)",
        run.stderr.len()
    );
    let pool = w.db.pool().await;
    // Every raw table's request metadata, plus both ops tables.
    let raw: Vec<String> = qbo::entities::ENTITIES
        .iter()
        .map(|e| {
            format!(
                "(SELECT string_agg(request_payload::text || coalesce(intuit_tid, ''), ' ') FROM {})",
                e.table
            )
        })
        .collect();
    let tables: String = sqlx::query_scalar(&format!(
        "SELECT concat_ws(' ',
            (SELECT string_agg(r::text, ' ') FROM ops.backfill_runs r),
            (SELECT string_agg(c::text, ' ') FROM ops.backfill_report c), {})",
        raw.join(", ")
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    // The shape check must be able to fire: the token file holds both kinds.
    let store = std::fs::read_to_string(w.token_file()).unwrap();
    assert!(find_token(&store).is_some() && store.contains("eyJsbx."));
    for (place, text) in [
        ("stdout", &run.stdout),
        ("the logs", &run.stderr),
        ("the database", &tables),
    ] {
        assert_eq!(find_token(text), None, "a token is in {place}");
        assert!(
            !text.contains(w.sandbox.client_secret()),
            "the client secret is in {place}"
        );
    }
}
