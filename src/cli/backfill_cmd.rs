//! `qbo backfill`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::backfill_all::{self, Step};
use super::progress::{Display, Reporter};
use super::run_ref::RunRef;
use super::{parse_date_arg, parse_selection, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::auth::{TokenManager, TokenStore};
use crate::backfill::{Backfill, BackfillError, Chunking, Mode, Options, RunSummary};
use crate::chunks::{DateRange, WindowField};
use crate::client::QboClient;
use crate::config::{QboSettings, RateLimits, RetryPolicy};
use crate::cost::Cost;
use crate::entities::Selection;
use crate::queue::{QueueError, RunStatus};
use crate::store::throttle::SharedBudget;
use crate::store::{PgStore, StoreError};

pub const AFTER_HELP: &str = "\
Examples:
  qbo backfill invoices --start 2024-01-01 --end 2024-12-31
  qbo backfill all --start 2024-01-01 --end 2024-03-31 --chunk-days 1 --concurrency 4
  qbo backfill invoices --resume                # after a crash or Ctrl-C
  qbo backfill all --resume                     # the whole of the latest `backfill all`
  qbo backfill invoices --retry-failed          # only the chunks whose status is error

Windows are half-open UTC intervals covering [start, end + 1 day); --end is inclusive.
By default they are planned by count: the range is one window that is split in time, by
QBO's COUNT(*)s, until each holds at most --window-pages pages (an empty entity costs one
request). --chunk-days N cuts calendar windows instead. Name lists (customers, items, accounts, ...) include inactive records.
Entities QBO cannot filter by LastUpdatedTime (company_info, preferences,
recurring_transactions) are loaded whole, in one chunk that stands for the range.
`qbo entities` lists every entity with its table and windowing.

With `all`, --entities-at-once entities load at the same time under the company's one budget;
once all are done, stdout has one summary line per entity in `qbo entities` order and a total.
Each line shows the requests used beside the minimum for the records loaded,
max(1, ceil(records / 1000)) per entity: `requests 57 (minimum 38, 1.5x)`.

Exit codes: 0 all chunks succeeded, 1 some chunks failed, 2 bad usage or configuration,
3 the refresh token was rejected (run `qbo auth login`), 130 interrupted (use --resume).";

/// Entities of `all` loaded at once unless told otherwise (see `--entities-at-once`).
pub const DEFAULT_ENTITIES_AT_ONCE: u32 = 8;

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// What to load: an entity (invoices, customers, journal_entries, ...; see `qbo entities`),
    /// or all.
    #[arg(value_parser = parse_selection)]
    pub entity: Selection,
    /// First day of the range (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_date_arg, requires = "end", conflicts_with_all = ["resume", "retry_failed"])]
    pub start: Option<NaiveDate>,
    /// Last day of the range, inclusive (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = parse_date_arg, requires = "start")]
    pub end: Option<NaiveDate>,
    /// Calendar windows of this many days instead of windows planned by count. Each window is
    /// one row of the report. Without it, qbo asks QBO how many records the range holds and
    /// cuts windows by size (see --window-pages).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub chunk_days: Option<i64>,
    /// Without --chunk-days: the most pages (of --page-size records) a window may hold. An
    /// empty range is one window costing one request; a dense one is split in time until
    /// every window fits.
    #[arg(long, default_value_t = crate::backfill::DEFAULT_WINDOW_PAGES, conflicts_with = "chunk_days", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub window_pages: u32,
    /// Records per request; QBO serves at most 1000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Windows loaded at once. QBO's limits hold whatever this says: 500 requests a minute
    /// per company (shared with the company's other qbo processes) and 10 in flight per
    /// process; a 429 pauses every worker.
    #[arg(long, default_value_t = crate::backfill::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// With `all`: entities loaded at once, each with its own --concurrency windows, all
    /// under the company's one budget (500 requests a minute, 10 in flight). Most entities
    /// of a company are small (a request or two, one after another), so one at a time
    /// leaves QBO's ten seats mostly idle; eight keep them busy while a big entity still gets
    /// its share. 1 loads them one after another, in the order `qbo entities` lists them.
    #[arg(long, default_value_t = DEFAULT_ENTITIES_AT_ONCE, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub entities_at_once: u32,
    /// Timestamp the windows filter on. txn-date only applies to transactions (invoices,
    /// bills, payments, journal_entries, ...: see `qbo entities`).
    #[arg(long, value_enum, default_value = "last-updated")]
    pub window_field: WindowField,
    /// Continue the latest run of this entity and company: windows already `success` are not
    /// fetched again. With `all`: every entity of the latest `backfill all` (those it never
    /// reached start fresh over its range and options).
    #[arg(long, conflicts_with = "retry_failed")]
    pub resume: bool,
    /// Re-run only the windows whose status is `error` (of the latest run, or of --run).
    #[arg(long)]
    pub retry_failed: bool,
    /// The run to retry: its id from `qbo report`, or the start of it (at least 4 hex digits).
    #[arg(long, requires = "retry_failed", conflicts_with = "resume")]
    pub run: Option<RunRef>,
    #[command(flatten)]
    pub requests: RequestArgs,
    /// Seconds between `progress` log lines when stderr is not a terminal (or the logs are
    /// JSON); on a terminal a progress bar is drawn instead. 0 turns both off.
    #[arg(long, env = "QBO_PROGRESS_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub progress_secs: u64,
    /// Turns off qbo's own requests-per-minute budget. Only for servers without QBO's limit
    /// (the local sandbox, as `qbo-bench` uses it); against QBO it only earns 429s.
    #[arg(long, hide = true)]
    pub no_rate_limit: bool,
    /// Plan the runs for `qbo worker`s and return at once, printing their ids: no QBO
    /// credentials needed here (the workers have them). Needs --start and --end.
    #[arg(long, conflicts_with_all = ["resume", "retry_failed"])]
    pub enqueue: bool,
    /// Every active company of `qbo companies` instead of QBO_REALM_ID's: one after another
    /// in this process (a summary per company), or with --enqueue planned for the workers.
    /// Paused and needs_reauth companies are skipped with a line on stderr.
    #[arg(long, conflicts_with = "run")]
    pub all_companies: bool,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

impl BackfillArgs {
    pub(super) fn mode(&self) -> Result<Mode, CliError> {
        if self.resume {
            return Ok(Mode::Resume(None));
        }
        if self.retry_failed {
            if self.run.is_some() && self.entity == Selection::All {
                return Err(CliError::usage(anyhow::anyhow!(
                    "--run names one run of one entity; give that entity instead of `all`"
                )));
            }
            // A prefix is looked up once the database is open (see `run`).
            let id = match &self.run {
                Some(RunRef::Id(id)) => Some(*id),
                _ => None,
            };
            return Ok(Mode::RetryFailed(id));
        }
        match (self.start, self.end) {
            (Some(start), Some(end)) => Ok(Mode::New(DateRange::new(start, end).map_err(CliError::usage)?)),
            _ => Err(CliError::usage(anyhow::anyhow!(
                "say what to load: --start YYYY-MM-DD --end YYYY-MM-DD for a new run, --resume to continue the latest one, or --retry-failed"
            ))),
        }
    }

    pub(super) fn options(&self) -> Options {
        Options {
            chunking: match self.chunk_days {
                Some(days) => Chunking::Days(days),
                None => Chunking::ByCount {
                    window_pages: self.window_pages,
                },
            },
            page_size: self.page_size,
            concurrency: self.concurrency,
            window_field: self.window_field,
            lease: self.requests.lease(),
            ..Options::default()
        }
    }
}

pub async fn connect(db: &DbArgs) -> Result<PgStore, CliError> {
    PgStore::connect_and_migrate(&db.secret())
        .await
        .map_err(|e| match e {
            StoreError::BadUrl(_) | StoreError::Unreachable { .. } => CliError::usage(
                anyhow::Error::new(e).context("check DATABASE_URL and that Postgres is running"),
            ),
            other => CliError::failed(other),
        })
}

pub async fn run(args: BackfillArgs) -> Result<Outcome, CliError> {
    // Everything the user typed is checked before anything is written anywhere.
    let mode = args.mode()?;
    if args.window_field == WindowField::TxnDate {
        if let Some(e) = args
            .entity
            .entities()
            .into_iter()
            .find(|e| !e.has_txn_date())
        {
            return Err(CliError::usage(BackfillError::NoTxnDate(e.cli_name)));
        }
    }
    if args.enqueue {
        return super::enqueue_cmd::backfill(&args, mode).await;
    }
    if args.all_companies {
        return super::enqueue_cmd::backfill_each_company(&args, mode).await;
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let db = connect(&args.db).await?;
    let store = super::auth_cmd::open_token_store(&settings, &db).await?;
    run_company(&args, &settings, store, &db, mode, interrupt_on_ctrl_c()).await
}

/// The backfill of one company, in this process.
pub(super) async fn run_company(
    args: &BackfillArgs,
    settings: &QboSettings,
    tokens: Arc<dyn TokenStore>,
    db: &PgStore,
    mode: Mode,
    cancel: CancellationToken,
) -> Result<Outcome, CliError> {
    let mode = match (mode, &args.run) {
        (Mode::RetryFailed(_), Some(run)) => Mode::RetryFailed(Some(run.resolve(db).await?)),
        (mode, _) => mode,
    };
    let mut limits = args.requests.rate_limits();
    if args.no_rate_limit {
        limits.requests_per_minute = u32::MAX;
    }
    let summaries = run_backfill(
        settings,
        tokens,
        db.clone(),
        Job {
            selection: args.entity,
            mode,
            options: args.options(),
            retry: args.requests.retry_policy(),
            limits,
            progress_every: Duration::from_secs(args.progress_secs),
            entities_at_once: args.entities_at_once as usize,
        },
        cancel,
    )
    .await?;
    Ok(summaries.outcome())
}

/// What to run, independent of where the settings came from.
pub struct Job {
    pub selection: Selection,
    pub mode: Mode,
    pub options: Options,
    pub retry: RetryPolicy,
    pub limits: RateLimits,
    /// Interval of the periodic progress lines (zero: none; a bar on a terminal).
    pub progress_every: Duration,
    /// Entities of `all` run at once (each with `options.concurrency` windows at once).
    pub entities_at_once: usize,
}

/// What a backfill of one entity or `all` did.
#[derive(Debug, Default)]
pub struct Backfilled {
    /// In the order the entities were asked for (registry order for `all`).
    pub summaries: Vec<RunSummary>,
    /// Entities asked for that this invocation left unloaded (see `backfill_all::Step::Skip`).
    pub unfinished: usize,
    /// Ctrl-C or SIGTERM came: what was not done is owed to a `--resume`.
    pub interrupted: bool,
    /// Wall time of the whole invocation.
    pub duration_secs: f64,
}

impl Backfilled {
    /// What a run cost: its windows' requests and its own, beside the minimum for its records.
    pub fn cost_of(&self, s: &RunSummary) -> Cost {
        Cost::of_run(
            u64::try_from(s.requests).unwrap_or(0),
            u64::try_from(s.rows).unwrap_or(0),
        )
    }

    /// Of every run: the sum of their requests and of their minimums.
    pub fn total_cost(&self) -> Cost {
        self.summaries.iter().map(|s| self.cost_of(s)).sum()
    }

    pub fn outcome(&self) -> Outcome {
        match outcome_of(&self.summaries) {
            _ if self.interrupted => Outcome::Interrupted,
            Outcome::Success if self.unfinished > 0 => Outcome::SomeFailed,
            o => o,
        }
    }
}

/// The part `qbo demo` shares: build the client and run every selected entity.
pub async fn run_backfill(
    settings: &QboSettings,
    tokens: Arc<dyn TokenStore>,
    db: PgStore,
    job: Job,
    cancel: CancellationToken,
) -> Result<Backfilled, CliError> {
    let client = build_client(
        settings,
        tokens,
        job.retry.clone(),
        &job.limits,
        &db,
        cancel.clone(),
    )
    .await?;
    let steps = backfill_all::plan(&db, &settings.realm_id, &job).await?;
    let engine = Backfill::new(client.clone(), db.clone(), cancel.clone());
    let done = run_steps(&engine, steps, &job, &cancel).await;
    client.finish().await;
    done
}

/// Runs the steps' entities, up to `job.entities_at_once` at a time, all on `engine` (one
/// client, so one per-company budget). Each entity's summary line is printed once every
/// entity is done, in the steps' (registry) order, followed by the total for `all`.
async fn run_steps(
    engine: &Arc<Backfill<QboClient>>,
    steps: Vec<Step>,
    job: &Job,
    cancel: &CancellationToken,
) -> Result<Backfilled, CliError> {
    let progress = engine.progress();
    progress.plan_entities(
        steps
            .iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .count(),
    );
    let started = std::time::Instant::now();
    let reporter = Reporter::spawn(progress, Display::choose(job.progress_every));
    let ran = run_at_once(engine, steps, job, cancel).await;
    reporter.finish().await;
    let mut done = Backfilled {
        // Entities not started when it came are owed too, not only those it stopped.
        interrupted: cancel.is_cancelled(),
        duration_secs: started.elapsed().as_secs_f64(),
        ..Backfilled::default()
    };
    let mut first_error = None;
    for (_, outcome) in ran.slots {
        match outcome {
            Slot::Line(line) => outln!("{line}"),
            Slot::Skipped { line, unfinished } => {
                outln!("{line}");
                done.unfinished += usize::from(unfinished);
            }
            Slot::Ran(summary) => done.summaries.push(summary),
            Slot::Failed(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    for s in &done.summaries {
        outln!("{}", summary_line(s, done.cost_of(s)));
    }
    if job.selection == Selection::All && done.summaries.len() > 1 {
        outln!("{}", total_line(&done));
    }
    match ran.error.or(first_error) {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// What became of one step, kept until every entity is done so that they print in order.
enum Slot {
    /// Printed as is (an entity `all --resume` had nothing to continue for).
    Line(String),
    Skipped {
        line: String,
        unfinished: bool,
    },
    Ran(RunSummary),
    Failed(CliError),
}

struct Ran {
    /// By step index.
    slots: std::collections::BTreeMap<usize, Slot>,
    /// A failure of the machinery itself (a panicked entity task).
    error: Option<CliError>,
}

/// Starts each step's run while fewer than `entities_at_once` are running; stops starting
/// new ones on Ctrl-C or once one has failed for good (and then stops the others too, so
/// they hand their windows back for `--resume`).
async fn run_at_once(
    engine: &Arc<Backfill<QboClient>>,
    steps: Vec<Step>,
    job: &Job,
    cancel: &CancellationToken,
) -> Ran {
    let at_once = job.entities_at_once.max(1);
    let mut ran = Ran {
        slots: Default::default(),
        error: None,
    };
    let mut running = tokio::task::JoinSet::new();
    let mut failed = false;
    for (i, step) in steps.into_iter().enumerate() {
        while running.len() >= at_once {
            failed |= collect(&mut ran, running.join_next().await, job, cancel);
        }
        if cancel.is_cancelled() || failed {
            break;
        }
        match step {
            Step::Skip { line, unfinished } => {
                ran.slots.insert(i, Slot::Skipped { line, unfinished });
            }
            Step::Run {
                entity,
                mode,
                options,
                note,
            } => {
                if let Some(note) = note {
                    outln!("{note}");
                }
                let engine = engine.clone();
                running.spawn(async move { (i, entity, engine.run(entity, mode, options).await) });
            }
        }
    }
    while let Some(joined) = running.join_next().await {
        collect(&mut ran, Some(joined), job, cancel);
    }
    ran
}

type Joined = Result<
    (
        usize,
        &'static crate::entities::Entity,
        Result<RunSummary, BackfillError>,
    ),
    tokio::task::JoinError,
>;

/// Files one finished entity run; true when it failed in a way that ends the command.
fn collect(ran: &mut Ran, joined: Option<Joined>, job: &Job, cancel: &CancellationToken) -> bool {
    let Some(joined) = joined else { return false };
    let (i, entity, outcome) = match joined {
        Ok(done) => done,
        Err(join) => {
            cancel.cancel();
            ran.error.get_or_insert(CliError::failed(anyhow::anyhow!(
                "an entity's run stopped unexpectedly, which is a bug in qbo (please report it): {join}"
            )));
            return true;
        }
    };
    tracing::debug!(
        entity = entity.cli_name,
        ok = outcome.is_ok(),
        "entity run ended"
    );
    let slot = match outcome {
        Ok(summary) => Slot::Ran(summary),
        // `all --resume` continues what exists; an entity never backfilled is not an error.
        Err(BackfillError::NothingToResume { .. }) if job.selection == Selection::All => {
            Slot::Line(format!(
                "{}: no earlier run to continue; skipped",
                entity.cli_name
            ))
        }
        // A run someone cancelled stays cancelled; the other entities go on.
        Err(BackfillError::RunCancelled { run_id, .. }) if job.selection == Selection::All => {
            Slot::Line(format!(
                "{}: run {run_id} was cancelled; skipped (start a new run with --start and --end)",
                entity.cli_name
            ))
        }
        Err(e) => {
            // The command fails: the other entities stop and hand their windows back.
            cancel.cancel();
            Slot::Failed(failure(e, entity.cli_name, job))
        }
    };
    let failed = matches!(slot, Slot::Failed(_));
    ran.slots.insert(i, slot);
    failed
}

/// The error the command ends with when an entity's run fails for good.
fn failure(e: BackfillError, entity: &str, job: &Job) -> CliError {
    match e {
        // Postgres stayed away longer than the engine waits: say how to pick up again. A
        // queue write (settling a paged window, a claimed window's outcome) that met the
        // outage is the same case.
        e @ (BackfillError::Store(_) | BackfillError::Queue(QueueError::Store(_))) => {
            let what = match job.selection {
                Selection::All => "all",
                Selection::One(_) => entity,
            };
            CliError::failed(anyhow::Error::new(e).context(format!(
                "the run stopped; once Postgres is reachable, continue with: qbo backfill {what} --resume"
            )))
        }
        e => classify(e),
    }
}

/// The QBO client every command that talks to QBO uses: tokens, retries, rate limits (the
/// company's, shared with its other qbo processes through `db`), and `cancel` to end every
/// retry and wait at once.
pub async fn build_client(
    settings: &QboSettings,
    tokens: Arc<dyn TokenStore>,
    retry: RetryPolicy,
    limits: &RateLimits,
    db: &PgStore,
    cancel: CancellationToken,
) -> Result<Arc<QboClient>, CliError> {
    let manager = Arc::new(TokenManager::new(settings, tokens).map_err(CliError::usage)?);
    let client = QboClient::new(settings, manager, retry, limits, cancel)
        .context("building the HTTP client")
        .map_err(CliError::usage)?;
    let budget = SharedBudget::new(db.pool().clone(), &settings.realm_id);
    Ok(Arc::new(client.share_budget(budget).await))
}

fn classify(e: BackfillError) -> CliError {
    match e {
        BackfillError::Auth(auth) if auth.needs_human() => CliError::from_auth(auth),
        e @ (BackfillError::NothingToResume { .. }
        | BackfillError::RunNotFound(_)
        | BackfillError::RunCancelled { .. }
        | BackfillError::WrongRun { .. }
        | BackfillError::NoTxnDate(_)
        | BackfillError::Plan(_)) => CliError::usage(e),
        e => CliError::failed(e),
    }
}

pub fn outcome_of(summaries: &[RunSummary]) -> Outcome {
    if summaries.iter().any(|s| s.interrupted) {
        Outcome::Interrupted
    } else if summaries
        .iter()
        .any(|s| s.failed > 0 || s.pending > 0 || s.status == RunStatus::Cancelled)
    {
        Outcome::SomeFailed
    } else {
        Outcome::Success
    }
}

pub fn summary_line(s: &RunSummary, cost: Cost) -> String {
    let mut line = format!(
        "{}: run {} {} - {} chunks ({} success, {} error, {} not done), {} rows ({} inserted, {} updated, {} skipped), {cost}, {} retries, {:.1} s, {:.0} rows/s",
        s.entity, s.run_id, s.status, s.chunks, s.succeeded, s.failed, s.pending, s.rows, s.inserted, s.updated, s.skipped, s.retries, s.duration_secs, s.rows_per_sec()
    );
    if s.cancelled > 0 {
        line = line.replacen(
            " not done)",
            &format!(" not done, {} cancelled)", s.cancelled),
            1,
        );
    }
    if s.failed > 0 {
        line.push_str(&format!(
            "\n  re-run the failed chunks with: qbo backfill {} --retry-failed --run {}",
            s.entity, s.run_id
        ));
    }
    if s.status == RunStatus::Cancelled {
        line.push_str(&format!(
            "\n  the run was cancelled: its unfinished windows are not loaded; start a new run with: qbo backfill {} --start .. --end ..",
            s.entity
        ));
    } else if s.interrupted || s.pending > 0 {
        line.push_str(&format!(
            "\n  continue with: qbo backfill {} --resume",
            s.entity
        ));
    }
    line
}

/// `total: 36 entities, 4815 rows (..), requests 57 (minimum 38, 1.5x), 0 retries, 12.3 s`:
/// every entity of `all` together; the time is the invocation's, as the entities overlap.
fn total_line(done: &Backfilled) -> String {
    let sum = |f: fn(&RunSummary) -> i64| done.summaries.iter().map(f).sum::<i64>();
    format!(
        "total: {} entities, {} rows ({} inserted, {} updated, {} skipped), {}, {} retries, {:.1} s",
        done.summaries.len(),
        sum(|s| s.rows),
        sum(|s| s.inserted),
        sum(|s| s.updated),
        sum(|s| s.skipped),
        done.total_cost(),
        sum(|s| s.retries),
        done.duration_secs,
    )
}

/// First Ctrl-C (or SIGTERM): stop claiming windows, hand the current ones back, exit 130.
pub fn interrupt_on_ctrl_c() -> CancellationToken {
    on_interrupt("interrupted: handing the current windows back; resume with --resume")
}

/// Cancels the returned token on the first Ctrl-C or SIGTERM, logging `message`.
pub fn on_interrupt(message: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::warn!("{message}");
        t.cancel();
    });
    token
}
