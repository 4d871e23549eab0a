//! HTTP wiring: routes, the query and CDC endpoints (both behind `gate`), the `/__sandbox`
//! control API (see `control`), and graceful shutdown.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::gate::{self, Kind, Reply, Req};
use super::{
    cdc, clock, control, envelope, eval, lock, oauth, query, reports, rest, revoke, Inner,
};

pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route(
            "/v3/company/{realm}/query",
            get(query_endpoint).post(rest::query_post),
        )
        .route("/v3/company/{realm}/cdc", get(cdc_endpoint))
        .route("/v3/company/{realm}/batch", post(rest::batch))
        .route("/v3/company/{realm}/preferences", get(rest::preferences))
        .route("/v3/company/{realm}/exchangerate", get(super::rates::read))
        .route("/v3/company/{realm}/reports/{name}", get(reports::endpoint))
        .route("/v3/company/{realm}/{entity}/{id}", get(rest::read))
        .route("/.well-known/openid_configuration", get(rest::discovery))
        .route("/.well-known/openid_configuration/", get(rest::discovery))
        .route(
            "/.well-known/openid_sandbox_configuration",
            get(rest::discovery),
        )
        .route(
            "/.well-known/openid_sandbox_configuration/",
            get(rest::discovery),
        )
        .route("/oauth2/v1/tokens/bearer", post(oauth::token_endpoint))
        .route("/oauth2/v1/tokens/revoke", post(revoke::revoke_endpoint))
        .route("/connect/oauth2", get(oauth::authorize_endpoint))
        .route("/__sandbox/stats", get(control::stats))
        .route("/__sandbox/realms", get(control::realms))
        .route("/__sandbox/realms/{realm}/revoke", post(control::revoke))
        .route(
            "/__sandbox/faults",
            get(control::get_faults).put(control::put_faults),
        )
        .route("/__sandbox/records/{entity}", get(control::records))
        .route("/__sandbox/touch/{entity}/{id}", post(control::touch))
        .route("/__sandbox/delete/{entity}/{id}", post(control::delete))
        .route(
            "/__sandbox/deactivate/{entity}/{id}",
            post(control::deactivate),
        )
        .route("/__sandbox/deleted/{entity}", get(control::deleted))
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

async fn query_endpoint(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    query(&inner, &realm, raw, &headers, None).await
}

/// Answers a query: the text is `body` (a POSTed query) or else the `query` URL parameter.
pub async fn query(
    inner: &Inner,
    realm: &str,
    raw: Option<String>,
    headers: &HeaderMap,
    body: Option<String>,
) -> Response {
    let params = gate::params(raw);
    let text = body.or_else(|| params.get("query").cloned());
    let parsed = text.as_deref().map(query::parse);
    let kind = match parsed {
        Some(Ok(ref q)) if q.count => Kind::Count,
        _ => Kind::Query,
    };
    gate::serve(
        inner,
        realm,
        headers,
        &params,
        kind,
        text.as_deref(),
        |req, time| evaluate(req, parsed, time),
    )
    .await
}

async fn cdc_endpoint(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = gate::params(raw);
    let log_text = cdc::describe(&params);
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Cdc,
        Some(&log_text),
        |req, time| match cdc::answer(&req.realm.store, req.params, req.inner.now(), time) {
            Ok(body) => req.ok(body),
            Err(fault) => req.bad(fault),
        },
    )
    .await
}

pub fn evaluate(req: &Req<'_>, parsed: Option<Result<query::Query, String>>, time: &str) -> Reply {
    let q = match parsed {
        None => {
            return req.bad(envelope::parse_error(
                "the query parameter is missing",
                time,
            ))
        }
        Some(Err(e)) => return req.bad(envelope::parse_error(&e, time)),
        Some(Ok(q)) => q,
    };
    if q.entity.eq_ignore_ascii_case("ExchangeRate") {
        return super::rates::query_answer(req, &q, time);
    }
    let store = &req.realm.store;
    let compiled = match store.read(&q.entity) {
        None => {
            return req.bad(envelope::parse_error(
                &format!("Invalid context declaration: {}", q.entity),
                time,
            ))
        }
        Some(t) => eval::compile(&q, &t),
    };
    let c = match compiled {
        Ok(c) => c,
        Err(e) => return req.bad(envelope::invalid_query(&e, time)),
    };
    if let Some(at) = req
        .faults
        .fail_window_containing
        .as_deref()
        .and_then(clock::parse_instant_ms)
    {
        if eval::window_ms(&c).is_some_and(|(lo, hi)| lo <= at && at <= hi) {
            let body = envelope::system_error(500, time);
            return Reply::new(StatusCode::INTERNAL_SERVER_ERROR, body, req.xml)
                .note("fail_window_containing");
        }
    }
    if !c.count && c.start_position > 1 && req.faults.mutate_while_paging_every > 0 {
        let nth = req.inner.paging_counter.fetch_add(1, Ordering::SeqCst) + 1;
        if req.faults.mutate_now(nth) {
            mutate_first(req, &c);
        }
    }
    let Some(t) = store.read(c.entity) else {
        return req.bad(envelope::parse_error("entity vanished", time));
    };
    let rows = eval::select(&t, &store.ctx, &c);
    let body = if c.count {
        envelope::count(rows.len() as u64, time)
    } else {
        let all = super::custom_fields::wants_all(req.params);
        let page: Vec<Value> = req
            .faults
            .page(&rows, &c)
            .into_iter()
            .map(|r| super::custom_fields::serve(eval::output(&t, &store.ctx, r, &c), all))
            .collect();
        envelope::page(
            qbo_core::entities::list_key(c.entity),
            page,
            c.start_position,
            time,
        )
    };
    req.ok(body)
}

/// `mutate_while_paging_every`: a user edits the first record of this result set.
fn mutate_first(req: &Req<'_>, c: &eval::Compiled) {
    let (inner, store) = (req.inner, &req.realm.store);
    let first = store
        .read(c.entity)
        .and_then(|t| eval::select(&t, &store.ctx, c).first().map(|r| r.keys.id));
    if let Some(id) = first {
        if store
            .write(c.entity)
            .is_some_and(|mut t| t.touch(id, inner.now()))
        {
            inner.stats().mutations += 1;
        }
    }
}
