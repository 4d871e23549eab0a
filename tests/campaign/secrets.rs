//! Secrets stay secret on the failure paths too, in JSON logs, and the file token store
//! is private: created 0600, and a file others can read is refused before anything runs.

use qbo::sandbox::{Faults, Malformation};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_json_trace_logs_errors_reports_or_tables() {
    let w = World::new(small_company()).await;
    // Refreshes, 401s, throttles, drops and broken answers all go through error paths
    // that print causes; one window per entity fails for good, so errors land in the report.
    w.faults(Faults {
        expire_access_every: 3,
        throttle_every: 7,
        drop_every: 11,
        malformed_every: 5,
        malformation: Malformation::Html502,
        fail_window_containing: Some("2024-02-14T12:00:00Z".into()),
        ..Faults::default()
    });
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for entity in ["invoices", "customers", "items"] {
        let run = w
            .run_with(
                &[
                    "--log-format",
                    "json",
                    "--log-level",
                    "trace",
                    "backfill",
                    entity,
                    "--start",
                    "2024-01-01",
                    "--end",
                    "2024-03-31",
                    "--chunk-days",
                    "7",
                    "--max-attempts",
                    "3",
                ],
                &[("RUST_LOG", Some("trace"))],
            )
            .await;
        run.assert_code(1);
        stdout.push_str(&run.stdout);
        stderr.push_str(&run.stderr);
    }
    assert!(w.sandbox.stats().refreshes > 3, "tokens rotated");
    assert!(stderr.len() > 10_000, "trace logging was on");
    let report = w.run(&["report", "--all-runs", "--format", "json"]).await;
    report.assert_code(0);
    // The window holding 2024-02-14 never succeeds: its COUNT(*) answers 500 every time.
    // Which error it ends with depends on how the workers' requests interleave (the
    // every-Nth faults are numbered in arrival order), so any error counts, as long as it
    // says something: it is in the report the secrets are looked for in.
    let rows: Vec<serde_json::Value> = serde_json::from_str(&report.stdout).unwrap();
    for entity in ["invoices", "customers", "items"] {
        let failed = rows.iter().find(|r| {
            r["entity"] == entity
                && r["window_start_utc"] == "2024-02-12T00:00:00Z"
                && r["status"] == "error"
        });
        let message = failed.and_then(|r| r["error_message"].as_str());
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{entity}: the window of 2024-02-14 failed, saying why: {failed:?}"
        );
    }
    let status = w.run(&["auth", "status"]).await;
    status.assert_code(0);
    let pool = w.db.pool().await;
    let tables: String = sqlx::query_scalar(
        "SELECT concat_ws(' ',
            (SELECT string_agg(r::text, ' ') FROM ops.backfill_runs r),
            (SELECT string_agg(c::text, ' ') FROM ops.backfill_report c),
            (SELECT string_agg(i::text, ' ') FROM raw.qb_invoices i),
            (SELECT string_agg(c::text, ' ') FROM raw.qb_customers c),
            (SELECT string_agg(i::text, ' ') FROM raw.qb_items i))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let store = std::fs::read_to_string(w.token_file()).unwrap();
    assert!(find_issued_token(&store).is_some(), "the check can fire");
    for (place, text) in [
        ("stdout", &stdout),
        ("the JSON logs", &stderr),
        ("the report", &report.stdout),
        ("auth status", &status.stdout),
        ("auth status's stderr", &status.stderr),
        ("the database", &tables),
    ] {
        assert_eq!(find_issued_token(text), None, "a token is in {place}");
        assert!(
            !text.contains(w.sandbox.client_secret()),
            "the client secret is in {place}"
        );
        assert!(
            !text.contains(&w.initial_refresh_token),
            "the seed refresh token is in {place}"
        );
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_is_0600_and_one_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(small_company()).await;
    let short = [
        "backfill",
        "items",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    ];
    w.run(&short).await.assert_code(0);
    let file = w.token_file();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "created private");
    let leftovers: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    for open in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(open)).unwrap();
        let before = w.sandbox.stats();
        for args in [
            &short[..],
            &["auth", "status"],
            &["backfill", "items", "--resume"],
        ] {
            let run = w.run(args).await;
            run.assert_code(2);
            assert!(
                run.stderr
                    .contains(&format!("run `chmod 600 {}`", file.display())),
                "{open:o} `{}`:\n{}",
                args.join(" "),
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"));
        }
        let after = w.sandbox.stats();
        assert_eq!(
            (after.token_requests, after.query_requests),
            (before.token_requests, before.query_requests),
            "the exposed token was not used"
        );
        assert_eq!(mode(&file), open, "qbo does not quietly fix the mode");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    w.run(&short).await.assert_code(0);
    assert_eq!(mode(&file), 0o600, "stays private after a rotation");
}
