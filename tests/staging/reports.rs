//! `qbo reports` loads QBO's reports into raw.qb_reports / raw.qb_report_cells (again
//! without duplicates, split when QBO finds a piece too large, and still complete), and
//! `qbo verify --tie-out` compares the staging ledger with QBO's own P&L and trial balance.

use chrono::{Duration, Utc};
use qbo::sandbox::{Faults, SandboxConfig};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::*;
use crate::refresh;

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Per account, the sum of the GeneralLedger's Amount column over January's pieces:
/// `split` picks the pieces a split made, or the whole month's.
async fn january_gl(pool: &PgPool, split: bool) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT c.section_path[1], sum(c.amount)::text
         FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'GeneralLedger' AND r.period_start >= '2024-01-01'
           AND r.period_end <= '2024-01-31' AND (r.split_from_start IS NOT NULL) = $1
           AND c.row_kind = 'data' AND c.column_key = 'subt_nat_amount' AND c.amount IS NOT NULL
         GROUP BY 1 ORDER BY 1",
    )
    .bind(split)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_loads_once_and_a_too_large_month_is_split_and_still_complete() {
    let w = World::new(small_company()).await;
    let range = ["--start", "2024-01-01", "--end", "2024-03-31"];
    let mut args = vec!["reports", "all"];
    args.extend(range);
    let out = w.run(&args).await;
    out.assert_code(0);
    for name in [
        "ProfitAndLoss",
        "BalanceSheet",
        "TrialBalance",
        "GeneralLedger",
        "ProfitAndLossDetail",
        "CashFlow",
        "AgedReceivables",
        "AgedPayables",
        "TransactionList",
    ] {
        assert!(
            out.stdout
                .contains(&format!("{name}: 3 pieces loaded (0 split")),
            "{}",
            out.stdout
        );
    }
    let pool = w.db.pool().await;
    let reports = "SELECT count(*) FROM raw.qb_reports";
    let cells = "SELECT count(*) FROM raw.qb_report_cells";
    assert_eq!(scalar(&pool, reports).await, 27, "9 reports x 3 months");
    let n_cells = scalar(&pool, cells).await;
    assert!(n_cells > 100, "{n_cells} cells");

    // Typed: QBO's P&L net income of each month is a number, and the payload is kept whole.
    let net: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT r.period_start::text, c.amount::text
         FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'ProfitAndLoss' AND c.section_group = 'NetIncome'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(net.len(), 3, "{net:?}");
    assert!(net.iter().all(|(_, a)| a.is_some()), "{net:?}");
    let kept: i64 = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports WHERE payload->'Header'->>'ReportName' = report_name
         AND intuit_tid IS NOT NULL AND params->>'start_date' = period_start::text",
    )
    .await;
    assert_eq!(kept, 27 - 6, "the aged reports' params are report_date");

    // Loading again replaces the pieces: nothing doubles.
    w.run(&args).await.assert_code(0);
    assert_eq!(scalar(&pool, reports).await, 27);
    assert_eq!(scalar(&pool, cells).await, n_cells);

    // January's ledger, too large for QBO at a cap below its size, is split into weeks.
    let month_cells = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'GeneralLedger' AND r.period_start = '2024-01-01'",
    )
    .await as u64;
    let whole = january_gl(&pool, false).await;
    assert!(!whole.is_empty());
    w.faults(Faults {
        report_max_cells: month_cells * 6 / 10,
        ..Faults::default()
    });
    let out = w
        .run(&[
            "reports",
            "GeneralLedger",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ])
        .await;
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("GeneralLedger: 5 pieces loaded (1 split as too large)"),
        "{}",
        out.stdout
    );
    let split_from: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT split_from_start::text, split_from_end::text FROM raw.qb_reports
         WHERE split_from_start IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        split_from,
        [("2024-01-01".to_string(), "2024-01-31".to_string())]
    );
    assert_eq!(
        january_gl(&pool, true).await,
        whole,
        "the weeks add up to the month"
    );
    assert!(
        january_gl(&pool, false).await.is_empty(),
        "the weeks replaced the month"
    );
    let overlapping = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports a JOIN raw.qb_reports b
           ON a.realm_id = b.realm_id AND a.report_name = b.report_name
          AND a.accounting_method = b.accounting_method AND a.params_hash < b.params_hash
          AND daterange(a.period_start, a.period_end, '[]') && daterange(b.period_start, b.period_end, '[]')",
    )
    .await;
    assert_eq!(overlapping, 0, "no day is covered twice");
    assert_eq!(
        scalar(&pool, reports).await,
        27 - 1 + 5,
        "January's ledger is 5 weeks now"
    );

    // Another --period replaces the months it covers.
    w.faults(Faults::default());
    let mut quarter = vec!["reports", "ProfitAndLoss", "--period", "quarter"];
    quarter.extend(range);
    w.run(&quarter).await.assert_code(0);
    let pl: Vec<(String, String)> = sqlx::query_as(
        "SELECT period_start::text, period_end::text FROM raw.qb_reports
         WHERE report_name = 'ProfitAndLoss'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(pl, [("2024-01-01".to_string(), "2024-03-31".to_string())]);
    let cut = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports WHERE payload::text LIKE '%Unable to display more data%'",
    )
    .await;
    assert_eq!(cut, 0, "a cut answer is never stored");
}

async fn amount(pool: &PgPool, sql: &str) -> String {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .unwrap_or_else(|| "0".into())
}

/// What is open with each customer, from staging: the README's "A/R aging" SQL's `open_ar`.
const OPEN_AR: &str = "
    SELECT realm_id, customer_id, txn_date, coalesce(due_date, txn_date) AS aged_from,
           round(balance * exchange_rate, 2) AS amount
    FROM staging.transactions WHERE source_entity = 'Invoice' AND balance <> 0
    UNION ALL
    SELECT realm_id, customer_id, txn_date, txn_date, -round(balance * exchange_rate, 2)
    FROM staging.transactions WHERE source_entity = 'CreditMemo' AND balance <> 0
    UNION ALL
    SELECT realm_id, customer_id, txn_date, txn_date, -round(unapplied_amount * exchange_rate, 2)
    FROM staging.transactions WHERE source_entity = 'Payment' AND unapplied_amount <> 0
    UNION ALL
    SELECT realm_id, customer_id, txn_date, txn_date, home_amount
    FROM staging.general_ledger
    WHERE source_entity = 'JournalEntry' AND account_type = 'Accounts Receivable'
    UNION ALL
    SELECT p.realm_id, p.customer_id, je.txn_date, je.txn_date, -round(l.amount * p.exchange_rate, 2)
    FROM staging.payment_lines l
    JOIN staging.transactions p USING (realm_id, source_entity, txn_id)
    JOIN staging.transactions je ON je.realm_id = l.realm_id
         AND je.source_entity = 'JournalEntry' AND je.txn_id = l.linked_txn_id
    WHERE l.linked_txn_type = 'JournalEntry'";

/// The transaction tables of the raw zone (the types that post).
const TXN_TABLES: &[&str] = &[
    "invoices",
    "sales_receipts",
    "credit_memos",
    "refund_receipts",
    "bills",
    "vendor_credits",
    "purchases",
    "journal_entries",
    "deposits",
    "payments",
    "bill_payments",
    "transfers",
    "credit_card_payments",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_cash_flow_aged_and_listing_reports_tie_to_the_raw_zone_and_each_other() {
    let w = World::new(small_company()).await;
    w.backfill("all", "2024-01-01", "2024-03-31", &["--concurrency", "4"])
        .await
        .assert_code(0);
    let out = w
        .run(&[
            "reports",
            "all",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--period",
            "quarter",
        ])
        .await;
    out.assert_code(0);
    let pool = w.db.pool().await;

    // TransactionList: one row per live transaction dated in the range.
    let listed = scalar(
        &pool,
        "SELECT count(DISTINCT c.row_index) FROM raw.qb_report_cells c
         WHERE c.report_name = 'TransactionList' AND c.row_kind = 'data'",
    )
    .await;
    let mut in_raw = 0;
    for t in TXN_TABLES {
        in_raw += scalar(
            &pool,
            &format!(
                "SELECT count(*) FROM raw.qb_{t} WHERE deleted_at_utc IS NULL
                 AND (payload->>'TxnDate')::date BETWEEN '2024-01-01' AND '2024-03-31'"
            ),
        )
        .await;
    }
    assert!(in_raw > 0);
    assert_eq!(
        listed, in_raw,
        "TransactionList rows = transactions in range"
    );

    // AgedReceivables as of the range's end is what is open in staging (the README's A/R
    // aging SQL): invoices, less open credit memos and unapplied payments, plus journal entry
    // lines to A/R (the company has no payment dated later, so none is added back).
    refresh(&w).await;
    let aged = amount(
        &pool,
        "SELECT c.amount::text FROM raw.qb_reports r JOIN raw.qb_report_cells c
           USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'AgedReceivables' AND r.period_start = '2024-03-31'
           AND c.section_group = 'GrandTotal' AND c.column_key = 'total'",
    )
    .await;
    let open = amount(
        &pool,
        &format!("SELECT sum(amount)::text FROM ({OPEN_AR}) x WHERE txn_date <= '2024-03-31'"),
    )
    .await;
    let credits = scalar(
        &pool,
        "SELECT count(*) FROM staging.transactions
         WHERE source_entity IN ('CreditMemo', 'Payment') AND (balance > 0 OR unapplied_amount > 0)",
    )
    .await;
    assert!(credits > 0, "open credits to age");
    assert_eq!(
        aged.parse::<f64>().unwrap(),
        open.parse::<f64>().unwrap(),
        "aged receivables = open A/R in staging"
    );
    let payables = amount(
        &pool,
        "SELECT c.amount::text FROM raw.qb_report_cells c
         WHERE c.report_name = 'AgedPayables' AND c.section_group = 'GrandTotal'
           AND c.column_key = 'total'",
    )
    .await;
    let open_ap = amount(
        &pool,
        "SELECT sum(amount)::text FROM (
             SELECT balance AS amount FROM staging.transactions WHERE source_entity = 'Bill'
             UNION ALL
             SELECT -balance FROM staging.transactions WHERE source_entity = 'VendorCredit'
             UNION ALL
             SELECT -(t.total_amount - coalesce((SELECT sum(l.amount) FROM staging.bill_payment_lines l
                                                 WHERE l.realm_id = t.realm_id AND l.txn_id = t.txn_id), 0))
             FROM staging.transactions t WHERE t.source_entity = 'BillPayment'
             UNION ALL
             SELECT -home_amount FROM staging.general_ledger
             WHERE source_entity = 'JournalEntry' AND account_type = 'Accounts Payable'
         ) x",
    )
    .await;
    assert_eq!(
        payables.parse::<f64>().unwrap(),
        open_ap.parse::<f64>().unwrap(),
        "aged payables = open bills less vendor credits and unapplied bill payments, plus journal entries to A/P"
    );

    // ProfitAndLossDetail: per account, its "Total for" summary is the P&L's amount.
    let diff = scalar(
        &pool,
        "WITH d AS (SELECT account_id, amount FROM raw.qb_report_cells
                     WHERE report_name = 'ProfitAndLossDetail' AND row_kind = 'summary'
                       AND label LIKE 'Total for %' AND column_key = 'subt_nat_amount'),
              p AS (SELECT account_id, amount FROM raw.qb_report_cells
                     WHERE report_name = 'ProfitAndLoss' AND row_kind = 'data'
                       AND account_id IS NOT NULL AND amount IS NOT NULL)
         SELECT count(*) FROM d FULL JOIN p USING (account_id)
         WHERE d.amount IS DISTINCT FROM p.amount",
    )
    .await;
    let accounts = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_report_cells WHERE report_name = 'ProfitAndLossDetail'
           AND row_kind = 'summary' AND label LIKE 'Total for %' AND column_key = 'subt_nat_amount'",
    )
    .await;
    assert!(accounts > 0);
    assert_eq!(diff, 0, "P&L detail per account = P&L");

    // CashFlow: the net cash increase of the quarter is the change of the bank accounts'
    // balances. Their balance at the end is the quarter's trial balance; a trial balance of
    // the day before the start (loaded now) gives the one at the beginning.
    w.run(&[
        "reports",
        "TrialBalance",
        "--start",
        "2023-12-31",
        "--end",
        "2023-12-31",
    ])
    .await
    .assert_code(0);
    let bank_balance = |start: &str| {
        format!(
            "SELECT coalesce(sum(CASE WHEN c.column_key = 'debt_amt' THEN c.amount ELSE -c.amount END), 0)::text
             FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
             JOIN raw.qb_accounts a ON a.realm_id = c.realm_id AND a.id = c.account_id
             WHERE r.report_name = 'TrialBalance' AND r.period_start = '{start}'
               AND c.row_kind = 'data' AND c.amount IS NOT NULL
               AND a.payload->>'AccountType' = 'Bank'"
        )
    };
    let before: f64 = amount(&pool, &bank_balance("2023-12-31"))
        .await
        .parse()
        .unwrap();
    let after: f64 = amount(&pool, &bank_balance("2024-01-01"))
        .await
        .parse()
        .unwrap();
    let increase: f64 = amount(
        &pool,
        "SELECT amount::text FROM raw.qb_report_cells
         WHERE report_name = 'CashFlow' AND section_group = 'CashIncrease'",
    )
    .await
    .parse()
    .unwrap();
    assert!(
        (increase - (after - before)).abs() < 0.005,
        "{increase} vs {after} - {before}"
    );
    assert_ne!(increase, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_qbo_refuses_fails_the_command_with_its_fault() {
    let w = World::new(small_company()).await;
    let cash = |name: &'static str| {
        [
            "reports",
            name,
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
            "--accounting-method",
            "cash",
        ]
    };
    // The sandbox computes a cash-basis P&L, and no cash-basis balance sheet.
    w.run(&cash("ProfitAndLoss")).await.assert_code(0);
    let pool = w.db.pool().await;
    let basis = scalar(
        &pool,
        "SELECT count(*) FROM raw.qb_reports WHERE accounting_method = 'Cash'
         AND payload->'Header'->>'ReportBasis' = 'Cash'",
    )
    .await;
    assert_eq!(basis, 1);
    let out = w.run(&cash("BalanceSheet")).await;
    out.assert_code(1);
    assert!(out.stderr.contains("accounting_method"), "{}", out.stderr);
    let bad = w
        .run(&[
            "reports",
            "CashFlowish",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ])
        .await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("unknown report"), "{}", bad.stderr);
    // An as-of report QBO finds too large cannot be split: the command fails and says so.
    w.faults(Faults {
        report_max_cells: 1,
        ..Faults::default()
    });
    let aged = w
        .run(&[
            "reports",
            "AgedReceivables",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
        ])
        .await;
    aged.assert_code(1);
    assert!(
        aged.stderr.contains("as of 2024-01-31 is too large"),
        "{}",
        aged.stderr
    );
}

/// A company whose records were last updated 20 to 2 days ago: inside CDC's 30 days, so a
/// `qbo sync` sees an edit.
fn recent_company() -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices: 60,
        customers: 20,
        items: 10,
        data_start: today - Duration::days(20),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    }
}

/// An invoice's first item line made 100.00 larger (and its total), as a user edit now.
fn edit_invoice(w: &World) -> (String, String, String) {
    let mut inv: Value = w
        .sandbox
        .records("Invoice")
        .into_iter()
        .find(|r| {
            r["Line"][0]["DetailType"] == "SalesItemLineDetail"
                && r["Line"][0]["SalesItemLineDetail"]["ItemAccountRef"]["value"].is_string()
        })
        .expect("an invoice whose first line sells an item");
    let line = &mut inv["Line"][0];
    line["Amount"] = json!(line["Amount"].as_f64().unwrap() + 100.0);
    let account = line["SalesItemLineDetail"]["ItemAccountRef"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    inv["TotalAmt"] = json!(inv["TotalAmt"].as_f64().unwrap() + 100.0);
    inv["Balance"] = json!(inv["Balance"].as_f64().unwrap() + 100.0);
    let token: u64 = inv["SyncToken"].as_str().unwrap().parse().unwrap();
    inv["SyncToken"] = json!((token + 1).to_string());
    inv["MetaData"]["LastUpdatedTime"] = json!(Utc::now().to_rfc3339());
    let month = inv["TxnDate"].as_str().unwrap()[..7].to_string();
    let id = inv["Id"].as_str().unwrap().to_string();
    w.sandbox.put_record("Invoice", inv);
    (id, month, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tie_out_matches_reports_an_edit_and_matches_again_after_a_sync() {
    let w = World::new(recent_company()).await;
    let today = Utc::now().date_naive();
    let start = (today - Duration::days(21)).to_string();
    let end = today.to_string();
    w.backfill("all", &start, &end, &["--concurrency", "4"])
        .await
        .assert_code(0);
    refresh(&w).await;
    let tie_out = ["verify", "--tie-out", "--start", &start, "--end", &end];

    let out = w.run(&tie_out).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
    assert!(
        out.stdout.contains("MATCH") && out.stdout.contains("ProfitAndLoss"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(" 0 differ"), "{}", out.stdout);

    let (_, month, account) = edit_invoice(&w);
    let out = w.run(&tie_out).await;
    out.assert_code(1);
    let expected = format!("{month} ProfitAndLoss account {account} ");
    assert!(
        out.stdout.contains(&expected),
        "names {expected}: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(staging - qbo -100.00)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("DIFF  {month} TrialBalance")),
        "{}",
        out.stdout
    );

    w.run(&["sync", "invoices"]).await.assert_code(0);
    refresh(&w).await;
    let out = w.run(&tie_out).await;
    out.assert_code(0);
    assert!(!out.stdout.contains("DIFF"), "{}", out.stdout);
}

/// QBO's net income summed over the stored ProfitAndLoss pieces, in cents.
async fn stored_net_income(pool: &PgPool) -> i64 {
    let s: Option<String> = sqlx::query_scalar(
        "SELECT (sum(c.amount) * 100)::bigint::text
         FROM raw.qb_reports r JOIN raw.qb_report_cells c USING (realm_id, report_name, params_hash)
         WHERE r.report_name = 'ProfitAndLoss' AND c.section_group = 'NetIncome'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    s.map_or(0, |s| s.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refreshes_the_recent_months_of_the_chosen_reports() {
    let w = World::new(recent_company()).await;
    let today = Utc::now().date_naive();
    let since = (today - Duration::days(21)).to_string();
    let sync = [
        "sync",
        "invoices",
        "--since",
        &since,
        "--reports",
        "ProfitAndLoss,AgedReceivables",
        "--report-months",
        "2",
    ];
    let out = w.run(&sync).await;
    out.assert_code(0);
    let (start, end) = qbo::reports::recent(today, 2);
    for name in ["ProfitAndLoss", "AgedReceivables"] {
        assert!(
            out.stdout
                .contains(&format!("{name}: 2 pieces loaded (0 split as too large)")),
            "{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains(&format!("({start}..{end})")),
        "{}",
        out.stdout
    );
    let pool = w.db.pool().await;
    let pieces: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT report_name, period_start::text, period_end::text FROM raw.qb_reports
         ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let month_end = qbo::reports::last_of_month(start).to_string();
    let first_of_this = (qbo::reports::last_of_month(start) + Duration::days(1)).to_string();
    assert_eq!(
        pieces,
        [
            (
                "AgedReceivables".into(),
                month_end.clone(),
                month_end.clone()
            ),
            (
                "AgedReceivables".into(),
                today.to_string(),
                today.to_string()
            ),
            ("ProfitAndLoss".into(), start.to_string(), month_end),
            ("ProfitAndLoss".into(), first_of_this, today.to_string()),
        ]
    );
    let before = stored_net_income(&pool).await;

    // An edit in QBO: the next sync reloads the months, and QBO's P&L moves with it.
    edit_invoice(&w);
    let out = w
        .run(
            &sync[..2]
                .iter()
                .chain(&sync[4..])
                .copied()
                .collect::<Vec<_>>(),
        )
        .await;
    out.assert_code(0);
    assert_eq!(stored_net_income(&pool).await, before + 10_000);
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM raw.qb_reports").await,
        4,
        "reloaded months replace the stored ones"
    );

    // A report QBO refuses fails the sync (exit 1) after the entities synced.
    w.faults(Faults {
        report_max_cells: 1,
        ..Faults::default()
    });
    let out = w
        .run(&["sync", "invoices", "--reports", "AgedReceivables"])
        .await;
    out.assert_code(1);
    assert!(out.stdout.contains("invoices: sync run"), "{}", out.stdout);
    assert!(out.stderr.contains("too large"), "{}", out.stderr);
}
