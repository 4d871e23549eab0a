//! `qbo schedule add|list|remove`: the schedules (triggers) every `qbo serve` fires.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};

use super::backfill_cmd::connect;
use super::{CliError, DbArgs, Outcome};
use crate::report::Format;
use crate::schedule::{store, ErrorClass, Listed, ScheduleError, ScheduleSpec};

pub const AFTER_HELP: &str = "\
Schedules are kept in Postgres (ops.schedules) and fired by `qbo serve`: every instance
looks for due schedules every second (QBO_SCHEDULER_POLL_MS), and each tick is claimed in
Postgres, so it fires exactly once however many instances serve the database. Nothing
fires while no `qbo serve` runs; ticks missed meanwhile fire ONCE when one starts again
(not once per missed tick).

Cron expressions are evaluated in UTC: 5 fields (minute hour day-of-month month
day-of-week) or 6 with seconds first; @hourly, @daily and @weekly work too.

A backfill schedule enqueues, at each tick, a backfill of the last --days days: from the
tick's UTC date minus N days to that date, inclusive (`--days 3` at 02:00 on 2026-03-04
loads 2026-03-01..2026-03-04); `qbo serve`'s workers (or `qbo worker`s) load it.
A sync schedule enqueues a sync of the entity (or all) per company, as `qbo sync
--enqueue` does; `qbo serve`'s workers (or `qbo worker`s) run it from the company's
watermarks (so backfill a company once before syncing it). A sync schedule replaces a
cron or systemd timer running `qbo sync`: do not keep both (two syncs of one company
wait on each other's lock). A tick whose previous tick's work is still going (runs with
windows to load, or a sync request queued or running) is recorded `skipped`, with why.
GET /api/schedules/NAME/firings on `qbo serve` (and ops.schedule_firings) lists the
ticks and what each enqueued.

Examples:
  qbo schedule add --name nightly --cron '0 2 * * *' --kind backfill \\
      --entity all --days 3 --all-companies
  qbo schedule add --name acme-invoices --cron '30 */6 * * *' --kind backfill \\
      --entity invoices --days 1 --realm-id 9130350000000001
  qbo schedule add --name hourly-sync --cron '0 * * * *' --kind sync --all-companies
  qbo schedule list
  qbo schedule remove nightly";

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule: a cron expression (UTC) and what to enqueue at each tick.
    #[command(after_help = AFTER_HELP)]
    Add(AddArgs),
    /// Every schedule: its cron, what it enqueues, its next tick and its last firing.
    List(ListArgs),
    /// Remove a schedule (and its firing history). Runs it enqueued stay queued.
    Remove(RemoveArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// A rolling backfill of the last --days days.
    Backfill,
    /// A queued sync per company (what changed since its last sync), run by `qbo serve`'s
    /// workers or `qbo worker`s (replaces a timer running `qbo sync`: keep only one).
    Sync,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A name for the schedule (letters, digits, `.`, `_`, `-`; at most 64).
    #[arg(long)]
    pub name: String,
    /// When it ticks, in UTC: `0 2 * * *` (daily at 02:00), `0 * * * *` (hourly), or with
    /// seconds first, `*/30 * * * * *`.
    #[arg(long)]
    pub cron: String,
    /// What each tick enqueues.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The entity, as `qbo entities` lists it, or `all`.
    #[arg(long, default_value = "all")]
    pub entity: String,
    /// Backfill only (required): load the last N days up to the tick's date (UTC), that
    /// date included.
    #[arg(long, allow_negative_numbers = true)]
    pub days: Option<i64>,
    /// One company (it must be in `qbo companies`). This flag does not read QBO_REALM_ID: a
    /// schedule names its company explicitly.
    #[arg(long)]
    pub realm_id: Option<String>,
    /// Every active company at the time of each tick.
    #[arg(long)]
    pub all_companies: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// table for people, json for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The schedule's name.
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(cmd: ScheduleCommand) -> Result<Outcome, CliError> {
    match cmd {
        ScheduleCommand::Add(args) => add(args).await,
        ScheduleCommand::List(args) => list(args).await,
        ScheduleCommand::Remove(args) => remove(args).await,
    }
}

/// Bad input, unknown names and conflicts exit 2 (nothing was written); Postgres failing, 1.
fn classify(e: ScheduleError) -> CliError {
    match e.class() {
        ErrorClass::Internal => CliError::failed(e),
        _ => CliError::usage(e),
    }
}

async fn add(args: AddArgs) -> Result<Outcome, CliError> {
    let spec = ScheduleSpec {
        name: args.name,
        cron: args.cron,
        kind: match args.kind {
            KindArg::Backfill => "backfill",
            KindArg::Sync => "sync",
        }
        .to_string(),
        entity: Some(args.entity),
        days: args.days,
        realm_id: args.realm_id,
        all_companies: args.all_companies,
    };
    // Checked before connecting: a typo never waits on the database.
    let new = spec.check().map_err(classify)?;
    let db = connect(&args.db).await?;
    let s = store::add(db.pool(), &new).await.map_err(classify)?;
    outln!(
        "added schedule {}: {} {}{} for {} at `{}` (UTC); next tick {}",
        s.name,
        s.kind.as_str(),
        s.entity,
        s.days
            .map(|d| format!(" of the last {d} days"))
            .unwrap_or_default(),
        s.companies_label(),
        s.cron,
        stamp(s.next_tick_at)
    );
    outln!("`qbo serve` fires it (any instance, each tick once)");
    Ok(Outcome::Success)
}

async fn list(args: ListArgs) -> Result<Outcome, CliError> {
    let db = connect(&args.db).await?;
    let all = store::list(db.pool()).await.map_err(classify)?;
    match args.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&all).map_err(CliError::failed)?;
            outln!("{json}");
        }
        Format::Table => out!("{}", table(&all)),
    }
    Ok(Outcome::Success)
}

async fn remove(args: RemoveArgs) -> Result<Outcome, CliError> {
    let db = connect(&args.db).await?;
    let s = store::remove(db.pool(), args.name.trim())
        .await
        .map_err(classify)?;
    outln!(
        "removed schedule {} and its firing history; runs it enqueued stay queued",
        s.name
    );
    Ok(Outcome::Success)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn table(all: &[Listed]) -> String {
    if all.is_empty() {
        return "no schedules yet: `qbo schedule add --help` shows how to add one\n".to_string();
    }
    let header = [
        "NAME",
        "CRON (UTC)",
        "KIND",
        "ENTITY",
        "DAYS",
        "COMPANIES",
        "NEXT TICK (UTC)",
        "LAST TICK (UTC)",
        "OUTCOME",
        "REASON",
    ];
    let short = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let rows: Vec<[String; 10]> = all
        .iter()
        .map(|l| {
            let s = &l.schedule;
            let (last, outcome, reason) = match &l.last_firing {
                Some(f) => (
                    short(f.tick_at),
                    f.outcome.to_string(),
                    f.reason.clone().unwrap_or_default(),
                ),
                None => ("never".into(), "-".into(), String::new()),
            };
            [
                s.name.clone(),
                s.cron.clone(),
                s.kind.as_str().to_string(),
                s.entity.clone(),
                s.days.map_or("-".into(), |d| d.to_string()),
                s.realm_id.clone().unwrap_or_else(|| "all".into()),
                short(s.next_tick_at),
                last,
                outcome,
                reason,
            ]
        })
        .collect();
    crate::stdout::table(&header, &rows)
}
