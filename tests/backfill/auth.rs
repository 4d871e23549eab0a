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
        // Calendar windows: enough requests for many refreshes.
        &["--concurrency", "1", "--chunk-days", "7"],
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
            // The test plays the browser at once; the timeout only guards a hang.
            "--timeout-secs",
            "300",
        ])
        .env_remove("QBO_REFRESH_TOKEN")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        // Only a guard against a hang: a loaded machine may take a while to start qbo.
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
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

/// A token file as an earlier run left it: a used token, with the access token it got.
fn write_stored_token(w: &World, refresh_token: &str) {
    let body = serde_json::json!({
        "version": 1,
        "realms": { w.sandbox.realm_id(): {
            "realm_id": w.sandbox.realm_id(),
            "refresh_token": refresh_token,
            "refresh_expires_at": "2027-01-01T00:00:00Z",
            "access_token": "eyJsbx.expired",
            "access_expires_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }},
    });
    std::fs::write(w.token_file(), body.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.token_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// `qbo auth import` with `input` on stdin (and any variable changes, as in `run_with`).
async fn import(w: &World, input: &str, env: &[(&str, Option<&str>)]) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = w.qbo(&["auth", "import"]);
    cmd.stdin(std::process::Stdio::piped());
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    Run::from(child.wait_with_output().await.unwrap())
}

fn backfill_args() -> Vec<&'static str> {
    vec![
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    ]
}

/// Every exit-3 message says where the tokens are and how to get out.
#[track_caller]
fn assert_names_store_and_way_out(w: &World, stderr: &str) {
    let store = format!("file:{}", w.token_file().display());
    for needle in [store.as_str(), "qbo auth import", "qbo auth login"] {
        assert!(stderr.contains(needle), "no `{needle}` in: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_store_token_gives_way_once_to_a_new_qbo_refresh_token() {
    let w = World::new(small_company()).await;
    // The store holds a token saved by an earlier run against a sandbox that no longer
    // exists; QBO_REFRESH_TOKEN holds the new sandbox's token, never used.
    write_stored_token(&w, "AB11-stale-token-of-an-old-sandbox");
    let run = w.run(&backfill_args()).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("trying the different one in QBO_REFRESH_TOKEN"),
        "{}",
        run.stderr
    );
    assert_eq!(stored_refresh_token(&w), w.sandbox.current_refresh_token());

    // The store goes stale again while QBO_REFRESH_TOKEN still holds the token just used:
    // that one is retired at QBO, so it is not sent again, and the message says so.
    import(&w, "AB11-stale-again", &[]).await.assert_code(0);
    let run = w.run(&backfill_args()).await;
    run.assert_code(3);
    assert_names_store_and_way_out(&w, &run.stderr);
    assert!(
        run.stderr
            .contains("QBO_REFRESH_TOKEN holds that token or one qbo already used"),
        "{}",
        run.stderr
    );
    assert_eq!(w.sandbox.stats().retired_refresh_token_uses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_qbo_refresh_token_is_tried_once_and_never_again() {
    let w = World::new(small_company()).await;
    import(&w, "AB11-stale-token", &[]).await.assert_code(0);
    let typo = [("QBO_REFRESH_TOKEN", Some("AB11-a-mistyped-token"))];
    let first = w.run_with(&backfill_args(), &typo).await;
    first.assert_code(3);
    assert_names_store_and_way_out(&w, &first.stderr);
    assert!(
        first
            .stderr
            .contains("qbo tried it once and QBO rejected it too"),
        "{}",
        first.stderr
    );
    assert!(
        !first.stderr.contains("AB11-a-mistyped-token"),
        "token leaked"
    );
    // The next run remembers the value was rejected and does not offer it again.
    let second = w.run_with(&backfill_args(), &typo).await;
    second.assert_code(3);
    assert!(
        second
            .stderr
            .contains("QBO_REFRESH_TOKEN holds that token or one qbo already used")
            && !second.stderr.contains("trying the different one"),
        "{}",
        second.stderr
    );
    // The corrected value is a different token never tried: it is used and saved.
    let fixed = [("QBO_REFRESH_TOKEN", Some(w.initial_refresh_token.as_str()))];
    w.run_with(&backfill_args(), &fixed).await.assert_code(0);
    assert_eq!(stored_refresh_token(&w), w.sandbox.current_refresh_token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_import_replaces_the_stored_token_and_forget_removes_it() {
    let w = World::new(small_company()).await;
    // Neither command needs the app's credentials.
    let no_app = [("QBO_CLIENT_ID", None), ("QBO_CLIENT_SECRET", None)];
    let empty = import(&w, " \n\t\n", &no_app).await;
    empty.assert_code(2);
    assert!(
        empty.stderr.contains("no refresh token on stdin"),
        "{}",
        empty.stderr
    );
    assert!(!w.token_file().exists(), "nothing written");

    // A stale token first, so the import has something to replace.
    import(&w, "AB11-stale", &no_app).await.assert_code(0);
    let token = format!("  {}\n", w.initial_refresh_token);
    let out = import(&w, &token, &no_app).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains("imported the refresh token for realm")
            && out.stdout.contains("replacing the tokens stored there")
            && out.stdout.contains(&w.token_file().display().to_string()),
        "{}",
        out.stdout
    );
    assert_eq!(stored_refresh_token(&w), w.initial_refresh_token, "trimmed");
    assert!(!out.stdout.contains(&w.initial_refresh_token));
    // The imported token works without QBO_REFRESH_TOKEN.
    w.run_with(&backfill_args(), &[("QBO_REFRESH_TOKEN", None)])
        .await
        .assert_code(0);

    let forget = w.run_with(&["auth", "forget"], &no_app).await;
    forget.assert_code(0);
    assert!(
        forget.stdout.contains("removed the tokens of realm"),
        "{}",
        forget.stdout
    );
    let text = std::fs::read_to_string(w.token_file()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["realms"].get(w.sandbox.realm_id()).is_none(), "{text}");
    let again = w.run_with(&["auth", "forget"], &no_app).await;
    again.assert_code(0);
    assert!(
        again.stdout.contains("nothing to remove"),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_status_says_never_used_and_prints_whole_seconds_with_relative_times() {
    let w = World::new(small_company()).await;
    import(&w, &w.initial_refresh_token, &[])
        .await
        .assert_code(0);
    // Only the company and the store are needed: not the app's credentials (the runbook
    // runs it with QBO_REALM_ID and QBO_TOKEN_STORE alone).
    let fresh = w
        .run_with(
            &["auth", "status"],
            &[("QBO_CLIENT_ID", None), ("QBO_CLIENT_SECRET", None)],
        )
        .await;
    fresh.assert_code(0);
    assert!(fresh.stdout.contains("never used"), "{}", fresh.stdout);
    assert!(!fresh.stdout.contains("-262143"), "{}", fresh.stdout);
    assert!(
        fresh.stdout.contains("expiry unknown until its first use"),
        "{}",
        fresh.stdout
    );

    w.run(&backfill_args()).await.assert_code(0);
    let used = w.run(&["auth", "status"]).await;
    used.assert_code(0);
    let out = &used.stdout;
    assert!(!out.contains("never used"), "{out}");
    // The sandbox's refresh tokens live 101 days, access tokens an hour.
    assert!(
        out.contains("(in 100 days)") || out.contains("(in 101 days)"),
        "{out}"
    );
    assert!(out.contains("minutes)"), "{out}");
    assert!(out.contains(" ago)"), "{out}");
    let fraction = out
        .as_bytes()
        .windows(4)
        .any(|w| w[0] == b':' && w[1].is_ascii_digit() && w[2].is_ascii_digit() && w[3] == b'.');
    assert!(!fraction, "fractions of a second in: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_login_for_another_company_says_failed_in_the_browser() {
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
            // The test plays the browser at once; the timeouts only guard a hang.
            "--timeout-secs",
            "300",
        ])
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("login prints the consent URL")
            .unwrap()
            .expect("stderr open");
        if let Some(u) = line.trim().strip_prefix("http") {
            break url::Url::parse(&format!("http{u}")).unwrap();
        }
    };
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    // The "browser" comes back from a consent screen where another company was picked.
    let page = reqwest::get(format!(
        "{redirect}?code=some-code&state={state}&realmId=999000111"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(page.contains("FAILED"), "{page}");
    assert!(!page.contains("qbo is authorized"), "{page}");
    assert!(
        page.contains("999000111") && page.contains(w.sandbox.realm_id()),
        "the page says why: {page}"
    );
    let out = Run::from(child.wait_with_output().await.unwrap());
    assert_ne!(out.code, Some(0));
    assert!(!w.token_file().exists(), "nothing saved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_exits_3_before_any_run_is_written() {
    let w = World::new(small_company()).await;
    w.run(&["migrate"]).await.assert_code(0);
    let no_seed = [("QBO_REFRESH_TOKEN", None)];
    let commands: [&[&str]; 4] = [
        &backfill_args(),
        &[
            "backfill",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ],
        &["sync", "invoices", "--since", "2024-01-01"],
        &[
            "verify",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ],
    ];
    for args in commands {
        let run = w.run_with(args, &no_seed).await;
        run.assert_code(3);
        assert!(
            run.stderr.contains("no refresh token for realm"),
            "{}",
            run.stderr
        );
        assert_names_store_and_way_out(&w, &run.stderr);
    }
    let pool = w.db.pool().await;
    for table in ["ops.backfill_runs", "ops.backfill_report"] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
}
