//! `qbo verify --tie-out`: the loaded ledger against QBO's own reports, month by month.

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::verify_cmd::VerifyArgs;
use super::{CliError, Outcome};
use crate::client::RequestCounters;
use crate::report::Format;
use crate::reports::tieout::{Compared, TieOut};
use crate::reports::{shape_money, Method};

pub async fn run(args: &VerifyArgs) -> Result<Outcome, CliError> {
    let (Some(start), Some(end)) = (args.start, args.end) else {
        return Err(CliError::usage(anyhow::anyhow!(
            "--tie-out needs --start and --end"
        )));
    };
    if end < start {
        return Err(CliError::usage(anyhow::anyhow!("--end is before --start")));
    }
    if args.all_companies {
        return Err(CliError::usage(anyhow::anyhow!(
            "--tie-out checks one company (QBO_REALM_ID); run it once per company"
        )));
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = connect(&args.db).await?;
    let tokens = super::auth_cmd::open_token_store(&settings, &store).await?;
    let client = build_client(
        &settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        &store,
        on_interrupt("interrupted: the tie-out stopped; nothing was written, run it again"),
    )
    .await?;
    let mut counters = RequestCounters::default();
    let tie = TieOut {
        client: client.as_ref(),
        pool: store.pool(),
        realm_id: &settings.realm_id,
    };
    let method = args.accounting_method;
    let compared = tie.run(start, end, method, &mut counters).await;
    client.finish().await;
    let compared = compared.map_err(super::reports_cmd::classify)?;
    if args.format == Format::Json {
        let json = serde_json::to_string_pretty(&compared).unwrap_or_else(|_| "[]".into());
        outln!("{json}");
    } else {
        print(&compared);
    }
    let differ = compared
        .iter()
        .filter(|c| !c.differences.is_empty())
        .count();
    let basis = match method {
        Method::Accrual => "accrual",
        // Said on every run, so nobody reads a cash-basis MATCH as a tied-out balance sheet.
        Method::Cash => {
            "cash; ProfitAndLoss only, the trial balance is not compared on the cash basis"
        }
    };
    outln!(
        "tie-out {start}..{end} ({basis}): {} reports compared, {} match, {differ} differ; {} requests",
        compared.len(),
        compared.len() - differ,
        counters.requests
    );
    Ok(if differ == 0 {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

fn print(compared: &[Compared]) {
    for c in compared {
        let month = c.month_start.format("%Y-%m");
        if c.differences.is_empty() {
            outln!("MATCH {month} {}: {} accounts", c.report, c.accounts);
            continue;
        }
        outln!(
            "DIFF  {month} {}: {} of {} accounts differ",
            c.report,
            c.differences.len(),
            c.accounts
        );
        for d in &c.differences {
            outln!(
                "  {month} {} account {} ({}): qbo {} staging {} (staging - qbo {})",
                c.report,
                d.account_id,
                d.account_name,
                shape_money(d.qbo_cents),
                shape_money(d.staging_cents),
                shape_money(d.staging_cents - d.qbo_cents)
            );
        }
    }
}
