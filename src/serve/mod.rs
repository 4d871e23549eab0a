//! `qbo serve`: one process that runs `qbo worker` slots, the scheduler and an HTTP server
//! (JSON API, status page, health and Prometheus metrics) over the same Postgres the fleet
//! coordinates through. Several instances may serve one database: nothing here is held in
//! memory that another instance would need.
//!
//! The HTTP surface is one router per concept, merged here:
//! - `health`: `/healthz`, `/readyz` (never behind the bearer token);
//! - `api`: `/api/...`, the JSON API mirroring the CLI;
//! - `page`: `/`, the server-rendered status page (its `/login` form is open);
//! - `metrics`: `/metrics`, Prometheus text;
//! - `schedules`: `/api/schedules...`.
//!
//! Every route but health passes `auth::require_token`.

pub mod api;
pub mod auth;
pub mod health;
pub mod metrics;
pub mod page;
pub mod schedules;
pub mod token_file;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::store::PgStore;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: PgStore,
    /// The operations the API, the page and the scheduler share (`crate::control`).
    pub control: crate::control::Control,
    /// `QBO_SERVE_TOKEN`; `None` only when listening on loopback.
    pub token: Option<Arc<SecretString>>,
    /// Cancelled on SIGTERM/SIGINT: long-polling handlers and background loops end.
    pub shutdown: CancellationToken,
    /// Where `/metrics` reads each company's refresh-token expiry.
    pub token_expiry: crate::metrics::TokenExpiry,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without QBO_SERVE_TOKEN: set QBO_SERVE_TOKEN (every request \
         but /healthz and /readyz must then carry `Authorization: Bearer <token>`), or listen \
         on a loopback address such as 127.0.0.1:8080"
    )]
    NoTokenOffLoopback(SocketAddr),
    #[error("QBO_SERVE_TOKEN is set but empty: give it a long random value (e.g. `openssl rand -hex 32`)")]
    EmptyToken,
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Server(#[source] std::io::Error),
}

/// Checks that the server may listen on `addr` with (or without) a token.
pub fn check_exposure(addr: SocketAddr, token: Option<&SecretString>) -> Result<(), ServeError> {
    use secrecy::ExposeSecret;
    match token {
        Some(t) if t.expose_secret().trim().is_empty() => Err(ServeError::EmptyToken),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(ServeError::NoTokenOffLoopback(addr)),
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(api::routes())
        .merge(schedules::routes())
        .merge(page::routes())
        .merge(metrics::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(health::routes())
        .merge(page::login_routes())
        .merge(protected)
        .with_state(state)
}

/// Binds `addr` and serves until `state.shutdown` is cancelled; requests in progress are let
/// finish. Returns the bound address through `bound` (the port when `addr` asked for 0).
pub async fn listen(
    addr: SocketAddr,
    state: AppState,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    bound(local);
    let shutdown = state.shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Server)
}
