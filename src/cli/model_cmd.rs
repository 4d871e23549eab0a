//! `qbo model`: the analysis-ready `staging` schema.

use clap::Subcommand;

use super::backfill_cmd::connect;
use super::{CliError, DbArgs, Outcome};
use crate::model;

pub const REFRESH_HELP: &str = "\
The staging schema turns the raw zone's JSON into typed tables (live rows only, realm_id in
every key, numeric amounts, dates, booleans):
  staging.transactions       one row per transaction of every type        (materialized)
  staging.transaction_lines  one row per transaction line                 (materialized)
  staging.general_ledger     every debit and credit of every posting type (materialized)
  staging.general_ledger_cash  postings to income and expense accounts on the cash basis:
                             invoices and bills pro rata as payments are applied, on the
                             payment's date; everything else on its own date (materialized)
  staging.<type>_lines       invoice_lines, bill_lines, journal_entry_lines, ... (views)
  staging.accounts, customers, vendors, items                            (views)
  staging.addresses, custom_fields        names' and transactions' addresses, custom
                                          field values (views over the raw zone)
Amounts are in the transaction's currency (amount) and the home currency (home_amount):
amount x the transaction's own ExchangeRate, else 1 in the home currency, else the rate
loaded by `qbo exchange-rates` for its currency on or before its date, else NULL; rounded to
the cent per line and posting, as QBO books them.
The materialized views show the raw zone as of their last refresh: run this after every
backfill or sync. Each is refreshed CONCURRENTLY once it holds data, so queries keep working
meanwhile; the views on top of them are always current. See README.md, \"Analysis-ready
tables\", for example queries.";

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Rebuild the staging schema's materialized views from the raw zone, and print each
    /// one's rows, size and time.
    #[command(after_help = REFRESH_HELP)]
    Refresh(DbArgs),
}

pub async fn run(cmd: ModelCommand) -> Result<Outcome, CliError> {
    match cmd {
        ModelCommand::Refresh(db) => refresh(&db).await,
    }
}

async fn refresh(db: &DbArgs) -> Result<Outcome, CliError> {
    let store = connect(db).await?;
    let pool = store.pool();
    for r in model::refresh(pool).await.map_err(CliError::failed)? {
        outln!(
            "refreshed {:<28} {:>10} rows {:>10} {:>8.2} s{}",
            r.view,
            r.rows,
            human_bytes(r.bytes),
            r.elapsed.as_secs_f64(),
            if r.concurrently {
                " (concurrently)"
            } else {
                " (first fill)"
            }
        );
    }
    for (view, rows) in model::view_counts(pool).await.map_err(CliError::failed)? {
        outln!("view      {view:<28} {rows:>10} rows (always current)");
    }
    Ok(Outcome::Success)
}

fn human_bytes(b: i64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if (b as f64) < MB {
        format!("{} kB", b / 1024)
    } else {
        format!("{:.1} MB", b as f64 / MB)
    }
}
