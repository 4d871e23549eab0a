//! `QBO_TOKEN_STORE=postgres`: each company's tokens in `ops.oauth_tokens`, sealed (see
//! `sealed`), shared by every process and machine of a fleet. A refresh holds the company's
//! row lock in a transaction, so exactly one process exchanges a refresh token and the others
//! find the rotated one when they get the lock.

use std::sync::Arc;

use sqlx::{PgPool, Postgres, Transaction};

use super::sealed::{Sealed, TokenKeys};
use super::store::{decode, encode, RefreshLock, StoreError, TokenStore, Tokens};
use crate::companies::{self, CompanyStatus};

pub struct PgTokenStore {
    pool: PgPool,
    keys: Arc<TokenKeys>,
}

/// What `rekey` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Rows sealed again with the current key.
    pub resealed: u64,
    /// Rows already sealed with it.
    pub current: u64,
}

impl PgTokenStore {
    pub fn new(pool: PgPool, keys: TokenKeys) -> Self {
        PgTokenStore {
            pool,
            keys: Arc::new(keys),
        }
    }

    /// Seals every row with the current key (after a rotation: the previous key opens the
    /// old rows meanwhile). One row at a time, each under its lock, so a refresh running
    /// at the same time is never overwritten.
    pub async fn rekey(&self) -> Result<Rekeyed, StoreError> {
        let stale = sqlx::query_scalar!(
            "SELECT realm_id FROM ops.oauth_tokens WHERE key_id <> $1 ORDER BY realm_id",
            self.keys.current.id()
        )
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM ops.oauth_tokens"#)
            .fetch_one(&self.pool)
            .await?;
        let mut done = Rekeyed::default();
        for realm in &stale {
            let mut lock = lock_row(&self.pool, &self.keys, realm).await?;
            if let Some(tokens) = lock.stored.take() {
                lock.save(&tokens).await?;
                done.resealed += 1;
            }
            Box::new(lock).release().await?;
        }
        done.current = (total as u64).saturating_sub(done.resealed);
        Ok(done)
    }
}

fn seal(keys: &TokenKeys, tokens: &Tokens) -> Result<Sealed, StoreError> {
    let json = secrecy::SecretString::from(encode(tokens)?);
    Ok(keys.seal(
        &tokens.realm_id,
        secrecy::ExposeSecret::expose_secret(&json).as_bytes(),
    ))
}

fn open(keys: &TokenKeys, realm_id: &str, sealed: &Sealed) -> Result<Tokens, StoreError> {
    let sealed_error = |why| StoreError::Sealed {
        realm_id: realm_id.to_string(),
        why,
    };
    let plain = keys.open(realm_id, sealed).map_err(sealed_error)?;
    let text = secrecy::SecretString::from(
        String::from_utf8(plain).map_err(|_| sealed_error(super::sealed::OpenError::NotTokens))?,
    );
    decode(secrecy::ExposeSecret::expose_secret(&text))
        .map_err(|_| sealed_error(super::sealed::OpenError::NotTokens))
}

async fn upsert<'e>(
    db: impl sqlx::PgExecutor<'e>,
    keys: &TokenKeys,
    tokens: &Tokens,
) -> Result<(), StoreError> {
    let s = seal(keys, tokens)?;
    sqlx::query!(
        "INSERT INTO ops.oauth_tokens (realm_id, key_id, nonce, ciphertext, refresh_expires_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (realm_id) DO UPDATE
            SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                ciphertext = EXCLUDED.ciphertext,
                refresh_expires_at = EXCLUDED.refresh_expires_at, updated_at = now()",
        tokens.realm_id,
        s.key_id,
        s.nonce,
        s.ciphertext,
        // In the clear for /metrics: an instant, nothing of the token.
        tokens.refresh_expires_at,
    )
    .execute(db)
    .await?;
    Ok(())
}

async fn read<'e>(
    db: impl sqlx::PgExecutor<'e>,
    keys: &TokenKeys,
    realm_id: &str,
    for_update: bool,
) -> Result<Option<Tokens>, StoreError> {
    let row = if for_update {
        sqlx::query_as!(
            Sealed,
            "SELECT key_id, nonce, ciphertext FROM ops.oauth_tokens WHERE realm_id = $1 FOR UPDATE",
            realm_id
        )
        .fetch_optional(db)
        .await?
    } else {
        sqlx::query_as!(
            Sealed,
            "SELECT key_id, nonce, ciphertext FROM ops.oauth_tokens WHERE realm_id = $1",
            realm_id
        )
        .fetch_optional(db)
        .await?
    };
    row.map(|s| open(keys, realm_id, &s)).transpose()
}

/// Begins the transaction that holds the realm's refresh lock, and reads the row under it.
async fn lock_row(
    pool: &PgPool,
    keys: &Arc<TokenKeys>,
    realm_id: &str,
) -> Result<PgLock, StoreError> {
    let mut tx = pool.begin().await?;
    // The row lock below is the refresh lock; a realm with no row yet has nothing to lock,
    // so a transaction-scoped advisory lock on the realm serialises its first seed as well.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('qbo.oauth_tokens:' || $1, 0))",
        realm_id
    )
    .execute(&mut *tx)
    .await?;
    let stored = read(&mut *tx, keys, realm_id, true).await?;
    Ok(PgLock {
        tx,
        keys: keys.clone(),
        realm_id: realm_id.to_string(),
        stored,
    })
}

#[async_trait::async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, realm_id: &str) -> Result<Option<Tokens>, StoreError> {
        read(&self.pool, &self.keys, realm_id, false).await
    }

    async fn save(&self, tokens: &Tokens) -> Result<(), StoreError> {
        upsert(&self.pool, &self.keys, tokens).await
    }

    async fn seed(&self, tokens: &Tokens) -> Result<Tokens, StoreError> {
        let mut lock = lock_row(&self.pool, &self.keys, &tokens.realm_id).await?;
        let kept = match lock.stored.take() {
            Some(already) => already,
            None => {
                lock.save(tokens).await?;
                tokens.clone()
            }
        };
        Box::new(lock).release().await?;
        Ok(kept)
    }

    async fn forget(&self, realm_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query!("DELETE FROM ops.oauth_tokens WHERE realm_id = $1", realm_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn begin_refresh(&self, realm_id: &str) -> Result<Box<dyn RefreshLock>, StoreError> {
        Ok(Box::new(lock_row(&self.pool, &self.keys, realm_id).await?))
    }

    fn describe(&self, realm_id: &str) -> String {
        format!("postgres ops.oauth_tokens realm_id={realm_id}")
    }
}

/// The transaction holding a realm's row. Dropped without `release`, it rolls back.
///
/// The project's rule is never to hold a transaction open across a network call; the token
/// exchange made under this lock is the one deliberate exception. QBO retires a refresh
/// token the moment it is used, so the exchange and the saving of its successor must be one
/// step no other process can interleave with, on every machine: the row lock is that step.
/// The token client's short timeout bounds how long the row stays locked.
struct PgLock {
    tx: Transaction<'static, Postgres>,
    keys: Arc<TokenKeys>,
    realm_id: String,
    stored: Option<Tokens>,
}

#[async_trait::async_trait]
impl RefreshLock for PgLock {
    fn take_stored(&mut self) -> Option<Tokens> {
        self.stored.take()
    }

    async fn save(&mut self, tokens: &Tokens) -> Result<(), StoreError> {
        upsert(&mut *self.tx, &self.keys, tokens).await
    }

    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    async fn refused(mut self: Box<Self>, reason: &str) -> Result<(), StoreError> {
        companies::set_status_in(
            &mut *self.tx,
            &self.realm_id,
            CompanyStatus::NeedsReauth,
            Some(reason),
        )
        .await
        .map_err(|e| match e {
            companies::CompaniesError::Db(e) => StoreError::Db(e),
            other => StoreError::Corrupt(other.to_string()),
        })?;
        self.release().await
    }
}
