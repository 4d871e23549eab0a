//! Claiming chunks: one run's next chunk (`claim`), or any company's next chunk, the least
//! recently served company first (`claim_next_any`, for a worker that serves every company).
//! `FOR UPDATE SKIP LOCKED` lets any number of claimers (tasks, processes, machines) claim at
//! once without two of them ever getting the same chunk.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ClaimedChunk, Queue, QueueError};
use crate::store::ChunkRow;

/// Which chunks of a run an invocation may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// A new run or `--resume`: everything not yet `success` (pending, failed, or running
    /// under a lease that has expired because its worker died).
    Unfinished,
    /// `--retry-failed`: only chunks whose status is `error`.
    FailedOnly,
}

/// Who claims, and on what terms.
#[derive(Debug, Clone)]
pub struct Claimer {
    /// The lease owner written on the chunk (`host:pid:invocation:n`, unique per claim-maker:
    /// `crate::backfill::lease_owner`); with the attempt number it
    /// fences every write the claim's handle makes.
    pub owner: String,
    /// The invocation (process run) claiming: one invocation tries a chunk at most once.
    pub invocation: Uuid,
    /// How long a claimed chunk stays ours without a heartbeat (the handle heartbeats every
    /// third of it).
    pub lease: Duration,
    /// Interrupt (Ctrl-C, SIGTERM): a claimed chunk's `stop()` token is a child of it.
    pub cancel: CancellationToken,
}

impl Queue {
    /// Takes the next chunk of `run_id` this invocation has not tried yet, in window order;
    /// none of a cancelled run. (A cancel turns the run's unfinished chunks `cancelled` in
    /// the statement that locks them, so a claim racing it never takes one of those; only a
    /// failed chunk, claimable by `--retry-failed`, could be taken by a claim whose snapshot
    /// predates the cancel's commit.)
    pub async fn claim(
        &self,
        run_id: Uuid,
        mode: ClaimMode,
        claimer: &Claimer,
    ) -> Result<Option<ClaimedChunk>, QueueError> {
        let failed_only = mode == ClaimMode::FailedOnly;
        let row = sqlx::query_as!(
            ChunkRow,
            r#"UPDATE ops.backfill_report r
               SET status = 'running', attempts = r.attempts + 1,
                   lease_owner = $4, lease_expires_at = now() + make_interval(secs => $5),
                   last_invocation = $3, started_at = now(), finished_at = NULL,
                   error_message = NULL, expected_count = NULL, row_count = 0, inserted = 0,
                   updated = 0, skipped = 0, pages = 0
               WHERE (r.run_id, r.chunk_index) = (
                   SELECT c.run_id, c.chunk_index FROM ops.backfill_report c
                   WHERE c.run_id = $1
                     AND c.last_invocation IS DISTINCT FROM $3
                     AND NOT EXISTS (SELECT 1 FROM ops.backfill_runs k
                                     WHERE k.run_id = $1 AND k.status = 'cancelled')
                     AND CASE WHEN $2 THEN c.status = 'error'
                              ELSE c.status IN ('pending', 'error')
                                   OR (c.status IN ('running', 'paged')
                                       AND c.lease_expires_at < now())
                                   -- Parked durably for a worker's sweep, which an
                                   -- in-process run does not do: it reads it again.
                                   OR (c.status = 'paged' AND c.lease_owner IS NULL)
                         END
                   ORDER BY c.chunk_index
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
               RETURNING r.run_id,
                         (SELECT kind FROM ops.backfill_runs k WHERE k.run_id = r.run_id)
                             AS "kind!: super::RunKind",
                         r.chunk_index, r.realm_id, r.entity, r.window_start_utc,
                         r.window_end_utc, r.status AS "status: super::ChunkStatus", r.attempts,
                         r.expected_count, r.planned_count, r.row_count,
                         r.inserted, r.updated, r.skipped, r.deleted, r.read_via, r.pages,
                         r.requests, r.retries, r.passes, r.started_at, r.finished_at,
                         r.error_message, r.last_intuit_tid"#,
            run_id,
            failed_only,
            claimer.invocation,
            claimer.owner,
            claimer.lease.as_secs_f64(),
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| ClaimedChunk::start(self.clone(), row, claimer)))
    }

    /// `claim`, for a claimer that holds no chunk of the run (the backfill engine's and the
    /// report loader's workers, one window at a time): once nothing else is claimable, it
    /// also takes back a chunk of its own claim whose answer was lost. Postgres committed
    /// that claim, then the connection dropped before the reply (an outage mid-claim), so
    /// the chunk is `running` under the claimer's own owner and invocation, which `claim`
    /// skips; left alone, it would wait for a `--resume` in another invocation.
    pub async fn claim_holding_none(
        &self,
        run_id: Uuid,
        mode: ClaimMode,
        claimer: &Claimer,
    ) -> Result<Option<ClaimedChunk>, QueueError> {
        match self.claim(run_id, mode, claimer).await? {
            Some(chunk) => Ok(Some(chunk)),
            None => self.retake_lost_claim(run_id, claimer).await,
        }
    }

    /// The chunk of `run_id` `running` under `claimer`'s owner and invocation, claimed again
    /// (a new attempt): only for a claimer that holds none (`claim_holding_none`).
    async fn retake_lost_claim(
        &self,
        run_id: Uuid,
        claimer: &Claimer,
    ) -> Result<Option<ClaimedChunk>, QueueError> {
        let row = sqlx::query_as!(
            ChunkRow,
            r#"UPDATE ops.backfill_report r
               SET attempts = r.attempts + 1,
                   lease_expires_at = now() + make_interval(secs => $4),
                   started_at = now(), finished_at = NULL,
                   error_message = NULL, expected_count = NULL, row_count = 0, inserted = 0,
                   updated = 0, skipped = 0, pages = 0
               WHERE (r.run_id, r.chunk_index) = (
                   SELECT c.run_id, c.chunk_index FROM ops.backfill_report c
                   WHERE c.status = 'running' AND c.lease_owner = $2
                     AND c.last_invocation = $3 AND c.run_id = $1
                   ORDER BY c.chunk_index
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
               RETURNING r.run_id,
                         (SELECT kind FROM ops.backfill_runs k WHERE k.run_id = r.run_id)
                             AS "kind!: super::RunKind",
                         r.chunk_index, r.realm_id, r.entity, r.window_start_utc,
                         r.window_end_utc, r.status AS "status: super::ChunkStatus", r.attempts,
                         r.expected_count, r.planned_count, r.row_count,
                         r.inserted, r.updated, r.skipped, r.deleted, r.read_via, r.pages,
                         r.requests, r.retries, r.passes, r.started_at, r.finished_at,
                         r.error_message, r.last_intuit_tid"#,
            run_id,
            claimer.owner,
            claimer.invocation,
            claimer.lease.as_secs_f64(),
        )
        .fetch_optional(self.pool())
        .await?;
        if let Some(row) = &row {
            tracing::info!(
                run_id = %row.run_id,
                chunk = row.chunk_index,
                "took back a window whose claim's answer was lost (Postgres dropped the connection)"
            );
        }
        Ok(row.map(|row| ClaimedChunk::start(self.clone(), row, claimer)))
    }

    /// Chunks of the run under another invocation's lease, live or just run out (so
    /// `--resume` waits, and says why, instead of ending). Run-out leases count too: a lease
    /// that ran out between a claim that found nothing and this count would otherwise end
    /// the run with that window unloaded; the next claim takes it.
    pub async fn leased_elsewhere(
        &self,
        run_id: Uuid,
        invocation: Uuid,
    ) -> Result<i64, QueueError> {
        Ok(sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM ops.backfill_report
               WHERE run_id = $1 AND status IN ('running', 'paged')
                 AND lease_expires_at IS NOT NULL
                 AND last_invocation IS DISTINCT FROM $2"#,
            run_id,
            invocation
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Claims one chunk of any queued run (a backfill or report run `--enqueue` planned, or
    /// one `qbo serve` queued: `"queued": true`
    /// in its options; runs of in-process commands are theirs to finish) of any company,
    /// for a worker that serves them all. This is the fleet's one fairness order: the
    /// company (realm) served least recently first (one never served before any other), then
    /// its oldest run, then window order; claiming stamps the company's
    /// `ops.realm_service.last_served_at`.
    ///
    /// Never claimed: windows of a company in `exclude` (the worker's skip list, or at its
    /// share of the worker's slots), paused by a 429 (`ops.company_throttle`), or not
    /// `active` in `qbo companies` (`paused`, `needs_reauth`, or removed from a non-empty
    /// `qbo companies`); windows of a run in `skip_runs` or of a run that is not `running` or
    /// `incomplete` (a cancelled run's windows stay where they are). A chunk is claimable
    /// when `pending`, or `running`/`paged` under a lease that ran out (its worker died);
    /// never one this invocation already tried, and never `error` (failed windows wait for
    /// `--retry-failed`).
    ///
    /// One statement: the pick (`FOR UPDATE SKIP LOCKED`, so concurrent workers never share
    /// a chunk), the claim and the company's service stamp.
    pub async fn claim_next_any(
        &self,
        claimer: &Claimer,
        exclude: &[String],
        skip_runs: &[Uuid],
    ) -> Result<Option<ClaimedChunk>, QueueError> {
        let row = sqlx::query_as!(
            ChunkRow,
            r#"WITH picked AS (
                   -- The companies' runs in the fairness order first, then the first
                   -- claimable window of each in turn, stopping at the first one found:
                   -- the cost follows the runs, not every claimable window of every company
                   -- (which the claim used to gather and sort for one row).
                   SELECT w.run_id, w.chunk_index
                   FROM (
                       SELECT run.run_id
                       FROM ops.backfill_runs run
                       LEFT JOIN ops.realm_service s ON s.realm_id = run.realm_id
                       WHERE run.kind IN ('backfill', 'report')
                         AND (run.options->>'queued')::boolean IS TRUE
                         AND run.status IN ('running', 'incomplete')
                         AND run.realm_id <> ALL($3::text[])
                         AND run.run_id <> ALL($5::uuid[])
                         AND NOT EXISTS (
                             SELECT 1 FROM ops.company_throttle t
                             WHERE t.realm_id = run.realm_id AND t.paused_until > now())
                         AND (EXISTS (
                                  SELECT 1 FROM ops.companies co
                                  WHERE co.realm_id = run.realm_id AND co.status = 'active')
                              OR NOT EXISTS (SELECT 1 FROM ops.companies))
                       ORDER BY s.last_served_at ASC NULLS FIRST, run.started_at, run.run_id
                   ) candidate
                   CROSS JOIN LATERAL (
                       SELECT c.run_id, c.chunk_index
                       FROM ops.backfill_report c
                       WHERE c.run_id = candidate.run_id
                         AND c.last_invocation IS DISTINCT FROM $1
                         -- Implied by the next condition; written out so the planner uses
                         -- backfill_report_claimable_idx (it cannot prove the OR implies it).
                         AND c.status IN ('pending', 'running', 'paged')
                         AND (c.status = 'pending'
                              OR (c.status IN ('running', 'paged')
                                  AND c.lease_expires_at < now()))
                       ORDER BY c.chunk_index
                       LIMIT 1
                       FOR UPDATE SKIP LOCKED
                   ) w
                   LIMIT 1
               ),
               claimed AS (
                   UPDATE ops.backfill_report r
                   SET status = 'running', attempts = r.attempts + 1,
                       lease_owner = $2, lease_expires_at = now() + make_interval(secs => $4),
                       last_invocation = $1, started_at = now(), finished_at = NULL,
                       error_message = NULL, expected_count = NULL, row_count = 0,
                       inserted = 0, updated = 0, skipped = 0, pages = 0
                   FROM picked p
                   WHERE r.run_id = p.run_id AND r.chunk_index = p.chunk_index
                   RETURNING r.*
               ),
               served AS (
                   INSERT INTO ops.realm_service (realm_id, last_served_at)
                   SELECT realm_id, clock_timestamp() FROM claimed
                   ON CONFLICT (realm_id) DO UPDATE SET last_served_at = EXCLUDED.last_served_at
               )
               SELECT r.run_id AS "run_id!",
                      k.kind AS "kind!: super::RunKind",
                      r.chunk_index AS "chunk_index!", r.realm_id AS "realm_id!",
                      r.entity AS "entity!", r.window_start_utc AS "window_start_utc!",
                      r.window_end_utc AS "window_end_utc!",
                      r.status AS "status!: super::ChunkStatus", r.attempts AS "attempts!",
                      r.expected_count, r.planned_count, r.row_count AS "row_count!",
                      r.inserted AS "inserted!", r.updated AS "updated!",
                      r.skipped AS "skipped!", r.deleted AS "deleted!",
                      r.read_via AS "read_via!", r.pages AS "pages!",
                      r.requests AS "requests!", r.retries AS "retries!",
                      r.passes AS "passes!", r.started_at, r.finished_at, r.error_message,
                      r.last_intuit_tid
               FROM claimed r JOIN ops.backfill_runs k ON k.run_id = r.run_id"#,
            claimer.invocation,
            claimer.owner,
            exclude,
            claimer.lease.as_secs_f64(),
            skip_runs,
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| ClaimedChunk::start(self.clone(), row, claimer)))
    }
}
