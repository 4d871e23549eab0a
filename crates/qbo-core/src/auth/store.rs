//! Where tokens live between runs. QBO rotates refresh tokens, so every save must be
//! atomic: a crash mid-write must leave either the old or the new token, never half of one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::TokenStoreSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the OS keyring is not usable here ({0}); set QBO_TOKEN_STORE=file:<path> to keep tokens \
         in a file readable only by you"
    )]
    KeyringUnavailable(String),
    #[error("token file {path}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "token file {path} can be read or changed by other users (mode {mode:o}), so qbo will not \
         use it; run `chmod 600 {path}`, and consider the refresh token leaked: re-authorize \
         with `qbo auth login`",
        path = path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("token store content is not valid: {0}")]
    Corrupt(String),
    #[error("the token store task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("QBO_TOKEN_STORE=postgres keeps tokens in the database of DATABASE_URL, which this command was not given")]
    NeedsDatabase,
    #[error(transparent)]
    Key(#[from] super::sealed::KeyError),
    #[error(
        "the tokens of realm {realm_id} in ops.oauth_tokens cannot be opened: {why}. Nothing \
         was sent to QBO; pipe a refresh token into `qbo auth import --realm-id {realm_id}` or \
         run `qbo auth login` to replace them"
    )]
    Sealed {
        realm_id: String,
        why: super::sealed::OpenError,
    },
    #[error("token store database error")]
    Db(#[from] sqlx::Error),
}

/// The tokens of one realm. Secrets stay wrapped (their `Debug` prints `[REDACTED]`); only
/// the store's serialiser sees them.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub realm_id: String,
    pub refresh_token: SecretString,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub access_token: Option<SecretString>,
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When QBO last issued these tokens; `NEVER_REFRESHED` for a refresh token that was
    /// stored (seeded or imported) but not yet used.
    pub updated_at: DateTime<Utc>,
    /// Fingerprint of the last `QBO_REFRESH_TOKEN` value qbo sent to QBO or seeded the store
    /// with, so that value is never offered again (QBO retires a refresh token once used).
    pub env_token_used: Option<String>,
}

/// `updated_at` of tokens that QBO has not issued to qbo yet (seeded or imported).
pub const NEVER_REFRESHED: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;

impl Tokens {
    /// A refresh token that was handed to qbo, not yet exchanged with QBO.
    pub fn unused(realm_id: &str, refresh_token: SecretString) -> Tokens {
        Tokens {
            realm_id: realm_id.to_string(),
            refresh_token,
            refresh_expires_at: None,
            access_token: None,
            access_expires_at: None,
            updated_at: NEVER_REFRESHED,
            env_token_used: None,
        }
    }

    pub fn never_refreshed(&self) -> bool {
        self.updated_at == NEVER_REFRESHED
    }
}

/// A one-way fingerprint of a token, to recognise a value without keeping it.
pub fn fingerprint(token: &SecretString) -> String {
    use sha2::Digest;
    format!(
        "{:x}",
        sha2::Sha256::digest(token.expose_secret().as_bytes())
    )
}

/// On-disk shape. Plain strings live only for the duration of a (de)serialisation.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredTokens {
    realm_id: String,
    refresh_token: String,
    refresh_expires_at: Option<DateTime<Utc>>,
    access_token: Option<String>,
    access_expires_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env_token_used: Option<String>,
}

pub(super) fn encode(t: &Tokens) -> Result<String, StoreError> {
    serde_json::to_string(&stored(t)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn stored(t: &Tokens) -> StoredTokens {
    StoredTokens {
        realm_id: t.realm_id.clone(),
        refresh_token: t.refresh_token.expose_secret().to_string(),
        refresh_expires_at: t.refresh_expires_at,
        access_token: t
            .access_token
            .as_ref()
            .map(|a| a.expose_secret().to_string()),
        access_expires_at: t.access_expires_at,
        updated_at: t.updated_at,
        env_token_used: t.env_token_used.clone(),
    }
}

pub(super) fn decode(s: &str) -> Result<Tokens, StoreError> {
    // serde_json's error names a position, never the content, so no secret leaks through it.
    let s: StoredTokens =
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(unstored(s))
}

pub(super) fn unstored(s: StoredTokens) -> Tokens {
    Tokens {
        realm_id: s.realm_id,
        refresh_token: s.refresh_token.into(),
        refresh_expires_at: s.refresh_expires_at,
        access_token: s.access_token.map(Into::into),
        access_expires_at: s.access_expires_at,
        updated_at: s.updated_at,
        env_token_used: s.env_token_used,
    }
}

/// A place that keeps the latest tokens per realm, and serialises each realm's refreshes
/// among everyone who shares it (two refreshes at once are QBO's classic `invalid_grant`).
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError>;
    async fn save(&self, tokens: &Tokens) -> Result<(), StoreError>;
    /// Stores `tokens` unless the realm already has some; returns what the store holds
    /// (a seed never overwrites a token another process has rotated since).
    async fn seed(&self, tokens: &Tokens) -> Result<Tokens, StoreError>;
    /// Removes the realm's tokens; false when there were none.
    async fn forget(&self, realm_id: &str) -> Result<bool, StoreError>;
    /// Takes the realm's refresh lock (waiting for whoever holds it) and reads the tokens
    /// under it: another process may have rotated them while this one waited.
    async fn begin_refresh(&self, realm_id: &str) -> Result<Box<dyn RefreshLock>, StoreError>;
    /// Where the realm's tokens live, precisely enough to find them (a path, a keyring entry).
    fn describe(&self, realm_id: &str) -> String;
}

/// A realm's refresh lock, held until `release` or `refused` (or dropped: then saves not
/// yet released may be lost, as a rolled-back transaction's are).
#[async_trait::async_trait]
pub trait RefreshLock: Send {
    /// The tokens as stored when the lock was taken (once).
    fn take_stored(&mut self) -> Option<Tokens>;
    /// Saves tokens under the lock; durable once `release` returns.
    async fn save(&mut self, tokens: &Tokens) -> Result<(), StoreError>;
    /// Makes the saves durable and lets the next refresher in.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
    /// QBO refused the realm's refresh token: records it where the store can (the Postgres
    /// store marks the company `needs_reauth`), then releases like `release`.
    async fn refused(self: Box<Self>, reason: &str) -> Result<(), StoreError>;
}

pub use super::local::{Blocking, FileStore, KeyringStore, LocalStore};

/// Opens the configured store. The Postgres store needs the database (`db`) and the key
/// (`QBO_TOKEN_KEY` or `QBO_TOKEN_KEY_FILE`), both checked here, before any work.
pub async fn open(
    spec: &TokenStoreSpec,
    db: Option<&sqlx::PgPool>,
) -> Result<Arc<dyn TokenStore>, StoreError> {
    match spec {
        TokenStoreSpec::Keyring => Ok(Arc::new(Blocking::new(KeyringStore::probe()?))),
        TokenStoreSpec::File(path) => {
            // Checked up front too, so a command refuses before it touches QBO or Postgres.
            if path.exists() {
                super::local::check_private(path)?;
            }
            Ok(Arc::new(Blocking::new(FileStore::new(path.clone()))))
        }
        TokenStoreSpec::Postgres => {
            let keys = super::sealed::TokenKeys::from_env().await?;
            let pool = db.ok_or(StoreError::NeedsDatabase)?;
            Ok(Arc::new(super::pg_store::PgTokenStore::new(
                pool.clone(),
                keys,
            )))
        }
    }
}

/// Tokens kept only in memory (tests, and the demo's throwaway sandbox company).
#[derive(Default)]
pub struct MemoryStore {
    tokens: Arc<Mutex<Option<Tokens>>>,
}

/// The memory store's refresh "lock": saves go straight to memory.
struct MemoryLock {
    tokens: Arc<Mutex<Option<Tokens>>>,
    stored: Option<Tokens>,
}

#[async_trait::async_trait]
impl RefreshLock for MemoryLock {
    fn take_stored(&mut self) -> Option<Tokens> {
        self.stored.take()
    }

    async fn save(&mut self, tokens: &Tokens) -> Result<(), StoreError> {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokens.clone());
        Ok(())
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn refused(self: Box<Self>, _reason: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// In memory, so nothing blocks: a `TokenStore` without the blocking pool. One process, so
/// the refresh lock is the token manager's own mutex.
#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        let guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard.clone().filter(|t| t.realm_id == realm_id))
    }

    async fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokens.clone());
        Ok(())
    }

    async fn seed(&self, tokens: &Tokens) -> Result<Tokens, StoreError> {
        let mut guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match guard.clone().filter(|t| t.realm_id == tokens.realm_id) {
            Some(already) => Ok(already),
            None => {
                *guard = Some(tokens.clone());
                Ok(tokens.clone())
            }
        }
    }

    async fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        let mut guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let found = guard.as_ref().is_some_and(|t| t.realm_id == realm_id);
        if found {
            *guard = None;
        }
        Ok(found)
    }

    async fn begin_refresh(&self, realm_id: &str) -> Result<Box<dyn RefreshLock>, StoreError> {
        let stored = self.load(realm_id).await?;
        Ok(Box::new(MemoryLock {
            tokens: self.tokens.clone(),
            stored,
        }))
    }

    fn describe(&self, _realm_id: &str) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample() -> Tokens {
        Tokens {
            realm_id: "123".into(),
            refresh_token: "rt-secret".to_string().into(),
            refresh_expires_at: None,
            access_token: Some("at-secret".to_string().into()),
            access_expires_at: None,
            updated_at: Utc::now(),
            env_token_used: None,
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("rt-secret") && !s.contains("at-secret"), "{s}");
    }

    #[test]
    fn the_keyring_store_names_its_entry() {
        let d = KeyringStore.describe("123");
        assert!(
            d.starts_with("keyring entry service=qbo user=realm:123"),
            "{d}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn file_store_is_private_and_refuses_open_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let store = FileStore::new(path.clone());
        store.save(&sample()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = store.load("123").unwrap().unwrap();
        assert_eq!(back.refresh_token.expose_secret(), "rt-secret");
        assert!(store.load("other-realm").unwrap().is_none());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load("123").unwrap_err();
        assert!(matches!(err, StoreError::TooOpen { .. }), "{err}");
    }
}
