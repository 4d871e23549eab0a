//! The status page's form submitted by a real browser: Chromium driven through chromedriver
//! (the W3C WebDriver protocol, over HTTP with reqwest), so the request is the one Chromium
//! itself builds from the form (its fields, encoding, Origin and redirect). Skipped with a
//! message where chromium or chromedriver is not installed (`.ci/run` installs both).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::common::*;
use crate::harness::Served;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// A chromedriver process and one headless Chromium session of it.
struct Driver {
    _process: tokio::process::Child,
    _profile: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start(chromedriver: PathBuf, chromium: PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = http.get(format!("{root}/status")).send().await;
            if let Ok(r) = ready {
                let status: Value = r.json().await.unwrap_or(Value::Null);
                if status["value"]["ready"] == json!(true) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let session: Value = http
            .post(format!("{root}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": ["--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--no-first-run",
                             "--window-size=1280,1000",
                             format!("--user-data-dir={}", profile.path().display())],
                },
                "timeouts": {"pageLoad": 120_000, "script": 60_000},
            }}}))
            .send()
            .await
            .expect("create a chromedriver session")
            .json()
            .await
            .unwrap();
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_string();
        Driver {
            _process: process,
            _profile: profile,
            base: format!("{root}/session/{id}"),
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "webdriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn close(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_submits_the_backfill_form_and_lands_on_the_queued_run() {
    let (Some(chromedriver), Some(chromium)) = (
        on_path(&["chromedriver"]),
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        println!("SKIPPED: chromium and chromedriver are needed (apt-get install chromium chromium-driver)");
        return;
    };
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.import_all_companies().await;
    // No worker slots: the queued run stays queued, whatever the machine's speed.
    let served = Served::start(&w, &["--workers", "0"]).await;
    let driver = Driver::start(chromedriver, chromium).await;
    driver.go(&served.url("/")).await;
    // The user fills the form and clicks its button; Chromium builds and sends the POST.
    let clicked = driver
        .script(
            r#"const f = document.querySelector('form[action="/backfills"]');
               if (!f) { return 'no form'; }
               f.elements['entity'].value = 'customers';
               f.elements['start'].value = '2024-01-01';
               f.elements['end'].value = '2024-03-31';
               f.elements['company'].value = arguments[0];
               if (f.elements['company'].value !== arguments[0]) { return 'no such company'; }
               f.querySelector('button[type=submit]').click();
               return 'clicked';"#,
            json!([realm]),
        )
        .await;
    assert_eq!(clicked, json!("clicked"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let landed = loop {
        let url = driver.url().await;
        if url.contains("done=queued") {
            break url;
        }
        assert!(
            Instant::now() < deadline,
            "the browser did not land on the queued run's page: {url}\n{}",
            driver.source().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pool = w.db.pool().await;
    let (run_id, status): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT run_id, status FROM ops.backfill_runs WHERE entity = 'customers' AND realm_id = $1",
    )
    .bind(&realm)
    .fetch_one(&pool)
    .await
    .expect("the form queued one customers run");
    assert!(landed.contains(&run_id.to_string()), "{landed}");
    assert_ne!(status, "cancelled");
    let page = driver.source().await;
    assert!(page.contains(&format!("/runs/{run_id}")), "{page}");
    driver.close().await;
    assert_eq!(served.terminate().await, Some(0));
}
