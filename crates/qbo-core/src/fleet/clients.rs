//! One QBO client per company a worker serves, built the first time the worker takes a
//! window of the company and kept: its token manager (the realm's tokens, refreshed under
//! the store's lock) and its limiter (the realm's budget, shared with every other process
//! through Postgres) must be one per realm in the process, whatever number of the worker's
//! slots load the company at once.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, TokenManager, TokenStore};
use crate::client::{ClientError, QboClient};
use crate::config::{QboSettings, RateLimits, RetryPolicy};
use crate::store::throttle::SharedBudget;
use crate::store::PgStore;

/// Why a company's client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("building the HTTP client for realm {realm_id}")]
    Client {
        realm_id: String,
        #[source]
        source: ClientError,
    },
    #[error("reading the token store")]
    TokenStore(#[source] crate::auth::store::StoreError),
}

impl ClientSetupError {
    /// A human must act for this company (no token, or QBO rejected it); the worker skips it
    /// and goes on with the others.
    pub fn needs_human(&self) -> bool {
        matches!(self, ClientSetupError::Auth(a) if a.needs_human())
    }
}

pub struct RealmClients {
    /// The app's settings; `realm_id` is replaced per company.
    base: QboSettings,
    tokens: Arc<dyn TokenStore>,
    retry: RetryPolicy,
    limits: RateLimits,
    store: PgStore,
    cancel: CancellationToken,
    built: Mutex<HashMap<String, Arc<OnceCell<Arc<QboClient>>>>>,
}

impl RealmClients {
    pub fn new(
        base: QboSettings,
        tokens: Arc<dyn TokenStore>,
        retry: RetryPolicy,
        limits: RateLimits,
        store: PgStore,
        cancel: CancellationToken,
    ) -> Self {
        RealmClients {
            base,
            tokens,
            retry,
            limits,
            store,
            cancel,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The company's client, built on first use. A company without tokens in the store is
    /// refused here, before any of its windows is claimed.
    pub async fn get(&self, realm_id: &str) -> Result<Arc<QboClient>, ClientSetupError> {
        let cell = self
            .built
            .lock()
            .await
            .entry(realm_id.to_string())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.build(realm_id)).await.cloned()
    }

    async fn build(&self, realm_id: &str) -> Result<Arc<QboClient>, ClientSetupError> {
        let mut settings = self.base.clone();
        // QBO_REFRESH_TOKEN (if any) seeds only the company QBO_REALM_ID names.
        if settings.realm_id != realm_id {
            settings.seed_refresh_token = None;
        }
        settings.realm_id = realm_id.to_string();
        if settings.seed_refresh_token.is_none() {
            let stored = self
                .tokens
                .load(realm_id)
                .await
                .map_err(ClientSetupError::TokenStore)?;
            if stored.is_none() {
                return Err(AuthError::NoToken {
                    realm_id: realm_id.to_string(),
                    store: self.tokens.describe(realm_id),
                }
                .into());
            }
        }
        let manager = Arc::new(TokenManager::new(&settings, self.tokens.clone())?);
        let client = QboClient::new(
            &settings,
            manager,
            self.retry.clone(),
            &self.limits,
            self.cancel.clone(),
        )
        .map_err(|source| ClientSetupError::Client {
            realm_id: realm_id.to_string(),
            source,
        })?;
        let budget = SharedBudget::new(self.store.pool().clone(), realm_id);
        Ok(Arc::new(client.share_budget(budget).await))
    }

    /// Publishes every company's last requests to its shared budget (before exiting).
    pub async fn finish(&self) {
        let cells: Vec<_> = self.built.lock().await.values().cloned().collect();
        for cell in cells {
            if let Some(client) = cell.get() {
                client.finish().await;
            }
        }
    }
}
