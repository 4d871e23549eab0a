//! What each entity of a `qbo backfill` does. A new `all` with a range is recorded (an
//! invocation: range, entities, window options) before its first run; `all --resume` and
//! `all --retry-failed` then finish the latest one, every entity of it, so an entity that a
//! killed `all` never reached is loaded too instead of being skipped.

use std::collections::HashMap;

use uuid::Uuid;

use super::backfill_cmd::Job;
use super::CliError;
use crate::backfill::{Chunking, Mode, Options};
use crate::chunks::{DateRange, WindowField};
use crate::entities::{self, Entity, Selection};
use crate::store::{Invocation, PgStore};

/// One entity's part of the command.
pub enum Step {
    /// Run the engine; `note` (if any) is printed first.
    Run {
        entity: &'static Entity,
        mode: Mode,
        options: Options,
        note: Option<String>,
    },
    /// Nothing to run. `unfinished`: the entity is still owed, so the command cannot exit 0.
    Skip { line: String, unfinished: bool },
}

pub async fn plan(db: &PgStore, realm_id: &str, job: &Job) -> Result<Vec<Step>, CliError> {
    let run = |entity, mode: Mode, options: Options| Step::Run {
        entity,
        mode,
        options,
        note: None,
    };
    let entities = match job.selection {
        Selection::One(e) => return Ok(vec![run(e, job.mode.clone(), job.options.clone())]),
        Selection::All => job.selection.entities(),
    };
    match &job.mode {
        Mode::New(range) => {
            let invocation_id =
                crate::fleet::record_invocation(db, realm_id, &entities, *range, &job.options)
                    .await
                    .map_err(CliError::failed)?;
            let options = Options {
                invocation: Some(invocation_id),
                ..job.options.clone()
            };
            Ok(entities
                .into_iter()
                .map(|e| run(e, job.mode.clone(), options.clone()))
                .collect())
        }
        Mode::Resume(_) | Mode::RetryFailed(None) => {
            match db
                .latest_invocation(realm_id)
                .await
                .map_err(CliError::failed)?
            {
                Some(inv) => finish_invocation(db, &inv, job).await,
                // No `all` with a range was ever recorded here: continue what exists.
                None => Ok(entities
                    .into_iter()
                    .map(|e| run(e, job.mode.clone(), job.options.clone()))
                    .collect()),
            }
        }
        // `--run` with `all` is refused before this; a sync's windows never come here.
        Mode::RetryFailed(Some(_)) | Mode::Planned(_) => Ok(entities
            .into_iter()
            .map(|e| run(e, job.mode.clone(), job.options.clone()))
            .collect()),
    }
}

/// `all --resume` / `all --retry-failed` of a recorded invocation: each of its entities
/// continues the run the invocation made, or (resume) starts one if it never got that far.
async fn finish_invocation(
    db: &PgStore,
    inv: &Invocation,
    job: &Job,
) -> Result<Vec<Step>, CliError> {
    let runs: HashMap<String, Uuid> = db
        .invocation_runs(inv.invocation_id)
        .await
        .map_err(CliError::failed)?
        .into_iter()
        .collect();
    let range = DateRange::new(inv.range_start, inv.range_end).map_err(CliError::failed)?;
    let fresh = Options {
        chunking: match (inv.chunk_days, inv.window_pages) {
            (Some(days), _) => Chunking::Days(i64::from(days)),
            (None, Some(pages)) => Chunking::ByCount {
                window_pages: pages.clamp(1, 1000) as u32,
            },
            (None, None) => Chunking::default(),
        },
        page_size: inv.page_size.clamp(1, 1000) as u32,
        window_field: WindowField::parse_stored(&inv.window_field)
            .unwrap_or(WindowField::LastUpdated),
        invocation: Some(inv.invocation_id),
        ..job.options.clone()
    };
    let what = format!(
        "`backfill all` of {}..{} (started {})",
        inv.range_start,
        inv.range_end,
        inv.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let mut steps = Vec::with_capacity(inv.entities.len());
    for name in &inv.entities {
        let Some(entity) = entities::find(name) else {
            tracing::warn!(entity = %name, "an entity this qbo no longer knows; skipped");
            continue;
        };
        let step = match (runs.get(name), &job.mode) {
            // The invocation's own run, even if the entity was backfilled again since.
            (Some(run_id), mode) => Step::Run {
                entity,
                mode: match mode {
                    Mode::Resume(_) => Mode::Resume(Some(*run_id)),
                    _ => Mode::RetryFailed(Some(*run_id)),
                },
                options: job.options.clone(),
                note: None,
            },
            (None, Mode::Resume(_)) => Step::Run {
                entity,
                mode: Mode::New(range),
                options: fresh.clone(),
                note: Some(format!(
                    "{}: not reached by the {what}; starting it fresh",
                    entity.cli_name
                )),
            },
            (None, _) => Step::Skip {
                line: format!(
                    "{}: not reached by the {what}, so nothing of it failed; load it with: qbo backfill all --resume",
                    entity.cli_name
                ),
                unfinished: true,
            },
        };
        steps.push(step);
    }
    Ok(steps)
}
