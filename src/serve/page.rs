//! The status page at `/`: companies and their health, runs with their progress, one run's
//! windows at `/runs/{id}`, a form to queue a backfill and buttons to retry a run's failed
//! windows, resume it or cancel it. Server-rendered HTML (see `page::views`), a small inline script
//! for auto-refresh and nothing to build.
//!
//! Forms post to page routes that call the same operations as the JSON API and redirect
//! back (303) with the outcome in the query string (`?ok=..` or `?err=..`), shown once.
//! Browsers log in at `/login` with `QBO_SERVE_TOKEN` and carry a session cookie from then
//! on (see `serve::auth`).

mod actions;
mod data;
mod html;
mod views;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::ExposeSecret;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{same_secret, session_value, SESSION_COOKIE};
use super::AppState;
use html::Flash;

/// The latest runs the overview lists.
const RUNS_SHOWN: i64 = 50;

/// The page and its actions (behind the token, like the API).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/runs/{id}", get(run_page))
        .route("/backfills", post(start_backfill))
        .route("/runs/{id}/{action}", post(run_action))
}

/// The login form and logout: open (a browser without the cookie must reach them).
pub fn login_routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

#[derive(Debug, Default, Deserialize)]
struct FlashQuery {
    ok: Option<String>,
    err: Option<String>,
}

impl FlashQuery {
    fn take(self) -> Option<Flash> {
        match (self.ok, self.err) {
            (_, Some(e)) => Some(Flash::Err(e)),
            (Some(m), None) => Some(Flash::Ok(m)),
            (None, None) => None,
        }
    }
}

/// Redirects to `to` (303, so the browser GETs it) with the outcome to show.
fn back(to: &str, outcome: Result<String, String>) -> Response {
    let (key, message) = match outcome {
        Ok(m) => ("ok", m),
        Err(m) => ("err", m),
    };
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(key, &message)
        .finish();
    Redirect::to(&format!("{to}?{query}")).into_response()
}

fn failure(state: &AppState, e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "status page");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(views::failure(&e.to_string(), state.token.is_some())),
    )
        .into_response()
}

async fn overview(State(state): State<AppState>, Query(q): Query<FlashQuery>) -> Response {
    let companies = match data::companies(&state.store).await {
        Ok(c) => c,
        Err(e) => return failure(&state, e),
    };
    let runs = match data::runs(&state.control, RUNS_SHOWN).await {
        Ok(r) => r,
        Err(e) => return failure(&state, e),
    };
    Html(views::overview(&views::Overview {
        companies: &companies,
        runs: &runs,
        now: chrono::Utc::now(),
        flash: q.take(),
        logout: state.token.is_some(),
    }))
    .into_response()
}

/// A run id as given in a path: the full uuid, or a unique prefix of at least 4 hex digits.
async fn resolve(state: &AppState, id: &str) -> Result<Option<Uuid>, crate::store::StoreError> {
    if let Ok(id) = Uuid::parse_str(id) {
        return Ok(Some(id));
    }
    let hex = id.to_ascii_lowercase().replace('-', "");
    if hex.len() < 4 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let found = state.store.runs_with_prefix(&hex, 2).await?;
    Ok(match found.as_slice() {
        [one] => Some(one.run_id),
        _ => None,
    })
}

async fn run_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FlashQuery>,
) -> Response {
    let logout = state.token.is_some();
    let missing = || {
        (
            StatusCode::NOT_FOUND,
            Html(views::not_found(&format!("No run {id}."), logout)),
        )
            .into_response()
    };
    let run_id = match resolve(&state, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => return missing(),
        Err(e) => return failure(&state, e),
    };
    let (run, windows) = match data::run(&state.control, run_id).await {
        Ok(found) => found,
        Err(e) if e.kind() == crate::control::ErrorKind::NotFound => return missing(),
        Err(e) => return failure(&state, e),
    };
    Html(views::run_page(
        &run,
        &windows,
        chrono::Utc::now(),
        q.take(),
        logout,
    ))
    .into_response()
}

async fn start_backfill(
    State(state): State<AppState>,
    Form(form): Form<actions::BackfillForm>,
) -> Response {
    back("/", actions::start_backfill(&state, &form).await)
}

async fn run_action(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    let Some(action) = actions::parse_action(&action) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let run_id = match resolve(&state, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => return back("/", Err(format!("no run {id}"))),
        Err(e) => return back("/", Err(e.to_string())),
    };
    back(
        &format!("/runs/{run_id}"),
        actions::on_run(&state, run_id, action).await,
    )
}

async fn login_form(State(state): State<AppState>) -> Response {
    if state.token.is_none() {
        // Nothing to log in to: every request is let through on loopback.
        return Redirect::to("/").into_response();
    }
    Html(views::login(None)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return Redirect::to("/").into_response();
    };
    let expected = expected.expose_secret();
    if !same_secret(form.token.trim(), expected) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(views::login(Some(
                "That is not the token this server was started with.",
            ))),
        )
            .into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        session_value(expected)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout() -> Response {
    let cookie = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}
