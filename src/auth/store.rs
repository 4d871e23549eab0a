//! Where tokens live between runs. QBO rotates refresh tokens, so every save must be
//! atomic: a crash mid-write must leave either the old or the new token, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
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
struct StoredTokens {
    realm_id: String,
    refresh_token: String,
    refresh_expires_at: Option<DateTime<Utc>>,
    access_token: Option<String>,
    access_expires_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env_token_used: Option<String>,
}

fn encode(t: &Tokens) -> Result<String, StoreError> {
    serde_json::to_string(&stored(t)).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn stored(t: &Tokens) -> StoredTokens {
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

fn decode(s: &str) -> Result<Tokens, StoreError> {
    // serde_json's error names a position, never the content, so no secret leaks through it.
    let s: StoredTokens =
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(unstored(s))
}

fn unstored(s: StoredTokens) -> Tokens {
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

/// A token file holds every realm that uses it, so one file can serve many companies.
#[derive(Serialize, Deserialize, Default)]
struct TokenFile {
    version: u32,
    realms: std::collections::BTreeMap<String, StoredTokens>,
}

/// A place that keeps the latest tokens per realm. `lock` serialises refreshes across
/// processes that share the store (two refreshes at once are QBO's classic `invalid_grant`).
pub trait TokenStore: Send + Sync {
    fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError>;
    fn save(&self, tokens: &Tokens) -> Result<(), StoreError>;
    /// Removes the realm's tokens; false when there were none.
    fn forget(&self, realm_id: &str) -> Result<bool, StoreError>;
    fn lock(&self, realm_id: &str) -> Result<Option<File>, StoreError>;
    /// Where the realm's tokens live, precisely enough to find them (a path, a keyring entry).
    fn describe(&self, realm_id: &str) -> String;
}

/// Runs store I/O (file reads, fsyncs, keyring calls, lock waits) on tokio's blocking pool,
/// never on the threads that drive requests.
pub async fn blocking<T, F>(store: &Arc<dyn TokenStore>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(StoreError::Task)?
}

pub fn open(spec: &TokenStoreSpec) -> Result<Arc<dyn TokenStore>, StoreError> {
    match spec {
        TokenStoreSpec::Keyring => Ok(Arc::new(KeyringStore::probe()?)),
        TokenStoreSpec::File(path) => {
            // Checked up front too, so a command refuses before it touches QBO or Postgres.
            if path.exists() {
                check_private(path)?;
            }
            Ok(Arc::new(FileStore::new(path.clone())))
        }
    }
}

/// Tokens in one JSON file per realm: `<path>` holds the realm's tokens, mode 0600,
/// replaced by write-then-rename.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: PathBuf) -> Self {
        FileStore { path }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn tmp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp.{}", std::process::id()));
        self.path.with_file_name(name)
    }

    /// Reads the file, lets `change` edit it, and writes it back atomically if `change`
    /// says it changed something. Returns that answer.
    fn update(&self, change: impl FnOnce(&mut TokenFile) -> bool) -> Result<bool, StoreError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let mut file = match fs::read_to_string(&self.path) {
            Ok(text) => {
                check_private(&self.path)?;
                parse_file(&text)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(e) => return Err(self.io(e)),
        };
        if !change(&mut file) {
            return Ok(false);
        }
        file.version = 1;
        let body =
            serde_json::to_string_pretty(&file).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tmp = self.tmp_path();
        let write = || -> std::io::Result<()> {
            let mut f = create_private(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable before the new token is used.
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(e)
        })?;
        Ok(true)
    }
}

fn parse_file(text: &str) -> Result<TokenFile, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::TooOpen {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

impl TokenStore for FileStore {
    fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        check_private(&self.path)?;
        let mut file = parse_file(&text)?;
        Ok(file.realms.remove(realm_id).map(unstored))
    }

    fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        self.update(|file| {
            file.realms.insert(tokens.realm_id.clone(), stored(tokens));
            true
        })
        .map(|_| ())
    }

    fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        if !self.path.exists() {
            return Ok(false);
        }
        self.update(|file| file.realms.remove(realm_id).is_some())
    }

    fn lock(&self, _realm_id: &str) -> Result<Option<File>, StoreError> {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock_path = self.path.with_file_name(name);
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        file.lock().map_err(|e| self.io(e))?;
        Ok(Some(file))
    }

    fn describe(&self, _realm_id: &str) -> String {
        format!("file:{}", self.path.display())
    }
}

/// The OS keyring (Secret Service, macOS Keychain, Windows Credential Manager, or the Linux
/// kernel keyring, whichever `keyring` finds).
pub struct KeyringStore;

const KEYRING_SERVICE: &str = "qbo";

impl KeyringStore {
    /// Fails early, with advice, when the machine has no usable keyring (CI, containers).
    pub fn probe() -> Result<Self, StoreError> {
        let entry = keyring::Entry::new(KEYRING_SERVICE, "probe")
            .map_err(|e| StoreError::KeyringUnavailable(e.to_string()))?;
        match entry.get_password() {
            Ok(_) | Err(keyring::Error::NoEntry) => Ok(KeyringStore),
            Err(e) => Err(StoreError::KeyringUnavailable(e.to_string())),
        }
    }

    fn entry(realm_id: &str) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(KEYRING_SERVICE, &format!("realm:{realm_id}"))
            .map_err(|e| StoreError::KeyringUnavailable(e.to_string()))
    }
}

/// Keyrings have no locks of their own; a lock file per realm in the temp directory
/// serialises refreshes between processes of this machine.
fn keyring_lock(realm_id: &str) -> Result<Option<File>, StoreError> {
    let path = std::env::temp_dir().join(format!("qbo-keyring-{realm_id}.lock"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    file.lock()
        .map_err(|source| StoreError::Io { path, source })?;
    Ok(Some(file))
}

impl TokenStore for KeyringStore {
    fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        match Self::entry(realm_id)?.get_password() {
            Ok(text) => decode(&text).map(Some),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(StoreError::KeyringUnavailable(e.to_string())),
        }
    }

    fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        // A keyring write replaces the whole secret in one call, which is as atomic as it gets.
        Self::entry(&tokens.realm_id)?
            .set_password(&encode(tokens)?)
            .map_err(|e| StoreError::KeyringUnavailable(e.to_string()))
    }

    fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        match Self::entry(realm_id)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(StoreError::KeyringUnavailable(e.to_string())),
        }
    }

    fn lock(&self, realm_id: &str) -> Result<Option<File>, StoreError> {
        keyring_lock(realm_id)
    }

    fn describe(&self, realm_id: &str) -> String {
        let entry = format!("keyring entry service={KEYRING_SERVICE} user=realm:{realm_id}");
        if cfg!(target_os = "linux") {
            // keyring's Linux backend is the kernel keyring, which a reboot empties.
            format!("{entry} (Linux kernel keyring: emptied at reboot; on servers prefer QBO_TOKEN_STORE=file:<path>)")
        } else {
            entry
        }
    }
}

/// Tokens kept only in memory (tests, and the demo's throwaway sandbox company).
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<Option<Tokens>>,
}

impl TokenStore for MemoryStore {
    fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        let guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard.clone().filter(|t| t.realm_id == realm_id))
    }

    fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        *self.tokens.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokens.clone());
        Ok(())
    }

    fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        let mut guard = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let found = guard.as_ref().is_some_and(|t| t.realm_id == realm_id);
        if found {
            *guard = None;
        }
        Ok(found)
    }

    fn lock(&self, _realm_id: &str) -> Result<Option<File>, StoreError> {
        Ok(None)
    }

    fn describe(&self, _realm_id: &str) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
