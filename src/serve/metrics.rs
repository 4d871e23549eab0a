//! `GET /metrics`: Prometheus text (0.0.4), behind the bearer token like every route but
//! health. See `crate::metrics` for what it holds and runbooks/serve.md ("Metrics") for each
//! metric. A scrape runs a few aggregate queries in one read-only transaction; when Postgres
//! does not answer, it still answers 200 with this process's metrics and
//! `qbo_metrics_postgres_up 0`, so the scrape itself says what is wrong.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = crate::metrics::render(state.store.pool(), &state.token_expiry).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}
