//! Settings parsed and validated once at start-up. Bad input fails here, with a message
//! that says what to fix, before anything touches QBO or the database.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set; {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name} is not a valid URL ({value})")]
    BadUrl {
        name: &'static str,
        value: String,
        source: url::ParseError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Which of Intuit's hosts to talk to when no explicit URL overrides them. Kept per company
/// in `ops.companies` (a production token is refused by the sandbox hosts and vice versa).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, sqlx::Type)]
#[sqlx(type_name = "ops.qbo_environment", rename_all = "lowercase")]
pub enum Environment {
    Production,
    Sandbox,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Production => "production",
            Environment::Sandbox => "sandbox",
        }
    }

    pub fn api_base_url(self) -> &'static str {
        match self {
            Environment::Production => "https://quickbooks.api.intuit.com",
            Environment::Sandbox => "https://sandbox-quickbooks.api.intuit.com",
        }
    }
}

pub const INTUIT_TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";
pub const INTUIT_AUTHORIZE_URL: &str = "https://appcenter.intuit.com/connect/oauth2";
/// QBO ignores anything older since 2025; we never send less.
pub const MIN_MINOR_VERSION: u32 = 75;

/// Where refresh tokens live between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStoreSpec {
    Keyring,
    File(PathBuf),
    /// `ops.oauth_tokens` in DATABASE_URL, sealed with QBO_TOKEN_KEY: for many machines.
    Postgres,
}

impl std::str::FromStr for TokenStoreSpec {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "keyring" {
            return Ok(TokenStoreSpec::Keyring);
        }
        if s == "postgres" {
            return Ok(TokenStoreSpec::Postgres);
        }
        match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(TokenStoreSpec::File(PathBuf::from(path))),
            _ => Err(ConfigError::Invalid(format!(
                "QBO_TOKEN_STORE must be `keyring`, `file:<path>` or `postgres`, got `{s}`"
            ))),
        }
    }
}

/// Everything needed to talk to one QBO company (realm).
#[derive(Debug, Clone)]
pub struct QboSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    pub realm_id: String,
    pub api_base_url: Url,
    pub token_url: Url,
    pub authorize_url: Url,
    pub minor_version: u32,
    pub token_store: TokenStoreSpec,
    /// `QBO_REFRESH_TOKEN`: seeds an empty token store; afterwards the store's token wins,
    /// and this one is tried once only if QBO rejects the stored one and qbo never used it.
    pub seed_refresh_token: Option<SecretString>,
}

pub fn parse_url(name: &'static str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value).map_err(|source| ConfigError::BadUrl {
        name,
        value: value.to_string(),
        source,
    })
}

pub fn validate_realm_id(realm: &str) -> Result<(), ConfigError> {
    if realm.is_empty() || !realm.chars().all(|c| c.is_ascii_digit()) {
        return Err(ConfigError::Invalid(format!(
            "QBO_REALM_ID must be the company's numeric realm id (found in the QBO URL or the \
             OAuth redirect), got `{realm}`"
        )));
    }
    Ok(())
}

pub fn validate_minor_version(v: u32) -> Result<(), ConfigError> {
    if v < MIN_MINOR_VERSION {
        return Err(ConfigError::Invalid(format!(
            "QBO_MINOR_VERSION must be at least {MIN_MINOR_VERSION} (Intuit's floor since 2025), got {v}"
        )));
    }
    Ok(())
}

/// Intuit's advice: after a 429 that does not say when to come back, wait a minute.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(60);
/// Throttling without a break for this long (15 minutes) fails the window or step.
pub const DEFAULT_MAX_THROTTLE_SECS: u64 = 15 * 60;

/// How hard to retry a request before the chunk is marked `error`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, with jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Whole-request timeout (connect + response body).
    pub request_timeout: Duration,
    /// How long a 429 without `Retry-After` pauses the company (Intuit advises 60 s).
    pub throttle_pause: Duration,
    /// A 429 costs no attempt; only throttling without a break for longer than this fails.
    pub max_throttle: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(120),
            request_timeout: Duration::from_secs(100),
            throttle_pause: DEFAULT_THROTTLE_PAUSE,
            max_throttle: Duration::from_secs(DEFAULT_MAX_THROTTLE_SECS),
        }
    }
}

/// QBO's documented per-realm limits. The client stays inside them whatever the concurrency.
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub requests_per_minute: u32,
    pub max_in_flight: u32,
    /// Batch calls (`POST .../batch`) per minute: Intuit allows 40 per company, on top of
    /// the requests per minute (each batch call is also one of those).
    pub batch_calls_per_minute: u32,
    /// The app's reads a month (UTC) after which no request starts (`QBO_MONTHLY_READ_CAP`);
    /// None: no cap.
    pub monthly_read_cap: Option<u64>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            requests_per_minute: 500,
            max_in_flight: 10,
            batch_calls_per_minute: 40,
            monthly_read_cap: None,
        }
    }
}
