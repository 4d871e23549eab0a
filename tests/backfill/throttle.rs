//! QBO's limits are the company's: a 429 pauses it (Retry-After, or a minute without one)
//! without spending attempts, the pause and the requests of the last minute are leased by
//! every qbo process from Postgres, and Ctrl-C / SIGTERM end every wait at once.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use qbo::sandbox::Faults;
use qbo::sandbox::RequestLogEntry;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::common::*;

/// Generous: only a process that hangs (keeps retrying or waiting) runs into it.
const EXIT_BOUND: Duration = Duration::from_secs(60);

/// The API requests (not token requests) the sandbox has answered so far.
fn api_log(w: &World) -> Vec<RequestLogEntry> {
    w.sandbox
        .stats()
        .request_log
        .into_iter()
        .filter(|e| matches!(e.kind.as_str(), "query" | "count" | "cdc"))
        .collect()
}

async fn poll_db(w: &World, what: &str, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(pool) = sqlx::PgPool::connect(&w.db.url).await {
            let hit: Option<bool> = sqlx::query_scalar(sql).fetch_one(&pool).await.ok();
            pool.close().await;
            if hit == Some(true) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "waited 90 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Copies the child's stderr into a buffer, and wakes `seen` whenever a line arrives.
fn watch_stderr(child: &mut Child) -> (Arc<std::sync::Mutex<String>>, Arc<Notify>) {
    let stderr = child.stderr.take().expect("stderr piped");
    let text = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = Arc::new(Notify::new());
    let (t, s) = (text.clone(), seen.clone());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = t.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
            s.notify_waiters();
        }
    });
    (text, seen)
}

async fn wait_for_line(text: &std::sync::Mutex<String>, seen: &Notify, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !text.lock().unwrap().contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no `{needle}` in 90 s; stderr:\n{}",
            text.lock().unwrap()
        );
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), seen.notified()).await;
    }
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let ok = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {name} {pid}");
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    let signalled = Instant::now();
    let code = tokio::time::timeout(EXIT_BOUND, child.wait())
        .await
        .expect("the process ignored the signal for a minute")
        .unwrap()
        .code();
    // For the record only: CPU load may stretch it, so it is not asserted.
    eprintln!("exited {code:?} {:?} after the signal", signalled.elapsed());
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_429s_without_retry_after_pauses_the_company_and_costs_no_attempt() {
    let w = World::new(small_company()).await;
    // Storms of three 429s without Retry-After; two attempts per request would not outlast one.
    w.faults(Faults {
        throttle_every: 6,
        throttle_burst: 3,
        throttle_retry_after_secs: None,
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
                "--max-attempts",
                "2",
            ],
            &[("QBO_THROTTLE_PAUSE_MS", Some("500"))],
        )
        .await;
    run.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let states = w.chunk_states("invoices").await;
    assert!(
        states.iter().all(|(s, a)| s == "success" && *a == 1),
        "{states:?}"
    );
    let log = api_log(&w);
    let throttled: Vec<usize> = (0..log.len()).filter(|i| log[*i].status == 429).collect();
    assert!(throttled.len() >= 3, "{log:?}");
    // Each 429 paused the company for QBO_THROTTLE_PAUSE_MS, not the 20 ms backoff.
    for i in throttled {
        if let Some(next) = log.get(i + 1) {
            assert!(
                next.at_ms >= log[i].at_ms + 500,
                "a request {} ms after a 429",
                next.at_ms - log[i].at_ms
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_without_a_break_past_the_limit_fails_the_window_and_says_so() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        throttle_every: 1,
        throttle_retry_after_secs: Some(1),
        ..Default::default()
    });
    let run = w
        .backfill(
            "customers",
            "2024-01-01",
            "2024-01-31",
            &[
                "--chunk-days",
                "31",
                "--max-attempts",
                "1",
                "--max-throttle-secs",
                "3",
            ],
        )
        .await;
    run.assert_code(1);
    // One attempt allowed, yet the 429s were waited out until the limit.
    assert!(w.sandbox.stats().throttled >= 3);
    let pool = w.db.pool().await;
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT error_message FROM ops.backfill_report WHERE status = 'error' ORDER BY chunk_index",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(errors.len(), 1, "{run:?}");
    assert!(
        errors[0].starts_with("QBO has throttled this company without a break for ")
            && errors[0].contains("the limit of 3 s (--max-throttle-secs / QBO_MAX_THROTTLE_SECS)")
            && errors[0].ends_with("QBO throttled the request (429 ThrottleExceeded)"),
        "{}",
        errors[0]
    );
    // A bad limit is refused with its range.
    let bad = w
        .backfill(
            "customers",
            "2024-01-01",
            "2024-01-31",
            &["--max-throttle-secs", "0"],
        )
        .await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("1..=86400"), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_that_use_up_the_attempts_keep_the_last_error() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        fail_window_containing: Some("2024-01-15T00:00:00Z".into()),
        ..Default::default()
    });
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-01-31",
        &["--chunk-days", "31", "--max-attempts", "2"],
    )
    .await
    .assert_code(1);
    let pool = w.db.pool().await;
    let error: String =
        sqlx::query_scalar("SELECT error_message FROM ops.backfill_report WHERE status = 'error'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // The cause is the chain's next link, not text folded into a transport error.
    assert!(
        error.starts_with("gave up after 2 attempts: QBO server error (HTTP 50"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_started_during_another_ones_pause_waits_instead_of_meeting_429s() {
    let w = World::new(small_company()).await;
    // The company allows 8 requests per 10 s and says so in Retry-After.
    w.faults(Faults {
        max_requests_per_minute: 8,
        rate_window_secs: 10,
        throttle_retry_after_secs: Some(10),
        ..Default::default()
    });
    let mut first = w
        .qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--chunk-days",
            "3",
            "--concurrency",
            "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_db(
        &w,
        "the first process's pause in ops.company_throttle",
        "SELECT EXISTS (SELECT 1 FROM ops.company_throttle WHERE paused_until > now())",
    )
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    assert!(api_log(&w).iter().any(|e| e.status == 429));
    let before = api_log(&w).len();

    // Two requests: inside the company's limit once the pause has passed, not before.
    w.backfill("company_info", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    let log = api_log(&w);
    let second = &log[before..];
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|e| e.status == 200),
        "the second process was throttled: {second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_counts_the_last_minutes_requests_of_the_others_and_sigterm_ends_its_wait() {
    let w = World::new(small_company()).await;
    let budget = ["--requests-per-minute", "6", "--concurrency", "1"];
    let mut first = w
        .qbo(
            &[
                [
                    "backfill",
                    "invoices",
                    "--start",
                    "2024-01-01",
                    "--end",
                    "2024-03-31",
                    "--chunk-days",
                    "3",
                ]
                .as_slice(),
                &budget,
            ]
            .concat(),
        )
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll_db(
        &w,
        "the first process's six permits in ops.company_budget",
        "SELECT coalesce(max(cardinality(request_until)), 0) >= 6 FROM ops.company_budget",
    )
    .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    // A permit is leased before its request is sent: the sixth may never have been sent.
    assert!(
        api_log(&w).len() <= 6,
        "the first process kept to its budget"
    );
    // The second process loads customers: any request of its names Customer.
    let seconds = |w: &World| {
        api_log(w)
            .iter()
            .filter(|e| e.query.as_deref().is_some_and(|t| t.contains("Customer")))
            .count()
    };

    let mut second = w
        .qbo(
            &[
                [
                    "backfill",
                    "customers",
                    "--start",
                    "2024-01-01",
                    "--end",
                    "2024-03-31",
                ]
                .as_slice(),
                &budget,
            ]
            .concat(),
        )
        .spawn()
        .unwrap();
    let (text, seen) = watch_stderr(&mut second);
    wait_for_line(&text, &seen, "waiting for the company's request budget").await;
    assert_eq!(seconds(&w), 0, "the second process spent a used budget");

    signal(&second, "-TERM");
    assert_eq!(exit_code(&mut second).await, Some(130));
    assert_eq!(seconds(&w), 0);
    assert!(api_log(&w).len() <= 6);
    let states = w.chunk_states("customers").await;
    assert!(
        !states.is_empty() && states.iter().all(|(s, _)| s == "pending"),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_qbo_is_unreachable_ends_the_retries_at_once() {
    let w = World::new(small_company()).await;
    // A port held but not listened on (so no other test can take it): every request is
    // refused, then backs off for minutes.
    let hold = tokio::net::TcpSocket::new_v4().unwrap();
    hold.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = hold.local_addr().unwrap();
    let mut child = w
        .qbo(&[
            "backfill",
            "customers",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--max-attempts",
            "20",
            "--retry-base-ms",
            "120000",
        ])
        .env("QBO_API_BASE_URL", format!("http://{closed}/"))
        .spawn()
        .unwrap();
    let (text, seen) = watch_stderr(&mut child);
    wait_for_line(&text, &seen, "retrying QBO request").await;
    signal(&child, "-TERM");
    assert_eq!(exit_code(&mut child).await, Some(130));
    let states = w.chunk_states("customers").await;
    assert!(
        !states.is_empty() && states.iter().all(|(s, _)| s == "pending"),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_a_stretch_of_429s_ends_the_pause_at_once() {
    let w = World::new(small_company()).await;
    w.faults(Faults {
        throttle_every: 1,
        throttle_retry_after_secs: None,
        ..Default::default()
    });
    let mut child = w
        .qbo(&[
            "backfill",
            "customers",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--retry-base-ms",
            "120000",
        ])
        .env("QBO_THROTTLE_PAUSE_MS", "600000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while w.sandbox.stats().throttled == 0 {
        assert!(Instant::now() < deadline, "no 429 in 90 s");
        assert!(child.try_wait().unwrap().is_none(), "qbo ended early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "-INT");
    assert_eq!(exit_code(&mut child).await, Some(130));
    let states = w.chunk_states("customers").await;
    assert!(
        !states.is_empty() && states.iter().all(|(s, _)| s == "pending"),
        "{states:?}"
    );
}

/// A source whose first request panics (a bug) and whose others wait, like the real client,
/// until the run is cancelled.
struct PanicsOnce {
    panicked: std::sync::atomic::AtomicBool,
    cancel: tokio_util::sync::CancellationToken,
}

impl PanicsOnce {
    async fn answer<T>(&self) -> Result<T, qbo::client::ClientError> {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("boom: a bug in a worker");
        }
        self.cancel.cancelled().await;
        Err(qbo::client::ClientError::Cancelled)
    }
}

impl qbo::client::QuerySource for PanicsOnce {
    fn realm_id(&self) -> &str {
        "9130350000000001"
    }
    fn minor_version(&self) -> u32 {
        75
    }
    async fn fetch_page(
        &self,
        _entity: &str,
        _query: &str,
        _counters: &mut qbo::client::RequestCounters,
    ) -> Result<qbo::client::Answer<qbo::client::Page>, qbo::client::ClientError> {
        self.answer().await
    }
    async fn fetch_count(
        &self,
        _query: &str,
        _counters: &mut qbo::client::RequestCounters,
    ) -> Result<qbo::client::Answer<qbo::client::Count>, qbo::client::ClientError> {
        self.answer().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_worker_is_a_bug_not_an_outage_and_the_others_hand_their_windows_back() {
    use qbo::backfill::{Backfill, BackfillError, Mode, Options};
    let db = TestDb::unborn().await;
    let store = qbo::store::PgStore::connect_and_migrate(&db.url.clone().into())
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let source = Arc::new(PanicsOnce {
        panicked: Default::default(),
        cancel: cancel.clone(),
    });
    let engine = Backfill::new(source, store, cancel);
    let range = qbo::chunks::DateRange::new(date("2024-01-01"), date("2024-01-31")).unwrap();
    let run = engine.run(
        qbo::entities::find("invoices").unwrap(),
        Mode::New(range),
        Options {
            chunking: qbo::backfill::Chunking::Days(7),
            concurrency: 3,
            ..Options::default()
        },
    );
    let err = tokio::time::timeout(EXIT_BOUND, run)
        .await
        .expect("the other workers kept waiting")
        .unwrap_err();
    assert!(
        matches!(&err, BackfillError::WorkerPanicked(m) if m.contains("boom: a bug in a worker")),
        "{err:?}"
    );
    assert!(err.to_string().contains("a bug in qbo"), "{err}");
    let pool = db.pool().await;
    let states: Vec<String> =
        sqlx::query_scalar("SELECT status FROM ops.backfill_report ORDER BY chunk_index")
            .fetch_all(&pool)
            .await
            .unwrap();
    // Five windows: the panicked worker's stays leased until its lease runs out; every other
    // window is pending, none is marked failed.
    assert_eq!(states.len(), 5);
    assert_eq!(
        states.iter().filter(|s| *s == "pending").count(),
        4,
        "{states:?}"
    );
}
