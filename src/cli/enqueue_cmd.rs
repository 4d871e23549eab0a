//! `--enqueue` of `qbo backfill`: plan the runs, print their ids and how to follow them,
//! and return at once; `qbo worker`s load them.

use super::backfill_cmd::{connect, BackfillArgs};
use super::{CliError, Outcome};
use crate::backfill::{BackfillError, Mode};
use crate::chunks::WindowField;
use crate::fleet::{enqueue_backfill, BackfillRequest, Enqueued};

pub async fn backfill(args: &BackfillArgs, mode: Mode) -> Result<Outcome, CliError> {
    let Mode::New(range) = mode else {
        return Err(CliError::usage(anyhow::anyhow!(
            "--enqueue plans new runs: give --start and --end (queued runs are continued by the workers themselves)"
        )));
    };
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
    crate::config::validate_minor_version(args.qbo.minor_version).map_err(CliError::usage)?;
    let realms = vec![realm_of(args)?];
    let db = connect(&args.db).await?;
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
    Ok(Outcome::Success)
}

/// The one company `--realm-id` (QBO_REALM_ID) names.
fn realm_of(args: &BackfillArgs) -> Result<String, CliError> {
    let realm = args
        .qbo
        .realm_id
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            CliError::usage(anyhow::anyhow!(
                "--enqueue needs the company: --realm-id R (or QBO_REALM_ID)"
            ))
        })?;
    crate::config::validate_realm_id(realm).map_err(CliError::usage)?;
    Ok(realm.to_string())
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
