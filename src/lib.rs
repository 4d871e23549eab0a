//! qbo: backfill QuickBooks Online into a PostgreSQL raw zone, resumably and idempotently.
#![forbid(unsafe_code)]
// Commands print through `outln!`, which survives a closed stdout (see stdout.rs).
#![deny(clippy::print_stdout)]

#[macro_use]
pub mod stdout;

pub mod auth;
pub mod backfill;
pub mod bench;
pub mod chunks;
pub mod cli;
pub mod client;
pub mod companies;
pub mod config;
pub mod control;
pub mod cost;
pub mod entities;
pub mod errors;
pub mod exchange_rates;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod query;
pub mod queue;
pub mod report;
pub mod reports;
pub mod sandbox;
pub mod schedule;
pub mod serve;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod watermark;
