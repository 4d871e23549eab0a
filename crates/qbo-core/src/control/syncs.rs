//! Sync now: a queued sync per company for the workers (`fleet::enqueue_sync`), and the
//! state of such requests.

use uuid::Uuid;

use super::{Control, ControlError};
use crate::entities::Selection;
use crate::fleet::{
    enqueue_sync_or_existing, Enqueue, Requester, SyncOptions, SyncRequest, SyncRequestInfo,
    SyncSelection,
};

/// `{"entity": "invoices" | "all", "realm_id": "..."}` or `"all_companies": true`;
/// optionally `since` (YYYY-MM-DD, where a first sync starts), `lookback_secs`,
/// `cdc_batch`, `chunk_days` (`qbo sync`'s flags of the same names).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// An entity or `all` (the default).
    pub entity: Option<String>,
    pub realm_id: Option<String>,
    #[serde(default)]
    pub all_companies: bool,
    pub since: Option<String>,
    pub lookback_secs: Option<i64>,
    pub cdc_batch: Option<u16>,
    pub chunk_days: Option<i64>,
}

/// One company's request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueuedSync {
    pub realm_id: String,
    pub request_id: Uuid,
    /// A request for the same company and entities was already queued: this is it (its
    /// own options stand).
    pub existing: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncsStarted {
    pub requests: Vec<QueuedSync>,
    /// One line per company `all_companies` left out.
    pub skipped: Vec<String>,
    pub message: String,
}

impl SyncSpec {
    fn validate(&self) -> Result<(SyncSelection, SyncOptions), ControlError> {
        let invalid = ControlError::Invalid;
        let selection = match self.entity.as_deref().map(str::trim) {
            None | Some("") => SyncSelection::All,
            Some(e) => match e.parse::<Selection>().map_err(|e| invalid(e.to_string()))? {
                Selection::All => SyncSelection::All,
                Selection::One(e) => SyncSelection::of(&[e]),
            },
        };
        let defaults = SyncOptions::default();
        let options = SyncOptions {
            since: match self.since.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(d) => Some(crate::chunks::parse_date(d).map_err(|e| invalid(e.to_string()))?),
            },
            lookback_secs: self.lookback_secs.unwrap_or(defaults.lookback_secs),
            cdc_batch: self.cdc_batch.unwrap_or(defaults.cdc_batch),
            chunk_days: self.chunk_days.unwrap_or(defaults.chunk_days),
        };
        options.validate()?;
        Ok((selection, options))
    }
}

impl Control {
    /// Queues a sync of the company (or of every active one) for the workers and returns
    /// at once. While a request for the same company and entities is still queued, that
    /// one is returned instead of a new one.
    pub async fn start_sync(&self, spec: &SyncSpec) -> Result<SyncsStarted, ControlError> {
        let (selection, options) = spec.validate()?;
        let realm = spec
            .realm_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let (realms, skipped) = match (realm, spec.all_companies) {
            (Some(_), true) => {
                return Err(ControlError::Invalid(
                    "give realm_id or all_companies: true, not both".into(),
                ))
            }
            (None, false) => {
                return Err(ControlError::Invalid(
                    "say which company: realm_id, or all_companies: true for every active one"
                        .into(),
                ))
            }
            (Some(realm), false) => {
                super::actions::valid_realm(realm)?;
                (vec![realm.to_string()], Vec::new())
            }
            (None, true) => self.active_realms().await?,
        };
        let mut requests = Vec::with_capacity(realms.len());
        for realm_id in &realms {
            let queued = enqueue_sync_or_existing(
                &self.store,
                &SyncRequest {
                    realm_id,
                    selection: selection.clone(),
                    options: options.clone(),
                    requested_by: Requester::Api,
                    schedule_id: None,
                },
            )
            .await?;
            requests.push(QueuedSync {
                realm_id: realm_id.clone(),
                request_id: queued.request_id(),
                existing: matches!(queued, Enqueue::Existing(_)),
            });
        }
        let message = format!(
            "queued a sync of {} companies; the workers (`qbo serve --workers N`, `qbo worker`) run it",
            requests.len()
        );
        Ok(SyncsStarted {
            requests,
            skipped,
            message,
        })
    }

    /// One sync request's state.
    pub async fn sync_request(&self, id: &str) -> Result<SyncRequestInfo, ControlError> {
        let id = Uuid::try_parse(id.trim()).map_err(|_| {
            ControlError::Invalid(format!("`{id}` is not a sync request id (a uuid)"))
        })?;
        crate::fleet::sync_request(&self.store, id)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("no sync request {id}")))
    }
}
