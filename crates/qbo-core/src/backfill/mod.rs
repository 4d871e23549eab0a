//! The backfill engine: creates or resumes a run, lets workers claim its chunks, and loads
//! each chunk completely (every record that was in the window when the chunk started).

mod claimed;
mod progress;
mod sweep;
mod window;

pub use claimed::{ChunkSummary, SweepSummary};
pub use progress::{EntitiesSnapshot, EntityProgress, ProgressSnapshot, RunProgress};
use window::{ChunkJob, Loaded, PagedWindow};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::AuthError;
use crate::chunks::{self, DateRange, PlanError, WindowField};
use crate::client::{ClientError, QuerySource, RequestCounters};
use crate::entities::Entity;
use crate::query::MAX_PAGE_SIZE;
pub use crate::queue::retry_transient;
use crate::queue::{
    ChunkStatus, ClaimMode, ClaimedChunk, Claimer, ParkedChunk, Progress, Queue, QueueError,
    RunKind, RunStatus,
};
use crate::store::{ChunkRow, NewRun, PgStore, ReportFilter, RunRow, StoreError};

/// Windows loaded at once unless told otherwise. One worker spends most of its time waiting
/// on QBO (a request takes ~100-300 ms) or on a commit; four keep the API and Postgres busy
/// while the per-company limiter holds the run inside QBO's 500 requests/minute and 10 in
/// flight.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// "could not extend the lease of paged windows": at most one line per this (see
/// `spawn_paged_heartbeat`), with how many were held back.
static PAGED_LEASE_LINE: crate::telemetry::RareLine =
    crate::telemetry::RareLine::new(Duration::from_secs(10));

/// How a new run cuts its range into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// Ask QBO how many records the range holds and cut windows by size: an empty range is
    /// one window, a dense one is split in time until each window is at most this many pages.
    ByCount { window_pages: u32 },
    /// Calendar windows of this many days (`--chunk-days`).
    Days(i64),
}

/// Pages a window planned by count may hold unless told otherwise: big enough that the
/// partial last page of each window costs little, small enough that a resume re-reads little
/// and ten windows keep QBO's ten in-flight seats busy.
pub const DEFAULT_WINDOW_PAGES: u32 = 10;

impl Chunking {
    /// The calendar step where one is needed regardless (sync's catch-up windows).
    pub fn days_or(self, default: i64) -> i64 {
        match self {
            Chunking::Days(d) => d,
            Chunking::ByCount { .. } => default,
        }
    }
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking::ByCount {
            window_pages: DEFAULT_WINDOW_PAGES,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub chunking: Chunking,
    pub page_size: u32,
    pub concurrency: u32,
    pub window_field: WindowField,
    /// How long a claimed chunk stays ours without a heartbeat.
    pub lease: Duration,
    /// Full re-reads of a window allowed when records change while we page.
    pub max_passes: u32,
    /// The `qbo backfill all` a new run belongs to (kept in the run's options, so that
    /// `all --resume` finds the runs of it).
    pub invocation: Option<Uuid>,
    /// When nothing is left to claim but other workers still hold windows of the run: wait
    /// for them (a command, which must end with the run done) or return at once (`qbo
    /// worker`, which has other companies' windows to load meanwhile).
    pub wait_for_others: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            chunking: Chunking::default(),
            page_size: MAX_PAGE_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            window_field: WindowField::LastUpdated,
            lease: Duration::from_secs(30),
            max_passes: 5,
            invocation: None,
            wait_for_others: true,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Mode {
    New(DateRange),
    /// Continue a run's unfinished windows: this one, or the latest backfill of the entity.
    Resume(Option<Uuid>),
    RetryFailed(Option<Uuid>),
    /// The pending windows a sync added to its own run (see `crate::sync`).
    Planned(Uuid),
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::New(r) => write!(f, "new run {}..{}", r.start, r.end_inclusive),
            Mode::Resume(Some(id)) => write!(f, "resume run {id}"),
            Mode::Resume(None) => f.write_str("resume"),
            Mode::RetryFailed(Some(id)) => write!(f, "retry failed chunks of run {id}"),
            Mode::RetryFailed(None) => f.write_str("retry failed chunks of the latest run"),
            Mode::Planned(id) => write!(f, "windows of sync run {id}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("there is no backfill of {entity} for realm {realm_id} to resume; start one with --start and --end")]
    NothingToResume { entity: String, realm_id: String },
    #[error("run {0} does not exist (see `qbo report --format json` for run ids)")]
    RunNotFound(Uuid),
    #[error("run {run_id} ({entity}) was cancelled: its unfinished windows are never loaded; start a new run with --start and --end")]
    RunCancelled { run_id: Uuid, entity: String },
    #[error("run {run_id} belongs to {actual}, not {requested}")]
    WrongRun {
        run_id: Uuid,
        actual: String,
        requested: String,
    },
    #[error(
        "--window-field txn-date needs a transaction entity; {0} has no TxnDate (use last-updated)"
    )]
    NoTxnDate(&'static str),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Auth(AuthError),
    /// A window of a report run a `qbo worker` loaded (`crate::reports::pull`) could not be
    /// loaded for a reason that is not its own failure (the run cannot be read).
    #[error(transparent)]
    Report(Box<crate::reports::ReportError>),
    /// A bug: the other workers were stopped and handed their windows back.
    #[error("a worker panicked, which is a bug in qbo (please report it with this message): {0}")]
    WorkerPanicked(String),
}

/// What one invocation did to one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub entity: &'static str,
    pub status: RunStatus,
    pub chunks: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub pending: usize,
    /// Windows its cancel stopped (`qbo serve`'s cancel): never loaded.
    pub cancelled: usize,
    pub rows: i64,
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
    /// Its windows' requests and its own (split COUNTs, the sweep), every attempt counted.
    pub requests: i64,
    pub retries: i64,
    pub interrupted: bool,
    /// Wall time of this invocation's work on the run.
    pub duration_secs: f64,
    /// Distinct records this invocation loaded (`rows` also counts earlier invocations').
    pub rows_loaded_now: u64,
}

impl RunSummary {
    fn from_chunks(
        run_id: Uuid,
        entity: &'static Entity,
        status: RunStatus,
        rows: &[ChunkRow],
        interrupted: bool,
        now: &ProgressSnapshot,
    ) -> Self {
        let count = |s: ChunkStatus| rows.iter().filter(|c| c.status == s).count();
        RunSummary {
            run_id,
            entity: entity.cli_name,
            status,
            chunks: rows.len(),
            succeeded: count(ChunkStatus::Success),
            failed: count(ChunkStatus::Error),
            pending: count(ChunkStatus::Pending) + count(ChunkStatus::Running),
            cancelled: count(ChunkStatus::Cancelled),
            rows: rows.iter().map(|c| c.row_count).sum(),
            inserted: rows.iter().map(|c| c.inserted).sum(),
            updated: rows.iter().map(|c| c.updated).sum(),
            skipped: rows.iter().map(|c| c.skipped).sum(),
            requests: rows.iter().map(|c| c.requests as i64).sum(),
            retries: rows.iter().map(|c| c.retries as i64).sum(),
            interrupted,
            duration_secs: now.elapsed.as_secs_f64(),
            rows_loaded_now: now.rows,
        }
    }

    /// This invocation's pace.
    pub fn rows_per_sec(&self) -> f64 {
        if self.duration_secs > 0.0 {
            self.rows_loaded_now as f64 / self.duration_secs
        } else {
            0.0
        }
    }
}

/// Why a chunk attempt stopped early.
#[derive(Debug, thiserror::Error)]
enum ChunkError {
    #[error(transparent)]
    Client(ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the window kept changing while it was paged ({0} passes); run --retry-failed later")]
    Unstable(u32),
    #[error(
        "QBO's COUNT(*) says the window holds {expected} records, but paging it returned only \
         {read}, {passes} times, with nothing changing meanwhile; run --retry-failed later"
    )]
    ShortOfCount {
        expected: u64,
        read: u64,
        passes: u32,
    },
    #[error("interrupted")]
    Cancelled,
}

impl From<ClientError> for ChunkError {
    fn from(e: ClientError) -> Self {
        match e {
            // Ctrl-C / SIGTERM cut the request short: the window goes back, it did not fail.
            ClientError::Cancelled => ChunkError::Cancelled,
            e => ChunkError::Client(e),
        }
    }
}

/// Everything a worker needs, shared by all workers of one invocation.
pub struct Backfill<S> {
    source: Arc<S>,
    store: PgStore,
    queue: Queue,
    cancel: CancellationToken,
    /// Set when a failure needs a human (the refresh token was rejected): stop everything.
    fatal: Mutex<Option<AuthError>>,
    progress: Arc<RunProgress>,
}

struct RunCtx {
    run_id: Uuid,
    entity: &'static Entity,
    field: WindowField,
    /// How the run was planned (from its stored options, whatever this invocation was told).
    chunking: Chunking,
    /// A first window without a count reads a page before counting (see `Entity::common`).
    probe_first: bool,
    mode: Mutex<ClaimMode>,
    invocation: Uuid,
    opts: Options,
    total_chunks: std::sync::atomic::AtomicUsize,
    /// This run's live counters (which add to the invocation's).
    progress: Arc<EntityProgress>,
    /// Windows paged and waiting for the run's sweep.
    paged: Mutex<Vec<(ParkedChunk, PagedWindow)>>,
    /// A window was split since the last look: its pieces are `pending`.
    split: std::sync::atomic::AtomicBool,
    /// Park multi-page windows durably for the run's one worker sweep (a `qbo worker`'s
    /// queued run, see `queue::SweepClaim`) rather than in `paged` for this invocation's.
    durable_park: bool,
}

impl RunCtx {
    fn claim_mode(&self) -> ClaimMode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_split(&self) -> bool {
        self.split.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    fn take_paged(&self) -> Vec<(ParkedChunk, PagedWindow)> {
        std::mem::take(&mut *self.paged.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What `prepare` settled about the run.
struct Prepared {
    run_id: Uuid,
    field: WindowField,
    claim: ClaimMode,
    chunking: Chunking,
}

impl Prepared {
    /// An existing run, planned as its stored options say (calendar runs never split).
    fn of(run: &RunRow, claim: ClaimMode) -> Prepared {
        let stored = |key: &str| run.options.get(key).and_then(serde_json::Value::as_i64);
        let chunking = match (stored("window_pages"), stored("chunk_days")) {
            (Some(pages), _) => Chunking::ByCount {
                window_pages: pages.clamp(1, 1000) as u32,
            },
            (None, days) => Chunking::Days(days.unwrap_or(7)),
        };
        Prepared {
            run_id: run.run_id,
            field: stored_field(&run.window_field),
            claim,
            chunking,
        }
    }
}

impl<S: QuerySource + 'static> Backfill<S> {
    pub fn new(source: Arc<S>, store: PgStore, cancel: CancellationToken) -> Arc<Self> {
        Arc::new(Backfill {
            source,
            queue: Queue::new(store.clone()),
            store,
            cancel,
            fatal: Mutex::new(None),
            progress: Arc::new(RunProgress::default()),
        })
    }

    /// Live counters of every run of this `Backfill` (several entities may run at once,
    /// sharing the client and its limits), for a progress display.
    pub fn progress(&self) -> Arc<RunProgress> {
        self.progress.clone()
    }

    /// Runs (or resumes, or retries) the backfill of one entity to completion.
    pub async fn run(
        self: &Arc<Self>,
        entity: &'static Entity,
        mode: Mode,
        opts: Options,
    ) -> Result<RunSummary, BackfillError> {
        let realm_id = self.source.realm_id().to_string();
        // A backfill into an empty table cannot have missed a delete (see
        // crate::sync::watermark); a table with rows also says the entity is not empty.
        let raw_had_rows = crate::store::raw::has_rows(self.store.pool(), entity, &realm_id)
            .await
            .map_err(StoreError::from)?;
        let Prepared {
            run_id,
            field,
            claim,
            chunking,
        } = self
            .prepare(entity, &realm_id, &mode, &opts, raw_had_rows)
            .await?;
        retry_transient(&self.cancel, "marking the run running", || {
            self.queue.mark_run_running(run_id)
        })
        .await?;
        let started = Instant::now();
        let existing = self
            .store
            .chunks(&ReportFilter {
                run_id: Some(run_id),
                ..Default::default()
            })
            .await?;
        let total_chunks = existing.len();
        let done_before = match claim {
            ClaimMode::Unfinished => existing
                .iter()
                .filter(|c| c.status == ChunkStatus::Success)
                .count(),
            ClaimMode::FailedOnly => existing
                .iter()
                .filter(|c| c.status != ChunkStatus::Error)
                .count(),
        };
        let progress =
            self.progress
                .begin(entity.cli_name, total_chunks as u64, done_before as u64);
        // Only windows planned by count probe: a calendar window is whatever the calendar
        // says, and counting it first is what `--chunk-days` users have always had.
        let probe_first =
            matches!(chunking, Chunking::ByCount { .. }) && (entity.common || raw_had_rows);
        let ctx = Arc::new(RunCtx {
            run_id,
            entity,
            field,
            chunking,
            probe_first,
            mode: Mutex::new(claim),
            invocation: Uuid::new_v4(),
            opts: opts.clone(),
            total_chunks: total_chunks.into(),
            progress: progress.clone(),
            paged: Mutex::new(Vec::new()),
            split: false.into(),
            durable_park: false,
        });
        let span = tracing::info_span!("backfill", %run_id, realm_id = %realm_id, entity = entity.cli_name);
        tracing::info!(parent: &span, chunks = total_chunks, %mode, "starting");

        let keep_paged_leased = self.spawn_paged_heartbeat(&ctx);
        let mut first_error = None;
        let mut round = 1;
        loop {
            if let Some(e) = self.run_workers(&ctx, &span).await {
                first_error.get_or_insert(e);
            }
            // A failed window retried and split left its pieces `pending`, which claiming
            // only failed windows never takes: take them as windows sent back are taken.
            if ctx.take_split()
                && ctx.claim_mode() == ClaimMode::FailedOnly
                && first_error.is_none()
                && !self.cancel.is_cancelled()
            {
                *ctx.mode.lock().unwrap_or_else(|p| p.into_inner()) = ClaimMode::Unfinished;
                continue;
            }
            let parked = ctx.take_paged();
            if parked.is_empty() {
                break;
            }
            if first_error.is_some() || self.cancel.is_cancelled() {
                self.hand_back(&ctx, parked).await?;
                break;
            }
            let reread = self
                .sweep(&ctx, parked, round)
                .instrument(span.clone())
                .await?;
            if reread == 0 {
                break;
            }
            // The windows sent back are `pending` now, whatever this invocation claims first.
            *ctx.mode.lock().unwrap_or_else(|p| p.into_inner()) = ClaimMode::Unfinished;
            round += 1;
        }
        keep_paged_leased.abort();
        let status = retry_transient(&CancellationToken::new(), "settling the run", || {
            self.queue.settle_run(run_id)
        })
        .await?;
        if let Some(auth) = self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(BackfillError::Auth(auth));
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if status == RunStatus::Success && !self.cancel.is_cancelled() {
            // A sync watermark where none exists (crate::watermark::after_backfill).
            crate::watermark::seed_after_backfill(&self.store, run_id, entity).await?;
        }
        let rows = self
            .store
            .chunks(&ReportFilter {
                run_id: Some(run_id),
                ..Default::default()
            })
            .await?;
        let mut summary = RunSummary::from_chunks(
            run_id,
            entity,
            status,
            &rows,
            self.cancel.is_cancelled(),
            &ProgressSnapshot {
                elapsed: started.elapsed(),
                ..progress.snapshot()
            },
        );
        // The requests that belong to no window (split COUNTs, the sweep) are the run's too.
        let (own_requests, own_retries) = self.store.run_own_requests(run_id).await?;
        summary.requests += own_requests;
        summary.retries += own_retries;
        Ok(summary)
    }

    /// Runs workers until no window is left to claim; the first error any of them hit.
    async fn run_workers(
        self: &Arc<Self>,
        ctx: &Arc<RunCtx>,
        span: &tracing::Span,
    ) -> Option<BackfillError> {
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..ctx.opts.concurrency.max(1) {
            let me = self.clone();
            let ctx = ctx.clone();
            let worker = lease_owner(ctx.invocation, n);
            workers.spawn(async move { me.work(&ctx, &worker).await }.instrument(span.clone()));
        }
        let mut first_error = None;
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.cancel.cancel();
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    let message = panic_message(join);
                    tracing::error!(panic = %message, "a worker panicked; stopping the others");
                    // The others stop and hand their windows back; nothing is half-written
                    // (a page commits with its progress or not at all).
                    self.cancel.cancel();
                    first_error.get_or_insert(BackfillError::WorkerPanicked(message));
                }
            }
        }
        first_error
    }

    /// Keeps the run's parked windows leased to this invocation until its sweep settles them.
    fn spawn_paged_heartbeat(&self, ctx: &RunCtx) -> tokio::task::JoinHandle<()> {
        let queue = self.queue.clone();
        let (run_id, invocation, lease) = (ctx.run_id, ctx.invocation, ctx.opts.lease);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(e) = queue.extend_paged(run_id, invocation, lease).await {
                    // Every engine tries again each third of a lease: during a Postgres
                    // outage that is a line a second or more, saying the same thing.
                    if let Some(held_back) = PAGED_LEASE_LINE.allow() {
                        tracing::warn!(error = %crate::errors::chain(&e), held_back, "could not extend the lease of paged windows; will try again");
                    }
                }
            }
        })
    }

    async fn prepare(
        &self,
        entity: &'static Entity,
        realm_id: &str,
        mode: &Mode,
        opts: &Options,
        raw_had_rows: bool,
    ) -> Result<Prepared, BackfillError> {
        match mode {
            Mode::New(range) => {
                let run_id = plan_new_run(
                    &self.store,
                    &NewBackfill {
                        realm_id,
                        entity,
                        range: *range,
                        minor_version: self.source.minor_version(),
                        raw_had_rows,
                        queued: false,
                    },
                    opts,
                )
                .await?;
                Ok(Prepared {
                    run_id,
                    field: opts.window_field,
                    claim: ClaimMode::Unfinished,
                    chunking: opts.chunking,
                })
            }
            Mode::Resume(run_id) => {
                let run = self.chosen_run(*run_id, entity, realm_id).await?;
                Ok(Prepared::of(&run, ClaimMode::Unfinished))
            }
            Mode::Planned(run_id) => {
                let run = self
                    .store
                    .run(*run_id)
                    .await?
                    .ok_or(BackfillError::RunNotFound(*run_id))?;
                Ok(Prepared {
                    field: WindowField::LastUpdated,
                    ..Prepared::of(&run, ClaimMode::Unfinished)
                })
            }
            Mode::RetryFailed(run_id) => {
                let run = self.chosen_run(*run_id, entity, realm_id).await?;
                Ok(Prepared::of(&run, ClaimMode::FailedOnly))
            }
        }
    }

    /// The run `run_id` names, which must be a backfill of this entity and company, or the
    /// latest such backfill; never a cancelled one.
    async fn chosen_run(
        &self,
        run_id: Option<Uuid>,
        entity: &Entity,
        realm_id: &str,
    ) -> Result<RunRow, BackfillError> {
        let run = self.named_or_latest_run(run_id, entity, realm_id).await?;
        if run.status == RunStatus::Cancelled {
            return Err(BackfillError::RunCancelled {
                run_id: run.run_id,
                entity: run.entity,
            });
        }
        Ok(run)
    }

    async fn named_or_latest_run(
        &self,
        run_id: Option<Uuid>,
        entity: &Entity,
        realm_id: &str,
    ) -> Result<RunRow, BackfillError> {
        let Some(id) = run_id else {
            return self.latest_run(entity, realm_id).await;
        };
        let run = self
            .store
            .run(id)
            .await?
            .ok_or(BackfillError::RunNotFound(id))?;
        // A sync's steps are not windows a backfill may re-read: refuse its runs too.
        if run.kind != RunKind::Backfill
            || run.entity != entity.cli_name
            || run.realm_id != realm_id
        {
            return Err(BackfillError::WrongRun {
                run_id: run.run_id,
                actual: format!("{} ({}) of realm {}", run.entity, run.kind, run.realm_id),
                requested: format!("{} (backfill) of realm {realm_id}", entity.cli_name),
            });
        }
        Ok(run)
    }

    async fn latest_run(&self, entity: &Entity, realm_id: &str) -> Result<RunRow, BackfillError> {
        self.store
            .latest_run(realm_id, entity.cli_name)
            .await?
            .ok_or_else(|| BackfillError::NothingToResume {
                entity: entity.cli_name.to_string(),
                realm_id: realm_id.to_string(),
            })
    }

    /// One worker: claim, load, report, until nothing is left for this invocation.
    async fn work(&self, ctx: &RunCtx, worker: &str) -> Result<(), BackfillError> {
        let claimer = Claimer {
            owner: worker.to_string(),
            invocation: ctx.invocation,
            lease: ctx.opts.lease,
            cancel: self.cancel.clone(),
        };
        let mut told_about_leases = false;
        while !self.cancel.is_cancelled() {
            let claimed = retry_transient(&self.cancel, "claiming a chunk", || {
                self.queue
                    .claim_holding_none(ctx.run_id, ctx.claim_mode(), &claimer)
            })
            .await?;
            let Some(chunk) = claimed else {
                if ctx.claim_mode() == ClaimMode::FailedOnly {
                    return Ok(());
                }
                // A chunk still leased by a worker that died (or is alive elsewhere): wait for
                // the lease to run out rather than load the window twice at once.
                let held = retry_transient(&self.cancel, "looking for leased chunks", || {
                    self.queue.leased_elsewhere(ctx.run_id, ctx.invocation)
                })
                .await?;
                if held == 0 || !ctx.opts.wait_for_others {
                    return Ok(());
                }
                if !told_about_leases {
                    tracing::warn!(
                        chunks = held,
                        lease_secs = ctx.opts.lease.as_secs(),
                        "chunks are leased by another worker (or one that was killed); waiting for the lease to expire"
                    );
                    told_about_leases = true;
                }
                tokio::select! {
                    _ = self.cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(ctx.opts.lease.min(Duration::from_secs(2))) => {}
                }
                continue;
            };
            match self.run_chunk(ctx, chunk).await {
                // The chunk is someone else's now: not a failure of the window or the run.
                Err(BackfillError::Queue(QueueError::LeaseLost { .. })) => {
                    tracing::warn!("lost the lease on this chunk; another worker owns it now");
                }
                result => result?,
            }
        }
        Ok(())
    }

    /// Loads a claimed chunk and maps how loading ended to the chunk's transition.
    async fn run_chunk(&self, ctx: &RunCtx, claim: ClaimedChunk) -> Result<(), BackfillError> {
        let window = claim.window();
        let row = claim.row().clone();
        let span = tracing::info_span!("chunk", chunk = row.chunk_index, window_start = %window.start, window_end = %window.end, attempt = row.attempts);
        let mut job = ChunkJob {
            ctx,
            stop: claim.stop().clone(),
            claim,
            window,
            planned: row.planned_count.map(|n| n.max(0) as u64),
            counted_at: None,
            probe_first: ctx.probe_first
                && row.planned_count.is_none()
                && row.passes == 0
                && row.attempts <= 1,
            progress: Progress {
                passes: row.passes,
                ..Progress::default()
            },
            earlier: RequestCounters {
                requests: row.requests.max(0) as u32,
                retries: row.retries.max(0) as u32,
            },
            counters: RequestCounters::default(),
            published: RequestCounters::default(),
            seen: HashSet::new(),
        };
        let outcome = self.load_chunk(&mut job).instrument(span.clone()).await;
        self.publish(&mut job, 0);
        let mut progress = job.progress;
        job.stamp_requests(&mut progress);
        progress.row_count = job.seen.len() as i64;
        let claim = job.claim;
        let _enter = span.enter();
        // "3/12": the window's number in its run; a worker loading one claimed window does
        // not know the run's count (0), and says only the number.
        let number = match ctx.total_chunks.load(std::sync::atomic::Ordering::Relaxed) {
            0 => format!("{}", row.chunk_index + 1),
            total => format!("{}/{total}", row.chunk_index + 1),
        };
        match outcome {
            Ok(Loaded::Complete) => {
                claim.succeed(&progress).await?;
                ctx.progress.chunk_finished(true);
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    "chunk {} [{} .. {}) success: {} rows (expected {}), {} inserted, {} updated, {} skipped, {} pages, {} requests",
                    number,
                    window.start.format("%Y-%m-%d"),
                    window.end.format("%Y-%m-%d"),
                    progress.row_count,
                    progress.expected_count.unwrap_or_default(),
                    progress.counts.inserted,
                    progress.counts.updated,
                    progress.counts.skipped,
                    progress.pages,
                    progress.requests,
                );
                Ok(())
            }
            Ok(Loaded::Paged(paged)) if ctx.durable_park => {
                claim
                    .park_durably(&progress, &paged.stored(row.attempts))
                    .await?;
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    "chunk {} [{} .. {}) paged: {} rows (expected {}) in {} pages; the run's one sweep will check it",
                    number,
                    window.start.format("%Y-%m-%d"),
                    window.end.format("%Y-%m-%d"),
                    progress.row_count,
                    paged.expected,
                    progress.pages,
                );
                crate::failpoint::hold("worker-after-park").await;
                Ok(())
            }
            Ok(Loaded::Paged(paged)) => {
                let parked = claim.park(&progress).await?;
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    "chunk {} [{} .. {}) paged: {} rows (expected {}) in {} pages; the run's sweep will check it",
                    number,
                    window.start.format("%Y-%m-%d"),
                    window.end.format("%Y-%m-%d"),
                    progress.row_count,
                    paged.expected,
                    progress.pages,
                );
                ctx.paged
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((parked, paged));
                Ok(())
            }
            Ok(Loaded::Split(leaves)) => {
                claim.split(&leaves, &progress).await?;
                ctx.split.store(true, std::sync::atomic::Ordering::Relaxed);
                let added = leaves.len().saturating_sub(1);
                ctx.total_chunks
                    .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
                ctx.progress.windows_added(added as u64);
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    "chunk {} [{} .. {}) holds {} records: split into {} windows of at most {} pages",
                    number,
                    window.start.format("%Y-%m-%d"),
                    window.end.format("%Y-%m-%d"),
                    progress.expected_count.unwrap_or_default(),
                    leaves.len(),
                    match ctx.chunking {
                        Chunking::ByCount { window_pages } => window_pages,
                        Chunking::Days(_) => 0,
                    },
                );
                Ok(())
            }
            Err(ChunkError::Cancelled) if self.cancel.is_cancelled() => {
                claim.hand_back().await?;
                Ok(())
            }
            Err(ChunkError::Cancelled) | Err(ChunkError::Queue(QueueError::LeaseLost { .. })) => {
                tracing::warn!("lost the lease on this chunk; another worker owns it now");
                Ok(())
            }
            Err(ChunkError::Client(ClientError::Auth(auth))) if auth.needs_human() => {
                let message = crate::errors::chain(&auth);
                if !self.stop_for_human(auth) {
                    // Another worker already hit this and stopped the run; this window did
                    // nothing wrong, so it goes back to `pending` for the resume after
                    // `qbo auth login`.
                    claim.hand_back().await?;
                    return Ok(());
                }
                tracing::error!(error = %message, "stopping: a human must act");
                claim.fail(&progress, &message).await?;
                ctx.progress.chunk_finished(false);
                Ok(())
            }
            Err(e) => {
                let message = crate::errors::chain(&e);
                claim.fail(&progress, &message).await?;
                ctx.progress.chunk_finished(false);
                tracing::error!(error = %message, "chunk failed; the run goes on with the others");
                Ok(())
            }
        }
    }

    /// Stops the run for a failure only a human can fix. True for the first worker to hit
    /// it, whose window carries the error; the others hand theirs back.
    fn stop_for_human(&self, auth: AuthError) -> bool {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if fatal.is_some() || self.cancel.is_cancelled() {
            return false;
        }
        *fatal = Some(auth);
        self.cancel.cancel();
        true
    }
}

/// A new backfill run of one entity and company, as `plan_new_run` records it.
pub struct NewBackfill<'a> {
    pub realm_id: &'a str,
    pub entity: &'static Entity,
    pub range: DateRange,
    /// The QBO minor version the run's windows are read with (kept in its options).
    pub minor_version: u32,
    /// Whether the raw table already held rows of the company (see `crate::watermark`).
    pub raw_had_rows: bool,
    /// Planned for `qbo worker`s (`--enqueue`) rather than by the command that loads it.
    pub queued: bool,
}

/// Records a new run and its first windows, all `pending`, without asking QBO anything: a
/// run planned by count is one window its first worker counts and splits. The engine does
/// this for a new run; `qbo backfill --enqueue` does it alone and leaves the loading to
/// `qbo worker`s.
pub async fn plan_new_run(
    store: &PgStore,
    run: &NewBackfill<'_>,
    opts: &Options,
) -> Result<Uuid, BackfillError> {
    let entity = run.entity;
    if opts.window_field == WindowField::TxnDate && !entity.has_txn_date() {
        return Err(BackfillError::NoTxnDate(entity.cli_name));
    }
    let windows = match opts.chunking {
        // One window that stands for the whole range: QBO cannot window it.
        _ if entity.is_whole() => vec![chunks::whole_range(run.range)],
        // One window for the range; its first worker counts it and splits it
        // if it holds more than a window may (see window::Backfill::split).
        Chunking::ByCount { .. } => vec![chunks::whole_range(run.range)],
        Chunking::Days(days) => chunks::plan(run.range, days)?,
    };
    Ok(store
        .create_run(
            &NewRun {
                realm_id: run.realm_id,
                entity: entity.cli_name,
                range_start: run.range.start,
                range_end: run.range.end_inclusive,
                window_field: opts.window_field.as_str(),
                options: json!({
                    "chunk_days": match opts.chunking {
                        Chunking::Days(d) => Some(d),
                        Chunking::ByCount { .. } => None,
                    },
                    "window_pages": match opts.chunking {
                        Chunking::ByCount { window_pages } => Some(window_pages),
                        Chunking::Days(_) => None,
                    },
                    "page_size": opts.page_size,
                    "concurrency": opts.concurrency,
                    "minor_version": run.minor_version,
                    "raw_had_rows": run.raw_had_rows,
                    "invocation": opts.invocation,
                    "queued": run.queued,
                }),
                kind: RunKind::Backfill,
                read_via: if entity.is_whole() { "whole" } else { "query" },
            },
            &windows,
        )
        .await?)
}

/// What a panicking worker said, for the error that reports the bug.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string()),
        Err(join) => join.to_string(),
    }
}

fn stored_field(s: &str) -> WindowField {
    WindowField::parse_stored(s).unwrap_or(WindowField::LastUpdated)
}

/// The lease owner of one claim-maker: worker `n` of the engine invocation `invocation`.
/// Unique per engine, not only per process: two engines of one process (two slots of a `qbo
/// worker`) may load the same run, and with a shared owner one's heartbeat would renew, and
/// its hand-back release, a window the other re-claimed after a lease ran out. Host and pid
/// come first so a human (or a test) can tell whose it is.
pub fn lease_owner(invocation: Uuid, n: u32) -> String {
    format!("{}:{}:{invocation}:{n}", hostname(), std::process::id())
}

pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}
