//! QBO's ExchangeRate entity into `raw.qb_exchange_rates`: what `staging` falls back on for a
//! foreign-currency transaction that carries no ExchangeRate of its own (see the README,
//! "Analysis-ready tables").
//!
//! Windowing: QBO filters ExchangeRate only by `AsOfDate =` (and `SourceCurrencyCode =`),
//! a rate has no Id and no LastUpdatedTime to window on, so a load asks for each day of its
//! range, one query a day (every currency's rate that day in one answer). A rate holds from
//! its date until the next one, so staging takes the latest on or before a transaction's
//! date: loading the days the company has transactions on is enough, and loading again
//! replaces each day's rates (no duplicates).

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::client::rates::{query_for, ExchangeRate};
use crate::client::{ClientError, QboClient, RequestCounters};

#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    #[error("QBO did not answer the exchange rates of {day}")]
    Qbo {
        day: NaiveDate,
        #[source]
        source: ClientError,
    },
    #[error("could not store the exchange rates of {day}")]
    Store {
        day: NaiveDate,
        #[source]
        source: sqlx::Error,
    },
}

impl RatesError {
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            RatesError::Qbo { source, .. } => Some(source),
            RatesError::Store { .. } => None,
        }
    }
}

/// What a load did.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub days: u32,
    pub rates: u64,
    pub requests: u32,
    pub retries: u32,
}

/// Loads every day of `[start, end]`.
pub async fn load(
    client: &QboClient,
    pool: &PgPool,
    realm_id: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Loaded, RatesError> {
    let mut done = Loaded::default();
    let mut counters = RequestCounters::default();
    for day in start.iter_days().take_while(|d| *d <= end) {
        let answer = client
            .exchange_rates(day, &mut counters)
            .await
            .map_err(|source| RatesError::Qbo { day, source })?;
        store_day(
            pool,
            realm_id,
            day,
            &answer.value,
            answer.intuit_tid.as_deref(),
        )
        .await
        .map_err(|source| RatesError::Store { day, source })?;
        done.days += 1;
        done.rates += answer.value.len() as u64;
    }
    done.requests = counters.requests;
    done.retries = counters.retries;
    Ok(done)
}

/// Replaces the rates stored for `day` with `rates`, in one transaction.
async fn store_day(
    pool: &PgPool,
    realm_id: &str,
    day: NaiveDate,
    rates: &[ExchangeRate],
    intuit_tid: Option<&str>,
) -> Result<(), sqlx::Error> {
    let request = serde_json::json!({ "query": query_for(day) });
    let col = |f: fn(&ExchangeRate) -> String| rates.iter().map(f).collect::<Vec<_>>();
    let (sources, targets, values) = (
        col(|r| r.source.clone()),
        col(|r| r.target.clone()),
        col(|r| r.rate.clone()),
    );
    let payloads = col(|r| r.json.to_string());
    let updated: Vec<Option<String>> = rates.iter().map(|r| r.last_updated.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "DELETE FROM raw.qb_exchange_rates WHERE realm_id = $1 AND as_of_date = $2",
        realm_id,
        day
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO raw.qb_exchange_rates
             (realm_id, source_currency, target_currency, as_of_date, rate, payload,
              last_updated_utc, request_payload, intuit_tid)
         SELECT $1, s, t, $2, r::numeric, p::jsonb, u::timestamptz, $3, $4
         FROM UNNEST($5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) AS x(s, t, r, p, u)",
        realm_id,
        day,
        request,
        intuit_tid,
        &sources,
        &targets,
        &values,
        &payloads,
        &updated as &[Option<String>],
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
