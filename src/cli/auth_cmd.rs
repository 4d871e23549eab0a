//! `qbo auth login`, `status`, `import` and `forget`.

use std::io::{IsTerminal, Read};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use super::login;
use super::{CliError, DbArgs, Outcome, QboArgs};
use crate::auth;
use crate::auth::store::{self, TokenStore, Tokens};
use crate::config::{self, TokenStoreSpec};

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Authorize qbo with a QuickBooks company: prints a consent URL, waits for Intuit's
    /// redirect on a loopback address, and saves the tokens in the token store.
    Login(LoginArgs),
    /// Which company is authorized and when its tokens expire (never the tokens themselves).
    Status(StoreArgs),
    /// Store a refresh token you already have (from Intuit's OAuth Playground, or the
    /// `qbo sandbox` banner), read from stdin (never from the command line) so it stays out
    /// of your shell history: `qbo auth import --realm-id R < token.txt`. Replaces the
    /// company's stored tokens, adds the company to `qbo companies` and makes it active again
    /// if it was needs_reauth.
    Import(ImportArgs),
    /// Remove the company's tokens from the token store.
    Forget(StoreArgs),
    /// Seal every company's tokens in ops.oauth_tokens with the current QBO_TOKEN_KEY, during
    /// a rotation: once every process has the new key as QBO_TOKEN_KEY and the old one as
    /// QBO_TOKEN_KEY_PREVIOUS, run this, then drop QBO_TOKEN_KEY_PREVIOUS (the four phases
    /// are in runbooks/tokens.md).
    Rekey(RekeyArgs),
}

#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub db: DbArgs,
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
    /// Where the authorized company is added to `qbo companies`.
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Which of Intuit's hosts the company lives on (recorded in `qbo companies`).
    #[arg(
        long,
        env = "QBO_ENVIRONMENT",
        value_enum,
        default_value = "production"
    )]
    pub environment: config::Environment,
}

/// Only the company and the token store matter here; the app's credentials are not needed.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The company (realm) id.
    #[arg(long, env = "QBO_REALM_ID")]
    pub realm_id: Option<String>,
    /// Where tokens are kept: `keyring` (the OS keyring), `file:<path>` (mode 0600), or
    /// `postgres` (ops.oauth_tokens in DATABASE_URL, sealed with QBO_TOKEN_KEY: for fleets).
    #[arg(long, env = "QBO_TOKEN_STORE", default_value = "keyring")]
    pub token_store: String,
    /// The database: the token store with `postgres`, and where `qbo companies` are kept.
    #[command(flatten)]
    pub db: DbArgs,
}

impl StoreArgs {
    async fn open(&self) -> Result<(String, Arc<dyn TokenStore>), CliError> {
        let realm = self
            .realm_id
            .clone()
            .filter(|r| !r.trim().is_empty())
            .ok_or(config::ConfigError::Missing {
                name: "QBO_REALM_ID",
                hint: "set it to the company's realm id",
            })
            .map_err(CliError::usage)?;
        config::validate_realm_id(&realm).map_err(CliError::usage)?;
        let spec: TokenStoreSpec = self.token_store.parse().map_err(CliError::usage)?;
        Ok((realm, open_store(&spec, &self.db).await?))
    }
}

/// Opens a token store, connecting to the database only when the store lives there.
async fn open_store(spec: &TokenStoreSpec, db: &DbArgs) -> Result<Arc<dyn TokenStore>, CliError> {
    if *spec != TokenStoreSpec::Postgres {
        return store::open(spec, None).await.map_err(CliError::usage);
    }
    // The key is checked before the database is touched.
    let keys = crate::auth::sealed::TokenKeys::from_env()
        .await
        .map_err(CliError::usage)?;
    let pg = super::backfill_cmd::connect(db).await?;
    Ok(Arc::new(crate::auth::pg_store::PgTokenStore::new(
        pg.pool().clone(),
        keys,
    )))
}

/// Opens the token store for a command that talks to QBO, and refuses (exit 3) before
/// anything is written when the company has no token to start from: none stored and no
/// `QBO_REFRESH_TOKEN` to seed one.
pub async fn open_token_store(
    settings: &config::QboSettings,
    db: &crate::store::PgStore,
) -> Result<Arc<dyn TokenStore>, CliError> {
    let store = store::open(&settings.token_store, Some(db.pool()))
        .await
        .map_err(CliError::usage)?;
    if settings.seed_refresh_token.is_none() {
        let stored = store
            .load(&settings.realm_id)
            .await
            .map_err(token_store_error)?;
        if stored.is_none() {
            return Err(CliError::from_auth(auth::AuthError::NoToken {
                realm_id: settings.realm_id.clone(),
                store: store.describe(&settings.realm_id),
            }));
        }
    }
    Ok(store)
}

/// A store that cannot be read: tokens sealed with another key, or altered, need a human
/// (exit 3, like a refused token); anything else is configuration (2).
pub fn token_store_error(e: store::StoreError) -> CliError {
    match e {
        store::StoreError::Sealed { .. } => CliError {
            outcome: Outcome::NeedsHuman,
            error: e.into(),
        },
        store::StoreError::Db(_) => CliError::failed(e),
        other => CliError::usage(other),
    }
}

pub async fn run(cmd: AuthCommand) -> Result<Outcome, CliError> {
    match cmd {
        AuthCommand::Login(args) => run_login(args).await,
        AuthCommand::Status(args) => run_status(args).await,
        AuthCommand::Import(args) => run_import(args).await,
        AuthCommand::Forget(args) => run_forget(args).await,
        AuthCommand::Rekey(args) => run_rekey(args).await,
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
    let store = open_store(&settings.token_store, &args.db).await?;
    let realm = login::login(
        &settings,
        &store,
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
        login::LoginError::Auth(a) if a.needs_human() => CliError::from_auth(a),
        other => CliError::failed(other),
    })?;
    outln!(
        "authorized realm {realm}; tokens saved in {}",
        store.describe(&realm)
    );
    register_company(&args.db, &realm, args.qbo.environment).await;
    Ok(Outcome::Success)
}

async fn run_status(args: StoreArgs) -> Result<Outcome, CliError> {
    let (realm_id, store) = args.open().await?;
    let where_ = store.describe(&realm_id);
    let Some(t) = store.load(&realm_id).await.map_err(token_store_error)? else {
        eprintln!(
            "no tokens for realm {} in the token store ({where_}); pipe a refresh token into \
             `qbo auth import`, or run `qbo auth login`",
            realm_id,
        );
        return Ok(Outcome::NeedsHuman);
    };
    let now = Utc::now();
    let expires = |at: Option<DateTime<Utc>>, unknown: &str| match at {
        Some(at) if at > now => format!("expires {}", when(at, now)),
        Some(at) => format!("EXPIRED {}", when(at, now)),
        None => unknown.to_string(),
    };
    outln!("realm:            {}", t.realm_id);
    outln!("token store:      {where_}");
    outln!(
        "access token:     {}",
        if t.access_token.is_some() {
            expires(t.access_expires_at, "expiry unknown")
        } else {
            "none yet (the next command gets one)".to_string()
        }
    );
    outln!(
        "refresh token:    {}",
        expires(
            t.refresh_expires_at,
            "expiry unknown until its first use (QBO states it when it issues a token; at most \
             100 days)"
        )
    );
    outln!(
        "last refreshed:   {}",
        if t.never_refreshed() {
            "never used (stored from QBO_REFRESH_TOKEN or `qbo auth import`)".to_string()
        } else {
            when(t.updated_at, now)
        }
    );
    if t.refresh_expires_at.is_some_and(|e| e <= now) {
        eprintln!(
            "the refresh token in {where_} has expired; run `qbo auth login` (or pipe a current \
             refresh token into `qbo auth import`)"
        );
        return Ok(Outcome::NeedsHuman);
    }
    Ok(Outcome::Success)
}

/// `2026-12-01 11:31:09 UTC (in 101 days)`: whole seconds, and how far from now.
fn when(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let stamp = at.format("%Y-%m-%d %H:%M:%S UTC");
    let span = relative((at - now).num_seconds().unsigned_abs());
    if at > now {
        format!("{stamp} (in {span})")
    } else {
        format!("{stamp} ({span} ago)")
    }
}

/// The largest whole unit: "45 seconds", "3 hours", "101 days".
fn relative(secs: u64) -> String {
    let (n, unit) = match secs {
        0..120 => (secs, "second"),
        120..7_200 => (secs / 60, "minute"),
        7_200..172_800 => (secs / 3_600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Adds the company whose tokens were just saved to `qbo companies`, and makes it active if
/// it was waiting for them. The tokens are what the user asked for and they are saved, so a
/// database that cannot be reached is a warning that says how to finish by hand.
async fn register_company(db: &DbArgs, realm: &str, environment: config::Environment) {
    let added = async {
        let pg = super::backfill_cmd::connect(db)
            .await
            .map_err(|e| e.error)?;
        let added = crate::companies::add(pg.pool(), realm, environment, None).await?;
        crate::companies::reauthorized(pg.pool(), realm).await?;
        anyhow::Ok(added)
    }
    .await;
    match added {
        Ok(a) if a.created => outln!("added company {realm} to `qbo companies`"),
        Ok(a) if a.company.status == crate::companies::CompanyStatus::NeedsReauth => {
            outln!("company {realm} is active again")
        }
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: the tokens are saved, but company {realm} could not be added to `qbo \
             companies` ({e:#}); run `qbo companies add --realm-id {realm}` once the database \
             is reachable"
        ),
    }
}

async fn run_import(args: ImportArgs) -> Result<Outcome, CliError> {
    let (environment, args) = (args.environment, args.store);
    let (realm, store) = args.open().await?;
    let token = read_token().await?;
    let where_ = store.describe(&realm);
    let previous = match store.load(&realm).await {
        Ok(p) => p,
        // Tokens that no key opens are what an import replaces.
        Err(store::StoreError::Sealed { .. }) => None,
        Err(e) => return Err(token_store_error(e)),
    };
    // The record of which QBO_REFRESH_TOKEN value was already used outlives the import:
    // that value is still retired at QBO.
    let mut tokens = Tokens::unused(&realm, token);
    tokens.env_token_used = previous.as_ref().and_then(|p| p.env_token_used.clone());
    store.save(&tokens).await.map_err(CliError::failed)?;
    let replaced = previous.is_some();
    outln!(
        "imported the refresh token for realm {realm} into {where_}{}; the next command uses it \
         (`qbo auth status` shows it)",
        if replaced {
            ", replacing the tokens stored there"
        } else {
            ""
        }
    );
    register_company(&args.db, &realm, environment).await;
    Ok(Outcome::Success)
}

/// The token from stdin, trimmed. A terminal gets a prompt and one line; a pipe is read whole.
async fn read_token() -> Result<SecretString, CliError> {
    let text = tokio::task::spawn_blocking(|| -> std::io::Result<String> {
        let mut stdin = std::io::stdin();
        let mut text = String::new();
        if stdin.is_terminal() {
            eprintln!("Paste the refresh token and press Enter:");
            stdin.read_line(&mut text)?;
        } else {
            stdin.read_to_string(&mut text)?;
        }
        Ok(text)
    })
    .await
    .map_err(CliError::failed)?
    .map_err(|e| CliError::usage(anyhow::Error::new(e).context("reading the token from stdin")))?;
    let text = SecretString::from(text);
    let token = text.expose_secret().trim();
    if token.is_empty() {
        return Err(CliError::usage(anyhow::anyhow!(
            "no refresh token on stdin; pipe one in, e.g. `qbo auth import < token.txt`. \
             Nothing was changed"
        )));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(CliError::usage(anyhow::anyhow!(
            "stdin holds more than one word; a refresh token has no spaces or line breaks. \
             Nothing was changed"
        )));
    }
    Ok(SecretString::from(token.to_string()))
}

async fn run_forget(args: StoreArgs) -> Result<Outcome, CliError> {
    let (realm, store) = args.open().await?;
    let where_ = store.describe(&realm);
    let removed = store.forget(&realm).await.map_err(CliError::failed)?;
    if removed {
        outln!("removed the tokens of realm {realm} from {where_}");
    } else {
        outln!("no tokens for realm {realm} in {where_}; nothing to remove");
    }
    Ok(Outcome::Success)
}

/// Seals every row of ops.oauth_tokens with the current key.
async fn run_rekey(args: RekeyArgs) -> Result<Outcome, CliError> {
    let keys = crate::auth::sealed::TokenKeys::from_env()
        .await
        .map_err(CliError::usage)?;
    let current = keys.current.id().to_string();
    let pg = super::backfill_cmd::connect(&args.db).await?;
    let store = crate::auth::pg_store::PgTokenStore::new(pg.pool().clone(), keys);
    let done = store.rekey().await.map_err(token_store_error)?;
    outln!(
        "sealed {} companies' tokens again with key {current}; {} already were; \
         once every process seals with it, QBO_TOKEN_KEY_PREVIOUS is no longer needed",
        done.resealed,
        done.current
    );
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_whole_seconds_with_a_relative_span() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T11:31:09.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let later = now + chrono::Duration::days(101) + chrono::Duration::minutes(3);
        assert_eq!(when(later, now), "2027-03-12 11:34:09 UTC (in 101 days)");
        let earlier = now - chrono::Duration::hours(3) - chrono::Duration::seconds(5);
        assert_eq!(when(earlier, now), "2026-12-01 08:31:04 UTC (3 hours ago)");
        assert_eq!(relative(1), "1 second");
        assert_eq!(relative(59 * 60), "59 minutes");
    }
}
