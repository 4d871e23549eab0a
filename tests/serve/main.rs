//! `qbo serve`: the HTTP API, the status page, schedules and /metrics, over real HTTP against
//! the real binary, a real Postgres and the sandbox.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod harness;
mod lifecycle;
mod metrics;
mod page;
mod schedules;
mod webdriver;
