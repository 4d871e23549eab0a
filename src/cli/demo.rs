//! `qbo demo`: the whole product in one command, against the built-in QBO sandbox.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use clap::Args;

use super::backfill_cmd::{connect, interrupt_on_ctrl_c, run_backfill, Job};
use super::{CliError, CompanyArgs, DbArgs, Outcome};
use crate::auth::store::MemoryStore;
use crate::backfill::{Chunking, Mode, Options};
use crate::chunks::DateRange;
use crate::config::{self, QboSettings, RateLimits, RetryPolicy, TokenStoreSpec};
use crate::entities::{Selection, ENTITIES};
use crate::report::{self, Format};
use crate::sandbox::Sandbox;
use crate::store::ReportFilter;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub company: CompanyArgs,
    /// Calendar windows of this many days instead of windows planned by count (the default,
    /// which loads the demo company in a few dozen requests).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub chunk_days: Option<i64>,
    /// Windows loaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(args: DemoArgs) -> Result<Outcome, CliError> {
    let year = |m, d| NaiveDate::from_ymd_opt(2024, m, d).expect("valid date");
    let company = args.company.sandbox_config(year(1, 1), year(12, 31));
    // Bad --count values are refused before the database is touched.
    company.validate().map_err(CliError::usage)?;
    let records: usize = ENTITIES.iter().map(|e| company.count_of(e.qbo_name)).sum();
    let db = connect(&args.db).await?;
    let sandbox = Sandbox::start(company).await.map_err(CliError::failed)?;
    eprintln!(
        "started the QBO sandbox at {} (company {}: {} invoices, {} customers, {} items; \
         {records} records of {} entities in all)",
        sandbox.api_base_url(),
        sandbox.realm_id(),
        args.company.invoices,
        args.company.customers,
        args.company.items,
        ENTITIES.len()
    );
    let settings = QboSettings {
        client_id: sandbox.client_id().to_string(),
        client_secret: sandbox.client_secret().to_string().into(),
        realm_id: sandbox.realm_id().to_string(),
        api_base_url: config::parse_url("sandbox", &sandbox.api_base_url())
            .map_err(CliError::failed)?,
        token_url: config::parse_url("sandbox", &sandbox.token_url()).map_err(CliError::failed)?,
        authorize_url: config::parse_url("sandbox", &sandbox.authorize_url())
            .map_err(CliError::failed)?,
        minor_version: config::MIN_MINOR_VERSION,
        token_store: TokenStoreSpec::Keyring,
        seed_refresh_token: Some(sandbox.current_refresh_token().into()),
    };
    let job = Job {
        selection: Selection::All,
        // Through 2025-01-01 UTC: edits on the evening of 2024-12-31 in the company's zone are
        // already 2025 in UTC, and the demo should land every record the company has.
        mode: Mode::New(
            DateRange::new(
                year(1, 1),
                NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
            )
            .map_err(CliError::usage)?,
        ),
        options: Options {
            chunking: args
                .chunk_days
                .map_or_else(Chunking::default, Chunking::Days),
            concurrency: args.concurrency,
            ..Options::default()
        },
        retry: RetryPolicy {
            base_delay: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        limits: RateLimits::default(),
        progress_every: Duration::from_secs(10),
        entities_at_once: super::backfill_cmd::DEFAULT_ENTITIES_AT_ONCE as usize,
    };
    // The sandbox's throwaway tokens live in memory: the demo never touches your keyring.
    let tokens = Arc::new(MemoryStore::default());
    let summaries = run_backfill(&settings, tokens, db.clone(), job, interrupt_on_ctrl_c()).await;
    sandbox.shutdown().await;
    let done = summaries?;

    let mut rows = Vec::new();
    for s in &done.summaries {
        let filter = ReportFilter {
            run_id: Some(s.run_id),
            ..Default::default()
        };
        rows.extend(db.chunks(&filter).await.map_err(CliError::failed)?);
    }
    outln!();
    let run_requests = super::report_cmd::run_requests_of(&db, &rows).await?;
    out!("{}", report::render(&rows, &run_requests, Format::Table));
    outln!(
        "\nThe rows are in raw.qb_<entity>, one table per entity (`qbo entities` lists them; realm {}); \
         the report is in ops.backfill_report. Run the demo again to see re-runs skip identical rows.",
        settings.realm_id
    );
    Ok(done.outcome())
}
