//! Schedules (triggers): a cron expression, evaluated in UTC, and what to enqueue when it
//! ticks, for one company or for every active one:
//! - `backfill`: a rolling backfill of an entity (or all) over the last N days: start = the
//!   tick's UTC date minus N days, end = that date (inclusive). Runs are enqueued with
//!   `fleet::enqueue_backfill`, and workers load them.
//! - `sync`: a queued sync of an entity (or all) per company (`fleet::enqueue_sync`), which
//!   a worker runs whole from the company's watermarks.
//!
//! Every `qbo serve` runs the scheduler (`scheduler`); they coordinate through Postgres only
//! (`store`): a tick is claimed by moving the schedule's `next_tick_at` from the value read
//! to the next one in one `UPDATE ... WHERE next_tick_at = $read`, so each tick is fired by
//! exactly one instance, and recorded in `ops.schedule_firings` (primary key: schedule and
//! tick). A tick whose previous firing's work is still going is recorded `skipped`; ticks
//! missed while no instance ran fire once (`cron::CronExpr::due`).

pub mod cron;
pub mod fire;
pub mod scheduler;
pub mod store;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::entities::{Selection, UnknownEntity};

pub use cron::{CronError, CronExpr, Due};
pub use scheduler::Scheduler;

/// Days a rolling backfill may reach back at most (ten years).
pub const MAX_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "bad schedule name `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with \
         a letter or a digit"
    )]
    BadName(String),
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error(
        "unknown schedule kind `{0}`: use `backfill` (a rolling backfill of the last --days \
         days) or `sync` (what changed since the last sync)"
    )]
    BadKind(String),
    #[error(
        "a backfill schedule needs --days N (1 to {MAX_DAYS}): each tick loads the last N days \
         up to the tick's date, UTC"
    )]
    NoDays,
    #[error("--days {0} is out of range: give 1 to {MAX_DAYS}")]
    BadDays(i64),
    #[error("--days is for backfill schedules; a sync loads what changed since the last sync")]
    DaysForSync,
    #[error(transparent)]
    Entity(#[from] UnknownEntity),
    #[error(
        "say which companies: --realm-id R (one company) or --all-companies (every active \
         company at each tick)"
    )]
    NoTarget,
    #[error("give --realm-id or --all-companies, not both")]
    BothTargets,
    #[error("bad realm id: {0}")]
    BadRealm(#[source] crate::config::ConfigError),
    #[error(
        "no company with realm id {0} in `qbo companies`: add it first (`qbo companies add \
         --realm-id {0}`, or `qbo auth login`)"
    )]
    UnknownCompany(String),
    #[error(
        "a schedule named `{0}` already exists: `qbo schedule remove {0}` first, or choose \
         another name"
    )]
    NameTaken(String),
    #[error("no schedule named `{0}`; `qbo schedule list` shows them")]
    NotFound(String),
    #[error("schedule `{name}` as stored is unreadable ({reason}); remove it and add it again")]
    Unreadable { name: String, reason: String },
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Companies(#[from] crate::companies::CompaniesError),
}

/// How a caller (the CLI's exit code, the API's status) should take an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request was wrong; nothing was written (exit 2, HTTP 400).
    BadInput,
    /// It names a schedule or company that does not exist (exit 2, HTTP 404).
    NotFound,
    /// It conflicts with what exists (exit 2, HTTP 409).
    Conflict,
    /// Postgres failed (exit 1, HTTP 500).
    Internal,
}

impl ScheduleError {
    pub fn class(&self) -> ErrorClass {
        use ScheduleError::*;
        match self {
            BadName(_) | Cron(_) | BadKind(_) | NoDays | BadDays(_) | DaysForSync | Entity(_)
            | NoTarget | BothTargets | BadRealm(_) => ErrorClass::BadInput,
            UnknownCompany(_) | NotFound(_) => ErrorClass::NotFound,
            Companies(crate::companies::CompaniesError::NotFound(_)) => ErrorClass::NotFound,
            NameTaken(_) => ErrorClass::Conflict,
            Unreadable { .. } | Db(_) | Companies(_) => ErrorClass::Internal,
        }
    }
}

/// What a schedule enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Backfill,
    Sync,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backfill => "backfill",
            Kind::Sync => "sync",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "backfill" => Ok(Kind::Backfill),
            "sync" => Ok(Kind::Sync),
            _ => Err(ScheduleError::BadKind(s.to_string())),
        }
    }
}

/// Which companies a schedule's ticks work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Company(String),
    /// The active companies (of the instance's QBO environment) at the time of each tick.
    AllCompanies,
}

/// A schedule as asked for, before it is checked: the CLI's flags and the API's JSON body.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    pub kind: String,
    /// An entity as `qbo entities` spells it, or `all` (the default).
    #[serde(default)]
    pub entity: Option<String>,
    /// Backfill only: the last N days.
    #[serde(default)]
    pub days: Option<i64>,
    #[serde(default)]
    pub realm_id: Option<String>,
    #[serde(default)]
    pub all_companies: bool,
}

/// A checked schedule, ready to store.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    pub cron: CronExpr,
    pub kind: Kind,
    pub selection: Selection,
    /// `Some` for a backfill.
    pub days: Option<u32>,
    pub target: Target,
}

impl ScheduleSpec {
    /// Checks everything that needs no database; the CLI and the API say the same.
    pub fn check(&self) -> Result<NewSchedule, ScheduleError> {
        let name = self.name.trim();
        if !valid_name(name) {
            return Err(ScheduleError::BadName(self.name.clone()));
        }
        let kind: Kind = self.kind.parse()?;
        let cron = CronExpr::parse(&self.cron)?;
        let selection: Selection = self.entity.as_deref().unwrap_or("all").trim().parse()?;
        let days = match (kind, self.days) {
            (Kind::Backfill, None) => return Err(ScheduleError::NoDays),
            (Kind::Backfill, Some(d)) if !(1..=MAX_DAYS).contains(&d) => {
                return Err(ScheduleError::BadDays(d))
            }
            (Kind::Backfill, Some(d)) => Some(d as u32),
            (Kind::Sync, Some(_)) => return Err(ScheduleError::DaysForSync),
            (Kind::Sync, None) => None,
        };
        let realm = self
            .realm_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let target = match (realm, self.all_companies) {
            (Some(_), true) => return Err(ScheduleError::BothTargets),
            (None, false) => return Err(ScheduleError::NoTarget),
            (None, true) => Target::AllCompanies,
            (Some(r), false) => {
                crate::config::validate_realm_id(r).map_err(ScheduleError::BadRealm)?;
                Target::Company(r.to_string())
            }
        };
        Ok(NewSchedule {
            name: name.to_string(),
            cron,
            kind,
            selection,
            days,
            target,
        })
    }
}

/// 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit (the CHECK in the migration).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A stored schedule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Schedule {
    pub schedule_id: Uuid,
    pub name: String,
    pub cron: String,
    pub kind: Kind,
    /// `all` or an entity as `qbo entities` spells it.
    pub entity: String,
    pub days: Option<i32>,
    /// `None`: every active company.
    pub realm_id: Option<String>,
    pub next_tick_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Schedule {
    pub fn target(&self) -> Target {
        match &self.realm_id {
            Some(r) => Target::Company(r.clone()),
            None => Target::AllCompanies,
        }
    }

    pub fn selection(&self) -> Result<Selection, ScheduleError> {
        self.entity
            .parse()
            .map_err(|e: UnknownEntity| ScheduleError::Unreadable {
                name: self.name.clone(),
                reason: e.to_string(),
            })
    }

    /// `company 9130...` or `all active companies`: how lists and messages name the target.
    pub fn companies_label(&self) -> String {
        match &self.realm_id {
            Some(r) => format!("company {r}"),
            None => "all active companies".to_string(),
        }
    }
}

/// What became of one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum FiringOutcome {
    /// Claimed; its work is being enqueued.
    Firing,
    Fired,
    /// Nothing enqueued: the previous tick's work is still going, or no company to work on.
    Skipped,
    /// Enqueueing failed (the reason says why); what was enqueued before is in the ids.
    Failed,
}

impl FiringOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FiringOutcome::Firing => "firing",
            FiringOutcome::Fired => "fired",
            FiringOutcome::Skipped => "skipped",
            FiringOutcome::Failed => "failed",
        }
    }
}

impl std::fmt::Display for FiringOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `ops.schedule_firings`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Firing {
    pub tick_at: DateTime<Utc>,
    pub missed_ticks: i32,
    pub outcome: FiringOutcome,
    pub reason: Option<String>,
    pub run_ids: Vec<Uuid>,
    pub sync_request_ids: Vec<Uuid>,
    pub fired_by: String,
    pub fired_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A schedule with its latest firing, as `qbo schedule list` and `GET /api/schedules` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub schedule: Schedule,
    pub last_firing: Option<Firing>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScheduleSpec {
        ScheduleSpec {
            name: "nightly-3d".into(),
            cron: "0 2 * * *".into(),
            kind: "backfill".into(),
            entity: Some("invoices".into()),
            days: Some(3),
            realm_id: Some("9130350000000001".into()),
            all_companies: false,
        }
    }

    #[test]
    fn a_good_spec_checks() {
        let s = spec().check().unwrap();
        assert_eq!(s.kind, Kind::Backfill);
        assert_eq!(s.days, Some(3));
        assert_eq!(s.target, Target::Company("9130350000000001".into()));
        let all = ScheduleSpec {
            realm_id: None,
            all_companies: true,
            entity: None,
            ..spec()
        }
        .check()
        .unwrap();
        assert_eq!(all.target, Target::AllCompanies);
        assert_eq!(all.selection, Selection::All);
    }

    #[test]
    fn a_sync_schedule_takes_no_days() {
        let s = ScheduleSpec {
            kind: "sync".into(),
            days: None,
            ..spec()
        }
        .check()
        .unwrap();
        assert_eq!(s.kind, Kind::Sync);
        assert_eq!(s.days, None);
    }

    #[test]
    fn bad_specs_say_what_to_fix() {
        let cases: Vec<(ScheduleSpec, &str)> = vec![
            (
                ScheduleSpec {
                    name: "-x".into(),
                    ..spec()
                },
                "bad schedule name",
            ),
            (
                ScheduleSpec {
                    name: "a b".into(),
                    ..spec()
                },
                "bad schedule name",
            ),
            (
                ScheduleSpec {
                    cron: "0 25 * * *".into(),
                    ..spec()
                },
                "bad cron expression",
            ),
            (
                ScheduleSpec {
                    kind: "hourly".into(),
                    ..spec()
                },
                "unknown schedule kind",
            ),
            (
                ScheduleSpec {
                    days: None,
                    ..spec()
                },
                "needs --days",
            ),
            (
                ScheduleSpec {
                    days: Some(0),
                    ..spec()
                },
                "out of range",
            ),
            (
                ScheduleSpec {
                    entity: Some("widgets".into()),
                    ..spec()
                },
                "widgets",
            ),
            (
                ScheduleSpec {
                    realm_id: None,
                    ..spec()
                },
                "--all-companies",
            ),
            (
                ScheduleSpec {
                    all_companies: true,
                    ..spec()
                },
                "not both",
            ),
            (
                ScheduleSpec {
                    realm_id: Some("acme".into()),
                    ..spec()
                },
                "realm id",
            ),
            (
                ScheduleSpec {
                    kind: "sync".into(),
                    ..spec()
                },
                "--days is for backfill",
            ),
        ];
        for (spec, want) in cases {
            let err = spec.check().unwrap_err();
            assert_eq!(err.class(), ErrorClass::BadInput, "{err}");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }
}
