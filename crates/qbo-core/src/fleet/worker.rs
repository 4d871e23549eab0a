//! `qbo worker`: a long-running, stateless process that loads the windows of any company's
//! queued runs. Each of its slots claims one window at a time with the queue's one fairness
//! order (`Queue::claim_next_any`: the company served least recently first, never one paused
//! by a 429, not `active`, or that this worker is skipping for a while or already loads its
//! share of windows of), loads it with the backfill engine (`Backfill::load_claimed`), and
//! claims again: a company's big run never holds a slot while another company waits.
//!
//! Slots also run queued syncs (`sync_slot.rs`): a slot takes the oldest sync request it may
//! run and runs it whole (a sync reads its watermarks under the company's lock). A slot
//! alternates: after a window it looks for a sync first, after a sync for a window first, so
//! neither kind starves the other (a window is short, so a queued sync waits at most for
//! the next window a slot finishes). On SIGTERM or SIGINT the windows being loaded are handed
//! back (`pending`) for the other workers, and a sync being run goes back to `queued` (a sync
//! is safe to run again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::clients::RealmClients;
use super::FleetError;
use crate::backfill::{Backfill, BackfillError, ChunkSummary, Options};
use crate::client::ClientError;
use crate::queue::{ClaimedChunk, Claimer, Queue, QueueError, RunKind, SweepClaim};
use crate::reports::ReportError;
use crate::store::{PgStore, StoreError};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Slots: windows loaded at once (of different companies when there are several to
    /// serve) is this times `windows_per_run`.
    pub companies_at_once: usize,
    /// Windows of one company this worker loads at once, at most.
    pub windows_per_run: u32,
    /// How long a claimed window stays this worker's without a heartbeat.
    pub lease: Duration,
    /// How long to wait before asking again when nothing could be taken.
    pub poll: Duration,
    /// Stop once no queued window and no sync request is left anywhere (pending or queued,
    /// or held by any worker).
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
pub(super) const SKIP_FOR: Duration = Duration::from_secs(60);
/// The same for a failure that is expected to pass by itself.
pub(super) const SKIP_TRANSIENT_FOR: Duration = Duration::from_secs(5);

/// Why and until when a company or run is left alone.
#[derive(Debug, Clone)]
pub(super) struct Skip {
    reason: String,
    until: Instant,
}

impl Skip {
    pub(super) fn new(reason: String, for_: Duration) -> Self {
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
    /// Windows this worker loaded (claimed and settled, split or handed back).
    pub windows: u64,
    /// Sync requests this worker ran to an end (success, partial or error).
    pub syncs: u64,
    /// Records this worker loaded.
    pub rows: u64,
    pub companies: BTreeSet<String>,
    /// Companies this worker was skipping when it stopped, and why.
    pub skipped: BTreeMap<String, String>,
    /// Runs this worker was skipping when it stopped, and why.
    pub skipped_runs: BTreeMap<Uuid, String>,
    /// Sync requests this worker was skipping when it stopped, and why.
    pub skipped_requests: BTreeMap<Uuid, String>,
    /// With `Stop::Skipped`: each company with windows left, and how many.
    pub left: BTreeMap<String, i64>,
}

#[derive(Default)]
pub(super) struct State {
    /// Companies being loaded now, with how many windows of each (a sync counts as
    /// `windows_per_run`: it may load that many windows at once).
    pub(super) busy: HashMap<String, usize>,
    pub(super) skip_realms: BTreeMap<String, Skip>,
    /// Runs the engine refused (tried again once their skip runs out).
    skip_runs: HashMap<Uuid, Skip>,
    /// Sync requests left alone for a while (an entity this qbo does not know).
    pub(super) skip_requests: HashMap<Uuid, Skip>,
    /// With `--idle-exit`: what was left when only skipped windows were.
    left: Option<BTreeMap<String, i64>>,
    windows: u64,
    pub(super) syncs: u64,
    rows: u64,
    pub(super) companies: BTreeSet<String>,
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
    /// Names this worker's leases on sync requests (with the slot number).
    pub(super) id: Uuid,
    pub(super) store: PgStore,
    queue: Queue,
    pub(super) clients: RealmClients,
    pub(super) cfg: WorkerConfig,
    pub(super) cancel: CancellationToken,
    state: Mutex<State>,
}

/// What a slot did on one look.
enum Took {
    Window,
    Sync,
    /// Nothing to take.
    Nothing,
    /// The look failed (Postgres away, or a failure that stops the worker): pause.
    Failed,
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
            id: Uuid::new_v4(),
            queue: Queue::new(store.clone()),
            store,
            clients,
            cfg,
            cancel,
            state: Mutex::new(State::default()),
        })
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works until drained (or, with `idle_exit`, until the queue is empty).
    pub async fn run(self: &Arc<Self>) -> Result<WorkerReport, FleetError> {
        let idle = CancellationToken::new();
        let mut slots = tokio::task::JoinSet::new();
        let slots_n = self.cfg.companies_at_once.max(1) * self.cfg.windows_per_run.max(1) as usize;
        for n in 0..slots_n {
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
            windows: state.windows,
            syncs: state.syncs,
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
            skipped_requests: std::mem::take(&mut state.skip_requests)
                .into_iter()
                .map(|(id, skip)| (id, skip.reason))
                .collect(),
            left: left.unwrap_or_default(),
        })
    }

    async fn slot(&self, n: usize, idle: &CancellationToken) {
        // After a window a sync comes first, after a sync a window.
        let mut sync_first = true;
        while !self.cancel.is_cancelled() && !idle.is_cancelled() {
            let k = self.skips();
            let mut took = Took::Nothing;
            for sync in [sync_first, !sync_first] {
                took = match sync {
                    true => self.take_sync(n, &k).await,
                    false => self.take_window(n, &k).await,
                };
                if !matches!(took, Took::Nothing) {
                    break;
                }
            }
            match took {
                Took::Window => sync_first = true,
                Took::Sync => sync_first = false,
                Took::Failed => self.pause(idle).await,
                Took::Nothing => {
                    if self.cfg.idle_exit {
                        match self.queue_left(&k).await {
                            Some(Left::Empty) => {
                                tracing::info!("the queue is empty; stopping (--idle-exit)");
                                idle.cancel();
                                return;
                            }
                            Some(Left::OnlySkipped(left)) => {
                                tracing::error!(companies = ?left, "only windows or sync requests of companies, runs or requests being skipped are left; stopping (--idle-exit)");
                                self.state().left = Some(left);
                                idle.cancel();
                                return;
                            }
                            Some(Left::Work) | None => {}
                        }
                    }
                    self.pause(idle).await;
                }
            }
        }
    }

    /// The companies, runs and sync requests this worker skips now (skips that ran out are
    /// dropped: they are tried again), and the companies it already loads its share of.
    pub(super) fn skips(&self) -> Skips {
        let mut s = self.state();
        let now = Instant::now();
        s.skip_realms.retain(|_, skip| skip.until > now);
        s.skip_runs.retain(|_, skip| skip.until > now);
        s.skip_requests.retain(|_, skip| skip.until > now);
        let realms: Vec<String> = s.skip_realms.keys().cloned().collect();
        // A company this worker already loads its share of windows of waits for them: its
        // requests would only queue behind its budget.
        let per_company = self.cfg.windows_per_run.max(1) as usize;
        let mut exclude = realms.clone();
        exclude.extend(
            s.busy
                .iter()
                .filter(|(_, &n)| n >= per_company)
                .map(|(realm, _)| realm.clone()),
        );
        Skips {
            busy: s.busy.keys().cloned().collect(),
            realms,
            exclude,
            runs: s.skip_runs.keys().copied().collect(),
            requests: s.skip_requests.keys().copied().collect(),
        }
    }

    /// Claims a window and loads it.
    async fn take_window(&self, n: usize, k: &Skips) -> Took {
        // Each claim is its own invocation: a window handed back (a Postgres outage, a
        // token being rotated) may be claimed again by this worker at once.
        let token = self.cancel.child_token();
        let invocation = Uuid::new_v4();
        let claimer = Claimer {
            owner: crate::backfill::lease_owner(invocation, n as u32),
            invocation,
            lease: self.cfg.lease,
            cancel: token.clone(),
        };
        // A run with nothing left to load but parked windows whose sweep nobody holds (its
        // last window's worker died before sweeping, or its sweeper did) comes first: it is
        // one sweep, and the run is finished by it.
        let sweep = Claimer {
            owner: format!("{}:sweep", claimer.owner),
            ..claimer.clone()
        };
        match self
            .queue
            .claim_any_sweep(&sweep, &k.exclude, &k.runs)
            .await
        {
            Ok(Some(claim)) => {
                self.sweep(n, claim, token).await;
                return Took::Window;
            }
            Ok(None) => {}
            Err(QueueError::Store(e)) => return self.store_failed(e),
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "claiming a sweep failed; asking again shortly");
                return Took::Failed;
            }
        }
        match self
            .queue
            .claim_next_any(&claimer, &k.exclude, &k.runs)
            .await
        {
            Ok(Some(chunk)) => {
                self.load(n, chunk, token).await;
                Took::Window
            }
            Ok(None) => Took::Nothing,
            Err(QueueError::Store(e)) => self.store_failed(e),
            Err(e @ (QueueError::LeaseLost { .. } | QueueError::SweepLost { .. })) => {
                // A claim never loses a lease; asking again is all there is to do.
                tracing::warn!(error = %crate::errors::chain(&e), "claiming a window failed; asking again shortly");
                Took::Failed
            }
        }
    }

    /// Claims a sync request and runs it.
    async fn take_sync(&self, n: usize, k: &Skips) -> Took {
        let owner = format!("{}/{n}", self.id);
        match self
            .store
            // `exclude`, not only the skipped companies: a sync counts as a share of its
            // company's windows, so a company this worker already loads its share of waits.
            .claim_sync_request(&owner, self.cfg.lease, &k.exclude, &k.busy, &k.requests)
            .await
        {
            Ok(Some(request)) => {
                self.run_sync(n, request).await;
                Took::Sync
            }
            Ok(None) => Took::Nothing,
            Err(e) => self.store_failed(e),
        }
    }

    /// Postgres failed a claim: an outage is waited out, anything else stops the worker.
    fn store_failed(&self, e: StoreError) -> Took {
        if e.is_transient() {
            tracing::warn!(error = %crate::errors::chain(&e), "database unavailable; asking again shortly");
        } else {
            tracing::error!(error = %crate::errors::chain(&e), "the queue cannot be read; stopping");
            self.state().fatal.get_or_insert(e);
            self.cancel.cancel();
        }
        Took::Failed
    }

    /// What is left of the queue and of the sync requests (None: they could not be read;
    /// ask again).
    async fn queue_left(&self, k: &Skips) -> Option<Left> {
        let windows = self
            .store
            .unfinished_queued_by_company(&k.realms, &k.runs)
            .await;
        let syncs = self
            .store
            .unfinished_sync_requests_by_company(&k.realms, &k.requests)
            .await;
        let rows = match (windows, syncs) {
            (Ok(mut windows), Ok(syncs)) => {
                windows.extend(syncs);
                Ok(windows)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match rows {
            Ok(rows) if rows.is_empty() => Some(Left::Empty),
            // Windows nobody skips: pending elsewhere or held by another worker; wait.
            Ok(rows) if rows.iter().any(|(_, skipped, _)| !skipped) => Some(Left::Work),
            Ok(rows) => {
                let mut left = BTreeMap::new();
                for (realm, _, n) in rows {
                    *left.entry(realm).or_insert(0) += n;
                }
                Some(Left::OnlySkipped(left))
            }
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

    /// Loads one claimed window with the backfill engine (its run's options say how), then
    /// returns: the next claim decides which company is served next.
    async fn load(&self, slot: usize, chunk: ClaimedChunk, token: CancellationToken) {
        let row = chunk.row().clone();
        let realm = row.realm_id.clone();
        let span = tracing::info_span!("window", slot, realm_id = %realm, entity = %row.entity, run_id = %row.run_id, chunk = row.chunk_index);
        let known = match row.kind {
            RunKind::Report => crate::reports::pull::report_of(&row.entity).is_some(),
            _ => crate::entities::find(&row.entity).is_some(),
        };
        if !known {
            tracing::error!(parent: &span, "the run is of an entity this qbo does not know (an older or newer qbo planned it); leaving it");
            let reason = format!("entity {} is unknown to this qbo", row.entity);
            self.give_back(chunk, &span).await;
            self.state()
                .skip_runs
                .insert(row.run_id, Skip::new(reason, SKIP_FOR));
            return;
        }
        let client = match self.clients.get(&realm).await {
            Ok(client) => client,
            Err(e) => {
                // Nothing was loaded: the window waits untouched for whoever can load it.
                self.give_back(chunk, &span).await;
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
        *self.state().busy.entry(realm.clone()).or_default() += 1;
        let result = if row.kind == RunKind::Report {
            self.load_report(&realm, &client, chunk, token)
                .instrument(span.clone())
                .await
        } else {
            let engine = Backfill::new(client, self.store.clone(), token);
            engine
                .load_claimed(chunk, self.options())
                .instrument(span.clone())
                .await
        };
        let needs_human = match &result {
            Err(BackfillError::Auth(auth)) if auth.needs_human() => {
                Some(crate::errors::chain(auth))
            }
            _ => None,
        };
        if let Some(reason) = &needs_human {
            self.needs_reauth(&realm, reason).await;
        }
        if matches!(&result, Ok(s) if s.run_status == Some(crate::queue::RunStatus::Success)) {
            if let Err(e) = crate::companies::touch_loaded(self.store.pool(), &realm).await {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "could not record when the company was last loaded");
            }
        }
        let mut state = self.state();
        if let Some(n) = state.busy.get_mut(&realm) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.busy.remove(&realm);
            }
        }
        match result {
            Ok(summary) => {
                state.windows += 1;
                state.rows += summary.rows_loaded_now;
                state.companies.insert(realm);
                if let Some(status) = summary.run_status {
                    tracing::info!(parent: &span, %status, "run settled: no window of it is left");
                }
            }
            Err(BackfillError::Auth(auth)) if auth.needs_human() => {
                let reason = crate::errors::chain(&auth);
                tracing::error!(parent: &span, error = %reason, "this company needs a human (`qbo auth login` or `qbo auth import`); the worker goes on with the others");
                state.skip_realms.insert(realm, Skip::new(reason, SKIP_FOR));
            }
            Err(BackfillError::Store(e)) if e.is_transient() => {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "database unavailable; the window goes back to the queue once its lease runs out");
            }
            Err(BackfillError::Queue(QueueError::Store(e))) if e.is_transient() => {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "database unavailable; the window goes back to the queue once its lease runs out");
            }
            Err(e) => {
                let reason = crate::errors::chain(&e);
                tracing::error!(parent: &span, error = %reason, "the run cannot be loaded; the worker leaves it for a minute and goes on");
                state
                    .skip_runs
                    .insert(row.run_id, Skip::new(reason, SKIP_FOR));
            }
        }
    }

    /// Loads a window of a queued report run (`qbo reports --enqueue`) with the report
    /// loader, its outcome told as the backfill engine tells a window's.
    async fn load_report(
        &self,
        realm: &str,
        client: &Arc<crate::client::QboClient>,
        chunk: ClaimedChunk,
        token: CancellationToken,
    ) -> Result<ChunkSummary, BackfillError> {
        let (run_id, index) = (chunk.run_id(), chunk.index());
        let loader = crate::reports::pull::Loader {
            client: client.as_ref(),
            store: &self.store,
            realm_id: realm,
            lease: self.cfg.lease,
            cancel: token.clone(),
        };
        let run_status = loader.load_claimed(chunk).await.map_err(|e| match e {
            ReportError::Qbo {
                source: ClientError::Auth(auth),
                ..
            } => BackfillError::Auth(auth),
            ReportError::Queue(q) => BackfillError::Queue(q),
            other => BackfillError::Report(Box::new(other)),
        })?;
        Ok(ChunkSummary {
            run_id,
            realm_id: realm.to_string(),
            entity: "report",
            chunk: index,
            run_status,
            rows_loaded_now: 0,
            interrupted: token.is_cancelled(),
        })
    }

    /// Sweeps a run whose sweep this worker claimed (see `take_window`).
    async fn sweep(&self, slot: usize, claim: SweepClaim, token: CancellationToken) {
        let (run_id, realm) = (claim.run_id(), claim.realm_id().to_string());
        let span = tracing::info_span!("sweep", slot, realm_id = %realm, %run_id);
        let client = match self.clients.get(&realm).await {
            Ok(client) => client,
            Err(e) => {
                // Nothing was read: the sweep waits for whoever can do it.
                if let Err(e) = claim.release().await {
                    tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "could not free the sweep; it is claimable again once its lease runs out");
                }
                let reason = crate::errors::chain(&e);
                let for_ = if e.needs_human() {
                    self.needs_reauth(&realm, &reason).await;
                    SKIP_FOR
                } else {
                    SKIP_TRANSIENT_FOR
                };
                tracing::warn!(parent: &span, error = %reason, "cannot sweep this company's run now; the worker goes on with the others");
                self.state()
                    .skip_realms
                    .insert(realm, Skip::new(reason, for_));
                return;
            }
        };
        let engine = Backfill::new(client, self.store.clone(), token);
        let result = tracing::Instrument::instrument(
            engine.sweep_claimed(claim, self.options()),
            span.clone(),
        )
        .await;
        match result {
            Ok(summary) => {
                if summary.run_status == Some(crate::queue::RunStatus::Success) {
                    if let Err(e) = crate::companies::touch_loaded(self.store.pool(), &realm).await
                    {
                        tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "could not record when the company was last loaded");
                    }
                }
                if let Some(status) = summary.run_status {
                    tracing::info!(parent: &span, %status, settled = summary.settled, "run settled by its sweep");
                }
            }
            Err(BackfillError::Auth(auth)) if auth.needs_human() => {
                let reason = crate::errors::chain(&auth);
                self.needs_reauth(&realm, &reason).await;
                tracing::error!(parent: &span, error = %reason, "this company needs a human (`qbo auth login` or `qbo auth import`); the worker goes on with the others");
                self.state()
                    .skip_realms
                    .insert(realm, Skip::new(reason, SKIP_FOR));
            }
            Err(e) => {
                let reason = crate::errors::chain(&e);
                tracing::warn!(parent: &span, error = %reason, "the run's sweep did not finish; it is done again by the next worker");
                self.state()
                    .skip_runs
                    .insert(run_id, Skip::new(reason, SKIP_TRANSIENT_FOR));
            }
        }
    }

    async fn give_back(&self, chunk: ClaimedChunk, span: &tracing::Span) {
        if let Err(e) = chunk.give_back_untried().await {
            // Its lease runs out and it is claimable again.
            tracing::warn!(parent: span, error = %crate::errors::chain(&e), "could not give the window back; it is claimable again once its lease runs out");
        }
    }

    /// Marks the company `needs_reauth` so that no worker takes its runs until `qbo auth
    /// login` or `qbo auth import` gives it a token again (a realm not in `qbo companies` is
    /// only skipped by this worker).
    pub(super) async fn needs_reauth(&self, realm: &str, reason: &str) {
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

    /// This worker's lease; the run's stored options say how its windows are planned and
    /// paged.
    fn options(&self) -> Options {
        Options {
            concurrency: 1,
            lease: self.cfg.lease,
            wait_for_others: false,
            ..Options::default()
        }
    }
}

/// What a slot leaves alone now.
pub(super) struct Skips {
    /// Companies skipped (a failure).
    pub(super) realms: Vec<String>,
    /// Those, and companies this worker already loads its share of windows of.
    exclude: Vec<String>,
    /// Companies this worker loads now (their sync requests come after others').
    pub(super) busy: Vec<String>,
    runs: Vec<Uuid>,
    pub(super) requests: Vec<Uuid>,
}
