//! One `qbo sync` per company and entity at a time. Two overlapping syncs (a slow one and
//! the next cron tick) would both be correct row by row, but would read the same changes
//! twice and report confusingly; a session advisory lock makes the second one wait its turn.
//! Holding the lock also proves that any sync run still marked `running` was abandoned (the
//! process died), so those are closed as `incomplete`.

use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use super::{PgStore, StoreError};

/// The advisory locks of one sync; released by [`SyncLock::release`], or by closing the
/// session if the sync ends some other way.
pub struct SyncLock {
    conn: Option<PoolConnection<Postgres>>,
}

/// Entities another sync holds.
#[derive(Debug)]
pub struct Busy(pub Vec<String>);

const NAMESPACE: &str = "qbo-sync";
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl PgStore {
    /// Takes the sync lock of every entity, or none: `Err(Busy)` names those held elsewhere.
    /// A lock is waited for a few seconds first: the session of a sync that was just killed
    /// lets go of its locks only once Postgres notices the connection is gone.
    pub async fn lock_sync(
        &self,
        realm_id: &str,
        entities: &[&str],
    ) -> Result<Result<SyncLock, Busy>, StoreError> {
        let names: Vec<String> = entities.iter().map(|e| e.to_string()).collect();
        let give_up = tokio::time::Instant::now() + LOCK_WAIT;
        let lock = loop {
            let mut conn = self.pool().acquire().await?;
            // Every entity is tried (no short-circuit), so each answer is a lock now held.
            let busy = sqlx::query_scalar!(
                r#"SELECT e AS "entity!" FROM unnest($2::text[]) AS e
                   WHERE NOT pg_try_advisory_lock(hashtext($1), hashtext($3 || '/' || e))"#,
                NAMESPACE,
                &names,
                realm_id
            )
            .fetch_all(&mut *conn)
            .await?;
            let lock = SyncLock { conn: Some(conn) };
            if busy.is_empty() {
                break lock;
            }
            lock.release().await;
            if tokio::time::Instant::now() >= give_up {
                return Ok(Err(Busy(busy)));
            }
            tokio::time::sleep(LOCK_WAIT / 10).await;
        };
        let abandoned = sqlx::query_scalar!(
            "UPDATE ops.backfill_runs
                SET status = 'incomplete', finished_at = now(), updated_at = now()
              WHERE kind = 'sync' AND realm_id = $1 AND entity = ANY($2) AND status = 'running'
             RETURNING run_id",
            realm_id,
            &names
        )
        .fetch_all(self.pool())
        .await?;
        if !abandoned.is_empty() {
            tracing::warn!(
                runs = abandoned.len(),
                "closed sync runs left `running` by a process that died; their watermarks were never moved, so nothing is skipped"
            );
        }
        Ok(Ok(lock))
    }
}

impl SyncLock {
    pub async fn release(mut self) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // The session goes away with the connection, and its locks with it.
                drop(conn.detach());
            }
        }
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}
