//! `qbo entities`: what the tool can load, where it lands, and how it is windowed and synced.

use clap::Args;
use serde_json::json;

use super::Outcome;
use crate::entities::{Entity, ENTITIES, EXCHANGE_RATES};
use crate::report::Format;

#[derive(Debug, Args)]
pub struct EntitiesArgs {
    /// table for people, json for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// How `qbo sync` keeps the entity current, in words.
pub fn sync_label(e: &Entity) -> &'static str {
    match (e.is_whole(), e.cdc) {
        (true, _) => "reloaded whole + reconcile",
        (false, true) => "cdc (with deletes)",
        (false, false) => "query since watermark + reconcile",
    }
}

pub fn run(args: EntitiesArgs) -> Outcome {
    match args.format {
        Format::Json => {
            let rows: Vec<_> = ENTITIES
                .iter()
                .map(|e| {
                    json!({
                        "entity": e.cli_name,
                        "qbo_name": e.qbo_name,
                        "table": e.table,
                        "windows": e.windowing_label(),
                        "txn_date": e.txn_date,
                        "includes_inactive": e.name_list,
                        "cdc": e.cdc,
                        "sync": sync_label(e),
                    })
                })
                .collect();
            outln!("{}", serde_json::Value::Array(rows));
        }
        Format::Table => {
            outln!(
                "{:<24} {:<22} {:<34} {:<26} SYNC",
                "ENTITY",
                "QBO NAME",
                "TABLE",
                "WINDOWS"
            );
            for e in ENTITIES {
                outln!(
                    "{:<24} {:<22} {:<34} {:<26} {}",
                    e.cli_name,
                    e.qbo_name,
                    e.table,
                    e.windowing_label(),
                    sync_label(e)
                );
            }
            let (cli, qbo, table) = EXCHANGE_RATES;
            outln!(
                "{:<24} {:<22} {:<34} {:<26} {}",
                cli,
                qbo,
                table,
                "a query per AsOfDate",
                "`qbo exchange-rates` (not in `all`)"
            );
        }
    }
    Outcome::Success
}
