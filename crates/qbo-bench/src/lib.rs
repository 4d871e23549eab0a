//! `qbo-bench`: how fast qbo loads, against the method users have today and against the
//! practical ceiling, all from one invocation on one machine (see README, "Benchmark").
//!
//! The sandbox runs inside the bench process; every contender runs as a child process, so
//! each one's peak memory is its own. Each contender gets a throwaway database on the server
//! at `--database-url`, dropped at the end.
#![forbid(unsafe_code)]
// Reports print through `outln!`, which survives a closed stdout (see qbo_core::stdout).
#![deny(clippy::print_stdout)]

#[macro_use]
extern crate qbo_core;

mod api;
mod child;
mod copy;
mod cost;
mod cursor;
mod fleet;
mod plan;
mod print;
mod replay;
mod seed;
mod staging;

use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Serialize};

pub use plan::run;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    #[error("could not prepare the database")]
    Store(#[from] qbo_core::store::StoreError),
    #[error("the model refresh failed")]
    Model(#[from] qbo_core::model::ModelError),
    #[error("the sandbox did not start")]
    Sandbox(#[from] qbo_sandbox::SandboxError),
    #[error("{what} failed ({status}); its log is {log}; last lines:\n{tail}")]
    Child {
        what: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{what} printed no result: {detail}")]
    NoResult { what: String, detail: String },
}

/// The entities measured: the three the sandbox generates (the others would be empty).
pub fn entities() -> Vec<&'static qbo_core::entities::Entity> {
    ["invoices", "customers", "items"]
        .into_iter()
        .filter_map(qbo_core::entities::find)
        .collect()
}

/// What a child contender reports on stdout, as one JSON line.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ChildReport {
    pub rows: u64,
    pub requests: u64,
}

/// Measure qbo's backfill speed and memory against the seed's method and Postgres COPY, and
/// its API cost under QBO's limits against the seed's method and a cursor loader.
///
/// Needs a Postgres where the user may CREATE DATABASE, and the release build of `qbo`
/// (`cargo build --release`). Prints one line per contender, then the ratios to the targets.
#[derive(Debug, Clone, Parser)]
#[command(name = "qbo-bench", version)]
pub struct BenchArgs {
    /// Records in the sandbox company, per size (invoices, customers and items 2000:300:150,
    /// as in the sandbox's defaults).
    #[arg(long, value_delimiter = ',', default_value = "50000,500000")]
    pub sizes: Vec<u64>,
    /// A smoke check in a few minutes: size 5000, the API-bound run at 60 requests/minute, the
    /// API cost section on one month and 5000 invoices, 30 times faster.
    #[arg(long)]
    pub quick: bool,
    /// The seed's method stops after the 7-day chunk that reaches this many rows (it is slow
    /// at large sizes); its rows/s are measured on that subset.
    #[arg(long, default_value_t = 50_000)]
    pub baseline_rows: u64,
    /// Also run qbo with this --concurrency on each size, for comparison with the default
    /// (0: only the defaults). 1 shows what the extra workers buy.
    #[arg(long, default_value_t = 1)]
    pub also_concurrency: u32,
    /// Serve every contender from the live sandbox. By default the sandbox's pages are
    /// recorded by the first contender and replayed to the others, so rendering JSON (which
    /// QBO does on Intuit's servers) does not take this machine's CPU away from them.
    #[arg(long)]
    pub live: bool,
    #[arg(long)]
    pub skip_baseline: bool,
    #[arg(long)]
    pub skip_copy: bool,
    #[arg(long)]
    pub skip_api_bound: bool,
    /// Leave out the API cost section (5).
    #[arg(long)]
    pub skip_api_cost: bool,
    /// Run only this section.
    #[arg(long, value_enum)]
    pub only: Option<Section>,
    /// Records in the API-bound run (4); it loads the invoices among them.
    #[arg(long, default_value_t = 20_000)]
    pub api_records: u64,
    /// --chunk-days of the API-bound run: smaller windows mean more requests.
    #[arg(long, default_value_t = 1)]
    pub api_chunk_days: i64,
    /// Requests per minute the sandbox allows in the API-bound run (qbo is told the same).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub api_rpm: u32,
    /// Latency the sandbox adds to every request in the API-bound run.
    #[arg(long, default_value_t = 100)]
    pub api_latency_ms: u64,
    /// --concurrency of the API-bound run.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=32))]
    pub api_concurrency: u32,
    /// API cost section (5): QBO's limits and latency run this many times faster (windows of
    /// 60/N s, 100/N ms per request), so the slow baselines finish; every wall time is shown
    /// measured and in QBO time (x N). A divisor of 60.
    #[arg(long, default_value_t = 10, value_parser = time_scale)]
    pub api_time_scale: u32,
    /// API cost section: a contender still running after this many minutes of QBO time is
    /// stopped and shown unfinished, with the requests it had made (0: no limit).
    #[arg(long, default_value_t = 60)]
    pub api_max_minutes: u64,
    /// API cost section: the contenders to run, of `qbo` (in process), `workers` (the same
    /// backfill enqueued and loaded by two `qbo worker` processes), `cursor` and `seed`.
    #[arg(long, value_delimiter = ',', value_enum, default_values_t = [CostContender::Qbo, CostContender::Workers, CostContender::Cursor, CostContender::Seed])]
    pub api_contenders: Vec<CostContender>,
    /// Staging section (7, only with `--only staging`): invoices in its company, written
    /// into the raw zone by SQL.
    #[arg(long, default_value_t = 500_000)]
    pub staging_invoices: u64,
    /// Invoices in the API cost section's company (2), spread over two years.
    #[arg(long, default_value_t = 500_000)]
    pub api_invoices: usize,
    /// Fleet section (6, only with `--only fleet`): companies in the sandbox, each with its
    /// own data, tokens and QBO limits (500 requests/min, 10 in flight, 40 batch calls/min).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub fleet_companies: u64,
    /// Fleet section: invoices per company. With the default pages of 10, 7500 invoices are
    /// about 800 requests a company: over a minute and a half at QBO's 500 a minute.
    #[arg(long, default_value_t = 7500)]
    pub fleet_invoices: usize,
    /// Fleet section: `qbo worker` processes (each with its default slots).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub fleet_workers: u32,
    /// Fleet section: latency the sandbox adds to every request.
    #[arg(long, default_value_t = 100)]
    pub fleet_latency_ms: u64,
    /// Fleet section: the runs' --page-size. Small pages make many requests of few records,
    /// so the rate limit, not rendering JSON, is what the fleet meets.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fleet_page_size: u32,
    /// A Postgres URL whose user may CREATE DATABASE (each contender gets its own, dropped after).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// The qbo binary to measure (default: the `qbo` next to this program).
    #[arg(long)]
    pub qbo: Option<PathBuf>,
}

impl BenchArgs {
    /// `--quick` overrides the sizes of everything slow.
    pub fn effective(mut self) -> BenchArgs {
        if self.quick {
            self.sizes = vec![5_000];
            self.baseline_rows = self.baseline_rows.min(5_000);
            self.api_records = self.api_records.min(5_000);
            self.api_chunk_days = 14;
            self.api_rpm = self.api_rpm.min(60);
            self.api_invoices = self.api_invoices.min(5_000);
            self.api_time_scale = self.api_time_scale.max(30);
            self.staging_invoices = self.staging_invoices.min(5_000);
        }
        self
    }

    /// Whether `section` runs: `--only` names it, or nothing is `--only` and it is not skipped.
    pub fn runs(&self, section: Section) -> bool {
        let skipped = match section {
            Section::Sizes => false,
            Section::ApiBound => self.skip_api_bound,
            Section::ApiCost => self.skip_api_cost,
            // Minutes of its own: run it on purpose.
            Section::Fleet => true,
            // Minutes of its own at 500k invoices: run it on purpose.
            Section::Staging => true,
        };
        self.only.map_or(!skipped, |only| only == section)
    }
}

/// The parts of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// (1)-(3): speed and memory per size, without API limits.
    Sizes,
    /// (4): invoices under a requests-per-minute limit and latency.
    ApiBound,
    /// (5): requests and wall time under all of QBO's limits, against two baselines.
    ApiCost,
    /// (6): many companies, several `qbo worker` processes, QBO's limits per company: the
    /// fleet's requests/minute against 0.9 x companies x 500, rows/s per worker, CPU.
    /// Runs only when named (`--only fleet`).
    Fleet,
    /// (7): `qbo model refresh` (the staging schema) on a company of --staging-invoices.
    /// Runs only when named (`--only staging`).
    Staging,
}

/// The API cost section's contenders, for `--api-contenders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CostContender {
    /// `qbo backfill` in process.
    Qbo,
    /// `qbo backfill --enqueue`, loaded by two `qbo worker --idle-exit` processes.
    Workers,
    /// A cursor loader (Singer tap).
    Cursor,
    /// The seed's method.
    Seed,
}

/// `--api-time-scale`: the rate windows must stay whole seconds (the sandbox counts in them).
fn time_scale(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    match n > 0 && 60 % n == 0 {
        true => Ok(n),
        false => Err("a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60)".into()),
    }
}

/// The environment variable that turns `qbo-bench` into one of its own child contenders.
pub const CHILD_ENV: &str = "QBO_BENCH_CHILD";
const SPEC_ENV: &str = "QBO_BENCH_SPEC";

/// Runs the child contender named by `QBO_BENCH_CHILD`, printing its `ChildReport`.
pub async fn run_child(kind: &str) -> Result<(), BenchError> {
    let spec =
        std::env::var(SPEC_ENV).map_err(|_| BenchError::Usage(format!("{SPEC_ENV} is not set")))?;
    let bad = |e: serde_json::Error| BenchError::Usage(format!("{SPEC_ENV}: {e}"));
    let report = match kind {
        "seed" => seed::run(serde_json::from_str(&spec).map_err(bad)?).await?,
        "fetch-copy" => copy::fetch_copy(serde_json::from_str(&spec).map_err(bad)?).await?,
        "copy" => copy::copy_file(serde_json::from_str(&spec).map_err(bad)?).await?,
        "cursor" => cursor::run(serde_json::from_str(&spec).map_err(bad)?).await?,
        other => {
            return Err(BenchError::Usage(format!(
                "unknown child contender `{other}`"
            )))
        }
    };
    outln!(
        "{}",
        serde_json::to_string(&report).unwrap_or_else(|_| "{}".into())
    );
    Ok(())
}
