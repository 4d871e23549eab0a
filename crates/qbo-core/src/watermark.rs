//! Watermark rules: where a sync starts reading, when CDC can serve it, and what watermark a
//! backfill may leave behind. Shared by `backfill` (which seeds one) and `sync` (which reads
//! and moves it), so neither calls into the other for them; `sync::watermark` is this module.
//!
//! A watermark W for (realm, entity) promises: every change QBO stamped before W (by QBO's
//! clock) is in the raw zone, deletes included. A sync reads from W - lookback (late commits:
//! QBO may stamp a record a little before it becomes visible) and moves W to QBO's clock at
//! the moment it read, in the transaction that commits the last rows it read.

use chrono::{DateTime, Duration, DurationRound, NaiveTime, Utc};

use crate::entities::Entity;
use crate::queue::{RunKind, RunStatus};
use crate::store::{PgStore, RunRow, StoreError};

/// Intuit: "CDC operations can track changes within the last 30 days".
pub const CDC_HORIZON_DAYS: i64 = 30;
/// CDC is used only when its start is at least this much inside the horizon, so a slow
/// sync or a clock difference can never ask for a changedSince QBO already refuses.
pub const HORIZON_MARGIN_HOURS: i64 = 24;
/// How far our clock (which stamps a run's start) may be ahead of QBO's.
pub const CLOCK_SKEW_MINUTES: i64 = 5;

/// Whether CDC still serves changes since `from`, by QBO's clock `qbo_now`.
pub fn within_cdc_horizon(from: DateTime<Utc>, qbo_now: DateTime<Utc>) -> bool {
    from >= qbo_now - Duration::days(CDC_HORIZON_DAYS) + Duration::hours(HORIZON_MARGIN_HOURS)
}

/// The watermark for a read QBO answered at `server_time`: everything stamped before it is
/// in that answer. QBO stamps whole seconds, so the second itself is not yet complete.
pub fn from_server_time(server_time: DateTime<Utc>) -> DateTime<Utc> {
    server_time
        .duration_trunc(Duration::seconds(1))
        .unwrap_or(server_time)
}

/// The watermark a successful backfill leaves, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub watermark: DateTime<Utc>,
    /// The raw zone held rows before the backfill, so records deleted before it ran may
    /// still look live there: the next sync lists QBO's ids once.
    pub needs_reconcile: bool,
}

/// The rule: a successful last-updated backfill of [start, end] that began at S (our clock)
/// leaves W = min(end + 1 day, S - clock skew), and only where no watermark exists yet
/// (`PgStore::seed_watermark`); an existing watermark already covers deletes up to it, which
/// a backfill cannot see, so it is never moved by one.
///
/// Why nothing is skipped: a record stamped L < W either still had L when its window was
/// read (every window is read after S, completely), or it changed after S (then it is
/// stamped after W and the next sync reads it), or it was deleted after S (the delete is
/// stamped after W: CDC reports it). What the backfill cannot see is a delete before S of
/// a record the raw zone already had: hence `needs_reconcile` when the table was not empty.
/// Txn-date backfills and entities read whole leave no watermark.
pub fn after_backfill(run: &RunRow, entity: &Entity) -> Option<Seed> {
    if run.kind != RunKind::Backfill
        || run.status != RunStatus::Success
        || run.window_field != "last-updated"
        || entity.is_whole()
    {
        return None;
    }
    let range_end = (run.range_end + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc();
    let started = run.started_at - Duration::minutes(CLOCK_SKEW_MINUTES);
    let needs_reconcile = run
        .options
        .get("raw_had_rows")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    Some(Seed {
        watermark: range_end.min(started),
        needs_reconcile,
    })
}

/// Applies [`after_backfill`] to a finished run: sets the watermark if the rule gives one and
/// the entity has none yet.
pub async fn seed_after_backfill(
    store: &PgStore,
    run_id: uuid::Uuid,
    entity: &Entity,
) -> Result<(), StoreError> {
    let Some(run) = store.run(run_id).await? else {
        return Ok(());
    };
    let Some(seed) = after_backfill(&run, entity) else {
        return Ok(());
    };
    let set = store
        .seed_watermark(
            &run.realm_id,
            entity.cli_name,
            seed.watermark,
            run_id,
            seed.needs_reconcile,
        )
        .await?;
    if set {
        tracing::info!(watermark = %seed.watermark, needs_reconcile = seed.needs_reconcile, "set the sync watermark");
    }
    Ok(())
}

/// Parses `--lookback`: a number and a unit (s, m, h, d), e.g. `10m`.
pub fn parse_lookback(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 10m, 90s, 1h or 2d"))?;
    let d = match unit.trim() {
        // A bare number is refused rather than guessed: 10 could mean seconds or minutes.
        "" => return Err(format!("`{s}` has no unit; use s, m, h or d (e.g. {s}m)")),
        "s" => Duration::seconds(n),
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        other => return Err(format!("unknown unit `{other}` in `{s}`; use s, m, h or d")),
    };
    if d > Duration::days(CDC_HORIZON_DAYS) {
        return Err(format!("--lookback {s} is longer than CDC's 30 days"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(end: &str, started: &str, options: serde_json::Value) -> RunRow {
        RunRow {
            run_id: uuid::Uuid::nil(),
            realm_id: "1".into(),
            entity: "invoices".into(),
            range_start: "2024-01-01".parse().unwrap(),
            range_end: end.parse().unwrap(),
            window_field: "last-updated".into(),
            options,
            status: RunStatus::Success,
            kind: RunKind::Backfill,
            started_at: started.parse().unwrap(),
            finished_at: None,
        }
    }

    #[test]
    fn a_backfill_watermark_is_the_earlier_of_its_end_and_its_start() {
        let invoices = crate::entities::find("invoices").unwrap();
        let past = run(
            "2024-03-31",
            "2026-11-24T10:00:00Z",
            json!({"raw_had_rows": false}),
        );
        let seed = after_backfill(&past, invoices).unwrap();
        assert_eq!(seed.watermark.to_rfc3339(), "2024-04-01T00:00:00+00:00");
        assert!(!seed.needs_reconcile);
        let today = run("2026-11-24", "2026-11-24T10:00:00Z", json!({}));
        let seed = after_backfill(&today, invoices).unwrap();
        assert_eq!(seed.watermark.to_rfc3339(), "2026-11-24T09:55:00+00:00");
        assert!(seed.needs_reconcile, "unknown emptiness means reconcile");
        let mut txn = today.clone();
        txn.window_field = "txn-date".into();
        assert_eq!(after_backfill(&txn, invoices), None);
    }

    #[test]
    fn horizon_and_lookback() {
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        assert!(within_cdc_horizon(now - Duration::days(28), now));
        assert!(!within_cdc_horizon(
            now - Duration::days(29) - Duration::hours(1),
            now
        ));
        assert_eq!(parse_lookback("10m").unwrap(), Duration::minutes(10));
        assert_eq!(parse_lookback("2h").unwrap(), Duration::hours(2));
        assert!(parse_lookback("ten").is_err());
        assert!(parse_lookback("10")
            .unwrap_err()
            .contains("use s, m, h or d"));
        assert!(parse_lookback("40d").is_err());
    }
}
