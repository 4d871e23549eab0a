//! `qbo serve`: workers, the scheduler and the HTTP server in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

use super::backfill_cmd::{connect, on_interrupt};
use super::worker_cmd::NO_REALM;
use super::{parse_secret, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::config::TokenStoreSpec;
use crate::fleet::clients::RealmClients;
use crate::fleet::{Worker, WorkerConfig};
use crate::metrics::TokenExpiry;
use crate::schedule::fire::FireSettings;
use crate::schedule::Scheduler;
use crate::serve::{self, AppState};

pub const AFTER_HELP: &str = "\
Examples:
  qbo serve                                   # http://127.0.0.1:8080, 4 companies loaded at once
  QBO_SERVE_TOKEN=$(openssl rand -hex 32) qbo serve --listen 0.0.0.0:8080
  qbo serve --workers 0                       # API and page only; `qbo worker`s load
  qbo serve --listen 0.0.0.0:8080 --token-file /data/serve-token   # token made once, kept

Endpoints: / (status page), /api/... (JSON API, see runbooks/serve.md), /metrics
(Prometheus), /healthz (the process answers), /readyz (Postgres reachable, migrations
applied). Every endpoint but /healthz and /readyz needs `Authorization: Bearer
$QBO_SERVE_TOKEN` (browsers log in once at /login with the token and carry a session
cookie); without QBO_SERVE_TOKEN qbo serve listens on loopback addresses only.
Several qbo serve instances (and qbo workers) may share one database.

Every instance runs the scheduler: schedules added with `qbo schedule add` (or POST
/api/schedules) fire at their cron ticks (UTC), each tick exactly once across all instances;
ticks missed while no instance ran fire once when one starts (runbooks/serve.md#schedules).

SIGTERM or SIGINT stops claiming, hands the windows being loaded back to the queue, lets
answers in progress finish and exits 0 within a few seconds.";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but loopback needs QBO_SERVE_TOKEN.
    #[arg(long, env = "QBO_SERVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Bearer token every request but /healthz and /readyz must carry.
    #[arg(long = "token", env = "QBO_SERVE_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub token: Option<SecretString>,
    /// A file holding the bearer token, for when no QBO_SERVE_TOKEN is given: read if it
    /// exists; otherwise a new random token is written to it (mode 0600) and its path
    /// logged, never the token (`docker compose up` uses this).
    #[arg(long, env = "QBO_SERVE_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Companies the workers load at once, as `qbo worker --companies-at-once` (each with up
    /// to --concurrency windows at once); 0 for an API-only instance whose queued work other
    /// workers load.
    #[arg(long, env = "QBO_SERVE_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub workers: u32,
    /// Windows of one company the workers load at once, at most, as `qbo worker
    /// --concurrency`.
    #[arg(long, env = "QBO_WORKER_CONCURRENCY", default_value_t = crate::backfill::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// Milliseconds between the workers' looks at the queue while there is nothing to take.
    #[arg(long, env = "QBO_WORKER_POLL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub poll_ms: u64,
    /// Milliseconds between the scheduler's looks for due schedules (`qbo schedule`). Every
    /// instance runs the scheduler; each tick fires once across all of them.
    #[arg(long, env = "QBO_SCHEDULER_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub scheduler_poll_ms: u64,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

pub async fn run(args: ServeArgs) -> Result<Outcome, CliError> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(path)) => Some(
            serve::token_file::read_or_create(path)
                .await
                .map_err(CliError::usage)?,
        ),
        (None, None) => None,
    };
    serve::check_exposure(args.listen, token.as_ref()).map_err(CliError::usage)?;
    crate::config::validate_minor_version(args.qbo.minor_version).map_err(CliError::usage)?;
    let worker = match args.workers {
        0 => None,
        _ => Some(worker_settings(&args)?),
    };
    let db = connect(&args.db).await?;
    let shutdown = on_interrupt(
        "shutting down: no more claims, handing the windows being loaded back to the queue",
    );
    let tokens = match &worker {
        Some(settings) => Some(
            crate::auth::store::open(&settings.token_store, Some(db.pool()))
                .await
                .map_err(CliError::usage)?,
        ),
        None => None,
    };
    let state = AppState {
        store: db.clone(),
        control: crate::control::Control::new(
            db.clone(),
            args.qbo.environment,
            args.qbo.minor_version,
        ),
        token: token.map(Arc::new),
        shutdown: shutdown.clone(),
        token_expiry: token_expiry(&args, tokens.clone(), &db).await,
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let (Some(settings), Some(tokens)) = (worker, tokens) {
        let clients = RealmClients::new(
            settings,
            tokens,
            args.requests.retry_policy(),
            args.requests.rate_limits(),
            db.clone(),
            shutdown.clone(),
        );
        let worker = Worker::new(
            db.clone(),
            clients,
            WorkerConfig {
                companies_at_once: args.workers as usize,
                windows_per_run: args.concurrency,
                lease: args.requests.lease(),
                poll: Duration::from_millis(args.poll_ms),
                idle_exit: false,
            },
            shutdown.clone(),
        );
        tasks.spawn(async move {
            worker
                .run()
                .await
                .map(|_| ())
                .map_err(|e| CliError::failed(anyhow::Error::new(e).context("the workers stopped")))
        });
    }
    let scheduler = Scheduler::new(
        db.clone(),
        FireSettings {
            environment: args.qbo.environment,
            minor_version: args.qbo.minor_version,
            options: crate::backfill::Options::default(),
        },
        Duration::from_millis(args.scheduler_poll_ms),
    );
    let scheduler_shutdown = shutdown.clone();
    tasks.spawn(async move {
        scheduler.run(scheduler_shutdown).await;
        Ok(())
    });
    let listen = args.listen;
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let served = serve::listen(listen, state, |addr| {
            tracing::info!(%addr, "qbo serve listening");
            outln!("listening on http://{addr}");
        })
        .await;
        // The server ending on its own (a failure) takes the workers down with it.
        http_shutdown.cancel();
        served.map_err(CliError::failed)
    });
    let mut result = Ok(Outcome::Success);
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(join) => CliError::failed(anyhow::anyhow!("a qbo serve task panicked: {join}")),
        };
        shutdown.cancel();
        if result.is_ok() {
            result = Err(failed);
        }
    }
    result
}

/// The app's QBO settings for the workers; QBO_REALM_ID is optional here, as for
/// `qbo worker`.
fn worker_settings(args: &ServeArgs) -> Result<crate::config::QboSettings, CliError> {
    let mut qbo = args.qbo.clone();
    if qbo.realm_id.as_deref().is_none_or(|r| r.trim().is_empty()) {
        qbo.realm_id = Some(NO_REALM.to_string());
        qbo.refresh_token = None;
    }
    qbo.settings().map_err(CliError::usage)
}

/// Where `/metrics` reads the refresh tokens' expiry: `ops.oauth_tokens` for the Postgres
/// store (whatever this instance's key), else the file or keyring store this process uses
/// (opened for it alone on an API-only instance; not known if it cannot be opened).
async fn token_expiry(
    args: &ServeArgs,
    tokens: Option<Arc<dyn crate::auth::TokenStore>>,
    db: &crate::store::PgStore,
) -> TokenExpiry {
    let Ok(spec) = args.qbo.token_store.parse::<TokenStoreSpec>() else {
        return TokenExpiry::Unknown;
    };
    if spec == TokenStoreSpec::Postgres {
        return TokenExpiry::Postgres;
    }
    let store = match tokens {
        Some(t) => t,
        None => match crate::auth::store::open(&spec, Some(db.pool())).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "/metrics will not show refresh-token expiry: the token store cannot be opened");
                return TokenExpiry::Unknown;
            }
        },
    };
    let realm = args
        .qbo
        .realm_id
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty() && *r != NO_REALM)
        .map(str::to_string);
    TokenExpiry::Store { store, realm }
}
