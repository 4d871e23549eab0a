//! `qbo exchange-rates`: QBO's ExchangeRate entity over a range of days into
//! raw.qb_exchange_rates.

use chrono::NaiveDate;
use clap::Args;

use super::backfill_cmd::{build_client, connect, on_interrupt};
use super::{parse_date_arg, CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::client::ClientError;
use crate::exchange_rates::{self, RatesError};

pub const AFTER_HELP: &str = "\
QBO serves ExchangeRate (a multi-currency company's rate of each foreign currency into its
home currency on a date) by query filtered on AsOfDate = 'YYYY-MM-DD' only (and
SourceCurrencyCode), or one currency at a time at GET .../exchangerate?sourcecurrencycode=EUR
&asofdate=YYYY-MM-DD. A rate has no Id and no LastUpdatedTime to window on, so this command
asks for each day of --start..--end, one query a day (all currencies in one answer), and
replaces the day's rows in raw.qb_exchange_rates (realm_id, source_currency, target_currency,
as_of_date, rate, payload as received, intuit_tid): re-runs never duplicate.

Transactions normally carry their own ExchangeRate, which staging uses first; the loaded rates
are the fallback for those that do not (the latest rate on or before the TxnDate), see the
README's \"Analysis-ready tables\". Run `qbo model refresh` afterwards. `qbo sync` loads the
days a multi-currency company's transactions need by itself (each day once); this command is
for other days, or to ask days again.

Exit codes: 0 loaded, 1 a day failed (the days before it are kept), 2 bad usage or
configuration, 3 the refresh token was rejected (run `qbo auth login`), 130 interrupted.

Example:
  qbo exchange-rates --start 2024-01-01 --end 2024-12-31 && qbo model refresh";

#[derive(Debug, Args)]
pub struct ExchangeRatesArgs {
    /// First day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date_arg)]
    pub start: NaiveDate,
    /// Last day, inclusive.
    #[arg(long, value_parser = parse_date_arg)]
    pub end: NaiveDate,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

pub async fn run(args: ExchangeRatesArgs) -> Result<Outcome, CliError> {
    if args.end < args.start {
        return Err(CliError::usage(anyhow::anyhow!("--end is before --start")));
    }
    let settings = args.qbo.settings().map_err(CliError::usage)?;
    let store = connect(&args.db).await?;
    let tokens = super::auth_cmd::open_token_store(&settings, &store).await?;
    let client = build_client(
        &settings,
        tokens,
        args.requests.retry_policy(),
        &args.requests.rate_limits(),
        &store,
        on_interrupt("interrupted: the days loaded so far are kept; run the command again"),
    )
    .await?;
    let result = exchange_rates::load(
        client.as_ref(),
        store.pool(),
        &settings.realm_id,
        args.start,
        args.end,
    )
    .await;
    client.finish().await;
    match result {
        Ok(l) => {
            outln!(
                "exchange rates: {} days, {} rates loaded, {} requests, {} retries",
                l.days,
                l.rates,
                l.requests,
                l.retries
            );
            Ok(Outcome::Success)
        }
        Err(e) => Err(classify(e)),
    }
}

fn classify(e: RatesError) -> CliError {
    match e.client_error() {
        Some(ClientError::Auth(auth)) if auth.needs_human() => {
            let RatesError::Qbo {
                source: ClientError::Auth(auth),
                ..
            } = e
            else {
                return CliError::failed(e);
            };
            CliError::from_auth(auth)
        }
        Some(ClientError::Cancelled) => CliError {
            outcome: Outcome::Interrupted,
            error: anyhow::anyhow!("interrupted by Ctrl-C or SIGTERM"),
        },
        _ => CliError::failed(e),
    }
}
