//! The status page at `/`: companies and their health, runs with their progress, one run's
//! windows at `/runs/{id}`, a form to queue a backfill and buttons to retry a run's failed
//! windows, resume it or cancel it. Server-rendered HTML (see `page::views`), a small inline script
//! for auto-refresh and nothing to build.
//!
//! Forms post to page routes that call the same operations as the JSON API and redirect
//! back (303) with an outcome code in the query string (`?done=cancelled&run=..`), which the
//! page turns into one of its fixed sentences; a refused action renders its page with the
//! error instead (400). Browsers log in at `/login` with `QBO_SERVE_TOKEN` and carry a
//! session cookie from then on (see `serve::auth`); form posts must come from this server's
//! own page (`auth::same_origin`).

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
use crate::control::RunAction;
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
        .route_layer(axum::middleware::from_fn(super::auth::same_origin))
}

/// The login form and logout: open (a browser without the cookie must reach them).
pub fn login_routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route(
            "/logout",
            post(logout).layer(axum::middleware::from_fn(super::auth::same_origin)),
        )
}

/// What the page says after one of its forms redirected back (303): an outcome code and the
/// figures it needs (`?done=cancelled&run=<id>&windows=3`), never a sentence, so that a link
/// crafted elsewhere can at most make the page repeat one of its own fixed sentences. An
/// action that failed does not redirect: its page is rendered with the error (status 400).
#[derive(Debug, Default, Deserialize)]
struct Outcome {
    done: Option<String>,
    run: Option<String>,
    runs: Option<String>,
    windows: Option<String>,
    skipped: Option<String>,
}

impl Outcome {
    fn take(self) -> Option<Flash> {
        let run = self.run.as_deref().and_then(|r| Uuid::parse_str(r).ok());
        let count = |v: &Option<String>| v.as_deref().and_then(|n| n.parse::<u64>().ok());
        let (runs, windows, skipped) = (
            count(&self.runs),
            count(&self.windows),
            count(&self.skipped),
        );
        let sentence = match (self.done.as_deref()?, run) {
            ("queued", Some(run)) => format!("Queued run {run}: the workers load it."),
            ("queued", None) => format!("Queued {} runs: the workers load them.", runs?),
            ("cancelled", Some(run)) => format!(
                "Run {run} is cancelled: its {} unfinished windows will not be loaded.",
                windows?
            ),
            ("resumed", Some(run)) => format!(
                "Run {run} is queued: the workers load its {} unfinished windows.",
                windows?
            ),
            ("retried", Some(run)) => format!(
                "Run {run} is queued: the workers load its {} failed windows again.",
                windows?
            ),
            _ => return None,
        };
        Some(Flash::Ok(match skipped {
            Some(n) if n > 0 && self.done.as_deref() == Some("queued") => format!(
                "{sentence} {n} companies were left out (paused, needing a login or of another \
                 environment: see `qbo companies`)."
            ),
            _ => sentence,
        }))
    }
}

/// Redirects to `to` (303, so the browser GETs it) with the outcome's query string.
fn back(to: &str, pairs: &[(&str, String)]) -> Response {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
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

/// The status an action's error is rendered with: 400, or the failure page for a bug or
/// Postgres.
fn refused(e: &crate::control::ControlError) -> Option<StatusCode> {
    match e.kind() {
        crate::control::ErrorKind::Internal => None,
        _ => Some(StatusCode::BAD_REQUEST),
    }
}

async fn overview(State(state): State<AppState>, Query(q): Query<Outcome>) -> Response {
    render_overview(&state, q.take(), StatusCode::OK).await
}

async fn render_overview(state: &AppState, flash: Option<Flash>, status: StatusCode) -> Response {
    let companies = match data::companies(&state.store).await {
        Ok(c) => c,
        Err(e) => return failure(state, e),
    };
    let runs = match data::runs(&state.control, RUNS_SHOWN).await {
        Ok(r) => r,
        Err(e) => return failure(state, e),
    };
    (
        status,
        Html(views::overview(&views::Overview {
            companies: &companies,
            runs: &runs,
            now: chrono::Utc::now(),
            flash,
            logout: state.token.is_some(),
        })),
    )
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

fn missing(state: &AppState, id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(views::not_found(
            &format!("No run {id}."),
            state.token.is_some(),
        )),
    )
        .into_response()
}

async fn run_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Outcome>,
) -> Response {
    match resolve(&state, &id).await {
        Ok(Some(run_id)) => render_run(&state, run_id, q.take(), StatusCode::OK).await,
        Ok(None) => missing(&state, &id),
        Err(e) => failure(&state, e),
    }
}

async fn render_run(
    state: &AppState,
    run_id: Uuid,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let (run, windows) = match data::run(&state.control, run_id).await {
        Ok(found) => found,
        Err(e) if e.kind() == crate::control::ErrorKind::NotFound => {
            return missing(state, &run_id.to_string())
        }
        Err(e) => return failure(state, e),
    };
    (
        status,
        Html(views::run_page(
            &run,
            &windows,
            chrono::Utc::now(),
            flash,
            state.token.is_some(),
        )),
    )
        .into_response()
}

async fn start_backfill(
    State(state): State<AppState>,
    Form(form): Form<actions::BackfillForm>,
) -> Response {
    match actions::start_backfill(&state, &form).await {
        Ok(started) => {
            let mut pairs = vec![("done", "queued".to_string())];
            match started.runs.as_slice() {
                [one] => pairs.push(("run", one.run_id.to_string())),
                runs => pairs.push(("runs", runs.len().to_string())),
            }
            if !started.skipped.is_empty() {
                pairs.push(("skipped", started.skipped.len().to_string()));
            }
            back("/", &pairs)
        }
        Err(e) => match refused(&e) {
            Some(status) => render_overview(&state, Some(Flash::Err(e.to_string())), status).await,
            None => failure(&state, e),
        },
    }
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
        Ok(None) => return missing(&state, &id),
        Err(e) => return failure(&state, e),
    };
    match actions::on_run(&state, run_id, action).await {
        Ok(changed) => {
            let done = match action {
                RunAction::Cancel => "cancelled",
                RunAction::Resume => "resumed",
                RunAction::RetryFailed => "retried",
            };
            back(
                &format!("/runs/{run_id}"),
                &[
                    ("done", done.to_string()),
                    ("run", run_id.to_string()),
                    ("windows", changed.windows.to_string()),
                ],
            )
        }
        Err(e) => match refused(&e) {
            Some(status) => {
                render_run(&state, run_id, Some(Flash::Err(e.to_string())), status).await
            }
            None => failure(&state, e),
        },
    }
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
