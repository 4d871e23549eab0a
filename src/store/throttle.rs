//! The company's request budget, shared by every qbo process through Postgres. QBO counts
//! its limits per company (realm): a process that starts right after another (`--resume`
//! after Ctrl-C, a second command, a sync falling back to windows) must know the pause the
//! last 429 imposed and the requests already started in the last minute, or it spends a
//! budget that is not there and meets 429s.
//!
//! Times cross process boundaries as ages and remaining durations computed by the database's
//! clock, so processes on machines whose clocks disagree still agree on the budget.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// A process's row is deleted once it has not been refreshed for this long (twice QBO's
/// minute, so a live process is never forgotten while its requests still count).
const FORGET_AFTER_SECS: f64 = 120.0;

/// One process's handle on its company's shared budget.
#[derive(Clone)]
pub struct SharedBudget {
    pool: PgPool,
    realm_id: String,
    process_id: Uuid,
}

/// What the other processes of the company have done, as of the database's now.
#[derive(Debug, Default)]
pub struct Seen {
    /// Ages of the requests other processes started within the asked window.
    pub others: Vec<Duration>,
    /// Ages of the batch calls other processes started within the asked window (each is
    /// also among `others`).
    pub other_batches: Vec<Duration>,
    /// How much longer the company is paused by a 429, if it is.
    pub paused_for: Option<Duration>,
}

impl SharedBudget {
    pub fn new(pool: PgPool, realm_id: &str) -> Self {
        SharedBudget {
            pool,
            realm_id: realm_id.to_string(),
            process_id: Uuid::new_v4(),
        }
    }

    /// Records that QBO throttled the company and nobody should send for `wait` from now
    /// (a pause already in force is extended, never shortened).
    pub async fn record_pause(
        &self,
        wait: Duration,
        retry_after: Option<Duration>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO ops.company_throttle AS t
                    (realm_id, paused_until, last_throttled_at, retry_after_secs)
             VALUES ($1, now() + make_interval(secs => $2), now(), $3)
             ON CONFLICT (realm_id) DO UPDATE
                SET paused_until = greatest(t.paused_until, EXCLUDED.paused_until),
                    last_throttled_at = EXCLUDED.last_throttled_at,
                    retry_after_secs = EXCLUDED.retry_after_secs",
            self.realm_id,
            wait.as_secs_f64(),
            retry_after.map(|d| d.as_secs_f64()),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets the rows of processes that stopped publishing (they only hold requests older
    /// than any window). Once per process, at start: not on every exchange.
    pub async fn forget_stale(&self) -> Result<(), StoreError> {
        sqlx::query!(
            "DELETE FROM ops.company_requests
              WHERE realm_id = $1 AND updated_at < now() - make_interval(secs => $2)",
            self.realm_id,
            FORGET_AFTER_SECS,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Publishes this process's requests and batch calls of the window (`own`,
    /// `own_batches`, as ages) and reads the other processes' and the company's pause, in
    /// one round trip (the sharer runs every second).
    pub async fn exchange(
        &self,
        own: &[Duration],
        own_batches: &[Duration],
        window: Duration,
    ) -> Result<Seen, StoreError> {
        let ages: Vec<f64> = own.iter().map(Duration::as_secs_f64).collect();
        let batch_ages: Vec<f64> = own_batches.iter().map(Duration::as_secs_f64).collect();
        // The upsert's row is not visible to the SELECT of the same statement; it reads only
        // the other processes' rows anyway.
        let row = sqlx::query!(
            r#"WITH publish AS (
                   INSERT INTO ops.company_requests
                          (realm_id, process_id, started_at, batch_started_at, updated_at)
                   SELECT $1, $2,
                          coalesce((SELECT array_agg(now() - make_interval(secs => a) ORDER BY a DESC)
                                      FROM unnest($3::float8[]) AS a), '{}'),
                          coalesce((SELECT array_agg(now() - make_interval(secs => a) ORDER BY a DESC)
                                      FROM unnest($5::float8[]) AS a), '{}'),
                          now()
                   ON CONFLICT (realm_id, process_id) DO UPDATE
                      SET started_at = EXCLUDED.started_at,
                          batch_started_at = EXCLUDED.batch_started_at,
                          updated_at = EXCLUDED.updated_at
               )
               SELECT coalesce((SELECT array_agg(extract(epoch FROM now() - t)::float8)
                                  FROM ops.company_requests AS r, unnest(r.started_at) AS t
                                 WHERE r.realm_id = $1 AND r.process_id <> $2
                                   AND t > now() - make_interval(secs => $4)),
                               '{}') AS "others!: Vec<f64>",
                      coalesce((SELECT array_agg(extract(epoch FROM now() - t)::float8)
                                  FROM ops.company_requests AS r, unnest(r.batch_started_at) AS t
                                 WHERE r.realm_id = $1 AND r.process_id <> $2
                                   AND t > now() - make_interval(secs => $4)),
                               '{}') AS "other_batches!: Vec<f64>",
                      (SELECT extract(epoch FROM paused_until - now())::float8
                         FROM ops.company_throttle
                        WHERE realm_id = $1 AND paused_until > now()) AS "paused_for?: f64""#,
            self.realm_id,
            self.process_id,
            &ages,
            window.as_secs_f64(),
            &batch_ages,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Seen {
            others: row.others.into_iter().filter_map(seconds).collect(),
            other_batches: row.other_batches.into_iter().filter_map(seconds).collect(),
            paused_for: row.paused_for.and_then(seconds),
        })
    }
}

fn seconds(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s.max(0.0)).ok()
}
