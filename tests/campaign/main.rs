//! The crash and fault campaign of issue 4: SIGKILL at many points of a run, Postgres
//! outages, QBO faults at high rates, malformed answers, bad flags and secrets, through the
//! real binary, a real Postgres and the sandbox over HTTP; and property tests (`props`) of
//! the query escaping, window planning and response parsing.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod faults;
mod kill;
mod malformed;
mod outage;
mod props;
mod quirks;
mod secrets;
