//! The QBO API client: one shared HTTP connection pool, OAuth on every request, the realm's
//! rate limits, and retries with exponential backoff for the failures that are transient.

mod batch;
pub mod cdc;
pub mod ledger;
pub mod limiter;
pub mod rates;
mod report;
pub mod response;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::auth::{AuthError, Rejected, TokenManager};
use crate::config::{QboSettings, RateLimits, RetryPolicy};
use crate::metrics::process::{self as process_metrics, Outcome, RetryReason};
use crate::store::throttle::SharedBudget;
pub use batch::BATCH_MAX_ITEMS;
pub use cdc::{CdcChange, CdcPage, ChangeSource};
use ledger::Ledger;
pub use limiter::RealmLimiter;
use limiter::{Denied, RENEW_EVERY};
pub use response::{Page, RawRecord};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("QBO throttled the request (429 ThrottleExceeded)")]
    Throttled { retry_after: Option<Duration> },
    #[error("QBO server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("request failed: {kind}")]
    Transport {
        kind: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("QBO_API_BASE_URL cannot be a base URL: {0}")]
    BadBaseUrl(Url),
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
    /// QBO answered one query of a batch with a Fault; the batch's other answers stand.
    #[error("QBO answered this batch item with a fault (code {code}, {kind}): {message} {detail}")]
    BatchItemFault {
        code: String,
        kind: String,
        message: String,
        detail: String,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A retryable failure that kept happening; `last` is the final attempt's error.
    #[error("gave up after {attempts} attempts")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<ClientError>,
    },
    #[error(
        "QBO has throttled this company without a break for {} s, and the next try would pass \
         the limit of {} s (--max-throttle-secs / QBO_MAX_THROTTLE_SECS); something else may be \
         using the company's 500 requests a minute",
        .throttled_for.as_secs(),
        .limit.as_secs()
    )]
    ThrottledTooLong {
        throttled_for: Duration,
        limit: Duration,
        #[source]
        last: Box<ClientError>,
    },
    /// The app's reads this month reached `QBO_MONTHLY_READ_CAP`: no request starts until
    /// the cap is raised or the month ends. Nothing that was read is lost; what was not read
    /// stays to do.
    #[error(
        "the app's QBO reads this month ({reads}) reached QBO_MONTHLY_READ_CAP ({cap}); no \
         more requests until the cap is raised or the month (UTC) ends, then continue with \
         --resume or --retry-failed (see runbooks/request-budget.md)"
    )]
    ReadCapReached { reads: u64, cap: u64 },
    /// The company's budget could not be leased from Postgres.
    #[error("could not lease the company's request budget from Postgres: {0}")]
    Budget(String),
    /// Ctrl-C / SIGTERM: the request, its retries and its waits were abandoned.
    #[error("interrupted")]
    Cancelled,
}

impl From<Denied> for ClientError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Cancelled => ClientError::Cancelled,
            Denied::ReadCap { reads, cap } => ClientError::ReadCapReached { reads, cap },
            Denied::Unavailable(e) => ClientError::Budget(e),
        }
    }
}

impl ClientError {
    /// The one place that decides what is worth another attempt. A throttle is retried
    /// too, but without costing an attempt (see `execute_call`).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Throttled { .. }
            | ClientError::Server { .. }
            | ClientError::Transport { .. }
            | ClientError::Malformed(_) => true,
            ClientError::Auth(AuthError::Endpoint(_)) => true,
            // QBO's own hiccup (SystemFault) may pass if the query is asked again; a
            // ValidationFault will not.
            ClientError::BatchItemFault { kind, .. } => kind.eq_ignore_ascii_case("SystemFault"),
            ClientError::Unauthorized
            | ClientError::Fault { .. }
            | ClientError::Auth(_)
            | ClientError::BadBaseUrl(_)
            | ClientError::GaveUp { .. }
            | ClientError::ThrottledTooLong { .. }
            | ClientError::ReadCapReached { .. }
            | ClientError::Budget(_)
            | ClientError::Cancelled => false,
        }
    }

    /// How an attempt that failed with this error ended, for `qbo_process_requests`.
    fn outcome(&self) -> Outcome {
        match self {
            ClientError::Throttled { .. } => Outcome::Throttled,
            ClientError::Unauthorized => Outcome::Unauthorized,
            ClientError::Server { .. } => Outcome::ServerError,
            ClientError::Fault { .. } | ClientError::BatchItemFault { .. } => Outcome::Fault,
            ClientError::Malformed(_) => Outcome::Malformed,
            ClientError::Transport { .. } => Outcome::TransportError,
            ClientError::Cancelled => Outcome::Cancelled,
            _ => Outcome::Other,
        }
    }

    /// An answer from QBO other than a throttle (which ends a stretch of throttling).
    fn is_answer(&self) -> bool {
        !matches!(
            self,
            ClientError::Throttled { .. }
                | ClientError::Transport { .. }
                | ClientError::Auth(_)
                | ClientError::ReadCapReached { .. }
                | ClientError::Budget(_)
                | ClientError::Cancelled
        )
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
    /// Many `SELECT COUNT(*)` at once: one answer per query, in order. A query QBO answered
    /// with a Fault fails only its own slot; the outer `Err` is for cancellation or a whole
    /// call that failed after its retries. Every query counts as one request in
    /// `counters.requests` (QBO meters a batch's items one by one). This default asks the
    /// queries one by one; `QboClient` sends them in batch calls of up to 30.
    fn fetch_counts(
        &self,
        queries: &[String],
        counters: &mut RequestCounters,
    ) -> impl std::future::Future<
        Output = Result<Vec<Result<Answer<Count>, ClientError>>, ClientError>,
    > + Send {
        async move {
            let mut answers = Vec::with_capacity(queries.len());
            for query in queries {
                match self.fetch_count(query, counters).await {
                    Err(ClientError::Cancelled) => return Err(ClientError::Cancelled),
                    answer => answers.push(answer),
                }
            }
            Ok(answers)
        }
    }
}

pub struct QboClient {
    http: reqwest::Client,
    query_url: Url,
    cdc_url: Url,
    batch_url: Url,
    minor_version: u32,
    minor_version_text: String,
    tokens: Arc<TokenManager>,
    limiter: Arc<RealmLimiter>,
    limits: RateLimits,
    retry: RetryPolicy,
    /// Ctrl-C / SIGTERM: ends retries, backoff sleeps, limiter waits and pauses at once.
    cancel: CancellationToken,
    /// Renews this process's seats in the company's shared budget (see `store::throttle`).
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for QboClient {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
    }
}

impl QboClient {
    pub fn new(
        settings: &QboSettings,
        tokens: Arc<TokenManager>,
        retry: RetryPolicy,
        limits: &RateLimits,
        cancel: CancellationToken,
    ) -> Result<Self, ClientError> {
        let endpoint = |name: &str| {
            let mut url = settings.api_base_url.clone();
            url.path_segments_mut()
                .map_err(|_| ClientError::BadBaseUrl(settings.api_base_url.clone()))?
                .pop_if_empty()
                .extend(["v3", "company", &settings.realm_id, name]);
            Ok::<_, ClientError>(url)
        };
        let (query_url, cdc_url) = (endpoint("query")?, endpoint("cdc")?);
        let batch_url = endpoint("batch")?;
        let http = reqwest::Client::builder()
            .timeout(retry.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(limits.max_in_flight as usize)
            .user_agent(concat!("qbo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                kind: "building the HTTP client",
                source,
            })?;
        Ok(QboClient {
            http,
            query_url,
            cdc_url,
            batch_url,
            minor_version: settings.minor_version,
            minor_version_text: settings.minor_version.to_string(),
            tokens,
            limiter: Arc::new(RealmLimiter::new(limits, Ledger::local())),
            limits: limits.clone(),
            retry,
            cancel,
            renewer: None,
        })
    }

    /// Leases the company's budget from Postgres, shared with every other qbo process and
    /// machine of the company, instead of keeping it in this process: requests and batch
    /// calls per minute, seats in flight, 429 pauses and the app's monthly reads. Seats are
    /// renewed every `RENEW_EVERY` until the client is dropped or `finish`ed.
    pub async fn share_budget(mut self, budget: SharedBudget) -> Self {
        let limiter = Arc::new(RealmLimiter::new(&self.limits, Ledger::Shared(budget)));
        self.limiter = limiter.clone();
        let cancel = self.cancel.clone();
        self.renewer = Some(tokio::spawn(async move {
            loop {
                let next = tokio::time::Instant::now() + RENEW_EVERY;
                if limiter::sleep_until(&cancel, next).await.is_err() {
                    return;
                }
                if let Err(e) = limiter.renew(false).await {
                    tracing::debug!(error = %e, "renewing the company's seats failed; will try again");
                }
            }
        }));
        self
    }

    /// Gives this process's seats back and records its last reads, so the company's other
    /// processes need not wait for the seats' lease to end. Call it before the process ends
    /// (it waits at most a second, so an interrupted process still exits at once).
    pub async fn finish(&self) {
        if let Some(task) = &self.renewer {
            task.abort();
        }
        if !self.limiter.ledger().is_shared() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(1), self.limiter.renew(true)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "could not give the company's seats back"),
            Err(_) => tracing::debug!("Postgres did not answer within 1 s; the seats free themselves when their lease ends"),
        }
    }

    /// The QBO reads this month as of this process's last lease: the app's under a read cap,
    /// the company's own without one.
    pub fn month_reads(&self) -> u64 {
        self.limiter.month_reads()
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
        self.execute_call(Call::Get { url, params }, counters, parse)
            .await
    }

    /// Sends `call` (minorversion is added), retrying what is transient: a 401 refreshes the
    /// token, a 429 pauses the company without costing an attempt, 5xx, transport errors and
    /// malformed answers back off until `max_attempts`, then `GaveUp`.
    async fn execute_call<T>(
        &self,
        call: Call<'_>,
        counters: &mut RequestCounters,
        parse: impl Fn(&[u8]) -> Result<T, ClientError>,
    ) -> Result<Answer<T>, ClientError> {
        let metered = call.metered();
        let mut attempt: u32 = 0;
        let mut just_refreshed = false;
        loop {
            attempt += 1;
            if self.cancel.is_cancelled() {
                return Err(ClientError::Cancelled);
            }
            // Never cut short: a refresh dropped after QBO rotated the refresh token, but
            // before it was saved, would lose the company's only valid token.
            let token = self.tokens.access_token().await?;
            let permit = match call {
                Call::Get { .. } => self.limiter.acquire(&self.cancel).await,
                Call::Batch { .. } => self.limiter.acquire_batch(&self.cancel).await,
            }?;
            counters.requests += metered;
            self.limiter.count_reads(u64::from(metered));
            let outcome = tokio::select! {
                _ = self.cancel.cancelled() => Err(ClientError::Cancelled),
                r = self.send_once(&call, &token, &parse) => r,
            };
            drop(permit);
            if outcome.as_ref().err().is_none_or(ClientError::is_answer) {
                self.limiter.answered();
            }
            let realm = self.tokens.realm_id();
            let label = outcome
                .as_ref()
                .err()
                .map_or(Outcome::Ok, ClientError::outcome);
            process_metrics::request(realm, label, metered);
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(ClientError::Throttled { retry_after }) => {
                    // About the company's quota, not this request: no attempt is spent.
                    attempt -= 1;
                    just_refreshed = false;
                    counters.retries += metered;
                    process_metrics::retry(realm, RetryReason::Throttled, metered);
                    self.throttled(retry_after).await?;
                }
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
                        counters.retries += metered;
                        process_metrics::retry(realm, RetryReason::Unauthorized, metered);
                        let delay = self.backoff(attempt);
                        tracing::warn!(
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            "QBO rejected a fresh access token; refreshing again"
                        );
                        self.sleep(delay).await?;
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
                    counters.retries += metered;
                    process_metrics::retry(realm, RetryReason::Transient, metered);
                    let delay = self.backoff(attempt);
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %crate::errors::chain(&err), "retrying QBO request");
                    self.sleep(delay).await?;
                }
                Err(err) if err.is_retryable() => {
                    return Err(ClientError::GaveUp {
                        attempts: attempt,
                        last: Box::new(err),
                    })
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A 429: pauses every request of the company (this process's and, through Postgres,
    /// every other qbo process's) for Retry-After, or `throttle_pause` without one. Fails
    /// only when QBO has throttled the company without a break for longer than allowed.
    async fn throttled(&self, retry_after: Option<Duration>) -> Result<(), ClientError> {
        let wait = retry_after.unwrap_or(self.retry.throttle_pause);
        let throttled_for = self.limiter.throttled();
        if throttled_for + wait > self.retry.max_throttle {
            return Err(ClientError::ThrottledTooLong {
                throttled_for,
                limit: self.retry.max_throttle,
                last: Box::new(ClientError::Throttled { retry_after }),
            });
        }
        if !self.limiter.pause_for(wait) {
            // Another worker's 429 of the same burst already paused, logged and recorded it.
            return Ok(());
        }
        tracing::warn!(
            pause_ms = wait.as_millis() as u64,
            retry_after_given = retry_after.is_some(),
            throttled_for_secs = throttled_for.as_secs(),
            "QBO throttled the company (429); pausing all of its requests"
        );
        if let Err(e) = self.limiter.record_pause(wait, retry_after).await {
            tracing::warn!(error = %e, "could not record the pause for other qbo processes");
        }
        Ok(())
    }

    /// A backoff sleep that Ctrl-C / SIGTERM ends at once.
    async fn sleep(&self, delay: Duration) -> Result<(), ClientError> {
        limiter::sleep_until(&self.cancel, tokio::time::Instant::now() + delay)
            .await
            .map_err(|_| ClientError::Cancelled)
    }

    async fn send_once<T>(
        &self,
        call: &Call<'_>,
        token: &SecretString,
        parse: &impl Fn(&[u8]) -> Result<T, ClientError>,
    ) -> Result<Answer<T>, ClientError> {
        let request = match call {
            Call::Get { url, params } => self.http.get((*url).clone()).query(params),
            Call::Batch { body, .. } => self
                .http
                .post(self.batch_url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
        };
        let response = request
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

    fn backoff(&self, attempt: u32) -> Duration {
        let mut rng = rand::thread_rng();
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
        let mut params = vec![("query", query)];
        if crate::entities::has_custom_fields(entity_qbo_name) {
            params.push(crate::entities::ALL_CUSTOM_FIELDS);
        }
        self.execute_get(&self.query_url, &params, counters, |b| {
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

    async fn fetch_counts(
        &self,
        queries: &[String],
        counters: &mut RequestCounters,
    ) -> Result<Vec<Result<Answer<Count>, ClientError>>, ClientError> {
        self.count_in_batches(queries, counters).await
    }
}

/// One HTTP call to QBO, sent again as it is on every attempt.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// A query or CDC: a GET with URL parameters, one request of the company's budget.
    Get {
        url: &'a Url,
        params: &'a [(&'a str, &'a str)],
    },
    /// A batch: a POST of its JSON body, one request and one batch call of the company's
    /// budget, and `items` requests as QBO meters them.
    Batch { body: &'a [u8], items: u32 },
}

impl Call<'_> {
    /// What one attempt costs in `RequestCounters`: QBO meters a batch's items, not the call.
    fn metered(&self) -> u32 {
        match self {
            Call::Get { .. } => 1,
            Call::Batch { items, .. } => *items,
        }
    }
}

fn transport_error(source: reqwest::Error) -> ClientError {
    // reqwest's message names the URL (query text, no token: that travels in a header).
    let kind = if source.is_timeout() {
        "timed out"
    } else if source.is_connect() {
        "could not connect"
    } else if source.is_body() || source.is_decode() {
        "connection dropped while reading the response"
    } else {
        "transport error"
    };
    ClientError::Transport { kind, source }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn giving_up_keeps_the_last_error_as_its_cause() {
        let e = ClientError::GaveUp {
            attempts: 3,
            last: Box::new(ClientError::Server {
                status: 503,
                message: "down".into(),
            }),
        };
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            crate::errors::chain(&e),
            "gave up after 3 attempts: QBO server error (HTTP 503): down"
        );
        assert!(!e.is_retryable());
    }
}
