//! `/healthz` (the process answers) and `/readyz` (Postgres reachable and every migration
//! this binary knows applied). Neither needs the bearer token: probes carry none.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match crate::store::migrations_current(state.store.pool()).await {
        Ok(None) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Ok(Some(missing)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "reason": format!("{missing} migrations of this binary are not applied: run `qbo migrate`"),
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reason": format!("Postgres: {e}") })),
        ),
    }
}
