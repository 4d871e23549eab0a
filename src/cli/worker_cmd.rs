//! `qbo worker`.

use std::time::Duration;

use clap::Args;

use super::backfill_cmd::{connect, on_interrupt};
use super::{CliError, DbArgs, Outcome, QboArgs, RequestArgs};
use crate::fleet::clients::RealmClients;
use crate::fleet::worker::Stop;
use crate::fleet::{Worker, WorkerConfig, WorkerReport};

pub const AFTER_HELP: &str = "\
Examples:
  qbo backfill all --start 2024-01-01 --end 2024-12-31 --all-companies --enqueue
  qbo sync all --all-companies --enqueue      # one sync request per active company
  qbo worker                                  # on as many machines as you like
  qbo worker --idle-exit                      # a batch job: stop once the queue is empty
  qbo report --companies                      # queued / running / succeeded per company
  qbo report --sync-requests                  # the latest sync requests and their status

A worker loads the windows of queued runs (`qbo backfill ... --enqueue`) of any company,
fairly, one window at a time: each of its slots (--companies-at-once x --concurrency) claims
a window of the company whose window was claimed least recently (by any worker), skipping
companies QBO is throttling (a 429 pauses the company for every process), companies not
active in `qbo companies`, companies this worker already loads --concurrency windows of, and
companies this worker found without a usable refresh token (it logs them; `qbo auth import`
or `qbo auth login` makes them active again). A company's big run never holds a slot while
another company's windows wait. Each company's requests stay
within QBO's limits across every worker and machine (they share its budget through
Postgres). Workers hold nothing but leases: add or remove them at any time. A window whose
worker was killed is taken over once its lease (--lease-secs) runs out.

Tokens: every company's refresh token must be in the token store all workers share
(QBO_TOKEN_STORE); QBO_REFRESH_TOKEN, if set, only seeds the company QBO_REALM_ID names.

Syncs: a slot also runs queued syncs (`qbo sync ... --enqueue`, the API's sync now,
schedules), each whole under a lease (a sync reads its watermarks under the company's lock),
oldest request first, never of a paused, needs_reauth or throttled company. A slot
alternates: after a window it looks for a sync first, after a sync for a window first, so
neither kind starves the other. A sync counts as --concurrency windows of its company.

Draining: SIGTERM or SIGINT (Ctrl-C) stops claiming, hands the windows being loaded back to
the queue (other workers take them at once), puts a sync being run back to queued (a sync is
safe to run again: its watermarks move only with the rows they cover) and exits 0 within a
few seconds. A killed worker's sync request is taken over once its lease runs out.

Exit codes: 0 drained (SIGTERM/SIGINT) or, with --idle-exit, the queue is empty (no window
and no sync request left); 1 the worker stopped on a failure of its own (Postgres answered
with an error that is no outage; a window's or a sync's failure is not one: see `qbo
report`); 2 bad usage or configuration; 3 with --idle-exit, the only work left is of
companies that need a human (needs_reauth, no token) or of companies, runs or sync requests
this worker is skipping: the last lines name them.

A company the worker cannot load is left alone for a minute (a few seconds when the cause
passes by itself, like Postgres or the token store being unreachable) and then tried again;
one QBO refused is needs_reauth meanwhile, and `qbo auth login`/`import` makes it active.";

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Companies loaded at once: the worker loads up to this times --concurrency windows at
    /// once, claimed one at a time, least recently served company first.
    #[arg(long, env = "QBO_WORKER_COMPANIES_AT_ONCE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub companies_at_once: u32,
    /// Windows of one company this worker loads at once, at most; the worker loads up to
    /// --companies-at-once times this many windows at once. Each company's QBO limits hold
    /// whatever this says.
    #[arg(long, env = "QBO_WORKER_CONCURRENCY", default_value_t = crate::backfill::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub concurrency: u32,
    /// Exit (0) once no queued window and no sync request is left: none pending or queued
    /// and none held by any worker; exit 3 naming them when the only work left is of
    /// companies, runs or requests being skipped (needs_reauth ones). Paused companies'
    /// windows and sync requests wait and do not count.
    /// For batch jobs and tests; start it after enqueuing.
    #[arg(long)]
    pub idle_exit: bool,
    /// Milliseconds between looks at the queue while there is nothing to take.
    #[arg(long, env = "QBO_WORKER_POLL_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub poll_ms: u64,
    #[command(flatten)]
    pub requests: RequestArgs,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub qbo: QboArgs,
}

pub async fn run(args: WorkerArgs) -> Result<Outcome, CliError> {
    let mut qbo = args.qbo.clone();
    // A worker serves every company; QBO_REALM_ID (optional here) only says which one
    // QBO_REFRESH_TOKEN belongs to. The settings are the app's, their realm set per company.
    if qbo.realm_id.as_deref().is_none_or(|r| r.trim().is_empty()) {
        qbo.realm_id = Some(NO_REALM.to_string());
        qbo.refresh_token = None;
    }
    let settings = qbo.settings().map_err(CliError::usage)?;
    let db = connect(&args.db).await?;
    let tokens = crate::auth::store::open(&settings.token_store, Some(db.pool()))
        .await
        .map_err(CliError::usage)?;
    let cancel = on_interrupt(
        "draining: handing the windows being loaded back to the queue; exiting once they are",
    );
    let clients = RealmClients::new(
        settings,
        tokens,
        args.requests.retry_policy(),
        args.requests.rate_limits(),
        db.clone(),
        cancel.clone(),
    );
    let worker = Worker::new(
        db,
        clients,
        WorkerConfig {
            companies_at_once: args.companies_at_once as usize,
            windows_per_run: args.concurrency,
            lease: args.requests.lease(),
            poll: Duration::from_millis(args.poll_ms),
            idle_exit: args.idle_exit,
        },
        cancel,
    );
    tracing::info!(
        companies_at_once = args.companies_at_once,
        concurrency = args.concurrency,
        idle_exit = args.idle_exit,
        "worker started"
    );
    let report = worker.run().await.map_err(CliError::failed)?;
    outln!("{}", report_line(&report));
    Ok(match report.stop {
        Stop::Skipped => Outcome::NeedsHuman,
        Stop::Drained | Stop::Idle => Outcome::Success,
    })
}

/// A realm id no company has, standing in while settings are validated.
pub(super) const NO_REALM: &str = "0";

fn report_line(r: &WorkerReport) -> String {
    let why = match r.stop {
        Stop::Drained => "drained",
        Stop::Idle => "the queue is empty",
        Stop::Skipped => "only work of skipped companies, runs or sync requests is left",
    };
    let mut line = format!(
        "worker stopped ({why}): {} windows, {} syncs, {} companies, {} rows loaded",
        r.windows,
        r.syncs,
        r.companies.len(),
        r.rows
    );
    for (realm, n) in &r.left {
        line.push_str(&format!(
            "\n  left: realm {realm}: {n} windows or sync requests"
        ));
    }
    for (realm, reason) in &r.skipped {
        line.push_str(&format!("\n  skipped realm {realm}: {reason}"));
    }
    for (run, reason) in &r.skipped_runs {
        line.push_str(&format!("\n  skipped run {run}: {reason}"));
    }
    for (request, reason) in &r.skipped_requests {
        line.push_str(&format!("\n  skipped sync request {request}: {reason}"));
    }
    line
}
