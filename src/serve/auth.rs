//! The bearer token every route but health requires (`QBO_SERVE_TOKEN`), and the session
//! cookie browsers carry instead (a form cannot send a header): `POST /login` checks the
//! token once and sets `qbo_session` to a value derived from it, never the token itself.
//! The cookie opens the pages only (never `/api/*` or `/metrics`), and a page's form post
//! not carrying the bearer header must come from this server's own page (`same_origin`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::AppState;

/// The cookie the status page's login sets.
pub const SESSION_COOKIE: &str = "qbo_session";

/// Lets the request through when no token is configured (loopback only), when it carries
/// `Authorization: Bearer <QBO_SERVE_TOKEN>`, or, for a page only, the session cookie
/// `POST /login` set (a request that sends a bearer header is judged by it alone).
/// Otherwise the JSON API and /metrics answer 401 and pages redirect to the login form.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(req).await;
    };
    let expected = expected.expose_secret();
    let page = is_page(req.uri().path());
    let allowed = match bearer(req.headers()) {
        Some(given) => same_secret(given, expected),
        None => {
            page && session_cookie(req.headers())
                .is_some_and(|given| same_secret(given, &session_value(expected)))
        }
    };
    if allowed {
        return next.run(req).await;
    }
    if page {
        return Redirect::to("/login").into_response();
    }
    unauthorized()
}

/// The token of an `Authorization: Bearer ..` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Refuses (403) a page's form post that another site could have made: unless it carries the
/// bearer header (which a form on another origin cannot send; `require_token` checks it),
/// its `Origin` header, or without one its `Referer`, must name this server as the request
/// reached it (`http` or `https`, and the `Host` header's host and port). Browsers send
/// `Origin` on every form post, so the page's own forms pass; a form on another port of the
/// same host (same-site, so it carries the cookie) does not.
pub async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::POST
        || bearer(req.headers()).is_some()
        || from_this_server(req.headers())
    {
        return next.run(req).await;
    }
    (
        StatusCode::FORBIDDEN,
        "refused: this form was not posted from this server's own page (its Origin or Referer \
         header does not name the address it was sent to). Open the status page at this \
         server's address and use its forms, or call the JSON API with \
         `Authorization: Bearer <QBO_SERVE_TOKEN>`.\n",
    )
        .into_response()
}

/// Whether `Origin` (or, without it, `Referer`) is `http(s)://` + the `Host` header.
fn from_this_server(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(Ok(url)) = source.map(url::Url::parse) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return false;
    }
    let Some(h) = url.host_str() else {
        return false;
    };
    let authority = match url.port() {
        Some(port) => format!("{h}:{port}"),
        None => h.to_string(),
    };
    authority.eq_ignore_ascii_case(host)
}

/// Pages are everything a browser navigates to: not the JSON API, not /metrics.
fn is_page(path: &str) -> bool {
    !(path == "/api" || path.starts_with("/api/") || path == "/metrics")
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "error": "missing or wrong bearer token: send `Authorization: Bearer <QBO_SERVE_TOKEN>`"
        })),
    )
        .into_response()
}

/// What the session cookie holds for `token`: hex SHA-256 of `qbo-session:<token>`. It
/// proves the browser was given the token without being it (a cookie leaked from a browser
/// profile opens the pages, never the API or /metrics, and never tells the token).
pub fn session_value(token: &str) -> String {
    let digest = Sha256::digest(format!("qbo-session:{token}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `qbo_session` cookie of a request, if it carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Compares in time independent of where the two differ: both are hashed first (so their
/// lengths leak nothing either) and the digests compared without an early exit.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_secrets() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("", "s3cret"));
        assert!(!same_secret("S3cret", "s3cret"));
    }

    #[test]
    fn the_session_value_is_derived_not_the_token() {
        let v = session_value("t0ps3cret");
        assert_eq!(v.len(), 64);
        assert!(!v.contains("t0ps3cret"));
        assert_eq!(v, session_value("t0ps3cret"));
        assert_ne!(v, session_value("t0ps3cret2"));
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; qbo_session=abc; b=2".parse().unwrap());
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(header::COOKIE, "qbo_sessionx=abc".parse().unwrap());
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn a_post_must_come_from_this_servers_own_address() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
            for (k, v) in pairs {
                h.insert(k.clone(), v.parse().unwrap());
            }
            from_this_server(&h)
        };
        assert!(with(&[(header::ORIGIN, "http://127.0.0.1:8080")]));
        assert!(with(&[(header::ORIGIN, "https://127.0.0.1:8080")]));
        assert!(with(&[(header::REFERER, "http://127.0.0.1:8080/runs/abc")]));
        assert!(!with(&[]));
        assert!(!with(&[(header::ORIGIN, "http://127.0.0.1:9090")]));
        assert!(!with(&[(header::ORIGIN, "http://evil.example")]));
        assert!(!with(&[(header::ORIGIN, "null")]));
        assert!(!with(&[(header::ORIGIN, "ftp://127.0.0.1:8080")]));
        // An Origin is believed over a Referer.
        assert!(!with(&[
            (header::ORIGIN, "http://127.0.0.1:9090"),
            (header::REFERER, "http://127.0.0.1:8080/"),
        ]));
    }

    #[test]
    fn api_and_metrics_are_not_pages() {
        assert!(is_page("/"));
        assert!(is_page("/runs/abc"));
        assert!(!is_page("/api/runs"));
        assert!(!is_page("/metrics"));
    }
}
