//! Many companies: `qbo companies`, `--all-companies`, tokens kept in Postgres. The real
//! binary, a real Postgres, the sandbox over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod companies;
