//! The crash and fault campaign of issue 4: SIGKILL at many points of a run, a Postgres
//! outage, QBO faults at high rates, malformed answers, bad flags and secrets. Everything
//! goes through the real binary, a real Postgres and the sandbox over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod faults;
mod kill;
mod malformed;
mod outage;
mod props;
mod secrets;
