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

/// An index into the sandbox's realms: every token, code and grant belongs to one company.
pub type RealmIx = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshState {
    Live,
    /// Rotated away by a refresh.
    Retired,
    /// Revoked by an operator (the user disconnected the app).
    Revoked,
}

struct RefreshToken {
    realm: RealmIx,
    expires: Instant,
    state: RefreshState,
}

struct Code {
    realm: RealmIx,
    redirect_uri: String,
    expires: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum GrantError {
    /// A token of this realm that was valid once and has been rotated away.
    Retired(RealmIx),
    /// A token of this realm that was revoked or has expired.
    Dead(RealmIx),
    /// Unknown or already-used credentials: no realm to blame.
    Invalid,
}

impl GrantError {
    /// The realm whose token was presented, when the sandbox knows it.
    pub fn realm(&self) -> Option<RealmIx> {
        match self {
            GrantError::Retired(r) | GrantError::Dead(r) => Some(*r),
            GrantError::Invalid => None,
        }
    }
}

/// What a successful grant hands out.
#[derive(Debug)]
pub struct Grant {
    pub realm: RealmIx,
    pub access: String,
    pub refresh: String,
}

pub struct OAuth {
    /// Each live access token: its realm, when it expires, its number in issue order
    /// (1-based), and whether a request has presented it yet.
    access: HashMap<String, AccessToken>,
    issued: u64,
    refresh: HashMap<String, RefreshToken>,
    codes: HashMap<String, Code>,
    /// The latest refresh token issued for each realm.
    latest_refresh: Vec<String>,
}

struct AccessToken {
    realm: RealmIx,
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
    /// Starts with one valid refresh token per realm, as if the user had already connected
    /// the app to each company.
    pub fn new(refresh_ttl: Duration, realms: usize) -> OAuth {
        let mut o = OAuth {
            access: HashMap::new(),
            issued: 0,
            refresh: HashMap::new(),
            codes: HashMap::new(),
            latest_refresh: vec![String::new(); realms],
        };
        for realm in 0..realms {
            o.new_refresh(realm, refresh_ttl);
        }
        o
    }

    fn new_refresh(&mut self, realm: RealmIx, ttl: Duration) -> String {
        let t = token("AB11");
        self.refresh.insert(
            t.clone(),
            RefreshToken {
                realm,
                expires: Instant::now() + ttl,
                state: RefreshState::Live,
            },
        );
        if let Some(latest) = self.latest_refresh.get_mut(realm) {
            latest.clone_from(&t);
        }
        t
    }

    /// The realm's latest refresh token; if it has since expired, been rotated away or
    /// revoked, a fresh one is minted (as if the user connected the company again).
    pub fn current_refresh_token(&mut self, realm: RealmIx, ttl: Duration) -> String {
        let latest = self.latest_refresh.get(realm).cloned().unwrap_or_default();
        let usable = self
            .refresh
            .get(&latest)
            .is_some_and(|r| r.state == RefreshState::Live && r.expires > Instant::now());
        if usable {
            latest
        } else {
            self.new_refresh(realm, ttl)
        }
    }

    /// The realm of a live access token.
    pub fn access_realm(&self, tok: &str) -> Option<RealmIx> {
        self.access
            .get(tok)
            .filter(|a| a.expires > Instant::now())
            .map(|a| a.realm)
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

    /// The user disconnects the app from a company: every refresh token of the realm is
    /// revoked and every access token of it stops working at once.
    pub fn revoke(&mut self, realm: RealmIx) {
        for r in self.refresh.values_mut().filter(|r| r.realm == realm) {
            if r.state == RefreshState::Live {
                r.state = RefreshState::Revoked;
            }
        }
        self.access.retain(|_, a| a.realm != realm);
    }

    /// The realm a token was issued for: any refresh token it ever issued, or a live access
    /// token.
    pub fn realm_of(&self, tok: &str) -> Option<RealmIx> {
        self.refresh
            .get(tok)
            .map(|r| r.realm)
            .or_else(|| self.access_realm(tok))
    }

    /// Issues an access token and a new refresh token for `realm`.
    fn issue(&mut self, realm: RealmIx, access_ttl: Duration, refresh_ttl: Duration) -> Grant {
        let a = token("eyJsbx.");
        self.issued += 1;
        self.access.insert(
            a.clone(),
            AccessToken {
                realm,
                expires: Instant::now() + access_ttl,
                number: self.issued,
                used: false,
            },
        );
        Grant {
            realm,
            access: a,
            refresh: self.new_refresh(realm, refresh_ttl),
        }
    }

    pub fn refresh(
        &mut self,
        presented: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Grant, GrantError> {
        let r = self.refresh.get_mut(presented).ok_or(GrantError::Invalid)?;
        match r.state {
            RefreshState::Retired => Err(GrantError::Retired(r.realm)),
            RefreshState::Revoked => Err(GrantError::Dead(r.realm)),
            RefreshState::Live if r.expires <= Instant::now() => Err(GrantError::Dead(r.realm)),
            RefreshState::Live => {
                r.state = RefreshState::Retired;
                let realm = r.realm;
                Ok(self.issue(realm, access_ttl, refresh_ttl))
            }
        }
    }

    pub fn new_code(&mut self, realm: RealmIx, redirect_uri: &str) -> String {
        let c = token("sbx-code-");
        self.codes.insert(
            c.clone(),
            Code {
                realm,
                redirect_uri: redirect_uri.into(),
                expires: Instant::now() + CODE_TTL,
            },
        );
        c
    }

    /// A code works once, before it expires, and only with the redirect_uri it was issued
    /// for; it connects the realm the user picked.
    pub fn redeem(
        &mut self,
        code: &str,
        redirect_uri: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Grant, GrantError> {
        let c = self.codes.remove(code).ok_or(GrantError::Invalid)?;
        if c.redirect_uri != redirect_uri || c.expires <= Instant::now() {
            return Err(GrantError::Invalid);
        }
        Ok(self.issue(c.realm, access_ttl, refresh_ttl))
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
pub(super) fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
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
pub(super) fn same_credential(presented: &str, expected: &str) -> bool {
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
    let realm = resp
        .extensions()
        .get::<ForRealm>()
        .and_then(|r| inner.realms.get(r.0))
        .map(|r| r.id.as_str());
    inner.log_for(realm, "token", resp.status().as_u16(), None, None);
    resp
}

/// Which company a token answer was about, for the request log.
#[derive(Clone, Copy)]
struct ForRealm(RealmIx);

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
            count_refresh(inner, &r);
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
    let realm = match &result {
        Ok(g) => Some(g.realm),
        Err(e) => e.realm(),
    };
    let mut resp = match result {
        Ok(grant) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({
                "token_type": "bearer",
                "access_token": grant.access,
                "expires_in": a_ttl.as_secs(),
                "refresh_token": grant.refresh,
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
    };
    if let Some(ix) = realm {
        resp.extensions_mut().insert(ForRealm(ix));
    }
    resp
}

/// Counts a refresh_token grant, globally and for the realm whose token was presented.
fn count_refresh(inner: &Inner, r: &Result<Grant, GrantError>) {
    {
        let mut s = inner.stats();
        match r {
            Ok(_) => s.refreshes += 1,
            Err(GrantError::Retired(_)) => s.retired_refresh_token_uses += 1,
            Err(_) => {}
        }
        s.invalid_grants += u64::from(r.is_err());
    }
    let ix = match r {
        Ok(g) => Some(g.realm),
        Err(e) => e.realm(),
    };
    let Some(realm) = ix.and_then(|ix| inner.realms.get(ix)) else {
        return;
    };
    let mut m = realm.meter();
    match r {
        Ok(_) => m.stats.refreshes += 1,
        Err(e) => {
            m.stats.invalid_grants += 1;
            m.stats.retired_token_uses += u64::from(matches!(e, GrantError::Retired(_)));
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
    // Intuit's consent page lets the user pick one of their companies; the sandbox
    // auto-approves the one named by `realmId` (sandbox-only), else its first company.
    let picked = match p("realmId") {
        None => Some(0),
        Some(id) => inner.realm_ix(id),
    };
    let resp = if p("client_id") != Some(inner.cfg.client_id.as_str()) {
        bad("unknown client_id")
    } else if p("response_type") != Some("code") {
        bad("response_type must be code")
    } else if !p("scope").is_some_and(|s| s.split(' ').any(|x| x == ACCOUNTING_SCOPE)) {
        bad("scope must include com.intuit.quickbooks.accounting")
    } else if p("state").is_none() {
        bad("state is required")
    } else if let Some(realm) = picked {
        match p("redirect_uri").and_then(|r| url::Url::parse(r).ok().map(|u| (r, u))) {
            None => bad("redirect_uri must be an absolute URL"),
            Some((raw, mut url)) => {
                let code = lock(&inner.oauth).new_code(realm, raw);
                url.query_pairs_mut()
                    .append_pair("code", &code)
                    .append_pair("state", p("state").unwrap_or_default())
                    .append_pair("realmId", &inner.realms[realm].id);
                (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
            }
        }
    } else {
        bad("realmId names no company of this sandbox")
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
        let mut o = OAuth::new(ttl, 1);
        let first = o.current_refresh_token(0, ttl);
        let g = o.refresh(&first, ttl, ttl).unwrap();
        assert_eq!(o.access_realm(&g.access), Some(0));
        assert_eq!(o.current_refresh_token(0, ttl), g.refresh);
        assert_eq!(
            o.refresh(&first, ttl, ttl).unwrap_err(),
            GrantError::Retired(0)
        );
        assert_eq!(
            o.refresh("nope", ttl, ttl).unwrap_err(),
            GrantError::Invalid
        );
        o.expire_access(&g.access);
        assert_eq!(o.access_realm(&g.access), None);
        let code = o.new_code(0, "http://localhost/cb");
        assert_eq!(
            o.redeem(&code, "http://other/cb", ttl, ttl).unwrap_err(),
            GrantError::Invalid
        );
        let code = o.new_code(0, "http://localhost/cb");
        assert!(o.redeem(&code, "http://localhost/cb", ttl, ttl).is_ok());
        assert_eq!(
            o.redeem(&code, "http://localhost/cb", ttl, ttl)
                .unwrap_err(),
            GrantError::Invalid
        );
    }

    #[test]
    fn tokens_belong_to_their_realm() {
        let ttl = Duration::from_secs(60);
        let mut o = OAuth::new(ttl, 3);
        let (a, b) = (
            o.current_refresh_token(0, ttl),
            o.current_refresh_token(1, ttl),
        );
        assert_ne!(a, b);
        let ga = o.refresh(&a, ttl, ttl).unwrap();
        let gb = o.refresh(&b, ttl, ttl).unwrap();
        assert_eq!((ga.realm, gb.realm), (0, 1));
        assert_eq!(o.access_realm(&gb.access), Some(1));
        // Rotation in one realm leaves the others alone.
        assert_eq!(o.current_refresh_token(1, ttl), gb.refresh);
        assert_eq!(o.refresh(&b, ttl, ttl).unwrap_err(), GrantError::Retired(1));
        let code = o.new_code(2, "http://localhost/cb");
        assert_eq!(
            o.redeem(&code, "http://localhost/cb", ttl, ttl)
                .unwrap()
                .realm,
            2
        );
    }

    #[test]
    fn revocation_kills_one_realm() {
        let ttl = Duration::from_secs(60);
        let mut o = OAuth::new(ttl, 2);
        let (t0, t1) = (
            o.current_refresh_token(0, ttl),
            o.current_refresh_token(1, ttl),
        );
        let g0 = o.refresh(&t0, ttl, ttl).unwrap();
        let g1 = o.refresh(&t1, ttl, ttl).unwrap();
        o.revoke(1);
        assert_eq!(
            o.refresh(&g1.refresh, ttl, ttl).unwrap_err(),
            GrantError::Dead(1)
        );
        assert_eq!(o.access_realm(&g1.access), None);
        assert_eq!(o.access_realm(&g0.access), Some(0));
        assert!(o.refresh(&g0.refresh, ttl, ttl).is_ok());
        // Connecting the company again gives a working token.
        let again = o.current_refresh_token(1, ttl);
        assert_ne!(again, g1.refresh);
        assert_eq!(o.refresh(&again, ttl, ttl).unwrap().realm, 1);
    }
}
