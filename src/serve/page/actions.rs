//! What the page's forms do: each calls the `crate::control` operation the JSON API calls
//! and answers the sentence the page shows once (`Ok`) or the error (`Err`), in the CLI's
//! words.

use serde::Deserialize;
use uuid::Uuid;

use crate::control::{BackfillSpec, RunAction, RunRef};
use crate::serve::AppState;

/// The "Start a backfill" form: `entity` (a `qbo entities` name or `all`), `start` and
/// `end` (YYYY-MM-DD, inclusive), `company` (a realm id or `all`: every active company).
#[derive(Debug, Deserialize)]
pub struct BackfillForm {
    pub entity: String,
    pub start: String,
    pub end: String,
    pub company: String,
}

pub async fn start_backfill(state: &AppState, form: &BackfillForm) -> Result<String, String> {
    let company = form.company.trim();
    let all = company == "all";
    let spec = BackfillSpec {
        entity: Some(form.entity.clone()),
        start: Some(form.start.clone()),
        end: Some(form.end.clone()),
        realm_id: (!all).then(|| company.to_string()),
        all_companies: all,
        ..BackfillSpec::default()
    };
    let started = state
        .control
        .start_backfill(&spec)
        .await
        .map_err(|e| e.to_string())?;
    let mut message = match started.runs.as_slice() {
        [one] => format!(
            "queued run {} ({} of {}): the workers load it",
            one.run_id, one.entity, one.realm_id
        ),
        _ => started.message.clone(),
    };
    for line in &started.skipped {
        message.push_str("; ");
        message.push_str(line);
    }
    Ok(message)
}

/// The action a button's path names (`/runs/{id}/retry-failed`, `resume`, `cancel`).
pub fn parse_action(s: &str) -> Option<RunAction> {
    match s {
        "retry-failed" => Some(RunAction::RetryFailed),
        "resume" => Some(RunAction::Resume),
        "cancel" => Some(RunAction::Cancel),
        _ => None,
    }
}

pub async fn on_run(state: &AppState, run_id: Uuid, action: RunAction) -> Result<String, String> {
    state
        .control
        .act_on_run(&RunRef::Id(run_id), action)
        .await
        .map(|changed| changed.message)
        .map_err(|e| e.to_string())
}
