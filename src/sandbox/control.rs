//! The `/__sandbox` control API: lets another process (the `qbo` binary under test) read stats,
//! set faults, and edit or delete records, mirroring the `Sandbox` library API.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::faults::Faults;
use super::Inner;

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
}

pub async fn stats(State(inner): State<Arc<Inner>>) -> Json<super::Stats> {
    Json(inner.stats().clone())
}

pub async fn get_faults(State(inner): State<Arc<Inner>>) -> Json<Faults> {
    Json(inner.faults())
}

pub async fn put_faults(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            *inner.faults.write().unwrap_or_else(|e| e.into_inner()) = f.clone();
            Json(f).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

pub async fn records(State(inner): State<Arc<Inner>>, Path(entity): Path<String>) -> Response {
    match inner.records(&entity) {
        Some(r) => Json(r).into_response(),
        None => not_found(format!("unknown entity {entity}")),
    }
}

pub async fn touch(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
) -> Response {
    if inner.touch(&entity, &id) {
        Json(json!({ "touched": true, "entity": entity, "id": id })).into_response()
    } else {
        not_found(format!("no {entity} with Id {id}"))
    }
}

/// `POST /__sandbox/delete/{entity}/{id}`, like `Sandbox::delete_record`.
pub async fn delete(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
) -> Response {
    match inner.delete(&entity, &id) {
        Ok(()) => Json(json!({ "deleted": true, "entity": entity, "id": id })).into_response(),
        Err(reason) => not_found(format!("cannot delete {entity} {id}: {reason}")),
    }
}

/// `POST /__sandbox/deactivate/{entity}/{id}`, like `Sandbox::deactivate_record`.
pub async fn deactivate(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
) -> Response {
    match inner.deactivate(&entity, &id) {
        Ok(()) => Json(json!({ "deactivated": true, "entity": entity, "id": id })).into_response(),
        Err(reason) => not_found(format!("cannot deactivate {entity} {id}: {reason}")),
    }
}

/// `GET /__sandbox/deleted/{entity}`: tombstoned Ids, like `Sandbox::deleted_ids`.
pub async fn deleted(State(inner): State<Arc<Inner>>, Path(entity): Path<String>) -> Response {
    match inner.deleted_ids(&entity) {
        Some(ids) => Json(ids).into_response(),
        None => not_found(format!("unknown entity {entity}")),
    }
}
