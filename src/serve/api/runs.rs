//! `/api/runs` (list, one run with its windows, cancel, resume, retry-failed),
//! `/api/backfills` (start one for the workers) and `/api/syncs` (sync now).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{ApiError, ApiJson, ApiQuery};
use crate::control::{
    BackfillSpec, RunAction, RunChanged, RunDetail, RunFilter, RunRef, RunView, Started, SyncSpec,
    SyncsStarted,
};
use crate::fleet::SyncRequestInfo;
use crate::serve::AppState;

/// `?realm_id=&entity=&status=&kind=&limit=`, newest first.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(filter): ApiQuery<RunFilter>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    Ok(Json(state.control.runs(&filter).await?))
}

pub async fn one(
    State(state): State<AppState>,
    Path(run): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    Ok(Json(state.control.run(&parse_run(&run)?).await?))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(run): Path<String>,
) -> Result<Json<RunChanged>, ApiError> {
    act(&state, &run, RunAction::Cancel).await
}

pub async fn resume(
    State(state): State<AppState>,
    Path(run): Path<String>,
) -> Result<Json<RunChanged>, ApiError> {
    act(&state, &run, RunAction::Resume).await
}

pub async fn retry_failed(
    State(state): State<AppState>,
    Path(run): Path<String>,
) -> Result<Json<RunChanged>, ApiError> {
    act(&state, &run, RunAction::RetryFailed).await
}

async fn act(state: &AppState, run: &str, action: RunAction) -> Result<Json<RunChanged>, ApiError> {
    Ok(Json(
        state.control.act_on_run(&parse_run(run)?, action).await?,
    ))
}

/// 202: the runs are planned; the workers load them.
pub async fn start_backfill(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<BackfillSpec>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let started = state.control.start_backfill(&spec).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Sync now: 202 with a queued sync request per company; the workers run them.
pub async fn start_sync(
    State(state): State<AppState>,
    ApiJson(spec): ApiJson<SyncSpec>,
) -> Result<(StatusCode, Json<SyncsStarted>), ApiError> {
    let started = state.control.start_sync(&spec).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// One sync request: queued, running, success, partial, error or cancelled, with its runs.
pub async fn sync_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncRequestInfo>, ApiError> {
    Ok(Json(state.control.sync_request(&id).await?))
}

fn parse_run(run: &str) -> Result<RunRef, ApiError> {
    RunRef::parse(run).map_err(|e| ApiError::bad_request(e.to_string()))
}
