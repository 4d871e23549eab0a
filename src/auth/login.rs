//! `qbo auth login`: the authorization-code flow with a loopback redirect listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use oauth2::{AuthorizationCode, CsrfToken, RedirectUrl, Scope};
use tokio::sync::{mpsc, oneshot};

use super::{
    classify_token_error, oauth_client, token_http_client, tokens_from_response, AuthError,
};
use crate::auth::store::TokenStore;
use crate::config::QboSettings;

pub const ACCOUNTING_SCOPE: &str = "com.intuit.quickbooks.accounting";

/// What the browser brought back to the loopback listener.
#[derive(Debug)]
struct Callback {
    code: String,
    state: String,
    realm_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot listen on {addr} for the OAuth redirect")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--redirect-uri must be http://localhost:<port>/<path> or http://127.0.0.1:<port>/<path>, got `{0}`")]
    BadRedirect(String),
    #[error("no authorization arrived within {0:?}; run `qbo auth login` again")]
    Timeout(Duration),
    #[error("Intuit returned an error instead of a code: {0}")]
    Denied(String),
    #[error("the redirect's state did not match this login (possible CSRF); nothing was saved")]
    StateMismatch,
    #[error(
        "you authorized realm {got}, but QBO_REALM_ID is {expected}; pick that company in the \
         consent screen, or change QBO_REALM_ID"
    )]
    WrongRealm { expected: String, got: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Runs the flow: prints the consent URL via `show_url`, waits for the redirect, exchanges the
/// code and saves the tokens. Returns the realm that was authorized.
pub async fn login(
    settings: &QboSettings,
    store: &dyn TokenStore,
    redirect_uri: &url::Url,
    wait: Duration,
    show_url: impl FnOnce(&str),
) -> Result<String, LoginError> {
    let addr = loopback_addr(redirect_uri)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LoginError::Listen { addr, source })?;
    let client = oauth_client(settings)?.set_redirect_uri(
        RedirectUrl::new(redirect_uri.to_string())
            .map_err(|_| LoginError::BadRedirect(redirect_uri.to_string()))?,
    );
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new(ACCOUNTING_SCOPE.to_string()))
        .url();
    show_url(url.as_str());

    let callback = wait_for_callback(listener, redirect_uri.path().to_string(), wait).await?;
    if callback.state != *csrf.secret() {
        return Err(LoginError::StateMismatch);
    }
    let realm_id = callback
        .realm_id
        .unwrap_or_else(|| settings.realm_id.clone());
    if !settings.realm_id.is_empty() && realm_id != settings.realm_id {
        return Err(LoginError::WrongRealm {
            expected: settings.realm_id.clone(),
            got: realm_id,
        });
    }
    let http = token_http_client(Duration::from_secs(60))?;
    let response = client
        .exchange_code(AuthorizationCode::new(callback.code))
        .request_async(&http)
        .await
        .map_err(|e| classify_token_error(&realm_id, e))?;
    let tokens = tokens_from_response(&realm_id, &response, None)?;
    store.save(&tokens).map_err(AuthError::Persist)?;
    Ok(realm_id)
}

fn loopback_addr(uri: &url::Url) -> Result<SocketAddr, LoginError> {
    let bad = || LoginError::BadRedirect(uri.to_string());
    if uri.scheme() != "http" {
        return Err(bad());
    }
    let ip = match uri.host_str() {
        Some("localhost") | Some("127.0.0.1") => std::net::Ipv4Addr::LOCALHOST,
        _ => return Err(bad()),
    };
    let port = uri.port().ok_or_else(bad)?;
    Ok(SocketAddr::from((ip, port)))
}

type Tx = mpsc::Sender<Result<Callback, LoginError>>;

async fn wait_for_callback(
    listener: tokio::net::TcpListener,
    path: String,
    wait: Duration,
) -> Result<Callback, LoginError> {
    let (tx, mut rx) = mpsc::channel::<Result<Callback, LoginError>>(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = Router::new().route(&path, get(receive)).with_state(tx);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let outcome = tokio::time::timeout(wait, rx.recv()).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    match outcome {
        Ok(Some(result)) => result,
        Ok(None) | Err(_) => Err(LoginError::Timeout(wait)),
    }
}

async fn receive(
    State(tx): State<Tx>,
    Query(q): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    let result = match (q.get("code"), q.get("state")) {
        (Some(code), Some(state)) => Ok(Callback {
            code: code.clone(),
            state: state.clone(),
            realm_id: q.get("realmId").cloned(),
        }),
        _ => Err(LoginError::Denied(
            q.get("error")
                .cloned()
                .unwrap_or_else(|| "no code in the redirect".into()),
        )),
    };
    let ok = result.is_ok();
    let _ = tx.send(result).await;
    Html(if ok {
        "<h1>qbo is authorized.</h1><p>You can close this tab and return to the terminal.</p>"
    } else {
        "<h1>Authorization failed.</h1><p>See the terminal for details.</p>"
    })
}
