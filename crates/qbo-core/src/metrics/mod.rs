//! Prometheus metrics for `/metrics` of `qbo serve`, in the Prometheus text format (0.0.4),
//! every name prefixed `qbo_`. Two sources, told apart by name:
//! - the fleet's, from Postgres at scrape time (`snapshot`): rows, requests and retries per
//!   company and entity, windows and runs by state, window durations, companies, refresh
//!   token expiry, sync watermark lag. Every instance sharing the database answers the same,
//!   and the totals are those of `qbo report --all-runs`;
//! - this process's (`process`, `qbo_process_*`): its own requests to QBO by outcome, 429s
//!   and retries, as its workers' client sent them.
//!
//! Labels are bounded: realm, entity, kind, status, outcome, reason. Never a run id, a token
//! or anything else that grows without bound or must stay secret.

mod fleet;
pub mod process;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::registry::Registry;
use sqlx::PgPool;

use crate::auth::TokenStore;
pub use snapshot::{Snapshot, DURATION_BUCKETS};

/// `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Where the refresh tokens' expiry is read.
#[derive(Clone, Default)]
pub enum TokenExpiry {
    /// `QBO_TOKEN_STORE=postgres`: `ops.oauth_tokens.refresh_expires_at` (no key needed).
    Postgres,
    /// A file or keyring store: each company's tokens loaded from it (the companies of
    /// `qbo companies`, and `realm` when set).
    Store {
        store: Arc<dyn TokenStore>,
        realm: Option<String>,
    },
    /// Not known to this process.
    #[default]
    Unknown,
}

/// The whole text of one scrape. Postgres unreachable: this process's metrics and
/// `qbo_metrics_postgres_up 0`.
pub async fn render(pool: &PgPool, expiry: &TokenExpiry) -> String {
    let started = Instant::now();
    let read = Snapshot::read(pool, matches!(expiry, TokenExpiry::Postgres)).await;
    let mut registry = Registry::default();
    process::register(&mut registry);
    match read {
        Ok(mut snap) => {
            if let TokenExpiry::Store { store, realm } = expiry {
                snap.token_expiry = from_store(store.as_ref(), realm.as_deref(), &snap).await;
            }
            registry.register_collector(Box::new(fleet::Fleet {
                snap,
                seconds: started.elapsed().as_secs_f64(),
            }));
        }
        Err(e) => {
            tracing::warn!(error = %crate::errors::chain(&e), "/metrics could not read Postgres");
            registry.register_collector(Box::new(fleet::PostgresDown));
        }
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// Each known company's refresh-token expiry as a file or keyring store holds it. A company
/// whose tokens cannot be read (or that QBO gave no expiry yet) has none.
async fn from_store(
    store: &dyn TokenStore,
    realm: Option<&str>,
    snap: &Snapshot,
) -> BTreeMap<String, f64> {
    let mut realms: Vec<&str> = snap.companies.keys().map(String::as_str).collect();
    if let Some(r) = realm.filter(|r| !realms.contains(r)) {
        realms.push(r);
    }
    let now = chrono::Utc::now();
    let mut out = BTreeMap::new();
    for realm in realms {
        match store.load(realm).await {
            Ok(Some(t)) => {
                if let Some(at) = t.refresh_expires_at {
                    out.insert(
                        realm.to_string(),
                        (at - now).num_milliseconds() as f64 / 1000.0,
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(realm, error = %crate::errors::chain(&e), "/metrics could not read the token store")
            }
        }
    }
    out
}
