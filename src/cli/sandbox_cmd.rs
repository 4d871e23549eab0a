//! `qbo sandbox`: the local QBO lookalike on its own, for trying qbo by hand.

use chrono::NaiveDate;
use clap::Args;

use super::{parse_date_arg, CliError, CompanyArgs, Outcome};
use crate::entities::ENTITIES;
use crate::sandbox::{Sandbox, SandboxConfig};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (127.0.0.1 only). 0 picks a free one.
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    #[command(flatten)]
    pub company: CompanyArgs,
    /// First day records were last updated on.
    #[arg(long, value_parser = parse_date_arg, default_value = "2024-01-01")]
    pub data_start: NaiveDate,
    /// Last day records were last updated on.
    #[arg(long, value_parser = parse_date_arg, default_value = "2024-12-31")]
    pub data_end: NaiveDate,
    /// Companies (realms) to serve, each with its own records (the first from --seed, the
    /// others from seeds derived from it), refresh tokens and limits (500 requests a minute,
    /// 10 in flight, 40 batch calls a minute each). Their realm ids and refresh tokens are
    /// printed at start and listed by `GET /__sandbox/realms`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub companies: u32,
    /// A multi-currency company: home currency USD, some customers and vendors (and their
    /// transactions) in EUR, GBP or CAD with CurrencyRef, ExchangeRate and HomeTotalAmt, and
    /// exchange rates at `.../exchangerate` and `SELECT * FROM ExchangeRate WHERE AsOfDate = ...`.
    #[arg(long)]
    pub multi_currency: bool,
}

pub async fn run(args: SandboxArgs) -> Result<Outcome, CliError> {
    if args.data_end < args.data_start {
        return Err(CliError::usage(anyhow::anyhow!(
            "--data-end is before --data-start"
        )));
    }
    let company = args.company.sandbox_config(args.data_start, args.data_end);
    let records: usize = ENTITIES.iter().map(|e| company.count_of(e.qbo_name)).sum();
    let sandbox = Sandbox::start(SandboxConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        companies: args.companies as usize,
        multi_currency: args.multi_currency,
        ..company
    })
    .await
    .map_err(CliError::usage)?;
    let store = std::env::temp_dir().join(format!("qbo-sandbox-{}.json", sandbox.realm_id()));
    let each = if args.companies > 1 {
        format!(" in each of {} companies", args.companies)
    } else {
        String::new()
    };
    outln!(
        "# QBO sandbox listening on {} (Ctrl-C to stop), serving {records} records of {} entities{each} \
         (`qbo entities` lists them). In another shell:",
        sandbox.api_base_url(),
        ENTITIES.len()
    );
    outln!("export QBO_API_BASE_URL={}", sandbox.api_base_url());
    outln!("export QBO_TOKEN_URL={}", sandbox.token_url());
    outln!("export QBO_AUTHORIZE_URL={}", sandbox.authorize_url());
    outln!("export QBO_CLIENT_ID={}", sandbox.client_id());
    outln!("export QBO_CLIENT_SECRET={}", sandbox.client_secret());
    outln!("export QBO_REALM_ID={}", sandbox.realm_id());
    outln!(
        "export QBO_REFRESH_TOKEN={}",
        sandbox.current_refresh_token()
    );
    outln!("export QBO_TOKEN_STORE=file:{}", store.display());
    outln!(
        "# then: qbo backfill all --start {} --end {}",
        args.data_start,
        args.data_end
    );
    print_companies(&sandbox);
    outln!("# faults: curl -X PUT {}/__sandbox/faults -d '{{\"throttle_every\":5}}' -H 'content-type: application/json'", sandbox.api_base_url());
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    Ok(Outcome::Success)
}

/// With several companies: each one's realm id and current refresh token (the exports above
/// are the first company's), and how to list or revoke them later.
fn print_companies(sandbox: &Sandbox) {
    let ids = sandbox.realm_ids();
    if ids.len() < 2 {
        return;
    }
    outln!("# companies (realm id, refresh token):");
    for handle in ids.iter().filter_map(|id| sandbox.for_realm(id)) {
        outln!(
            "#   {} {}",
            handle.realm_id(),
            handle.current_refresh_token()
        );
    }
    let base = sandbox.api_base_url();
    outln!("# list them again: curl {base}/__sandbox/realms");
    outln!("# disconnect one (its refresh token then gives invalid_grant): curl -X POST {base}/__sandbox/realms/REALM_ID/revoke");
    outln!(
        "# connect one with qbo auth login: QBO_AUTHORIZE_URL='{}?realmId=REALM_ID'",
        sandbox.authorize_url()
    );
}
