//! Routes of this module are filled in by their owner; empty until then.

use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
