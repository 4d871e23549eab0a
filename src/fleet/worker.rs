//! `qbo worker`: a long-running, stateless process that loads the windows of any company's
//! queued runs. Each of its slots takes the queued run of the company served least recently
//! (never one paused by a 429 or that this worker is skipping for a while), loads windows of it
//! with the backfill engine until none is left to claim, and asks again. On SIGTERM or
//! SIGINT the windows being loaded are handed back (`pending`) for the other workers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::clients::RealmClients;
use super::FleetError;
use crate::backfill::{Backfill, BackfillError, Mode, Options};
use crate::store::fleet::QueuedRun;
use crate::store::{PgStore, StoreError};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Runs loaded at once (of different companies when there are several to serve).
    pub companies_at_once: usize,
    /// Windows loaded at once per run.
    pub windows_per_run: u32,
    /// How long a claimed window stays this worker's without a heartbeat.
    pub lease: Duration,
    /// How long to wait before asking again when nothing could be taken.
    pub poll: Duration,
    /// Stop once no queued window is left anywhere (pending, or held by any worker).
    pub idle_exit: bool,
}

/// Why the worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// SIGTERM or SIGINT: its windows were handed back.
    Drained,
    /// `--idle-exit` and the queue is empty.
    Idle,
    /// `--idle-exit` and the only windows left are of companies or runs being skipped
    /// (`needs_reauth`, or refused by this worker): a human must act (exit 3).
    Skipped,
}

/// How long a company or run this worker could not load is left alone before it is tried
/// again: a company needing a human is `needs_reauth` in `qbo companies` meanwhile (no
/// worker takes it until `qbo auth login`/`import` makes it active), and a cause that
/// passes (Postgres unreachable, a key being rotated) must not stop the company for good.
const SKIP_FOR: Duration = Duration::from_secs(60);
/// The same for a failure that is expected to pass by itself.
const SKIP_TRANSIENT_FOR: Duration = Duration::from_secs(5);

/// Why and until when a company or run is left alone.
#[derive(Debug, Clone)]
struct Skip {
    reason: String,
    until: Instant,
}

impl Skip {
    fn new(reason: String, for_: Duration) -> Self {
        Skip {
            reason,
            until: Instant::now() + for_,
        }
    }
}

/// What one worker did, for its last line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerReport {
    pub stop: Stop,
    /// Times a slot took a run and loaded what it could claim of it.
    pub visits: u64,
    /// Records this worker loaded.
    pub rows: u64,
    pub companies: BTreeSet<String>,
    /// Companies this worker was skipping when it stopped, and why.
    pub skipped: BTreeMap<String, String>,
    /// Runs this worker was skipping when it stopped, and why.
    pub skipped_runs: BTreeMap<Uuid, String>,
    /// With `Stop::Skipped`: each company with windows left, and how many.
    pub left: BTreeMap<String, i64>,
}

#[derive(Default)]
struct State {
    /// Companies being loaded by a slot now (a company twice if two slots load it).
    busy: Vec<String>,
    skip_realms: BTreeMap<String, Skip>,
    /// Runs the engine refused (tried again once their skip runs out).
    skip_runs: HashMap<Uuid, Skip>,
    /// With `--idle-exit`: what was left when only skipped windows were.
    left: Option<BTreeMap<String, i64>>,
    visits: u64,
    rows: u64,
    companies: BTreeSet<String>,
    /// A failure of the worker itself (Postgres answering with an error that is no outage).
    fatal: Option<StoreError>,
    /// A slot that panicked (a bug).
    bug: Option<String>,
}

enum Left {
    Empty,
    Work,
    OnlySkipped(BTreeMap<String, i64>),
}

pub struct Worker {
    store: PgStore,
    clients: RealmClients,
    cfg: WorkerConfig,
    cancel: CancellationToken,
    state: Mutex<State>,
}

impl Worker {
    /// `cancel` is the drain signal: the worker stops claiming and hands back what it holds.
    pub fn new(
        store: PgStore,
        clients: RealmClients,
        cfg: WorkerConfig,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Worker {
            store,
            clients,
            cfg,
            cancel,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works until drained (or, with `idle_exit`, until the queue is empty).
    pub async fn run(self: &Arc<Self>) -> Result<WorkerReport, FleetError> {
        let idle = CancellationToken::new();
        let mut slots = tokio::task::JoinSet::new();
        for n in 0..self.cfg.companies_at_once.max(1) {
            let (me, idle) = (self.clone(), idle.clone());
            slots.spawn(async move { me.slot(n, &idle).await });
        }
        while let Some(joined) = slots.join_next().await {
            if let Err(join) = joined {
                // A bug: the other slots stop and hand their windows back, and the worker
                // exits 1 rather than pass for drained.
                tracing::error!(error = %join, "a worker slot stopped unexpectedly (a bug in qbo; please report it); draining");
                self.state().bug.get_or_insert(join.to_string());
                self.cancel.cancel();
            }
        }
        self.clients.finish().await;
        let mut state = self.state();
        if let Some(e) = state.fatal.take() {
            return Err(e.into());
        }
        if let Some(bug) = state.bug.take() {
            return Err(FleetError::SlotPanicked(bug));
        }
        let left = state.left.take();
        Ok(WorkerReport {
            stop: if self.cancel.is_cancelled() {
                Stop::Drained
            } else if left.is_some() {
                Stop::Skipped
            } else {
                Stop::Idle
            },
            visits: state.visits,
            rows: state.rows,
            companies: std::mem::take(&mut state.companies),
            skipped: std::mem::take(&mut state.skip_realms)
                .into_iter()
                .map(|(realm, skip)| (realm, skip.reason))
                .collect(),
            skipped_runs: std::mem::take(&mut state.skip_runs)
                .into_iter()
                .map(|(run, skip)| (run, skip.reason))
                .collect(),
            left: left.unwrap_or_default(),
        })
    }

    async fn slot(&self, n: usize, idle: &CancellationToken) {
        while !self.cancel.is_cancelled() && !idle.is_cancelled() {
            let (skip, busy, skip_runs) = {
                let mut s = self.state();
                // Skips run out: the company or run is tried again.
                let now = Instant::now();
                s.skip_realms.retain(|_, skip| skip.until > now);
                s.skip_runs.retain(|_, skip| skip.until > now);
                (
                    s.skip_realms.keys().cloned().collect::<Vec<_>>(),
                    s.busy.clone(),
                    s.skip_runs.keys().copied().collect::<Vec<_>>(),
                )
            };
            match self.store.next_queued_run(&skip, &busy, &skip_runs).await {
                Ok(Some(run)) => self.visit(n, run).await,
                Ok(None) => {
                    if self.cfg.idle_exit {
                        match self.queue_left(&skip, &skip_runs).await {
                            Some(Left::Empty) => {
                                tracing::info!("the queue is empty; stopping (--idle-exit)");
                                idle.cancel();
                                return;
                            }
                            Some(Left::OnlySkipped(left)) => {
                                tracing::error!(companies = ?left, "only windows of companies or runs being skipped are left; stopping (--idle-exit)");
                                self.state().left = Some(left);
                                idle.cancel();
                                return;
                            }
                            Some(Left::Work) | None => {}
                        }
                    }
                    self.pause(idle).await;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %crate::errors::chain(&e), "database unavailable; asking again shortly");
                    self.pause(idle).await;
                }
                Err(e) => {
                    tracing::error!(error = %crate::errors::chain(&e), "the queue cannot be read; stopping");
                    self.state().fatal.get_or_insert(e);
                    self.cancel.cancel();
                }
            }
        }
    }

    /// What is left of the queue (None: it could not be read; ask again).
    async fn queue_left(&self, skip: &[String], skip_runs: &[Uuid]) -> Option<Left> {
        match self
            .store
            .unfinished_queued_by_company(skip, skip_runs)
            .await
        {
            Ok(rows) if rows.is_empty() => Some(Left::Empty),
            // Windows nobody skips: pending elsewhere or held by another worker; wait.
            Ok(rows) if rows.iter().any(|(_, skipped, _)| !skipped) => Some(Left::Work),
            Ok(rows) => Some(Left::OnlySkipped(
                rows.into_iter().map(|(realm, _, n)| (realm, n)).collect(),
            )),
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "could not count the queued windows; asking again shortly");
                None
            }
        }
    }

    async fn pause(&self, idle: &CancellationToken) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = idle.cancelled() => {}
            _ = tokio::time::sleep(self.cfg.poll) => {}
        }
    }

    /// Loads what can be claimed of `run`, then returns (windows other workers hold are
    /// theirs; one whose worker died is claimable again once its lease runs out).
    async fn visit(&self, slot: usize, run: QueuedRun) {
        let realm = run.realm_id.clone();
        let span = tracing::info_span!("visit", slot, realm_id = %realm, entity = %run.entity, run_id = %run.run_id);
        let Some(entity) = crate::entities::find(&run.entity) else {
            tracing::error!(parent: &span, "the run is of an entity this qbo does not know (an older or newer qbo planned it); leaving it");
            let reason = format!("entity {} is unknown to this qbo", run.entity);
            self.state()
                .skip_runs
                .insert(run.run_id, Skip::new(reason, SKIP_FOR));
            return;
        };
        let client = match self.clients.get(&realm).await {
            Ok(client) => client,
            Err(e) => {
                let reason = crate::errors::chain(&e);
                let for_ = if e.needs_human() {
                    tracing::error!(parent: &span, error = %reason, "cannot load this company; the worker goes on with the others");
                    self.needs_reauth(&realm, &reason).await;
                    SKIP_FOR
                } else {
                    // The token store unreachable, a key being rotated: it passes.
                    tracing::warn!(parent: &span, error = %reason, "cannot load this company now; trying it again shortly");
                    SKIP_TRANSIENT_FOR
                };
                self.state()
                    .skip_realms
                    .insert(realm, Skip::new(reason, for_));
                return;
            }
        };
        self.state().busy.push(realm.clone());
        let engine = Backfill::new(client, self.store.clone(), self.cancel.child_token());
        let result = tracing::Instrument::instrument(
            engine.run(entity, Mode::Resume(Some(run.run_id)), self.options(&run)),
            span.clone(),
        )
        .await;
        let needs_human = match &result {
            Err(BackfillError::Auth(auth)) if auth.needs_human() => {
                Some(crate::errors::chain(auth))
            }
            _ => None,
        };
        if let Some(reason) = &needs_human {
            self.needs_reauth(&realm, reason).await;
        }
        if matches!(&result, Ok(s) if s.status == crate::queue::RunStatus::Success) {
            if let Err(e) = crate::companies::touch_loaded(self.store.pool(), &realm).await {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "could not record when the company was last loaded");
            }
        }
        let mut state = self.state();
        if let Some(i) = state.busy.iter().position(|r| *r == realm) {
            state.busy.swap_remove(i);
        }
        match result {
            Ok(summary) => {
                state.visits += 1;
                state.rows += summary.rows_loaded_now;
                state.companies.insert(realm);
                tracing::info!(parent: &span, status = %summary.status, rows = summary.rows_loaded_now, "run visited");
            }
            Err(BackfillError::Auth(auth)) if auth.needs_human() => {
                let reason = crate::errors::chain(&auth);
                tracing::error!(parent: &span, error = %reason, "this company needs a human (`qbo auth login` or `qbo auth import`); the worker goes on with the others");
                state.skip_realms.insert(realm, Skip::new(reason, SKIP_FOR));
            }
            Err(BackfillError::Store(e)) if e.is_transient() => {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "database unavailable; the run's windows go back to the queue");
            }
            Err(e) => {
                let reason = crate::errors::chain(&e);
                tracing::error!(parent: &span, error = %reason, "the run cannot be loaded; the worker leaves it for a minute and goes on");
                state
                    .skip_runs
                    .insert(run.run_id, Skip::new(reason, SKIP_FOR));
            }
        }
    }

    /// Marks the company `needs_reauth` so that no worker takes its runs until `qbo auth
    /// login` or `qbo auth import` gives it a token again (a realm not in `qbo companies` is
    /// only skipped by this worker).
    async fn needs_reauth(&self, realm: &str, reason: &str) {
        use crate::companies::CompanyStatus;
        match crate::companies::set_status_in(
            self.store.pool(),
            realm,
            CompanyStatus::NeedsReauth,
            Some(reason),
        )
        .await
        {
            Ok(true) => {
                tracing::error!(realm_id = %realm, "the company is now needs_reauth: run `qbo auth login` or `qbo auth import --realm-id {realm}` for it")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(realm_id = %realm, error = %crate::errors::chain(&e), "could not mark the company needs_reauth")
            }
        }
    }

    /// The run's own window options (how it was planned), this worker's pace and lease.
    fn options(&self, run: &QueuedRun) -> Options {
        let page_size = run
            .options
            .get("page_size")
            .and_then(serde_json::Value::as_u64)
            .map(|n| n.clamp(1, u64::from(crate::query::MAX_PAGE_SIZE)) as u32)
            .unwrap_or(crate::query::MAX_PAGE_SIZE);
        Options {
            page_size,
            concurrency: self.cfg.windows_per_run.max(1),
            lease: self.cfg.lease,
            wait_for_others: false,
            ..Options::default()
        }
    }
}
