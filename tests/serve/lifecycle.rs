//! Starting, probing and stopping `qbo serve`.

use crate::common::*;
use crate::harness::Served;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_open_everything_else_needs_the_bearer_token_and_sigterm_exits_0() {
    let w = World::new(small_company()).await;
    let served = Served::start_with(
        &w,
        &["--workers", "0"],
        &[("QBO_SERVE_TOKEN", Some("t0ps3cret-serve-token"))],
    )
    .await;
    let health = reqwest::get(served.url("/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = reqwest::get(served.url("/readyz")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    // Pages send a browser without the token (or the login's cookie) to the login form.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let no_token = no_redirects.get(served.url("/")).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 303);
    assert_eq!(no_token.headers()["location"], "/login");
    let body = no_token.text().await.unwrap();
    assert!(!body.contains("t0ps3cret"), "{body}");
    let wrong = no_redirects
        .get(served.url("/"))
        .bearer_auth("t0ps3cret-serve-tokex")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 303);
    let right = no_redirects
        .get(served.url("/"))
        .bearer_auth("t0ps3cret-serve-token")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(served.terminate().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_listen_off_loopback_without_a_token() {
    let w = World::new(small_company()).await;
    let run = w
        .run(&["serve", "--listen", "0.0.0.0:0", "--workers", "0"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("QBO_SERVE_TOKEN"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_is_made_once_kept_private_and_required() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(small_company()).await;
    let path = w.dir.path().join("serve-token");
    let path_arg = path.to_str().unwrap().to_string();
    let served = Served::start(&w, &["--workers", "0", "--token-file", &path_arg]).await;
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "32 random bytes in hex");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only its owner may read the token");
    let no_token = reqwest::get(served.url("/api/runs")).await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);
    let with = served
        .http
        .get(served.url("/api/runs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status().as_u16(), 200);
    assert_eq!(served.terminate().await, Some(0));

    // A restart keeps the token the file holds; off loopback the file counts as a token.
    let again = Served::start(
        &w,
        &[
            "--workers",
            "0",
            "--token-file",
            &path_arg,
            "--listen",
            "0.0.0.0:0",
        ],
    )
    .await;
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), token);
    let port = again.base.rsplit(':').next().unwrap().to_string();
    let with = again
        .http
        .get(format!("http://127.0.0.1:{port}/api/runs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status().as_u16(), 200);
    assert_eq!(again.terminate().await, Some(0));
}
