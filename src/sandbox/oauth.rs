//! Intuit's OAuth2 endpoints: the token endpoint (refresh_token and authorization_code grants,
//! client credentials by HTTP Basic or in the form body) and an auto-approving authorize endpoint. Harsher than Intuit:
//! every refresh rotates the refresh token and retires the presented one at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{lock, Inner};

const CODE_TTL: Duration = Duration::from_secs(600);
const ACCOUNTING_SCOPE: &str = "com.intuit.quickbooks.accounting";

struct RefreshToken {
    expires: Instant,
    retired: bool,
}

struct Code {
    redirect_uri: String,
    expires: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// A token that was valid once and has been rotated away.
    Retired,
    /// Unknown, expired or already-used credentials.
    Invalid,
}

pub struct OAuth {
    /// Each live access token: when it expires, its number in issue order (1-based), and
    /// whether a request has presented it yet.
    access: HashMap<String, AccessToken>,
    issued: u64,
    refresh: HashMap<String, RefreshToken>,
    codes: HashMap<String, Code>,
    latest_refresh: String,
}

struct AccessToken {
    expires: Instant,
    number: u64,
    used: bool,
}

fn token(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl OAuth {
    /// Starts with one valid refresh token, as if the user had already connected the app.
    pub fn new(refresh_ttl: Duration) -> OAuth {
        let mut o = OAuth {
            access: HashMap::new(),
            issued: 0,
            refresh: HashMap::new(),
            codes: HashMap::new(),
            latest_refresh: String::new(),
        };
        o.new_refresh(refresh_ttl);
        o
    }

    fn new_refresh(&mut self, ttl: Duration) -> String {
        let t = token("AB11");
        self.refresh.insert(
            t.clone(),
            RefreshToken {
                expires: Instant::now() + ttl,
                retired: false,
            },
        );
        self.latest_refresh = t.clone();
        t
    }

    /// The latest refresh token; if it has since expired, a fresh one is minted.
    pub fn current_refresh_token(&mut self, ttl: Duration) -> String {
        let usable = self
            .refresh
            .get(&self.latest_refresh)
            .is_some_and(|r| !r.retired && r.expires > Instant::now());
        if usable {
            self.latest_refresh.clone()
        } else {
            self.new_refresh(ttl)
        }
    }

    pub fn access_valid(&self, tok: &str) -> bool {
        self.access
            .get(tok)
            .is_some_and(|a| a.expires > Instant::now())
    }

    /// Marks `tok` as presented; on its first presentation, returns its number in issue order.
    pub fn first_use(&mut self, tok: &str) -> Option<u64> {
        let a = self.access.get_mut(tok)?;
        let first = !a.used;
        a.used = true;
        first.then_some(a.number)
    }

    pub fn expire_access(&mut self, tok: &str) {
        self.access.remove(tok);
    }

    /// Issues an access token and a new refresh token.
    fn issue(&mut self, access_ttl: Duration, refresh_ttl: Duration) -> (String, String) {
        let a = token("eyJsbx.");
        self.issued += 1;
        self.access.insert(
            a.clone(),
            AccessToken {
                expires: Instant::now() + access_ttl,
                number: self.issued,
                used: false,
            },
        );
        (a, self.new_refresh(refresh_ttl))
    }

    pub fn refresh(
        &mut self,
        presented: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<(String, String), GrantError> {
        match self.refresh.get_mut(presented) {
            None => Err(GrantError::Invalid),
            Some(r) if r.retired => Err(GrantError::Retired),
            Some(r) if r.expires <= Instant::now() => Err(GrantError::Invalid),
            Some(r) => {
                r.retired = true;
                Ok(self.issue(access_ttl, refresh_ttl))
            }
        }
    }

    pub fn new_code(&mut self, redirect_uri: &str) -> String {
        let c = token("sbx-code-");
        self.codes.insert(
            c.clone(),
            Code {
                redirect_uri: redirect_uri.into(),
                expires: Instant::now() + CODE_TTL,
            },
        );
        c
    }

    /// A code works once, before it expires, and only with the redirect_uri it was issued for.
    pub fn redeem(
        &mut self,
        code: &str,
        redirect_uri: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<(String, String), GrantError> {
        let c = self.codes.remove(code).ok_or(GrantError::Invalid)?;
        if c.redirect_uri != redirect_uri || c.expires <= Instant::now() {
            return Err(GrantError::Invalid);
        }
        Ok(self.issue(access_ttl, refresh_ttl))
    }
}

/// Standard base64 (with or without padding), just enough for HTTP Basic.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `(client_id, client_secret)` from `Authorization: Basic ...`, raw (undecoded).
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// RFC 6749 says clients percent-encode id and secret before Basic auth (the oauth2 crate
/// does); many clients do not. Accept either spelling, nothing else.
fn same_credential(presented: &str, expected: &str) -> bool {
    let decoded = percent_decode(presented);
    presented == expected || decoded.as_deref() == Some(expected)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

pub async fn token_endpoint(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let faults = inner.faults();
    tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    if faults.hang_token_requests {
        super::gate::hang_while(&inner, |f| f.hang_token_requests).await;
    }
    inner.stats().token_requests += 1;
    let resp = token_response(&inner, &headers, &body);
    inner.log("token", resp.status().as_u16(), None, None);
    resp
}

fn token_response(inner: &Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    let cfg = &inner.cfg;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // The client authenticates with HTTP Basic (client_secret_basic) or with client_id and
    // client_secret in the form (client_secret_post); Intuit accepts both. Every credential
    // presented must be right.
    let in_form = match (field("client_id"), field("client_secret")) {
        (Some(id), Some(secret)) => Some((id.to_string(), secret.to_string())),
        _ => None,
    };
    let presented: Vec<(String, String)> = basic_auth(headers).into_iter().chain(in_form).collect();
    let valid = |(id, secret): &(String, String)| {
        same_credential(id, &cfg.client_id) && same_credential(secret, &cfg.client_secret)
    };
    if presented.is_empty() || !presented.iter().all(valid) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let (a_ttl, r_ttl) = (cfg.access_token_ttl, cfg.refresh_token_ttl);
    let result = match field("grant_type") {
        Some("refresh_token") => {
            let Some(rt) = field("refresh_token") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let r = lock(&inner.oauth).refresh(rt, a_ttl, r_ttl);
            match r {
                Ok(_) => inner.stats().refreshes += 1,
                Err(GrantError::Retired) => inner.stats().retired_refresh_token_uses += 1,
                Err(GrantError::Invalid) => {}
            }
            r
        }
        Some("authorization_code") => {
            let (Some(code), Some(redirect)) = (field("code"), field("redirect_uri")) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            lock(&inner.oauth).redeem(code, redirect, a_ttl, r_ttl)
        }
        Some(_) => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request"),
    };
    match result {
        Ok((access, refresh)) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "token_type": "bearer",
                "access_token": access,
                "expires_in": a_ttl.as_secs(),
                "refresh_token": refresh,
                "x_refresh_token_expires_in": r_ttl.as_secs(),
            })),
        )
            .into_response(),
        Err(_) => {
            // Intuit's words, whether the token is unknown, expired or rotated away.
            let what = if field("grant_type") == Some("authorization_code") {
                "authorization code"
            } else {
                "refresh token"
            };
            (
                StatusCode::BAD_REQUEST,
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(json!({
                    "error": "invalid_grant",
                    "error_description": format!("Incorrect or invalid {what}"),
                })),
            )
                .into_response()
        }
    }
}

/// `GET /connect/oauth2`: validates like Intuit, then auto-approves with a 302 back to the app.
pub async fn authorize_endpoint(
    State(inner): State<Arc<Inner>>,
    RawQuery(q): RawQuery,
) -> Response {
    let faults = inner.faults();
    tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let p = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let bad = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_request", "error_description": why })),
        )
            .into_response()
    };
    let resp = if p("client_id") != Some(inner.cfg.client_id.as_str()) {
        bad("unknown client_id")
    } else if p("response_type") != Some("code") {
        bad("response_type must be code")
    } else if !p("scope").is_some_and(|s| s.split(' ').any(|x| x == ACCOUNTING_SCOPE)) {
        bad("scope must include com.intuit.quickbooks.accounting")
    } else if p("state").is_none() {
        bad("state is required")
    } else {
        match p("redirect_uri").and_then(|r| url::Url::parse(r).ok().map(|u| (r, u))) {
            None => bad("redirect_uri must be an absolute URL"),
            Some((raw, mut url)) => {
                let code = lock(&inner.oauth).new_code(raw);
                url.query_pairs_mut()
                    .append_pair("code", &code)
                    .append_pair("state", p("state").unwrap_or_default())
                    .append_pair("realmId", &inner.cfg.realm_id);
                (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
            }
        }
    };
    inner.log("authorize", resp.status().as_u16(), None, None);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(
            base64_decode("c2FuZGJveC1jbGllbnQtaWQ6c2VjcmV0").unwrap(),
            b"sandbox-client-id:secret"
        );
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
        assert!(same_credential("a%2Bb%20c", "a+b c"));
        assert!(same_credential("a+b", "a+b"));
        assert!(!same_credential("a%2", "a%"));
    }

    #[test]
    fn rotation_and_retirement() {
        let ttl = Duration::from_secs(60);
        let mut o = OAuth::new(ttl);
        let first = o.current_refresh_token(ttl);
        let (access, second) = o.refresh(&first, ttl, ttl).unwrap();
        assert!(o.access_valid(&access));
        assert_eq!(o.current_refresh_token(ttl), second);
        assert_eq!(o.refresh(&first, ttl, ttl), Err(GrantError::Retired));
        assert_eq!(o.refresh("nope", ttl, ttl), Err(GrantError::Invalid));
        o.expire_access(&access);
        assert!(!o.access_valid(&access));
        let code = o.new_code("http://localhost/cb");
        assert_eq!(
            o.redeem(&code, "http://other/cb", ttl, ttl),
            Err(GrantError::Invalid)
        );
        let code = o.new_code("http://localhost/cb");
        assert!(o.redeem(&code, "http://localhost/cb", ttl, ttl).is_ok());
        assert_eq!(
            o.redeem(&code, "http://localhost/cb", ttl, ttl),
            Err(GrantError::Invalid)
        );
    }
}
