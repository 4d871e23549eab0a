//! A multi-currency company (`SandboxConfig::multi_currency`): staging carries every amount
//! in the transaction's currency and in the home currency, converted at the transaction's
//! own ExchangeRate (or, when it has none, the loaded rate for its currency and date); the
//! ledger balances in home currency transaction by transaction, and the tie-out against the
//! sandbox's (home-currency) reports still matches.

use chrono::{Duration, Utc};
use qbo::sandbox::SandboxConfig;
use sqlx::PgPool;

use crate::common::*;
use crate::refresh;

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

fn multi_currency_company() -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices: 80,
        customers: 20,
        items: 10,
        data_start: today - Duration::days(20),
        data_end: today - Duration::days(2),
        multi_currency: true,
        ..SandboxConfig::default()
    }
}

/// Transactions whose postings do not sum to zero, in home currency.
const UNBALANCED_HOME: &str = "SELECT count(*) FROM (
    SELECT source_entity, source_id FROM staging.general_ledger
    GROUP BY 1, 2 HAVING sum(home_amount) <> 0 OR bool_or(home_amount IS NULL)) x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_currency_company_converts_every_line_balances_in_home_currency_and_ties_out() {
    let w = World::new(multi_currency_company()).await;
    let today = Utc::now().date_naive();
    let (start, end) = ((today - Duration::days(21)).to_string(), today.to_string());
    w.backfill("all", &start, &end, &["--concurrency", "4"])
        .await
        .assert_code(0);
    refresh(&w).await;
    let pool = w.db.pool().await;

    // The company is multi-currency as QBO has them.
    let home: String =
        sqlx::query_scalar("SELECT home_currency FROM staging.home_currency WHERE multi_currency")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(home, "USD");
    let foreign = scalar(
        &pool,
        "SELECT count(*) FROM staging.transactions
         WHERE currency IN ('EUR', 'GBP', 'CAD') AND exchange_rate_source = 'transaction'
           AND exchange_rate <> 1",
    )
    .await;
    assert!(foreign > 20, "{foreign} foreign-currency transactions");
    for c in ["EUR", "GBP", "CAD"] {
        let n = scalar(
            &pool,
            &format!("SELECT count(*) FROM staging.invoice_lines WHERE currency = '{c}'"),
        )
        .await;
        assert!(n > 0, "no {c} invoice lines");
    }

    // Every line's home amount is its amount at its transaction's own ExchangeRate.
    let wrong = scalar(
        &pool,
        "SELECT count(*) FROM staging.transaction_lines l
         JOIN staging.raw_transactions t
           ON t.realm_id = l.realm_id AND t.source_entity = l.source_entity AND t.id = l.txn_id
         WHERE l.amount IS NOT NULL AND l.home_amount IS DISTINCT FROM
               round(l.amount * coalesce((t.payload->>'ExchangeRate')::numeric, 1), 2)",
    )
    .await;
    assert_eq!(wrong, 0, "lines converted at another rate");
    let converted = scalar(
        &pool,
        "SELECT count(*) FROM staging.transaction_lines WHERE home_amount <> amount",
    )
    .await;
    assert!(converted > 0);
    // QBO's HomeTotalAmt is the home total wherever it is sent.
    let totals = scalar(
        &pool,
        "SELECT count(*) FROM staging.transactions t JOIN staging.raw_transactions r
           ON r.realm_id = t.realm_id AND r.source_entity = t.source_entity AND r.id = t.txn_id
         WHERE r.payload ? 'HomeTotalAmt'
           AND t.home_total_amount <> (r.payload->>'HomeTotalAmt')::numeric",
    )
    .await;
    assert_eq!(totals, 0);

    // Debits equal credits in home currency, transaction by transaction.
    assert_eq!(scalar(&pool, UNBALANCED_HOME).await, 0);

    // QBO's reports (the sandbox's, in home currency) tie out with the ledger.
    let out = w
        .run(&["verify", "--tie-out", "--start", &start, "--end", &end])
        .await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
    // And on the cash basis: each payment recognizes its invoice's home-currency income in
    // proportion of what it applied in the invoice's currency.
    let out = w
        .run(&[
            "verify",
            "--tie-out",
            "--accounting-method",
            "cash",
            "--start",
            &start,
            "--end",
            &end,
        ])
        .await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_without_an_exchange_rate_converts_at_the_loaded_rate_of_its_date() {
    let w = World::new(multi_currency_company()).await;
    let today = Utc::now().date_naive();
    let (start, end) = ((today - Duration::days(21)).to_string(), today.to_string());
    for entity in ["preferences", "invoices", "accounts", "items"] {
        w.backfill(entity, &start, &end, &[]).await.assert_code(0);
    }
    let pool = w.db.pool().await;
    // A EUR invoice as a client that sent no rate would leave it, and the loaded rates: the
    // invoice's date has none, the day before has one (the latest on or before it applies).
    let (id, day): (String, chrono::NaiveDate) = sqlx::query_as(
        "SELECT id, (payload->>'TxnDate')::date FROM raw.qb_invoices
         WHERE payload->'CurrencyRef'->>'value' = 'EUR' ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE raw.qb_invoices SET payload = payload - 'ExchangeRate' - 'HomeTotalAmt' - 'HomeBalance'
         WHERE id = $1",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO raw.qb_exchange_rates
             (realm_id, source_currency, target_currency, as_of_date, rate, payload, request_payload)
         SELECT DISTINCT realm_id, 'EUR', 'USD', d, r, '{}'::jsonb, '{}'::jsonb
         FROM raw.qb_invoices, (VALUES ($1::date - 1, 1.5::numeric), ($1::date + 1, 9::numeric)) v(d, r)",
    )
    .bind(day)
    .execute(&pool)
    .await
    .unwrap();
    refresh(&w).await;

    let (rate, source): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT exchange_rate::text, exchange_rate_source FROM staging.transactions
         WHERE source_entity = 'Invoice' AND txn_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(rate.as_deref(), Some("1.5"));
    assert_eq!(source.as_deref(), Some("loaded"));
    let wrong = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM staging.invoice_lines WHERE txn_id = '{id}'
             AND amount IS NOT NULL AND home_amount IS DISTINCT FROM round(amount * 1.5, 2)"
        ),
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(scalar(&pool, UNBALANCED_HOME).await, 0);

    // Without any loaded rate for it, the home amounts are unknown (NULL), never guessed.
    sqlx::query("DELETE FROM raw.qb_exchange_rates")
        .execute(&pool)
        .await
        .unwrap();
    refresh(&w).await;
    let unknown = scalar(
        &pool,
        &format!(
            "SELECT count(*) FROM staging.invoice_lines WHERE txn_id = '{id}' AND home_amount IS NULL
             AND amount IS NOT NULL"
        ),
    )
    .await;
    assert!(unknown > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_exchange_rates_loads_each_day_once_with_the_rates_qbo_books_at() {
    let w = World::new(multi_currency_company()).await;
    let today = Utc::now().date_naive();
    let (start, end) = ((today - Duration::days(21)).to_string(), today.to_string());
    w.backfill("invoices", &start, &end, &[])
        .await
        .assert_code(0);
    let pool = w.db.pool().await;
    let (day, code, rate): (chrono::NaiveDate, String, String) = sqlx::query_as(
        "SELECT (payload->>'TxnDate')::date, payload->'CurrencyRef'->>'value', payload->>'ExchangeRate'
         FROM raw.qb_invoices WHERE payload ? 'ExchangeRate' ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (from, to) = (
        (day - Duration::days(1)).to_string(),
        (day + Duration::days(1)).to_string(),
    );
    let args = ["exchange-rates", "--start", &from, "--end", &to];
    for _ in 0..2 {
        let out = w.run(&args).await;
        out.assert_code(0);
        assert!(
            out.stdout.contains("3 days, 9 rates loaded"),
            "{}",
            out.stdout
        );
    }
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM raw.qb_exchange_rates").await,
        9,
        "three currencies a day, once each after two loads"
    );
    let loaded: String = sqlx::query_scalar(
        "SELECT rate::text FROM raw.qb_exchange_rates
         WHERE source_currency = $1 AND target_currency = 'USD' AND as_of_date = $2
           AND payload->>'AsOfDate' = $2::text AND intuit_tid IS NOT NULL",
    )
    .bind(&code)
    .bind(day)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(loaded, rate, "the rate the invoice was booked at");

    w.run(&["exchange-rates", "--start", &to, "--end", &from])
        .await
        .assert_code(2);
}
