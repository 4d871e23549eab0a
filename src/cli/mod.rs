//! The command line: argument structs (their doc comments are the `--help` text) and the
//! mapping from outcomes to exit codes.

mod auth_cmd;
mod backfill_all;
mod backfill_cmd;
mod companies_cmd;
mod demo;
mod enqueue_cmd;
mod entities_cmd;
mod exchange_rates_cmd;
pub mod fleet;
mod login;
mod model_cmd;
mod progress;
mod report_cmd;
mod reports_cmd;
mod run_ref;
mod sandbox_cmd;
mod schedule_cmd;
mod serve_cmd;
mod sync_cmd;
mod sync_fleet;
mod tie_out;
mod verify_cmd;
mod worker_cmd;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{self, ConfigError, Environment, QboSettings, TokenStoreSpec};
use crate::telemetry::LogFormat;

pub const EXIT_HELP: &str = "\
Exit codes:
  0  every chunk succeeded
  1  some chunks failed (the others are loaded and reported; re-run them with --retry-failed)
  2  bad usage or configuration (nothing was written)
  3  no refresh token, or QBO rejected it: a human must act (`qbo auth import` or `qbo auth login`)
  130 interrupted (Ctrl-C or SIGTERM); continue with --resume (a sync: run it again)";

/// Backfill QuickBooks Online (QBO) accounting data into a PostgreSQL raw zone.
///
/// Splits a date range into windows, pages through QBO's query API with OAuth2, upserts
/// every record's raw JSON into raw.qb_<entity> and writes one ops.backfill_report row per
/// window. Runs can be killed and resumed; re-running never duplicates a row.
#[derive(Debug, Parser)]
#[command(name = "qbo", version, after_help = EXIT_HELP)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "QBO_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level for qbo (off, error, warn, info, debug, trace). RUST_LOG overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "QBO_LOG_LEVEL",
        ignore_case = true,
        value_parser = ["off", "error", "warn", "info", "debug", "trace"]
    )]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a date range of an entity (or all) into raw.qb_<entity>, window by window.
    #[command(after_help = backfill_cmd::AFTER_HELP)]
    Backfill(backfill_cmd::BackfillArgs),
    /// Load only what changed since the last sync (CDC, with deletes), per entity or all.
    #[command(after_help = sync_cmd::AFTER_HELP)]
    Sync(sync_cmd::SyncArgs),
    /// Show one line per chunk of the latest backfill and sync of each entity (or of --run).
    Report(report_cmd::ReportArgs),
    /// List every QBO entity qbo loads: its raw table, how it is windowed and synced.
    Entities(entities_cmd::EntitiesArgs),
    /// Compare QBO's COUNT(*) with the raw table, window by window, and print mismatches.
    #[command(after_help = verify_cmd::AFTER_HELP)]
    Verify(verify_cmd::VerifyArgs),
    /// Create the database if missing and apply migrations (backfill does this on its own).
    Migrate(DbArgs),
    /// Load QBO's reports (ProfitAndLoss, BalanceSheet, TrialBalance, GeneralLedger, ...) over a
    /// range into raw.qb_reports (as received) and raw.qb_report_cells (flattened), as a run
    /// of windows (--resume, --retry-failed, `qbo report`).
    #[command(after_help = reports_cmd::AFTER_HELP)]
    Reports(reports_cmd::ReportsArgs),
    /// Load QBO's exchange rates (multi-currency companies) for each day of a range into
    /// raw.qb_exchange_rates, the fallback staging converts to home currency with.
    #[command(after_help = exchange_rates_cmd::AFTER_HELP)]
    ExchangeRates(exchange_rates_cmd::ExchangeRatesArgs),
    /// The analysis-ready staging schema (typed lines, general ledger): `qbo model refresh`.
    #[command(subcommand)]
    Model(model_cmd::ModelCommand),
    /// Authorize qbo with a QuickBooks company, or see the state of its tokens.
    #[command(subcommand)]
    Auth(auth_cmd::AuthCommand),
    /// The companies (realms) qbo loads: add, list, pause, resume, remove.
    #[command(subcommand, after_help = companies_cmd::AFTER_HELP)]
    Companies(companies_cmd::CompaniesCommand),
    /// Start a local QBO sandbox, backfill a year of every entity (all 36) into DATABASE_URL,
    /// and print the report. Needs nothing but a reachable Postgres.
    Demo(demo::DemoArgs),
    /// Run the local QBO sandbox server alone (for trying qbo against it by hand).
    Sandbox(sandbox_cmd::SandboxArgs),
    /// Run workers, schedules and an HTTP API, status page and /metrics in one process.
    #[command(after_help = serve_cmd::AFTER_HELP)]
    Serve(serve_cmd::ServeArgs),
    /// Schedules (triggers) that `qbo serve` fires: rolling backfills or syncs on a cron
    /// (UTC), per company or for every active one; add, list, remove.
    #[command(subcommand, after_help = schedule_cmd::AFTER_HELP)]
    Schedule(schedule_cmd::ScheduleCommand),
    /// Load queued runs (`backfill --enqueue`) and run queued syncs (`sync --enqueue`) of every
    /// company, fairly, until stopped.
    #[command(after_help = worker_cmd::AFTER_HELP)]
    Worker(worker_cmd::WorkerArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Postgres connection URL. The database is created if it does not exist.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://localhost:5432/qbo",
        hide_env_values = true,
        value_parser = parse_secret
    )]
    pub database_url: SecretString,
}

impl DbArgs {
    pub fn secret(&self) -> SecretString {
        self.database_url.clone()
    }
}

/// Secrets are wrapped the moment clap reads them, so no `{:?}` can print one.
fn parse_secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s))
}

/// How to reach QBO. Secrets come from the environment; their values are never printed.
#[derive(Debug, Clone, Args)]
pub struct QboArgs {
    /// The app's OAuth client id (developer.intuit.com > your app > Keys).
    #[arg(long, env = "QBO_CLIENT_ID", hide_env_values = true)]
    pub client_id: Option<String>,
    /// The app's OAuth client secret. Prefer the environment variable to the flag.
    #[arg(long, env = "QBO_CLIENT_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub client_secret: Option<SecretString>,
    /// The company (realm) id.
    #[arg(long, env = "QBO_REALM_ID")]
    pub realm_id: Option<String>,
    /// A refresh token: seeds an empty token store, and is tried once if QBO rejects the
    /// stored one (then saved if QBO accepts it). Prefer `qbo auth import`.
    #[arg(long, env = "QBO_REFRESH_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub refresh_token: Option<SecretString>,
    /// Which of Intuit's hosts to use.
    #[arg(
        long,
        env = "QBO_ENVIRONMENT",
        value_enum,
        default_value = "production"
    )]
    pub environment: Environment,
    /// Override the API base URL (the local sandbox, or a proxy).
    #[arg(long, env = "QBO_API_BASE_URL")]
    pub api_base_url: Option<String>,
    /// Override the OAuth token endpoint.
    #[arg(long, env = "QBO_TOKEN_URL")]
    pub token_url: Option<String>,
    /// Override the OAuth authorization page (for `auth login`).
    #[arg(long, env = "QBO_AUTHORIZE_URL")]
    pub authorize_url: Option<String>,
    /// QBO API minor version (75 or later).
    #[arg(long, env = "QBO_MINOR_VERSION", default_value_t = config::MIN_MINOR_VERSION)]
    pub minor_version: u32,
    /// Where tokens are kept: `keyring` (the OS keyring), `file:<path>` (mode 0600), or
    /// `postgres` (ops.oauth_tokens in DATABASE_URL, sealed with QBO_TOKEN_KEY: for fleets).
    #[arg(long, env = "QBO_TOKEN_STORE", default_value = "keyring")]
    pub token_store: String,
}

impl QboArgs {
    /// Validates everything at once, before any network or database work.
    pub fn settings(&self) -> Result<QboSettings, ConfigError> {
        let client_id = nonempty(&self.client_id).ok_or(ConfigError::Missing {
            name: "QBO_CLIENT_ID",
            hint: "set it to your Intuit app's client id",
        })?;
        let client_secret = nonempty_secret(&self.client_secret).ok_or(ConfigError::Missing {
            name: "QBO_CLIENT_SECRET",
            hint: "set it to your Intuit app's client secret",
        })?;
        let realm_id = nonempty(&self.realm_id).ok_or(ConfigError::Missing {
            name: "QBO_REALM_ID",
            hint: "set it to the company's realm id",
        })?;
        config::validate_realm_id(&realm_id)?;
        config::validate_minor_version(self.minor_version)?;
        let api = nonempty(&self.api_base_url)
            .unwrap_or_else(|| self.environment.api_base_url().to_string());
        Ok(QboSettings {
            client_id,
            client_secret,
            realm_id,
            api_base_url: config::parse_url("QBO_API_BASE_URL", &api)?,
            token_url: config::parse_url(
                "QBO_TOKEN_URL",
                nonempty(&self.token_url)
                    .as_deref()
                    .unwrap_or(config::INTUIT_TOKEN_URL),
            )?,
            authorize_url: config::parse_url(
                "QBO_AUTHORIZE_URL",
                nonempty(&self.authorize_url)
                    .as_deref()
                    .unwrap_or(config::INTUIT_AUTHORIZE_URL),
            )?,
            minor_version: self.minor_version,
            token_store: self.token_store.parse::<TokenStoreSpec>()?,
            seed_refresh_token: nonempty_secret(&self.refresh_token),
        })
    }
}

/// How qbo talks to QBO and holds its windows: retries, timeouts, the rate budget, leases.
/// Shared by every command that loads data, so each flag means the same everywhere.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Attempts per request before its window or step is marked `error` (5xx, timeouts,
    /// drops, malformed answers). A 429 costs no attempt: see --max-throttle-secs.
    #[arg(long, env = "QBO_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: u32,
    /// First backoff delay in milliseconds; it doubles each attempt, with jitter.
    #[arg(long, env = "QBO_RETRY_BASE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=120_000))]
    pub retry_base_ms: u64,
    /// Give up on a request after this many seconds.
    #[arg(long, env = "QBO_REQUEST_TIMEOUT_SECS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub request_timeout_secs: u64,
    /// Requests per minute for this company, at most QBO's 500. Every qbo process of the
    /// company counts against it (they share it through Postgres).
    #[arg(long, env = "QBO_REQUESTS_PER_MINUTE", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub requests_per_minute: u32,
    /// Batch calls per minute for this company, at most QBO's 40 (each also counts as one
    /// of the requests per minute; QBO meters the COUNT queries it carries one by one).
    #[arg(long, env = "QBO_BATCH_CALLS_PER_MINUTE", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=40))]
    pub batch_calls_per_minute: u32,
    /// Requests in flight at once for this company, at most QBO's 10. Every qbo process of
    /// the company counts against it (seats leased through Postgres).
    #[arg(long, env = "QBO_MAX_IN_FLIGHT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub max_in_flight: u32,
    /// Stop starting QBO requests once the app's reads this month (UTC, every qbo process's,
    /// kept in Postgres) reach this many; windows not read stay to do. Unset: no cap.
    #[arg(long, env = "QBO_MONTHLY_READ_CAP", value_parser = clap::value_parser!(u64).range(1..))]
    pub monthly_read_cap: Option<u64>,
    /// A 429 pauses the company (for its Retry-After) without costing an attempt; a window
    /// or step fails only once QBO has throttled the company without a break for this many
    /// seconds (1 to 86400; default 15 minutes).
    #[arg(long, env = "QBO_MAX_THROTTLE_SECS", default_value_t = config::DEFAULT_MAX_THROTTLE_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_throttle_secs: u64,
    /// Milliseconds a 429 without Retry-After pauses the company (Intuit advises 60 s).
    /// Lower it only against a test server.
    #[arg(long, env = "QBO_THROTTLE_PAUSE_MS", default_value_t = config::DEFAULT_THROTTLE_PAUSE.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub throttle_pause_ms: u64,
    /// Seconds a claimed window stays reserved without a heartbeat. After a crash, --resume
    /// waits at most this long for the dead worker's windows.
    #[arg(long, env = "QBO_LEASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,
}

impl RequestArgs {
    pub fn retry_policy(&self) -> config::RetryPolicy {
        config::RetryPolicy {
            max_attempts: self.max_attempts,
            base_delay: std::time::Duration::from_millis(self.retry_base_ms),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            throttle_pause: std::time::Duration::from_millis(self.throttle_pause_ms),
            max_throttle: std::time::Duration::from_secs(self.max_throttle_secs),
            ..config::RetryPolicy::default()
        }
    }

    pub fn rate_limits(&self) -> config::RateLimits {
        config::RateLimits {
            requests_per_minute: self.requests_per_minute,
            batch_calls_per_minute: self.batch_calls_per_minute,
            max_in_flight: self.max_in_flight,
            monthly_read_cap: self.monthly_read_cap,
        }
    }

    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lease_secs)
    }
}

/// The sandbox company's size, shared by `qbo demo` and `qbo sandbox` so both serve the
/// same data by default.
#[derive(Debug, Clone, Args)]
pub struct CompanyArgs {
    /// Seed for the generated records (same seed, same company).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Invoices in the sandbox company.
    #[arg(long, default_value_t = 2_000)]
    pub invoices: usize,
    /// Customers in the sandbox company (some inactive).
    #[arg(long, default_value_t = 300)]
    pub customers: usize,
    /// Items in the sandbox company (some inactive).
    #[arg(long, default_value_t = 150)]
    pub items: usize,
    /// Records of another entity, as ENTITY=N (e.g. `bills=500` or `JournalEntry=0`);
    /// repeatable. Every entity has a default sized from the three counts above.
    #[arg(long = "count", value_name = "ENTITY=N", value_parser = parse_entity_count)]
    pub counts: Vec<(String, usize)>,
}

impl CompanyArgs {
    /// A sandbox holding this company, its records last updated between `start` and `end`.
    pub fn sandbox_config(
        &self,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> crate::sandbox::SandboxConfig {
        crate::sandbox::SandboxConfig {
            seed: self.seed,
            invoices: self.invoices,
            customers: self.customers,
            items: self.items,
            counts: self.counts.iter().cloned().collect(),
            data_start: start,
            data_end: end,
            ..Default::default()
        }
    }
}

/// `ENTITY=N` for `--count`: the entity by its CLI or QBO name, keyed by its QBO name.
fn parse_entity_count(s: &str) -> Result<(String, usize), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not ENTITY=N (e.g. bills=500)"))?;
    let entity = crate::entities::find(name.trim())
        .ok_or_else(|| crate::entities::UnknownEntity(name.trim().to_string()).to_string())?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}` is not a record count (a whole number)"))?;
    Ok((entity.qbo_name.to_string(), n))
}

/// An entity name or `all`, for clap, with the registry's explanation on failure.
pub fn parse_selection(s: &str) -> Result<crate::entities::Selection, String> {
    s.parse()
        .map_err(|e: crate::entities::UnknownEntity| e.to_string())
}

/// `YYYY-MM-DD` for clap, with the library's explanation on failure.
pub fn parse_date_arg(s: &str) -> Result<chrono::NaiveDate, String> {
    crate::chunks::parse_date(s).map_err(|e| e.to_string())
}

/// An empty flag value (`--realm-id ""`) means "not set", like an empty variable (see main.rs).
fn nonempty(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.trim().is_empty())
}

/// Like `nonempty`, for a secret; surrounding whitespace (a pasted newline) is dropped.
fn nonempty_secret(v: &Option<SecretString>) -> Option<SecretString> {
    let trimmed = v.as_ref()?.expose_secret().trim();
    (!trimmed.is_empty()).then(|| SecretString::from(trimmed))
}

/// What the process should exit with, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success = 0,
    SomeFailed = 1,
    Usage = 2,
    NeedsHuman = 3,
    Interrupted = 130,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o as u8)
    }
}

/// Errors at the edge carry the exit code they mean.
#[derive(Debug)]
pub struct CliError {
    pub outcome: Outcome,
    pub error: anyhow::Error,
}

impl CliError {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            outcome: Outcome::Usage,
            error: error.into(),
        }
    }
    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        CliError {
            outcome: Outcome::SomeFailed,
            error: error.into(),
        }
    }

    /// An OAuth failure: a rejected app is a configuration error (2), a refresh token QBO
    /// refuses needs `qbo auth login` (3), anything else failed the command (1).
    pub fn from_auth(auth: crate::auth::AuthError) -> Self {
        let outcome = if matches!(auth, crate::auth::AuthError::InvalidClient) {
            Outcome::Usage
        } else if auth.needs_human() {
            Outcome::NeedsHuman
        } else {
            Outcome::SomeFailed
        };
        CliError {
            outcome,
            error: auth.into(),
        }
    }
}

pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    match cli.command {
        Command::Backfill(args) => backfill_cmd::run(args).await,
        Command::Sync(args) => sync_cmd::run(args).await,
        Command::Report(args) => report_cmd::run(args).await,
        Command::Entities(args) => Ok(entities_cmd::run(args)),
        Command::Verify(args) => verify_cmd::run(args).await,
        Command::Migrate(db) => {
            let store = backfill_cmd::connect(&db).await?;
            drop(store);
            outln!("database is migrated");
            Ok(Outcome::Success)
        }
        Command::Model(cmd) => model_cmd::run(cmd).await,
        Command::Reports(args) => reports_cmd::run(args).await,
        Command::ExchangeRates(args) => exchange_rates_cmd::run(args).await,
        Command::Auth(cmd) => auth_cmd::run(cmd).await,
        Command::Companies(cmd) => companies_cmd::run(cmd).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Sandbox(args) => sandbox_cmd::run(args).await,
        Command::Worker(args) => worker_cmd::run(args).await,
        Command::Serve(args) => serve_cmd::run(args).await,
        Command::Schedule(cmd) => schedule_cmd::run(cmd).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let cli = Cli::parse_from([
            "qbo",
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-02",
            "--client-secret",
            "s3cret-value",
            "--refresh-token",
            "rt-value",
            "--database-url",
            "postgres://u:pw-value@db/qbo",
        ]);
        let text = format!("{cli:?}");
        for secret in ["s3cret-value", "rt-value", "pw-value"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
