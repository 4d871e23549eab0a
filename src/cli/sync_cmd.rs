//! `qbo sync`.

use chrono::NaiveDate;
use clap::Args;

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::{parse_date_arg, parse_selection, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::backfill;
use crate::entities::{Entity, Selection};
use crate::queue::RunStatus;
use crate::sync::{watermark, Options, SyncError, SyncSummary, Syncer};

pub const AFTER_HELP: &str = "\
Examples:
  qbo sync all --since 2024-01-01     # first sync: backfills from that day to now
  qbo sync                            # every later sync (all entities): only what changed
  qbo sync invoices customers --lookback 30m
  qbo sync --reports ProfitAndLoss,BalanceSheet --report-months 2
  qbo sync all --all-companies        # every active company, one after another, here
  qbo sync all --all-companies --enqueue   # one request per company for the `qbo worker`s
  qbo sync invoices --enqueue --realm-id 9130350000000001
  qbo report --sync-requests          # queued / running / success / partial / error

Many companies: --all-companies syncs each active company of `qbo companies` in this
process (paused and needs_reauth ones are skipped with a line on stderr; a company whose
refresh token QBO refuses becomes needs_reauth and the others go on; exit 3 when one needs a
login). --enqueue records a sync request per company and returns at once: a `qbo worker`
slot runs each request whole (status queued, running, then success, partial or error;
drained mid-sync it goes back to queued, and a killed worker's request is taken over once
its lease runs out). While a request for the same company and entities is still queued,
--enqueue prints that request's id and adds nothing (the queued one keeps its options).

Watermark: per company and entity, ops.sync_watermarks holds the LastUpdatedTime (by QBO's
clock) up to which every change is loaded. It moves in the same transaction as the last rows
it covers, so a crash or Ctrl-C never skips a change: the next sync simply reads again. A
successful `qbo backfill` (last-updated windows) leaves a watermark where none exists, so a
sync after a backfill loads only what changed since.

Each sync reads from the watermark minus --lookback (records QBO stamped a little before they
became visible) through QBO's change data capture (CDC), several entities per call. CDC only
reaches 30 days back and answers at most 1000 objects: a batch at the cap is split, and an
entity still at the cap, a watermark older than 29 days, an entity CDC does not serve
(journal_codes, tax_agencies, tax_codes, tax_rates, time_activities) and a first sync are
read instead with LastUpdatedTime windows (like a backfill) followed by a reconciliation:
QBO's ids are listed and a record the raw zone holds but QBO no longer has is asked for by id
before it is marked deleted. company_info, preferences and recurring_transactions are reloaded
whole every sync, then reconciled.

Deletes: a deleted record keeps its last payload and gets deleted_at_utc (when QBO deleted it);
live rows are `WHERE deleted_at_utc IS NULL`. A record re-created after its delete is live again.

Every sync is a run in `qbo report` (kind sync), one row per CDC read, window or reconciliation.

Reports: --reports ProfitAndLoss,BalanceSheet (any of `qbo reports`' names, comma-separated,
or all) refreshes those reports for the last --report-months calendar months (default 2: last
month and this month through today, UTC), after the entities, one request per month exactly as
`qbo reports NAME --start <first of the month before> --end <today>` does (same tables, same
splitting; the aged reports as of each month's end and as of today), as one report run (kind
report in `qbo report`, a window per report and month). Each reloaded month replaces the one
stored before, and a month still open is replaced as it grows. A report window that fails is
printed with how to retry it (`qbo reports NAMES --retry-failed --run ID`) and makes the exit
code 1.

Exchange rates: for a multi-currency company (its loaded Preferences say
CurrencyPrefs.MultiCurrencyEnabled) each sync ends with an exchange_rates step (a sync run of
its own): one ExchangeRate query per day that a live loaded foreign-currency transaction is
dated on and that was never asked (ops.exchange_rate_days), into raw.qb_exchange_rates. A sync
with nothing on a new day asks nothing; a single-currency company is never asked. A day that
fails makes the exit code 1 and is asked again by the next sync.

Exit codes: 0 every entity synced (with --enqueue: every request recorded), 1 some failed
(their watermark did not move; run sync again), 2 bad usage or configuration (e.g. a first
sync without --since), 3 the refresh token was rejected (run `qbo auth login`; with
--all-companies: a company needs one, or was skipped as needs_reauth), 130 interrupted.";

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// What to sync: entities (invoices customers ...; see `qbo entities`) or all (the default).
    #[arg(value_parser = parse_selection)]
    pub entities: Vec<Selection>,
    /// Where a first sync starts (YYYY-MM-DD, UTC): required while an entity has no
    /// watermark. With a watermark, an earlier date re-reads from that day; a later one has
    /// no effect (a warning says so: the sync never skips changes past the watermark). A day
    /// in the future is refused.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<NaiveDate>,
    /// Read from the watermark minus this much (s, m, h or d), to catch late commits.
    #[arg(long, default_value = "10m", value_parser = watermark::parse_lookback)]
    pub lookback: chrono::Duration,
    /// Entities per CDC call (QBO takes a list); a call at the 1000-object cap is split.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub cdc_batch: u16,
    /// Days per window when reading windows (first sync, past CDC's horizon, no CDC).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub chunk_days: i64,
    /// Windows loaded at once on the window path.
    #[arg(long, default_value_t = crate::backfill::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// Reports to refresh after the entities (comma-separated names of `qbo reports`, or all).
    #[arg(long, value_delimiter = ',', value_parser = super::reports_cmd::parse_reports)]
    pub reports: Vec<super::reports_cmd::Selection>,
    /// How many recent calendar months of --reports to refresh (this one counts).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=24))]
    pub report_months: u32,
    /// The accounting basis of --reports (for the reports that take one).
    #[arg(long, value_enum, default_value = "accrual")]
    pub report_accounting_method: crate::reports::Method,
    /// Queue the sync for the `qbo worker`s and return at once, printing the request ids:
    /// needs --realm-id R (or QBO_REALM_ID) or --all-companies, and no QBO credentials here.
    /// While a request for the same company and entities is still queued, its id is printed
    /// and nothing is added. A queued sync refreshes no --reports.
    #[arg(long, conflicts_with = "reports")]
    pub enqueue: bool,
    /// Every active company of `qbo companies` instead of QBO_REALM_ID's: one after another
    /// in this process (the summary lines of each under a heading), or with --enqueue one
    /// request each for the workers. Paused and needs_reauth companies are skipped with a
    /// line on stderr (exit 3 if one needs a login).
    #[arg(long)]
    pub all_companies: bool,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

/// `--since`: a date, not after today (UTC). A future day would load nothing and, on a first
/// sync, leave a watermark that hides every change made before it.
fn parse_since(s: &str) -> Result<NaiveDate, String> {
    let day = parse_date_arg(s)?;
    let today = chrono::Utc::now().date_naive();
    if day > today {
        return Err(format!(
            "{day} is in the future (today is {today}, UTC); give a day on or before today"
        ));
    }
    Ok(day)
}

impl SyncArgs {
    /// The selected entities, each once, in registry order.
    pub(super) fn entities(&self) -> Vec<&'static Entity> {
        let all = self.entities.is_empty() || self.entities.contains(&Selection::All);
        crate::entities::ENTITIES
            .iter()
            .filter(|e| all || self.entities.contains(&Selection::One(e)))
            .collect()
    }

    fn options(&self) -> Options {
        Options {
            lookback: self.lookback,
            since: self.since,
            backfill: backfill::Options {
                chunking: backfill::Chunking::Days(self.chunk_days),
                concurrency: self.concurrency,
                lease: self.requests.lease(),
                ..backfill::Options::default()
            },
            cdc_batch: self.cdc_batch as usize,
        }
    }
}

pub async fn run(args: SyncArgs) -> Result<Outcome, CliError> {
    if args.enqueue {
        return super::sync_fleet::enqueue(&args).await;
    }
    if args.all_companies {
        return super::sync_fleet::each_company(&args).await;
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let db = connect(&args.db).await?;
    let tokens = super::auth_cmd::open_token_store(&settings, &db).await?;
    sync_company(&args, &settings, tokens, &db, interrupt()).await
}

/// Cancels the returned token on Ctrl-C or SIGTERM, saying what that means for a sync.
pub(super) fn interrupt() -> tokio_util::sync::CancellationToken {
    on_interrupt(
        "interrupted: stopping; the watermark stays at the last commit, so the next sync reads the rest",
    )
}

/// One company's sync in this process, its summary lines on stdout.
pub(super) async fn sync_company(
    args: &SyncArgs,
    settings: &crate::config::QboSettings,
    tokens: std::sync::Arc<dyn crate::auth::TokenStore>,
    db: &crate::store::PgStore,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<Outcome, CliError> {
    let client = build_client(
        settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        db,
        cancel.clone(),
    )
    .await?;
    let engine = Syncer::new(client.clone(), db.clone(), cancel.clone());
    let result = engine.run(&args.entities(), &args.options()).await;
    let summaries = match result {
        Ok(s) => s,
        Err(e) => {
            client.finish().await;
            return Err(classify(e));
        }
    };
    for s in &summaries {
        outln!("{}", summary_line(s));
    }
    let mut outcome = outcome_of(&summaries);
    if outcome != Outcome::Interrupted {
        let reports = refresh_reports(args, &settings.realm_id, &client, db, cancel).await;
        match reports {
            Ok(true) => {}
            Ok(false) => outcome = Outcome::SomeFailed,
            Err(e) => {
                client.finish().await;
                return Err(e);
            }
        }
    }
    client.finish().await;
    Ok(outcome)
}

/// Loads --reports over the last --report-months months. Ok(false) when a report failed (it
/// is printed; the others still load); Err for what ends the command (a rejected refresh
/// token, an interrupt).
async fn refresh_reports(
    args: &SyncArgs,
    realm_id: &str,
    client: &std::sync::Arc<crate::client::QboClient>,
    db: &crate::store::PgStore,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<bool, CliError> {
    let mut names: Vec<crate::reports::ReportName> = args
        .reports
        .iter()
        .flat_map(|s| s.0.iter().copied())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(true);
    }
    let (start, end) = crate::reports::recent(chrono::Utc::now().date_naive(), args.report_months);
    // One report run (kind report) of every --reports name over the recent months: its
    // windows are leased, stored with their run id, and continued with `qbo reports ..
    // --resume --run ID` like any report run.
    let loader = crate::reports::pull::Loader {
        client: client.as_ref(),
        store: db,
        realm_id,
        lease: args.requests.lease(),
        cancel,
    };
    let plan = crate::reports::pull::Plan {
        names: names.clone(),
        start,
        end,
        method: args.report_accounting_method,
        period: crate::reports::Period::Month,
    };
    let loaded = loader
        .run(&names, crate::reports::pull::Mode::New(plan))
        .await
        .map_err(super::reports_cmd::classify)?;
    match super::reports_cmd::print_loaded(&loaded, &format!(" ({start}..{end})")) {
        Outcome::Success => Ok(true),
        Outcome::Interrupted => Err(CliError {
            outcome: Outcome::Interrupted,
            error: anyhow::anyhow!("interrupted by Ctrl-C or SIGTERM"),
        }),
        _ => {
            tracing::error!(run_id = %loaded.run_id, failed = loaded.failed, "report refresh failed");
            Ok(false)
        }
    }
}

fn classify(e: SyncError) -> CliError {
    match e {
        SyncError::Auth(auth) if auth.needs_human() => CliError::from_auth(auth),
        e @ SyncError::NeedsSince { .. } => CliError::usage(e),
        e @ SyncError::Interrupted => CliError {
            outcome: Outcome::Interrupted,
            error: e.into(),
        },
        e => CliError::failed(e),
    }
}

fn outcome_of(summaries: &[SyncSummary]) -> Outcome {
    if summaries.iter().any(|s| s.interrupted) {
        Outcome::Interrupted
    } else if summaries
        .iter()
        .any(|s| s.failed_steps > 0 || s.status != RunStatus::Success)
    {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    }
}

pub fn summary_line(s: &SyncSummary) -> String {
    if s.entity == crate::entities::EXCHANGE_RATES.0 {
        return rates_line(s);
    }
    let watermark = s
        .watermark
        .map(|w| w.to_rfc3339())
        .unwrap_or_else(|| "none".into());
    let mut line = format!(
        "{}: sync run {} {} via {} from {} - {} rows ({} inserted, {} updated, {} skipped), {} deleted, {} requests, {} retries; watermark {}",
        s.entity, s.run_id, s.status, s.via, s.from.to_rfc3339(), s.rows, s.inserted, s.updated, s.skipped, s.deleted, s.requests, s.retries, watermark
    );
    if s.failed_steps > 0 || s.status != RunStatus::Success {
        line.push_str(&format!(
            "\n  the watermark did not move past what failed; see `qbo report {} --run {}` and run `qbo sync {}` again",
            s.entity, s.run_id, s.entity
        ));
    }
    line
}

/// The exchange rates step of a multi-currency company's sync.
fn rates_line(s: &SyncSummary) -> String {
    let mut line = format!(
        "{}: sync run {} {} - {} days loaded ({} rates) from {}, {} requests, {} retries",
        s.entity,
        s.run_id,
        s.status,
        s.pages,
        s.rows,
        s.from.date_naive(),
        s.requests,
        s.retries
    );
    if s.failed_steps > 0 || s.status != RunStatus::Success {
        line.push_str(&format!(
            "\n  some days were not loaded; see `qbo report --run {}`; the next sync asks for them again",
            s.run_id
        ));
    }
    line
}
