//! [`ClaimedChunk`]: a chunk claimed under a lease, and the only way to change its state.
//!
//! Every write is fenced on (lease owner, attempt): the claim stamped both, and a worker
//! whose lease ran out while it stalled (a GC pause, a lost network, a suspended laptop)
//! finds, when it wakes, that another worker claimed the chunk again (a new attempt). Its
//! writes then match no row, change nothing, and return [`QueueError::LeaseLost`]; the new
//! owner's result stands.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::keep_alive::keep_alive;
use super::{retry_transient, Claimer, ParkedChunk, Queue, QueueError};
use crate::chunks::Window;
use crate::store::{ChunkRow, UpsertCounts};

/// Progress of the chunk attempt, written with each page and with its outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    pub expected_count: Option<i64>,
    pub row_count: i64,
    pub counts: UpsertCounts,
    pub pages: i32,
    pub requests: i32,
    pub retries: i32,
    pub passes: i32,
}

/// A window a split leaves behind: its bounds and, when the planner could count it, how
/// many records COUNT(*) said it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    pub window: Window,
    pub count: Option<i64>,
}

/// A claimed chunk. While it lives, a task extends its lease every third of the lease;
/// when the lease is found lost (another worker owns the chunk now), `stop()` is cancelled.
/// Dropping it stops the heartbeat (the lease then runs out and the chunk is claimable
/// again); `succeed`, `fail`, `park`, `split` and `hand_back` end it.
pub struct ClaimedChunk {
    queue: Queue,
    row: ChunkRow,
    owner: String,
    /// The claimer's invocation (`last_invocation` of the chunk while it is ours).
    invocation: Uuid,
    lease: Duration,
    stop: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for ClaimedChunk {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

impl std::fmt::Debug for ClaimedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedChunk")
            .field("run_id", &self.row.run_id)
            .field("chunk", &self.row.chunk_index)
            .field("owner", &self.owner)
            .field("attempt", &self.row.attempts)
            .finish()
    }
}

impl ClaimedChunk {
    /// Wraps a row the claim returned and starts its heartbeat.
    pub(super) fn start(queue: Queue, row: ChunkRow, claimer: &Claimer) -> ClaimedChunk {
        let stop = claimer.cancel.child_token();
        let heartbeat = tokio::spawn(heartbeat(
            queue.clone(),
            row.run_id,
            row.chunk_index,
            row.attempts,
            claimer.owner.clone(),
            claimer.lease,
            stop.clone(),
        ));
        ClaimedChunk {
            queue,
            row,
            owner: claimer.owner.clone(),
            invocation: claimer.invocation,
            lease: claimer.lease,
            stop,
            heartbeat,
        }
    }

    /// The chunk as claimed (status `running`, this attempt's number, earlier attempts'
    /// requests and passes).
    pub fn row(&self) -> &ChunkRow {
        &self.row
    }

    pub fn run_id(&self) -> Uuid {
        self.row.run_id
    }

    pub fn index(&self) -> i32 {
        self.row.chunk_index
    }

    /// The invocation that claimed it (what `Queue::extend_paged` keeps parked windows by).
    pub fn invocation(&self) -> Uuid {
        self.invocation
    }

    /// This attempt's number (1 for the first claim of the chunk).
    pub fn attempt(&self) -> i32 {
        self.row.attempts
    }

    pub fn window(&self) -> Window {
        Window {
            start: self.row.window_start_utc,
            end: self.row.window_end_utc,
        }
    }

    /// Cancelled on interrupt and when the heartbeat finds the lease lost: stop loading.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Records progress inside the page's transaction, so the page's rows and the chunk's
    /// counters commit together; `LeaseLost` (roll the page back) if the chunk is no longer
    /// ours. This fencing is what stops a stalled worker's late pages.
    pub async fn record_progress(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        p: &Progress,
        intuit_tid: Option<&str>,
    ) -> Result<(), QueueError> {
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET expected_count = $4, row_count = $5, inserted = $6, updated = $7, skipped = $8,
                   pages = $9, requests = $10, retries = $11, passes = $12,
                   last_intuit_tid = COALESCE($13, last_intuit_tid)
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND attempts = $14
                 AND status = 'running'"#,
            self.row.run_id,
            self.row.chunk_index,
            self.owner,
            p.expected_count,
            p.row_count,
            p.counts.inserted,
            p.counts.updated,
            p.counts.skipped,
            p.pages,
            p.requests,
            p.retries,
            p.passes,
            intuit_tid,
            self.row.attempts,
        )
        .execute(&mut **tx)
        .await?;
        self.fenced(r.rows_affected())
    }

    /// Ends the attempt as `success` with its final counters.
    pub async fn succeed(self, p: &Progress) -> Result<(), QueueError> {
        self.finish(p, None).await
    }

    /// Marks the attempt `success` inside `tx`, the transaction that stores what the window
    /// loaded (a report piece), so the window is `success` exactly when its data commits.
    /// `LeaseLost` (roll `tx` back) when the chunk is no longer ours. The heartbeat runs on
    /// until the handle is dropped, after the caller's commit; if the commit fails, the
    /// window stays `running` until its lease runs out and is then claimable again.
    pub async fn succeed_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        p: &Progress,
    ) -> Result<(), QueueError> {
        let r = sqlx::query!(
            r#"UPDATE ops.backfill_report
               SET status = 'success', error_message = NULL, finished_at = now(),
                   lease_expires_at = NULL, expected_count = $4, row_count = $5,
                   inserted = $6, updated = $7, skipped = $8, pages = $9,
                   requests = $10, retries = $11, passes = $12
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                 AND attempts = $13 AND status = 'running'"#,
            self.row.run_id,
            self.row.chunk_index,
            self.owner,
            p.expected_count,
            p.row_count,
            p.counts.inserted,
            p.counts.updated,
            p.counts.skipped,
            p.pages,
            p.requests,
            p.retries,
            p.passes,
            self.row.attempts,
        )
        .execute(&mut **tx)
        .await?;
        self.fenced(r.rows_affected())
    }

    /// Ends the attempt as `error`: the window failed (the run goes on with the others).
    pub async fn fail(self, p: &Progress, message: &str) -> Result<(), QueueError> {
        self.finish(p, Some(message)).await
    }

    /// Records the outcome, waiting out a Postgres restart rather than leaving a loaded
    /// chunk looking unfinished. Idempotent for this attempt, so a retry after a reply lost
    /// on the way back from Postgres is harmless.
    async fn finish(self, p: &Progress, error: Option<&str>) -> Result<(), QueueError> {
        self.heartbeat.abort();
        let status = match error {
            Some(_) => super::ChunkStatus::Error,
            None => super::ChunkStatus::Success,
        };
        retry_transient(
            &CancellationToken::new(),
            "recording the chunk's outcome",
            || async {
                let r = sqlx::query!(
                    r#"UPDATE ops.backfill_report
                       SET status = $4, error_message = $5, finished_at = now(),
                           lease_expires_at = NULL, expected_count = $6, row_count = $7,
                           inserted = $8, updated = $9, skipped = $10, pages = $11,
                           requests = $12, retries = $13, passes = $14
                       WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                         AND attempts = $15 AND (status = 'running' OR status = $4)"#,
                    self.row.run_id,
                    self.row.chunk_index,
                    self.owner,
                    status.as_str(),
                    error,
                    p.expected_count,
                    p.row_count,
                    p.counts.inserted,
                    p.counts.updated,
                    p.counts.skipped,
                    p.pages,
                    p.requests,
                    p.retries,
                    p.passes,
                    self.row.attempts,
                )
                .execute(self.queue.pool())
                .await?;
                self.fenced(r.rows_affected())
            },
        )
        .await
    }

    /// Parks a window whose pages are all loaded until the run's sweep settles it (see
    /// `backfill::sweep`). It stays leased (`Queue::extend_paged` keeps the lease of the
    /// invocation's parked windows), so a dead process's parked windows become claimable
    /// again like its running ones.
    pub async fn park(self, p: &Progress) -> Result<ParkedChunk, QueueError> {
        self.heartbeat.abort();
        retry_transient(
            &CancellationToken::new(),
            "parking a paged window",
            || async {
                let r = sqlx::query!(
                    r#"UPDATE ops.backfill_report
                       SET status = 'paged', lease_expires_at = now() + make_interval(secs => $5),
                           expected_count = $6, row_count = $7, inserted = $8, updated = $9,
                           skipped = $10, pages = $11, requests = $12, retries = $13, passes = $14
                       WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                         AND attempts = $4 AND status IN ('running', 'paged')"#,
                    self.row.run_id,
                    self.row.chunk_index,
                    self.owner,
                    self.row.attempts,
                    self.lease.as_secs_f64(),
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
                .execute(self.queue.pool())
                .await?;
                self.fenced(r.rows_affected())
            },
        )
        .await?;
        Ok(ParkedChunk {
            run_id: self.row.run_id,
            chunk: self.row.chunk_index,
            owner: self.owner.clone(),
            attempt: self.row.attempts,
        })
    }

    /// Replaces the window by the windows its counts split it into, in one transaction:
    /// the first keeps its index, the others take new ones after the run's last. What the
    /// window spent planning is moved to the run's own requests, since its row goes.
    pub async fn split(self, leaves: &[PlannedWindow], spent: &Progress) -> Result<(), QueueError> {
        self.heartbeat.abort();
        retry_transient(&CancellationToken::new(), "splitting a window", || {
            self.try_split(leaves, spent)
        })
        .await
    }

    async fn try_split(
        &self,
        leaves: &[PlannedWindow],
        spent: &Progress,
    ) -> Result<(), QueueError> {
        let (run_id, chunk) = (self.row.run_id, self.row.chunk_index);
        let mut tx = self.queue.pool().begin().await?;
        let parent = sqlx::query!(
            r#"DELETE FROM ops.backfill_report
               WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND attempts = $4
                 AND status = 'running'
               RETURNING realm_id, entity, read_via"#,
            run_id,
            chunk,
            self.owner,
            self.row.attempts,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(QueueError::LeaseLost { run_id, chunk })?;
        let next: i32 = sqlx::query_scalar!(
            r#"SELECT coalesce(max(chunk_index), 0) + 1 AS "n!" FROM ops.backfill_report
               WHERE run_id = $1"#,
            run_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let indexes: Vec<i32> = std::iter::once(chunk)
            .chain(next..)
            .take(leaves.len())
            .collect();
        let starts: Vec<DateTime<Utc>> = leaves.iter().map(|l| l.window.start).collect();
        let ends: Vec<DateTime<Utc>> = leaves.iter().map(|l| l.window.end).collect();
        let counts: Vec<Option<i64>> = leaves.iter().map(|l| l.count).collect();
        sqlx::query!(
            r#"INSERT INTO ops.backfill_report
                   (run_id, chunk_index, realm_id, entity, window_start_utc, window_end_utc,
                    read_via, planned_count)
               SELECT $1, i, $2, $3, s, e, $4, n
               FROM UNNEST($5::int[], $6::timestamptz[], $7::timestamptz[], $8::bigint[])
                    AS t(i, s, e, n)"#,
            run_id,
            parent.realm_id,
            parent.entity,
            parent.read_via,
            &indexes,
            &starts,
            &ends,
            &counts as &[Option<i64>],
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE ops.backfill_runs
             SET run_requests = run_requests + $2, run_retries = run_retries + $3
             WHERE run_id = $1",
            run_id,
            spent.requests,
            spent.retries,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives the chunk back untouched (interrupted, or stopped for a failure elsewhere) so
    /// the next invocation (`--resume`, another worker) can take it at once.
    pub async fn hand_back(self) -> Result<(), QueueError> {
        self.heartbeat.abort();
        retry_transient(
            &CancellationToken::new(),
            "handing the chunk back",
            || async {
                let r = sqlx::query!(
                    r#"UPDATE ops.backfill_report
                       SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                           error_message = 'interrupted', finished_at = now()
                       WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                         AND attempts = $4 AND status = 'running'"#,
                    self.row.run_id,
                    self.row.chunk_index,
                    self.owner,
                    self.row.attempts,
                )
                .execute(self.queue.pool())
                .await?;
                self.fenced(r.rows_affected())
            },
        )
        .await
    }

    /// Gives the chunk back as if it had never been claimed (the attempt is not counted):
    /// for a claimer that finds, before loading anything, that it cannot load this company
    /// (no usable token), so the window waits untouched for a human or another worker.
    pub async fn give_back_untried(self) -> Result<(), QueueError> {
        self.heartbeat.abort();
        retry_transient(
            &CancellationToken::new(),
            "giving the chunk back",
            || async {
                let r = sqlx::query!(
                    r#"UPDATE ops.backfill_report
                       SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                           attempts = attempts - 1,
                           started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,
                           last_invocation = NULL
                       WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3
                         AND attempts = $4 AND status = 'running'"#,
                    self.row.run_id,
                    self.row.chunk_index,
                    self.owner,
                    self.row.attempts,
                )
                .execute(self.queue.pool())
                .await?;
                self.fenced(r.rows_affected())
            },
        )
        .await
    }

    /// Ends the heartbeat (the chunk is about to leave `running`).
    pub(super) fn stop_heartbeat(&self) {
        self.heartbeat.abort();
    }

    pub(super) fn owner(&self) -> &str {
        &self.owner
    }

    pub(super) fn queue(&self) -> &Queue {
        &self.queue
    }

    fn fenced(&self, rows_affected: u64) -> Result<(), QueueError> {
        if rows_affected == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost {
                run_id: self.row.run_id,
                chunk: self.row.chunk_index,
            })
        }
    }
}

/// "heartbeat failed": at most one line per this, with how many were held back (every
/// claimed chunk heartbeats: during a Postgres outage, one line says it for all of them).
static HEARTBEAT_LINE: crate::telemetry::RareLine =
    crate::telemetry::RareLine::new(Duration::from_secs(10));

/// Extends the chunk's lease every third of it (`keep_alive`); cancels `lost` and ends when
/// the chunk is no longer this attempt's.
async fn heartbeat(
    queue: Queue,
    run_id: Uuid,
    chunk: i32,
    attempt: i32,
    owner: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let (queue, owner) = (&queue, owner.as_str());
    keep_alive(
        lease,
        lost,
        &HEARTBEAT_LINE,
        "heartbeat",
        move || async move {
            sqlx::query!(
            "UPDATE ops.backfill_report SET lease_expires_at = now() + make_interval(secs => $5)
             WHERE run_id = $1 AND chunk_index = $2 AND lease_owner = $3 AND attempts = $4
               AND status = 'running'",
            run_id,
            chunk,
            owner,
            attempt,
            lease.as_secs_f64()
        )
            .execute(queue.pool())
            .await
            .map(|r| r.rows_affected())
        },
    )
    .await
}
