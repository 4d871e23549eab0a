//! What Postgres says at scrape time: the fleet's totals, the same from every `qbo serve`
//! sharing the database, computed from the tables `qbo report` reads (so they match it by
//! construction). A handful of aggregate queries in one read-only snapshot transaction: one
//! pass over `ops.backfill_report` (grouped), one over the (far smaller) runs, and the small
//! companies, tokens and watermarks tables.

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Upper bounds (seconds) of the window-duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// (realm, entity, kind)
pub type EntityKey = (String, String, String);

/// Report rows (windows of backfills, steps of syncs) of one company, entity, kind and state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowGroup {
    pub windows: i64,
    pub rows_loaded: i64,
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
    pub deleted: i64,
    pub requests: i64,
    pub retries: i64,
}

/// Runs of one company, entity, kind and state, and the requests they spent outside windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunGroup {
    pub runs: i64,
    pub requests: i64,
    pub retries: i64,
}

/// Finished windows' durations of one company and kind: per bucket of `DURATION_BUCKETS`
/// (the last one past them all: +Inf), not cumulative.
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub count: u64,
    pub sum: f64,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            buckets: [0; DURATION_BUCKETS.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (realm, entity, kind, status) -> windows.
    pub windows: BTreeMap<(String, String, String, String), WindowGroup>,
    /// (realm, entity, kind, status) -> runs.
    pub runs: BTreeMap<(String, String, String, String), RunGroup>,
    /// (realm, kind) -> durations of finished windows.
    pub durations: BTreeMap<(String, String), Durations>,
    /// realm -> status in `qbo companies`.
    pub companies: BTreeMap<String, String>,
    /// realm -> seconds until its refresh token expires (negative: expired).
    pub token_expiry: BTreeMap<String, f64>,
    /// (realm, entity) -> seconds between the watermark and now.
    pub watermark_lag: BTreeMap<(String, String), f64>,
    /// The app's QBO reads this month (UTC).
    pub month_reads: i64,
}

/// Which bucket of `DURATION_BUCKETS` a duration falls in, from what Postgres's
/// `width_bucket(-d, reversed negated bounds)` answered: the number of bounds >= d. A
/// duration equal to a bound counts in that bound's bucket, as Prometheus's `le` says.
pub fn bucket_index(bounds_at_least: i32) -> usize {
    let n = DURATION_BUCKETS.len();
    n - usize::try_from(bounds_at_least).unwrap_or(0).min(n)
}

impl Snapshot {
    /// Reads everything in one repeatable-read, read-only transaction, so the figures of
    /// one scrape agree with each other. `expiry_from_db`: whether the refresh tokens'
    /// expiry is read from `ops.oauth_tokens` (`QBO_TOKEN_STORE=postgres`).
    pub async fn read(pool: &PgPool, expiry_from_db: bool) -> Result<Snapshot, sqlx::Error> {
        let mut tx = pool.begin().await?;
        sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let mut snap = Snapshot::default();

        let windows = sqlx::query!(
            r#"SELECT c.realm_id AS "realm!", c.entity AS "entity!", r.kind AS "kind!",
                      c.status AS "status!", count(*) AS "windows!",
                      sum(c.row_count)::bigint AS "rows_loaded!",
                      sum(c.inserted)::bigint AS "inserted!", sum(c.updated)::bigint AS "updated!",
                      sum(c.skipped)::bigint AS "skipped!", sum(c.deleted)::bigint AS "deleted!",
                      sum(c.requests)::bigint AS "requests!", sum(c.retries)::bigint AS "retries!"
               FROM ops.backfill_report c JOIN ops.backfill_runs r USING (run_id)
               GROUP BY 1, 2, 3, 4"#
        )
        .fetch_all(&mut *tx)
        .await?;
        for w in windows {
            snap.windows.insert(
                (w.realm, w.entity, w.kind, w.status),
                WindowGroup {
                    windows: w.windows,
                    rows_loaded: w.rows_loaded,
                    inserted: w.inserted,
                    updated: w.updated,
                    skipped: w.skipped,
                    deleted: w.deleted,
                    requests: w.requests,
                    retries: w.retries,
                },
            );
        }

        // A finished window's last attempt: claimed (started_at) to settled (finished_at).
        let negated: Vec<f64> = DURATION_BUCKETS.iter().rev().map(|b| -b).collect();
        let durations = sqlx::query!(
            r#"WITH d AS (
                   SELECT c.realm_id, r.kind,
                          extract(epoch FROM c.finished_at - c.started_at)::float8 AS secs
                   FROM ops.backfill_report c JOIN ops.backfill_runs r USING (run_id)
                   WHERE c.status IN ('success', 'error')
                     AND c.started_at IS NOT NULL AND c.finished_at >= c.started_at
               )
               SELECT realm_id AS "realm!", kind AS "kind!",
                      width_bucket(-secs, $1::float8[]) AS "at_least!",
                      count(*) AS "n!", sum(secs) AS "sum!"
               FROM d GROUP BY 1, 2, 3"#,
            &negated,
        )
        .fetch_all(&mut *tx)
        .await?;
        for d in durations {
            let e = snap.durations.entry((d.realm, d.kind)).or_default();
            let n = u64::try_from(d.n).unwrap_or(0);
            e.buckets[bucket_index(d.at_least)] += n;
            e.count += n;
            e.sum += d.sum;
        }

        let runs = sqlx::query!(
            r#"SELECT realm_id AS "realm!", entity AS "entity!", kind AS "kind!",
                      status AS "status!", count(*) AS "runs!",
                      sum(run_requests)::bigint AS "requests!",
                      sum(run_retries)::bigint AS "retries!"
               FROM ops.backfill_runs GROUP BY 1, 2, 3, 4"#
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in runs {
            snap.runs.insert(
                (r.realm, r.entity, r.kind, r.status),
                RunGroup {
                    runs: r.runs,
                    requests: r.requests,
                    retries: r.retries,
                },
            );
        }

        snap.companies = sqlx::query!(
            r#"SELECT realm_id AS "realm!", status::text AS "status!" FROM ops.companies"#
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|c| (c.realm, c.status))
        .collect();

        if expiry_from_db {
            snap.token_expiry = sqlx::query!(
                r#"SELECT realm_id AS "realm!",
                          extract(epoch FROM refresh_expires_at - now())::float8 AS "secs!"
                   FROM ops.oauth_tokens WHERE refresh_expires_at IS NOT NULL"#
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|t| (t.realm, t.secs))
            .collect();
        }

        snap.watermark_lag = sqlx::query!(
            r#"SELECT realm_id AS "realm!", entity AS "entity!",
                      extract(epoch FROM now() - watermark_utc)::float8 AS "lag!"
               FROM ops.sync_watermarks"#
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|w| ((w.realm, w.entity), w.lag))
        .collect();

        // One row per company and month: the app's month is their sum.
        snap.month_reads = sqlx::query_scalar!(
            r#"SELECT coalesce(sum(reads), 0)::int8 AS "reads!" FROM ops.app_reads
                WHERE month = date_trunc('month', now() AT TIME ZONE 'UTC')::date"#
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(snap)
    }

    /// Every (realm, entity, kind) with windows or runs, and its windows summed over states.
    pub fn by_entity(&self) -> BTreeMap<EntityKey, (WindowGroup, RunGroup)> {
        let mut out: BTreeMap<EntityKey, (WindowGroup, RunGroup)> = BTreeMap::new();
        for ((realm, entity, kind, _), w) in &self.windows {
            let e = &mut out
                .entry((realm.clone(), entity.clone(), kind.clone()))
                .or_default()
                .0;
            e.windows += w.windows;
            e.rows_loaded += w.rows_loaded;
            e.inserted += w.inserted;
            e.updated += w.updated;
            e.skipped += w.skipped;
            e.deleted += w.deleted;
            e.requests += w.requests;
            e.retries += w.retries;
        }
        for ((realm, entity, kind, _), r) in &self.runs {
            let e = &mut out
                .entry((realm.clone(), entity.clone(), kind.clone()))
                .or_default()
                .1;
            e.runs += r.runs;
            e.requests += r.requests;
            e.retries += r.retries;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_on_a_bound_falls_in_that_bounds_bucket() {
        let n = DURATION_BUCKETS.len() as i32;
        // d <= 0.1: every bound is >= d.
        assert_eq!(bucket_index(n), 0);
        // 0.1 < d <= 0.25.
        assert_eq!(bucket_index(n - 1), 1);
        // Past every bound: +Inf.
        assert_eq!(bucket_index(0), DURATION_BUCKETS.len());
    }
}
