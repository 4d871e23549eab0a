//! A queued run's one changed-since sweep (issue 10). A `qbo worker` parks a multi-page window
//! durably (`ClaimedChunk::park_durably`): what it read is kept in `ops.paged_reads` and the
//! window holds no lease, so no process has to stay alive for it. Once the run has nothing
//! left to load (no `pending` or `running` window) but parked windows, one worker takes the
//! run's sweep lease (`ops.backfill_runs.sweep_owner`), sweeps once and settles every parked
//! window in one transaction fenced on that lease ([`SweepClaim::finish`]).
//!
//! Exactly one sweep: taking the lease is one conditional UPDATE of the run's row, which two
//! workers cannot both win. Crash-safe: the lease is heartbeated while the sweep reads; a
//! worker killed after parking leaves the run claimable by every worker's poll
//! (`Queue::claim_any_sweep`), and one killed while sweeping leaves a lease that runs out and
//! is taken over the same way. A sweeper whose lease was taken over settles nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::keep_alive::keep_alive;
use super::{retry_transient, Claimer, PagedVerdict, Progress, Queue, QueueError};

/// What a durably parked window read, for the run's sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPark {
    pub chunk: i32,
    /// The attempt that parked it: settling is fenced on it.
    pub attempt: i32,
    pub expected: u64,
    pub counted_at: Option<DateTime<Utc>>,
    pub began: DateTime<Utc>,
    pub pass: u32,
    /// Each id read, with the LastUpdatedTime it was first seen at.
    pub read: Vec<(String, DateTime<Utc>)>,
}

/// A run whose sweep this worker holds. While it lives, a task extends the lease every third
/// of it; `stop()` is cancelled when the lease is found lost or on interrupt.
pub struct SweepClaim {
    queue: Queue,
    run_id: Uuid,
    realm_id: String,
    owner: String,
    stop: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for SweepClaim {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl std::fmt::Debug for SweepClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SweepClaim")
            .field("run_id", &self.run_id)
            .field("owner", &self.owner)
            .finish()
    }
}

impl Queue {
    /// Takes the sweep of `run_id` when it is due: a queued run with durably parked windows
    /// and none `pending` or `running` (nor parked the old way, under a lease), whose sweep
    /// lease is free or ran out. None: not due, or another worker holds it.
    pub async fn claim_sweep(
        &self,
        run_id: Uuid,
        claimer: &Claimer,
    ) -> Result<Option<SweepClaim>, QueueError> {
        let realm = sqlx::query_scalar!(
            r#"UPDATE ops.backfill_runs r
               SET sweep_owner = $2, sweep_expires_at = now() + make_interval(secs => $3)
               WHERE r.run_id = $1 AND r.kind = 'backfill'
                 AND (r.options->>'queued')::boolean IS TRUE
                 AND r.status IN ('running', 'incomplete')
                 AND (r.sweep_owner IS NULL OR r.sweep_expires_at < now())
                 AND EXISTS (SELECT 1 FROM ops.backfill_report c
                             WHERE c.run_id = r.run_id AND c.status = 'paged'
                               AND c.lease_owner IS NULL)
                 AND NOT EXISTS (SELECT 1 FROM ops.backfill_report c
                                 WHERE c.run_id = r.run_id
                                   AND (c.status IN ('pending', 'running')
                                        OR (c.status = 'paged' AND c.lease_owner IS NOT NULL)))
               RETURNING r.realm_id"#,
            run_id,
            claimer.owner,
            claimer.lease.as_secs_f64(),
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(realm.map(|realm| SweepClaim::start(self.clone(), run_id, realm, claimer)))
    }

    /// Takes any queued run's due sweep (see `claim_sweep`), oldest run first: what a worker
    /// polls for, so that a sweep whose worker died (after parking the run's last window, or
    /// while sweeping) is still done. Companies in `exclude`, paused by a 429 or not `active`
    /// and runs in `skip_runs` are left alone, as `claim_next_any` leaves their windows.
    pub async fn claim_any_sweep(
        &self,
        claimer: &Claimer,
        exclude: &[String],
        skip_runs: &[Uuid],
    ) -> Result<Option<SweepClaim>, QueueError> {
        let row = sqlx::query!(
            r#"UPDATE ops.backfill_runs r
               SET sweep_owner = $1, sweep_expires_at = now() + make_interval(secs => $2)
               WHERE r.run_id = (
                   SELECT k.run_id FROM ops.backfill_runs k
                   WHERE k.kind = 'backfill' AND (k.options->>'queued')::boolean IS TRUE
                     AND k.status IN ('running', 'incomplete')
                     AND (k.sweep_owner IS NULL OR k.sweep_expires_at < now())
                     AND k.realm_id <> ALL($3::text[])
                     AND k.run_id <> ALL($4::uuid[])
                     AND NOT EXISTS (
                         SELECT 1 FROM ops.company_throttle t
                         WHERE t.realm_id = k.realm_id AND t.paused_until > now())
                     AND (EXISTS (
                              SELECT 1 FROM ops.companies co
                              WHERE co.realm_id = k.realm_id AND co.status = 'active')
                          OR NOT EXISTS (SELECT 1 FROM ops.companies))
                     -- Each window test is a scalar subquery, run per candidate run on
                     -- its index and stopping at the first row: written as EXISTS, the
                     -- planner may join every parked window of every run instead (it did,
                     -- on the fresh statistics of a fleet's first runs).
                     AND (SELECT true FROM ops.backfill_report c
                          WHERE c.run_id = k.run_id AND c.status = 'paged'
                            AND c.lease_owner IS NULL
                          LIMIT 1) IS NOT NULL
                     AND (SELECT true FROM ops.backfill_report c
                          WHERE c.run_id = k.run_id AND c.status IN ('pending', 'running')
                          LIMIT 1) IS NULL
                     AND (SELECT true FROM ops.backfill_report c
                          WHERE c.run_id = k.run_id AND c.status = 'paged'
                            AND c.lease_owner IS NOT NULL
                          LIMIT 1) IS NULL
                   ORDER BY k.started_at, k.run_id
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
                 AND (r.sweep_owner IS NULL OR r.sweep_expires_at < now())
               RETURNING r.run_id, r.realm_id"#,
            claimer.owner,
            claimer.lease.as_secs_f64(),
            exclude,
            skip_runs,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SweepClaim::start(self.clone(), r.run_id, r.realm_id, claimer)))
    }
}

impl SweepClaim {
    fn start(queue: Queue, run_id: Uuid, realm_id: String, claimer: &Claimer) -> SweepClaim {
        let stop = claimer.cancel.child_token();
        let heartbeat = tokio::spawn(heartbeat(
            queue.clone(),
            run_id,
            claimer.owner.clone(),
            claimer.lease,
            stop.clone(),
        ));
        SweepClaim {
            queue,
            run_id,
            realm_id,
            owner: claimer.owner.clone(),
            stop,
            heartbeat,
        }
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    pub fn realm_id(&self) -> &str {
        &self.realm_id
    }

    /// Cancelled on interrupt and when the heartbeat finds the sweep lease lost.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// The run's durably parked windows with what each read. A parked window whose reads are
    /// missing (none should be: they are written with the park) has nothing to prove it
    /// complete; it comes back with no reads and an expected count it cannot reach.
    pub async fn parked(&self) -> Result<Vec<StoredPark>, QueueError> {
        let rows = sqlx::query!(
            r#"SELECT c.chunk_index, c.attempts, p.expected AS "expected?", p.counted_at,
                      p.began AS "began?", p.pass AS "pass?", p.ids AS "ids?",
                      p.seen_at AS "seen_at?"
               FROM ops.backfill_report c
               LEFT JOIN ops.paged_reads p
                      ON p.run_id = c.run_id AND p.chunk_index = c.chunk_index
                     AND p.attempt = c.attempts
               WHERE c.run_id = $1 AND c.status = 'paged' AND c.lease_owner IS NULL
               ORDER BY c.chunk_index"#,
            self.run_id,
        )
        .fetch_all(self.queue.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredPark {
                chunk: r.chunk_index,
                attempt: r.attempts,
                // No reads kept: the window cannot be proved complete (see above).
                expected: r.expected.map_or(u64::MAX, |n| n.max(0) as u64),
                counted_at: r.counted_at,
                began: r.began.unwrap_or_else(Utc::now),
                pass: r.pass.map_or(1, |p| p.max(1) as u32),
                read: r
                    .ids
                    .unwrap_or_default()
                    .into_iter()
                    .zip(r.seen_at.unwrap_or_default())
                    .collect(),
            })
            .collect())
    }

    /// Settles the swept windows and frees the sweep lease, in one transaction fenced on the
    /// lease: `LeaseLost` (nothing changes) when another worker took the sweep over. A window
    /// no longer parked by the attempt that was swept (cancelled, or re-claimed by an
    /// in-process `--resume`) is left as it is. Returns the windows settled.
    pub async fn finish(
        self,
        verdicts: &[(i32, i32, PagedVerdict)],
    ) -> Result<Vec<(i32, PagedVerdict)>, QueueError> {
        self.heartbeat.abort();
        retry_transient(
            &CancellationToken::new(),
            "settling the swept windows",
            || self.try_finish(verdicts),
        )
        .await
    }

    async fn try_finish(
        &self,
        verdicts: &[(i32, i32, PagedVerdict)],
    ) -> Result<Vec<(i32, PagedVerdict)>, QueueError> {
        let mut tx = self.queue.pool().begin().await?;
        self.release_in(&mut tx).await?;
        let chunks: Vec<i32> = verdicts.iter().map(|v| v.0).collect();
        let attempts: Vec<i32> = verdicts.iter().map(|v| v.1).collect();
        let (statuses, errors): (Vec<&str>, Vec<Option<&str>>) = verdicts
            .iter()
            .map(|(_, _, v)| {
                let (status, error) = v.stored();
                (status.as_str(), error)
            })
            .unzip();
        let settled = sqlx::query!(
            r#"UPDATE ops.backfill_report r
               SET status = v.status, error_message = v.error,
                   lease_owner = NULL, lease_expires_at = NULL,
                   finished_at = CASE WHEN v.status = 'pending' THEN r.finished_at ELSE now() END,
                   planned_count = CASE WHEN v.status = 'pending' THEN NULL
                                        ELSE r.planned_count END,
                   -- Sent back for another pass: any worker may claim it again.
                   last_invocation = CASE WHEN v.status = 'pending' THEN NULL
                                          ELSE r.last_invocation END
               FROM UNNEST($2::int[], $3::int[], $4::text[], $5::text[])
                    AS v(chunk, attempt, status, error)
               WHERE r.run_id = $1 AND r.chunk_index = v.chunk AND r.attempts = v.attempt
                 AND r.status = 'paged' AND r.lease_owner IS NULL
               RETURNING r.chunk_index"#,
            self.run_id,
            &chunks,
            &attempts,
            &statuses as &[&str],
            &errors as &[Option<&str>],
        )
        .fetch_all(&mut *tx)
        .await?;
        let settled: Vec<i32> = settled.into_iter().map(|r| r.chunk_index).collect();
        sqlx::query!(
            r#"DELETE FROM ops.paged_reads p
               USING UNNEST($2::int[], $3::int[]) AS v(chunk, attempt)
               WHERE p.run_id = $1 AND p.chunk_index = v.chunk AND p.attempt = v.attempt"#,
            self.run_id,
            &chunks,
            &attempts,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(verdicts
            .iter()
            .filter(|(chunk, _, _)| settled.contains(chunk))
            .map(|(chunk, _, v)| (*chunk, v.clone()))
            .collect())
    }

    /// Frees the sweep lease without settling anything (interrupted): the windows stay
    /// parked and the next worker to poll sweeps them.
    pub async fn release(self) -> Result<(), QueueError> {
        self.heartbeat.abort();
        retry_transient(&CancellationToken::new(), "freeing the sweep", || async {
            let mut tx = self.queue.pool().begin().await?;
            self.release_in(&mut tx).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn release_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), QueueError> {
        let r = sqlx::query!(
            "UPDATE ops.backfill_runs SET sweep_owner = NULL, sweep_expires_at = NULL
             WHERE run_id = $1 AND sweep_owner = $2",
            self.run_id,
            self.owner,
        )
        .execute(&mut **tx)
        .await?;
        if r.rows_affected() == 1 {
            Ok(())
        } else {
            Err(QueueError::SweepLost {
                run_id: self.run_id,
            })
        }
    }
}

impl PagedVerdict {
    /// The window's status and error message once settled by this verdict.
    fn stored(&self) -> (super::ChunkStatus, Option<&str>) {
        match self {
            PagedVerdict::Complete => (super::ChunkStatus::Success, None),
            PagedVerdict::Reread => (super::ChunkStatus::Pending, None),
            PagedVerdict::Failed(message) => (super::ChunkStatus::Error, Some(message.as_str())),
        }
    }
}

/// "sweep heartbeat failed": at most one line per this.
static SWEEP_HEARTBEAT_LINE: crate::telemetry::RareLine =
    crate::telemetry::RareLine::new(Duration::from_secs(10));

/// Extends the sweep lease every third of it (`keep_alive`); cancels `lost` and ends when
/// the run's sweep is no longer this owner's.
async fn heartbeat(
    queue: Queue,
    run_id: Uuid,
    owner: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let (queue, owner) = (&queue, owner.as_str());
    keep_alive(
        lease,
        lost,
        &SWEEP_HEARTBEAT_LINE,
        "sweep heartbeat",
        move || async move {
            sqlx::query!(
                "UPDATE ops.backfill_runs SET sweep_expires_at = now() + make_interval(secs => $3)
             WHERE run_id = $1 AND sweep_owner = $2",
                run_id,
                owner,
                lease.as_secs_f64()
            )
            .execute(queue.pool())
            .await
            .map(|r| r.rows_affected())
        },
    )
    .await
}

impl super::ClaimedChunk {
    /// Parks a window whose pages are all loaded until its run's one sweep settles it, with
    /// what it read kept in Postgres: it holds no lease meanwhile, so the worker goes on
    /// with other windows, and a worker killed now loses nothing (the sweep is done by
    /// whichever worker finds the run with nothing else left; see the module doc).
    /// Idempotent for this attempt (a retry after a reply lost on its way back).
    pub async fn park_durably(self, p: &Progress, park: &StoredPark) -> Result<(), QueueError> {
        self.stop_heartbeat();
        let (ids, seen_at): (Vec<String>, Vec<DateTime<Utc>>) = park.read.iter().cloned().unzip();
        let (run_id, chunk, owner, attempt) = (
            self.run_id(),
            self.index(),
            self.owner().to_string(),
            self.attempt(),
        );
        retry_transient(
            &CancellationToken::new(),
            "parking a paged window",
            || async {
                let mut tx = self.queue().pool().begin().await?;
                let r = sqlx::query!(
                    r#"UPDATE ops.backfill_report
                       SET status = 'paged', lease_owner = NULL, lease_expires_at = NULL,
                           expected_count = $5, row_count = $6, inserted = $7, updated = $8,
                           skipped = $9, pages = $10, requests = $11, retries = $12, passes = $13
                       WHERE run_id = $1 AND chunk_index = $2 AND attempts = $4
                         AND ((status = 'running' AND lease_owner = $3)
                              OR (status = 'paged' AND lease_owner IS NULL))"#,
                    run_id,
                    chunk,
                    owner,
                    attempt,
                    p.expected_count,
                    p.row_count,
                    p.counts.inserted,
                    p.counts.updated,
                    p.counts.skipped,
                    p.pages,
                    p.requests,
                    p.retries,
                    p.passes,
                )
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Err(QueueError::LeaseLost { run_id, chunk });
                }
                sqlx::query!(
                    r#"INSERT INTO ops.paged_reads
                           (run_id, chunk_index, attempt, expected, counted_at, began, pass,
                            ids, seen_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                       ON CONFLICT (run_id, chunk_index) DO UPDATE
                       SET attempt = EXCLUDED.attempt, expected = EXCLUDED.expected,
                           counted_at = EXCLUDED.counted_at, began = EXCLUDED.began,
                           pass = EXCLUDED.pass, ids = EXCLUDED.ids,
                           seen_at = EXCLUDED.seen_at"#,
                    run_id,
                    chunk,
                    attempt,
                    park.expected.min(i64::MAX as u64) as i64,
                    park.counted_at,
                    park.began,
                    park.pass as i32,
                    &ids,
                    &seen_at,
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            },
        )
        .await
    }
}
