//! Loading one window: COUNT(*), offset pages, the changed-since sweep, and re-reads until
//! every record that was in the window when the chunk started is in the raw zone.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, DurationRound, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{retry_transient, Backfill, ChunkError, RunCtx};
use crate::chunks::Window;
use crate::client::{QuerySource, RawRecord, RequestCounters};
use crate::query::{Literal, Op, Query, LAST_UPDATED_FIELD, MAX_PAGE_SIZE};
use crate::store::runs::Progress;
use crate::store::{raw, PageMeta, PgStore, StoreError};

pub(super) struct ChunkJob<'a> {
    pub(super) ctx: &'a RunCtx,
    pub(super) chunk: i32,
    pub(super) worker: &'a str,
    pub(super) window: Window,
    /// Cancelled on interrupt or when the lease is lost.
    pub(super) stop: CancellationToken,
    pub(super) progress: Progress,
    pub(super) counters: RequestCounters,
    /// The part of `counters` already added to the run's live progress.
    pub(super) published: RequestCounters,
    /// Distinct ids loaded by this attempt.
    pub(super) seen: HashSet<String>,
}

/// Ids read by one query, each with the LastUpdatedTime it was first seen at.
type Sightings = HashMap<String, DateTime<Utc>>;

impl<S: QuerySource + 'static> Backfill<S> {
    /// Loads one window completely. Offset paging skips a record whenever an earlier one
    /// leaves the window mid-way (an edit moves its LastUpdatedTime to now, a delete removes
    /// it), so after each pass we fetch everything changed since the pass began and, when
    /// the pass took several pages, count the window again. If a record we had read moved,
    /// or the ids seen fall short of what COUNT(*) says, the window is read again (bounded).
    pub(super) async fn load_chunk(&self, job: &mut ChunkJob<'_>) -> Result<(), ChunkError> {
        let entity = job.ctx.entity;
        if entity.is_whole() {
            return self.load_whole(job).await;
        }
        let max_passes = job.ctx.opts.max_passes.max(1);
        let count_query = job
            .window
            .constrain(Query::count(entity), job.ctx.field)
            .render();
        let answer = self
            .source
            .fetch_count(&count_query, &mut job.counters)
            .await?;
        let (mut expected, mut server_time) = answer.value;
        job.progress.expected_count = Some(expected as i64);
        if expected == 0 && window_is_closed(job, server_time) {
            // Nothing can enter a LastUpdatedTime window that QBO's clock has passed (an
            // edit stamps the present), so an empty past window needs no pages and no sweep.
            job.progress.passes = 1;
            return Ok(());
        }
        let (mut moved_ever, mut short) = (false, (0, 0));
        for pass in 1..=max_passes {
            job.progress.passes = pass as i32;
            let pass_began = changed_since_floor(server_time);
            let window_query = job
                .window
                .constrain(Query::select(entity), job.ctx.field)
                .order_by(LAST_UPDATED_FIELD);
            let (read, pages) = self.load_pages(job, window_query, "window", pass).await?;

            let changed_query = Query::select(entity)
                .filter(LAST_UPDATED_FIELD, Op::Ge, Literal::Instant(pass_began))
                .order_by(LAST_UPDATED_FIELD);
            let (changed, _) = self
                .load_pages(job, changed_query, "changed-since-pass", pass)
                .await?;

            // One page is one snapshot: nothing can shift under it. It must still hold what
            // COUNT(*) promised: QBO answers `"QueryResponse": {}` for a page it lost exactly as
            // for an empty result, and only the count tells them apart.
            if pages <= 1 && read.len() as u64 >= expected {
                return Ok(());
            }
            let answer = self
                .source
                .fetch_count(&count_query, &mut job.counters)
                .await?;
            let (now_in_window, now) = answer.value;
            // Only a record we had already read at an older version can have shifted the
            // ones after it past us; one we first met at its new version moved ahead of us.
            let moved = changed
                .iter()
                .any(|(id, lut)| read.get(id).is_some_and(|first| lut > first));
            let covered = read.len() as u64
                + changed.keys().filter(|id| !read.contains_key(*id)).count() as u64;
            if !moved && covered >= expected.max(now_in_window) {
                return Ok(());
            }
            moved_ever |= moved;
            short = (expected.max(now_in_window), covered);
            tracing::info!(
                target: crate::telemetry::WINDOW_TARGET,
                pass,
                expected,
                now_in_window,
                read = read.len(),
                changed = changed.len(),
                "records changed while paging; reading the window again"
            );
            (expected, server_time) = (now_in_window, now);
        }
        if moved_ever {
            return Err(ChunkError::Unstable(max_passes));
        }
        Err(ChunkError::ShortOfCount {
            expected: short.0,
            read: short.1,
            passes: max_passes,
        })
    }

    /// An entity QBO cannot filter by LastUpdatedTime is read whole: COUNT(*), then every
    /// page. These are settings-like objects (a handful of records), so one pass suffices;
    /// a count that still falls short is an error rather than a silent gap.
    async fn load_whole(&self, job: &mut ChunkJob<'_>) -> Result<(), ChunkError> {
        let entity = job.ctx.entity;
        let answer = self
            .source
            .fetch_count(&Query::count(entity).render(), &mut job.counters)
            .await?;
        let expected = answer.value.0;
        job.progress.expected_count = Some(expected as i64);
        job.progress.passes = 1;
        let (read, _) = self
            .load_pages(job, Query::select(entity), "whole", 1)
            .await?;
        if (read.len() as u64) < expected {
            return Err(ChunkError::ShortOfCount {
                expected,
                read: read.len() as u64,
                passes: 1,
            });
        }
        Ok(())
    }

    /// Pages through `query` to the end, committing each page with the chunk's progress.
    /// Returns each id read with the LastUpdatedTime it was first seen at, and the pages.
    async fn load_pages(
        &self,
        job: &mut ChunkJob<'_>,
        query: Query,
        purpose: &str,
        pass: u32,
    ) -> Result<(Sightings, i32), ChunkError> {
        let page_size = job.ctx.opts.page_size.clamp(1, MAX_PAGE_SIZE);
        let entity = job.ctx.entity.qbo_name;
        let mut ids = Sightings::new();
        let mut start = 1u32;
        let mut page_number = 1i32;
        if job.stop.is_cancelled() {
            return Err(ChunkError::Cancelled);
        }
        let mut text = query.clone().page(start, page_size).render();
        let mut answer = self
            .source
            .fetch_page(entity, &text, &mut job.counters)
            .await?;
        loop {
            let records = answer.value.records;
            let request_payload = json!({
                "method": "GET",
                "endpoint": format!("/v3/company/{}/query", self.source.realm_id()),
                "query": text,
                "minorversion": self.source.minor_version(),
                "startposition": start,
                "maxresults": page_size,
                "purpose": purpose,
                "pass": pass,
            });
            let meta = PageMeta {
                realm_id: self.source.realm_id(),
                run_id: job.ctx.run_id,
                window_start: job.window.start,
                window_end: job.window.end,
                page_number,
                page_size: page_size as i32,
                request_payload: &request_payload,
                intuit_tid: answer.intuit_tid.as_deref(),
            };
            // A full page means another may follow: fetch it while this one commits, so QBO
            // and Postgres work at the same time. No transaction waits on the request, and
            // pages still commit one after the other, in order.
            let full = records.len() as u32 >= page_size;
            let next_text = (full && !job.stop.is_cancelled())
                .then(|| query.clone().page(start + page_size, page_size).render());
            let mut next_counters = RequestCounters::default();
            let (committed, next) = match &next_text {
                Some(t) => {
                    let fetch = self.source.fetch_page(entity, t, &mut next_counters);
                    let (c, n) = tokio::join!(self.commit_page(job, &meta, &records), fetch);
                    (c, Some(n))
                }
                None => (self.commit_page(job, &meta, &records).await, None),
            };
            job.counters.requests += next_counters.requests;
            job.counters.retries += next_counters.retries;
            committed?;
            for r in &records {
                ids.entry(r.id.clone()).or_insert(r.last_updated);
            }
            match (next, next_text) {
                (Some(next), Some(t)) => {
                    answer = next?;
                    text = t;
                    start += page_size;
                    page_number += 1;
                }
                _ if full => return Err(ChunkError::Cancelled),
                _ => return Ok((ids, page_number)),
            }
        }
    }

    /// Writes a page's rows and the chunk's progress in one transaction, so a crash never
    /// leaves progress without its rows. Retries while Postgres is briefly unreachable.
    async fn commit_page(
        &self,
        job: &mut ChunkJob<'_>,
        meta: &PageMeta<'_>,
        records: &[RawRecord],
    ) -> Result<(), ChunkError> {
        let new_ids = records.iter().filter(|r| !job.seen.contains(&r.id)).count();
        let mut progress = job.progress;
        progress.pages += 1;
        progress.row_count = (job.seen.len() + new_ids) as i64;
        progress.requests = job.counters.requests as i32;
        progress.retries = job.counters.retries as i32;
        if records.is_empty() {
            // Nothing to write (the usual changed-since sweep): no transaction. The counters
            // reach the report with the next page or the chunk's outcome.
            job.progress = progress;
            self.publish(job, 0);
            return Ok(());
        }
        let stop = job.stop.clone();
        let committed = retry_transient(&stop, "committing a page", || {
            let mut attempt_progress = progress;
            let job = &*job;
            async move {
                self.try_commit(job, meta, records, &mut attempt_progress)
                    .await
                    .map(|()| attempt_progress)
            }
        })
        .await;
        match committed {
            Ok(done) => {
                job.progress = done;
                job.seen.extend(records.iter().map(|r| r.id.clone()));
                self.publish(job, new_ids as u64);
                Ok(())
            }
            Err(_) if stop.is_cancelled() => Err(ChunkError::Cancelled),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds what the job did since the last call to the run's live progress.
    pub(super) fn publish(&self, job: &mut ChunkJob<'_>, new_rows: u64) {
        let requests = job.counters.requests.saturating_sub(job.published.requests);
        let retries = job.counters.retries.saturating_sub(job.published.retries);
        job.published = job.counters;
        job.ctx
            .progress
            .add(new_rows, u64::from(requests), u64::from(retries));
    }

    async fn try_commit(
        &self,
        job: &ChunkJob<'_>,
        meta: &PageMeta<'_>,
        records: &[RawRecord],
        progress: &mut Progress,
    ) -> Result<(), StoreError> {
        let mut tx = self.store.pool().begin().await?;
        let counts = raw::upsert_page(&mut tx, job.ctx.entity, meta, records).await?;
        progress.counts += counts;
        PgStore::record_progress(
            &mut tx,
            job.ctx.run_id,
            job.chunk,
            job.worker,
            progress,
            meta.intuit_tid,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn window_is_closed(job: &ChunkJob<'_>, server_time: Option<DateTime<Utc>>) -> bool {
    job.ctx.field == crate::chunks::WindowField::LastUpdated
        && server_time.is_some_and(|now| job.window.end <= now)
}

/// QBO stamps LastUpdatedTime in whole seconds, and its clock is the one that counts: take
/// the server's time, floor it to the second and step back one more. Without a server time,
/// allow generous clock skew.
fn changed_since_floor(server_time: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match server_time {
        Some(t) => {
            t.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(t)
                - chrono::Duration::seconds(1)
        }
        None => Utc::now() - chrono::Duration::minutes(5),
    }
}
