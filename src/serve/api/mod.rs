//! The JSON API, mirroring the CLI (see `runbooks/serve.md`): companies, runs, starting a
//! backfill, cancelling, resuming and retrying a run. The handlers only translate HTTP to
//! `crate::control` and back; the operations, their validation and their messages are
//! shared with the status page and the scheduler there.

mod companies;
mod error;
mod runs;

pub use error::{ApiError, ApiJson, ApiQuery};

use axum::routing::{get, post};
use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/companies", get(companies::list))
        .route("/api/companies/{realm_id}/pause", post(companies::pause))
        .route("/api/companies/{realm_id}/resume", post(companies::resume))
        .route("/api/runs", get(runs::list))
        .route("/api/runs/{run}", get(runs::one))
        .route("/api/runs/{run}/cancel", post(runs::cancel))
        .route("/api/runs/{run}/resume", post(runs::resume))
        .route("/api/runs/{run}/retry-failed", post(runs::retry_failed))
        .route("/api/backfills", post(runs::start_backfill))
        .route("/api/syncs", post(runs::start_sync))
        .route("/api/syncs/{id}", get(runs::sync_request))
}
