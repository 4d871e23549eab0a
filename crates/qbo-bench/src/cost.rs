//! Section (5), API cost (issue 9): what a backfill spends of QBO's request budget, and how
//! close its wall time comes to the shortest schedule QBO's limits allow, against two
//! baselines (the seed's method and a cursor loader), on two companies: a small one over ten
//! years (`backfill all`) and a large invoice history over two years (`backfill invoices`).
//!
//! The sandbox enforces QBO's real limits (500 calls per window, 10 in flight, 40 batch calls
//! per window, 100 ms per request), all `--api-time-scale` times faster, so the slow baselines
//! finish; requests and the ratios do not depend on the scale.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{Connection, PgConnection};

use super::child::{run_measured, run_measured_within};
use super::cursor::{self, CursorSpec};
use super::plan::{child_cmd, Api, Bench};
use super::print::{minimum_wall_in, Targets};
use super::seed::SeedSpec;
use super::{BenchError, CostContender};
use qbo_core::entities::{Entity, ENTITIES};
use qbo_sandbox::{Faults, Sandbox, SandboxConfig, SandboxError, Stats};

/// QBO's per-company limits (Intuit's documentation) and its latency as the bench assumes it.
const PER_WINDOW: u32 = 500;
const BATCH_PER_WINDOW: u32 = 40;
const IN_FLIGHT: u32 = 10;
const QBO_WINDOW_SECS: u64 = 60;
const QBO_LATENCY_MS: u64 = 100;
/// Records per page at most, so the fewest requests that can read `n` records of an entity
/// are max(1, ceil(n / 1000)).
const MAX_PAGE: u64 = qbo_core::query::MAX_PAGE_SIZE as u64;

/// The small company (1): about 5,000 records over all 36 entities, most small or empty, as
/// in real companies. Every entity not named here holds none.
const SMALL_COMPANY: &[(&str, usize)] = &[
    ("Invoice", 1800),
    ("Payment", 1100),
    ("Customer", 250),
    ("Item", 60),
    ("Account", 90),
    ("Vendor", 60),
    ("Bill", 450),
    ("BillPayment", 350),
    ("Purchase", 400),
    ("Deposit", 120),
    ("JournalEntry", 40),
    ("SalesReceipt", 60),
    ("CreditMemo", 15),
    ("Estimate", 30),
    ("Employee", 6),
    ("Term", 6),
    ("PaymentMethod", 7),
    ("TaxCode", 6),
    ("TaxRate", 3),
    ("TaxAgency", 1),
    ("Transfer", 12),
    ("Attachable", 20),
    ("CompanyInfo", 1),
    ("Preferences", 1),
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

/// QBO's limits run `scale` times faster.
#[derive(Debug, Clone, Copy)]
struct Limits {
    scale: u32,
    window: Duration,
    latency: Duration,
}

impl Limits {
    fn new(scale: u32) -> Limits {
        let scale = scale.max(1);
        Limits {
            scale,
            window: Duration::from_secs(QBO_WINDOW_SECS / u64::from(scale)),
            // Rounded to the sandbox's whole milliseconds; the bound uses the same value.
            latency: Duration::from_millis(
                (QBO_LATENCY_MS + u64::from(scale) / 2) / u64::from(scale),
            ),
        }
    }

    fn faults(&self) -> Faults {
        Faults {
            latency_ms: self.latency.as_millis() as u64,
            max_requests_per_minute: PER_WINDOW,
            rate_window_secs: self.window.as_secs(),
            max_concurrent: IN_FLIGHT,
            ..Faults::default()
        }
    }

    /// A measured duration in QBO time.
    fn qbo(&self, d: Duration) -> Duration {
        d * self.scale
    }

    /// The shortest schedule the limits allow for `usage`'s calls, whatever their order or
    /// the dependencies between them: every HTTP call (a batch call is one) counts against
    /// the 500 per window and the 10 in flight, each takes one latency; batch calls also
    /// against the 40 per window. Each limit alone gives the earliest schedule in which
    /// every call starts as soon as that limit allows (`minimum_wall_in`); the real schedule
    /// obeys both, so it is no shorter than either: the bound is the larger.
    fn lower_bound(&self, usage: &Usage) -> Duration {
        let calls = minimum_wall_in(
            usage.calls(),
            PER_WINDOW,
            self.window,
            IN_FLIGHT,
            self.latency,
        );
        let batches = minimum_wall_in(
            usage.batch_calls,
            BATCH_PER_WINDOW,
            self.window,
            IN_FLIGHT,
            self.latency,
        );
        calls.max(batches)
    }
}

/// What one contender asked of the sandbox, from its `Stats` before and after.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// Query endpoint requests, COUNTs included.
    queries: u64,
    counts: u64,
    cdc: u64,
    reads: u64,
    batch_calls: u64,
    batch_items: u64,
    throttled: u64,
    /// Changed-since sweeps' requests (whole-entity pages from a LastUpdatedTime on, with
    /// no upper bound): only qbo's mean sweeps (the cursor loader's pages look alike).
    sweeps: u64,
}

impl Usage {
    fn between(before: &Stats, after: &Stats) -> Usage {
        let since = before.request_log.last().map(|e| e.at_ms);
        Usage {
            sweeps: after
                .request_log
                .iter()
                .filter(|e| since.is_none_or(|t| e.at_ms > t) && is_sweep(e))
                .count() as u64,
            queries: after.query_requests - before.query_requests,
            counts: after.count_requests - before.count_requests,
            cdc: after.cdc_requests - before.cdc_requests,
            reads: after.read_requests - before.read_requests,
            batch_calls: after.batch_requests - before.batch_requests,
            batch_items: batch_items(after) - batch_items(before),
            throttled: after.throttled - before.throttled,
        }
    }

    /// Requests as QBO meters them: each batch item is one.
    fn requests(&self) -> u64 {
        self.queries + self.cdc + self.reads + self.batch_items
    }

    /// HTTP calls: a batch call is one, whatever it carries.
    fn calls(&self) -> u64 {
        self.queries + self.cdc + self.reads + self.batch_calls
    }
}

/// A query from a LastUpdatedTime on with no upper bound: qbo's changed-since sweep (a
/// window's query has both bounds, a COUNT is no page).
fn is_sweep(e: &qbo_sandbox::RequestLogEntry) -> bool {
    e.kind == "query"
        && e.query.as_deref().is_some_and(|q| {
            q.starts_with("SELECT * FROM ")
                && q.contains("LastUpdatedTime >=")
                && !q.contains("LastUpdatedTime <")
        })
}

fn batch_items(s: &Stats) -> u64 {
    s.batch_items
}

/// One of the two companies of the section.
struct Company {
    tag: &'static str,
    title: String,
    cfg: SandboxConfig,
    /// What the contenders load, in order.
    entities: Vec<&'static Entity>,
    /// `qbo backfill <what>`.
    qbo_entity: &'static str,
    /// The backfill range (`--end` inclusive, as qbo reads it).
    start: NaiveDate,
    end: NaiveDate,
    /// Changes made so the sandbox accepts the counts.
    adjusted: Vec<String>,
}

impl Company {
    /// (1): the small company of `SMALL_COMPANY` over ten years (one month in `--quick`, so
    /// the seed's method and a calendar-windowed qbo stay within a few hundred requests).
    fn small(quick: bool) -> Result<Company, BenchError> {
        let start = match quick {
            true => day(2025, 12, 1),
            false => day(2016, 1, 1),
        };
        let mut counts: BTreeMap<String, usize> = ENTITIES
            .iter()
            .map(|e| (e.qbo_name.to_string(), 0))
            .collect();
        counts.extend(SMALL_COMPANY.iter().map(|(n, c)| (n.to_string(), *c)));
        let count = |n: &str| counts.get(n).copied().unwrap_or(0);
        let mut cfg = SandboxConfig {
            invoices: count("Invoice"),
            customers: count("Customer"),
            items: count("Item"),
            counts,
            data_start: start,
            data_end: day(2025, 12, 31),
            ..SandboxConfig::default()
        };
        let adjusted = admit(&mut cfg)?;
        let records: usize = ENTITIES.iter().map(|e| cfg.count_of(e.qbo_name)).sum();
        let full = ENTITIES
            .iter()
            .filter(|e| cfg.count_of(e.qbo_name) > 0)
            .count();
        Ok(Company {
            tag: "(5a)",
            title: format!(
                "small company: {records} records in {} entities ({full} with records), over {}..{}, `qbo backfill all`",
                ENTITIES.len(),
                cfg.data_start,
                cfg.data_end
            ),
            entities: ENTITIES.iter().collect(),
            qbo_entity: "all",
            start,
            end: range_end(cfg.data_end),
            cfg,
            adjusted,
        })
    }

    /// (2): `invoices` invoices over two years, and of the other entities only what the
    /// invoices refer to.
    fn invoices(invoices: usize) -> Result<Company, BenchError> {
        let mut cfg = SandboxConfig {
            invoices,
            customers: (invoices / 500).clamp(10, 2_000),
            items: 50,
            data_start: day(2024, 1, 1),
            data_end: day(2025, 12, 31),
            ..SandboxConfig::default()
        };
        for e in ENTITIES.iter().filter(|e| e.qbo_name != "Invoice") {
            cfg.counts.insert(e.qbo_name.to_string(), 0);
            if cfg.validate().is_err() {
                cfg.counts.remove(e.qbo_name);
            }
        }
        let adjusted = admit(&mut cfg)?;
        let invoices_entity = qbo_core::entities::find("invoices")
            .ok_or_else(|| BenchError::Usage("no entity `invoices`".into()))?;
        Ok(Company {
            tag: "(5b)",
            title: format!(
                "{invoices} invoices over {}..{}, `qbo backfill invoices`",
                cfg.data_start, cfg.data_end
            ),
            entities: vec![invoices_entity],
            qbo_entity: "invoices",
            start: cfg.data_start,
            end: range_end(cfg.data_end),
            cfg,
            adjusted,
        })
    }

    fn expected(&self, e: &Entity) -> u64 {
        self.cfg.count_of(e.qbo_name) as u64
    }

    fn records(&self) -> u64 {
        self.entities.iter().map(|e| self.expected(e)).sum()
    }

    /// The fewest requests that can read the data: sum over entities of
    /// max(1, ceil(records / 1000)) (an empty entity still costs one question).
    fn minimum(&self) -> u64 {
        self.entities
            .iter()
            .map(|e| self.expected(e).div_ceil(MAX_PAGE).max(1))
            .sum()
    }
}

/// Records are last updated on company-local days up to `data_end`; in UTC the last of them
/// run into the next day, so the backfill range ends a day later (as in the other sections).
fn range_end(data_end: NaiveDate) -> NaiveDate {
    data_end.succ_opt().unwrap_or(data_end)
}

/// Raises what the sandbox's reference checks ask for, one entity at a time, and says so.
fn admit(cfg: &mut SandboxConfig) -> Result<Vec<String>, BenchError> {
    let mut adjusted = Vec::new();
    for _ in 0..ENTITIES.len() {
        let msg = match cfg.validate() {
            Ok(()) => return Ok(adjusted),
            Err(SandboxError::Config(msg)) => msg,
            Err(e) => return Err(e.into()),
        };
        // "... so the sandbox needs at least {min} {target} (it has {have}); ..."
        let wanted = msg
            .split_once("needs at least ")
            .and_then(|(_, rest)| {
                let mut words = rest.split_whitespace();
                Some((words.next()?.parse::<usize>().ok()?, words.next()?))
            })
            .filter(|(_, target)| qbo_core::entities::by_qbo_name(target).is_some());
        let Some((min, target)) = wanted else {
            return Err(BenchError::Usage(msg));
        };
        let was = cfg.counts.get(target).copied().unwrap_or(0);
        cfg.counts.insert(target.to_string(), min);
        adjusted.push(format!("{target} {was} -> {min}"));
    }
    Err(BenchError::Usage(
        "the sandbox refuses the company's counts".into(),
    ))
}

/// The contenders, each a process of its own (the workers two).
type Contender = CostContender;

/// `qbo worker` processes of the `workers` contender.
const COST_WORKERS: usize = 2;

impl Contender {
    fn label(self, company: &Company) -> String {
        match self {
            Contender::Qbo => format!("qbo backfill {} (defaults)", company.qbo_entity),
            Contender::Workers => format!("same, --enqueue + {COST_WORKERS} qbo worker"),
            Contender::Cursor => "cursor loader (Singer tap)".into(),
            Contender::Seed => "seed method".into(),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Contender::Qbo => "qbo",
            Contender::Workers => "workers",
            Contender::Cursor => "cursor",
            Contender::Seed => "seed",
        }
    }

    /// Where the contender keeps `entity`'s rows.
    fn table(self, entity: &Entity) -> String {
        match self {
            Contender::Qbo | Contender::Workers => entity.table.to_string(),
            Contender::Cursor => cursor::table(entity),
            Contender::Seed => entity.table.replace("raw.", "bench_seed."),
        }
    }
}

/// How one contender did.
struct Outcome {
    contender: Contender,
    usage: Usage,
    wall: Duration,
    rows: u64,
    /// Entities whose row count is not the sandbox's (name, rows, records), at most a few.
    wrong: Vec<(String, u64, u64)>,
    /// Killed at `--api-max-minutes`, unfinished: its figures are lower bounds.
    stopped: bool,
    failed: Option<String>,
}

impl Bench {
    /// (5): both companies, each with the three contenders.
    pub(super) async fn api_cost(&self, targets: &mut Targets) -> Result<(), BenchError> {
        let limits = Limits::new(self.args.api_time_scale);
        print_intro(&limits);
        let small = Company::small(self.args.quick)?;
        self.company(&small, &limits, targets, true).await?;
        let large = Company::invoices(self.args.api_invoices)?;
        self.company(&large, &limits, targets, false).await
    }

    async fn company(
        &self,
        company: &Company,
        limits: &Limits,
        targets: &mut Targets,
        under_a_minute: bool,
    ) -> Result<(), BenchError> {
        let sandbox = Sandbox::start(company.cfg.clone()).await?;
        sandbox.set_faults(limits.faults());
        outln!();
        outln!("{} {}", company.tag, company.title);
        if !company.adjusted.is_empty() {
            outln!(
                "      adjusted so the sandbox's reference checks accept the company: {}",
                company.adjusted.join(", ")
            );
        }
        let minimum = company.minimum();
        outln!(
            "      minimum {minimum} requests = sum over its {} entities of max(1, ceil(records / 1000))",
            company.entities.len()
        );
        print_table_header();
        let api = Api {
            sandbox: &sandbox,
            base_url: sandbox.api_base_url(),
        };
        let mut outcomes = Vec::new();
        for contender in [
            Contender::Qbo,
            Contender::Workers,
            Contender::Cursor,
            Contender::Seed,
        ] {
            if !self.args.api_contenders.contains(&contender) {
                continue;
            }
            let outcome = self.contend(contender, company, &api, limits).await?;
            print_row(
                &outcome,
                company,
                limits,
                minimum,
                self.args.api_max_minutes,
            );
            outcomes.push(outcome);
        }
        sandbox.shutdown().await;
        print_notes(&outcomes, limits);
        check_targets(company, &outcomes, limits, minimum, under_a_minute, targets);
        Ok(())
    }

    async fn contend(
        &self,
        contender: Contender,
        company: &Company,
        api: &Api<'_>,
        limits: &Limits,
    ) -> Result<Outcome, BenchError> {
        let label = format!("cost{}_{}", &company.tag[2..3], contender.key());
        let (db, url) = self.create_db(&label).await?;
        let log = self.work.join(format!("{label}.log"));
        if contender == Contender::Workers {
            return self.contend_workers(company, api, limits, &db, &url).await;
        }
        let cmd = match contender {
            Contender::Qbo | Contender::Workers => {
                // Users back-fill into a migrated database: the schema is not the API's cost.
                let migrate = self.qbo_cmd(api, &url, &label, &["migrate"]);
                run_measured(migrate, "qbo migrate", &log).await?;
                self.qbo_cost_cmd(company, api, &url, &label, limits, &[])
            }
            Contender::Cursor => child_cmd(
                "cursor",
                &CursorSpec {
                    api: self.scaled_api_spec(api, limits),
                    db_url: url.clone(),
                    entities: cli_names(company),
                },
            )?,
            Contender::Seed => child_cmd(
                "seed",
                &SeedSpec {
                    api: self.scaled_api_spec(api, limits),
                    db_url: url.clone(),
                    start: company.start,
                    end: company.end,
                    max_rows: u64::MAX,
                    entities: cli_names(company),
                },
            )?,
        };
        let limit = (self.args.api_max_minutes > 0)
            .then(|| Duration::from_secs(self.args.api_max_minutes * 60) / limits.scale);
        let before = api.sandbox.stats();
        let result = run_measured_within(cmd, contender.key(), &log, limit).await;
        let usage = Usage::between(&before, &api.sandbox.stats());
        let (rows, wrong) = count_loaded(&url, company, contender).await;
        self.drop_db(&db).await;
        // The next contender starts with the whole budget: this one's calls leave the window.
        tokio::time::sleep(limits.window + limits.latency).await;
        let (wall, stopped, failed) = match result {
            Ok(m) => (m.wall, m.stopped, None),
            Err(e) => (Duration::ZERO, false, Some(qbo_core::errors::chain(&e))),
        };
        Ok(Outcome {
            contender,
            usage,
            wall,
            rows,
            wrong,
            stopped,
            failed,
        })
    }

    /// The `workers` contender: the same backfill as `qbo`, enqueued (`--enqueue` asks QBO
    /// nothing) and loaded by `COST_WORKERS` `qbo worker --idle-exit` processes at once. Its
    /// requests against the in-process run's are what loading through the queue costs.
    async fn contend_workers(
        &self,
        company: &Company,
        api: &Api<'_>,
        limits: &Limits,
        db: &str,
        url: &str,
    ) -> Result<Outcome, BenchError> {
        let label = format!("cost{}_workers", &company.tag[2..3]);
        let log = |what: &str| self.work.join(format!("{label}-{what}.log"));
        let before = api.sandbox.stats();
        let started = std::time::Instant::now();
        let result = async {
            let migrate = self.qbo_cmd(api, url, &label, &["migrate"]);
            run_measured(migrate, "qbo migrate", &log("migrate")).await?;
            let enqueue = self.qbo_cost_cmd(company, api, url, &label, limits, &["--enqueue"]);
            run_measured(enqueue, "qbo backfill --enqueue", &log("enqueue")).await?;
            let mut workers = tokio::task::JoinSet::new();
            for n in 0..COST_WORKERS {
                let mut cmd = self.qbo_cmd(api, url, &label, &["worker", "--idle-exit"]);
                let scale = u64::from(limits.scale);
                cmd.env("QBO_THROTTLE_PAUSE_MS", (60_000 / scale).to_string())
                    .env("QBO_RETRY_BASE_MS", (2_000 / scale).max(1).to_string());
                let log = log(&format!("worker-{n}"));
                workers.spawn(async move { run_measured(cmd, "qbo worker", &log).await });
            }
            while let Some(joined) = workers.join_next().await {
                joined.map_err(|e| BenchError::Http(e.to_string()))??;
            }
            Ok::<_, BenchError>(())
        }
        .await;
        let wall = started.elapsed();
        let usage = Usage::between(&before, &api.sandbox.stats());
        let (rows, wrong) = count_loaded(url, company, Contender::Workers).await;
        self.drop_db(db).await;
        tokio::time::sleep(limits.window + limits.latency).await;
        Ok(Outcome {
            contender: Contender::Workers,
            usage,
            wall,
            rows,
            wrong,
            stopped: false,
            failed: result.err().map(|e| qbo_core::errors::chain(&e)),
        })
    }

    /// `qbo backfill <all|invoices> --start --end` with qbo's defaults. qbo's own knobs that
    /// are times of QBO's (the pause after a 429 without Retry-After, the first retry
    /// backoff) are scaled like the sandbox.
    fn qbo_cost_cmd(
        &self,
        company: &Company,
        api: &Api<'_>,
        url: &str,
        label: &str,
        limits: &Limits,
        extra: &[&str],
    ) -> tokio::process::Command {
        let (start, end) = (company.start.to_string(), company.end.to_string());
        let mut args = vec![
            "backfill",
            company.qbo_entity,
            "--start",
            &start,
            "--end",
            &end,
        ];
        args.extend_from_slice(extra);
        let mut cmd = self.qbo_cmd(api, url, label, &args);
        let scale = u64::from(limits.scale);
        cmd.env("QBO_THROTTLE_PAUSE_MS", (60_000 / scale).to_string())
            .env("QBO_RETRY_BASE_MS", (2_000 / scale).max(1).to_string());
        cmd
    }

    fn scaled_api_spec(&self, api: &Api<'_>, limits: &Limits) -> super::api::ApiSpec {
        super::api::ApiSpec {
            time_scale: limits.scale,
            ..self.api_spec(api)
        }
    }
}

fn cli_names(company: &Company) -> Vec<String> {
    company
        .entities
        .iter()
        .map(|e| e.cli_name.to_string())
        .collect()
}

/// Rows per entity in the contender's tables against the sandbox's records (a table that
/// does not exist holds none).
async fn count_loaded(
    url: &str,
    company: &Company,
    contender: Contender,
) -> (u64, Vec<(String, u64, u64)>) {
    let Ok(mut db) = PgConnection::connect(url).await else {
        return (0, vec![("(no database)".into(), 0, company.records())]);
    };
    let (mut total, mut wrong) = (0, Vec::new());
    for e in &company.entities {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", contender.table(e)))
            .fetch_one(&mut db)
            .await
            .unwrap_or(0);
        let (n, expected) = (n as u64, company.expected(e));
        total += n;
        if n != expected {
            wrong.push((e.cli_name.to_string(), n, expected));
        }
    }
    (total, wrong)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn print_intro(limits: &Limits) {
    outln!();
    outln!(
        "(5) API cost under QBO's limits: {PER_WINDOW} calls per {QBO_WINDOW_SECS} s window (sliding), {IN_FLIGHT} in flight, {BATCH_PER_WINDOW} batch calls per window, {QBO_LATENCY_MS} ms per request"
    );
    outln!(
        "    time-scaled x{}: the sandbox's windows are {} s and its latency {} ms; wall times are shown measured and in QBO time (x{})",
        limits.scale,
        limits.window.as_secs(),
        limits.latency.as_millis(),
        limits.scale
    );
    outln!(
        "    the ratios are scale-free: limits and latency shrink together, so requests and wall/bound are what a real-speed run gives"
    );
    outln!(
        "    (only local CPU and Postgres time does not shrink; the QBO-time column multiplies it too, so it errs on the slow side)"
    );
    outln!(
        "    requests = query + count + cdc + read requests, each batch item one (QBO meters items); batch calls shown apart"
    );
    outln!(
        "    bound = the shortest schedule the limits allow for the calls made: each call starts as soon as both allow, no sooner"
    );
    outln!(
        "    than one window after the call {PER_WINDOW} before it, nor one latency after the call {IN_FLIGHT} before it (in flight); the same"
    );
    outln!(
        "    with {BATCH_PER_WINDOW} per window for batch calls; the larger of the two, plus the last call's latency"
    );
}

fn print_table_header() {
    outln!(
        "      {:<32} {:>8} {:>7} {:>12} {:>5} {:>9} {:>10} {:>10} {:>10} {:>6}",
        "contender",
        "requests",
        "x min",
        "batch c/i",
        "429s",
        "rows",
        "wall",
        "QBO time",
        "bound QBO",
        "/bound"
    );
}

fn print_row(o: &Outcome, company: &Company, limits: &Limits, minimum: u64, max_minutes: u64) {
    let label = o.contender.label(company);
    let u = &o.usage;
    let bound = limits.lower_bound(u);
    let mut line = format!(
        "      {:<32} {:>8} {:>7.1} {:>12} {:>5} {:>9} {:>10} {:>10} {:>10} {:>6.2}",
        label,
        u.requests(),
        u.requests() as f64 / minimum.max(1) as f64,
        format!("{}/{}", u.batch_calls, u.batch_items),
        u.throttled,
        o.rows,
        secs(o.wall),
        secs(limits.qbo(o.wall)),
        secs(limits.qbo(bound)),
        o.wall.as_secs_f64() / bound.as_secs_f64().max(1e-9),
    );
    if o.stopped {
        line.push_str(&format!(
            "  STOPPED unfinished at --api-max-minutes {} (QBO time): at least this many requests",
            max_minutes
        ));
    } else if !o.wrong.is_empty() {
        let some: Vec<String> = o
            .wrong
            .iter()
            .take(4)
            .map(|(e, n, x)| format!("{e} {n}/{x}"))
            .collect();
        line.push_str(&format!(
            "  WRONG: the sandbox holds {} records ({}{})",
            company.records(),
            some.join(", "),
            if o.wrong.len() > 4 { ", ..." } else { "" }
        ));
    }
    outln!("{line}");
    if let Some(e) = &o.failed {
        for (i, line) in e.lines().take(8).enumerate() {
            outln!("        {}{line}", if i == 0 { "FAILED: " } else { "  " });
        }
    }
}

fn print_notes(outcomes: &[Outcome], limits: &Limits) {
    let split: Vec<String> = outcomes
        .iter()
        .map(|o| {
            let u = &o.usage;
            let sweeps = match o.contender {
                Contender::Qbo | Contender::Workers => format!(" ({} sweep)", u.sweeps),
                _ => String::new(),
            };
            format!(
                "{}: {} query ({} COUNT){sweeps}, {} cdc, {} read, {} batch items",
                o.contender.key(),
                u.queries,
                u.counts,
                u.cdc,
                u.reads,
                u.batch_items
            )
        })
        .collect();
    outln!("      requests by kind: {}", split.join("; "));
    // qbo's limiter counts its own window (a little over QBO's 60 s) and cannot be told a
    // scaled one: past 500 calls it waits real minutes the scaled sandbox would not ask for.
    if let Some(q) = outcomes.iter().find(|o| o.contender == Contender::Qbo) {
        let over = q.usage.calls() > u64::from(PER_WINDOW)
            || q.usage.batch_calls > u64::from(BATCH_PER_WINDOW);
        if limits.scale > 1 && over && q.wall >= Duration::from_secs(QBO_WINDOW_SECS) {
            outln!(
                "      note: qbo made more than {PER_WINDOW} calls or {BATCH_PER_WINDOW} batch calls, and its limiter keeps QBO's real window (61 s; it cannot be scaled), so its wall time here includes waits a real-speed run would not have; --api-time-scale 1 gives the exact figure"
            );
        }
    }
}

fn check_targets(
    company: &Company,
    outcomes: &[Outcome],
    limits: &Limits,
    minimum: u64,
    under_a_minute: bool,
    targets: &mut Targets,
) {
    let Some(qbo) = outcomes.iter().find(|o| o.contender == Contender::Qbo) else {
        return;
    };
    let ok = qbo.failed.is_none() && !qbo.stopped;
    let tag = company.tag;
    let requests = qbo.usage.requests();
    let ratio = requests as f64 / minimum.max(1) as f64;
    let cursor = outcomes
        .iter()
        .find(|o| o.contender == Contender::Cursor)
        .map_or("not run".into(), |o| match o.stopped {
            true => format!("at least {}, stopped", o.usage.requests()),
            false => o.usage.requests().to_string(),
        });
    targets.check(
        format!(
            "{tag} qbo requests / minimum = {ratio:.2}x ({requests} vs {minimum}; cursor loader {cursor}), target <= 1.5"
        ),
        ok && ratio <= 1.5,
    );
    if let Some(workers) = outcomes.iter().find(|o| o.contender == Contender::Workers) {
        // The queue's guarantee costs what the in-process run's does: one sweep per run,
        // whoever loads its windows.
        let w = workers.usage.requests();
        let r = w as f64 / requests.max(1) as f64;
        targets.check(
            format!(
                "{tag} qbo workers / in-process requests = {r:.3} ({w} vs {requests}; sweep requests {} vs {}), target <= 1.02",
                workers.usage.sweeps, qbo.usage.sweeps
            ),
            ok && workers.failed.is_none() && workers.wrong.is_empty() && r <= 1.02,
        );
    }
    let bound = limits.lower_bound(&qbo.usage);
    let r = qbo.wall.as_secs_f64() / bound.as_secs_f64().max(1e-9);
    targets.check(
        format!(
            "{tag} qbo wall / shortest schedule for its calls = {r:.2} ({} vs {} QBO time), target <= 1.10",
            secs(limits.qbo(qbo.wall)),
            secs(limits.qbo(bound))
        ),
        ok && r <= 1.10,
    );
    if under_a_minute {
        let wall = limits.qbo(qbo.wall);
        targets.check(
            format!("{tag} qbo wall in QBO time = {}, target < 60 s", secs(wall)),
            ok && wall < Duration::from_secs(60),
        );
    }
    targets.check(
        format!(
            "{tag} qbo loaded every record: {} rows, the sandbox holds {}",
            qbo.rows,
            company.records()
        ),
        ok && qbo.wrong.is_empty(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_company_is_the_issues_company_and_the_sandbox_accepts_it() {
        let c = Company::small(false).unwrap();
        assert!(c.cfg.validate().is_ok());
        assert_eq!(c.entities.len(), 36);
        assert_eq!(c.cfg.count_of("Invoice"), 1800);
        assert_eq!(c.cfg.count_of("Class"), 0);
        assert!((4_800..=5_100).contains(&c.records()), "{}", c.records());
        // 36 entities, Invoice and Payment need two pages of 1000.
        assert_eq!(c.minimum(), 38);
    }

    #[test]
    fn the_invoice_company_needs_one_request_per_thousand() {
        let c = Company::invoices(500_000).unwrap();
        assert_eq!(c.records(), 500_000);
        assert_eq!(c.minimum(), 500);
    }

    #[test]
    fn the_bound_scales_with_the_limits() {
        let usage = Usage {
            queries: 1000,
            ..Usage::default()
        };
        // Real speed: 1000 calls at 500 a minute, 10 in flight at 100 ms: the second 500
        // start a minute after the first 500, which took 4.9 s to start.
        let real = Limits::new(1).lower_bound(&usage).as_secs_f64();
        assert!((real - (60.0 + 4.9 + 0.1)).abs() < 0.01, "{real}");
        let fast = Limits::new(10).lower_bound(&usage).as_secs_f64();
        assert!((fast * 10.0 - real).abs() < 0.01, "{fast}");
        // 100 batch calls: 40 a window binds (the last 20 start two windows in, 10 at a time).
        let batched = Usage {
            batch_calls: 100,
            ..Usage::default()
        };
        let b = Limits::new(1).lower_bound(&batched).as_secs_f64();
        assert!((b - (120.0 + 0.1 + 0.1)).abs() < 0.01, "{b}");
    }
}
