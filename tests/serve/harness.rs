//! Starting `qbo serve` processes and talking to them.

// Each test module uses some of these helpers; not all are used by every build of the binary.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::time::Instant;

use crate::common::*;

/// A running `qbo serve`: its base URL and the process (killed when dropped).
pub struct Served {
    pub base: String,
    pub child: Child,
    pub token: Option<String>,
    pub http: reqwest::Client,
}

impl Served {
    /// Starts `qbo serve --listen 127.0.0.1:0 <extra>` (fast polls, the world's sandbox and
    /// database) and waits for its "listening on http://..." line. Its log goes to a file
    /// in the world's directory (a pipe nobody reads would fill and block it).
    pub async fn start(w: &World, extra: &[&str]) -> Served {
        Self::start_with(w, extra, &[]).await
    }

    /// As `start`, with environment changes: `Some(v)` sets, `None` removes.
    pub async fn start_with(w: &World, extra: &[&str], env: &[(&str, Option<&str>)]) -> Served {
        let mut args = vec!["serve", "--poll-ms", "50"];
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let mut cmd = w.qbo(&args);
        let mut token = None;
        for (k, v) in env {
            match v {
                Some(v) => {
                    if *k == "QBO_SERVE_TOKEN" {
                        token = Some(v.to_string());
                    }
                    cmd.env(k, v)
                }
                None => cmd.env_remove(k),
            };
        }
        let log = tempfile::NamedTempFile::new_in(w.dir.path()).unwrap();
        let (_, log_path) = log.keep().unwrap();
        cmd.stderr(std::fs::File::create(&log_path).unwrap());
        let mut child = cmd.spawn().expect("start qbo serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(120);
        let base = loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("qbo serve did not start; log: {}", read(&log_path)))
                .unwrap();
            match line {
                Some(l) => {
                    if let Some(url) = l.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                None => panic!(
                    "qbo serve exited before listening: {:?}; log: {}",
                    child.wait().await,
                    read(&log_path)
                ),
            }
        };
        // Keep reading stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Served {
            base,
            child,
            token,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `path` carrying the bearer token when the server has one.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .req(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// SIGTERM, then the exit code (`None` if killed by a signal).
    pub async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("qbo serve exits after SIGTERM")
            .unwrap();
        status.code()
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
