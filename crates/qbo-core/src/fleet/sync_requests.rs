//! Queued syncs: `qbo sync --enqueue`, `qbo serve`'s "sync now" and sync schedules call
//! [`enqueue_sync`]; a `qbo worker` slot runs the request whole (a sync reads its watermarks
//! under the company's sync lock and asks QBO for the time, so it is one unit of work, not
//! windows). [`sync_request`] reads one request's state, [`sync_in_progress`] tells whether a
//! company already has a sync queued or running (a schedule skips its tick then).
//!
//! Enqueueing does not pile up: while a request for the same company and the same entities
//! is still queued (no worker took it yet), [`enqueue_sync`] returns that request's id and
//! records nothing; the queued request keeps its own options. Once a worker runs it, a new
//! request is recorded (it reads the changes made since).

use chrono::NaiveDate;
use uuid::Uuid;

use super::FleetError;
use crate::entities::{Entity, ENTITIES};
use crate::store::sync_requests::NewSyncRequest;
use crate::store::PgStore;

pub use crate::store::sync_requests::{
    CompanySyncs, Requester, SyncRequestRow as SyncRequestInfo, SyncRequestStatus,
};

/// Which entities a request syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncSelection {
    /// Every entity of the registry (as the worker's qbo knows it when it runs).
    All,
    /// These, each once, in registry order (see [`SyncSelection::of`]).
    Entities(Vec<&'static Entity>),
}

impl SyncSelection {
    /// The selection of `entities`: each once, in registry order; none means all.
    pub fn of(entities: &[&'static Entity]) -> Self {
        if entities.is_empty() {
            return SyncSelection::All;
        }
        SyncSelection::Entities(
            ENTITIES
                .iter()
                .filter(|e| entities.iter().any(|s| s.cli_name == e.cli_name))
                .collect(),
        )
    }

    /// As stored: `["all"]` or the entity names.
    pub fn names(&self) -> Vec<String> {
        match self {
            SyncSelection::All => vec!["all".to_string()],
            SyncSelection::Entities(es) => es.iter().map(|e| e.cli_name.to_string()).collect(),
        }
    }

    /// The entities to sync.
    pub fn entities(&self) -> Vec<&'static Entity> {
        match self {
            SyncSelection::All => ENTITIES.iter().collect(),
            SyncSelection::Entities(es) => es.clone(),
        }
    }

    /// The selection a stored request names (an entity this qbo does not know is an error:
    /// a newer qbo enqueued it).
    pub fn from_names(names: &[String]) -> Result<Self, String> {
        if names.iter().any(|n| n == "all") {
            return Ok(SyncSelection::All);
        }
        let mut entities = Vec::with_capacity(names.len());
        for name in names {
            match crate::entities::find(name) {
                Some(e) => entities.push(e),
                None => return Err(format!("entity {name} is unknown to this qbo")),
            }
        }
        Ok(SyncSelection::of(&entities))
    }
}

/// A queued sync's options: `qbo sync`'s flags of the same names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SyncOptions {
    /// Where a first sync starts (required while an entity has no watermark).
    pub since: Option<NaiveDate>,
    /// Read from the watermark minus this many seconds.
    pub lookback_secs: i64,
    /// Entities per CDC call.
    pub cdc_batch: u16,
    /// Days per window on the window path.
    pub chunk_days: i64,
}

impl Default for SyncOptions {
    /// `qbo sync`'s defaults: `--lookback 10m --cdc-batch 10 --chunk-days 7`.
    fn default() -> Self {
        SyncOptions {
            since: None,
            lookback_secs: 600,
            cdc_batch: 10,
            chunk_days: 7,
        }
    }
}

impl SyncOptions {
    /// The same bounds as `qbo sync`'s flags.
    pub fn validate(&self) -> Result<(), FleetError> {
        let bad = |what: String| Err(FleetError::BadSyncOptions(what));
        let horizon = crate::watermark::CDC_HORIZON_DAYS * 86_400;
        if !(0..=horizon).contains(&self.lookback_secs) {
            return bad(format!(
                "lookback of {} s: give 0 to {horizon} s (CDC reaches 30 days back)",
                self.lookback_secs
            ));
        }
        if !(1..=64).contains(&self.cdc_batch) {
            return bad(format!("cdc_batch {}: give 1 to 64", self.cdc_batch));
        }
        if !(1..=3660).contains(&self.chunk_days) {
            return bad(format!("chunk_days {}: give 1 to 3660", self.chunk_days));
        }
        if let Some(since) = self.since {
            let today = chrono::Utc::now().date_naive();
            if since > today {
                return bad(format!(
                    "since {since} is in the future (today is {today}, UTC)"
                ));
            }
        }
        Ok(())
    }

    /// The stored form of options, read back (missing fields take their defaults).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value.clone()).map_err(|e| format!("unreadable options: {e}"))
    }
}

/// A sync to queue for one company.
#[derive(Debug, Clone)]
pub struct SyncRequest<'a> {
    pub realm_id: &'a str,
    pub selection: SyncSelection,
    pub options: SyncOptions,
    pub requested_by: Requester,
    /// The schedule that fired it (with `Requester::Schedule`).
    pub schedule_id: Option<Uuid>,
}

/// What [`enqueue_sync_or_existing`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueue {
    /// A new request was recorded.
    Created(Uuid),
    /// One for the same company and entities was already queued: this is it.
    Existing(Uuid),
}

impl Enqueue {
    pub fn request_id(self) -> Uuid {
        match self {
            Enqueue::Created(id) | Enqueue::Existing(id) => id,
        }
    }
}

/// Queues a sync of `req.realm_id` for the `qbo worker`s and returns its request id at once
/// (nothing here talks to QBO). While a request for the same company and entities is still
/// queued, that one's id is returned instead and nothing is recorded.
///
/// The company must be in `qbo companies` (unless that list is empty, as on a one-company
/// install). A paused or `needs_reauth` company's request waits, queued, until the company
/// is active again.
pub async fn enqueue_sync(store: &PgStore, req: &SyncRequest<'_>) -> Result<Uuid, FleetError> {
    Ok(enqueue_sync_or_existing(store, req).await?.request_id())
}

/// [`enqueue_sync`], telling whether the request is new.
pub async fn enqueue_sync_or_existing(
    store: &PgStore,
    req: &SyncRequest<'_>,
) -> Result<Enqueue, FleetError> {
    req.options.validate()?;
    known_company(store, req.realm_id).await?;
    let entities = req.selection.names();
    let options = serde_json::to_value(&req.options)
        .map_err(|e| FleetError::BadSyncOptions(e.to_string()))?;
    let recorded = store
        .insert_sync_request(
            Uuid::new_v4(),
            &NewSyncRequest {
                realm_id: req.realm_id,
                entities: &entities,
                options: &options,
                requested_by: req.requested_by,
                schedule_id: req.schedule_id,
            },
        )
        .await?;
    Ok(match recorded {
        Ok(id) => Enqueue::Created(id),
        Err(id) => Enqueue::Existing(id),
    })
}

async fn known_company(store: &PgStore, realm_id: &str) -> Result<(), FleetError> {
    if !realm_id.chars().all(|c| c.is_ascii_digit()) || realm_id.is_empty() {
        return Err(FleetError::UnknownCompany(realm_id.to_string()));
    }
    let companies = crate::companies::list(store.pool()).await?;
    if companies.is_empty() || companies.iter().any(|c| c.realm_id == realm_id) {
        Ok(())
    } else {
        Err(FleetError::UnknownCompany(realm_id.to_string()))
    }
}

/// One request's state (`None`: no such request).
pub async fn sync_request(
    store: &PgStore,
    id: Uuid,
) -> Result<Option<SyncRequestInfo>, FleetError> {
    Ok(store.sync_request(id).await?)
}

/// The company's oldest sync request, queued or running, whose entities overlap `selection`
/// (`All` overlaps every request), or `None` when there is none: a schedule's tick is
/// skipped while this is `Some`. A request whose worker died counts as running until
/// another worker has taken it over and finished it.
pub async fn sync_in_progress(
    store: &PgStore,
    realm_id: &str,
    selection: &SyncSelection,
) -> Result<Option<SyncRequestInfo>, FleetError> {
    Ok(store
        .open_sync_requests(realm_id, &selection.names())
        .await?
        .into_iter()
        .next())
}

/// The latest requests (of one company, or every company's), newest first.
pub async fn recent_sync_requests(
    store: &PgStore,
    realm_id: Option<&str>,
    limit: u32,
) -> Result<Vec<SyncRequestInfo>, FleetError> {
    Ok(store
        .recent_sync_requests(realm_id, i64::from(limit))
        .await?)
}

/// Per company with any: its sync requests queued and running.
pub async fn open_syncs_by_company(
    store: &PgStore,
    realm_id: Option<&str>,
) -> Result<Vec<CompanySyncs>, FleetError> {
    Ok(store.open_syncs_by_company(realm_id).await?)
}

/// Cancels a queued request. A running request is not stopped (a sync is short and safe to
/// finish); its status is returned unchanged, as is a finished one's. `None`: no such request.
pub async fn cancel_sync_request(
    store: &PgStore,
    id: Uuid,
) -> Result<Option<SyncRequestStatus>, FleetError> {
    Ok(store.cancel_sync_request(id).await?)
}
