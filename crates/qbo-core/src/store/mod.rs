//! Postgres: connecting (and creating the database), migrations, the raw zone and the
//! ops tables. Everything here is behind `PgStore` so the engine never writes SQL.

pub mod fleet;
pub mod invocations;
pub mod raw;
pub mod reports;
pub mod run_requests;
pub mod runs;
pub mod sync_lock;
pub mod sync_requests;
pub mod sync_state;
pub mod throttle;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

pub use invocations::Invocation;
pub use raw::{PageMeta, UpsertCounts};
pub use runs::{ChunkRow, NewRun, ReportFilter, RunMatch, RunRow};
pub use sync_state::{StepRow, Watermark};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL is not a valid Postgres URL: {0}")]
    BadUrl(String),
    #[error("cannot reach Postgres at {target}")]
    Unreachable {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying migrations failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("QBO_DB_POOL_MAX is `{0}`: give a whole number of connections from 2 to 100")]
    BadPoolMax(String),
}

impl StoreError {
    /// Connection-level failures (Postgres restarting, network blips) are worth retrying;
    /// constraint violations and SQL errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Db(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Protocol(_)
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| {
                        c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
                    })
            }
            _ => false,
        }
    }
}

/// Where to print a database target without its password.
pub fn redacted_target(url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("****"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable DATABASE_URL>".to_string(),
    }
}

/// Connections each qbo process opens at most, unless `QBO_DB_POOL_MAX` says otherwise.
/// Small, because a fleet runs many processes against one Postgres (whose
/// `max_connections` is 100 by default): 12 busy processes stay under it. Connections open
/// only when needed, and every task holds one only for a statement or a transaction, so
/// more tasks than connections wait their turn rather than fail.
pub const DEFAULT_POOL_MAX: u32 = 8;

/// `QBO_DB_POOL_MAX`, or the default; 2 at least (a token refresh holds one connection
/// while the run's heartbeats need another).
fn pool_max() -> Result<u32, StoreError> {
    match std::env::var("QBO_DB_POOL_MAX") {
        Err(_) => Ok(DEFAULT_POOL_MAX),
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (2..=100).contains(n))
            .ok_or(StoreError::BadPoolMax(v)),
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects, creating the database if it does not exist yet, and applies migrations.
    pub async fn connect_and_migrate(url: &SecretString) -> Result<Self, StoreError> {
        let store = Self::connect(url, true).await?;
        store.migrate().await?;
        Ok(store)
    }

    pub async fn connect(url: &SecretString, create: bool) -> Result<Self, StoreError> {
        let target = redacted_target(url);
        let options: PgConnectOptions = url
            .expose_secret()
            .parse()
            .map_err(|e: sqlx::Error| StoreError::BadUrl(scrub(&e.to_string(), url)))?;
        let unreachable = |source| StoreError::Unreachable {
            target: target.clone(),
            source,
        };
        if create
            && !Postgres::database_exists(url.expose_secret())
                .await
                .map_err(unreachable)?
        {
            match Postgres::create_database(url.expose_secret()).await {
                Ok(()) => tracing::info!(%target, "created the database"),
                // Another process created it between our check and our create.
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {
                }
                Err(e) => return Err(unreachable(e)),
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(pool_max()?)
            // A task waiting for a connection waits for another task's short statement or
            // for a token refresh (which holds its row lock, and so a connection, for up to
            // the token call's 20 s timeout): waiting is normal, so only a long wait fails.
            // No code holds a connection while it waits for another.
            .acquire_timeout(Duration::from_secs(60))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    prefer_lz4(conn).await;
                    Ok(())
                })
            })
            .connect_with(options.application_name("qbo"))
            .await
            .map_err(unreachable)?;
        Ok(PgStore { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How many migrations this binary carries that `pool`'s database has not applied (`None`
/// when every one is), for readiness probes: a binary newer than the schema must not take
/// work before `qbo migrate` has run.
pub async fn migrations_current(pool: &PgPool) -> Result<Option<usize>, sqlx::Error> {
    // sqlx's own bookkeeping table: not part of migrations/, so not for `query!` to check.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    let missing = sqlx::migrate!("../../migrations")
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count();
    Ok((missing > 0).then_some(missing))
}

/// A raw row passes Postgres' 2 kB TOAST threshold with most payloads, so the payload gets
/// compressed. lz4 does that several times faster than the default pglz (a page upsert costs
/// Postgres about a quarter less) for a few percent more space. Servers without lz4 (before
/// 14, or built without it) keep pglz; reads never care which one wrote a value.
pub async fn prefer_lz4(conn: &mut sqlx::PgConnection) {
    // A session setting, not a query on the schema: nothing for `query!` to check.
    if let Err(e) = sqlx::query("SET default_toast_compression = 'lz4'")
        .execute(conn)
        .await
    {
        tracing::debug!(error = %e, "lz4 compression unavailable; payloads are compressed with pglz");
    }
}

fn scrub(message: &str, url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret())
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(pw) if !pw.is_empty() => message.replace(&pw, "****"),
        _ => message.to_string(),
    }
}
