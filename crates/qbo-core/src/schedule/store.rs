//! Schedules and their firings in Postgres (`ops.schedules`, `ops.schedule_firings`), and the
//! claim that makes each tick fire once across every `qbo serve`.
//!
//! Times come from Postgres's clock, never the instance's, so instances whose clocks differ
//! still agree on what is due.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::{
    Due, Firing, FiringOutcome, Kind, Listed, NewSchedule, Schedule, ScheduleError, Target,
};
use crate::entities::Selection;

/// A claimed firing that has not enqueued yet is taken for dead (its instance stopped
/// midway) after this long, and the ticks after it fire again.
const FIRING_GIVES_UP_AFTER_SECS: f64 = 600.0;

/// Postgres's clock.
pub async fn now(pool: &PgPool) -> Result<DateTime<Utc>, ScheduleError> {
    Ok(sqlx::query_scalar!(r#"SELECT clock_timestamp() AS "now!""#)
        .fetch_one(pool)
        .await?)
}

/// How long a firing is kept (`prune_firings`), and how many of one schedule at most.
pub const FIRINGS_KEPT_DAYS: i32 = 30;
pub const FIRINGS_KEPT_PER_SCHEDULE: i64 = 1000;

/// Deletes firings older than `keep_days` days or past each schedule's newest `keep_last`,
/// never a schedule's latest firing, its latest one that fired (or is firing, or failed:
/// the next tick looks at it to know whether that work is still going) nor one still
/// `firing`. Returns how many it deleted. The scheduler runs it about once an hour.
pub async fn prune_firings(
    pool: &PgPool,
    keep_days: i32,
    keep_last: i64,
) -> Result<u64, ScheduleError> {
    Ok(sqlx::query!(
        r#"WITH bounds AS (
               SELECT s.schedule_id,
                      GREATEST(clock_timestamp() - make_interval(days => $1),
                               (SELECT f.tick_at FROM ops.schedule_firings f
                                 WHERE f.schedule_id = s.schedule_id
                                 ORDER BY f.tick_at DESC OFFSET $2::bigint - 1 LIMIT 1)) AS cutoff,
                      (SELECT f.tick_at FROM ops.schedule_firings f
                        WHERE f.schedule_id = s.schedule_id
                        ORDER BY f.tick_at DESC LIMIT 1) AS last_tick,
                      (SELECT f.tick_at FROM ops.schedule_firings f
                        WHERE f.schedule_id = s.schedule_id
                          AND f.outcome IN ('firing', 'fired', 'failed')
                        ORDER BY f.tick_at DESC LIMIT 1) AS last_worked
                 FROM ops.schedules s
           )
           DELETE FROM ops.schedule_firings f
            USING bounds b
            WHERE f.schedule_id = b.schedule_id
              AND f.tick_at < b.cutoff
              AND f.tick_at IS DISTINCT FROM b.last_tick
              AND f.tick_at IS DISTINCT FROM b.last_worked
              AND f.outcome <> 'firing'"#,
        keep_days,
        keep_last.max(1),
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// Stores `s`; its first tick is the first one after now. A schedule for one company needs
/// the company in `qbo companies`.
pub async fn add(pool: &PgPool, s: &NewSchedule) -> Result<Schedule, ScheduleError> {
    if let Target::Company(realm) = &s.target {
        if crate::companies::find(pool, realm).await?.is_none() {
            return Err(ScheduleError::UnknownCompany(realm.clone()));
        }
    }
    let next_tick_at = s.cron.next_after(now(pool).await?)?;
    let entity = match s.selection {
        Selection::All => "all",
        Selection::One(e) => e.cli_name,
    };
    let realm_id = match &s.target {
        Target::Company(r) => Some(r.as_str()),
        Target::AllCompanies => None,
    };
    let inserted = sqlx::query_as!(
        Schedule,
        r#"INSERT INTO ops.schedules
               (schedule_id, name, cron, kind, entity, days, realm_id, next_tick_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (name) DO NOTHING
           RETURNING schedule_id, name, cron, kind AS "kind: Kind", entity, days, realm_id,
                     next_tick_at, created_at"#,
        Uuid::new_v4(),
        s.name,
        s.cron.as_str(),
        s.kind as Kind,
        entity,
        s.days.map(|d| d as i32),
        realm_id,
        next_tick_at,
    )
    .fetch_optional(pool)
    .await?;
    inserted.ok_or_else(|| ScheduleError::NameTaken(s.name.clone()))
}

/// Every schedule, by name, with its latest firing.
pub async fn list(pool: &PgPool) -> Result<Vec<Listed>, ScheduleError> {
    let schedules = sqlx::query_as!(
        Schedule,
        r#"SELECT schedule_id, name, cron, kind AS "kind: Kind", entity, days, realm_id,
                  next_tick_at, created_at
             FROM ops.schedules ORDER BY name"#
    )
    .fetch_all(pool)
    .await?;
    // Each schedule's latest firing, one backward step of the primary key (schedule_id,
    // tick_at) per schedule, however many firings are kept.
    let mut latest: HashMap<Uuid, Firing> = sqlx::query!(
        r#"SELECT s.schedule_id, f.tick_at AS "tick_at!", f.missed_ticks AS "missed_ticks!",
                  f.outcome AS "outcome!: FiringOutcome", f.reason,
                  f.run_ids AS "run_ids!", f.sync_request_ids AS "sync_request_ids!",
                  f.fired_by AS "fired_by!", f.fired_at AS "fired_at!", f.finished_at
             FROM ops.schedules s
             CROSS JOIN LATERAL (
                 SELECT * FROM ops.schedule_firings f
                  WHERE f.schedule_id = s.schedule_id
                  ORDER BY f.tick_at DESC LIMIT 1) f"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| {
        (
            r.schedule_id,
            Firing {
                tick_at: r.tick_at,
                missed_ticks: r.missed_ticks,
                outcome: r.outcome,
                reason: r.reason,
                run_ids: r.run_ids,
                sync_request_ids: r.sync_request_ids,
                fired_by: r.fired_by,
                fired_at: r.fired_at,
                finished_at: r.finished_at,
            },
        )
    })
    .collect();
    Ok(schedules
        .into_iter()
        .map(|s| Listed {
            last_firing: latest.remove(&s.schedule_id),
            schedule: s,
        })
        .collect())
}

pub async fn find(pool: &PgPool, name: &str) -> Result<Option<Schedule>, ScheduleError> {
    Ok(sqlx::query_as!(
        Schedule,
        r#"SELECT schedule_id, name, cron, kind AS "kind: Kind", entity, days, realm_id,
                  next_tick_at, created_at
             FROM ops.schedules WHERE name = $1"#,
        name
    )
    .fetch_optional(pool)
    .await?)
}

pub async fn get(pool: &PgPool, name: &str) -> Result<Schedule, ScheduleError> {
    find(pool, name)
        .await?
        .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
}

/// Removes the schedule and its firings. What its firings enqueued stays queued.
pub async fn remove(pool: &PgPool, name: &str) -> Result<Schedule, ScheduleError> {
    sqlx::query_as!(
        Schedule,
        r#"DELETE FROM ops.schedules WHERE name = $1
           RETURNING schedule_id, name, cron, kind AS "kind: Kind", entity, days, realm_id,
                     next_tick_at, created_at"#,
        name
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
}

/// The schedule's latest `limit` firings, latest first.
pub async fn firings(pool: &PgPool, name: &str, limit: i64) -> Result<Vec<Firing>, ScheduleError> {
    let s = get(pool, name).await?;
    Ok(sqlx::query_as!(
        Firing,
        r#"SELECT tick_at, missed_ticks, outcome AS "outcome: FiringOutcome", reason, run_ids,
                  sync_request_ids, fired_by, fired_at, finished_at
             FROM ops.schedule_firings WHERE schedule_id = $1
            ORDER BY tick_at DESC LIMIT $2"#,
        s.schedule_id,
        limit
    )
    .fetch_all(pool)
    .await?)
}

/// The schedules whose next tick has come, and Postgres's clock they were read at.
pub async fn due(pool: &PgPool) -> Result<(DateTime<Utc>, Vec<Schedule>), ScheduleError> {
    let now = now(pool).await?;
    let due = sqlx::query_as!(
        Schedule,
        r#"SELECT schedule_id, name, cron, kind AS "kind: Kind", entity, days, realm_id,
                  next_tick_at, created_at
             FROM ops.schedules WHERE next_tick_at <= $1 ORDER BY next_tick_at, name"#,
        now
    )
    .fetch_all(pool)
    .await?;
    Ok((now, due))
}

/// What a claimed tick is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Enqueue its work, then `finish` the firing.
    Fire,
    /// Recorded `skipped`, with this reason: the previous firing's work is still going.
    Skipped(String),
}

/// Claims `due` of schedule `s` (read with `s.next_tick_at`) for `owner`: moves the
/// schedule's next tick on only if no one else has, and records the firing, in one
/// transaction. `None` when another instance claimed it first (or the schedule was removed).
pub async fn claim(
    pool: &PgPool,
    s: &Schedule,
    due: &Due,
    owner: &str,
) -> Result<Option<Claimed>, ScheduleError> {
    let mut tx = pool.begin().await?;
    // The row lock this takes makes a concurrent claimer wait, then find the value changed.
    let moved = sqlx::query!(
        "UPDATE ops.schedules SET next_tick_at = $3
          WHERE schedule_id = $1 AND next_tick_at = $2",
        s.schedule_id,
        s.next_tick_at,
        due.next_tick_at,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(None);
    }
    let claimed = match previous_work_going(&mut tx, s.schedule_id).await? {
        Some(reason) => Claimed::Skipped(reason),
        None => Claimed::Fire,
    };
    let (outcome, reason) = match &claimed {
        Claimed::Fire => (FiringOutcome::Firing, None),
        Claimed::Skipped(reason) => (FiringOutcome::Skipped, Some(reason.as_str())),
    };
    let missed = i32::try_from(due.missed_ticks).unwrap_or(i32::MAX);
    let recorded = sqlx::query!(
        "INSERT INTO ops.schedule_firings
             (schedule_id, tick_at, missed_ticks, outcome, reason, fired_by, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6,
                 CASE WHEN $4 = 'firing' THEN NULL ELSE clock_timestamp() END)
         ON CONFLICT (schedule_id, tick_at) DO NOTHING",
        s.schedule_id,
        due.tick_at,
        missed,
        outcome as FiringOutcome,
        reason,
        owner,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    // A tick already recorded (only if next_tick_at was moved back by hand) is not fired
    // twice.
    Ok((recorded == 1).then_some(claimed))
}

/// Why the schedule's previous firing is not done, if it is not: it is still enqueueing,
/// a sync request it enqueued is queued or running, or a run it enqueued (and nobody
/// cancelled) has windows left to load.
async fn previous_work_going(
    tx: &mut Transaction<'_, Postgres>,
    schedule_id: Uuid,
) -> Result<Option<String>, ScheduleError> {
    let Some(prev) = sqlx::query!(
        r#"SELECT tick_at, outcome AS "outcome: FiringOutcome", fired_by, run_ids,
                  sync_request_ids,
                  EXTRACT(EPOCH FROM clock_timestamp() - fired_at)::float8 AS "age_secs!"
             FROM ops.schedule_firings
            WHERE schedule_id = $1 AND outcome IN ('firing', 'fired', 'failed')
            ORDER BY tick_at DESC LIMIT 1"#,
        schedule_id
    )
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let tick = prev.tick_at.format("%Y-%m-%d %H:%M:%S UTC");
    if prev.outcome == FiringOutcome::Firing {
        if prev.age_secs < FIRING_GIVES_UP_AFTER_SECS {
            return Ok(Some(format!(
                "the previous tick's work ({tick}) is still going: {} is still enqueueing it",
                prev.fired_by
            )));
        }
        sqlx::query!(
            "UPDATE ops.schedule_firings
                SET outcome = 'failed', finished_at = clock_timestamp(),
                    reason = 'the instance that claimed this tick (' || fired_by
                             || ') stopped before it finished enqueueing; the runs listed \
                                were enqueued'
              WHERE schedule_id = $1 AND tick_at = $2 AND outcome = 'firing'",
            schedule_id,
            prev.tick_at,
        )
        .execute(&mut **tx)
        .await?;
    }
    let open_sync = sqlx::query!(
        r#"SELECT request_id, realm_id, status::text AS "status!"
             FROM ops.sync_requests
            WHERE request_id = ANY($1) AND status IN ('queued', 'running')
            ORDER BY realm_id, requested_at"#,
        &prev.sync_request_ids
    )
    .fetch_all(&mut **tx)
    .await?;
    if let Some(first) = open_sync.first() {
        let more = match open_sync.len() {
            1 => String::new(),
            n => format!(" and {} more sync requests", n - 1),
        };
        return Ok(Some(format!(
            "the previous tick's work ({tick}) is still going: sync request {} (realm {}) is \
             {}{more}",
            first.request_id, first.realm_id, first.status
        )));
    }
    let unfinished = sqlx::query!(
        r#"SELECT r.run_id, r.realm_id, r.entity, count(*) AS "windows!"
             FROM ops.backfill_runs r
             JOIN ops.backfill_report c ON c.run_id = r.run_id
            WHERE r.run_id = ANY($1) AND r.status <> 'cancelled'
              AND c.status IN ('pending', 'running', 'paged')
            GROUP BY r.run_id, r.realm_id, r.entity
            ORDER BY r.realm_id, r.entity"#,
        &prev.run_ids
    )
    .fetch_all(&mut **tx)
    .await?;
    let Some(first) = unfinished.first() else {
        return Ok(None);
    };
    let more = match unfinished.len() {
        1 => String::new(),
        n => format!(" and {} more runs", n - 1),
    };
    Ok(Some(format!(
        "the previous tick's work ({tick}) is still going: run {} (realm {}, {}) has {} \
         unfinished windows{more}",
        first.run_id, first.realm_id, first.entity, first.windows
    )))
}

/// Adds runs and sync requests a firing enqueued (as it goes, so a firing that stops midway
/// still names what it enqueued, and the next tick waits for them).
pub async fn add_work(
    pool: &PgPool,
    schedule_id: Uuid,
    tick_at: DateTime<Utc>,
    run_ids: &[Uuid],
    sync_request_ids: &[Uuid],
) -> Result<(), ScheduleError> {
    sqlx::query!(
        "UPDATE ops.schedule_firings
            SET run_ids = run_ids || $3::uuid[],
                sync_request_ids = sync_request_ids || $4::uuid[]
          WHERE schedule_id = $1 AND tick_at = $2",
        schedule_id,
        tick_at,
        run_ids,
        sync_request_ids,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Records how a firing ended.
pub async fn finish(
    pool: &PgPool,
    schedule_id: Uuid,
    tick_at: DateTime<Utc>,
    outcome: FiringOutcome,
    reason: Option<&str>,
) -> Result<(), ScheduleError> {
    sqlx::query!(
        "UPDATE ops.schedule_firings
            SET outcome = $3, reason = $4, finished_at = clock_timestamp()
          WHERE schedule_id = $1 AND tick_at = $2",
        schedule_id,
        tick_at,
        outcome as FiringOutcome,
        reason,
    )
    .execute(pool)
    .await?;
    Ok(())
}
