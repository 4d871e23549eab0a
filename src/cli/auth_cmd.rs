//! `qbo auth login` and `qbo auth status`.

use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};

use super::{CliError, Outcome, QboArgs};
use crate::auth::{self, login};

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Authorize qbo with a QuickBooks company: prints a consent URL, waits for Intuit's
    /// redirect on a loopback address, and saves the tokens in the token store.
    Login(LoginArgs),
    /// Which company is authorized and when its tokens expire (never the tokens themselves).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The redirect URI registered in your Intuit app; qbo listens on its port.
    #[arg(
        long,
        env = "QBO_REDIRECT_URI",
        default_value = "http://localhost:8765/callback"
    )]
    pub redirect_uri: String,
    /// How long to wait for the browser.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub qbo: QboArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub qbo: QboArgs,
}

pub async fn run(cmd: AuthCommand) -> Result<Outcome, CliError> {
    match cmd {
        AuthCommand::Login(args) => run_login(args).await,
        AuthCommand::Status(args) => run_status(args),
    }
}

async fn run_login(args: LoginArgs) -> Result<Outcome, CliError> {
    let mut qbo = args.qbo.clone();
    // The realm is learned from the redirect when it is not configured.
    let realm_known = qbo.realm_id.is_some();
    if !realm_known {
        qbo.realm_id = Some("0".into());
    }
    let mut settings = qbo.settings().map_err(CliError::usage)?;
    if !realm_known {
        settings.realm_id.clear();
    }
    let redirect = url::Url::parse(&args.redirect_uri).map_err(|e| {
        CliError::usage(anyhow::anyhow!(
            "--redirect-uri `{}`: {e}",
            args.redirect_uri
        ))
    })?;
    let store = auth::store::open(&settings.token_store).map_err(CliError::usage)?;
    let realm = login::login(
        &settings,
        store.as_ref(),
        &redirect,
        Duration::from_secs(args.timeout_secs),
        |url| {
            eprintln!("Open this URL in a browser, sign in and pick the company to authorize:\n\n  {url}\n");
            eprintln!("Waiting for Intuit to redirect to {} ...", args.redirect_uri);
        },
    )
    .await
    .map_err(|e| match e {
        login::LoginError::BadRedirect(_) | login::LoginError::Listen { .. } => CliError::usage(e),
        login::LoginError::Auth(a) if a.needs_human() => CliError {
            outcome: Outcome::NeedsHuman,
            error: a.into(),
        },
        other => CliError::failed(other),
    })?;
    outln!(
        "authorized realm {realm}; tokens saved in {}",
        store.describe()
    );
    Ok(Outcome::Success)
}

fn run_status(args: StatusArgs) -> Result<Outcome, CliError> {
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = auth::store::open(&settings.token_store).map_err(CliError::usage)?;
    let Some(t) = store.load(&settings.realm_id).map_err(CliError::usage)? else {
        eprintln!(
            "no tokens for realm {} in {}; run `qbo auth login`",
            settings.realm_id,
            store.describe()
        );
        return Ok(Outcome::NeedsHuman);
    };
    let now = Utc::now();
    let when = |t: Option<chrono::DateTime<Utc>>| match t {
        Some(t) if t > now => format!("{t} (in {} min)", (t - now).num_minutes()),
        Some(t) => format!("{t} (expired)"),
        None => "unknown".to_string(),
    };
    outln!("realm:            {}", t.realm_id);
    outln!("token store:      {}", store.describe());
    outln!(
        "access token:     {}",
        if t.access_token.is_some() {
            format!("expires {}", when(t.access_expires_at))
        } else {
            "none yet (the next run refreshes)".to_string()
        }
    );
    outln!("refresh token:    expires {}", when(t.refresh_expires_at));
    outln!("last saved:       {}", t.updated_at);
    if t.refresh_expires_at.is_some_and(|e| e <= now) {
        eprintln!("the refresh token has expired; run `qbo auth login`");
        return Ok(Outcome::NeedsHuman);
    }
    Ok(Outcome::Success)
}
