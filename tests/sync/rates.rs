//! `qbo sync` keeps a multi-currency company's exchange rates current: after the entities it
//! asks QBO for the rates of each day a loaded foreign-currency transaction is dated on that
//! was never asked (one ExchangeRate query a day), records the step as a run, and asks
//! nothing when nothing is missing. A single-currency company is never asked.

use chrono::{Duration, Utc};
use qbo::sandbox::{RequestLogEntry, Sandbox, SandboxConfig};
use serde_json::Value;
use sqlx::PgPool;

use crate::common::World;
use crate::*;

fn rate_queries(log: &[RequestLogEntry]) -> usize {
    log.iter()
        .filter(|e| {
            e.query
                .as_deref()
                .is_some_and(|q| q.to_ascii_lowercase().contains("exchangerate"))
        })
        .count()
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The days a live foreign-currency invoice is dated on.
const FOREIGN_DAYS: &str = "SELECT count(DISTINCT (payload->>'TxnDate')::date) FROM raw.qb_invoices
     WHERE deleted_at_utc IS NULL AND payload->'CurrencyRef'->>'value' <> 'USD'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_currency_sync_loads_each_new_days_rates_once_and_staging_converts_with_them() {
    let w = World::new(SandboxConfig {
        multi_currency: true,
        ..recent_company(60)
    })
    .await;

    // First sync: every day a foreign invoice is on is asked, once.
    let before = log_len(&w);
    let first = w
        .run(&["sync", "invoices", "preferences", "--since", &days_ago(21)])
        .await;
    first.assert_code(0);
    let pool = w.db.pool().await;
    let days = scalar(&pool, FOREIGN_DAYS).await;
    assert!(days > 3, "{days} days with foreign invoices");
    assert_eq!(
        rate_queries(&requests_since(&w, before)),
        days as usize,
        "one query per day with a foreign invoice"
    );
    assert!(
        first
            .stdout
            .contains(&format!("{days} days loaded ({} rates)", days * 3)),
        "{}",
        first.stdout
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM ops.exchange_rate_days").await,
        days
    );

    // A EUR invoice on a day nothing was on before, that carries no rate of its own (staging
    // then converts it at the loaded rate of its date).
    let yesterday = Utc::now().date_naive() - Duration::days(1);
    let mut invoice = w
        .sandbox
        .records("Invoice")
        .into_iter()
        .find(|i| i["CurrencyRef"]["value"] == "EUR")
        .expect("a EUR invoice");
    let stamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    invoice["Id"] = Value::String("990001".into());
    invoice["SyncToken"] = Value::String("0".into());
    invoice["TxnDate"] = Value::String(yesterday.to_string());
    invoice["MetaData"]["LastUpdatedTime"] = Value::String(stamp);
    for field in ["ExchangeRate", "HomeTotalAmt", "HomeBalance"] {
        invoice.as_object_mut().unwrap().remove(field);
    }
    w.sandbox.put_record("Invoice", invoice);

    let before = log_len(&w);
    let second = w.run(&["sync", "invoices", "preferences"]).await;
    second.assert_code(0);
    assert_eq!(
        rate_queries(&requests_since(&w, before)),
        1,
        "only the new day is asked: {}",
        second.stdout
    );
    assert!(
        second.stdout.contains("1 days loaded (3 rates)"),
        "{}",
        second.stdout
    );
    w.run(&["model", "refresh"]).await.assert_code(0);
    let rate = Sandbox::exchange_rate("EUR", yesterday).unwrap();
    let (used, source): (f64, String) = sqlx::query_as(
        "SELECT exchange_rate::float8, exchange_rate_source FROM staging.transactions
         WHERE source_entity = 'Invoice' AND txn_id = '990001'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(source, "loaded");
    assert_eq!(used, rate, "the rate of its own date, not an older one");
    let wrong = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM staging.invoice_lines WHERE txn_id = '990001'
             AND amount IS NOT NULL AND home_amount IS DISTINCT FROM round(amount * {rate}, 2)"
        ),
    )
    .await;
    let lines = scalar(
        &pool,
        "SELECT count(*) FROM staging.invoice_lines WHERE txn_id = '990001' AND amount <> 0",
    )
    .await;
    assert!(lines > 0);
    assert_eq!(wrong, 0, "home amounts at the day's rate");

    // Nothing new: no rate is asked, and the step's run says so.
    let before = log_len(&w);
    let third = w.run(&["sync", "invoices", "preferences"]).await;
    third.assert_code(0);
    assert_eq!(rate_queries(&requests_since(&w, before)), 0);
    assert!(
        third.stdout.contains("0 days loaded (0 rates)"),
        "{}",
        third.stdout
    );
    let (runs, requests): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT r.run_id), coalesce(sum(c.requests), 0)::bigint
         FROM ops.backfill_runs r JOIN ops.backfill_report c USING (run_id)
         WHERE r.entity = 'exchange_rates' AND r.kind = 'sync'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(runs, 3, "one run per sync");
    assert_eq!(sync_report(&w, "exchange_rates").await.len(), 3);
    assert_eq!(requests, days + 1, "the report counts every rate request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_currency_sync_asks_for_no_rates() {
    let w = World::new(recent_company(40)).await;
    let before = log_len(&w);
    let run = w
        .run(&["sync", "invoices", "preferences", "--since", &days_ago(21)])
        .await;
    run.assert_code(0);
    let log = requests_since(&w, before);
    assert!(!log.is_empty());
    assert_eq!(rate_queries(&log), 0, "{log:#?}");
    assert!(!run.stdout.contains("exchange_rates"), "{}", run.stdout);
    let pool = w.db.pool().await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM ops.backfill_runs WHERE entity = 'exchange_rates'"
        )
        .await,
        0
    );
    // QBO says so: the company's Preferences have multicurrency off.
    let multi: bool = sqlx::query_scalar(
        "SELECT (payload->'CurrencyPrefs'->>'MultiCurrencyEnabled')::boolean FROM raw.qb_preferences",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!multi);
}
