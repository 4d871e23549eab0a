//! `qbo companies add|list|pause|resume|remove`: the companies `--all-companies` loads.

use chrono::Utc;
use clap::{Args, Subcommand};

use super::backfill_cmd::connect;
use super::{CliError, DbArgs, Outcome};
use crate::companies::{self, Company, CompanyStatus, Environment};
use crate::report::Format;

pub const AFTER_HELP: &str = "\
Companies are kept in ops.companies. `qbo auth login` and `qbo auth import` add the company
they authorize; `add` is for companies whose tokens arrive another way. A company's name
comes from its CompanyInfo once qbo has loaded company_info (`--name` labels it until then).

`--all-companies` (verify, report, and the loading commands) works on the active companies
and prints a line for each paused or needs_reauth one it skips. A company becomes
needs_reauth when QBO refuses its refresh token; `qbo auth login` or `qbo auth import` for
it makes it active again.

Examples:
  qbo companies add --realm-id 9130350000000001 --name 'Acme Ltd'
  qbo companies list
  qbo companies pause --realm-id 9130350000000001 --reason 'customer left'
  qbo companies resume --realm-id 9130350000000001";

#[derive(Debug, Subcommand)]
pub enum CompaniesCommand {
    /// Add a company (realm) to the fleet. Adding one that is already there changes nothing
    /// but a given --name.
    Add(AddArgs),
    /// Every company: realm id, name, environment, status and when it was last loaded.
    List(ListArgs),
    /// Leave a company out of `--all-companies`, the workers and schedules until `resume`.
    Pause(PauseArgs),
    /// Make a paused (or needs_reauth) company active again.
    Resume(RealmArgs),
    /// Take a company out of the fleet. Its loaded data (raw.qb_* rows, run history) and its
    /// tokens are KEPT: `qbo auth forget` removes the tokens, and the raw rows stay until
    /// you delete them (`DELETE FROM raw.qb_<entity> WHERE realm_id = '...'`). `qbo worker`s
    /// stop taking its queued windows at once (windows being loaded finish; the rest stay
    /// queued, untouched, in the run history): workers load only companies in `qbo companies`
    /// that are active. `add` brings the company back, and its queued windows with it.
    Remove(RealmArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The company's realm id (in the QBO URL, or the OAuth redirect).
    #[arg(long, value_parser = parse_realm)]
    pub realm_id: String,
    /// A label until qbo loads the company's CompanyInfo, whose CompanyName then replaces it.
    #[arg(long)]
    pub name: Option<String>,
    /// Which of Intuit's hosts the company lives on.
    #[arg(
        long,
        env = "QBO_ENVIRONMENT",
        value_enum,
        default_value = "production"
    )]
    pub environment: Environment,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// table for people, json for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The company's realm id.
    #[arg(long, value_parser = parse_realm)]
    pub realm_id: String,
    /// Why, shown by `list` and by the line `--all-companies` prints when it skips it.
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Debug, Args)]
pub struct RealmArgs {
    /// The company's realm id.
    #[arg(long, value_parser = parse_realm)]
    pub realm_id: String,
    #[command(flatten)]
    pub db: DbArgs,
}

pub fn parse_realm(s: &str) -> Result<String, String> {
    crate::config::validate_realm_id(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

pub async fn run(cmd: CompaniesCommand) -> Result<Outcome, CliError> {
    match cmd {
        CompaniesCommand::Add(args) => add(args).await,
        CompaniesCommand::List(args) => list(args).await,
        CompaniesCommand::Pause(args) => {
            let reason = args.reason.as_deref().unwrap_or("paused by hand");
            status(
                &args.db,
                &args.realm_id,
                CompanyStatus::Paused,
                Some(reason),
            )
            .await
        }
        CompaniesCommand::Resume(args) => {
            status(&args.db, &args.realm_id, CompanyStatus::Active, None).await
        }
        CompaniesCommand::Remove(args) => remove(args).await,
    }
}

fn classify(e: companies::CompaniesError) -> CliError {
    match e {
        companies::CompaniesError::Db(_) => CliError::failed(e),
        other => CliError::usage(other),
    }
}

async fn add(args: AddArgs) -> Result<Outcome, CliError> {
    let name = args
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let db = connect(&args.db).await?;
    let added = companies::add(db.pool(), &args.realm_id, args.environment, name)
        .await
        .map_err(classify)?;
    let c = &added.company;
    if added.created {
        outln!(
            "added company {} ({}, {})",
            c.label(),
            c.environment.as_str(),
            c.status
        );
    } else {
        outln!(
            "company {} was already added ({}, {}); nothing else changed",
            c.label(),
            c.environment.as_str(),
            c.status
        );
    }
    Ok(Outcome::Success)
}

async fn list(args: ListArgs) -> Result<Outcome, CliError> {
    let db = connect(&args.db).await?;
    let all = companies::list(db.pool()).await.map_err(classify)?;
    match args.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&all).map_err(CliError::failed)?;
            outln!("{json}");
        }
        Format::Table => out!("{}", table(&all)),
    }
    Ok(Outcome::Success)
}

fn table(all: &[Company]) -> String {
    if all.is_empty() {
        return "no companies yet: `qbo auth login` adds the one it authorizes, or `qbo \
                companies add --realm-id R`\n"
            .to_string();
    }
    let stamp = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or("never".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S").to_string()
        })
    };
    let header = [
        "REALM",
        "NAME",
        "ENVIRONMENT",
        "STATUS",
        "LAST LOADED (UTC)",
        "ADDED (UTC)",
        "REASON",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|c| {
            [
                c.realm_id.clone(),
                c.display_name.clone().unwrap_or_else(|| "-".into()),
                c.environment.as_str().to_string(),
                c.status.to_string(),
                stamp(c.last_loaded_at),
                stamp(Some(c.added_at)),
                c.status_reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::stdout::table(&header, &rows)
}

async fn status(
    db: &DbArgs,
    realm_id: &str,
    status: CompanyStatus,
    reason: Option<&str>,
) -> Result<Outcome, CliError> {
    let db = connect(db).await?;
    let before = companies::get(db.pool(), realm_id)
        .await
        .map_err(classify)?;
    let c = companies::set_status(db.pool(), realm_id, status, reason)
        .await
        .map_err(classify)?;
    if before.status == CompanyStatus::NeedsReauth && status == CompanyStatus::Active {
        eprintln!(
            "company {} needed new tokens; if it still has none QBO accepts, the next command \
             marks it needs_reauth again (`qbo auth login` or `qbo auth import` for it)",
            c.label()
        );
    }
    outln!("company {} is {}", c.label(), c.status);
    Ok(Outcome::Success)
}

async fn remove(args: RealmArgs) -> Result<Outcome, CliError> {
    let db = connect(&args.db).await?;
    let c = companies::get(db.pool(), &args.realm_id)
        .await
        .map_err(classify)?;
    let raw = companies::raw_rows(db.pool(), &args.realm_id)
        .await
        .map_err(classify)?;
    companies::remove(db.pool(), &args.realm_id)
        .await
        .map_err(classify)?;
    outln!(
        "removed company {} from the fleet; KEPT its {raw} raw rows (raw.qb_*), its run history \
         and its tokens (`qbo auth forget --realm-id {}` removes the tokens; `qbo companies add` \
         brings the company back)",
        c.label(),
        c.realm_id
    );
    Ok(Outcome::Success)
}
