//! OAuth2 with Intuit: keeps a valid access token, refreshes it before it expires or when
//! QBO rejects it, and persists every rotated refresh token before it is ever used.

mod local;
pub mod pg_store;
pub mod sealed;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, RefreshToken,
    RequestTokenError, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::QboSettings;
pub use store::{StoreError, TokenStore, Tokens};

/// The token endpoint's answer is awaited at most this long. With the Postgres store the
/// company's token row stays locked during the call, so it must be short.
const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// What a refresh under the lock came to.
enum Refreshed {
    /// Another process had refreshed already: its access token is still fresh.
    Reused(SecretString),
    /// This process exchanged the refresh token: these tokens must be saved before use.
    Fresh(Tokens),
}

/// Refresh this long before the access token's stated expiry, so a request in flight
/// never carries a token that dies on the way.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "QBO rejected the refresh token for realm {realm_id} kept in the token store ({store}) \
         (invalid_grant): it was rotated by another process, revoked, or is older than 100 days. \
         {env}To go on, pipe a current refresh token into `qbo auth import` (it replaces the \
         stored one), or re-authorize with `qbo auth login` (see runbooks/refresh-token.md)"
    )]
    InvalidGrant {
        realm_id: String,
        store: String,
        env: EnvToken,
    },
    #[error(
        "QBO rejected the app's credentials (invalid_client): check QBO_CLIENT_ID and QBO_CLIENT_SECRET"
    )]
    InvalidClient,
    #[error(
        "no refresh token for realm {realm_id} in the token store ({store}) and QBO_REFRESH_TOKEN \
         is not set; pipe a refresh token into `qbo auth import`, set QBO_REFRESH_TOKEN to seed \
         the store, or run `qbo auth login`"
    )]
    NoToken { realm_id: String, store: String },
    #[error("token endpoint failed: {0}")]
    Endpoint(String),
    #[error("could not persist the rotated refresh token, so it was not used")]
    Persist(#[source] StoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("OAuth configuration: {0}")]
    Config(String),
}

/// What became of `QBO_REFRESH_TOKEN` when the stored refresh token was rejected; part of
/// the message, so the user knows whether the variable was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvToken {
    /// Not a refresh token's rejection (an authorization code's, at login).
    NotApplicable,
    NotSet,
    /// It holds the rejected token, or one qbo already sent to QBO or seeded the store with
    /// (QBO retires a refresh token once used), so it was not sent.
    AlreadyUsed,
    /// It held a token never tried; QBO rejected that one too (remembered, not tried again).
    AlsoRejected,
}

impl std::fmt::Display for EnvToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvToken::NotApplicable => "",
            EnvToken::NotSet => "QBO_REFRESH_TOKEN is not set. ",
            EnvToken::AlreadyUsed => {
                "QBO_REFRESH_TOKEN holds that token or one qbo already used, so it was not sent \
                 again. "
            }
            EnvToken::AlsoRejected => {
                "QBO_REFRESH_TOKEN held a different token; qbo tried it once and QBO rejected it \
                 too. "
            }
        })
    }
}

impl AuthError {
    /// Failures that need a human (re-authorize or fix credentials), not a retry.
    pub fn needs_human(&self) -> bool {
        matches!(
            self,
            AuthError::InvalidGrant { .. } | AuthError::NoToken { .. } | AuthError::InvalidClient
        )
    }
}

/// Intuit adds the refresh token's lifetime to the standard token response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IntuitFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_refresh_token_expires_in: Option<i64>,
}
impl ExtraTokenFields for IntuitFields {}

pub type IntuitTokenResponse = StandardTokenResponse<IntuitFields, BasicTokenType>;

pub type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    IntuitTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What became of a rejected access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Another worker had already refreshed it: the request simply used an old token.
    AlreadyReplaced,
    /// This call refreshed it.
    Refreshed,
}

pub fn oauth_client(settings: &QboSettings) -> Result<OAuthClient, AuthError> {
    let auth = AuthUrl::new(settings.authorize_url.to_string())
        .map_err(|e| AuthError::Config(e.to_string()))?;
    let token = TokenUrl::new(settings.token_url.to_string())
        .map_err(|e| AuthError::Config(e.to_string()))?;
    Ok(
        oauth2::Client::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                settings.client_secret.expose_secret().to_string(),
            ))
            .set_auth_uri(auth)
            .set_token_uri(token),
    )
}

/// An HTTP client for the token endpoint. No redirects: a token endpoint that redirects
/// is misconfigured, and following it could hand the secret to another host.
pub fn token_http_client(timeout: Duration) -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| AuthError::Config(e.to_string()))
}

/// Turns a token response into the tokens we keep. QBO always sends a refresh token; if it
/// ever does not, the one we used stays current.
pub fn tokens_from_response(
    realm_id: &str,
    resp: &IntuitTokenResponse,
    previous_refresh: Option<&SecretString>,
) -> Result<Tokens, AuthError> {
    let now = Utc::now();
    let refresh_token: SecretString = match (resp.refresh_token(), previous_refresh) {
        (Some(rt), _) => rt.secret().clone().into(),
        (None, Some(prev)) => prev.clone(),
        (None, None) => return Err(AuthError::Endpoint("no refresh token in response".into())),
    };
    Ok(Tokens {
        realm_id: realm_id.to_string(),
        refresh_token,
        refresh_expires_at: resp
            .extra_fields()
            .x_refresh_token_expires_in
            .map(|s| now + chrono::Duration::seconds(s)),
        access_token: Some(resp.access_token().secret().clone().into()),
        access_expires_at: resp
            .expires_in()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| now + d),
        updated_at: now,
        env_token_used: None,
    })
}

/// Names the token endpoint's refusal. `store` describes where the realm's tokens live, for
/// the message that tells a human what to do.
pub fn classify_token_error<RE: std::error::Error + 'static>(
    realm_id: &str,
    store: &str,
    err: RequestTokenError<RE, BasicErrorResponse>,
) -> AuthError {
    match err {
        RequestTokenError::ServerResponse(resp) => match resp.error() {
            BasicErrorResponseType::InvalidGrant => AuthError::InvalidGrant {
                realm_id: realm_id.to_string(),
                store: store.to_string(),
                env: EnvToken::NotApplicable,
            },
            BasicErrorResponseType::InvalidClient | BasicErrorResponseType::UnauthorizedClient => {
                AuthError::InvalidClient
            }
            other => AuthError::Endpoint(format!("token endpoint answered `{}`", other.as_ref())),
        },
        RequestTokenError::Request(e) => AuthError::Endpoint(format!("request failed: {e}")),
        RequestTokenError::Parse(e, _) => {
            AuthError::Endpoint(format!("unexpected token response: {}", e.path()))
        }
        RequestTokenError::Other(s) => AuthError::Endpoint(s),
    }
}

fn access_is_fresh(t: &Tokens, now: DateTime<Utc>) -> bool {
    match (&t.access_token, t.access_expires_at) {
        (Some(_), Some(exp)) => exp - EXPIRY_MARGIN > now,
        _ => false,
    }
}

/// Hands out access tokens for one realm. One refresh at a time per process (a mutex) and per
/// token store (the store's lock), because two concurrent refreshes retire each other's token.
/// Stores whose I/O blocks run it on the blocking pool (`store::Blocking`).
pub struct TokenManager {
    realm_id: String,
    store: Arc<dyn TokenStore>,
    oauth: OAuthClient,
    http: reqwest::Client,
    /// `QBO_REFRESH_TOKEN`: seeds an empty store, and is tried once when the stored token is
    /// rejected and it holds a token qbo never used.
    env_token: Option<SecretString>,
    current: Mutex<Option<Tokens>>,
}

impl TokenManager {
    pub fn new(settings: &QboSettings, store: Arc<dyn TokenStore>) -> Result<Self, AuthError> {
        Ok(TokenManager {
            realm_id: settings.realm_id.clone(),
            store,
            oauth: oauth_client(settings)?,
            http: token_http_client(TOKEN_CALL_TIMEOUT)?,
            env_token: settings.seed_refresh_token.clone(),
            current: Mutex::new(None),
        })
    }

    pub fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// A token valid for at least another minute, refreshing if needed.
    pub async fn access_token(&self) -> Result<SecretString, AuthError> {
        let mut current = self.current.lock().await;
        if current.is_none() {
            *current = Some(self.load_or_seed().await?);
        }
        if let Some(t) = current.as_ref().filter(|t| access_is_fresh(t, Utc::now())) {
            if let Some(a) = &t.access_token {
                return Ok(a.clone());
            }
        }
        self.refresh_locked(&mut current).await
    }

    /// QBO rejected `rejected`: refresh, unless another task already replaced it. Says
    /// which, so a caller can tell a stale token (free to retry) from a fresh one refused.
    pub async fn access_token_rejected(
        &self,
        rejected: &SecretString,
    ) -> Result<Rejected, AuthError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_mut() {
            if let Some(a) = &t.access_token {
                if a.expose_secret() != rejected.expose_secret() && access_is_fresh(t, Utc::now()) {
                    return Ok(Rejected::AlreadyReplaced);
                }
            }
            t.access_token = None;
            t.access_expires_at = None;
        }
        self.refresh_locked(&mut current).await?;
        Ok(Rejected::Refreshed)
    }

    fn describe_store(&self) -> String {
        self.store.describe(&self.realm_id)
    }

    async fn load_or_seed(&self) -> Result<Tokens, AuthError> {
        if let Some(t) = self.store.load(&self.realm_id).await? {
            return Ok(t);
        }
        let seed = self.seed_tokens()?;
        // Stored only if the realm still has none: a process that rotated the token since
        // this one looked must not see it replaced by the retired seed.
        let kept = self.store.seed(&seed).await?;
        tracing::info!(store = %self.describe_store(), "seeded the token store from QBO_REFRESH_TOKEN");
        Ok(kept)
    }

    /// Tokens from `QBO_REFRESH_TOKEN` for an empty store, recording that value as used.
    fn seed_tokens(&self) -> Result<Tokens, AuthError> {
        match &self.env_token {
            Some(rt) => {
                let mut tokens = Tokens::unused(&self.realm_id, rt.clone());
                tokens.env_token_used = Some(store::fingerprint(rt));
                Ok(tokens)
            }
            None => Err(AuthError::NoToken {
                realm_id: self.realm_id.clone(),
                store: self.describe_store(),
            }),
        }
    }

    /// Refreshes under the store's refresh lock (a lock file, or the company's row in
    /// Postgres), which serialises refreshes across processes and machines. The rotated
    /// tokens are saved and the lock released (committed) before the new access token is
    /// handed out.
    async fn refresh_locked(
        &self,
        current: &mut Option<Tokens>,
    ) -> Result<SecretString, AuthError> {
        let mut lock = self.store.begin_refresh(&self.realm_id).await?;
        let outcome = self.refresh_under(&mut *lock, current).await;
        match outcome {
            Ok(Refreshed::Reused(access)) => {
                lock.release().await?;
                Ok(access)
            }
            Ok(Refreshed::Fresh(fresh)) => {
                // Persist before use: once this returns, the store holds the live token.
                lock.save(&fresh).await.map_err(AuthError::Persist)?;
                lock.release().await.map_err(AuthError::Persist)?;
                tracing::info!(
                    realm_id = %self.realm_id,
                    access_expires_at = ?fresh.access_expires_at,
                    "refreshed the access token; rotated refresh token saved"
                );
                let access = fresh.access_token.clone().expect("response carries one");
                *current = Some(fresh);
                Ok(access)
            }
            Err(e @ AuthError::InvalidGrant { .. }) => {
                if let Err(mark) = lock
                    .refused("QBO refused the refresh token (invalid_grant)")
                    .await
                {
                    tracing::warn!(error = %mark, realm_id = %self.realm_id, "could not record that the company needs a new authorization");
                }
                Err(e)
            }
            Err(e) => {
                // Saves made under the lock (a seed, a tried QBO_REFRESH_TOKEN) still count.
                if let Err(rel) = lock.release().await {
                    tracing::warn!(error = %rel, "releasing the token store's refresh lock failed");
                }
                Err(e)
            }
        }
    }

    /// The refresh itself, with the lock held: uses a token another process rotated while
    /// this one waited, or exchanges the refresh token.
    async fn refresh_under(
        &self,
        lock: &mut dyn store::RefreshLock,
        current: &mut Option<Tokens>,
    ) -> Result<Refreshed, AuthError> {
        // Under the lock the stored row is the truth. A different refresh token there means
        // another process rotated ours while we waited, or a human imported a new one (its
        // `updated_at` is the minimum date, and clocks of other machines may lag): either
        // way ours is retired, so it is never compared by date. The same refresh token means
        // nobody rotated it: what this process holds goes on.
        if let Some(stored) = lock.take_stored() {
            let same = current.as_ref().is_some_and(|c| {
                store::fingerprint(&c.refresh_token) == store::fingerprint(&stored.refresh_token)
            });
            if !same {
                *current = Some(stored);
            }
        }
        let tokens = match current.take() {
            Some(t) => t,
            None => {
                let seed = self.seed_tokens()?;
                lock.save(&seed).await?;
                seed
            }
        };
        if access_is_fresh(&tokens, Utc::now()) {
            if let Some(a) = tokens.access_token.clone() {
                *current = Some(tokens);
                return Ok(Refreshed::Reused(a));
            }
        }
        let (kept, result) = self.exchange_or_env(tokens, lock).await;
        match result {
            Ok(fresh) => Ok(Refreshed::Fresh(fresh)),
            Err(e) => {
                *current = Some(kept);
                Err(e)
            }
        }
    }

    /// Exchanges the stored refresh token; if QBO rejects it, tries `QBO_REFRESH_TOKEN` once
    /// when that holds a token never used. Returns the tokens to keep if it all fails (they
    /// record the value tried), and the new tokens, which carry that record on.
    async fn exchange_or_env(
        &self,
        tokens: Tokens,
        lock: &mut dyn store::RefreshLock,
    ) -> (Tokens, Result<Tokens, AuthError>) {
        let carry = |fresh: Tokens, from: &Tokens| Tokens {
            env_token_used: from.env_token_used.clone(),
            ..fresh
        };
        match self.exchange(&tokens.refresh_token).await {
            Ok(fresh) => {
                let fresh = carry(fresh, &tokens);
                (tokens, Ok(fresh))
            }
            Err(AuthError::InvalidGrant { .. }) => match self.untried_env_token(&tokens) {
                Err(env) => {
                    let e = self.rejected(env);
                    (tokens, Err(e))
                }
                Ok(env) => {
                    // Recorded whatever QBO answers, so this value is offered only once.
                    let tokens = Tokens {
                        env_token_used: Some(store::fingerprint(&env)),
                        ..tokens
                    };
                    let result = self.try_env_token(&tokens, &env, lock).await;
                    let result = result.map(|fresh| carry(fresh, &tokens));
                    (tokens, result)
                }
            },
            Err(e) => (tokens, Err(e)),
        }
    }

    /// Exchanges a refresh token for new tokens (not yet saved).
    async fn exchange(&self, refresh_token: &SecretString) -> Result<Tokens, AuthError> {
        let refresh = RefreshToken::new(refresh_token.expose_secret().to_string());
        let response = self
            .oauth
            .exchange_refresh_token(&refresh)
            .request_async(&self.http)
            .await
            .map_err(|e| classify_token_error(&self.realm_id, &self.describe_store(), e))?;
        tokens_from_response(&self.realm_id, &response, Some(refresh_token))
    }

    /// `QBO_REFRESH_TOKEN`, unless it is unset, the stored token itself, or a value qbo
    /// already used (seeded, or tried before): QBO retires a refresh token once used, and a
    /// rejected one stays rejected, so offering it again would only repeat the failure.
    fn untried_env_token(&self, stored: &Tokens) -> Result<SecretString, EnvToken> {
        let env = self.env_token.as_ref().ok_or(EnvToken::NotSet)?;
        let print = store::fingerprint(env);
        let used = stored.env_token_used.as_deref() == Some(print.as_str())
            || env.expose_secret() == stored.refresh_token.expose_secret();
        if used {
            return Err(EnvToken::AlreadyUsed);
        }
        Ok(env.clone())
    }

    fn rejected(&self, env: EnvToken) -> AuthError {
        AuthError::InvalidGrant {
            realm_id: self.realm_id.clone(),
            store: self.describe_store(),
            env,
        }
    }

    /// The stored refresh token was rejected and `QBO_REFRESH_TOKEN` holds one never used:
    /// tries it once. If QBO rejects it too, `stored` (which records the attempt) is saved,
    /// so no later run offers that value again.
    async fn try_env_token(
        &self,
        stored: &Tokens,
        env: &SecretString,
        lock: &mut dyn store::RefreshLock,
    ) -> Result<Tokens, AuthError> {
        tracing::warn!(
            store = %self.describe_store(),
            "QBO rejected the stored refresh token; trying the different one in QBO_REFRESH_TOKEN"
        );
        match self.exchange(env).await {
            Ok(fresh) => {
                tracing::info!(
                    "QBO accepted the token in QBO_REFRESH_TOKEN; it replaces the stored one"
                );
                Ok(fresh)
            }
            Err(AuthError::InvalidGrant { .. }) => {
                lock.save(stored).await?;
                Err(self.rejected(EnvToken::AlsoRejected))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::thread::ThreadId;

    use super::*;
    use crate::config::{self, TokenStoreSpec};
    use qbo_sandbox::{Sandbox, SandboxConfig};

    /// A file store that notes which thread each call ran on.
    struct Spy {
        inner: store::FileStore,
        threads: Arc<std::sync::Mutex<Vec<ThreadId>>>,
    }

    impl Spy {
        fn note(&self) {
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
        }
    }

    impl store::LocalStore for Spy {
        fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
            self.note();
            self.inner.load(realm_id)
        }
        fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
            self.note();
            self.inner.save(tokens)
        }
        fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
            self.note();
            self.inner.forget(realm_id)
        }
        fn lock(&self, realm_id: &str) -> Result<Option<File>, StoreError> {
            self.note();
            self.inner.lock(realm_id)
        }
        fn describe(&self, realm_id: &str) -> String {
            self.inner.describe(realm_id)
        }
    }

    async fn small_sandbox() -> Sandbox {
        Sandbox::start(SandboxConfig {
            invoices: 3,
            customers: 2,
            items: 2,
            ..SandboxConfig::default()
        })
        .await
        .unwrap()
    }

    fn settings_for(sandbox: &Sandbox) -> QboSettings {
        let url = |u: String| config::parse_url("sandbox", &u).unwrap();
        QboSettings {
            client_id: sandbox.client_id().to_string(),
            client_secret: SecretString::from(sandbox.client_secret()),
            realm_id: sandbox.realm_id().to_string(),
            api_base_url: url(sandbox.api_base_url()),
            token_url: url(sandbox.token_url()),
            authorize_url: url(sandbox.authorize_url()),
            minor_version: config::MIN_MINOR_VERSION,
            token_store: TokenStoreSpec::Keyring,
            seed_refresh_token: Some(sandbox.current_refresh_token().into()),
        }
    }

    // A current-thread runtime: the runtime's only thread is this test's.
    #[tokio::test]
    async fn token_store_io_never_runs_on_the_runtime_thread() {
        let sandbox = small_sandbox().await;
        let settings = settings_for(&sandbox);
        let dir = tempfile::tempdir().unwrap();
        let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let spy = Spy {
            inner: store::FileStore::new(dir.path().join("tokens.json")),
            threads: threads.clone(),
        };
        let manager = TokenManager::new(&settings, Arc::new(store::Blocking::new(spy))).unwrap();
        // Seed, refresh, then a rejected access token: every path that touches the store.
        let token = manager.access_token().await.unwrap();
        manager.access_token_rejected(&token).await.unwrap();

        let runtime = std::thread::current().id();
        let threads = threads.lock().unwrap();
        assert!(threads.len() >= 5, "{} store calls", threads.len());
        assert!(
            threads.iter().all(|t| *t != runtime),
            "a store call ran on the runtime thread"
        );
    }

    /// A long-running process holds the realm's tokens; the company is disconnected and a
    /// human imports a new refresh token (`auth import` stores it as never refreshed, the
    /// minimum date). The process's next refresh must use the imported token, not send its
    /// retired one and fail with invalid_grant.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refresh_adopts_a_token_imported_while_the_process_ran() {
        let sandbox = small_sandbox().await;
        let settings = settings_for(&sandbox);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = store::Blocking::new(store::FileStore::new(path.clone()));
        let manager = TokenManager::new(&settings, Arc::new(store)).unwrap();
        let token = manager.access_token().await.unwrap();
        let before = sandbox.stats().refreshes;

        sandbox.revoke_tokens();
        let imported = Tokens::unused(
            sandbox.realm_id(),
            SecretString::from(sandbox.current_refresh_token()),
        );
        // Another process: `auth import`.
        let importer = store::Blocking::new(store::FileStore::new(path));
        importer.save(&imported).await.unwrap();

        let outcome = manager.access_token_rejected(&token).await;
        assert!(
            matches!(outcome, Ok(Rejected::Refreshed)),
            "the imported token was not used: {outcome:?}"
        );
        assert_eq!(sandbox.stats().refreshes, before + 1);
        let fresh = manager.access_token().await.unwrap();
        assert_ne!(fresh.expose_secret(), token.expose_secret());
    }
}
