use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

fn stored_refresh_token(w: &World) -> String {
    let text = std::fs::read_to_string(w.token_file()).expect("token file");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["realms"][w.sandbox.realm_id()]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_tokens_are_refreshed_mid_run() {
    let w = World::new(small_company()).await;
    // Every 4th request kills whatever token it carries, a thousand times QBO's rate (an
    // access token lives an hour). One worker, so each refresh is tested on its own; with
    // several, another worker's request kills the token just refreshed, which the campaign
    // covers at a survivable rate.
    w.faults(Faults {
        expire_access_every: 4,
        ..Default::default()
    });
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-03-31",
        &["--concurrency", "1"],
    )
    .await
    .assert_code(0);
    let stats = w.sandbox.stats();
    assert!(stats.unauthorized > 0, "the fault fired");
    assert!(stats.refreshes > 1, "refreshed after 401s");
    assert_eq!(stats.retired_refresh_token_uses, 0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_refresh_tokens_are_persisted_and_the_retired_one_is_never_sent_again() {
    let w = World::new(small_company()).await;
    w.backfill("items", "2024-01-01", "2024-03-31", &[])
        .await
        .assert_code(0);
    let stored = stored_refresh_token(&w);
    assert_ne!(
        stored, w.initial_refresh_token,
        "the rotated token replaced the seed"
    );
    assert_eq!(stored, w.sandbox.current_refresh_token());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.token_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    // QBO_REFRESH_TOKEN still holds the retired seed; the store's token must win, and the
    // access token it saved is reused instead of refreshing again. (One worker: with a token
    // killed every other request, several workers would only measure the retry budget; the
    // campaign covers expiry under concurrency.)
    w.faults(Faults {
        expire_access_every: 2,
        ..Default::default()
    });
    w.backfill(
        "customers",
        "2024-01-01",
        "2024-03-31",
        &["--concurrency", "1"],
    )
    .await
    .assert_code(0);
    let stats = w.sandbox.stats();
    assert_eq!(
        stats.retired_refresh_token_uses, 0,
        "a retired refresh token was sent"
    );
    assert_eq!(stored_refresh_token(&w), w.sandbox.current_refresh_token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_refresh_token_exits_3_and_says_what_to_do() {
    let w = World::new(small_company()).await;
    let run = w
        .run_with(
            &[
                "backfill",
                "invoices",
                "--start",
                "2024-01-01",
                "--end",
                "2024-01-31",
            ],
            &[("QBO_REFRESH_TOKEN", Some("not-a-token-qbo-ever-issued"))],
        )
        .await;
    run.assert_code(3);
    assert!(
        run.stderr.contains("invalid_grant") && run.stderr.contains("qbo auth login"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("not-a-token-qbo-ever-issued"),
        "the token leaked into the error"
    );
    let pool = w.db.pool().await;
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT error_message FROM ops.backfill_report WHERE status = 'error'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(errors.len(), 1, "one window carries the error");
    assert!(errors[0].contains("invalid_grant"));
    // The windows other workers held did nothing wrong: they wait, pending, for the resume.
    let not_pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_report WHERE status NOT IN ('pending', 'error')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(not_pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_login_completes_the_code_flow_and_status_never_shows_tokens() {
    let w = World::new(small_company()).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let mut child = w
        .qbo(&[
            "auth",
            "login",
            "--redirect-uri",
            &redirect,
            "--timeout-secs",
            "30",
        ])
        .env_remove("QBO_REFRESH_TOKEN")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("login prints the consent URL")
            .unwrap()
            .expect("stderr open");
        if let Some(u) = line.trim().strip_prefix("http") {
            break format!("http{u}");
        }
    };
    assert!(
        url.contains("scope=com.intuit.quickbooks.accounting"),
        "{url}"
    );
    // The "browser": the sandbox approves and redirects to qbo's loopback listener.
    let page = reqwest::get(&url).await.unwrap();
    assert!(page.status().is_success());
    let out = child.wait_with_output().await.unwrap();
    let out = Run::from(out);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains(&format!("authorized realm {}", w.sandbox.realm_id())));
    assert_eq!(stored_refresh_token(&w), w.sandbox.current_refresh_token());

    let status = w.run(&["auth", "status"]).await;
    status.assert_code(0);
    assert!(status.stdout.contains(w.sandbox.realm_id()));
    assert!(status.stdout.contains("expires"));
    assert!(!status.stdout.contains(&w.sandbox.current_refresh_token()));
}
