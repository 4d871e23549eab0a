use crate::common::{small_company, World};

/// Without a terminal, a run reports its progress as log events every QBO_PROGRESS_SECS,
/// JSON ones with `--log-format json`, and ends with a summary that has its pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_logged_periodically_and_the_summary_has_the_pace() {
    let w = World::new(small_company()).await;
    // 13 windows of 2 requests (COUNT, page) at 150 ms each, one at a time: the run lasts
    // several seconds
    // however fast the machine, so a 1 s interval must fire.
    w.faults(qbo::sandbox::Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let run = w
        .run_with(
            &[
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
                "--log-format",
                "json",
            ],
            &[("QBO_PROGRESS_SECS", Some("1"))],
        )
        .await;
    run.assert_code(0);
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|e: &serde_json::Value| e["message"] == "progress")
        .collect();
    assert!(!events.is_empty(), "no progress events:\n{}", run.stderr);
    for e in &events {
        assert_eq!(e["level"], "INFO");
        assert_eq!(e["entity"], "invoices");
        assert_eq!(e["chunks_to_do"], 13, "{e}");
        for key in [
            "chunks_done",
            "chunks_failed",
            "rows",
            "rows_per_sec",
            "requests",
            "requests_per_min",
            "retries",
            "elapsed_secs",
        ] {
            assert!(e[key].is_u64(), "{key} missing in {e}");
        }
        assert!(e["rows"].as_u64().unwrap() <= 240, "{e}");
    }
    let last = events.last().unwrap();
    assert!(last["requests"].as_u64().unwrap() > 0, "{last}");
    let summary = run.stdout.lines().next().unwrap_or_default();
    assert!(
        summary.starts_with("invoices: run ")
            && summary.contains("240 rows (240 inserted")
            && summary.contains(", requests ")
            && summary.contains("x), 0 retries, ")
            && summary.ends_with(" rows/s"),
        "{summary}"
    );
}

/// QBO_PROGRESS_SECS=0 turns the periodic lines off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_lines_can_be_turned_off() {
    let w = World::new(small_company()).await;
    w.faults(qbo::sandbox::Faults {
        latency_ms: 100,
        ..Default::default()
    });
    let run = w
        .run_with(
            &[
                "backfill",
                "items",
                "--start",
                "2024-01-01",
                "--end",
                "2024-03-31",
                "--chunk-days",
                "7",
            ],
            &[("QBO_PROGRESS_SECS", Some("0"))],
        )
        .await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("chunk 13/13") && !run.stderr.contains("progress"),
        "{}",
        run.stderr
    );
}

/// On a terminal, the bar shows the windows finishing: a log line per window would scroll it
/// away (one per day with `--chunk-days 1`), so those lines are left out while it is drawn.
/// A window that fails still says so. The run gets a real terminal through `script` (a pty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_bar_stays_and_only_warnings_and_errors_print_above_it() {
    let w = World::new(small_company()).await;
    w.faults(qbo::sandbox::Faults {
        fail_window_containing: Some("2024-02-14T12:00:00Z".into()),
        ..Default::default()
    });
    let qbo = w.qbo(&[
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "1",
        "--max-attempts",
        "1",
    ]);
    let std = qbo.as_std();
    let line = std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|a| a.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = tokio::process::Command::new("script");
    script
        .args(["-qefc", &line, "/dev/null"])
        .env_clear()
        .envs(std.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = script.output().await.expect("run qbo under script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one window fails:\n{screen}");
    assert!(
        screen.contains("/91 chunks"),
        "no progress bar was drawn:\n{screen}"
    );
    let window_lines = screen.matches(") success:").count();
    assert_eq!(window_lines, 0, "per-window lines under the bar:\n{screen}");
    assert!(
        screen.contains("chunk failed"),
        "the failed window is not reported:\n{screen}"
    );
    assert!(
        screen.contains("invoices: run ") && screen.contains("90 success, 1 error"),
        "{screen}"
    );
}
