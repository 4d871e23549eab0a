//! The one lease-renewal loop behind every heartbeat of the queue (a claimed window's, a
//! run's sweep): renew every third of the lease; stop and cancel `lost` the first time the
//! renewal finds the lease no longer ours; a renewal Postgres fails (restarting) is tried
//! again next time, since the lease has two more thirds to run.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::telemetry::RareLine;

/// Runs until the lease is lost. `renew` returns the rows it extended: 1 while the lease is
/// ours. `failed` says what failed in the log line, at most one per `line`'s period (every
/// holder heartbeats at once during a Postgres outage).
pub(super) async fn keep_alive<F, Fut>(
    lease: Duration,
    lost: CancellationToken,
    line: &'static RareLine,
    failed: &'static str,
    mut renew: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    loop {
        tokio::time::sleep(lease / 3).await;
        match renew().await {
            Ok(1) => {}
            Ok(_) => {
                lost.cancel();
                return;
            }
            Err(e) => {
                if let Some(held_back) = line.allow() {
                    tracing::warn!(error = %crate::errors::chain(&e), held_back, "{failed} failed; will try again")
                }
            }
        }
    }
}
