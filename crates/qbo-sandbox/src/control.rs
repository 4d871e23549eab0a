//! The `/__sandbox` control API: lets another process (the `qbo` binary under test, or an
//! operator) read stats, set faults, list the companies with their refresh tokens, revoke a
//! company's tokens, and edit or delete records, mirroring the `Sandbox` library API. Record
//! endpoints act on the first company unless `?realm=ID` names another.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::faults::Faults;
use super::realm::Realm;
use super::{lock, Inner};

fn not_found(error: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response()
}

/// `?realm=ID` on the record endpoints.
#[derive(Deserialize)]
pub struct Which {
    realm: Option<String>,
}

/// The company `which` names (the first when it names none), or why there is none.
fn company<'a>(inner: &'a Inner, which: &Which) -> Result<&'a Realm, String> {
    match which.realm.as_deref() {
        None => Ok(&inner.realms[0]),
        Some(id) => inner
            .realm_ix(id)
            .map(|ix| &inner.realms[ix])
            .ok_or_else(|| format!("this sandbox serves no realm {id}")),
    }
}

pub async fn stats(State(inner): State<Arc<Inner>>) -> Json<super::Stats> {
    Json(inner.snapshot())
}

/// `GET /__sandbox/realms`: every company's realm id, seed and a refresh token that works
/// now (its latest; a new one if that was revoked or expired, as if the user connected the
/// company again), first company first.
pub async fn realms(State(inner): State<Arc<Inner>>) -> Response {
    let ttl = inner.cfg.refresh_token_ttl;
    let mut oauth = lock(&inner.oauth);
    let list: Vec<_> = inner
        .realms
        .iter()
        .enumerate()
        .map(|(ix, r)| {
            json!({
                "realm_id": r.id,
                "seed": r.seed,
                "refresh_token": oauth.current_refresh_token(ix, ttl),
            })
        })
        .collect();
    Json(list).into_response()
}

/// `POST /__sandbox/realms/{realm}/revoke`: the user disconnects the app from this company
/// (its refresh tokens answer `invalid_grant`, its access tokens 401), like
/// `Sandbox::revoke_tokens`.
pub async fn revoke(State(inner): State<Arc<Inner>>, Path(realm): Path<String>) -> Response {
    let Some(ix) = inner.realm_ix(&realm) else {
        return not_found(format!("this sandbox serves no realm {realm}"));
    };
    inner.revoke(ix);
    Json(json!({ "revoked": true, "realm_id": realm })).into_response()
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

pub async fn records(
    State(inner): State<Arc<Inner>>,
    Path(entity): Path<String>,
    Query(which): Query<Which>,
) -> Response {
    let c = match company(&inner, &which) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    match Inner::records(c, &entity) {
        Some(r) => Json(r).into_response(),
        None => not_found(format!("unknown entity {entity}")),
    }
}

pub async fn touch(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Response {
    let c = match company(&inner, &which) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    if inner.touch(c, &entity, &id) {
        Json(json!({ "touched": true, "entity": entity, "id": id })).into_response()
    } else {
        not_found(format!("no {entity} with Id {id}"))
    }
}

/// `POST /__sandbox/delete/{entity}/{id}`, like `Sandbox::delete_record`.
pub async fn delete(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Response {
    let c = match company(&inner, &which) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    match inner.delete(c, &entity, &id) {
        Ok(()) => Json(json!({ "deleted": true, "entity": entity, "id": id })).into_response(),
        Err(reason) => not_found(format!("cannot delete {entity} {id}: {reason}")),
    }
}

/// `POST /__sandbox/deactivate/{entity}/{id}`, like `Sandbox::deactivate_record`.
pub async fn deactivate(
    State(inner): State<Arc<Inner>>,
    Path((entity, id)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Response {
    let c = match company(&inner, &which) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    match inner.deactivate(c, &entity, &id) {
        Ok(()) => Json(json!({ "deactivated": true, "entity": entity, "id": id })).into_response(),
        Err(reason) => not_found(format!("cannot deactivate {entity} {id}: {reason}")),
    }
}

/// `GET /__sandbox/deleted/{entity}`: tombstoned Ids, like `Sandbox::deleted_ids`.
pub async fn deleted(
    State(inner): State<Arc<Inner>>,
    Path(entity): Path<String>,
    Query(which): Query<Which>,
) -> Response {
    let c = match company(&inner, &which) {
        Ok(c) => c,
        Err(e) => return not_found(e),
    };
    match Inner::deleted_ids(c, &entity) {
        Some(ids) => Json(ids).into_response(),
        None => not_found(format!("unknown entity {entity}")),
    }
}
