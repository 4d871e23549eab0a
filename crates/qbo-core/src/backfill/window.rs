//! Loading one window: what it holds (the planner's count, a count of its own, or a first
//! page that turns out to be all of it), its pages, and what proves it complete.
//!
//! A window read in one page is one snapshot of QBO: nothing can shift under it, so a page
//! that holds at least what COUNT(*) promised (or that is short and not empty, when no count
//! was needed) is complete on its own. A window that took several pages may have had records
//! shift past the pager (an edit moves a record's LastUpdatedTime to now, a delete removes
//! it, and every later offset slides by one), so it is parked as `paged` with what it read,
//! and the run's one changed-since sweep (`super::sweep`) decides whether it is complete.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, DurationRound, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{retry_transient, Backfill, ChunkError, RunCtx};
use crate::chunks::{Window, WindowField};
use crate::client::{Answer, Page, QuerySource, RawRecord, RequestCounters};
use crate::query::{Query, LAST_UPDATED_FIELD, MAX_PAGE_SIZE};
use crate::queue::{ClaimedChunk, PlannedWindow, Progress, QueueError, StoredPark};
use crate::store::{raw, PageMeta};

pub(super) struct ChunkJob<'a> {
    pub(super) ctx: &'a RunCtx,
    /// The claim: every write about the chunk goes through it.
    pub(super) claim: ClaimedChunk,
    pub(super) window: Window,
    /// What the planner's COUNT(*) said the window held, if it was planned by count.
    pub(super) planned: Option<u64>,
    /// QBO's clock (whole seconds) when this attempt counted the window: a record stamped
    /// later entered it after the count and is not among what the count promised.
    pub(super) counted_at: Option<DateTime<Utc>>,
    /// Read a page before counting (see `Entity::common`): only a run's first window, on
    /// its first attempt.
    pub(super) probe_first: bool,
    /// Cancelled on interrupt or when the lease is lost.
    pub(super) stop: CancellationToken,
    pub(super) progress: Progress,
    /// Requests and retries of earlier attempts at this window, so the report keeps them all.
    pub(super) earlier: RequestCounters,
    pub(super) counters: RequestCounters,
    /// The part of `counters` already added to the run's live progress.
    pub(super) published: RequestCounters,
    /// Distinct ids loaded by this attempt.
    pub(super) seen: HashSet<String>,
}

/// Ids read by one query, each with the LastUpdatedTime it was first seen at.
pub(super) type Sightings = HashMap<String, DateTime<Utc>>;

/// How far loading a window got.
pub(super) enum Loaded {
    /// Complete on its own evidence.
    Complete,
    /// Every page is loaded; the run's sweep decides (see the module doc).
    Paged(PagedWindow),
    /// It holds more than a window may: replaced by these windows.
    Split(Vec<PlannedWindow>),
}

/// A window waiting for the run's sweep.
pub(super) struct PagedWindow {
    pub(super) chunk: i32,
    pub(super) read: Sightings,
    /// What COUNT(*) said it held.
    pub(super) expected: u64,
    /// When it was counted (see `ChunkJob::counted_at`).
    pub(super) counted_at: Option<DateTime<Utc>>,
    /// Everything stamped from here on may have moved while it was paged.
    pub(super) began: DateTime<Utc>,
    /// The window's full reads so far, this one included (every attempt's).
    pub(super) pass: u32,
}

impl PagedWindow {
    /// What a worker keeps in Postgres for its run's sweep (`attempt` parked it).
    pub(super) fn stored(&self, attempt: i32) -> StoredPark {
        StoredPark {
            chunk: self.chunk,
            attempt,
            expected: self.expected,
            counted_at: self.counted_at,
            began: self.began,
            pass: self.pass,
            read: self.read.iter().map(|(id, at)| (id.clone(), *at)).collect(),
        }
    }

    /// A window a worker parked, as its run's sweep judges it.
    pub(super) fn from_stored(p: StoredPark) -> PagedWindow {
        PagedWindow {
            chunk: p.chunk,
            read: p.read.into_iter().collect(),
            expected: p.expected,
            counted_at: p.counted_at,
            began: p.began,
            pass: p.pass,
        }
    }
}

/// What a window holds, by whose word.
enum Holds {
    /// A short, non-empty first page: the whole window, already loaded.
    FirstPageWasAll,
    /// What COUNT(*) said.
    Counted(u64),
}

/// A COUNT(*) a dense window's split must not exceed by much: planned windows are filled to
/// about three quarters of their page budget, so records that are not spread evenly in time
/// rarely force a second round of counts.
const SPLIT_FILL: f64 = 0.75;

impl<S: QuerySource + 'static> Backfill<S> {
    pub(super) async fn load_chunk(&self, job: &mut ChunkJob<'_>) -> Result<Loaded, ChunkError> {
        let entity = job.ctx.entity;
        if entity.is_whole() {
            return self.load_whole(job).await;
        }
        let expected = match job.planned {
            Some(n) => n,
            None if job.probe_first => match self.probe(job).await? {
                Holds::FirstPageWasAll => return Ok(Loaded::Complete),
                Holds::Counted(n) => n,
            },
            None => self.count_window(job).await?,
        };
        job.progress.expected_count = Some(expected as i64);
        if expected == 0 {
            // QBO's word that the window held nothing when it was counted: a backfill loads
            // what each window held when it was read (see crate::sync::watermark).
            return Ok(Loaded::Complete);
        }
        if let Some(limit) = self.split_above(job) {
            if expected > limit {
                let leaves = self.split(job, expected, limit).await?;
                if leaves.len() > 1 {
                    return Ok(Loaded::Split(leaves));
                }
            }
        }
        job.progress.passes += 1;
        let pass = job.progress.passes as u32;
        let query = job
            .window
            .constrain(Query::select(entity), job.ctx.field)
            .order_by(LAST_UPDATED_FIELD);
        // Stopping at the count is safe only where nothing enters the window uncounted that
        // no sync would read: a record entered today can carry any TxnDate, and a txn-date
        // backfill leaves no watermark (a LastUpdatedTime window gains only records stamped
        // after the run began, which the next sync reads).
        let counted = (job.ctx.field == WindowField::LastUpdated).then_some(expected);
        let paged = self
            .load_pages(job, query, "window", pass, None, counted)
            .await?;
        if paged.pages <= 1 && counted_records(&paged.read, job.counted_at) >= expected {
            return Ok(Loaded::Complete);
        }
        Ok(Loaded::Paged(PagedWindow {
            chunk: job.claim.index(),
            read: paged.read,
            expected,
            counted_at: job.counted_at,
            began: changed_since_floor(paged.first_server_time),
            pass,
        }))
    }

    /// Records a window may hold before it is split, when the run plans windows by count
    /// (as the run was planned: a resume without `--chunk-days` must not cut calendar windows).
    fn split_above(&self, job: &ChunkJob<'_>) -> Option<u64> {
        match job.ctx.chunking {
            super::Chunking::ByCount { window_pages } => {
                Some(u64::from(window_pages.max(1)) * u64::from(page_size(job)))
            }
            super::Chunking::Days(_) => None,
        }
    }

    async fn count_window(&self, job: &mut ChunkJob<'_>) -> Result<u64, ChunkError> {
        let query = job
            .window
            .constrain(Query::count(job.ctx.entity), job.ctx.field)
            .render();
        let answer = self.source.fetch_count(&query, &mut job.counters).await?;
        job.counted_at = answer.value.1.map(whole_second);
        Ok(answer.value.0)
    }

    /// Reads the first page before anything else. Short and not empty, it is the whole
    /// window. Empty, it proves nothing (QBO answers a page it lost as it answers an empty
    /// one), and full, it cannot say how much follows: both then need COUNT(*).
    /// A full first page is not kept for the window's pass: a record of it deleted before
    /// the count leaves the count one short and slides a later record past the pager, and
    /// the two cancel out; a pass that starts after the count shows the skip as a shortfall.
    async fn probe(&self, job: &mut ChunkJob<'_>) -> Result<Holds, ChunkError> {
        let query = job
            .window
            .constrain(Query::select(job.ctx.entity), job.ctx.field)
            .order_by(LAST_UPDATED_FIELD);
        if job.stop.is_cancelled() {
            return Err(ChunkError::Cancelled);
        }
        let text = query.clone().page(1, page_size(job)).render();
        let first = self
            .source
            .fetch_page(job.ctx.entity.qbo_name, &text, &mut job.counters)
            .await?;
        let rows = first.value.records.len() as u32;
        if rows > 0 && rows < page_size(job) {
            job.progress.passes += 1;
            let pass = job.progress.passes as u32;
            let read = self
                .load_pages(job, query, "window", pass, Some(first), None)
                .await?;
            job.progress.expected_count = Some(read.read.len() as i64);
            return Ok(Holds::FirstPageWasAll);
        }
        Ok(Holds::Counted(self.count_window(job).await?))
    }

    /// Cuts a window that holds `count` records into windows of at most `limit`, counting
    /// the pieces (many COUNTs per request where the source batches them). A piece whose
    /// count fails becomes a window without a planned count: it counts itself when claimed,
    /// so the failure costs that window, not the run. Adjacent small pieces are merged back,
    /// so an uneven spread does not leave many tiny windows (each costs a partial page).
    async fn split(
        &self,
        job: &mut ChunkJob<'_>,
        count: u64,
        limit: u64,
    ) -> Result<Vec<PlannedWindow>, ChunkError> {
        let field = job.ctx.field;
        let target = ((limit as f64) * SPLIT_FILL).max(1.0);
        let mut todo = vec![(job.window, count)];
        let mut leaves = Vec::new();
        while !todo.is_empty() {
            let mut pieces = Vec::new();
            for (window, n) in todo.drain(..) {
                let parts = window.split_even((n as f64 / target).ceil() as u64, field);
                if parts.len() < 2 {
                    // Too dense to cut (a second, or a day of TxnDate): it pages as it is.
                    leaves.push(PlannedWindow {
                        window,
                        count: Some(n as i64),
                    });
                } else {
                    pieces.extend(parts);
                }
            }
            if pieces.is_empty() {
                break;
            }
            let queries: Vec<String> = pieces
                .iter()
                .map(|w| w.constrain(Query::count(job.ctx.entity), field).render())
                .collect();
            let answers = self
                .source
                .fetch_counts(&queries, &mut job.counters)
                .await?;
            for (window, answer) in pieces.into_iter().zip(answers) {
                match answer {
                    Ok(a) if a.value.0 > limit => todo.push((window, a.value.0)),
                    // A window that still reaches QBO's present gains every record edited
                    // from now on, which its count cannot tell from the ones a delete makes
                    // the pager skip: it counts itself when it is read.
                    Ok(a)
                        if field == WindowField::LastUpdated
                            && a.value.1.is_none_or(|t| window.end > whole_second(t)) =>
                    {
                        leaves.push(PlannedWindow {
                            window,
                            count: None,
                        })
                    }
                    Ok(a) => leaves.push(PlannedWindow {
                        window,
                        count: Some(a.value.0 as i64),
                    }),
                    Err(crate::client::ClientError::Cancelled) => {
                        return Err(ChunkError::Cancelled)
                    }
                    Err(e) => {
                        tracing::warn!(
                            target: crate::telemetry::WINDOW_TARGET,
                            error = %crate::errors::chain(&e),
                            window_start = %window.start,
                            "could not count a piece of a split window; it will count itself"
                        );
                        leaves.push(PlannedWindow {
                            window,
                            count: None,
                        });
                    }
                }
            }
        }
        leaves.sort_by_key(|l| l.window.start);
        Ok(merge_adjacent(leaves, limit))
    }

    /// An entity QBO cannot filter by LastUpdatedTime is read whole, in one window. These are
    /// settings-like objects (one record, or a handful), so the first page is normally all
    /// of it; only an empty or a multi-page answer needs COUNT(*), and one that still falls
    /// short is an error rather than a silent gap.
    async fn load_whole(&self, job: &mut ChunkJob<'_>) -> Result<Loaded, ChunkError> {
        job.progress.passes += 1;
        let pass = job.progress.passes as u32;
        let paged = self
            .load_pages(
                job,
                Query::select(job.ctx.entity),
                "whole",
                pass,
                None,
                None,
            )
            .await?;
        let read = paged.read.len() as u64;
        if paged.pages <= 1 && read > 0 {
            job.progress.expected_count = Some(read as i64);
            return Ok(Loaded::Complete);
        }
        let answer = self
            .source
            .fetch_count(&Query::count(job.ctx.entity).render(), &mut job.counters)
            .await?;
        let expected = answer.value.0;
        job.progress.expected_count = Some(expected as i64);
        if read < expected {
            return Err(ChunkError::ShortOfCount {
                expected,
                read,
                passes: 1,
            });
        }
        Ok(Loaded::Complete)
    }

    /// Pages through `query`, committing each page with the window's progress. `first` is
    /// its first page when that was already fetched. With `counted` (what COUNT(*) said the
    /// query holds), paging stops once that many distinct records are read: the page after
    /// a full last one would only come back empty.
    pub(super) async fn load_pages(
        &self,
        job: &mut ChunkJob<'_>,
        query: Query,
        purpose: &str,
        pass: u32,
        first: Option<Answer<Page>>,
        counted: Option<u64>,
    ) -> Result<PagedRead, ChunkError> {
        let page_size = page_size(job);
        let entity = job.ctx.entity.qbo_name;
        let mut ids = Sightings::new();
        let mut start = 1u32;
        let mut page_number = 1i32;
        if job.stop.is_cancelled() {
            return Err(ChunkError::Cancelled);
        }
        let mut text = query.clone().page(start, page_size).render();
        let mut answer = match first {
            Some(answer) => answer,
            None => {
                self.source
                    .fetch_page(entity, &text, &mut job.counters)
                    .await?
            }
        };
        let first_server_time = answer.value.server_time;
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
            let read_so_far =
                ids.len() + records.iter().filter(|r| !ids.contains_key(&r.id)).count();
            let more = full && counted.is_none_or(|n| (read_so_far as u64) < n);
            let next_text = (more && !job.stop.is_cancelled())
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
                _ if more => return Err(ChunkError::Cancelled),
                _ => {
                    return Ok(PagedRead {
                        read: ids,
                        pages: page_number,
                        first_server_time,
                    })
                }
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
        job.stamp_requests(&mut progress);
        if records.is_empty() {
            // Nothing to write: no transaction. The counters reach the report with the next
            // page or the chunk's outcome.
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
    ) -> Result<(), QueueError> {
        let mut tx = self.store.pool().begin().await?;
        let counts = raw::upsert_page(&mut tx, job.ctx.entity, meta, records).await?;
        progress.counts += counts;
        job.claim
            .record_progress(&mut tx, progress, meta.intuit_tid)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl ChunkJob<'_> {
    /// Puts every request this window has cost, earlier attempts included, into `progress`.
    pub(super) fn stamp_requests(&self, progress: &mut Progress) {
        progress.requests = (self.earlier.requests + self.counters.requests) as i32;
        progress.retries = (self.earlier.retries + self.counters.retries) as i32;
    }
}

/// What one `load_pages` read.
pub(super) struct PagedRead {
    pub(super) read: Sightings,
    pub(super) pages: i32,
    /// QBO's clock when it answered the first page.
    pub(super) first_server_time: Option<DateTime<Utc>>,
}

fn page_size(job: &ChunkJob<'_>) -> u32 {
    job.ctx.opts.page_size.clamp(1, MAX_PAGE_SIZE)
}

/// Joins neighbours while their counts add up to at most `limit`. A piece without a count
/// stays on its own (it counts itself).
fn merge_adjacent(leaves: Vec<PlannedWindow>, limit: u64) -> Vec<PlannedWindow> {
    let mut out: Vec<PlannedWindow> = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        if let Some(last) = out.last_mut() {
            if let (Some(a), Some(b)) = (last.count, leaf.count) {
                if last.window.end == leaf.window.start && (a + b) as u64 <= limit {
                    last.window.end = leaf.window.end;
                    last.count = Some(a + b);
                    continue;
                }
            }
        }
        out.push(leaf);
    }
    out
}

/// QBO's clock to the whole second, as it stamps LastUpdatedTime.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(t)
}

/// The records of `read` that a COUNT(*) taken at `counted_at` could have counted: one first
/// seen stamped after it entered the window since (an edit anywhere lands in a window that
/// reaches the present), and letting it stand in for a record that a delete made the pager
/// skip would lose that record without a word. Both sides are compared to the whole second,
/// as QBO stamps them: a record stamped in the count's own second may have been counted.
pub(super) fn counted_records(read: &Sightings, counted_at: Option<DateTime<Utc>>) -> u64 {
    read.values()
        .filter(|stamped| counted_at.is_none_or(|t| whole_second(**stamped) <= t))
        .count() as u64
}

/// QBO stamps LastUpdatedTime in whole seconds, and its clock is the one that counts: take
/// the server's time, floor it to the second and step back one more. Without a server time,
/// allow generous clock skew.
pub(super) fn changed_since_floor(server_time: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match server_time {
        Some(t) => {
            t.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(t)
                - chrono::Duration::seconds(1)
        }
        None => Utc::now() - chrono::Duration::minutes(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn leaf(from: i64, to: i64, count: Option<i64>) -> PlannedWindow {
        let at = |s| Utc.timestamp_opt(s, 0).unwrap();
        PlannedWindow {
            window: Window {
                start: at(from),
                end: at(to),
            },
            count,
        }
    }

    #[test]
    fn neighbours_merge_up_to_the_limit_and_uncounted_pieces_stay_alone() {
        let merged = merge_adjacent(
            vec![
                leaf(0, 10, Some(400)),
                leaf(10, 20, Some(0)),
                leaf(20, 30, Some(500)),
                leaf(30, 40, Some(300)),
                leaf(40, 50, None),
                leaf(50, 60, Some(10)),
            ],
            1000,
        );
        assert_eq!(
            merged,
            vec![
                leaf(0, 30, Some(900)),
                leaf(30, 40, Some(300)),
                leaf(40, 50, None),
                leaf(50, 60, Some(10)),
            ]
        );
    }
}
