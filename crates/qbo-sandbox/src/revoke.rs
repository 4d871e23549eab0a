//! Intuit's revocation endpoint (`POST /oauth2/v1/tokens/revoke`, named in the discovery
//! document): an app disconnects itself from a company by revoking one of its tokens, which
//! ends the whole connection (every refresh and access token of that realm), as when the user
//! disconnects the app in QuickBooks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::oauth::{basic_auth, same_credential};
use super::{lock, Inner};

fn error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

/// Body `{"token": "..."}` (Intuit's JSON) or `token=...` (RFC 7009's form); the app
/// authenticates with HTTP Basic. 200 with an empty body once revoked. Harsher than RFC 7009,
/// a token the sandbox never issued is a 400, so a client revoking the wrong string hears it.
pub async fn revoke_endpoint(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = revoke(&inner, &headers, &body);
    inner.log("revoke", resp.status().as_u16(), None, None);
    resp
}

fn revoke(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let cfg = &inner.cfg;
    let client_ok = basic_auth(headers).is_some_and(|(id, secret)| {
        same_credential(&id, &cfg.client_id) && same_credential(&secret, &cfg.client_secret)
    });
    if !client_ok {
        return error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let Some(token) = presented_token(headers, body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let mut oauth = lock(&inner.oauth);
    let Some(ix) = oauth.realm_of(&token) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    oauth.revoke(ix);
    drop(oauth);
    inner.count_revocation(ix);
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// The `token` of a JSON or form body, by the request's Content-Type.
fn presented_token(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let token = if ctype.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body).ok()?;
        v.get("token")?.as_str()?.to_string()
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        form.get("token")?.clone()
    } else {
        return None;
    };
    Some(token).filter(|t| !t.is_empty())
}
