//! `qbo verify`: QBO's counts against the raw zone's, window by window.

use chrono::{NaiveDate, Utc};
use clap::Args;

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::fleet;
use super::{parse_date_arg, parse_selection, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::chunks::DateRange;
use crate::client::ClientError;
use crate::client::{QboClient, RequestCounters};
use crate::entities::Selection;
use crate::report::Format;
use crate::reports::Method;
use crate::store::PgStore;
use crate::verify::{self, VerifyError, WindowCount};

pub const AFTER_HELP: &str = "\
For each window, counts the entity in QBO (SELECT COUNT(*) ... WHERE
MetaData.LastUpdatedTime in the window; name lists include inactive records) and the rows of
raw.qb_<entity> whose last_updated_utc falls in it and that are not marked deleted. Entities
QBO cannot window (company_info, preferences, recurring_transactions) are counted whole.

Without --start/--end, the range is the raw table's own span (first to last LastUpdatedTime).
A window where raw has fewer rows than QBO needs loading again; one where raw has more holds
records edited or deleted in QBO since they were loaded: `qbo sync` brings them up to date.

Exit codes: 0 every window matches, 1 some windows differ (or QBO or Postgres failed; the
error says which), 2 bad usage or configuration, 3 the refresh token was rejected (run
`qbo auth login`), 130 interrupted (nothing was written; run it again).

With --all-companies, every active company of `qbo companies` is verified in turn (a line on
stderr names each paused or needs_reauth company skipped); a company whose refresh token QBO
refuses becomes needs_reauth and the others go on. The exit code is the worst of them.

With --tie-out (and no entity), verify compares instead, month by month, QBO's own
ProfitAndLoss and TrialBalance (accrual) with the same figures from staging.general_ledger:
P&L per income and expense account over the month; trial balance with balance-sheet accounts
as of the month's end, income and expense accounts over the month, and their earlier postings
added to the company's retained-earnings account (AccountSubType RetainedEarnings). It prints
MATCH per month and report, or DIFF and each account that differs (qbo figure, staging
figure, difference); exit 1 if any differs. Run `qbo model refresh` after loading first.

With --tie-out --accounting-method cash, it compares QBO's cash-basis ProfitAndLoss with
staging.general_ledger_cash, per income and expense account and month: an invoice's (bill's)
income and expense count on the dates payments (bill payments) are applied to it, in
proportion of the amount applied to its total; sales receipts, refunds, expenses, card
charges, deposits, journal entries, credit memos and vendor credits on their own date. The
trial balance is not compared on the cash basis (QBO's cash-basis trial balance restates
A/R, A/P and other balance-sheet accounts by rules Intuit does not document).

Examples:
  qbo verify invoices --start 2024-01-01 --end 2024-12-31
  qbo verify --tie-out --start 2024-01-01 --end 2024-12-31
  qbo verify --tie-out --accounting-method cash --start 2024-01-01 --end 2024-12-31
  qbo verify all --chunk-days 7 --format json
  qbo verify all --all-companies";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The entity to check (see `qbo entities`), or all. Not with --tie-out.
    #[arg(value_parser = parse_selection, required_unless_present = "tie_out", conflicts_with = "tie_out")]
    pub entity: Option<Selection>,
    /// Instead of counts: month by month, QBO's own ProfitAndLoss and TrialBalance against
    /// the same figures from staging.general_ledger (run `qbo model refresh` first); needs
    /// --start and --end. Prints the months, reports and accounts that differ; exit 1 if any.
    #[arg(long, requires = "start")]
    pub tie_out: bool,
    /// With --tie-out: the basis to compare. accrual: ProfitAndLoss and TrialBalance against
    /// staging.general_ledger; cash: ProfitAndLoss only, against staging.general_ledger_cash.
    #[arg(long, value_enum, default_value = "accrual", requires = "tie_out")]
    pub accounting_method: Method,
    /// First day to check (YYYY-MM-DD, UTC). Default: the first day the raw table holds.
    #[arg(long, value_parser = parse_date_arg, requires = "end")]
    pub start: Option<NaiveDate>,
    /// Last day to check, inclusive. Default: the last day the raw table holds.
    #[arg(long, value_parser = parse_date_arg, requires = "start")]
    pub end: Option<NaiveDate>,
    /// Days per compared window.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub chunk_days: i64,
    /// table prints the differing windows and a line per entity; json prints every window.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Every active company of `qbo companies` instead of QBO_REALM_ID's; json then prints
    /// one object per company (`realm_id`, `windows`).
    #[arg(long)]
    pub all_companies: bool,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

pub async fn run(args: VerifyArgs) -> Result<Outcome, CliError> {
    if args.tie_out {
        return super::tie_out::run(&args).await;
    }
    let given = match (args.start, args.end) {
        (Some(s), Some(e)) => Some(DateRange::new(s, e).map_err(CliError::usage)?),
        _ => None,
    };
    if args.all_companies {
        return run_fleet(&args, given).await;
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = connect(&args.db).await?;
    let all = verify_one(&args, &settings, given, &store).await?;
    if args.format == Format::Json {
        let json = serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into());
        outln!("{json}");
    }
    Ok(outcome(&all))
}

fn outcome(all: &[WindowCount]) -> Outcome {
    if all.iter().all(WindowCount::matches) {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    }
}

/// One company after another; one that fails is reported and the others go on.
async fn run_fleet(args: &VerifyArgs, given: Option<DateRange>) -> Result<Outcome, CliError> {
    fleet::check_settings(&args.qbo)?;
    let store = connect(&args.db).await?;
    let selection = fleet::active_companies(&store, &args.qbo).await?;
    let companies = selection.companies;
    let mut outcomes = vec![selection.skipped];
    let mut json = Vec::new();
    for company in &companies {
        if args.format == Format::Table {
            outln!("company {}:", company.label());
        }
        let settings = fleet::settings_for(&args.qbo, &company.realm_id)?;
        match verify_one(args, &settings, given, &store).await {
            Ok(windows) => {
                outcomes.push(outcome(&windows));
                json.push(serde_json::json!({ "realm_id": company.realm_id, "windows": windows }));
            }
            Err(e) if e.outcome == Outcome::Interrupted => return Err(e),
            Err(e) => {
                eprintln!("company {}: {:#}", company.label(), e.error);
                fleet::after_failure(&store, company, &e).await;
                outcomes.push(e.outcome);
            }
        }
    }
    if args.format == Format::Json {
        let text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| "[]".into());
        outln!("{text}");
    }
    Ok(fleet::worst(outcomes))
}

/// Counts one company's windows, printing the table lines as it goes.
async fn verify_one(
    args: &VerifyArgs,
    settings: &crate::config::QboSettings,
    given: Option<DateRange>,
    store: &PgStore,
) -> Result<Vec<WindowCount>, CliError> {
    let tokens = super::auth_cmd::open_token_store(settings, store).await?;
    let client = build_client(
        settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        store,
        on_interrupt("interrupted: verify stopped; nothing was written, run it again"),
    )
    .await?;
    let mut counters = RequestCounters::default();
    let counted = count_all(
        args,
        &settings.realm_id,
        given,
        client.as_ref(),
        store,
        &mut counters,
    )
    .await;
    // Publish this process's requests to the company's shared budget, whatever happened.
    client.finish().await;
    let all = counted?;
    tracing::info!(
        realm_id = %settings.realm_id,
        requests = counters.requests,
        retries = counters.retries,
        "verify finished"
    );
    Ok(all)
}

/// Counts every window of every selected entity, in QBO and in the raw zone.
async fn count_all(
    args: &VerifyArgs,
    realm_id: &str,
    given: Option<DateRange>,
    client: &QboClient,
    store: &PgStore,
    counters: &mut RequestCounters,
) -> Result<Vec<WindowCount>, CliError> {
    let mut all = Vec::new();
    // Without --tie-out, clap requires the entity.
    let selection = args.entity.unwrap_or(Selection::All);
    for entity in selection.entities() {
        let range = match given {
            Some(r) => r,
            None => match verify::raw_span(store, entity, realm_id)
                .await
                .map_err(CliError::failed)?
            {
                Some((first, last)) => {
                    DateRange::new(first, last.max(first)).map_err(CliError::usage)?
                }
                None if entity.is_whole() => {
                    let today = Utc::now().date_naive();
                    DateRange::new(today, today).map_err(CliError::usage)?
                }
                None => {
                    eprintln!(
                        "{}: the raw table is empty; give --start and --end to compare a range",
                        entity.cli_name
                    );
                    if selection != Selection::All {
                        return Err(CliError::usage(anyhow::anyhow!(
                            "nothing loaded for {} yet: give --start and --end",
                            entity.cli_name
                        )));
                    }
                    continue;
                }
            },
        };
        let windows = verify::plan(entity, range, args.chunk_days).map_err(CliError::usage)?;
        let counts = verify::count_windows(client, store, entity, &windows, counters)
            .await
            .map_err(classify)?;
        if args.format == Format::Table {
            print_entity(entity.cli_name, &counts);
        }
        all.extend(counts);
    }
    Ok(all)
}

fn classify(e: VerifyError) -> CliError {
    match e {
        VerifyError::Qbo(ClientError::Auth(auth)) => CliError::from_auth(auth),
        VerifyError::Qbo(ClientError::Cancelled) => CliError {
            outcome: Outcome::Interrupted,
            error: anyhow::anyhow!("interrupted by Ctrl-C or SIGTERM"),
        },
        e => CliError::failed(e),
    }
}

fn print_entity(entity: &str, counts: &[WindowCount]) {
    let bad: Vec<&WindowCount> = counts.iter().filter(|c| !c.matches()).collect();
    for c in &bad {
        let window = if c.whole {
            "whole entity".to_string()
        } else {
            format!(
                "{} .. {}",
                c.window_start_utc.format("%Y-%m-%d"),
                c.window_end_utc.format("%Y-%m-%d")
            )
        };
        outln!(
            "MISMATCH {entity} [{window}) qbo={} raw={} diff={:+}: {}",
            c.qbo,
            c.raw,
            c.raw - c.qbo as i64,
            c.hint()
        );
    }
    let (qbo, raw): (u64, i64) = counts
        .iter()
        .fold((0, 0), |(q, r), c| (q + c.qbo, r + c.raw));
    outln!(
        "{entity}: {} windows checked, {} mismatched; qbo {qbo}, raw {raw}",
        counts.len(),
        bad.len()
    );
}
