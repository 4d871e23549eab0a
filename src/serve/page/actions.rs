//! What the page's forms do. Each calls the library operation the JSON API calls and
//! answers the sentence the page shows once (`Ok`) or the error (`Err`), in the CLI's words.

use serde::Deserialize;

use crate::chunks::{parse_date, DateRange};
use crate::entities::Selection;
use crate::fleet::{enqueue_backfill, BackfillRequest};
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
    let selection: Selection = form.entity.trim().parse().map_err(|e| format!("{e}"))?;
    let range = DateRange::new(
        parse_date(&form.start).map_err(|e| e.to_string())?,
        parse_date(&form.end).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let pool = state.store.pool();
    let realms = match form.company.trim() {
        "all" => {
            let realms = crate::companies::active_realms(pool)
                .await
                .map_err(|e| e.to_string())?;
            if realms.is_empty() {
                return Err("no active company in qbo companies: add one with `qbo auth login --realm-id R` (or resume a paused one)".into());
            }
            realms
        }
        realm => vec![
            crate::companies::get(pool, realm)
                .await
                .map_err(|e| e.to_string())?
                .realm_id,
        ],
    };
    let options = crate::backfill::Options::default();
    let mut runs = Vec::new();
    for realm_id in &realms {
        let enqueued = enqueue_backfill(
            &state.store,
            &BackfillRequest {
                realm_id,
                selection,
                range,
                options: &options,
                minor_version: crate::config::MIN_MINOR_VERSION,
            },
        )
        .await
        .map_err(|e| format!("planning the runs of realm {realm_id}: {e}"))?;
        runs.extend(enqueued.runs.into_iter().map(|(_, id)| id));
    }
    Ok(match runs.as_slice() {
        [one] => format!("queued run {one} of {}", realms[0]),
        many => format!(
            "queued {} runs of {} companies from {} to {}",
            many.len(),
            realms.len(),
            range.start,
            range.end_inclusive
        ),
    })
}
