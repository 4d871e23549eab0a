//! `qbo sync` for many companies: `--enqueue` records a sync request per company for the
//! `qbo worker`s, prints the ids and how to follow them, and returns at once;
//! `--all-companies` without it syncs every active company in this process, one after
//! another.

use super::backfill_cmd::connect;
use super::sync_cmd::{interrupt, sync_company, SyncArgs};
use super::{fleet, CliError, Outcome};
use crate::fleet::{
    enqueue_sync_or_existing, Enqueue, Requester, SyncOptions, SyncRequest, SyncSelection,
};

pub async fn enqueue(args: &SyncArgs) -> Result<Outcome, CliError> {
    let one = match args.all_companies {
        true => None,
        false => Some(fleet::named_realm(&args.qbo)?),
    };
    let db = connect(&args.db).await?;
    let (realms, skipped) = fleet::enqueue_targets(&db, &args.qbo, one).await?;
    let selection = SyncSelection::of(&selected(args));
    let options = SyncOptions {
        since: args.since,
        lookback_secs: args.lookback.num_seconds(),
        cdc_batch: args.cdc_batch,
        chunk_days: args.chunk_days,
    };
    let mut ids = Vec::with_capacity(realms.len());
    for realm_id in &realms {
        let done = enqueue_sync_or_existing(
            &db,
            &SyncRequest {
                realm_id,
                selection: selection.clone(),
                options: options.clone(),
                requested_by: Requester::Cli,
                schedule_id: None,
            },
        )
        .await
        .map_err(|e| {
            CliError::failed(anyhow::Error::new(e).context(format!(
                "queueing the sync of realm {realm_id} (requests already made stay queued)"
            )))
        })?;
        match done {
            Enqueue::Created(id) => outln!("realm {realm_id}: sync request {id} queued"),
            Enqueue::Existing(id) => outln!(
                "realm {realm_id}: sync request {id} was already queued for the same entities; nothing added (it keeps its own options)"
            ),
        }
        ids.push(done.request_id());
    }
    outln!(
        "{} sync requests for {} companies ({}); `qbo worker` runs them. Follow them with \
         `qbo report --sync-requests` (or `qbo report --companies`)",
        ids.len(),
        realms.len(),
        selection.names().join(" "),
    );
    Ok(skipped)
}

/// `--all-companies` in this process: each active company in turn, its summary lines under
/// a heading. A company that fails is reported (one whose refresh token QBO refuses becomes
/// needs_reauth) and the others go on; Ctrl-C stops at once.
pub async fn each_company(args: &SyncArgs) -> Result<Outcome, CliError> {
    fleet::check_settings(&args.qbo)?;
    let db = connect(&args.db).await?;
    let selection = fleet::active_companies(&db, &args.qbo).await?;
    let companies = selection.companies;
    let cancel = interrupt();
    let mut outcomes = vec![selection.skipped];
    for company in &companies {
        if cancel.is_cancelled() {
            outcomes.push(Outcome::Interrupted);
            break;
        }
        outln!("company {}:", company.label());
        let settings = fleet::settings_for(&args.qbo, &company.realm_id)?;
        let ran = match super::auth_cmd::open_token_store(&settings, &db).await {
            Ok(tokens) => sync_company(args, &settings, tokens, &db, cancel.clone()).await,
            Err(e) => Err(e),
        };
        match ran {
            Ok(outcome) => {
                if outcome == Outcome::Success {
                    if let Err(e) =
                        crate::companies::touch_loaded(db.pool(), &company.realm_id).await
                    {
                        tracing::warn!(realm_id = %company.realm_id, error = %format!("{e:#}"), "could not record when the company was last loaded");
                    }
                }
                outcomes.push(outcome)
            }
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
            Outcome::Success => "every one synced",
            Outcome::NeedsHuman => "some need a human (see above)",
            Outcome::Interrupted =>
                "interrupted; run the sync again (watermarks stay at their last commit)",
            _ => "some did not sync completely (see above)",
        }
    );
    Ok(outcome)
}

/// The entities named (none or `all`: every one).
fn selected(args: &SyncArgs) -> Vec<&'static crate::entities::Entity> {
    if args.entities.is_empty() || args.entities.contains(&crate::entities::Selection::All) {
        Vec::new()
    } else {
        args.entities()
    }
}
