//! qbo: backfill QuickBooks Online into a PostgreSQL raw zone, resumably and idempotently.
//!
//! This crate is the `qbo` command line and `qbo serve` (its HTTP API and status page). The
//! work itself lives in `qbo-core`, re-exported here whole so `qbo::store`, `qbo::backfill`
//! and the rest name the same modules as before the workspace split; the QBO sandbox is
//! `qbo::sandbox` (the `qbo-sandbox` crate).
#![forbid(unsafe_code)]
// Commands print through `outln!`, which survives a closed stdout (see qbo_core::stdout).
#![deny(clippy::print_stdout)]

#[macro_use]
extern crate qbo_core;

pub use qbo_core::*;
pub use qbo_sandbox as sandbox;

pub mod cli;
pub mod serve;
