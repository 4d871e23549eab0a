//! `/api/companies`: `qbo companies list` with each company's queue, pause and resume.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;

use super::ApiError;
use crate::companies::Company;
use crate::control::CompanyView;
use crate::serve::AppState;

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<CompanyView>>, ApiError> {
    Ok(Json(state.control.companies().await?))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: Option<String>,
}

/// Body optional: `{"reason": "customer left"}`.
pub async fn pause(
    State(state): State<AppState>,
    Path(realm_id): Path<String>,
    body: Bytes,
) -> Result<Json<Company>, ApiError> {
    let body: PauseBody = if body.iter().all(u8::is_ascii_whitespace) {
        PauseBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not what this endpoint takes: {e}"
            ))
        })?
    };
    Ok(Json(
        state
            .control
            .pause_company(&realm_id, body.reason.as_deref())
            .await?,
    ))
}

pub async fn resume(
    State(state): State<AppState>,
    Path(realm_id): Path<String>,
) -> Result<Json<Company>, ApiError> {
    Ok(Json(state.control.resume_company(&realm_id).await?))
}
