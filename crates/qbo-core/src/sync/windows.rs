//! The window path: LastUpdatedTime windows from the start to QBO's now (or the whole entity),
//! loaded by the backfill's window loader as chunks of the sync's own run, then reconciled.

use chrono::{DateTime, Duration, Utc};

use super::{watermark, Options, Path, SyncError, Syncer, Target};
use crate::backfill::{BackfillError, Mode};
use crate::chunks::{self, Window};
use crate::client::ChangeSource;

impl<S: ChangeSource + 'static> Syncer<S> {
    pub(super) async fn sync_windows(
        &self,
        t: &mut Target,
        qbo_now: DateTime<Utc>,
        opts: &Options,
    ) -> Result<(), SyncError> {
        // Queries carry whole seconds (QBO stamps whole seconds): the last window runs to the
        // end of QBO's current second, so nothing stamped in it is cut off; the watermark
        // stays at its start.
        let watermark = watermark::from_server_time(qbo_now);
        let end = watermark + Duration::seconds(1);
        let start = watermark::from_server_time(t.from).min(end);
        let (windows, read_via) = if t.path == Path::Whole {
            (vec![Window { start, end }], "whole")
        } else {
            (
                chunks::plan_between(start, end, opts.backfill.chunking.days_or(7)),
                "query",
            )
        };
        tracing::info!(
            entity = t.entity.cli_name,
            from = %t.from,
            to = %end,
            windows = windows.len(),
            read_via,
            "reading windows"
        );
        if !windows.is_empty() {
            let first = t.take_indexes(windows.len());
            self.store
                .add_windows(
                    t.run_id,
                    self.source.realm_id(),
                    t.entity.cli_name,
                    first,
                    &windows,
                    read_via,
                )
                .await?;
            let summary = match self
                .backfill
                .run(t.entity, Mode::Planned(t.run_id), opts.backfill.clone())
                .await
            {
                Ok(s) => s,
                Err(BackfillError::Auth(auth)) => return Err(SyncError::Auth(auth)),
                Err(e) => return Err(e.into()),
            };
            if summary.failed > 0 || summary.pending > 0 || summary.interrupted {
                // The watermark stays: the next sync reads these windows again.
                t.failed = true;
                return Ok(());
            }
        }
        self.reconcile_step(t, watermark).await
    }
}
