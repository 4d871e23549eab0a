//! HTTP wiring: routes, the query endpoint (auth, limits, injected faults, evaluation), the
//! `/__sandbox` control API, and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::faults::{Faults, Injected, RawBody};
use super::{clock, envelope, eval, lock, oauth, query, Inner};

/// QBO rejects requests without a recent `minorversion`.
const MIN_MINOR_VERSION: u32 = 75;

pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v3/company/{realm}/query", get(query_endpoint))
        .route("/oauth2/v1/tokens/bearer", post(oauth::token_endpoint))
        .route("/connect/oauth2", get(oauth::authorize_endpoint))
        .route("/__sandbox/stats", get(control_stats))
        .route(
            "/__sandbox/faults",
            get(control_get_faults).put(control_put_faults),
        )
        .route("/__sandbox/records/{entity}", get(control_records))
        .route("/__sandbox/touch/{entity}/{id}", post(control_touch))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" }))) })
        .layer(axum::middleware::map_response(add_intuit_tid))
        .with_state(inner)
}

/// Every QBO response carries a unique `intuit_tid` for support tickets.
async fn add_intuit_tid(mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("intuit_tid", v);
    }
    resp
}

/// Owns the server task; shutting down is idempotent across `Sandbox` clones.
pub struct Control {
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

pub fn spawn(listener: tokio::net::TcpListener, inner: Arc<Inner>) -> Control {
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(inner);
    let task = tokio::spawn(async move {
        // Also stops when every handle is dropped (the sender goes away with `Control`).
        let stopped = async {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(error = %e, "sandbox server stopped with an error");
        }
    });
    Control {
        stop: Mutex::new(Some(tx)),
        task: Mutex::new(Some(task)),
    }
}

impl Control {
    pub async fn shutdown(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        let task = lock(&self.task).take();
        if let Some(mut task) = task {
            // Graceful, but a client holding a connection open must not hang the caller.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

/// Counts a query request in flight for its whole life, including injected latency.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> (InFlight<'a>, u64) {
        let level = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut s = inner.stats();
        s.max_in_flight = s.max_in_flight.max(level);
        (InFlight(inner), level)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the query endpoint decided, before it becomes an HTTP response.
struct Reply {
    status: StatusCode,
    body: Value,
    xml: bool,
    retry_after: Option<u64>,
    /// Cut the connection halfway through the body.
    truncate: bool,
    /// Replaces the whole response (`malformed_every`).
    raw: Option<RawBody>,
    note: Option<&'static str>,
}

impl Reply {
    fn new(status: StatusCode, body: Value, xml: bool) -> Reply {
        Reply {
            status,
            body,
            xml,
            retry_after: None,
            truncate: false,
            raw: None,
            note: None,
        }
    }

    fn note(mut self, note: &'static str) -> Reply {
        self.note = Some(note);
        self
    }
}

async fn query_endpoint(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (_in_flight, level) = InFlight::enter(&inner);
    let faults = inner.faults();
    tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    let n = inner.query_counter.fetch_add(1, Ordering::SeqCst) + 1;
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let text = params.get("query").map(String::as_str);
    let parsed = text.map(query::parse);
    let is_count = matches!(parsed, Some(Ok(ref q)) if q.count);
    {
        let mut s = inner.stats();
        s.query_requests += 1;
        s.count_requests += u64::from(is_count);
    }
    // Counted on arrival: a client that gives up on a slow or held request still sent it.
    if let Some(extra) = faults.slow(n) {
        inner.stats().slowed += 1;
        tokio::time::sleep(extra).await;
    }
    if faults.hangs(n) {
        hang_while(&inner, |f| f.hangs(n)).await;
    }
    let xml = !headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
    let over_concurrency = faults.max_concurrent > 0 && level > u64::from(faults.max_concurrent);
    let ctx = Req {
        inner: &inner,
        faults: &faults,
        realm: &realm,
        headers: &headers,
        params: &params,
        xml,
    };
    let reply = ctx.answer(n, over_concurrency, parsed);
    let status = reply
        .raw
        .as_ref()
        .map_or(reply.status.as_u16(), |raw| raw.status);
    {
        let mut s = inner.stats();
        match status {
            401 => s.unauthorized += 1,
            429 => s.throttled += 1,
            500.. => s.server_errors += 1,
            _ => {}
        }
        s.dropped += u64::from(reply.truncate);
    }
    inner.log(
        if is_count { "count" } else { "query" },
        status,
        text,
        reply.note,
    );
    into_response(reply)
}

struct Req<'a> {
    inner: &'a Inner,
    faults: &'a Faults,
    realm: &'a str,
    headers: &'a HeaderMap,
    params: &'a HashMap<String, String>,
    xml: bool,
}

impl Req<'_> {
    fn bearer(&self) -> Option<&str> {
        let v = self.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, tok) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(tok.trim())
            .filter(|t| !t.is_empty())
    }

    fn answer(
        &self,
        n: u64,
        over_concurrency: bool,
        parsed: Option<Result<query::Query, String>>,
    ) -> Reply {
        let inner = self.inner;
        let time = inner.time();
        let unauthorized = || {
            Reply::new(
                StatusCode::UNAUTHORIZED,
                envelope::auth_failed(&time),
                self.xml,
            )
        };
        let Some(token) = self.bearer().filter(|t| lock(&inner.oauth).access_valid(t)) else {
            return unauthorized();
        };
        if self.realm != inner.cfg.realm_id {
            return Reply::new(StatusCode::FORBIDDEN, envelope::forbidden(&time), self.xml);
        }
        let throttled = |note| Reply {
            retry_after: self.faults.throttle_retry_after_secs,
            ..Reply::new(
                StatusCode::TOO_MANY_REQUESTS,
                envelope::throttle(&time),
                self.xml || self.faults.throttle_as_xml,
            )
            .note(note)
        };
        if over_concurrency {
            return throttled("max_concurrent");
        }
        if !inner
            .rate
            .admit(self.faults.max_requests_per_minute, Instant::now())
        {
            return throttled("max_requests_per_minute");
        }
        let mut truncate = false;
        match self.faults.injected(n) {
            Some(Injected::ExpireAccess) => {
                lock(&inner.oauth).expire_access(token);
                return unauthorized().note("expire_access_every");
            }
            Some(Injected::Throttle) => return throttled("throttle_every"),
            Some(Injected::BareThrottle) => {
                return Reply {
                    retry_after: None,
                    ..throttled("bare_throttle_every")
                }
            }
            Some(Injected::ServerError) => {
                let k = inner.server_error_counter.fetch_add(1, Ordering::SeqCst);
                let status = if k.is_multiple_of(2) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                return Reply::new(
                    status,
                    envelope::system_error(status.as_u16(), &time),
                    self.xml,
                )
                .note("server_error_every");
            }
            Some(Injected::FaultIn200) => {
                return Reply::new(StatusCode::OK, envelope::system_error(500, &time), self.xml)
                    .note("fault_in_200_every");
            }
            Some(Injected::Drop) => truncate = true,
            None => {}
        }
        let mut reply = self.evaluate(parsed, &time);
        if let Some(m) = self
            .faults
            .malformed(n)
            .filter(|_| reply.status == StatusCode::OK)
        {
            reply.raw = m.apply(&mut reply.body);
            reply.xml = false;
            reply.note = Some("malformed_every");
            inner.stats().malformed += 1;
        }
        if truncate {
            reply.truncate = true;
            reply.note = Some("drop_every");
        }
        reply
    }

    fn evaluate(&self, parsed: Option<Result<query::Query, String>>, time: &str) -> Reply {
        let bad = |body| Reply::new(StatusCode::BAD_REQUEST, body, self.xml);
        let minor = self
            .params
            .get("minorversion")
            .and_then(|v| v.parse::<u32>().ok());
        if minor.is_none_or(|m| m < MIN_MINOR_VERSION) {
            return bad(envelope::fault(
                "ValidationFault",
                "2010",
                "Invalid minor version",
                &format!("minorversion is required and must be at least {MIN_MINOR_VERSION}"),
                time,
            ));
        }
        let q = match parsed {
            None => {
                return bad(envelope::parse_error(
                    "the query parameter is missing",
                    time,
                ))
            }
            Some(Err(e)) => return bad(envelope::parse_error(&e, time)),
            Some(Ok(q)) => q,
        };
        let store = &self.inner.store;
        let compiled = match store.read(&q.entity) {
            None => {
                return bad(envelope::parse_error(
                    &format!("Invalid context declaration: {}", q.entity),
                    time,
                ))
            }
            Some(t) => eval::compile(&q, &t),
        };
        let c = match compiled {
            Ok(c) => c,
            Err(e) => return bad(envelope::invalid_query(&e, time)),
        };
        if let Some(at) = self
            .faults
            .fail_window_containing
            .as_deref()
            .and_then(clock::parse_instant_ms)
        {
            if eval::window_ms(&c).is_some_and(|(lo, hi)| lo <= at && at <= hi) {
                let body = envelope::system_error(500, time);
                return Reply::new(StatusCode::INTERNAL_SERVER_ERROR, body, self.xml)
                    .note("fail_window_containing");
            }
        }
        if !c.count && c.start_position > 1 && self.faults.mutate_while_paging_every > 0 {
            let nth = self.inner.paging_counter.fetch_add(1, Ordering::SeqCst) + 1;
            if self.faults.mutate_now(nth) {
                self.mutate_first(&c);
            }
        }
        let Some(t) = store.read(c.entity) else {
            return bad(envelope::parse_error("entity vanished", time));
        };
        let rows = eval::select(&t, &store.ctx, &c);
        let body = if c.count {
            envelope::count(rows.len() as u64, time)
        } else {
            let page: Vec<Value> = eval::page(&rows, &c)
                .into_iter()
                .map(|r| t.render(&store.ctx, r))
                .collect();
            envelope::page(c.entity, page, c.start_position, time)
        };
        Reply::new(StatusCode::OK, body, self.xml)
    }

    /// `mutate_while_paging_every`: a user edits the first record of this result set.
    fn mutate_first(&self, c: &eval::Compiled) {
        let store = &self.inner.store;
        let first = store
            .read(c.entity)
            .and_then(|t| eval::select(&t, &store.ctx, c).first().map(|r| r.keys.id));
        if let Some(id) = first {
            if store
                .write(c.entity)
                .is_some_and(|mut t| t.touch(id, Utc::now()))
            {
                self.inner.stats().mutations += 1;
            }
        }
    }
}

/// Holds a request without answering while `still(current faults)` holds (at most ten
/// minutes), so a test can kill the client at this exact point.
pub(super) async fn hang_while(inner: &Inner, still: impl Fn(&Faults) -> bool) {
    inner.stats().hung += 1;
    let give_up = Instant::now() + Duration::from_secs(600);
    while still(&inner.faults()) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn raw_response(raw: RawBody) -> Response {
    Response::builder()
        .status(raw.status)
        .header(header::CONTENT_TYPE, raw.content_type)
        .body(Body::from(raw.bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn into_response(mut r: Reply) -> Response {
    if let Some(raw) = r.raw.take() {
        return raw_response(raw);
    }
    let (ctype, bytes) = if r.xml {
        (
            "application/xml;charset=UTF-8",
            envelope::to_xml(&r.body).into_bytes(),
        )
    } else {
        (
            "application/json;charset=UTF-8",
            serde_json::to_vec(&r.body).unwrap_or_default(),
        )
    };
    let mut b = Response::builder()
        .status(r.status)
        .header(header::CONTENT_TYPE, ctype);
    if r.status == StatusCode::UNAUTHORIZED {
        b = b.header(
            header::WWW_AUTHENTICATE,
            r#"Bearer realm="Intuit", error="invalid_token""#,
        );
    }
    if let Some(secs) = r.retry_after {
        b = b.header(header::RETRY_AFTER, secs.to_string());
    }
    let body = if r.truncate {
        // Promise the full length, send half, then fail the stream: hyper aborts the
        // connection and the client sees an incomplete message, not a clean HTTP error.
        b = b.header(header::CONTENT_LENGTH, bytes.len().to_string());
        let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
        Body::from_stream(Truncated {
            first: Some(half),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
            failed: false,
        })
    } else {
        Body::from(bytes)
    };
    b.body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A body that sends its first chunk, waits long enough for hyper to flush it, then fails.
struct Truncated {
    first: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
    failed: bool,
}

impl futures_core::Stream for Truncated {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        if self.failed {
            return Poll::Ready(None);
        }
        if self.pause.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.failed = true;
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox: injected drop",
        ))))
    }
}

async fn control_stats(State(inner): State<Arc<Inner>>) -> Json<super::Stats> {
    Json(inner.stats().clone())
}

async fn control_get_faults(State(inner): State<Arc<Inner>>) -> Json<Faults> {
    Json(inner.faults())
}

async fn control_put_faults(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            *inner.faults.write().unwrap_or_else(|e| e.into_inner()) = f.clone();
            Json(f).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn control_records(State(inner): State<Arc<Inner>>, Path(entity): Path<String>) -> Response {
    match inner.records(&entity) {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("unknown entity {entity}") })),
        )
            .into_response(),
    }
}

async fn control_touch(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
) -> Response {
    if inner.touch(&entity, &id) {
        Json(json!({ "touched": true, "entity": entity, "id": id })).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no {entity} with Id {id}") })),
        )
            .into_response()
    }
}
