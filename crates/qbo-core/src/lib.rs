//! qbo's core: backfill and sync QuickBooks Online into a PostgreSQL raw zone, resumably and
//! idempotently, alone or as a fleet of workers coordinated by Postgres. No HTTP server lives
//! here: the sandbox (`qbo-sandbox`), the CLI and `qbo serve` (`qbo`) and the benchmark
//! (`qbo-bench`) are crates of their own on top of this one.
#![forbid(unsafe_code)]
// Commands print through `outln!`, which survives a closed stdout (see stdout.rs).
#![deny(clippy::print_stdout)]

#[macro_use]
pub mod stdout;

pub mod auth;
pub mod backfill;
pub mod chunks;
pub mod client;
pub mod companies;
pub mod config;
pub mod control;
pub mod cost;
pub mod entities;
pub mod errors;
pub mod exchange_rates;
pub mod failpoint;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod query;
pub mod queue;
pub mod report;
pub mod reports;
pub mod schedule;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod verify;
pub mod watermark;
