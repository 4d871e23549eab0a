//! The firing loop every `qbo serve` runs: look for due schedules every poll, claim each due
//! tick (only one instance wins it), and fire or skip it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::fire::{fire, FireSettings};
use super::store::{self, Claimed};
use super::{CronExpr, FiringOutcome, Schedule, ScheduleError};
use crate::store::PgStore;

/// How often an instance prunes old firings (`store::prune_firings`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What one pass did with one due tick this instance claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub schedule: String,
    pub tick_at: DateTime<Utc>,
    pub outcome: FiringOutcome,
    pub reason: String,
}

pub struct Scheduler {
    db: PgStore,
    settings: FireSettings,
    poll: Duration,
    /// Who claims: `host:pid`, recorded with each firing.
    owner: String,
}

impl Scheduler {
    pub fn new(db: PgStore, settings: FireSettings, poll: Duration) -> Self {
        Scheduler {
            db,
            settings,
            poll,
            owner: format!("{}:{}", crate::backfill::hostname(), std::process::id()),
        }
    }

    /// Passes every `poll` until `shutdown`. A pass that fails (Postgres away) is logged and
    /// the next one tries again: nothing is lost, a due tick stays due until claimed.
    /// Every `PRUNE_EVERY` (and once at start), old firings are pruned
    /// (`store::prune_firings`).
    pub async fn run(&self, shutdown: CancellationToken) {
        tracing::info!(poll_ms = self.poll.as_millis() as u64, owner = %self.owner, "scheduler started");
        let mut pruned_at: Option<Instant> = None;
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %crate::errors::chain(&e), "scheduler pass failed; trying again");
            }
            if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                // A failed prune (Postgres away) waits for the next hour too: nothing is
                // lost, the firings are only history.
                pruned_at = Some(Instant::now());
                match store::prune_firings(
                    self.db.pool(),
                    store::FIRINGS_KEPT_DAYS,
                    store::FIRINGS_KEPT_PER_SCHEDULE,
                )
                .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "old schedule firings pruned"),
                    Err(e) => {
                        tracing::warn!(error = %crate::errors::chain(&e), "pruning old schedule firings failed")
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// One pass: every due schedule's tick that this instance claims is fired or skipped.
    pub async fn run_once(&self) -> Result<Vec<Tick>, ScheduleError> {
        let (now, due) = store::due(self.db.pool()).await?;
        let mut ticks = Vec::new();
        let mut failed = None;
        for s in due {
            let span = tracing::info_span!("schedule", name = %s.name);
            // One schedule failing (its claim or record not written) does not hold the
            // others back; a tick not claimed stays due for the next pass.
            match self.tick(&s, now).instrument(span).await {
                Ok(Some(tick)) => ticks.push(tick),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %crate::errors::chain(&e), "schedule tick failed");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if ticks.is_empty() => Err(e),
            _ => Ok(ticks),
        }
    }

    /// Claims and fires (or skips) the tick of `s` due at `now`; `None` when another
    /// instance claimed it.
    async fn tick(&self, s: &Schedule, now: DateTime<Utc>) -> Result<Option<Tick>, ScheduleError> {
        let due = match CronExpr::parse(&s.cron).and_then(|c| c.due(s.next_tick_at, now)) {
            Ok(Some(due)) => due,
            Ok(None) => return Ok(None),
            Err(e) => {
                // Stored by a qbo whose cron parser took it, or edited by hand.
                tracing::error!(error = %e, "the schedule's cron expression does not parse here; not fired");
                return Ok(None);
            }
        };
        let Some(claimed) = store::claim(self.db.pool(), s, &due, &self.owner).await? else {
            return Ok(None);
        };
        let (outcome, reason) = match claimed {
            Claimed::Skipped(reason) => (FiringOutcome::Skipped, reason),
            Claimed::Fire => {
                let fired = fire(&self.db, &self.settings, s, due.tick_at).await?;
                (fired.outcome, fired.reason)
            }
        };
        tracing::info!(
            tick_at = %due.tick_at,
            missed_ticks = due.missed_ticks,
            %outcome,
            %reason,
            "schedule ticked"
        );
        Ok(Some(Tick {
            schedule: s.name.clone(),
            tick_at: due.tick_at,
            outcome,
            reason,
        }))
    }
}
