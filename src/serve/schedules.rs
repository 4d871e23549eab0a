//! `/api/schedules`: the schedules `qbo schedule` manages, over HTTP.
//!
//! - `GET /api/schedules`: every schedule with its next tick and its latest firing;
//! - `POST /api/schedules`: add one (`{"name", "cron", "kind", "entity", "days",
//!   "realm_id" | "all_companies": true}`), 201 with it;
//! - `DELETE /api/schedules/{name}`: remove one (and its firings);
//! - `GET /api/schedules/{name}/firings?limit=N`: its latest firings (default 50), latest first.
//!
//! Errors are `{"error": "<the CLI's message>"}`: 400 bad input, 404 unknown schedule or
//! company, 409 a name already taken.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::api::{ApiError, ApiQuery};
use super::AppState;
use crate::schedule::{store, ErrorClass, ScheduleError, ScheduleSpec};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/schedules", get(list).post(add))
        .route("/api/schedules/{name}", axum::routing::delete(remove))
        .route("/api/schedules/{name}/firings", get(firings))
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        let status = match e.class() {
            ErrorClass::BadInput => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = crate::errors::chain(&e);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %message, "a schedules API request failed");
        }
        ApiError::new(status, message)
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn list(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let all = store::list(state.store.pool()).await?;
    Ok(Json(json!({ "schedules": all })))
}

async fn add(
    State(state): State<AppState>,
    body: Result<Json<ScheduleSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let Json(spec) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "bad schedule: {}; send {{\"name\", \"cron\", \"kind\": \"backfill\" or \"sync\", \
             \"entity\", \"days\" (backfill), and \"realm_id\" or \"all_companies\": true}}",
            e.body_text()
        ))
    })?;
    let new = spec.check()?;
    let s = store::add(state.store.pool(), &new).await?;
    Ok((StatusCode::CREATED, Json(json!(s))))
}

async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let s = store::remove(state.store.pool(), &name).await?;
    Ok(Json(json!({ "removed": s.name })))
}

#[derive(Debug, serde::Deserialize)]
struct FiringsQuery {
    limit: Option<i64>,
}

async fn firings(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<FiringsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let firings = store::firings(state.store.pool(), &name, limit).await?;
    Ok(Json(json!({ "schedule": name, "firings": firings })))
}
