//! `qbo serve --token-file`: the bearer token kept in a file, made on first start. For
//! deployments (like `docker compose up`) where nobody set QBO_SERVE_TOKEN: the server still
//! never listens beyond loopback without a token, and the operator reads it from the file.

use std::path::{Path, PathBuf};

use rand::RngCore;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("could not read the serve token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write a new serve token to {path}: {source} (check the directory exists and is writable)")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the serve token file {0} is empty: delete it to have a new token made, or put a long random value in it")]
    Empty(PathBuf),
}

/// The token in `path`, or a new random one (32 bytes, hex) written there with mode 0600
/// when the file does not exist.
pub async fn read_or_create(path: &Path) -> Result<SecretString, TokenFileError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => {
            let token = text.trim();
            match token.is_empty() {
                true => Err(TokenFileError::Empty(path.to_path_buf())),
                false => Ok(SecretString::from(token.to_string())),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path).await,
        Err(source) => Err(TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

async fn create(path: &Path) -> Result<SecretString, TokenFileError> {
    use tokio::io::AsyncWriteExt;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let write = |source| TokenFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = tokio::fs::OpenOptions::new();
    // create_new: two instances starting at once never overwrite each other's token.
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = match options.open(path).await {
        Ok(file) => file,
        // Another instance made it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Box::pin(read_or_create(path)).await
        }
        Err(e) => return Err(write(e)),
    };
    file.write_all(format!("{token}\n").as_bytes())
        .await
        .map_err(write)?;
    file.sync_all().await.map_err(write)?;
    tracing::warn!(
        path = %path.display(),
        "made a new bearer token for qbo serve in this file (it is not printed): send it as `Authorization: Bearer <token>`, or paste it at /login"
    );
    Ok(SecretString::from(token))
}
