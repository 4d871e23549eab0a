//! The company's request budget, held in Postgres and shared by every qbo process and machine
//! of the company. QBO counts its limits per company (realm): each process leases permits
//! (requests, batch calls) in small blocks and seats for its requests in flight from one row
//! per company, with one statement (`ops.lease_budget`, see its migration), so the processes
//! together never pass the limits. A 429 pauses the company for all of them.
//!
//! Times cross process boundaries as durations computed by the database's clock, so
//! processes on machines whose clocks disagree still agree on the budget.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// One process's handle on its company's shared budget.
#[derive(Clone)]
pub struct SharedBudget {
    pool: PgPool,
    realm_id: String,
    holder: Uuid,
}

/// What a process asks of the company's budget in one lease.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ask {
    /// Request permits wanted now.
    pub requests: u32,
    /// Batch-call permits wanted now (a batch call asks one of each, granted all or none).
    pub batches: u32,
    /// Seats in use: kept whatever the others want.
    pub keep: u32,
    /// Seats the process asks to hold (in use + idle ones it keeps for the next requests).
    pub seats: u32,
    /// Seats it would use right now (in use + waiting): the fair share is worked out on it.
    pub wanted: u32,
    /// Requests sent since the last lease, for the month's reads.
    pub reads: u64,
}

/// The company's limits and how long leases last, the same for every lease of a process.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub requests_per_window: u32,
    pub batches_per_window: u32,
    pub max_seats: u32,
    /// How long a permit counts from its lease.
    pub counts_for: Duration,
    /// How long a seat row lives unrenewed.
    pub seat_lease: Duration,
    /// Stop leasing permits once the month's reads reach this.
    pub read_cap: Option<u64>,
}

/// What a lease granted, as of the database's now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Grant {
    pub requests: u32,
    pub batches: u32,
    /// Seats the process now holds (at least the ones in use it kept).
    pub seats: u32,
    /// The most seats it may hold now: the rest of the company's, or its fair share.
    pub seat_cap: u32,
    /// When fewer permits were granted than asked: how long until the next one frees.
    pub permit_wait: Option<Duration>,
    /// How much longer the company is paused by a 429, if it is.
    pub paused_for: Option<Duration>,
    /// The reads this month (UTC), this lease's included: the app's (every company's) when
    /// the terms have a read cap, which is checked against it; the company's own otherwise
    /// (the app's sum is read only when a cap needs it).
    pub month_reads: u64,
    /// The month's reads reached the cap: no permit was granted.
    pub cap_reached: bool,
}

impl SharedBudget {
    pub fn new(pool: PgPool, realm_id: &str) -> Self {
        SharedBudget {
            pool,
            realm_id: realm_id.to_string(),
            holder: Uuid::new_v4(),
        }
    }

    /// One lease: permits, seats, the pause and the month's reads, in one round trip.
    pub async fn lease(&self, ask: Ask, terms: &Terms) -> Result<Grant, StoreError> {
        let row = sqlx::query!(
            r#"SELECT requests AS "requests!", batches AS "batches!", seats AS "seats!",
                      seat_cap AS "seat_cap!", permit_wait, paused_for,
                      month_reads AS "month_reads!", cap_reached AS "cap_reached!"
                 FROM ops.lease_budget($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"#,
            self.realm_id,
            self.holder,
            to_i32(ask.requests),
            to_i32(ask.batches),
            to_i32(ask.keep),
            to_i32(ask.seats.max(ask.keep)),
            to_i32(ask.wanted),
            to_i32(terms.requests_per_window),
            to_i32(terms.batches_per_window),
            to_i32(terms.max_seats),
            terms.counts_for.as_secs_f64(),
            terms.seat_lease.as_secs_f64(),
            i64::try_from(ask.reads).unwrap_or(i64::MAX),
            terms.read_cap.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Grant {
            requests: row.requests.max(0) as u32,
            batches: row.batches.max(0) as u32,
            seats: row.seats.max(0) as u32,
            seat_cap: row.seat_cap.max(0) as u32,
            permit_wait: row.permit_wait.and_then(seconds),
            paused_for: row.paused_for.and_then(seconds),
            month_reads: row.month_reads.max(0) as u64,
            cap_reached: row.cap_reached,
        })
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
}

/// The app's QBO reads this month (UTC), as the processes have recorded them.
pub async fn month_reads(pool: &PgPool) -> Result<u64, StoreError> {
    // One row per company and month: the app's month is their sum.
    let reads = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(reads), 0)::int8 AS "reads!" FROM ops.app_reads
            WHERE month = date_trunc('month', now() AT TIME ZONE 'UTC')::date"#
    )
    .fetch_one(pool)
    .await?;
    Ok(reads.max(0) as u64)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn seconds(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s.max(0.0)).ok()
}
