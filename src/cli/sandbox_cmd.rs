//! `qbo sandbox`: the local QBO lookalike on its own, for trying qbo by hand.

use chrono::NaiveDate;
use clap::Args;

use super::{CliError, Outcome};
use crate::chunks;
use crate::sandbox::{Sandbox, SandboxConfig};

fn parse_date_arg(s: &str) -> Result<NaiveDate, String> {
    chunks::parse_date(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (127.0.0.1 only). 0 picks a free one.
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// Seed for the generated company data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 2_000)]
    pub invoices: usize,
    #[arg(long, default_value_t = 300)]
    pub customers: usize,
    #[arg(long, default_value_t = 150)]
    pub items: usize,
    /// First day records were last updated on.
    #[arg(long, value_parser = parse_date_arg, default_value = "2024-01-01")]
    pub data_start: NaiveDate,
    /// Last day records were last updated on.
    #[arg(long, value_parser = parse_date_arg, default_value = "2024-12-31")]
    pub data_end: NaiveDate,
}

pub async fn run(args: SandboxArgs) -> Result<Outcome, CliError> {
    if args.data_end < args.data_start {
        return Err(CliError::usage(anyhow::anyhow!(
            "--data-end is before --data-start"
        )));
    }
    let sandbox = Sandbox::start(SandboxConfig {
        seed: args.seed,
        invoices: args.invoices,
        customers: args.customers,
        items: args.items,
        data_start: args.data_start,
        data_end: args.data_end,
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        ..SandboxConfig::default()
    })
    .await
    .map_err(CliError::usage)?;
    let store = std::env::temp_dir().join(format!("qbo-sandbox-{}.json", sandbox.realm_id()));
    println!(
        "# QBO sandbox listening on {} (Ctrl-C to stop). In another shell:",
        sandbox.api_base_url()
    );
    println!("export QBO_API_BASE_URL={}", sandbox.api_base_url());
    println!("export QBO_TOKEN_URL={}", sandbox.token_url());
    println!("export QBO_AUTHORIZE_URL={}", sandbox.authorize_url());
    println!("export QBO_CLIENT_ID={}", sandbox.client_id());
    println!("export QBO_CLIENT_SECRET={}", sandbox.client_secret());
    println!("export QBO_REALM_ID={}", sandbox.realm_id());
    println!(
        "export QBO_REFRESH_TOKEN={}",
        sandbox.current_refresh_token()
    );
    println!("export QBO_TOKEN_STORE=file:{}", store.display());
    println!(
        "# then: qbo backfill all --start {} --end {}",
        args.data_start, args.data_end
    );
    println!("# faults: curl -X PUT {}/__sandbox/faults -d '{{\"throttle_every\":5}}' -H 'content-type: application/json'", sandbox.api_base_url());
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    Ok(Outcome::Success)
}
