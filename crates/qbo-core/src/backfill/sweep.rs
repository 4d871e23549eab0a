//! The run's one changed-since sweep: after every window is paged, read what changed since
//! the first parked window began paging, load it (so a record edited mid-run lands at its
//! newest version), and settle each parked window.
//!
//! A window is complete when no record it read was changed while the run went on (an edit
//! moves a record's LastUpdatedTime past the pager and slides every later offset) and what it
//! read covers its COUNT(*) (a delete slides offsets too, and only the count shows it).
//! Records that changed elsewhere do not count towards it: nothing says which window they
//! left, and one created anywhere would excuse a record a delete made this window skip.
//! Otherwise it is read again, with a fresh count, up to `max_passes` times. One sweep
//! serves all of a run's windows, where checking each window on its own would cost a sweep
//! and a count per window.

use serde_json::json;

use super::window::{changed_since_floor, counted_records, PagedWindow, Sightings};
use super::{retry_transient, Backfill, BackfillError, ChunkError, RunCtx};
use crate::client::{QuerySource, RequestCounters};
use crate::query::{Literal, Op, Query, LAST_UPDATED_FIELD, MAX_PAGE_SIZE};
use crate::queue::{PagedVerdict, ParkedChunk, QueueError};
use crate::store::{raw, PageMeta, StoreError};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

impl<S: QuerySource + 'static> Backfill<S> {
    /// Settles the parked windows; returns how many go back to be read again.
    pub(super) async fn sweep(
        &self,
        ctx: &RunCtx,
        parked: Vec<(ParkedChunk, PagedWindow)>,
        round: u32,
    ) -> Result<usize, BackfillError> {
        let windows: Vec<&PagedWindow> = parked.iter().map(|(_, p)| p).collect();
        let verdicts = self.judge(ctx, &windows, Some(round), &self.cancel).await?;
        let mut reread = 0;
        for ((chunk, _), verdict) in parked.iter().zip(&verdicts) {
            reread += usize::from(*verdict == PagedVerdict::Reread);
            self.settle(ctx, chunk, verdict).await?;
        }
        Ok(reread)
    }

    /// The sweep itself: reads what changed since the first of `windows` began paging, loads
    /// it, and says how each window settles. A window still not proved complete fails once
    /// `round` sweeps were done (in-process), or once it was read `max_passes` times (a
    /// worker's sweep, `round` None: its windows were parked after different numbers of reads). Cancelled through `stop`, every
    /// window is to be read again; the sweep failing, every window fails.
    pub(super) async fn judge(
        &self,
        ctx: &RunCtx,
        windows: &[&PagedWindow],
        round: Option<u32>,
        stop: &CancellationToken,
    ) -> Result<Vec<PagedVerdict>, BackfillError> {
        let Some(since) = windows.iter().map(|p| p.began).min() else {
            return Ok(Vec::new());
        };
        let mut counters = RequestCounters::default();
        let swept = self
            .read_changed_since(ctx, since, &mut counters, stop)
            .await;
        retry_transient(
            &CancellationToken::new(),
            "counting the sweep's requests",
            || {
                self.store.add_run_requests(
                    ctx.run_id,
                    counters.requests as i32,
                    counters.retries as i32,
                )
            },
        )
        .await?;
        ctx.progress
            .add(0, u64::from(counters.requests), u64::from(counters.retries));
        let changed = match swept {
            Ok(changed) => changed,
            Err(e) => {
                // Without the sweep nothing proves the parked windows complete. Interrupted,
                // they go back to be read again; failed, they fail (--retry-failed reads them).
                let verdict = match e {
                    ChunkError::Cancelled => PagedVerdict::Reread,
                    e => PagedVerdict::Failed(format!(
                        "the changed-since sweep that proves a multi-page window complete failed: {}",
                        crate::errors::chain(&e)
                    )),
                };
                return Ok(vec![verdict; windows.len()]);
            }
        };
        let mut verdicts = Vec::with_capacity(windows.len());
        for p in windows {
            let round = round.unwrap_or(p.pass);
            let moved = p
                .read
                .iter()
                .any(|(id, first)| changed.get(id).is_some_and(|now| now > first));
            let covered = counted_records(&p.read, p.counted_at);
            let verdict = if !moved && covered >= p.expected {
                PagedVerdict::Complete
            } else if round >= ctx.opts.max_passes.max(1) {
                let e = if moved {
                    ChunkError::Unstable(round)
                } else {
                    ChunkError::ShortOfCount {
                        expected: p.expected,
                        read: covered,
                        passes: round,
                    }
                };
                PagedVerdict::Failed(crate::errors::chain(&e))
            } else {
                tracing::info!(
                    target: crate::telemetry::WINDOW_TARGET,
                    chunk = p.chunk,
                    expected = p.expected,
                    read = p.read.len(),
                    moved,
                    "records changed while the window was paged; reading it again"
                );
                PagedVerdict::Reread
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// Parked windows that will not see a sweep (interrupt, a failure elsewhere) go back to
    /// be read again by the next invocation.
    pub(super) async fn hand_back(
        &self,
        ctx: &RunCtx,
        parked: Vec<(ParkedChunk, PagedWindow)>,
    ) -> Result<(), BackfillError> {
        for (chunk, _) in &parked {
            self.settle(ctx, chunk, &PagedVerdict::Reread).await?;
        }
        Ok(())
    }

    /// The run's live progress once a parked window is settled.
    pub(super) fn settle_one(&self, ctx: &RunCtx, chunk: i32, verdict: &PagedVerdict) {
        match verdict {
            PagedVerdict::Complete => ctx.progress.chunk_finished(true),
            PagedVerdict::Failed(message) => {
                tracing::error!(chunk, error = %message, "window failed; the run goes on with the others");
                ctx.progress.chunk_finished(false);
            }
            PagedVerdict::Reread => {}
        }
    }

    async fn settle(
        &self,
        ctx: &RunCtx,
        parked: &ParkedChunk,
        verdict: &PagedVerdict,
    ) -> Result<(), QueueError> {
        let chunk = parked.index();
        let settled = retry_transient(&CancellationToken::new(), "settling a paged window", || {
            self.queue.settle_paged(parked, verdict)
        })
        .await;
        match settled {
            Ok(()) => {}
            Err(QueueError::LeaseLost { .. }) => {
                tracing::warn!(
                    chunk,
                    "a paged window's lease ran out and another worker took it"
                );
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.settle_one(ctx, chunk, verdict);
        Ok(())
    }

    /// Every record of the entity stamped at or after `since`, loaded at its newest version.
    /// Returns each id with the LastUpdatedTime the sweep saw.
    async fn read_changed_since(
        &self,
        ctx: &RunCtx,
        since: DateTime<Utc>,
        counters: &mut RequestCounters,
        stop: &CancellationToken,
    ) -> Result<Sightings, ChunkError> {
        let entity = ctx.entity;
        let page_size = ctx.opts.page_size.clamp(1, MAX_PAGE_SIZE);
        let query = Query::select(entity)
            .filter(LAST_UPDATED_FIELD, Op::Ge, Literal::Instant(since))
            .order_by(LAST_UPDATED_FIELD);
        let mut changed = Sightings::new();
        let mut start = 1u32;
        let mut page_number = 1i32;
        loop {
            if stop.is_cancelled() {
                return Err(ChunkError::Cancelled);
            }
            let text = query.clone().page(start, page_size).render();
            let answer = self
                .source
                .fetch_page(entity.qbo_name, &text, counters)
                .await?;
            let records = answer.value.records;
            let until =
                changed_since_floor(answer.value.server_time) + chrono::Duration::seconds(1);
            let request_payload = json!({
                "method": "GET",
                "endpoint": format!("/v3/company/{}/query", self.source.realm_id()),
                "query": text,
                "minorversion": self.source.minor_version(),
                "startposition": start,
                "maxresults": page_size,
                "purpose": "changed-since-run",
            });
            let meta = PageMeta {
                realm_id: self.source.realm_id(),
                run_id: ctx.run_id,
                window_start: since,
                window_end: until.max(since),
                page_number,
                page_size: page_size as i32,
                request_payload: &request_payload,
                intuit_tid: answer.intuit_tid.as_deref(),
            };
            if !records.is_empty() {
                retry_transient(&self.cancel, "committing the sweep's page", || async {
                    let mut tx = self.store.pool().begin().await?;
                    raw::upsert_page(&mut tx, entity, &meta, &records).await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(())
                })
                .await?;
            }
            for r in &records {
                let newest = changed.entry(r.id.clone()).or_insert(r.last_updated);
                *newest = (*newest).max(r.last_updated);
            }
            if (records.len() as u32) < page_size {
                return Ok(changed);
            }
            start += page_size;
            page_number += 1;
        }
    }
}
