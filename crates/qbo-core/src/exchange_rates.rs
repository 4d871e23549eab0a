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
//!
//! `qbo sync` keeps them current by itself (`crate::sync`'s rates step): for a company whose
//! loaded Preferences say `MultiCurrencyEnabled`, it asks for each day a live loaded
//! transaction in a foreign currency is dated on that was never asked (`missing_days`;
//! every answered day is recorded in `ops.exchange_rate_days`), so a sync with nothing new
//! asks nothing and a single-currency company is never asked at all.

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::client::rates::{query_for, ExchangeRate};
use crate::client::{ChangeSource, ClientError, RequestCounters};

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
    /// The last answer's intuit_tid, for Intuit support.
    pub intuit_tid: Option<String>,
}

/// Loads every day of `[start, end]`.
pub async fn load<S: ChangeSource>(
    source: &S,
    pool: &PgPool,
    realm_id: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Loaded, RatesError> {
    let days: Vec<NaiveDate> = start.iter_days().take_while(|d| *d <= end).collect();
    let (done, result) = load_days(source, pool, realm_id, &days).await;
    result.map(|()| done)
}

/// Loads each of `days`, in order, one query a day; what was loaded before a failure is kept
/// (and returned beside it).
pub async fn load_days<S: ChangeSource>(
    source: &S,
    pool: &PgPool,
    realm_id: &str,
    days: &[NaiveDate],
) -> (Loaded, Result<(), RatesError>) {
    let mut done = Loaded::default();
    let mut counters = RequestCounters::default();
    let mut result = Ok(());
    for &day in days {
        let answer = match source.fetch_exchange_rates(day, &mut counters).await {
            Ok(a) => a,
            Err(source) => {
                result = Err(RatesError::Qbo { day, source });
                break;
            }
        };
        let stored = store_day(
            pool,
            realm_id,
            day,
            &answer.value,
            answer.intuit_tid.as_deref(),
        )
        .await;
        if let Err(source) = stored {
            result = Err(RatesError::Store { day, source });
            break;
        }
        done.days += 1;
        done.rates += answer.value.len() as u64;
        done.intuit_tid = answer.intuit_tid.or(done.intuit_tid);
    }
    done.requests = counters.requests;
    done.retries = counters.retries;
    (done, result)
}

/// A company's currency settings, as its loaded Preferences (`CurrencyPrefs`) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyPrefs {
    pub home_currency: String,
    pub multi_currency: bool,
}

/// The loaded Preferences' currency settings; `None` while no Preferences (or none naming a
/// home currency) are loaded for the company.
pub async fn currency_prefs(
    pool: &PgPool,
    realm_id: &str,
) -> Result<Option<CurrencyPrefs>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT payload->'CurrencyPrefs'->'HomeCurrency'->>'value' AS home_currency,
                  coalesce((payload->'CurrencyPrefs'->>'MultiCurrencyEnabled')::boolean, false)
                      AS "multi_currency!"
           FROM raw.qb_preferences
           WHERE realm_id = $1 AND deleted_at_utc IS NULL
           ORDER BY last_updated_utc DESC LIMIT 1"#,
        realm_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|r| {
        r.home_currency.map(|home_currency| CurrencyPrefs {
            home_currency,
            multi_currency: r.multi_currency,
        })
    }))
}

/// The days, up to `through`, that a live loaded transaction in a currency other than
/// `home` is dated on and whose rate is not loaded: never asked (`ops.exchange_rate_days`)
/// and no rate of that currency held for it. Oldest first.
pub async fn missing_days(
    pool: &PgPool,
    realm_id: &str,
    home: &str,
    through: NaiveDate,
) -> Result<Vec<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT DISTINCT t.day AS "day!"
           FROM (SELECT (x.p->>'TxnDate')::date AS day, x.p->'CurrencyRef'->>'value' AS currency
                 FROM staging.raw_transactions rt
                 -- Detoasted once per row, not once per `->`.
                 CROSS JOIN LATERAL (SELECT rt.payload || '{}'::jsonb AS p OFFSET 0) x
                 WHERE rt.realm_id = $1) t
           WHERE t.currency IS NOT NULL AND t.currency <> $2
             AND t.day IS NOT NULL AND t.day <= $3
             AND NOT EXISTS (SELECT 1 FROM ops.exchange_rate_days a
                             WHERE a.realm_id = $1 AND a.as_of_date = t.day)
             AND NOT EXISTS (SELECT 1 FROM raw.qb_exchange_rates r
                             WHERE r.realm_id = $1 AND r.as_of_date = t.day
                               AND r.source_currency = t.currency AND r.target_currency = $2)
           ORDER BY 1"#,
        realm_id,
        home,
        through
    )
    .fetch_all(pool)
    .await
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
    // The day's row first: its upsert locks the row (or waits for a concurrent insert of
    // it to commit), so two syncs storing the same day take turns instead of both deleting
    // nothing and the second tripping over the first's rates on the unique key.
    sqlx::query!(
        "INSERT INTO ops.exchange_rate_days (realm_id, as_of_date, rates)
         VALUES ($1, $2, $3)
         ON CONFLICT (realm_id, as_of_date)
         DO UPDATE SET rates = EXCLUDED.rates, asked_at = now()",
        realm_id,
        day,
        rates.len() as i32
    )
    .execute(&mut *tx)
    .await?;
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
