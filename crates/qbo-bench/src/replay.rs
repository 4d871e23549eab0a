//! A replay cache in front of the sandbox's query endpoint. The sandbox renders every record's
//! JSON on demand, and on a small machine that takes as much CPU as the loaders it serves
//! (about 60 µs a record). Real QBO renders on Intuit's servers, so to measure the loaders
//! rather than the sandbox, pages are recorded once and then served as stored bytes.
//!
//! Only `SELECT *` pages are recorded (and only while recording); COUNT(*) and anything not
//! recorded go to the sandbox, live. A replayed page still needs a bearer token, but it is
//! not checked again: the bench, not security, is the point here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use super::BenchError;

struct Shared {
    upstream: String,
    http: reqwest::Client,
    pages: RwLock<HashMap<String, Bytes>>,
    recording: AtomicBool,
}

pub struct Replay {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Replay {
    /// Listens on a free loopback port, forwarding to `upstream` (the sandbox's base URL).
    pub async fn start(upstream: String) -> Result<Replay, BenchError> {
        let shared = Arc::new(Shared {
            upstream,
            http: reqwest::Client::new(),
            pages: RwLock::new(HashMap::new()),
            recording: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| BenchError::Io("binding the replay cache".into(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::Io("binding the replay cache".into(), e))?;
        let app = Router::new()
            .route("/v3/company/{realm}/query", get(query))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Replay {
            shared,
            addr,
            stop: Some(tx),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While on, pages that pass through are kept for replay.
    pub fn record(&self, on: bool) {
        self.shared.recording.store(on, Ordering::SeqCst);
    }

    pub fn pages(&self) -> usize {
        self.shared.pages.read().map(|p| p.len()).unwrap_or(0)
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn query_text(raw: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
}

fn json(status: StatusCode, body: Bytes) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn query(
    State(shared): State<Arc<Shared>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let raw = raw.unwrap_or_default();
    let text = query_text(&raw).unwrap_or_default();
    let auth = headers.get(header::AUTHORIZATION).cloned();
    if auth.is_some() {
        let hit = shared.pages.read().ok().and_then(|p| p.get(&text).cloned());
        if let Some(body) = hit {
            return json(StatusCode::OK, body);
        }
    }
    let mut req = shared
        .http
        .get(format!(
            "{}/v3/company/{realm}/query?{raw}",
            shared.upstream
        ))
        .header(header::ACCEPT, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let answer = match req.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let page = text.starts_with("SELECT * ") && text.contains("STARTPOSITION");
    if status == StatusCode::OK && page && shared.recording.load(Ordering::SeqCst) {
        if let Ok(mut pages) = shared.pages.write() {
            pages.insert(text, body.clone());
        }
    }
    json(status, body)
}
