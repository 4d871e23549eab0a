//! (7) Staging (only with `--only staging`): how long `qbo model refresh` takes, and how much space the staging schema
//! takes, for a company of N invoices.
//!
//! The raw zone is filled by SQL, not through the sandbox: the measure is the model refresh,
//! and rendering and loading half a million invoices over HTTP would take longer than the
//! thing measured. `generate_series` writes N invoices as QBO shapes them (1 to 4
//! SalesItemLineDetail lines with item, quantity and unit price, a SubTotalLineDetail line,
//! TxnTaxDetail at 8%, CustomerRef, TxnDate spread over 2024, MetaData), one in five in EUR
//! with ExchangeRate and HomeTotalAmt so the home-currency path is exercised, plus the chart
//! of accounts, items and preferences the ledger joins to. Then the refresh is timed twice:
//! the first fill, and a second (CONCURRENT) one, as every refresh after the first is.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::PgPool;

use super::plan::Bench;
use super::BenchError;
use qbo_core::model::{self, Refreshed};
use qbo_core::store::PgStore;

const REALM: &str = "9130350000000001";

/// What the staging section measured.
#[derive(Debug)]
pub struct StagingFigures {
    pub invoices: u64,
    pub raw_bytes: i64,
    pub generate: Duration,
    pub first: Vec<Refreshed>,
    pub again: Vec<Refreshed>,
    /// Transactions whose ledger postings do not sum to zero (home currency): must be 0.
    pub unbalanced: i64,
    /// Lines that are not what was generated (count): must be 0.
    pub missing_lines: i64,
}

impl Bench {
    pub(super) async fn staging(&self, invoices: u64) -> Result<StagingFigures, BenchError> {
        let (name, url) = self.create_db("staging").await?;
        let result = measure(&url, invoices).await;
        self.drop_db(&name).await;
        result
    }
}

async fn measure(url: &str, invoices: u64) -> Result<StagingFigures, BenchError> {
    let store = PgStore::connect_and_migrate(&SecretString::from(url.to_string())).await?;
    let pool = store.pool();
    let started = Instant::now();
    generate(pool, invoices).await?;
    let generate = started.elapsed();
    let raw_bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('raw.qb_invoices')")
        .fetch_one(pool)
        .await?;
    let first = model::refresh(pool).await?;
    let again = model::refresh(pool).await?;
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT source_id FROM staging.general_ledger
         GROUP BY source_entity, source_id
         HAVING sum(home_amount) <> 0 OR sum(amount) <> 0) x",
    )
    .fetch_one(pool)
    .await?;
    // Each invoice has 1 + id % 4 item lines and one sub-total line.
    let expected: i64 = (1..=invoices as i64).map(|i| 2 + i % 4).sum();
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM staging.invoice_lines")
        .fetch_one(pool)
        .await?;
    Ok(StagingFigures {
        invoices,
        raw_bytes,
        generate,
        first,
        again,
        unbalanced,
        missing_lines: (expected - lines).abs(),
    })
}

/// The raw zone of an N-invoice company, written by Postgres itself.
async fn generate(pool: &PgPool, invoices: u64) -> Result<(), BenchError> {
    let common = "sync_token, last_updated_utc, extract_window_start_utc, extract_window_end_utc,
                  page_number, page_size, request_payload, run_id";
    let values = "'0', now(), now(), now(), 1, 1000, '{}'::jsonb, gen_random_uuid()";
    sqlx::query(&format!(
        "INSERT INTO raw.qb_accounts (realm_id, id, payload, {common})
         SELECT $1, a.id, jsonb_build_object('Id', a.id, 'Name', a.name, 'AccountType', a.type,
                'AccountSubType', a.sub, 'Classification', a.class, 'Active', true), {values}
         FROM (VALUES ('1', 'Accounts Receivable (A/R)', 'Accounts Receivable', 'AccountsReceivable', 'Asset'),
                      ('2', 'Sales', 'Income', 'SalesOfProductIncome', 'Revenue'),
                      ('3', 'Services', 'Income', 'ServiceFeeIncome', 'Revenue'),
                      ('4', 'Sales Tax Payable', 'Other Current Liability', 'GlobalTaxPayable', 'Liability'))
              AS a(id, name, type, sub, class)"
    ))
    .bind(REALM)
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO raw.qb_items (realm_id, id, payload, {common})
         SELECT $1, i::text, jsonb_build_object('Id', i::text, 'Name', 'Item ' || i, 'Type', 'Service',
                'Active', true, 'IncomeAccountRef', jsonb_build_object('value', (2 + i % 2)::text)), {values}
         FROM generate_series(1, 30) i"
    ))
    .bind(REALM)
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO raw.qb_preferences (realm_id, id, payload, {common})
         VALUES ($1, '1', '{{\"Id\": \"1\", \"CurrencyPrefs\": {{\"MultiCurrencyEnabled\": true,
                 \"HomeCurrency\": {{\"value\": \"USD\"}}}}}}', {values})"
    ))
    .bind(REALM)
    .execute(pool)
    .await?;
    // In batches, so no one statement holds millions of rows in memory at once.
    let batch = 50_000;
    let mut from = 1;
    while from <= invoices {
        let to = (from + batch - 1).min(invoices);
        sqlx::query(&format!(
            "INSERT INTO raw.qb_invoices (realm_id, id, payload, {common})
             SELECT $1, i::text,
                    jsonb_build_object(
                        'Id', i::text, 'SyncToken', '0', 'domain', 'QBO', 'sparse', false,
                        'DocNumber', (1000 + i)::text,
                        'TxnDate', (date '2024-01-01' + (i % 366)::int)::text,
                        'CustomerRef', jsonb_build_object('value', (1 + i % 1000)::text),
                        'CurrencyRef', jsonb_build_object('value', cur),
                        'Line', l.lines || jsonb_build_array(jsonb_build_object(
                            'Amount', l.subtotal, 'DetailType', 'SubTotalLineDetail',
                            'SubTotalLineDetail', '{{}}'::jsonb)),
                        'TxnTaxDetail', jsonb_build_object('TotalTax', tax),
                        'TotalAmt', l.subtotal + tax, 'Balance', l.subtotal + tax,
                        'MetaData', jsonb_build_object('CreateTime', '2024-01-01T00:00:00-08:00',
                                                       'LastUpdatedTime', '2024-01-01T00:00:00-08:00'))
                    || CASE WHEN rate IS NULL THEN '{{}}'::jsonb
                            ELSE jsonb_build_object('ExchangeRate', rate,
                                    'HomeTotalAmt', l.home_subtotal + round(tax * rate, 2)) END,
                    {values}
             FROM generate_series($2::bigint, $3::bigint) i
             CROSS JOIN LATERAL (SELECT CASE WHEN i % 5 = 0 THEN 'EUR' ELSE 'USD' END AS cur,
                                        CASE WHEN i % 5 = 0 THEN 1.0850 + (i % 100) / 10000.0 END AS rate) c
             CROSS JOIN LATERAL (
                 SELECT jsonb_agg(jsonb_build_object(
                            'Id', k::text, 'LineNum', k, 'Amount', amt, 'Description', 'Line ' || k,
                            'DetailType', 'SalesItemLineDetail',
                            'SalesItemLineDetail', jsonb_build_object(
                                'ItemRef', jsonb_build_object('value', (1 + (i + k) % 30)::text),
                                'Qty', 1, 'UnitPrice', amt,
                                'TaxCodeRef', jsonb_build_object('value', 'TAX'))) ORDER BY k) AS lines,
                        sum(amt) AS subtotal,
                        sum(round(amt * coalesce(c.rate, 1), 2)) AS home_subtotal
                 FROM (SELECT k, ((i * 7919 + k * 104729) % 50000 + 100) / 100.0 AS amt
                       FROM generate_series(1, 1 + (i % 4)::int) k) x
             ) l
             CROSS JOIN LATERAL (SELECT round(l.subtotal * 0.08, 2) AS tax) t"
        ))
        .bind(REALM)
        .bind(from as i64)
        .bind(to as i64)
        .execute(pool)
        .await?;
        from = to + 1;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}
