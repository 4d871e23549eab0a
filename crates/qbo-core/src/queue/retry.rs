//! Waiting out a Postgres restart: the one retry policy for store and queue calls, shared
//! by the backfill engine and sync (it lives here so neither calls into the other for it).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::QueueError;
use crate::store::StoreError;

/// An error that may go away by itself (Postgres restarting, a failover).
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        StoreError::is_transient(self)
    }
}

impl Transient for QueueError {
    fn is_transient(&self) -> bool {
        match self {
            QueueError::Store(e) => e.is_transient(),
            QueueError::LeaseLost { .. } | QueueError::SweepLost { .. } => false,
        }
    }
}

/// How long a worker keeps trying while Postgres is unreachable (about half a minute).
const DB_ATTEMPTS: u32 = 7;

/// Retries a store call while Postgres is briefly unreachable (a restart, a failover);
/// anything else fails at once. Stops early when `stop` is cancelled.
pub async fn retry_transient<T, E, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut call: F,
) -> Result<T, E>
where
    E: Transient + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_transient() && attempt < DB_ATTEMPTS => {
                let delay = Duration::from_millis(250 << attempt.min(5));
                tracing::warn!(error = %crate::errors::chain(&e), attempt, what, "database unavailable; retrying");
                attempt += 1;
                tokio::select! {
                    _ = stop.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            result => return result,
        }
    }
}
