//! What every `--all-companies` command shares: which companies it works on (and the line
//! it prints for each it skips), the settings for one of them, and what a refused refresh
//! token does to a company.

use super::{CliError, Outcome, QboArgs};
use crate::auth::AuthError;
use crate::companies::{self, Company, CompanyStatus};
use crate::config::QboSettings;
use crate::store::PgStore;

/// The companies an `--all-companies` command works on, and the exit code its skipped ones
/// call for.
pub struct Selection {
    pub companies: Vec<Company>,
    /// `NeedsHuman` (3) when a company was skipped because it is `needs_reauth` (cron must
    /// notice, every night, until someone runs `qbo auth login`/`import` for it); `Success`
    /// when only `paused` ones (skipped on purpose) or none were left out.
    pub skipped: Outcome,
}

/// The active companies of the configured environment, by realm id. Prints one line on
/// stderr for each company it leaves out (paused, needs_reauth, the other environment).
/// No active company at all is an error (exit 3 if some need a human, else 1): a nightly
/// `--all-companies` that loads nothing must not pass.
pub async fn active_companies(db: &PgStore, qbo: &QboArgs) -> Result<Selection, CliError> {
    let fleet = companies::fleet(db.pool())
        .await
        .map_err(CliError::failed)?;
    let skipped = skipped_outcome(&fleet);
    let (ours, other): (Vec<Company>, Vec<Company>) = fleet
        .active
        .into_iter()
        .partition(|c| c.environment == qbo.environment);
    for c in other {
        eprintln!(
            "skipped company {}: it is a {} company and QBO_ENVIRONMENT is {}",
            c.label(),
            c.environment.as_str(),
            qbo.environment.as_str()
        );
    }
    if ours.is_empty() {
        return Err(no_active_company(qbo.environment.as_str(), skipped));
    }
    Ok(Selection {
        companies: ours,
        skipped,
    })
}

/// Prints the skip lines of `fleet` and says which exit code the skipped companies call for.
pub fn skipped_outcome(fleet: &companies::Fleet) -> Outcome {
    for line in fleet.skip_lines() {
        eprintln!("{line}");
    }
    if fleet
        .skipped
        .iter()
        .any(|c| c.status == CompanyStatus::NeedsReauth)
    {
        Outcome::NeedsHuman
    } else {
        Outcome::Success
    }
}

/// The error of an `--all-companies` command with nothing to work on (`environment` empty
/// when the command does not care which).
pub fn no_active_company(environment: &str, skipped: Outcome) -> CliError {
    CliError {
        outcome: if skipped == Outcome::NeedsHuman {
            Outcome::NeedsHuman
        } else {
            Outcome::SomeFailed
        },
        error: anyhow::anyhow!(companies::no_active_company(environment)),
    }
}

/// The settings for one company of the fleet: the app and hosts configured, its realm.
/// QBO_REFRESH_TOKEN belongs to one company, so it never seeds another's store here.
pub fn settings_for(qbo: &QboArgs, realm_id: &str) -> Result<QboSettings, CliError> {
    let mut one = qbo.clone();
    one.realm_id = Some(realm_id.to_string());
    one.refresh_token = None;
    one.settings().map_err(CliError::usage)
}

/// The settings an `--all-companies` command validates before it starts: everything but the
/// realm, which may be unset.
pub fn check_settings(qbo: &QboArgs) -> Result<(), CliError> {
    settings_for(qbo, "0").map(|_| ())
}

/// After one company's command failed with `error`: marks the company `needs_reauth` when
/// QBO refused its refresh token (or it has none), and says so. The fleet goes on.
pub async fn after_failure(db: &PgStore, company: &Company, error: &CliError) {
    let Some(auth) = error.error.downcast_ref::<AuthError>() else {
        return;
    };
    if !matches!(
        auth,
        AuthError::InvalidGrant { .. } | AuthError::NoToken { .. }
    ) {
        return;
    }
    let reason = match auth {
        AuthError::NoToken { .. } => "no refresh token in the token store",
        _ => "QBO refused the refresh token (invalid_grant)",
    };
    match companies::set_status(
        db.pool(),
        &company.realm_id,
        CompanyStatus::NeedsReauth,
        Some(reason),
    )
    .await
    {
        Ok(c) if c.status == CompanyStatus::Paused => eprintln!(
            "company {}: {reason}; it stays paused (paused meanwhile by hand); run `qbo auth \
             login` or `qbo auth import --realm-id {}` for it before `qbo companies resume`",
            company.label(),
            company.realm_id
        ),
        Ok(_) => eprintln!(
            "company {} is now needs_reauth: {reason}; run `qbo auth login` or `qbo auth \
             import --realm-id {}` for it. The other companies go on",
            company.label(),
            company.realm_id
        ),
        Err(e) => eprintln!(
            "company {}: {reason}, and marking it needs_reauth failed: {e:#}",
            company.label()
        ),
    }
}

/// The exit code of a command run for many companies: an interruption wins, then a company
/// that needs a human, then one that failed.
pub fn worst(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    let rank = |o: Outcome| match o {
        Outcome::Success => 0,
        Outcome::SomeFailed => 1,
        Outcome::Usage => 2,
        Outcome::NeedsHuman => 3,
        Outcome::Interrupted => 4,
    };
    outcomes
        .into_iter()
        .max_by_key(|o| rank(*o))
        .unwrap_or(Outcome::Success)
}

/// The company `--enqueue` names without `--all-companies`: `--realm-id` (or QBO_REALM_ID),
/// checked before anything connects.
pub fn named_realm(qbo: &QboArgs) -> Result<String, CliError> {
    let realm = qbo
        .realm_id
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            CliError::usage(anyhow::anyhow!(
                "--enqueue needs the company: --realm-id R (or QBO_REALM_ID), or --all-companies"
            ))
        })?;
    crate::config::validate_realm_id(realm).map_err(CliError::usage)?;
    Ok(realm.to_string())
}

/// The companies to enqueue for: `one` (which joins `qbo companies`, keeping its status if it
/// was there: a paused company's work waits for `resume`), or every active company, with the
/// outcome of those skipped (needs_reauth).
pub async fn enqueue_targets(
    db: &PgStore,
    qbo: &QboArgs,
    one: Option<String>,
) -> Result<(Vec<String>, Outcome), CliError> {
    match one {
        Some(realm) => {
            companies::add(db.pool(), &realm, qbo.environment, None)
                .await
                .map_err(CliError::failed)?;
            Ok((vec![realm], Outcome::Success))
        }
        None => {
            let selection = active_companies(db, qbo).await?;
            let realms = selection.companies.into_iter().map(|c| c.realm_id);
            Ok((realms.collect(), selection.skipped))
        }
    }
}
