//! Many companies, many processes: `qbo companies`, `--all-companies`, tokens kept in
//! Postgres, `qbo backfill --enqueue` and `qbo worker`s sharing Postgres. The real binary, a
//! real Postgres, the sandbox over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod companies;
mod fairness;
mod proof;
mod store_races;
mod sweep;
mod syncs;
mod tokens;
mod worker;
