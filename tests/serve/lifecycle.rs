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
