//! What a human does to a run from outside the engines loading it (`qbo serve`'s API and
//! page): cancel it, hand it to the workers to finish, or send its failed windows back to
//! them. Each is one transaction that locks the run row, checks the run's state and changes
//! it, so two of them (or two `qbo serve` instances) never interleave on one run.

use uuid::Uuid;

use super::{Queue, QueueError, RunKind, RunStatus};

/// Why a run's state refuses the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    /// Only backfills are cancelled, resumed or retried this way (a sync's steps are not
    /// windows a worker may re-read).
    NotBackfill(RunKind),
    Cancelled,
    /// The run has finished (`success`, `partial`, `error`): nothing left to cancel or resume.
    Finished(RunStatus),
    /// Windows are being loaded under a live lease (retry-failed waits until they are done).
    StillRunning {
        leased: i64,
    },
    /// Nothing of the kind to act on (no failed windows to retry, no unfinished to resume).
    NothingToDo(RunStatus),
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// Windows the change moved (cancelled, or sent back to `pending`).
    pub windows: i64,
    /// Of those, windows that were being loaded under a live lease (cancel: their workers
    /// lose the lease; resume: taken over once it runs out).
    pub leased: i64,
}

/// A run row locked for a change, with its windows by state.
struct Locked {
    status: RunStatus,
    unfinished: i64,
    failed: i64,
    leased: i64,
}

impl Queue {
    /// Cancels a backfill that has not finished: its unfinished windows become `cancelled`
    /// (leases cleared, never claimed again: a worker loading one loses its lease and moves
    /// on, its page in progress rolled back) and the run `cancelled`. Finished windows keep
    /// what they loaded.
    pub async fn cancel_run(&self, run_id: Uuid) -> Result<Result<Changed, Refusal>, QueueError> {
        let mut tx = self.pool().begin().await?;
        let run = match lock(&mut tx, run_id).await? {
            Ok(run) => run,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if run.status == RunStatus::Cancelled {
            return Ok(Err(Refusal::Cancelled));
        }
        if run.status.is_finished() {
            return Ok(Err(Refusal::Finished(run.status)));
        }
        let windows = sqlx::query_scalar!(
            r#"WITH cancelled AS (
                   UPDATE ops.backfill_report
                   SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
                       finished_at = now(),
                       error_message = 'cancelled'
                   WHERE run_id = $1 AND status IN ('pending', 'running', 'paged')
                   RETURNING 1)
               SELECT count(*) AS "n!" FROM cancelled"#,
            run_id
        )
        .fetch_one(&mut *tx)
        .await?;
        // What its parked windows read is kept only for a sweep that will not come.
        sqlx::query!("DELETE FROM ops.paged_reads WHERE run_id = $1", run_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "UPDATE ops.backfill_runs
             SET status = 'cancelled', finished_at = now(), updated_at = now()
             WHERE run_id = $1",
            run_id
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(Changed {
            windows,
            leased: run.leased,
        }))
    }

    /// Hands a run whose process died (or was interrupted) to the workers: it becomes
    /// queued, so any `qbo worker` (or `qbo serve --workers N`) claims its unfinished
    /// windows: pending ones at once, leased ones once their lease runs out.
    pub async fn queue_unfinished(
        &self,
        run_id: Uuid,
    ) -> Result<Result<Changed, Refusal>, QueueError> {
        let mut tx = self.pool().begin().await?;
        let run = match lock(&mut tx, run_id).await? {
            Ok(run) => run,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if run.status == RunStatus::Cancelled {
            return Ok(Err(Refusal::Cancelled));
        }
        if run.unfinished == 0 {
            return Ok(Err(if run.status.is_finished() {
                Refusal::Finished(run.status)
            } else {
                Refusal::NothingToDo(run.status)
            }));
        }
        mark_queued(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(Ok(Changed {
            windows: run.unfinished,
            leased: run.leased,
        }))
    }

    /// Sends a run's failed windows back to `pending` and queues the run, so that the
    /// workers load them again (`qbo backfill --retry-failed --run`, done by the workers).
    /// Refused while any window is being loaded: the run is still running.
    pub async fn queue_failed(&self, run_id: Uuid) -> Result<Result<Changed, Refusal>, QueueError> {
        let mut tx = self.pool().begin().await?;
        let run = match lock(&mut tx, run_id).await? {
            Ok(run) => run,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if run.status == RunStatus::Cancelled {
            return Ok(Err(Refusal::Cancelled));
        }
        if run.leased > 0 {
            return Ok(Err(Refusal::StillRunning { leased: run.leased }));
        }
        if run.failed == 0 {
            return Ok(Err(Refusal::NothingToDo(run.status)));
        }
        let windows = sqlx::query_scalar!(
            r#"WITH sent AS (
                   UPDATE ops.backfill_report
                   SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                       last_invocation = NULL
                   WHERE run_id = $1 AND status = 'error'
                   RETURNING 1)
               SELECT count(*) AS "n!" FROM sent"#,
            run_id
        )
        .fetch_one(&mut *tx)
        .await?;
        mark_queued(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(Ok(Changed { windows, leased: 0 }))
    }
}

/// Locks the run row (`FOR UPDATE`: changes of one run queue up behind each other) and
/// counts its windows; refuses a run that does not exist or is not a backfill.
async fn lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    run_id: Uuid,
) -> Result<Result<Locked, Refusal>, QueueError> {
    let run = sqlx::query!(
        r#"SELECT kind AS "kind: RunKind", status AS "status: RunStatus"
           FROM ops.backfill_runs WHERE run_id = $1 FOR UPDATE"#,
        run_id
    )
    .fetch_optional(&mut **tx)
    .await?;
    let Some(run) = run else {
        return Ok(Err(Refusal::NotFound));
    };
    if run.kind != RunKind::Backfill {
        return Ok(Err(Refusal::NotBackfill(run.kind)));
    }
    let counts = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status IN ('pending', 'running', 'paged')) AS "unfinished!",
                  count(*) FILTER (WHERE status = 'error') AS "failed!",
                  count(*) FILTER (WHERE status IN ('running', 'paged')
                                     AND lease_expires_at >= now()) AS "leased!"
           FROM ops.backfill_report WHERE run_id = $1"#,
        run_id
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(Ok(Locked {
        status: run.status,
        unfinished: counts.unfinished,
        failed: counts.failed,
        leased: counts.leased,
    }))
}

/// Marks the run queued (workers take it) and not finished.
async fn mark_queued(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    run_id: Uuid,
) -> Result<(), QueueError> {
    sqlx::query!(
        r#"UPDATE ops.backfill_runs
           SET options = options || '{"queued": true}'::jsonb,
               status = CASE WHEN status = 'running' THEN status ELSE 'incomplete' END,
               finished_at = NULL, updated_at = now()
           WHERE run_id = $1"#,
        run_id
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
