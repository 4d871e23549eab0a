//! OAuth2 with Intuit: keeps a valid access token, refreshes it before it expires or when
//! QBO rejects it, and persists every rotated refresh token before it is ever used.

pub mod login;
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

/// Refresh this long before the access token's stated expiry, so a request in flight
/// never carries a token that dies on the way.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "QBO rejected the refresh token for realm {realm_id} (invalid_grant): it was rotated by \
         another process, revoked, or is older than 100 days. A human must re-authorize: run \
         `qbo auth login` (see runbooks/refresh-token.md)"
    )]
    InvalidGrant { realm_id: String },
    #[error(
        "QBO rejected the app's credentials (invalid_client): check QBO_CLIENT_ID and QBO_CLIENT_SECRET"
    )]
    InvalidClient,
    #[error(
        "no refresh token for realm {realm_id} in the token store ({store}); run `qbo auth login`, \
         or set QBO_REFRESH_TOKEN once to seed the store"
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
    })
}

pub fn classify_token_error<RE: std::error::Error + 'static>(
    realm_id: &str,
    err: RequestTokenError<RE, BasicErrorResponse>,
) -> AuthError {
    match err {
        RequestTokenError::ServerResponse(resp) => match resp.error() {
            BasicErrorResponseType::InvalidGrant => AuthError::InvalidGrant {
                realm_id: realm_id.to_string(),
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
pub struct TokenManager {
    realm_id: String,
    store: Arc<dyn TokenStore>,
    oauth: OAuthClient,
    http: reqwest::Client,
    seed_refresh_token: Option<SecretString>,
    current: Mutex<Option<Tokens>>,
}

impl TokenManager {
    pub fn new(settings: &QboSettings, store: Arc<dyn TokenStore>) -> Result<Self, AuthError> {
        Ok(TokenManager {
            realm_id: settings.realm_id.clone(),
            store,
            oauth: oauth_client(settings)?,
            http: token_http_client(Duration::from_secs(60))?,
            seed_refresh_token: settings.seed_refresh_token.clone(),
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
            *current = Some(self.load_or_seed()?);
        }
        if let Some(t) = current.as_ref().filter(|t| access_is_fresh(t, Utc::now())) {
            if let Some(a) = &t.access_token {
                return Ok(a.clone());
            }
        }
        self.refresh_locked(&mut current).await
    }

    /// QBO answered 401 to `rejected`. Refresh unless another task already did.
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

    fn load_or_seed(&self) -> Result<Tokens, AuthError> {
        if let Some(t) = self.store.load(&self.realm_id)? {
            return Ok(t);
        }
        match &self.seed_refresh_token {
            Some(rt) => {
                let tokens = Tokens {
                    realm_id: self.realm_id.clone(),
                    refresh_token: rt.clone(),
                    refresh_expires_at: None,
                    access_token: None,
                    access_expires_at: None,
                    updated_at: DateTime::<Utc>::MIN_UTC,
                };
                self.store.save(&tokens)?;
                tracing::info!(store = %self.store.describe(), "seeded the token store from QBO_REFRESH_TOKEN");
                Ok(tokens)
            }
            None => Err(AuthError::NoToken {
                realm_id: self.realm_id.clone(),
                store: self.store.describe(),
            }),
        }
    }

    async fn refresh_locked(
        &self,
        current: &mut Option<Tokens>,
    ) -> Result<SecretString, AuthError> {
        let store = self.store.clone();
        let realm = self.realm_id.clone();
        let _cross_process = tokio::task::spawn_blocking(move || store.lock(&realm))
            .await
            .map_err(|e| AuthError::Endpoint(format!("lock task failed: {e}")))??;

        // Another process may have refreshed while we waited for the lock: its token is the
        // live one, and ours is retired.
        if let Some(stored) = self.store.load(&self.realm_id)? {
            let newer = current
                .as_ref()
                .is_none_or(|c| stored.updated_at > c.updated_at);
            if newer {
                *current = Some(stored);
            }
        }
        let tokens = match current.as_ref() {
            Some(t) => t,
            None => {
                *current = Some(self.load_or_seed()?);
                current.as_ref().expect("just set")
            }
        };
        if access_is_fresh(tokens, Utc::now()) {
            if let Some(a) = &tokens.access_token {
                return Ok(a.clone());
            }
        }

        let refresh = RefreshToken::new(tokens.refresh_token.expose_secret().to_string());
        let response = self
            .oauth
            .exchange_refresh_token(&refresh)
            .request_async(&self.http)
            .await
            .map_err(|e| classify_token_error(&self.realm_id, e))?;
        let fresh = tokens_from_response(&self.realm_id, &response, Some(&tokens.refresh_token))?;
        // Persist before use: if we crash after this line the store already holds the live token.
        self.store.save(&fresh).map_err(AuthError::Persist)?;
        tracing::info!(
            realm_id = %self.realm_id,
            access_expires_at = ?fresh.access_expires_at,
            "refreshed the access token; rotated refresh token saved"
        );
        let access = fresh.access_token.clone().expect("response carries one");
        *current = Some(fresh);
        Ok(access)
    }
}
