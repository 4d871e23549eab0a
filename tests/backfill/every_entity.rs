//! Every registered entity round-trips: `qbo backfill all` lands exactly the sandbox's
//! records, inactive names and the entities QBO serves only whole included.

use std::collections::BTreeMap;

use qbo::entities::ENTITIES;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_all_lands_every_entity_exactly() {
    let w = World::new(small_company()).await;
    // Monthly windows keep `all` (36 entities) well inside QBO's 500 requests a minute.
    let run = w
        .backfill(
            "all",
            "2024-01-01",
            "2024-03-31",
            &["--chunk-days", "31", "--concurrency", "4"],
        )
        .await;
    run.assert_code(0);
    for e in ENTITIES {
        assert!(
            run.stdout.contains(&format!("{}: run", e.cli_name)),
            "{}: {}",
            e.cli_name,
            run.stdout
        );
        assert!(!w.sandbox.records(e.qbo_name).is_empty(), "{e} is served");
        w.assert_payloads_match_sandbox(e.qbo_name, e.table).await;
    }
    w.assert_raw_matches_sandbox().await;

    let pool = w.db.pool().await;
    // QBO hides inactive names unless asked; every name list's inactive members landed.
    for e in ENTITIES.iter().filter(|e| e.name_list) {
        let inactive: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE payload->>'Active' = 'false'",
            e.table
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(inactive > 0, "{}: inactive records are loaded", e.table);
    }

    // Whole entities: one chunk each, whatever --chunk-days says, loaded as counted.
    let chunks: BTreeMap<String, (i64, i64, i64)> = sqlx::query_as::<_, (String, i64, i64, i64)>(
        "SELECT entity, count(*), sum(expected_count)::bigint, sum(row_count)::bigint
         FROM ops.backfill_report GROUP BY entity",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(e, n, expected, rows)| (e, (n, expected, rows)))
    .collect();
    for e in ENTITIES {
        let (n, expected, rows) = chunks[e.cli_name];
        let records = w.sandbox.records(e.qbo_name).len() as i64;
        if e.is_whole() {
            assert_eq!((n, expected, rows), (1, records, records), "{}", e.cli_name);
        } else {
            assert_eq!(n, 3, "{}: monthly windows", e.cli_name);
        }
    }
    assert_eq!(chunks["company_info"], (1, 1, 1));
    assert_eq!(chunks["preferences"], (1, 1, 1));

    // Recurring templates keep QBO's wrapper in the raw zone.
    let wrapped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM raw.qb_recurring_transactions
         WHERE payload ? 'Invoice' OR payload ? 'Bill' OR payload ? 'JournalEntry'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        wrapped,
        w.sandbox.records("RecurringTransaction").len() as i64
    );

    // The report and `--help` say that these entities are loaded whole.
    let report = w.run(&["report", "company_info"]).await;
    report.assert_code(0);
    assert!(
        report.stdout.contains("whole entity (no window)"),
        "{}",
        report.stdout
    );
    let help = w.run(&["backfill", "--help"]).await;
    help.assert_code(0);
    assert!(
        help.stdout.contains("loaded whole")
            && ["company_info", "preferences", "recurring_transactions"]
                .iter()
                .all(|e| help.stdout.contains(e)),
        "{}",
        help.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_other_than_invoices_window_by_txn_date() {
    let w = World::new(small_company()).await;
    for entity in ["bills", "journal_entries", "time_activities"] {
        w.backfill(
            entity,
            "2023-12-01",
            "2024-03-31",
            &["--window-field", "txn-date", "--chunk-days", "40"],
        )
        .await
        .assert_code(0);
    }
    let pool = w.db.pool().await;
    let q: String =
        sqlx::query_scalar("SELECT min(request_payload->>'query') FROM raw.qb_journal_entries")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(q.contains("FROM JournalEntry WHERE TxnDate >= '"), "{q}");
    for (qbo_name, table) in [
        ("Bill", "raw.qb_bills"),
        ("JournalEntry", "raw.qb_journal_entries"),
        ("TimeActivity", "raw.qb_time_activities"),
    ] {
        w.assert_raw_matches_sandbox_entity(qbo_name, table).await;
    }
    // A name list has no TxnDate: refused before anything is loaded.
    let vendors = w
        .backfill(
            "vendors",
            "2024-01-01",
            "2024-01-31",
            &["--window-field", "txn-date"],
        )
        .await;
    vendors.assert_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_lists_every_entity_with_its_table() {
    let w = World::new(small_company()).await;
    let json = w.run(&["entities", "--format", "json"]).await;
    json.assert_code(0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.len(), 36);
    assert_eq!(rows.len(), ENTITIES.len());
    for (row, e) in rows.iter().zip(ENTITIES) {
        assert_eq!(row["entity"], e.cli_name);
        assert_eq!(row["qbo_name"], e.qbo_name);
        assert_eq!(row["table"], e.table);
    }
    let whole: Vec<&str> = rows
        .iter()
        .filter(|r| r["windows"] == "whole (no windows)")
        .map(|r| r["qbo_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        whole,
        ["CompanyInfo", "Preferences", "RecurringTransaction"]
    );
    let table = w.run(&["entities"]).await;
    table.assert_code(0);
    for e in ENTITIES {
        assert!(table.stdout.contains(e.table), "{}", table.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loads_every_entity_and_refuses_a_bad_count_before_touching_the_database() {
    let w = World::new(small_company()).await;
    let bad = w.run(&["demo", "--count", "vendors=0"]).await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("Vendor"), "{}", bad.stderr);
    assert!(!w.db.exists().await, "nothing was written");

    let demo = w
        .run(&[
            "demo",
            "--invoices",
            "120",
            "--customers",
            "30",
            "--items",
            "15",
            "--count",
            "journal_entries=7",
        ])
        .await;
    demo.assert_code(0);
    assert!(
        demo.stderr.contains("started the QBO sandbox"),
        "{}",
        demo.stderr
    );
    let pool = w.db.pool().await;
    for e in ENTITIES {
        assert!(
            demo.stdout.contains(&format!("{}: run", e.cli_name)),
            "{}",
            demo.stdout
        );
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", e.table))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(rows > 0, "{} is empty", e.table);
    }
    let journal: i64 = sqlx::query_scalar("SELECT count(*) FROM raw.qb_journal_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(journal, 7, "--count journal_entries=7");
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.backfill_report WHERE status <> 'success'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(failed, 0);
}
