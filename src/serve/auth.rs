//! The bearer token every route but health requires (`QBO_SERVE_TOKEN`), and the session
//! cookie browsers carry instead (a form cannot send a header): `POST /login` checks the
//! token once and sets `qbo_session` to a value derived from it, never the token itself.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::AppState;

/// The cookie the status page's login sets.
pub const SESSION_COOKIE: &str = "qbo_session";

/// Lets the request through when no token is configured (loopback only), when it carries
/// `Authorization: Bearer <QBO_SERVE_TOKEN>` or the session cookie `POST /login` set.
/// Otherwise the JSON API and /metrics answer 401 and pages redirect to the login form.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(req).await;
    };
    let expected = expected.expose_secret();
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let by_header = given.is_some_and(|given| same_secret(given, expected));
    let by_cookie = session_cookie(req.headers())
        .is_some_and(|given| same_secret(given, &session_value(expected)));
    if by_header || by_cookie {
        return next.run(req).await;
    }
    if is_page(req.uri().path()) {
        return Redirect::to("/login").into_response();
    }
    unauthorized()
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
/// profile opens the page, not the API by header, and never tells the token).
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
    fn api_and_metrics_are_not_pages() {
        assert!(is_page("/"));
        assert!(is_page("/runs/abc"));
        assert!(!is_page("/api/runs"));
        assert!(!is_page("/metrics"));
    }
}
