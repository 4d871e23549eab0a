//! What every data endpoint (query, CDC) goes through before it may answer: in-flight
//! accounting, injected latency, OAuth bearer, realm, concurrency and rate limits, injected
//! faults and `minorversion`; then stats, the request log and the JSON/XML response. One
//! path, so the endpoints cannot drift apart in how strict they are.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::faults::{Faults, Injected, RawBody};
use super::realm::Realm;
use super::{envelope, lock, Inner};

/// Since 2025-08-01 QBO serves a request without `minorversion`, or with one below 75, as 75.
const MIN_MINOR_VERSION: u32 = 75;

/// Which endpoint a request is for: how it is counted in `Stats` and named in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Query,
    Count,
    Cdc,
    /// `GET .../{entity}/{id}`, `.../companyinfo/{realm}`, `.../preferences`.
    Read,
    Batch,
    /// `GET .../reports/{name}`.
    Report,
}

impl Kind {
    fn log_name(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Count => "count",
            Kind::Cdc => "cdc",
            Kind::Read => "read",
            Kind::Batch => "batch",
            Kind::Report => "report",
        }
    }
}

/// Counts a request in flight for its whole life, including injected latency.
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

/// What an endpoint decided, before it becomes an HTTP response.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub xml: bool,
    retry_after: Option<u64>,
    /// Cut the connection halfway through the body.
    truncate: bool,
    /// Replaces the whole response (`malformed_every`).
    raw: Option<RawBody>,
    note: Option<&'static str>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Value, xml: bool) -> Reply {
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

    /// Names the injected fault that shaped this answer, for the request log.
    pub fn note(mut self, note: &'static str) -> Reply {
        self.note = Some(note);
        self
    }
}

/// A request that passed the gate, as the endpoint sees it: `realm` is the company its URL
/// names, which its access token was issued for.
pub struct Req<'a> {
    pub inner: &'a Inner,
    pub realm: &'a Realm,
    pub faults: &'a Faults,
    pub params: &'a HashMap<String, String>,
    pub xml: bool,
}

/// A request before the gate: the company its URL names, if the sandbox has it.
struct Ask<'a> {
    inner: &'a Inner,
    realm: Option<&'a Realm>,
    faults: &'a Faults,
    params: &'a HashMap<String, String>,
    xml: bool,
}

impl Ask<'_> {
    fn bad(&self, body: Value) -> Reply {
        Reply::new(StatusCode::BAD_REQUEST, body, self.xml)
    }
}

impl Req<'_> {
    pub fn ok(&self, body: Value) -> Reply {
        Reply::new(StatusCode::OK, body, self.xml)
    }

    pub fn bad(&self, body: Value) -> Reply {
        Reply::new(StatusCode::BAD_REQUEST, body, self.xml)
    }
}

/// The URL's query parameters (form-decoded).
pub fn params(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Runs one API request through the gate and, if it passes, `answer` (which sees the request
/// and the envelope `time`). `log_text` goes to the request log; never put secrets in it.
pub async fn serve(
    inner: &Inner,
    realm: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    kind: Kind,
    log_text: Option<&str>,
    answer: impl FnOnce(&Req<'_>, &str) -> Reply,
) -> Response {
    let (_in_flight, _) = InFlight::enter(inner);
    let company = inner.realm_ix(realm).map(|ix| &inner.realms[ix]);
    // The limits are per company: only this company's requests count against them.
    let (_realm_in_flight, level) = match company {
        Some(c) => {
            let (guard, level) = c.enter();
            (Some(guard), level)
        }
        None => (None, 0),
    };
    let faults = inner.faults();
    tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    // Query and CDC requests are numbered together for the every-Nth faults.
    let n = inner.query_counter.fetch_add(1, Ordering::SeqCst) + 1;
    {
        let mut s = inner.stats();
        match kind {
            Kind::Query => s.query_requests += 1,
            Kind::Count => {
                s.query_requests += 1;
                s.count_requests += 1;
            }
            Kind::Cdc => s.cdc_requests += 1,
            Kind::Read => s.read_requests += 1,
            Kind::Batch => s.batch_requests += 1,
            Kind::Report => s.report_requests += 1,
        }
    }
    // Counted on arrival: a client that gives up on a slow or held request still sent it.
    if let Some(extra) = faults.slow(n) {
        inner.stats().slowed += 1;
        tokio::time::sleep(extra).await;
    }
    if faults.hangs(n) {
        hang_while(inner, |f| f.hangs(n)).await;
    }
    let xml = !headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
    let over_concurrency = faults.max_concurrent > 0 && level > u64::from(faults.max_concurrent);
    let ask = Ask {
        inner,
        realm: company,
        faults: &faults,
        params,
        xml,
    };
    let time = inner.time();
    let reply = match gate(&ask, headers, n, over_concurrency, &time) {
        Gate::Stop(reply) => reply,
        Gate::Pass { truncate, realm } => {
            let req = Req {
                inner,
                realm,
                faults: &faults,
                params,
                xml,
            };
            let mut reply = answer(&req, &time);
            if reply.status == StatusCode::OK {
                if let Some(note) = faults.reshape(n, kind == Kind::Cdc, &mut reply.body) {
                    reply.note = Some(note);
                }
            }
            if let Some(m) = faults
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
    };
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
    if let Some(c) = company {
        let mut m = c.meter();
        match status {
            401 => m.stats.unauthorized += 1,
            403 => m.stats.forbidden += 1,
            429 => m.stats.throttled += 1,
            _ => {}
        }
    }
    let realm_name = company.map(|c| c.id.as_str());
    inner.log_for(realm_name, kind.log_name(), status, log_text, reply.note);
    into_response(reply)
}

enum Gate<'a> {
    /// Answer this instead of evaluating the request.
    Stop(Reply),
    /// Evaluate for `realm`; `truncate` means the injected drop fault cuts the answer.
    Pass { truncate: bool, realm: &'a Realm },
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(tok.trim())
        .filter(|t| !t.is_empty())
}

/// The checks, in QBO's order: auth, realm, limits, injected faults, minorversion.
fn gate<'a>(
    req: &Ask<'a>,
    headers: &HeaderMap,
    n: u64,
    over_concurrency: bool,
    time: &str,
) -> Gate<'a> {
    let inner = req.inner;
    let faults = req.faults;
    let unauthorized = || {
        Reply::new(
            StatusCode::UNAUTHORIZED,
            envelope::auth_failed(time),
            req.xml,
        )
    };
    let valid = bearer(headers).and_then(|t| Some((t, lock(&inner.oauth).access_realm(t)?)));
    let Some((token, token_realm)) = valid else {
        return Gate::Stop(unauthorized());
    };
    if faults.reject_fresh_access_every > 0 {
        let mut oauth = lock(&inner.oauth);
        let doomed = oauth
            .first_use(token)
            .is_some_and(|k| k.is_multiple_of(u64::from(faults.reject_fresh_access_every)));
        if doomed {
            oauth.expire_access(token);
            return Gate::Stop(unauthorized().note("reject_fresh_access_every"));
        }
    }
    // A token works only for the company it was issued for; an unknown realm is refused
    // the same way.
    let company = req
        .realm
        .filter(|c| inner.realms.get(token_realm).is_some_and(|t| t.id == c.id));
    let Some(company) = company else {
        let body = envelope::forbidden(time);
        return Gate::Stop(Reply::new(StatusCode::FORBIDDEN, body, req.xml));
    };
    let throttled = |note| Reply {
        retry_after: faults.throttle_retry_after_secs,
        ..Reply::new(
            StatusCode::TOO_MANY_REQUESTS,
            envelope::throttle(time),
            req.xml || faults.throttle_as_xml,
        )
        .note(note)
    };
    if over_concurrency {
        return Gate::Stop(throttled("max_concurrent"));
    }
    if !company.rate.admit(
        faults.max_requests_per_minute,
        Duration::from_secs(faults.rate_window_secs),
        Instant::now(),
    ) {
        return Gate::Stop(throttled("max_requests_per_minute"));
    }
    let mut truncate = false;
    match faults.injected(n) {
        Some(Injected::ExpireAccess) => {
            lock(&inner.oauth).expire_access(token);
            return Gate::Stop(unauthorized().note("expire_access_every"));
        }
        Some(Injected::Throttle) => return Gate::Stop(throttled("throttle_every")),
        Some(Injected::BareThrottle) => {
            return Gate::Stop(Reply {
                retry_after: None,
                ..throttled("bare_throttle_every")
            })
        }
        Some(Injected::ServerError) => {
            let k = inner.server_error_counter.fetch_add(1, Ordering::SeqCst);
            let status = if k.is_multiple_of(2) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = envelope::system_error(status.as_u16(), time);
            return Gate::Stop(Reply::new(status, body, req.xml).note("server_error_every"));
        }
        Some(Injected::FaultIn200) => {
            let body = envelope::system_error(500, time);
            return Gate::Stop(
                Reply::new(StatusCode::OK, body, req.xml).note("fault_in_200_every"),
            );
        }
        Some(Injected::Drop) => truncate = true,
        None => {}
    }
    // Missing or old is served as 75 (every answer here is 75's shape); only a value that
    // is not a number is refused.
    let minor = req.params.get("minorversion").map(|v| v.parse::<u32>());
    if let Some(Err(_)) = minor {
        return Gate::Stop(req.bad(envelope::fault(
            "ValidationFault",
            "2010",
            "Invalid minor version",
            &format!("minorversion must be a number; {MIN_MINOR_VERSION} or more"),
            time,
        )));
    }
    Gate::Pass {
        truncate,
        realm: company,
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
