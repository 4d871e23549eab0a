//! What the page's forms do: each calls the `crate::control` operation the JSON API calls
//! (`POST /api/backfills`, `POST /api/runs/{id}/retry-failed|resume|cancel`) with the same
//! request, so both behave identically (the server's environment and minor version).

use serde::Deserialize;
use uuid::Uuid;

use crate::control::{BackfillSpec, ControlError, RunAction, RunChanged, RunRef, Started};
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

impl BackfillForm {
    /// The body `POST /api/backfills` would be sent for this form.
    fn spec(&self) -> BackfillSpec {
        let company = self.company.trim();
        let all = company == "all";
        BackfillSpec {
            entity: Some(self.entity.clone()),
            start: Some(self.start.clone()),
            end: Some(self.end.clone()),
            realm_id: (!all).then(|| company.to_string()),
            all_companies: all,
            ..BackfillSpec::default()
        }
    }
}

pub async fn start_backfill(
    state: &AppState,
    form: &BackfillForm,
) -> Result<Started, ControlError> {
    state.control.start_backfill(&form.spec()).await
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

pub async fn on_run(
    state: &AppState,
    run_id: Uuid,
    action: RunAction,
) -> Result<RunChanged, ControlError> {
    state.control.act_on_run(&RunRef::Id(run_id), action).await
}
