//! End-to-end tests of the analysis-ready `staging` schema: the real binary loads the
//! sandbox company over HTTP into a real Postgres (`qbo backfill all`), `qbo model refresh`
//! builds the schema, and the tests compare it with the sandbox's own records.

#[path = "../common/mod.rs"]
mod common;

mod addresses;
mod cash;
mod currency;
mod deletes;
mod lines;
mod report_runs;
mod reports;

use common::World;

/// `qbo model refresh`, which must succeed.
pub async fn refresh(w: &World) -> String {
    let run = w.run(&["model", "refresh"]).await;
    run.assert_code(0);
    run.stdout
}
