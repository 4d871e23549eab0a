//! `qbo report`.

use super::run_ref::RunRef;
use super::{backfill_cmd::connect, CliError, DbArgs, Outcome};
use crate::entities;
use crate::report::{self, Format};
use crate::store::ReportFilter;
use clap::Args;

/// An entity (`invoices`), the exchange-rates step of multi-currency syncs
/// (`exchange_rates`), or a report's windows (`report:ProfitAndLoss`), or a report run of
/// several reports (`report:all`).
fn parse_entity(s: &str) -> Result<String, String> {
    if let Some(names) = s.strip_prefix(crate::reports::pull::WINDOW_PREFIX) {
        return super::reports_cmd::parse_reports(names)
            .map(|_| s.to_string())
            .map_err(|e| format!("{e} after `report:`"));
    }
    // The sync's exchange-rates step records runs of its own under this name.
    let (rates, rates_qbo, _) = entities::EXCHANGE_RATES;
    if s.eq_ignore_ascii_case(rates) || s.eq_ignore_ascii_case(rates_qbo) {
        return Ok(rates.to_string());
    }
    entities::find(s)
        .map(|e| e.cli_name.to_string())
        .ok_or_else(|| {
            format!(
                "unknown entity `{s}`; expected one of: {}, exchange_rates, or report:<ReportName> (or none, for every entity)",
                entities::cli_names().join(", ")
            )
        })
}

fn parse_realm(s: &str) -> Result<String, String> {
    crate::config::validate_realm_id(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only this entity (invoices, customers, ...; see `qbo entities`), exchange_rates (the
    /// exchange-rates step of multi-currency syncs), or a report's windows
    /// (report:ProfitAndLoss; report:all is the run of every report).
    #[arg(value_parser = parse_entity)]
    pub entity: Option<String>,
    /// Only this run: its id, or the start of it as the table shows it (at least 4 hex
    /// digits). Without it: the latest backfill and the latest sync of each entity.
    #[arg(long)]
    pub run: Option<RunRef>,
    /// Every run, not only the latest backfill and sync of each entity.
    #[arg(long, conflicts_with = "run")]
    pub all_runs: bool,
    /// Only this company.
    #[arg(long, env = "QBO_REALM_ID", value_parser = parse_realm)]
    pub realm_id: Option<String>,
    /// Every active company of `qbo companies`, one after another (table: a heading per
    /// company; json: one array). Paused and needs_reauth companies are skipped with a line
    /// on stderr.
    #[arg(long)]
    pub all_companies: bool,
    /// One line per company (every company with runs or sync requests, whatever
    /// QBO_REALM_ID says) instead of per window: its windows queued, running, succeeded and
    /// failed, over its latest run of each entity and kind, and its sync requests queued and
    /// running (a fleet's progress at a glance).
    #[arg(long, conflicts_with_all = ["run", "all_runs", "entity"])]
    pub companies: bool,
    /// The latest sync requests (`qbo sync --enqueue`, the API, schedules), newest first:
    /// status (queued, running, success, partial, error, cancelled), who asked, attempts,
    /// the sync runs each produced (`qbo report --run ID` shows one) and why one failed.
    /// With --realm-id, only that company's.
    #[arg(long, conflicts_with_all = ["run", "all_runs", "entity", "companies", "all_companies"])]
    pub sync_requests: bool,
    /// How many sync requests --sync-requests shows.
    #[arg(long, default_value_t = 50, requires = "sync_requests", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// table for people, json for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// The app's monthly read cap, shown beside this month's reads (see `backfill --help`).
    #[arg(long, env = "QBO_MONTHLY_READ_CAP", value_parser = clap::value_parser!(u64).range(1..))]
    pub monthly_read_cap: Option<u64>,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(args: ReportArgs) -> Result<Outcome, CliError> {
    let store = connect(&args.db).await?;
    let run_id = match &args.run {
        Some(run) => Some(run.resolve(&store).await?),
        None => None,
    };
    if args.companies {
        let queues = store.company_queues(None).await.map_err(CliError::failed)?;
        let syncs = store
            .open_syncs_by_company(None)
            .await
            .map_err(CliError::failed)?;
        let lines = report::company_lines(queues, &syncs);
        out!("{}", report::render_companies(&lines, args.format));
        return Ok(Outcome::Success);
    }
    if args.sync_requests {
        let requests = store
            .recent_sync_requests(args.realm_id.as_deref(), i64::from(args.limit))
            .await
            .map_err(CliError::failed)?;
        out!("{}", report::render_sync_requests(&requests, args.format));
        return Ok(Outcome::Success);
    }
    if !args.all_companies {
        let rows = rows_of(&args, &store, args.realm_id.clone(), run_id).await?;
        let run_requests = run_requests_of(&store, &rows).await?;
        out!("{}", report::render(&rows, &run_requests, args.format));
        show_month_reads(&args, &store).await?;
        return Ok(Outcome::Success);
    }
    let fleet = crate::companies::fleet(store.pool())
        .await
        .map_err(CliError::failed)?;
    let skipped = super::fleet::skipped_outcome(&fleet);
    if fleet.active.is_empty() {
        return Err(super::fleet::no_active_company("", skipped));
    }
    let mut all = Vec::new();
    for company in &fleet.active {
        let rows = rows_of(&args, &store, Some(company.realm_id.clone()), run_id).await?;
        if args.format == Format::Table {
            let run_requests = run_requests_of(&store, &rows).await?;
            outln!("company {}:", company.label());
            out!("{}", report::render(&rows, &run_requests, args.format));
        }
        all.extend(rows);
    }
    if args.format == Format::Json {
        out!("{}", report::render(&all, &Default::default(), args.format));
    }
    show_month_reads(&args, &store).await?;
    Ok(skipped)
}

/// Under the table: the app's QBO reads this month (the app's, not one company's).
async fn show_month_reads(
    args: &ReportArgs,
    store: &crate::store::PgStore,
) -> Result<(), CliError> {
    if args.format == Format::Table {
        let reads = crate::store::throttle::month_reads(store.pool())
            .await
            .map_err(CliError::failed)?;
        outln!("{}", month_reads_line(reads, args.monthly_read_cap));
    }
    Ok(())
}

/// The chunk rows to show for one company (or every one: `realm_id` None).
async fn rows_of(
    args: &ReportArgs,
    store: &crate::store::PgStore,
    realm_id: Option<String>,
    run_id: Option<uuid::Uuid>,
) -> Result<Vec<crate::store::ChunkRow>, CliError> {
    let base = ReportFilter {
        realm_id: realm_id.clone(),
        entity: args.entity.clone(),
        run_id,
    };
    let rows = if run_id.is_some() || args.all_runs {
        store.chunks(&base).await.map_err(CliError::failed)?
    } else {
        let mut rows = Vec::new();
        let latest = store
            .latest_run_ids(realm_id.as_deref(), args.entity.as_deref())
            .await
            .map_err(CliError::failed)?;
        for run_id in latest {
            let filter = ReportFilter {
                run_id: Some(run_id),
                ..base.clone()
            };
            rows.extend(store.chunks(&filter).await.map_err(CliError::failed)?);
        }
        rows
    };
    Ok(rows)
}

/// The runs' own requests (outside their windows), for their cost.
pub async fn run_requests_of(
    store: &crate::store::PgStore,
    rows: &[crate::store::ChunkRow],
) -> Result<std::collections::HashMap<uuid::Uuid, u64>, CliError> {
    let mut ids: Vec<uuid::Uuid> = rows.iter().map(|c| c.run_id).collect();
    ids.sort_unstable();
    ids.dedup();
    store.run_requests(&ids).await.map_err(CliError::failed)
}

/// The app's QBO reads this month (every qbo process's, UTC), against the cap if one is set.
fn month_reads_line(reads: u64, cap: Option<u64>) -> String {
    match cap {
        Some(cap) => {
            format!("QBO reads this month (UTC): {reads} of cap {cap} (QBO_MONTHLY_READ_CAP)")
        }
        None => {
            format!("QBO reads this month (UTC): {reads} (no cap: QBO_MONTHLY_READ_CAP is unset)")
        }
    }
}
