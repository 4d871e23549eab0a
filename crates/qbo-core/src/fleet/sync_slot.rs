//! How a worker slot runs a queued sync request: whole, with the sync engine, under a lease
//! it heartbeats. The request ends `success`, `partial` or `error`; it goes back to `queued`
//! when the worker is drained mid-sync, when the company turns out to need a login (it waits
//! for `qbo auth login`/`import` like the company's queued windows), when another sync holds
//! the company's sync lock, or when Postgres is away. A sync is safe to run again: its
//! watermarks move only with the rows they cover.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sync_requests::{SyncOptions, SyncSelection};
use super::worker::{Skip, Worker, SKIP_FOR, SKIP_TRANSIENT_FOR};
use crate::backfill;
use crate::queue::RunStatus;
use crate::store::sync_requests::{ClaimedSyncRequest, SyncEnd, SyncRequestStatus};
use crate::sync::{Options, SyncError, SyncSummary, Syncer};

/// How long a worker leaves a sync request alone after finding its company's sync lock held
/// by another sync (a cron `qbo sync` may hold it for as long as it runs).
const SYNC_LOCK_BUSY_SKIP: Duration = Duration::from_secs(15);

/// What became of one attempt at a request.
enum Ending {
    End(SyncEnd, Vec<uuid::Uuid>, Option<String>),
    /// The lease was lost: another worker has the request; write nothing.
    Lost,
}

impl Worker {
    pub(super) async fn run_sync(&self, slot: usize, req: ClaimedSyncRequest) {
        let realm = req.realm_id.clone();
        let request_id = req.lease.request_id;
        let span = tracing::info_span!("sync_request", slot, realm_id = %realm, %request_id, attempt = req.lease.attempt);
        // The lease is kept from the claim on, by a task of its own: neither building the
        // company's client (a token refresh) nor a busy sync delays it.
        let stop = self.cancel.child_token();
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            req.lease.clone(),
            self.cfg.lease,
            stop.clone(),
            lost.clone(),
            span.clone(),
        ));
        self.run_claimed(req, &span, stop, &lost).await;
        heartbeat.abort();
    }

    async fn run_claimed(
        &self,
        req: ClaimedSyncRequest,
        span: &tracing::Span,
        stop: CancellationToken,
        lost: &CancellationToken,
    ) {
        let span = span.clone();
        let realm = req.realm_id.clone();
        let request_id = req.lease.request_id;
        let parsed = SyncSelection::from_names(&req.entities)
            .and_then(|s| SyncOptions::from_json(&req.options).map(|o| (s, o)));
        let (selection, options) = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                // A newer qbo enqueued it: leave it to a worker that knows it.
                tracing::error!(parent: &span, %reason, "cannot run this sync request; leaving it for a minute");
                self.state()
                    .skip_requests
                    .insert(request_id, Skip::new(reason, SKIP_FOR));
                self.end(&req, SyncEnd::HandedBack, &[], None, &span).await;
                return;
            }
        };
        let client = match self.clients.get(&realm).await {
            Ok(client) => client,
            Err(e) => {
                let reason = crate::errors::chain(&e);
                let for_ = if e.needs_human() {
                    tracing::error!(parent: &span, error = %reason, "cannot sync this company; the request waits for `qbo auth login` and the worker goes on with the others");
                    self.needs_reauth(&realm, &reason).await;
                    SKIP_FOR
                } else {
                    tracing::warn!(parent: &span, error = %reason, "cannot sync this company now; trying it again shortly");
                    SKIP_TRANSIENT_FOR
                };
                self.state()
                    .skip_realms
                    .insert(realm, Skip::new(reason, for_));
                self.end(&req, SyncEnd::HandedBack, &[], None, &span).await;
                return;
            }
        };
        // The sync may load up to windows_per_run windows at once: the company's share.
        let share = self.cfg.windows_per_run.max(1) as usize;
        *self.state().busy.entry(realm.clone()).or_default() += share;
        tracing::info!(parent: &span, entities = %req.entities.join(","), "sync started");
        let syncer = Syncer::new(client, self.store.clone(), stop);
        let opts = self.sync_options(&options);
        let entities = selection.entities();
        let result =
            tracing::Instrument::instrument(syncer.run(&entities, &opts), span.clone()).await;
        let ending = if lost.is_cancelled() {
            Ending::Lost
        } else {
            self.ending(&realm, request_id, result, &span).await
        };
        {
            let mut state = self.state();
            if let Some(n) = state.busy.get_mut(&realm) {
                *n = n.saturating_sub(share);
                if *n == 0 {
                    state.busy.remove(&realm);
                }
            }
        }
        match ending {
            Ending::Lost => {
                tracing::warn!(parent: &span, "lost the lease on this sync request: another worker took it over; this worker wrote nothing more");
            }
            Ending::End(end, run_ids, error) => {
                let finished = matches!(end, SyncEnd::Finished(_));
                if self.end(&req, end, &run_ids, error.as_deref(), &span).await && finished {
                    let mut state = self.state();
                    state.syncs += 1;
                    state.companies.insert(realm);
                }
            }
        }
    }

    /// How the request ends, from what the sync engine returned.
    async fn ending(
        &self,
        realm: &str,
        request_id: uuid::Uuid,
        result: Result<Vec<SyncSummary>, SyncError>,
        span: &tracing::Span,
    ) -> Ending {
        let handed_back = |run_ids| Ending::End(SyncEnd::HandedBack, run_ids, None);
        match result {
            Ok(summaries) => {
                let run_ids: Vec<_> = summaries.iter().map(|s| s.run_id).collect();
                let ok = |s: &&SyncSummary| s.failed_steps == 0 && s.status == RunStatus::Success;
                if summaries.iter().any(|s| s.interrupted)
                    || (self.cancel.is_cancelled() && !summaries.iter().all(|s| ok(&s)))
                {
                    tracing::info!(parent: span, "drained mid-sync: the request goes back to the queue");
                    return handed_back(run_ids);
                }
                let failed: Vec<String> = summaries
                    .iter()
                    .filter(|s| !ok(s))
                    .map(|s| {
                        format!(
                            "{} (see `qbo report {} --run {}`)",
                            s.entity, s.entity, s.run_id
                        )
                    })
                    .collect();
                let status = if failed.is_empty() {
                    SyncRequestStatus::Success
                } else if failed.len() < summaries.len() {
                    SyncRequestStatus::Partial
                } else {
                    SyncRequestStatus::Error
                };
                let error = (!failed.is_empty()).then(|| {
                    format!(
                        "not synced (their watermarks did not move): {}",
                        failed.join(", ")
                    )
                });
                tracing::info!(parent: span, %status, entities = summaries.len(), "sync finished");
                if status == SyncRequestStatus::Success {
                    if let Err(e) = crate::companies::touch_loaded(self.store.pool(), realm).await {
                        tracing::warn!(parent: span, error = %crate::errors::chain(&e), "could not record when the company was last loaded");
                    }
                }
                Ending::End(SyncEnd::Finished(status), run_ids, error)
            }
            Err(SyncError::Interrupted) => handed_back(Vec::new()),
            Err(e @ SyncError::Busy { .. }) => {
                // Another sync holds the company's lock: an in-process `qbo sync`, or a worker
                // still running this request though its lease ran out (it stops on its next
                // heartbeat, which finds the request taken). Not a skip: the request is
                // taken again once the lock is free. This worker leaves it alone a while
                // meanwhile: a long in-process sync would otherwise have a slot claim it,
                // wait for the lock and hand it back over and over.
                let reason = crate::errors::chain(&e);
                tracing::warn!(parent: span, error = %reason, "another sync holds the company's lock; the request goes back to the queue");
                self.state()
                    .skip_requests
                    .insert(request_id, Skip::new(reason, SYNC_LOCK_BUSY_SKIP));
                handed_back(Vec::new())
            }
            Err(SyncError::Auth(auth)) if auth.needs_human() => {
                self.needs_human(realm, &crate::errors::chain(&auth), span)
                    .await;
                handed_back(Vec::new())
            }
            Err(SyncError::Backfill(backfill::BackfillError::Auth(auth))) if auth.needs_human() => {
                self.needs_human(realm, &crate::errors::chain(&auth), span)
                    .await;
                handed_back(Vec::new())
            }
            Err(SyncError::Store(e)) if e.is_transient() => {
                tracing::warn!(parent: span, error = %crate::errors::chain(&e), "database unavailable; the request goes back to the queue");
                handed_back(Vec::new())
            }
            Err(e) => {
                let reason = crate::errors::chain(&e);
                tracing::error!(parent: span, error = %reason, "the sync failed");
                Ending::End(
                    SyncEnd::Finished(SyncRequestStatus::Error),
                    Vec::new(),
                    Some(reason),
                )
            }
        }
    }

    async fn needs_human(&self, realm: &str, reason: &str, span: &tracing::Span) {
        tracing::error!(parent: span, error = %reason, "this company needs a human (`qbo auth login` or `qbo auth import`); its sync request waits for it and the worker goes on with the others");
        self.needs_reauth(realm, reason).await;
        self.state()
            .skip_realms
            .insert(realm.to_string(), Skip::new(reason.to_string(), SKIP_FOR));
    }

    /// Writes the request's end; `false` when it was no longer this worker's (or Postgres
    /// refused: its lease then runs out and another worker runs it again).
    async fn end(
        &self,
        req: &ClaimedSyncRequest,
        end: SyncEnd,
        run_ids: &[uuid::Uuid],
        error: Option<&str>,
        span: &tracing::Span,
    ) -> bool {
        match self
            .store
            .end_sync_request(&req.lease, end, run_ids, error)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(parent: span, "the sync request was taken over by another worker; this worker's outcome was not recorded");
                false
            }
            Err(e) => {
                tracing::warn!(parent: span, error = %crate::errors::chain(&e), "could not record the sync request's end; another worker runs it again once its lease runs out");
                false
            }
        }
    }

    /// The request's options, with this worker's window concurrency and lease.
    fn sync_options(&self, o: &SyncOptions) -> Options {
        Options {
            lookback: chrono::Duration::seconds(o.lookback_secs),
            since: o.since,
            backfill: backfill::Options {
                chunking: backfill::Chunking::Days(o.chunk_days),
                concurrency: self.cfg.windows_per_run.max(1),
                lease: self.cfg.lease,
                ..backfill::Options::default()
            },
            cdc_batch: usize::from(o.cdc_batch),
        }
    }
}

/// Extends the request's lease every third of it until aborted; a request found no longer
/// this worker's (its lease ran out and another worker took it) stops the sync (`stop`) and
/// is flagged `lost`, so that the worker writes nothing more for it.
async fn heartbeat(
    store: crate::store::PgStore,
    lease: crate::store::sync_requests::SyncLease,
    every_lease: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
    span: tracing::Span,
) {
    let every = (every_lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        match store.heartbeat_sync_request(&lease, every_lease).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                stop.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(parent: &span, error = %crate::errors::chain(&e), "could not extend the sync request's lease; trying again");
            }
        }
    }
}
