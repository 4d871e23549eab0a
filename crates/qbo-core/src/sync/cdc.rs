//! The CDC path: entities batched per call, an answer at QBO's 1000-object cap split until
//! it is not (or, for a single entity, handed to the window path), and each entity's changes
//! committed with its report row and its watermark in one transaction.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{failpoint, watermark, Path, StepError, SyncError, Syncer, Target};
use crate::chunks::Window;
use crate::client::cdc::CDC_MAX_OBJECTS;
use crate::client::{Answer, CdcChange, CdcPage, ChangeSource, ClientError, RequestCounters};
use crate::queue::retry_transient;
use crate::store::raw::{self, Deletion};
use crate::store::{PageMeta, PgStore, StepRow, StoreError, UpsertCounts};

/// One CDC answer and what was asked.
struct Read<'a> {
    names: &'a [&'a str],
    since: DateTime<Utc>,
    answer: &'a Answer<CdcPage>,
    watermark: DateTime<Utc>,
    counters: RequestCounters,
}

impl<S: ChangeSource + 'static> Syncer<S> {
    pub(super) async fn sync_cdc(
        &self,
        targets: &mut [Target],
        batch_size: usize,
    ) -> Result<(), SyncError> {
        let cdc: Vec<usize> = (0..targets.len())
            .filter(|i| targets[*i].path == Path::Cdc)
            .collect();
        let mut queue: VecDeque<Vec<usize>> = cdc
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        while let Some(batch) = queue.pop_front() {
            if self.cancel.is_cancelled() {
                break;
            }
            let since = batch
                .iter()
                .map(|i| targets[*i].from)
                .min()
                .unwrap_or_else(Utc::now);
            let names: Vec<&str> = batch.iter().map(|i| targets[*i].entity.qbo_name).collect();
            let mut counters = RequestCounters::default();
            let answer = self.source.fetch_cdc(&names, since, &mut counters).await;
            match answer {
                Err(ClientError::Fault { code, .. }) if code == "2010" => {
                    // Past CDC's horizon by QBO's own reckoning (our margin was not enough).
                    tracing::warn!(entities = %names.join(","), %since, "QBO says changedSince is past CDC's 30 days; reading windows instead");
                    for i in batch {
                        targets[i].path = Path::Windows;
                    }
                }
                Err(ClientError::Cancelled) => {
                    // Ctrl-C / SIGTERM: not a failure of the step; the watermarks stay.
                    for i in batch {
                        targets[i].failed = true;
                    }
                    break;
                }
                Err(e) => {
                    let window = Window {
                        start: since,
                        end: Utc::now(),
                    };
                    let message = StepError::from(e);
                    for i in &batch {
                        self.record_failure(
                            &mut targets[*i],
                            "cdc",
                            window,
                            counters,
                            &message.message(),
                        )
                        .await?;
                    }
                    self.stop_if_human(message)?;
                }
                Ok(answer) if answer.value.maybe_truncated() => {
                    if batch.len() > 1 {
                        tracing::info!(entities = %names.join(","), "CDC answered {CDC_MAX_OBJECTS} objects (maybe truncated); splitting the batch");
                        let (a, b) = batch.split_at(batch.len() / 2);
                        queue.push_front(b.to_vec());
                        queue.push_front(a.to_vec());
                    } else {
                        tracing::info!(entity = names[0], "CDC answered {CDC_MAX_OBJECTS} objects for one entity; reading windows instead");
                        targets[batch[0]].path = Path::Windows;
                    }
                }
                Ok(answer) => {
                    let server_time = answer.value.server_time.unwrap_or_else(|| {
                        Utc::now() - Duration::minutes(watermark::CLOCK_SKEW_MINUTES)
                    });
                    let read = Read {
                        names: &names,
                        since,
                        answer: &answer,
                        watermark: watermark::from_server_time(server_time),
                        counters,
                    };
                    for i in &batch {
                        if let Err(e) = self.commit_cdc(&mut targets[*i], &read).await {
                            let window = Window {
                                start: since,
                                end: read.watermark,
                            };
                            self.step_failed(&mut targets[*i], "cdc", window, counters, e.into())
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Lands one entity's share of a CDC answer: versions, deletes, the report row and the
    /// watermark, in one transaction (waiting out a Postgres restart).
    async fn commit_cdc(&self, t: &mut Target, read: &Read<'_>) -> Result<(), StoreError> {
        let changes = read
            .answer
            .value
            .changes
            .get(t.entity.qbo_name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let live: Vec<_> = changes
            .iter()
            .filter_map(|c| match c {
                CdcChange::Live(r) => Some(r.clone()),
                CdcChange::Deleted { .. } => None,
            })
            .collect();
        let deletions: Vec<Deletion> = changes
            .iter()
            .filter_map(|c| match c {
                CdcChange::Deleted {
                    id,
                    deleted_at,
                    stub,
                } => Some(Deletion {
                    id,
                    deleted_at: *deleted_at,
                    stub: stub.get(),
                }),
                CdcChange::Live(_) => None,
            })
            .collect();
        let realm_id = self.source.realm_id();
        let request_payload = json!({
            "method": "GET",
            "endpoint": format!("/v3/company/{realm_id}/cdc"),
            "entities": read.names.join(","),
            "changedSince": read.since,
            "minorversion": self.source.minor_version(),
            "purpose": "cdc",
        });
        let meta = PageMeta {
            realm_id,
            run_id: t.run_id,
            window_start: read.since,
            window_end: read.watermark,
            page_number: 1,
            page_size: CDC_MAX_OBJECTS as i32,
            request_payload: &request_payload,
            intuit_tid: read.answer.intuit_tid.as_deref(),
        };
        let index = t.take_indexes(1);
        let (counts, deleted) = retry_transient(
            &CancellationToken::new(),
            "committing CDC changes",
            || async {
                let mut tx = self.store.pool().begin().await?;
                let counts = raw::upsert_page(&mut tx, t.entity, &meta, &live).await?;
                let deleted = raw::mark_deleted(&mut tx, t.entity, &meta, &deletions).await?;
                let row = step_row(t, index, &meta, changes.len(), counts, deleted, read);
                PgStore::insert_step(&mut *tx, &row).await?;
                PgStore::advance_watermark(
                    &mut tx,
                    realm_id,
                    t.entity.cli_name,
                    read.watermark,
                    t.run_id,
                    false,
                )
                .await?;
                failpoint("sync-before-commit");
                tx.commit().await?;
                Ok::<(UpsertCounts, i64), StoreError>((counts, deleted))
            },
        )
        .await?;
        t.watermark = Some(read.watermark);
        tracing::info!(
            entity = t.entity.cli_name,
            changes = changes.len(),
            inserted = counts.inserted,
            updated = counts.updated,
            deleted,
            watermark = %read.watermark,
            "CDC changes committed"
        );
        Ok(())
    }
}

fn step_row<'a>(
    t: &'a Target,
    index: i32,
    meta: &'a PageMeta<'a>,
    changes: usize,
    counts: UpsertCounts,
    deleted: i64,
    read: &'a Read<'a>,
) -> StepRow<'a> {
    StepRow {
        run_id: t.run_id,
        chunk_index: index,
        realm_id: meta.realm_id,
        entity: t.entity.cli_name,
        window: Window {
            start: read.since,
            end: read.watermark,
        },
        read_via: "cdc",
        expected_count: Some(changes as i64),
        row_count: changes as i64,
        counts,
        deleted,
        pages: 1,
        requests: read.counters.requests as i32,
        retries: read.counters.retries as i32,
        error: None,
        intuit_tid: meta.intuit_tid,
    }
}
