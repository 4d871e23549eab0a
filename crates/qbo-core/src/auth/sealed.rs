//! Tokens sealed for the database: XChaCha20-Poly1305 with a random 24-byte nonce per write
//! and the realm id as associated data, so a row copied onto another company's fails to open
//! instead of handing one company's tokens to another. The key never comes from the
//! database: `QBO_TOKEN_KEY` (32 random bytes, base64) or `QBO_TOKEN_KEY_FILE`. During a
//! rotation two more keys open rows but never seal: `QBO_TOKEN_KEY_NEXT` (the coming key,
//! deployed everywhere before any process seals with it, so no process meets a row it cannot
//! open) and `QBO_TOKEN_KEY_PREVIOUS` (the old key, until `qbo auth rekey` has run), each
//! also as `_FILE`.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Digest;

/// Version of the sealed format, bound into the associated data.
const AAD_PREFIX: &[u8] = b"qbo.oauth_tokens.v1\0";
pub const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "QBO_TOKEN_STORE=postgres needs the key that seals tokens: set QBO_TOKEN_KEY to 32 random \
         bytes in base64 (`openssl rand -base64 32`) or QBO_TOKEN_KEY_FILE to a file holding \
         them; keep it out of the database (see runbooks/tokens.md)"
    )]
    Missing,
    #[error("set only one of {0} and {0}_FILE")]
    Both(&'static str),
    #[error("{name} is not valid base64 (it must hold 32 random bytes in base64, e.g. from `openssl rand -base64 32`)")]
    NotBase64 { name: &'static str },
    #[error("{name} holds {len} bytes; the key must be exactly 32 bytes (e.g. `openssl rand -base64 32`)")]
    WrongSize { name: &'static str, len: usize },
    #[error("cannot read the key file {path} named by {name}")]
    File {
        name: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a sealed row did not open. Never shows key or token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("they were sealed with key {sealed_with}, and QBO_TOKEN_KEY is key {current}{others}")]
    UnknownKey {
        sealed_with: String,
        current: String,
        /// ` (QBO_TOKEN_KEY_PREVIOUS: key X) (QBO_TOKEN_KEY_NEXT is not set)`: one string,
        /// which keeps every error that carries this one small.
        others: String,
    },
    #[error(
        "authentication failed: the sealed bytes were altered, or they belong to another realm"
    )]
    Tampered,
    #[error("the nonce is {0} bytes, not {NONCE_LEN}")]
    BadNonce(usize),
    #[error("the opened content is not qbo's token format")]
    NotTokens,
}

/// One 32-byte key and its public id (a hash of it: it names the key in rows and messages
/// without revealing it).
pub struct TokenKey {
    bytes: SecretBox<[u8; 32]>,
    id: String,
}

impl TokenKey {
    pub fn from_base64(name: &'static str, text: &str) -> Result<TokenKey, KeyError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64 { name })?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::WrongSize {
            name,
            len: raw.len(),
        })?;
        let digest = sha2::Sha256::new()
            .chain_update(b"qbo token key id\0")
            .chain_update(bytes)
            .finalize();
        let id = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        Ok(TokenKey {
            bytes: SecretBox::new(Box::new(bytes)),
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.expose_secret().into())
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({})", self.id)
    }
}

/// The key that seals, and during a rotation the keys that also open: the coming one
/// (phase 1) and the old one (until rekey).
#[derive(Debug)]
pub struct TokenKeys {
    pub current: TokenKey,
    pub previous: Option<TokenKey>,
    pub next: Option<TokenKey>,
}

/// A sealed value as stored: which key, the nonce, the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn aad(realm_id: &str) -> Vec<u8> {
    [AAD_PREFIX, realm_id.as_bytes()].concat()
}

impl TokenKeys {
    /// From the environment (read once, at start-up): a missing or malformed key fails here.
    pub async fn from_env() -> Result<TokenKeys, KeyError> {
        let current = read_key("QBO_TOKEN_KEY").await?.ok_or(KeyError::Missing)?;
        let previous = read_key("QBO_TOKEN_KEY_PREVIOUS").await?;
        let next = read_key("QBO_TOKEN_KEY_NEXT").await?;
        Ok(TokenKeys {
            current,
            previous,
            next,
        })
    }

    /// Seals `plaintext` for `realm_id` with the current key and a fresh random nonce.
    pub fn seal(&self, realm_id: &str, plaintext: &[u8]) -> Sealed {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = aad(realm_id);
        let ciphertext = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            // Encryption fails only for inputs of gigabytes; tokens are a few hundred bytes.
            .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
        Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// The keys that only open, for a message.
    fn others(&self) -> String {
        [
            ("QBO_TOKEN_KEY_PREVIOUS", &self.previous),
            ("QBO_TOKEN_KEY_NEXT", &self.next),
        ]
        .iter()
        .map(|(name, key)| match key {
            Some(k) => format!(" ({name}: key {})", k.id),
            None => format!(" ({name} is not set)"),
        })
        .collect()
    }

    /// Opens a value sealed for `realm_id`, with whichever known key sealed it.
    pub fn open(&self, realm_id: &str, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        let key = [
            Some(&self.current),
            self.previous.as_ref(),
            self.next.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find(|k| k.id == sealed.key_id)
        .ok_or_else(|| OpenError::UnknownKey {
            sealed_with: sealed.key_id.clone(),
            current: self.current.id.clone(),
            others: self.others(),
        })?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(OpenError::BadNonce(sealed.nonce.len()));
        }
        let aad = aad(realm_id);
        key.cipher()
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Tampered)
    }
}

/// `NAME` (base64) or `NAME_FILE` (a file holding the base64); empty means unset.
async fn read_key(name: &'static str) -> Result<Option<TokenKey>, KeyError> {
    let file_name: &'static str = match name {
        "QBO_TOKEN_KEY" => "QBO_TOKEN_KEY_FILE",
        "QBO_TOKEN_KEY_NEXT" => "QBO_TOKEN_KEY_NEXT_FILE",
        _ => "QBO_TOKEN_KEY_PREVIOUS_FILE",
    };
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    match (var(name), var(file_name)) {
        (Some(_), Some(_)) => Err(KeyError::Both(name)),
        (Some(text), None) => TokenKey::from_base64(name, &text).map(Some),
        (None, Some(path)) => {
            // tokio::fs: the read runs on the blocking pool, not the async threads.
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| KeyError::File {
                    name: file_name,
                    path: path.clone(),
                    source,
                })?;
            TokenKey::from_base64(file_name, &text).map(Some)
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TokenKey {
        let b64 = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        TokenKey::from_base64("QBO_TOKEN_KEY", &b64).unwrap()
    }

    fn keys(current: u8, previous: Option<u8>) -> TokenKeys {
        TokenKeys {
            current: key(current),
            previous: previous.map(key),
            next: None,
        }
    }

    #[test]
    fn sealed_tokens_round_trip_and_every_write_has_its_own_nonce() {
        let k = keys(1, None);
        let a = k.seal("123", b"secret tokens");
        let b = k.seal("123", b"secret tokens");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(k.open("123", &a).unwrap(), b"secret tokens");
        assert!(!a.ciphertext.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn a_flipped_byte_or_another_realm_fails_to_open() {
        let k = keys(1, None);
        let sealed = k.seal("123", b"secret tokens");
        let mut flipped = sealed.clone();
        flipped.ciphertext[3] ^= 1;
        assert_eq!(k.open("123", &flipped), Err(OpenError::Tampered));
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 1;
        assert_eq!(k.open("123", &nonce), Err(OpenError::Tampered));
        assert_eq!(k.open("124", &sealed), Err(OpenError::Tampered));
    }

    #[test]
    fn a_wrong_key_is_named_and_the_previous_key_still_opens() {
        let old = keys(1, None);
        let sealed = old.seal("123", b"t");
        let err = keys(2, None).open("123", &sealed).unwrap_err();
        assert!(matches!(err, OpenError::UnknownKey { .. }));
        assert!(err.to_string().contains(old.current.id()), "{err}");
        assert_eq!(keys(2, Some(1)).open("123", &sealed).unwrap(), b"t");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        let short = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let e = TokenKey::from_base64("QBO_TOKEN_KEY", &short).unwrap_err();
        assert!(e.to_string().contains("16 bytes"), "{e}");
        let e = TokenKey::from_base64("QBO_TOKEN_KEY", "not base64!").unwrap_err();
        assert!(e.to_string().contains("not valid base64"), "{e}");
        assert_eq!(
            format!("{:?}", key(7)),
            format!("TokenKey({})", key(7).id())
        );
    }
}
