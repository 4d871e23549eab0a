//! What a claimed tick does: enqueue a schedule's work for its companies, and record it.

use chrono::{DateTime, Days, Utc};

use super::{store, FiringOutcome, Kind, Schedule, ScheduleError, Target};
use crate::backfill::Options;
use crate::chunks::DateRange;
use crate::companies::{self, CompanyStatus, Environment};
use crate::entities::Selection;
use crate::fleet::{
    enqueue_backfill, enqueue_sync, BackfillRequest, Requester, SyncOptions, SyncRequest,
    SyncSelection,
};
use crate::store::PgStore;

/// How the instance's scheduler enqueues: the settings its `qbo serve` was given.
#[derive(Debug, Clone)]
pub struct FireSettings {
    /// `--all-companies` schedules work on the active companies of this environment.
    pub environment: Environment,
    pub minor_version: u32,
    /// Window planning and page size of scheduled backfills.
    pub options: Options,
}

/// How one firing ended (also recorded in `ops.schedule_firings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub outcome: FiringOutcome,
    pub reason: String,
    /// Runs (backfill) or sync requests (sync) enqueued.
    pub runs: usize,
}

/// The range a rolling backfill of `days` days loads when it ticks at `tick_at`: from the
/// tick's UTC date minus `days` days to that date, inclusive.
pub fn rolling_range(tick_at: DateTime<Utc>, days: u32) -> DateRange {
    let end = tick_at.date_naive();
    let start = end
        .checked_sub_days(Days::new(u64::from(days)))
        .unwrap_or(end);
    DateRange {
        start,
        end_inclusive: end,
    }
}

/// Enqueues `s`'s work for the tick at `tick_at` (claimed by this instance) and records how
/// it went. Errors only when even the record could not be written.
pub async fn fire(
    db: &PgStore,
    settings: &FireSettings,
    s: &Schedule,
    tick_at: DateTime<Utc>,
) -> Result<Fired, ScheduleError> {
    let fired = match enqueue(db, settings, s, tick_at).await {
        Ok(fired) => fired,
        Err(e) => Fired {
            outcome: FiringOutcome::Failed,
            reason: crate::errors::chain(&e),
            runs: 0,
        },
    };
    store::finish(
        db.pool(),
        s.schedule_id,
        tick_at,
        fired.outcome,
        Some(&fired.reason),
    )
    .await?;
    Ok(fired)
}

#[derive(Debug, thiserror::Error)]
enum EnqueueError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("enqueueing the work of realm {realm_id} (what was enqueued before stays queued)")]
    Fleet {
        realm_id: String,
        #[source]
        source: crate::fleet::FleetError,
    },
}

async fn enqueue(
    db: &PgStore,
    settings: &FireSettings,
    s: &Schedule,
    tick_at: DateTime<Utc>,
) -> Result<Fired, EnqueueError> {
    let selection = s.selection()?;
    let job = match (s.kind, s.days) {
        (Kind::Backfill, Some(days)) => Job::Backfill(rolling_range(tick_at, days.max(1) as u32)),
        (Kind::Backfill, None) => {
            return Err(ScheduleError::Unreadable {
                name: s.name.clone(),
                reason: "a backfill without days".into(),
            }
            .into())
        }
        (Kind::Sync, _) => Job::Sync,
    };
    let realms = match companies_of(db, settings, s).await? {
        Ok(realms) => realms,
        Err(why) => {
            return Ok(Fired {
                outcome: FiringOutcome::Skipped,
                reason: why,
                runs: 0,
            })
        }
    };
    let mut queued = 0;
    for realm_id in &realms {
        let failed = |source| EnqueueError::Fleet {
            realm_id: realm_id.clone(),
            source,
        };
        match job {
            Job::Backfill(range) => {
                let enqueued = enqueue_backfill(
                    db,
                    &BackfillRequest {
                        realm_id,
                        selection,
                        range,
                        options: &settings.options,
                        minor_version: settings.minor_version,
                    },
                )
                .await
                .map_err(failed)?;
                let ids: Vec<_> = enqueued.runs.iter().map(|(_, id)| *id).collect();
                store::add_work(db.pool(), s.schedule_id, tick_at, &ids, &[]).await?;
                queued += ids.len();
            }
            Job::Sync => {
                let request = enqueue_sync(
                    db,
                    &SyncRequest {
                        realm_id,
                        selection: match selection {
                            Selection::All => SyncSelection::All,
                            Selection::One(e) => SyncSelection::of(&[e]),
                        },
                        options: SyncOptions::default(),
                        requested_by: Requester::Schedule,
                        schedule_id: Some(s.schedule_id),
                    },
                )
                .await
                .map_err(failed)?;
                store::add_work(db.pool(), s.schedule_id, tick_at, &[], &[request]).await?;
                queued += 1;
            }
        }
    }
    let companies = match realms.len() {
        1 => "1 company".to_string(),
        n => format!("{n} companies"),
    };
    let reason = match job {
        Job::Backfill(range) => format!(
            "backfill {} {}..{}: {queued} runs queued for {companies}",
            s.entity, range.start, range.end_inclusive
        ),
        Job::Sync => format!(
            "sync {}: {queued} sync requests queued for {companies}",
            s.entity
        ),
    };
    Ok(Fired {
        outcome: FiringOutcome::Fired,
        reason,
        runs: queued,
    })
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Backfill(DateRange),
    Sync,
}

/// The realms the tick works on, or why there are none (the tick is then skipped).
async fn companies_of(
    db: &PgStore,
    settings: &FireSettings,
    s: &Schedule,
) -> Result<Result<Vec<String>, String>, ScheduleError> {
    match s.target() {
        Target::Company(realm) => Ok(match companies::find(db.pool(), &realm).await? {
            None => Err(format!(
                "company {realm} is not in `qbo companies` (removed?); `qbo companies add \
                 --realm-id {realm}` brings it back"
            )),
            Some(c) if c.status != CompanyStatus::Active => Err(format!(
                "company {} is {}{}",
                c.label(),
                c.status,
                c.status_reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            Some(c) => Ok(vec![c.realm_id]),
        }),
        Target::AllCompanies => {
            let fleet = companies::fleet(db.pool()).await?;
            let realms: Vec<String> = fleet
                .active
                .into_iter()
                .filter(|c| c.environment == settings.environment)
                .map(|c| c.realm_id)
                .collect();
            Ok(match realms.is_empty() {
                true => Err(format!(
                    "no active {} company in `qbo companies`",
                    settings.environment.as_str()
                )),
                false => Ok(realms),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolling_backfill_ends_on_the_ticks_utc_date() {
        let tick = DateTime::parse_from_rfc3339("2026-03-02T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = rolling_range(tick, 3);
        assert_eq!(r.start.to_string(), "2026-02-27");
        assert_eq!(r.end_inclusive.to_string(), "2026-03-02");
    }
}
