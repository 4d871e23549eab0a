//! The stores of one machine: a token file and the OS keyring. Their I/O blocks (reads,
//! fsyncs, keyring calls, lock waits), so `Blocking` runs it on tokio's blocking pool, never on
//! the threads that drive requests; a lock file serialises refreshes between the machine's
//! processes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::store::{
    decode, encode, stored, unstored, RefreshLock, StoreError, StoredTokens, TokenStore, Tokens,
};

/// A store whose calls block. `lock` serialises refreshes across the processes that share
/// the store (two refreshes at once are QBO's classic `invalid_grant`).
pub trait LocalStore: Send + Sync + 'static {
    fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError>;
    fn save(&self, tokens: &Tokens) -> Result<(), StoreError>;
    /// Removes the realm's tokens; false when there were none.
    fn forget(&self, realm_id: &str) -> Result<bool, StoreError>;
    fn lock(&self, realm_id: &str) -> Result<Option<File>, StoreError>;
    /// Where the realm's tokens live, precisely enough to find them (a path, a keyring entry).
    fn describe(&self, realm_id: &str) -> String;
}

/// A `LocalStore` as a `TokenStore`: every call on the blocking pool.
pub struct Blocking<S: LocalStore>(Arc<S>);

impl<S: LocalStore> Blocking<S> {
    pub fn new(store: S) -> Self {
        Blocking(Arc::new(store))
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(StoreError::Task)?
    }
}

#[async_trait::async_trait]
impl<S: LocalStore> TokenStore for Blocking<S> {
    async fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        let realm = realm_id.to_string();
        self.run(move |s| s.load(&realm)).await
    }

    async fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        let tokens = tokens.clone();
        // Under the lock: a file store rewrites the whole file (every realm), so a save made
        // while another process refreshes could write back a copy read before that refresh
        // saved its rotated token, losing it. (`LocalLock::save` already holds the lock, and
        // a second lock in the same process would wait for itself, so it is taken here, not
        // in the `LocalStore`.)
        self.run(move |s| {
            let _lock = s.lock(&tokens.realm_id)?;
            s.save(&tokens)
        })
        .await
    }

    async fn seed(&self, tokens: &Tokens) -> Result<Tokens, StoreError> {
        let tokens = tokens.clone();
        self.run(move |s| {
            let _lock = s.lock(&tokens.realm_id)?;
            match s.load(&tokens.realm_id)? {
                Some(already) => Ok(already),
                None => s.save(&tokens).map(|()| tokens),
            }
        })
        .await
    }

    async fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        let realm = realm_id.to_string();
        // Under the lock, as `save`.
        self.run(move |s| {
            let _lock = s.lock(&realm)?;
            s.forget(&realm)
        })
        .await
    }

    async fn begin_refresh(&self, realm_id: &str) -> Result<Box<dyn RefreshLock>, StoreError> {
        let realm = realm_id.to_string();
        // The lock and the re-read happen together; the lock file stays locked until the
        // guard is dropped.
        let (file, stored) = self
            .run(move |s| {
                let file = s.lock(&realm)?;
                Ok((file, s.load(&realm)?))
            })
            .await?;
        Ok(Box::new(LocalLock {
            store: self.0.clone(),
            _file: file,
            stored,
        }))
    }

    fn describe(&self, realm_id: &str) -> String {
        self.0.describe(realm_id)
    }
}

/// A held lock file. Saves are durable at once, so releasing is dropping the file.
struct LocalLock<S: LocalStore> {
    store: Arc<S>,
    _file: Option<File>,
    stored: Option<Tokens>,
}

#[async_trait::async_trait]
impl<S: LocalStore> RefreshLock for LocalLock<S> {
    fn take_stored(&mut self) -> Option<Tokens> {
        self.stored.take()
    }

    async fn save(&mut self, tokens: &Tokens) -> Result<(), StoreError> {
        let (store, tokens) = (self.store.clone(), tokens.clone());
        tokio::task::spawn_blocking(move || store.save(&tokens))
            .await
            .map_err(StoreError::Task)?
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        // Closing a file can block (it may flush); off the async threads too.
        let this = *self;
        tokio::task::spawn_blocking(move || drop(this))
            .await
            .map_err(StoreError::Task)
    }

    async fn refused(self: Box<Self>, _reason: &str) -> Result<(), StoreError> {
        // A file or keyring knows nothing of companies; the fleet commands mark it.
        self.release().await
    }
}

/// A token file holds every realm that uses it, so one file can serve many companies.
#[derive(Serialize, Deserialize, Default)]
struct TokenFile {
    version: u32,
    realms: std::collections::BTreeMap<String, StoredTokens>,
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
pub(super) fn check_private(path: &Path) -> Result<(), StoreError> {
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
pub(super) fn check_private(_path: &Path) -> Result<(), StoreError> {
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

impl LocalStore for FileStore {
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

impl LocalStore for KeyringStore {
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
