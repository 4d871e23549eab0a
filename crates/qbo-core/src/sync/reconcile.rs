//! Delete reconciliation: what the raw zone holds as live but QBO no longer lists is a
//! candidate; each candidate is asked for by id, and only those QBO does not return are
//! marked deleted (a record missed by offset paging is never marked). The marks, the report
//! row and the watermark commit together.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{failpoint, StepError, SyncError, Syncer, Target};
use crate::chunks::Window;
use crate::client::{ChangeSource, RawRecord, RequestCounters};
use crate::entities::Entity;
use crate::query::{Literal, Query, ID_FIELD, MAX_PAGE_SIZE};
use crate::queue::retry_transient;
use crate::store::raw::{self, Deletion};
use crate::store::{PageMeta, PgStore, StepRow, StoreError};

/// Ids per `WHERE Id IN (...)` confirmation query.
const CONFIRM_BATCH: usize = 100;

/// What a reconciliation found.
#[derive(Default)]
struct Findings {
    listed: usize,
    /// Candidates QBO still returned (missed by the listing): their current versions.
    still_live: Vec<RawRecord>,
    /// Candidates QBO did not return, each with QBO's clock when it said so.
    gone: Vec<(String, DateTime<Utc>)>,
    pages: i32,
    intuit_tid: Option<String>,
}

impl<S: ChangeSource + 'static> Syncer<S> {
    /// Reconciles one entity and moves its watermark to `watermark` with the marks.
    pub(super) async fn reconcile_step(
        &self,
        t: &mut Target,
        watermark: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        let mut counters = RequestCounters::default();
        let window = Window {
            start: t.from,
            end: watermark,
        };
        let findings = match self.find_deletes(t.entity, &mut counters).await {
            Ok(f) => f,
            Err(e) => return self.step_failed(t, "reconcile", window, counters, e).await,
        };
        if let Err(e) = self
            .commit_reconcile(t, watermark, &findings, counters)
            .await
        {
            return self
                .step_failed(t, "reconcile", window, counters, e.into())
                .await;
        }
        t.watermark = Some(watermark);
        t.needs_reconcile = false;
        tracing::info!(
            entity = t.entity.cli_name,
            listed = findings.listed,
            deleted = findings.gone.len(),
            watermark = %watermark,
            "reconciled"
        );
        Ok(())
    }

    async fn find_deletes(
        &self,
        entity: &'static Entity,
        counters: &mut RequestCounters,
    ) -> Result<Findings, StepError> {
        let mut f = Findings::default();
        let mut listed = HashSet::new();
        let mut start = 1;
        loop {
            let (ids, tid) = self.list_page(entity, start, counters).await?;
            f.pages += 1;
            f.intuit_tid = tid.or(f.intuit_tid);
            let n = ids.len();
            listed.extend(ids);
            if n < MAX_PAGE_SIZE as usize {
                break;
            }
            start += MAX_PAGE_SIZE;
        }
        f.listed = listed.len();
        let candidates: Vec<String> =
            raw::live_ids(self.store.pool(), entity, self.source.realm_id())
                .await?
                .into_iter()
                .filter(|id| !listed.contains(id))
                .collect();
        for batch in candidates.chunks(CONFIRM_BATCH) {
            let ids = batch.iter().map(|id| Literal::Str(id.clone())).collect();
            let q = Query::select(entity)
                .filter_in(ID_FIELD, ids)
                .page(1, MAX_PAGE_SIZE)
                .render();
            let answer = self
                .source
                .fetch_page(entity.qbo_name, &q, counters)
                .await?;
            let asked_at = answer.value.server_time.unwrap_or_else(Utc::now);
            let found: HashSet<&str> = answer.value.records.iter().map(|r| r.id.as_str()).collect();
            f.gone.extend(
                batch
                    .iter()
                    .filter(|id| !found.contains(id.as_str()))
                    .map(|id| (id.clone(), asked_at)),
            );
            f.still_live.extend(answer.value.records);
        }
        Ok(f)
    }

    /// One page of the ids QBO has. Entities read whole are a handful of settings-like
    /// records, some wrapped in their type (RecurringTransaction): list them with `SELECT *`,
    /// whose parser knows the wrappers; everything else with the cheap `SELECT Id`.
    async fn list_page(
        &self,
        entity: &'static Entity,
        start: u32,
        counters: &mut RequestCounters,
    ) -> Result<(Vec<String>, Option<String>), StepError> {
        if entity.is_whole() {
            let q = Query::select(entity).page(start, MAX_PAGE_SIZE).render();
            let answer = self
                .source
                .fetch_page(entity.qbo_name, &q, counters)
                .await?;
            let ids = answer.value.records.into_iter().map(|r| r.id).collect();
            return Ok((ids, answer.intuit_tid));
        }
        let q = Query::ids(entity)
            .order_by(ID_FIELD)
            .page(start, MAX_PAGE_SIZE)
            .render();
        let answer = self.source.fetch_ids(entity.qbo_name, &q, counters).await?;
        Ok((answer.value.ids, answer.intuit_tid))
    }

    async fn commit_reconcile(
        &self,
        t: &mut Target,
        watermark: DateTime<Utc>,
        f: &Findings,
        counters: RequestCounters,
    ) -> Result<(), StoreError> {
        let realm_id = self.source.realm_id();
        let request_payload = json!({
            "method": "GET",
            "endpoint": format!("/v3/company/{realm_id}/query"),
            "query": format!("SELECT Id FROM {} ORDERBY Id", t.entity.qbo_name),
            "minorversion": self.source.minor_version(),
            "purpose": "reconcile",
        });
        let meta = PageMeta {
            realm_id,
            run_id: t.run_id,
            window_start: t.from,
            window_end: watermark,
            page_number: 1,
            page_size: MAX_PAGE_SIZE as i32,
            request_payload: &request_payload,
            intuit_tid: f.intuit_tid.as_deref(),
        };
        let stub = |id: &str| json!({"Id": id, "status": "Deleted", "domain": "QBO"}).to_string();
        let stubs: Vec<String> = f.gone.iter().map(|(id, _)| stub(id)).collect();
        let deletions: Vec<Deletion> = f
            .gone
            .iter()
            .zip(&stubs)
            .map(|((id, at), stub)| Deletion {
                id,
                deleted_at: *at,
                stub,
            })
            .collect();
        let index = t.take_indexes(1);
        retry_transient(
            &CancellationToken::new(),
            "committing a reconciliation",
            || async {
                let mut tx = self.store.pool().begin().await?;
                let counts = raw::upsert_page(&mut tx, t.entity, &meta, &f.still_live).await?;
                let deleted = raw::mark_deleted(&mut tx, t.entity, &meta, &deletions).await?;
                let row = StepRow {
                    run_id: t.run_id,
                    chunk_index: index,
                    realm_id,
                    entity: t.entity.cli_name,
                    window: Window {
                        start: t.from,
                        end: watermark,
                    },
                    read_via: "reconcile",
                    expected_count: Some(f.listed as i64),
                    row_count: f.still_live.len() as i64,
                    counts,
                    deleted,
                    pages: f.pages,
                    requests: counters.requests as i32,
                    retries: counters.retries as i32,
                    error: None,
                    intuit_tid: meta.intuit_tid,
                };
                PgStore::insert_step(&mut *tx, &row).await?;
                PgStore::advance_watermark(
                    &mut tx,
                    realm_id,
                    t.entity.cli_name,
                    watermark,
                    t.run_id,
                    true,
                )
                .await?;
                failpoint("sync-before-commit");
                tx.commit().await?;
                Ok::<(), StoreError>(())
            },
        )
        .await
    }
}
