//! The analysis-ready `staging` schema (see migrations/*_create_staging_layer.sql): three
//! materialized views hold the typed transactions, their lines and the general ledger, and a
//! fourth its cash-basis restatement (migrations/*_staging_general_ledger_cash.sql); every
//! other staging object is a plain view over them or over the raw zone. `refresh` rebuilds
//! the materialized views in dependency order.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, PgPool};

/// The materialized views, in the order they must be refreshed: the ledger reads the first
/// two, the cash-basis ledger the ledger and the lines.
pub const MATERIALIZED: &[&str] = &[
    "staging.transactions",
    "staging.transaction_lines",
    "staging.general_ledger",
    "staging.general_ledger_cash",
];

/// The plain views users query, always as current as what they read.
pub const VIEWS: &[&str] = &[
    "staging.invoice_lines",
    "staging.sales_receipt_lines",
    "staging.credit_memo_lines",
    "staging.refund_receipt_lines",
    "staging.estimate_lines",
    "staging.bill_lines",
    "staging.vendor_credit_lines",
    "staging.purchase_lines",
    "staging.purchase_order_lines",
    "staging.journal_entry_lines",
    "staging.deposit_lines",
    "staging.payment_lines",
    "staging.bill_payment_lines",
    "staging.accounts",
    "staging.customers",
    "staging.vendors",
    "staging.items",
    "staging.addresses",
    "staging.custom_fields",
];

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("could not connect to the database to refresh the staging schema")]
    Connect {
        #[source]
        source: sqlx::Error,
    },
    #[error("could not refresh {view}")]
    Refresh {
        view: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not count the rows of {view}")]
    Count {
        view: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// What one refresh did.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub view: &'static str,
    pub rows: i64,
    pub elapsed: Duration,
    /// False for the first fill (CONCURRENTLY needs a populated view), true afterwards.
    pub concurrently: bool,
    /// Bytes on disk, indexes included.
    pub bytes: i64,
}

/// Refreshes every materialized view, in order. Once a view holds data the refresh is
/// CONCURRENT: readers keep the old rows until the new ones are committed.
pub async fn refresh(pool: &PgPool) -> Result<Vec<Refreshed>, ModelError> {
    // A connection of its own: a refresh takes seconds to minutes by design, which the pool's
    // slow-statement warning would report as a problem.
    let options: PgConnectOptions = (*pool.connect_options())
        .clone()
        .disable_statement_logging();
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|source| ModelError::Connect { source })?;
    let mut done = Vec::with_capacity(MATERIALIZED.len());
    for &view in MATERIALIZED {
        done.push(refresh_one(&mut conn, view).await?);
    }
    Ok(done)
}

async fn refresh_one(conn: &mut PgConnection, view: &'static str) -> Result<Refreshed, ModelError> {
    let err = |source| ModelError::Refresh { view, source };
    let concurrently = is_populated(conn, view).await.map_err(err)?;
    let started = Instant::now();
    // `view` comes from MATERIALIZED, never from input.
    let sql = if concurrently {
        format!("REFRESH MATERIALIZED VIEW CONCURRENTLY {view}")
    } else {
        format!("REFRESH MATERIALIZED VIEW {view}")
    };
    sqlx::query(&sql).execute(&mut *conn).await.map_err(err)?;
    let elapsed = started.elapsed();
    let (rows, bytes) = size_of(conn, view).await?;
    Ok(Refreshed {
        view,
        rows,
        elapsed,
        concurrently,
        bytes,
    })
}

async fn is_populated(conn: &mut PgConnection, view: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT relispopulated FROM pg_class WHERE oid = $1::regclass")
        .bind(view)
        .fetch_one(conn)
        .await
}

/// Rows and bytes (indexes included) of a view that holds data.
async fn size_of(conn: &mut PgConnection, view: &'static str) -> Result<(i64, i64), ModelError> {
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {view}"))
        .fetch_one(&mut *conn)
        .await
        .map_err(|source| ModelError::Count { view, source })?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size($1::regclass)")
        .bind(view)
        .fetch_one(conn)
        .await
        .map_err(|source| ModelError::Count { view, source })?;
    Ok((rows, bytes))
}

/// Row counts of the plain views (each one re-reads what it is built on).
pub async fn view_counts(pool: &PgPool) -> Result<Vec<(&'static str, i64)>, ModelError> {
    let mut counts = Vec::with_capacity(VIEWS.len());
    for &view in VIEWS {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {view}"))
            .fetch_one(pool)
            .await
            .map_err(|source| ModelError::Count { view, source })?;
        counts.push((view, rows));
    }
    Ok(counts)
}
