//! `qbo backfill --enqueue`: plan runs for the `qbo worker`s and return at once. Nothing
//! here talks to QBO; a run planned by count is one window its first worker counts.

use uuid::Uuid;

use super::FleetError;
use crate::backfill::{plan_new_run, Chunking, NewBackfill, Options};
use crate::chunks::DateRange;
use crate::entities::{Entity, Selection};
use crate::store::{Invocation, PgStore};

/// What to plan for one company.
pub struct BackfillRequest<'a> {
    pub realm_id: &'a str,
    pub selection: Selection,
    pub range: DateRange,
    /// Window planning, page size and window field; concurrency and lease are the workers'.
    pub options: &'a Options,
    pub minor_version: u32,
}

/// The runs planned for one company, in `qbo entities` order.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub realm_id: String,
    /// The `backfill all` they belong to (so `qbo backfill all --resume` finishes them too).
    pub invocation: Option<Uuid>,
    pub runs: Vec<(&'static str, Uuid)>,
}

/// Records one run per selected entity, every window `pending` and marked queued, so that
/// any `qbo worker` takes them. `all` is recorded as an invocation first, as an in-process
/// `backfill all` is.
pub async fn enqueue_backfill(
    store: &PgStore,
    req: &BackfillRequest<'_>,
) -> Result<Enqueued, FleetError> {
    let entities = req.selection.entities();
    let invocation = match req.selection {
        Selection::All => {
            Some(record_invocation(store, req.realm_id, &entities, req.range, req.options).await?)
        }
        Selection::One(_) => None,
    };
    let options = Options {
        invocation,
        ..req.options.clone()
    };
    let mut runs = Vec::with_capacity(entities.len());
    for entity in entities {
        let raw_had_rows = crate::store::raw::has_rows(store.pool(), entity, req.realm_id)
            .await
            .map_err(crate::store::StoreError::from)?;
        let run_id = plan_new_run(
            store,
            &NewBackfill {
                realm_id: req.realm_id,
                entity,
                range: req.range,
                minor_version: req.minor_version,
                raw_had_rows,
                queued: true,
            },
            &options,
        )
        .await?;
        runs.push((entity.cli_name, run_id));
    }
    Ok(Enqueued {
        realm_id: req.realm_id.to_string(),
        invocation,
        runs,
    })
}

/// Records a `backfill all` of `range` (its entities and window options), so that `all
/// --resume` later finishes every entity of it, also those no run was started for.
pub async fn record_invocation(
    store: &PgStore,
    realm_id: &str,
    entities: &[&'static Entity],
    range: DateRange,
    options: &Options,
) -> Result<Uuid, crate::store::StoreError> {
    let invocation_id = Uuid::new_v4();
    store
        .create_invocation(&Invocation {
            invocation_id,
            realm_id: realm_id.to_string(),
            entities: entities.iter().map(|e| e.cli_name.to_string()).collect(),
            range_start: range.start,
            range_end: range.end_inclusive,
            window_field: options.window_field.as_str().to_string(),
            chunk_days: match options.chunking {
                Chunking::Days(d) => Some(i32::try_from(d).unwrap_or(i32::MAX)),
                Chunking::ByCount { .. } => None,
            },
            window_pages: match options.chunking {
                Chunking::ByCount { window_pages } => {
                    Some(i32::try_from(window_pages).unwrap_or(i32::MAX))
                }
                Chunking::Days(_) => None,
            },
            page_size: options.page_size as i32,
            started_at: chrono::Utc::now(),
        })
        .await?;
    Ok(invocation_id)
}
