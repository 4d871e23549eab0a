//! The QBO API client: one shared HTTP connection pool, OAuth on every request, the realm's
//! rate limits, and retries with exponential backoff for the failures that are transient.

pub mod cdc;
pub mod limiter;
pub mod response;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::auth::{AuthError, Rejected, TokenManager};
use crate::config::{QboSettings, RateLimits, RetryPolicy};
pub use cdc::{CdcChange, CdcPage, ChangeSource};
pub use limiter::RealmLimiter;
pub use response::{Page, RawRecord};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("QBO throttled the request (429 ThrottleExceeded)")]
    Throttled { retry_after: Option<Duration> },
    #[error("QBO server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("QBO kept rejecting the access token (401), even right after refreshing it")]
    Unauthorized,
    #[error("QBO fault (HTTP {status}, code {code}, {kind}): {message} {detail}")]
    Fault {
        status: u16,
        code: String,
        kind: String,
        message: String,
        detail: String,
    },
    #[error("malformed QBO response: {0}")]
    Malformed(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ClientError {
    /// The one place that decides what is worth another attempt.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Throttled { .. }
            | ClientError::Server { .. }
            | ClientError::Transport(_)
            | ClientError::Malformed(_) => true,
            ClientError::Auth(AuthError::Endpoint(_)) => true,
            ClientError::Unauthorized | ClientError::Fault { .. } | ClientError::Auth(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Requests and retries spent, for the chunk's report row.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestCounters {
    pub requests: u32,
    pub retries: u32,
}

/// A page or count plus what support needs to trace it.
#[derive(Debug)]
pub struct Answer<T> {
    pub value: T,
    pub intuit_tid: Option<String>,
}

/// `SELECT COUNT(*)`'s answer and QBO's clock at the time.
pub type Count = (u64, Option<chrono::DateTime<chrono::Utc>>);

/// The small interface the backfill engine needs from QBO.
pub trait QuerySource: Send + Sync {
    fn realm_id(&self) -> &str;
    fn minor_version(&self) -> u32;
    fn fetch_page(
        &self,
        entity_qbo_name: &str,
        query: &str,
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<Output = Result<Answer<Page>, ClientError>> + Send;
    fn fetch_count(
        &self,
        query: &str,
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<Output = Result<Answer<Count>, ClientError>> + Send;
}

pub struct QboClient {
    http: reqwest::Client,
    query_url: Url,
    cdc_url: Url,
    minor_version: u32,
    minor_version_text: String,
    tokens: Arc<TokenManager>,
    limiter: Arc<RealmLimiter>,
    retry: RetryPolicy,
}

impl QboClient {
    pub fn new(
        settings: &QboSettings,
        tokens: Arc<TokenManager>,
        retry: RetryPolicy,
        limits: &RateLimits,
    ) -> Result<Self, ClientError> {
        let endpoint = |name: &str| {
            let mut url = settings.api_base_url.clone();
            url.path_segments_mut()
                .map_err(|_| {
                    ClientError::Transport("QBO_API_BASE_URL cannot be a base URL".into())
                })?
                .pop_if_empty()
                .extend(["v3", "company", &settings.realm_id, name]);
            Ok::<_, ClientError>(url)
        };
        let (query_url, cdc_url) = (endpoint("query")?, endpoint("cdc")?);
        let http = reqwest::Client::builder()
            .timeout(retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(limits.max_in_flight as usize)
            .user_agent(concat!("qbo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(QboClient {
            http,
            query_url,
            cdc_url,
            minor_version: settings.minor_version,
            minor_version_text: settings.minor_version.to_string(),
            tokens,
            limiter: Arc::new(RealmLimiter::new(limits)),
            retry,
        })
    }

    /// Sends `query`, retrying what is transient, and parses a 200 with `parse`.
    async fn execute<T>(
        &self,
        query: &str,
        counters: &mut RequestCounters,
        parse: impl Fn(&[u8]) -> Result<T, ClientError>,
    ) -> Result<Answer<T>, ClientError> {
        self.execute_get(&self.query_url, &[("query", query)], counters, parse)
            .await
    }

    /// GETs `url` with `params` (minorversion is added), retrying what is transient.
    async fn execute_get<T>(
        &self,
        url: &Url,
        params: &[(&str, &str)],
        counters: &mut RequestCounters,
        parse: impl Fn(&[u8]) -> Result<T, ClientError>,
    ) -> Result<Answer<T>, ClientError> {
        let mut attempt: u32 = 0;
        let mut just_refreshed = false;
        loop {
            attempt += 1;
            let token = self.tokens.access_token().await?;
            counters.requests += 1;
            let outcome = {
                let _permit = self.limiter.acquire().await;
                self.send_once(url, params, &token, &parse).await
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(ClientError::Unauthorized)
                    if !just_refreshed || attempt < self.retry.max_attempts =>
                {
                    if self.tokens.access_token_rejected(&token).await? == Rejected::AlreadyReplaced
                    {
                        // Another worker refreshed while this request was out with the old
                        // token: nothing was wrong with the new one, so this costs nothing.
                        attempt -= 1;
                        continue;
                    }
                    if just_refreshed {
                        // Rejected again right after a refresh. With several workers sharing
                        // one token, another worker's 401 and refresh can do that; it costs an
                        // attempt like any other failure instead of failing the chunk at once.
                        counters.retries += 1;
                        let delay = self.backoff(attempt, None);
                        tracing::warn!(
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            "QBO rejected a fresh access token; refreshing again"
                        );
                        tokio::time::sleep(delay).await;
                    } else {
                        tracing::info!(
                            "QBO answered 401; refreshing the access token and retrying"
                        );
                        attempt -= 1;
                    }
                    just_refreshed = true;
                }
                Err(err) if err.is_retryable() && attempt < self.retry.max_attempts => {
                    just_refreshed = false;
                    counters.retries += 1;
                    let delay = self.backoff(attempt, err.retry_after());
                    if let Some(wait) = err.retry_after() {
                        self.limiter.pause_for(wait);
                    }
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying QBO request");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => {
                    if err.is_retryable() {
                        return Err(ClientError::Transport(format!(
                            "gave up after {attempt} attempts: {err}"
                        )));
                    }
                    return Err(err);
                }
            }
        }
    }

    async fn send_once<T>(
        &self,
        url: &Url,
        params: &[(&str, &str)],
        token: &SecretString,
        parse: &impl Fn(&[u8]) -> Result<T, ClientError>,
    ) -> Result<Answer<T>, ClientError> {
        let response = self
            .http
            .get(url.clone())
            .query(params)
            .query(&[("minorversion", &self.minor_version_text)])
            .header(ACCEPT, "application/json")
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let intuit_tid = header_text(response.headers(), "intuit_tid");
        let retry_after = parse_retry_after(response.headers());
        let body = response.bytes().await.map_err(transport_error)?;
        let result = match status {
            StatusCode::OK => parse(&body),
            StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized),
            StatusCode::TOO_MANY_REQUESTS => Err(ClientError::Throttled { retry_after }),
            s if s.is_server_error() => Err(match response::error_from_body(s.as_u16(), &body) {
                ClientError::Throttled { .. } => ClientError::Throttled { retry_after },
                ClientError::Fault {
                    message, detail, ..
                } => ClientError::Server {
                    status: s.as_u16(),
                    message: format!("{message} {detail}").trim().to_string(),
                },
                other => other,
            }),
            s => Err(match response::error_from_body(s.as_u16(), &body) {
                ClientError::Throttled { .. } => ClientError::Throttled { retry_after },
                other => other,
            }),
        };
        if let Err(e) = &result {
            tracing::debug!(status = status.as_u16(), intuit_tid = ?intuit_tid, error = %e, "QBO request failed");
        }
        result.map(|value| Answer { value, intuit_tid })
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::thread_rng();
        if let Some(wait) = retry_after {
            // QBO said when; add a little jitter so parallel workers do not return in lockstep.
            return wait + Duration::from_millis(rng.gen_range(0..=250));
        }
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.retry.max_delay);
        // "Equal jitter": at least half the exponential delay, at most all of it.
        let half = exp / 2;
        half + Duration::from_millis(rng.gen_range(0..=half.as_millis().max(1) as u64))
    }
}

impl QuerySource for QboClient {
    fn realm_id(&self) -> &str {
        self.tokens.realm_id()
    }

    fn minor_version(&self) -> u32 {
        self.minor_version
    }

    async fn fetch_page(
        &self,
        entity_qbo_name: &str,
        query: &str,
        counters: &mut RequestCounters,
    ) -> Result<Answer<Page>, ClientError> {
        self.execute(query, counters, |b| {
            response::parse_page(b, entity_qbo_name)
        })
        .await
    }

    async fn fetch_count(
        &self,
        query: &str,
        counters: &mut RequestCounters,
    ) -> Result<Answer<Count>, ClientError> {
        self.execute(query, counters, response::parse_count).await
    }
}

fn transport_error(e: reqwest::Error) -> ClientError {
    // reqwest's message names the URL (query text, no token: that travels in a header).
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the response"
    } else {
        "transport error"
    };
    ClientError::Transport(format!("{kind}: {}", crate::errors::chain(&e)))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .map(|d| d.min(Duration::from_secs(3600)))
}
