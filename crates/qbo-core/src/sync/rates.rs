//! The sync's last step for a multi-currency company: the exchange rates of the days its
//! loaded foreign-currency transactions are dated on that are not loaded yet (see
//! `crate::exchange_rates`). Staging converts a transaction at its own ExchangeRate when QBO
//! sent one and falls back on these; they are also `staging.exchange_rates`, the company's
//! rate table. Multi-currency is what QBO's Preferences say (`CurrencyPrefs.
//! MultiCurrencyEnabled`, as Intuit documents it, and the rule staging's home amounts follow):
//! a single-currency company, or one whose Preferences were never loaded, costs no request
//! and gets no run.

use chrono::{Duration, NaiveDate};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{SyncError, SyncSummary, Syncer};
use crate::chunks::Window;
use crate::client::{ChangeSource, ClientError};
use crate::entities::EXCHANGE_RATES;
use crate::exchange_rates::{self, RatesError};
use crate::queue::{retry_transient, RunKind};
use crate::store::{NewRun, PgStore, StepRow, StoreError, UpsertCounts};

impl<S: ChangeSource + 'static> Syncer<S> {
    /// Loads the missing days' rates, as a run of its own (kind sync, entity
    /// `exchange_rates`, one report row); `None` when the company is not multi-currency.
    pub(super) async fn rates_step(
        &self,
        today: NaiveDate,
    ) -> Result<Option<SyncSummary>, SyncError> {
        let realm_id = self.source.realm_id().to_string();
        let pool = self.store.pool();
        let prefs = exchange_rates::currency_prefs(pool, &realm_id)
            .await
            .map_err(StoreError::from)?;
        let Some(home) = prefs.filter(|p| p.multi_currency).map(|p| p.home_currency) else {
            return Ok(None);
        };
        let days = exchange_rates::missing_days(pool, &realm_id, &home, today)
            .await
            .map_err(StoreError::from)?;
        let (first, last) = match (days.first(), days.last()) {
            (Some(f), Some(l)) => (*f, *l),
            _ => (today, today),
        };
        let run_id = self
            .store
            .create_run(
                &NewRun {
                    realm_id: &realm_id,
                    entity: EXCHANGE_RATES.0,
                    range_start: first,
                    range_end: last,
                    // The days are the rates' AsOfDate: dates, like a txn-date window's.
                    window_field: "txn-date",
                    options: json!({
                        "home_currency": home,
                        "missing_days": days.len(),
                        "minor_version": self.source.minor_version(),
                    }),
                    kind: RunKind::Sync,
                    read_via: "query",
                },
                &[],
            )
            .await?;
        self.queue.mark_run_running(run_id).await?;
        let (loaded, result) =
            exchange_rates::load_days(&*self.source, pool, &realm_id, &days).await;
        let error = match &result {
            Ok(()) => None,
            Err(e) if is_cancelled(e) => Some(format!(
                "interrupted after {} of {} days; the next sync asks for the rest",
                loaded.days,
                days.len()
            )),
            Err(e) => Some(crate::errors::chain(e)),
        };
        if let Some(e) = &error {
            tracing::error!(error = %e, "exchange rates: not every missing day was loaded; the next sync asks for the rest");
        }
        let row = StepRow {
            run_id,
            chunk_index: 0,
            realm_id: &realm_id,
            entity: EXCHANGE_RATES.0,
            window: day_window(first, last),
            read_via: "query",
            expected_count: Some(days.len() as i64),
            row_count: loaded.rates as i64,
            counts: UpsertCounts {
                inserted: loaded.rates as i64,
                ..Default::default()
            },
            deleted: 0,
            pages: loaded.days as i32,
            requests: loaded.requests as i32,
            retries: loaded.retries as i32,
            error: error.as_deref(),
            intuit_tid: loaded.intuit_tid.as_deref(),
        };
        retry_transient(
            &CancellationToken::new(),
            "recording the exchange rates step",
            || PgStore::insert_step(self.store.pool(), &row),
        )
        .await?;
        if let Err(RatesError::Qbo {
            source: ClientError::Auth(auth),
            ..
        }) = result
        {
            if auth.needs_human() {
                self.cancel.cancel();
                return Err(SyncError::Auth(auth));
            }
        }
        let summary = self
            .summarize_run(
                run_id,
                EXCHANGE_RATES.0,
                day_window(first, last).start,
                None,
            )
            .await?;
        Ok(Some(summary))
    }
}

fn is_cancelled(e: &RatesError) -> bool {
    matches!(e.client_error(), Some(ClientError::Cancelled))
}

/// `[first, last]` as the report's window: midnight of the first day to midnight after the
/// last.
fn day_window(first: NaiveDate, last: NaiveDate) -> Window {
    let midnight = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    Window {
        start: midnight(first),
        end: midnight(last + Duration::days(1)),
    }
}
