//! The endpoints third-party clients use besides `GET .../query` and CDC: the query as a POST
//! body, reads by id, the batch endpoint, and Intuit's OpenID discovery document. Each goes
//! through the same gate as the query endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::gate::{self, Kind, Reply, Req};
use super::{envelope, query, server, Inner};
use qbo_core::entities::ENTITIES;

/// Intuit: "The maximum number of payloads in a single batch request is 30."
pub const BATCH_MAX_ITEMS: usize = 30;
/// Intuit: "The maximum number of batch requests is 40 per minute per realmID."
pub const BATCH_PER_MINUTE: u32 = 40;

/// `POST .../query` with the query as the body (`Content-Type: application/text`), the way
/// python-quickbooks and Intuit's SDKs send every query.
pub async fn query_post(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let textual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase())
        .is_some_and(|v| v.starts_with("application/text") || v.starts_with("text/plain"));
    let text = if textual {
        String::from_utf8(body.to_vec()).ok()
    } else {
        None
    };
    match text {
        Some(t) => server::query(&inner, &realm, raw, &headers, Some(t)).await,
        None => unsupported_body(&inner, &realm, raw, &headers).await,
    }
}

/// A POSTed query whose body is not `application/text`: QBO refuses it as unparseable.
async fn unsupported_body(
    inner: &Inner,
    realm: &str,
    raw: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let params = gate::params(raw);
    gate::serve(
        inner,
        realm,
        headers,
        &params,
        Kind::Query,
        None,
        |req, time| {
            req.bad(envelope::parse_error(
                "a POSTed query needs Content-Type: application/text and the query as its body",
                time,
            ))
        },
    )
    .await
}

/// QBO's 610: read by id of a record that does not exist (or was deleted).
pub fn object_not_found(time: &str) -> Value {
    json!({
        "Fault": {
            "Error": [{
                "Message": "Object Not Found",
                "Detail": "Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees.",
                "code": "610",
                "element": "",
            }],
            "type": "ValidationFault",
        },
        "time": time,
    })
}

/// A path QBO has no resource for.
fn unsupported_operation(path: &str, time: &str) -> Value {
    envelope::fault(
        "ValidationFault",
        "500",
        "Unsupported Operation",
        &format!("Operation Could not find resource for relative : {path} is not supported."),
        time,
    )
}

/// `GET .../{entity}/{id}`: `{"Invoice": {...}, "time": ...}`. The entity is matched without
/// regard to case (QBO's paths are lower case: `journalentry`); CompanyInfo is read by the
/// realm id, as QBO serves it. Inactive names are served; deleted records are a 610.
pub async fn read(
    State(inner): State<Arc<Inner>>,
    Path((realm, entity, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = gate::params(raw);
    let log = format!("{entity}/{id}");
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Read,
        Some(&log),
        |req, time| read_answer(req, &realm, &entity, &id, time),
    )
    .await
}

/// `GET .../preferences`: the company's one Preferences object.
pub async fn preferences(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = gate::params(raw);
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Read,
        Some("preferences"),
        |req, time| read_answer(req, &realm, "preferences", "1", time),
    )
    .await
}

fn read_answer(req: &Req<'_>, realm: &str, entity: &str, id: &str, time: &str) -> Reply {
    let Some(e) = ENTITIES
        .iter()
        .find(|e| e.qbo_name.eq_ignore_ascii_case(entity))
    else {
        let path = format!("/v3/company/{realm}/{entity}/{id}");
        return req.bad(unsupported_operation(&path, time));
    };
    let id = match e.qbo_name {
        // QBO reads CompanyInfo at `companyinfo/{realm}`; the record's own Id is 1.
        "CompanyInfo" if id == realm => Some(1),
        "CompanyInfo" => None,
        _ => id.parse::<u64>().ok(),
    };
    let store = &req.realm.store;
    let doc = id.and_then(|id| {
        let t = store.read(e.qbo_name)?;
        let row = t.rows.get(&id)?.clone();
        let all = super::custom_fields::wants_all(req.params);
        Some(super::custom_fields::serve(t.render(&store.ctx, &row), all))
    });
    match doc {
        Some(doc) => req.ok(json!({ e.list_key: doc, "time": time })),
        None => req.bad(object_not_found(time)),
    }
}

/// `POST .../batch`: `{"BatchItemRequest": [{"bId": "1", "Query": "SELECT ..."}, ...]}`,
/// at most 30 items and 40 calls a minute per company (besides the call's one of the 500). Queries are answered as the query
/// endpoint would answer them; the sandbox is read-only, so create/update/delete items get a
/// Fault each. Answer: `{"BatchItemResponse": [{"bId", "QueryResponse" | "Fault"}], "time"}`.
pub async fn batch(
    State(inner): State<Arc<Inner>>,
    Path(realm): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = gate::params(raw);
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    gate::serve(
        &inner,
        &realm,
        &headers,
        &params,
        Kind::Batch,
        None,
        |req, time| match parsed {
            Ok(v) => batch_answer(req, &v, time),
            Err(e) => req.bad(envelope::fault(
                "ValidationFault",
                "2020",
                "Required param missing, need to supply the required value for the API",
                &format!("the batch body is not JSON: {e}"),
                time,
            )),
        },
    )
    .await
}

fn batch_answer(req: &Req<'_>, body: &Value, time: &str) -> Reply {
    let invalid = |detail: &str| {
        req.bad(envelope::fault(
            "ValidationFault",
            "2020",
            "Required param missing, need to supply the required value for the API",
            detail,
            time,
        ))
    };
    let Some(items) = body.get("BatchItemRequest").and_then(Value::as_array) else {
        return invalid("BatchItemRequest is required: a list of 1 to 30 items");
    };
    if items.is_empty() {
        return invalid("BatchItemRequest is empty; send 1 to 30 items");
    }
    if items.len() > BATCH_MAX_ITEMS {
        return req.bad(envelope::fault(
            "ValidationFault",
            "2030",
            "Invalid parameter",
            &format!(
                "The batch holds {} items; the maximum number of items in a batch is {BATCH_MAX_ITEMS}.",
                items.len()
            ),
            time,
        ));
    }
    let Some(bids) = items
        .iter()
        .map(|item| item.get("bId").and_then(Value::as_str))
        .collect::<Option<Vec<&str>>>()
    else {
        return invalid("every BatchItemRequest needs a bId");
    };
    // The same window as the 500 a minute (`rate_window_secs`), so a test can shorten both.
    let window = Duration::from_secs(req.faults.rate_window_secs);
    if !req
        .realm
        .batch_rate
        .admit(BATCH_PER_MINUTE, window, Instant::now())
    {
        return Reply::new(
            StatusCode::TOO_MANY_REQUESTS,
            envelope::throttle(time),
            req.xml,
        )
        .note("batch_per_minute");
    }
    req.inner.stats().batch_items += items.len() as u64;
    let out: Vec<Value> = items
        .iter()
        .zip(bids)
        .map(|(item, bid)| batch_item(req, item, bid, time))
        .collect();
    req.ok(json!({ "BatchItemResponse": out, "time": time }))
}

/// One item's answer: `{"bId", "QueryResponse"}` as the query endpoint would answer the
/// query (its faults, `fail_window_containing` included, become this item's Fault), or
/// `{"bId", "Fault"}`.
fn batch_item(req: &Req<'_>, item: &Value, bid: &str, time: &str) -> Value {
    let n = req.inner.batch_item_counter.fetch_add(1, Ordering::SeqCst) + 1;
    if req.faults.batch_item_fails(n) {
        let mut body = envelope::system_error(500, time);
        return json!({ "bId": bid, "Fault": body["Fault"].take() });
    }
    match item.get("Query").and_then(Value::as_str) {
        Some(text) => {
            let reply = server::evaluate(req, Some(query::parse(text)), time);
            let mut body = reply.body;
            match body.get_mut("QueryResponse") {
                Some(qr) => json!({ "bId": bid, "QueryResponse": qr.take() }),
                None => json!({ "bId": bid, "Fault": body["Fault"].take() }),
            }
        }
        None => json!({
            "bId": bid,
            "Fault": {
                "Error": [{
                    "Message": "Operation not supported",
                    "Detail": "The sandbox is read-only: a batch item can only be a Query.",
                    "code": "500",
                    "element": "",
                }],
                "type": "ValidationFault",
            },
        }),
    }
}

/// Intuit's OpenID discovery document (`/.well-known/openid_configuration`), which
/// intuit-oauth reads to find the token endpoint; every URL points at this sandbox.
pub async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    let base = format!("http://{}", inner.addr);
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/connect/oauth2"),
        "token_endpoint": format!("{base}/oauth2/v1/tokens/bearer"),
        "userinfo_endpoint": format!("{base}/v1/openid_connect/userinfo"),
        "revocation_endpoint": format!("{base}/oauth2/v1/tokens/revoke"),
        "jwks_uri": format!("{base}/oauth2/v1/keys"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    }))
    .into_response()
}
