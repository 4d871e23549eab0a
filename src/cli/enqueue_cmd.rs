//! `qbo backfill` for many companies: `--enqueue` plans the runs, prints their ids and how
//! to follow them, and returns at once (`qbo worker`s load them); `--all-companies` without
//! it loads every active company in this process, one after another.

use super::backfill_cmd::{connect, interrupt_on_ctrl_c, run_company, BackfillArgs};
use super::{fleet, CliError, Outcome};
use crate::backfill::Mode;
use crate::fleet::{enqueue_backfill, BackfillRequest, Enqueued};

pub async fn backfill(args: &BackfillArgs, mode: Mode) -> Result<Outcome, CliError> {
    let Mode::New(range) = mode else {
        return Err(CliError::usage(anyhow::anyhow!(
            "--enqueue plans new runs: give --start and --end (queued runs are continued by the workers themselves)"
        )));
    };
    crate::config::validate_minor_version(args.qbo.minor_version).map_err(CliError::usage)?;
    let one = match args.all_companies {
        true => None,
        false => Some(fleet::named_realm(&args.qbo)?),
    };
    let db = connect(&args.db).await?;
    let (realms, skipped) = fleet::enqueue_targets(&db, &args.qbo, one).await?;
    let options = args.options();
    let mut runs = 0;
    for realm_id in &realms {
        let enqueued = enqueue_backfill(
            &db,
            &BackfillRequest {
                realm_id,
                selection: args.entity,
                range,
                options: &options,
                minor_version: args.qbo.minor_version,
            },
        )
        .await
        .map_err(|e| {
            CliError::failed(anyhow::Error::new(e).context(format!(
                "planning the runs of realm {realm_id} (runs already planned stay queued)"
            )))
        })?;
        runs += enqueued.runs.len();
        print_enqueued(&enqueued);
    }
    outln!(
        "enqueued {runs} runs of {} companies; `qbo worker` loads them, `qbo report --companies` shows where they are",
        realms.len()
    );
    Ok(skipped)
}

/// `--all-companies` in this process: each active company in turn, its summary lines under
/// a heading. A company that fails is reported (one whose refresh token QBO refuses becomes
/// needs_reauth) and the others go on; Ctrl-C stops at once.
pub async fn backfill_each_company(args: &BackfillArgs, mode: Mode) -> Result<Outcome, CliError> {
    fleet::check_settings(&args.qbo)?;
    let db = connect(&args.db).await?;
    let selection = fleet::active_companies(&db, &args.qbo).await?;
    let companies = selection.companies;
    let cancel = interrupt_on_ctrl_c();
    let mut outcomes = vec![selection.skipped];
    for company in &companies {
        if cancel.is_cancelled() {
            outcomes.push(Outcome::Interrupted);
            break;
        }
        outln!("company {}:", company.label());
        let settings = fleet::settings_for(&args.qbo, &company.realm_id)?;
        let ran = match super::auth_cmd::open_token_store(&settings, &db).await {
            Ok(tokens) => {
                run_company(args, &settings, tokens, &db, mode.clone(), cancel.clone()).await
            }
            Err(e) => Err(e),
        };
        match ran {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                eprintln!("company {}: {:#}", company.label(), e.error);
                fleet::after_failure(&db, company, &e).await;
                outcomes.push(e.outcome);
            }
        }
    }
    let outcome = fleet::worst(outcomes);
    outln!(
        "{} companies: {}",
        companies.len(),
        match outcome {
            Outcome::Success => "every one loaded",
            Outcome::NeedsHuman => "some need a human (see above)",
            Outcome::Interrupted => "interrupted; continue with --resume --all-companies",
            _ => "some did not load completely (see above)",
        }
    );
    Ok(outcome)
}

fn print_enqueued(e: &Enqueued) {
    match e.invocation {
        Some(inv) => outln!(
            "realm {}: {} runs queued (backfill all {inv})",
            e.realm_id,
            e.runs.len()
        ),
        None => outln!("realm {}: {} run queued", e.realm_id, e.runs.len()),
    }
    for (entity, run_id) in &e.runs {
        outln!("  {entity}: run {run_id}");
    }
}
