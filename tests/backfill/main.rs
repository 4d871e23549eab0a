//! End-to-end tests of `qbo backfill`: the real binary, a real Postgres, the sandbox over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod bad_input;
mod batch;
mod budget;
mod companies;
mod concurrent;
mod every_entity;
mod faults;
mod load;
mod planning;
mod progress;
mod queue;
mod resume;
mod throttle;
mod verify;
