//! `qbo auth login`: the authorization-code flow with a loopback redirect listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use oauth2::{AuthorizationCode, CsrfToken, RedirectUrl, Scope};
use tokio::sync::{mpsc, oneshot};

use crate::auth::store::TokenStore;
use crate::auth::{
    classify_token_error, oauth_client, token_http_client, tokens_from_response, AuthError,
};
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
/// code and saves the tokens. Returns the realm that was authorized. The browser's page says
/// whether it worked, and why not.
pub async fn login(
    settings: &QboSettings,
    store: &Arc<dyn TokenStore>,
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

    let mut server = CallbackServer::start(listener, redirect_uri.path());
    let outcome = match tokio::time::timeout(wait, server.requests.recv()).await {
        Ok(Some((received, page))) => {
            let outcome = match received {
                Ok(callback) => finish(settings, store, &client, csrf, callback).await,
                Err(e) => Err(e),
            };
            let _ = page.send(match &outcome {
                Ok(realm) => Page::Authorized(realm.clone()),
                Err(e) => Page::Failed(e.to_string()),
            });
            outcome
        }
        Ok(None) | Err(_) => Err(LoginError::Timeout(wait)),
    };
    server.stop().await;
    outcome
}

/// Checks the redirect against this login, exchanges its code and saves the tokens.
async fn finish(
    settings: &QboSettings,
    store: &Arc<dyn TokenStore>,
    client: &crate::auth::OAuthClient,
    csrf: CsrfToken,
    callback: Callback,
) -> Result<String, LoginError> {
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
        .map_err(|e| classify_token_error(&realm_id, &store.describe(&realm_id), e))?;
    let tokens = tokens_from_response(&realm_id, &response, None)?;
    store.save(&tokens).await.map_err(AuthError::Persist)?;
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

/// What the browser is shown once the login has succeeded or failed.
enum Page {
    Authorized(String),
    Failed(String),
}

type Request = (Result<Callback, LoginError>, oneshot::Sender<Page>);
type Tx = mpsc::Sender<Request>;

/// The loopback listener. Its handler holds the browser's request open until the login
/// has an outcome, so the page tells the truth.
struct CallbackServer {
    requests: mpsc::Receiver<Request>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl CallbackServer {
    fn start(listener: tokio::net::TcpListener, path: &str) -> Self {
        let (tx, requests) = mpsc::channel::<Request>(1);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let app = Router::new().route(path, get(receive)).with_state(tx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        CallbackServer {
            requests,
            stop,
            task,
        }
    }

    /// Stops listening once the page in flight has been sent.
    async fn stop(self) {
        let _ = self.stop.send(());
        drop(self.requests);
        let _ = self.task.await;
    }
}

async fn receive(State(tx): State<Tx>, Query(q): Query<HashMap<String, String>>) -> Html<String> {
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
    let (page_tx, page_rx) = oneshot::channel();
    let page = match tx.send((result, page_tx)).await {
        Ok(()) => page_rx.await.ok(),
        Err(_) => None,
    };
    Html(match page {
        Some(Page::Authorized(realm)) => format!(
            "<h1>qbo is authorized.</h1><p>Company (realm) {} is connected. You can close this \
             tab and return to the terminal.</p>",
            escape(&realm)
        ),
        Some(Page::Failed(why)) => format!(
            "<h1>Authorization FAILED.</h1><p>{}</p><p>Nothing was saved. See the terminal, \
             then run <code>qbo auth login</code> again.</p>",
            escape(&why)
        ),
        None => "<h1>Authorization FAILED.</h1><p>This login is no longer waiting (it timed \
                 out or already received a redirect). Run <code>qbo auth login</code> again.</p>"
            .to_string(),
    })
}

/// The page quotes errors that may contain text from the redirect's query string.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
