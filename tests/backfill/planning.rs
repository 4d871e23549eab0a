//! Windows planned by count (the default): what a load costs in QBO requests, and that
//! cutting a range by counts keeps every guarantee of calendar windows.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::common::*;
use qbo::sandbox::SandboxConfig;

/// The report rows of one entity's latest run: (start, end, status, expected, rows, passes).
type WindowRow = (DateTime<Utc>, DateTime<Utc>, String, Option<i64>, i64, i32);

async fn windows(w: &World, entity: &str) -> Vec<WindowRow> {
    sqlx::query_as(
        "SELECT window_start_utc, window_end_utc, status, expected_count, row_count, passes
         FROM ops.backfill_report
         WHERE run_id = (SELECT run_id FROM ops.backfill_runs WHERE entity = $1
                         ORDER BY started_at DESC LIMIT 1)
         ORDER BY window_start_utc",
    )
    .bind(entity)
    .fetch_all(&w.db.pool().await)
    .await
    .unwrap()
}

async fn run_requests(w: &World, entity: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT r.run_requests + coalesce(sum(c.requests), 0)
         FROM ops.backfill_runs r LEFT JOIN ops.backfill_report c USING (run_id)
         WHERE r.entity = $1 GROUP BY r.run_id, r.started_at ORDER BY r.started_at DESC LIMIT 1",
    )
    .bind(entity)
    .fetch_one(&w.db.pool().await)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_entity_costs_one_request_and_a_small_common_one_costs_one_page() {
    let w = World::new(SandboxConfig {
        counts: BTreeMap::from([("Budget".to_string(), 0)]),
        ..small_company()
    })
    .await;
    // Ten years, no records: one COUNT(*) proves it, and the report has one window.
    w.backfill("budgets", "2015-01-01", "2024-12-31", &[])
        .await
        .assert_code(0);
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (1, 1),
        "{stats:?}"
    );
    let budgets = windows(&w, "budgets").await;
    assert_eq!(budgets.len(), 1, "{budgets:?}");
    assert_eq!(
        (budgets[0].2.as_str(), budgets[0].3, budgets[0].4),
        ("success", Some(0), 0)
    );
    assert_eq!(run_requests(&w, "budgets").await, 1);

    // A company always has customers: one page of 60 is all of them, so no COUNT(*).
    w.backfill("customers", "2015-01-01", "2024-12-31", &[])
        .await
        .assert_code(0);
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (2, 1),
        "{stats:?}"
    );
    let customers = windows(&w, "customers").await;
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(
        (customers[0].2.as_str(), customers[0].3, customers[0].4),
        ("success", Some(60), 60)
    );
    w.assert_raw_matches_sandbox_entity("Customer", "raw.qb_customers")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_range_is_split_by_count_and_every_boundary_record_loads_once() {
    let w = World::new(small_company()).await;
    // A burst of 120 invoices stamped one second apart, 30 of them sharing one second: the
    // split must cut through it at whole seconds, with records on the cuts.
    let mut template = w.sandbox.records("Invoice")[0].clone();
    let burst = DateTime::parse_from_rfc3339("2024-02-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    for n in 0..150i64 {
        let at = burst + Duration::seconds(n.min(120));
        template["Id"] = json!((800_000 + n).to_string());
        template["MetaData"]["LastUpdatedTime"] = json!(at.to_rfc3339());
        w.sandbox.put_record("Invoice", template.clone());
    }
    let total = w.sandbox.records("Invoice").len() as i64;
    // 20 records per window: the 390 invoices need about 20 windows.
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-03-31",
        &["--page-size", "10", "--window-pages", "2"],
    )
    .await
    .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    // The pieces were counted many to a batch call (30 at most), each item metered.
    let stats = w.sandbox.stats();
    assert!(stats.batch_requests >= 1, "{stats:?}");
    assert!(stats.batch_items >= 18, "{stats:?}");
    assert!(stats.batch_items <= 30 * stats.batch_requests, "{stats:?}");

    let planned = windows(&w, "invoices").await;
    assert!(
        planned.len() >= 18,
        "{} windows: {planned:?}",
        planned.len()
    );
    // The windows tile the range, each holds at most its 20, and together what QBO holds.
    assert_eq!(
        planned[0].0,
        date("2024-01-01").and_hms_opt(0, 0, 0).unwrap().and_utc()
    );
    assert_eq!(
        planned.last().unwrap().1,
        date("2024-04-01").and_hms_opt(0, 0, 0).unwrap().and_utc()
    );
    for pair in planned.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "no gap and no overlap");
    }
    let dense = burst + Duration::seconds(120);
    for (start, end, status, expected, rows, _) in &planned {
        assert_eq!(status, "success", "window at {start}");
        assert_eq!(Some(*rows), *expected, "window at {start}");
        // One second holds 30 records and cannot be cut: only its window may hold more.
        assert!(
            *rows <= 20 || (*start <= dense && dense < *end),
            "window at {start}: {rows}"
        );
    }
    assert_eq!(planned.iter().map(|p| p.4).sum::<i64>(), total);

    // Every record landed in the window its LastUpdatedTime falls in, boundaries included,
    // and some records sat exactly on a cut.
    let pool = w.db.pool().await;
    let (outside, on_a_cut): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT ((payload->'MetaData'->>'LastUpdatedTime')::timestamptz
                                     >= extract_window_start_utc
                                  AND (payload->'MetaData'->>'LastUpdatedTime')::timestamptz
                                     < extract_window_end_utc)),
                count(*) FILTER (WHERE (payload->'MetaData'->>'LastUpdatedTime')::timestamptz
                                     = extract_window_start_utc
                                  AND extract_window_start_utc > '2024-01-01')
         FROM raw.qb_invoices",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outside, 0, "every record is in the window it was read by");
    assert!(on_a_cut > 0, "the test put records on the cuts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_edited_while_planned_windows_page_land_at_their_newest_version() {
    let w = World::new(small_company()).await;
    // Every 5th later page, the sandbox edits the first record of the query's result: an
    // offset pager then skips one record per edit, and the edited record moves to now.
    w.faults(qbo::sandbox::Faults {
        mutate_while_paging_every: 5,
        ..Default::default()
    });
    let today = Utc::now().date_naive().to_string();
    let run = w
        .backfill(
            "invoices",
            "2024-01-01",
            &today,
            &["--page-size", "25", "--window-pages", "4"],
        )
        .await;
    run.assert_code(0);
    assert!(w.sandbox.stats().mutations > 0, "the fault fired");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let planned = windows(&w, "invoices").await;
    assert!(
        planned.iter().any(|p| p.5 > 1),
        "some windows were read again: {planned:?}"
    );
    // The sweep's requests belong to the run, and the report adds up to what QBO saw
    // (QBO meters each COUNT of a batch call as a request).
    let stats = w.sandbox.stats();
    assert_eq!(
        run_requests(&w, "invoices").await,
        (stats.query_requests + stats.batch_items) as i64,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_on_one_count_of_a_split_costs_only_that_window() {
    let w = World::new(small_company()).await;
    // Every 5th COUNT inside a batch call answers with a Fault of its own in a 200 answer.
    w.faults(qbo::sandbox::Faults {
        batch_item_fault_every: 5,
        ..Default::default()
    });
    w.backfill(
        "invoices",
        "2024-01-01",
        "2024-03-31",
        &["--page-size", "10", "--window-pages", "2"],
    )
    .await
    .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let stats = w.sandbox.stats();
    assert!(
        stats.batch_requests > 0 && stats.batch_items > stats.batch_requests,
        "{stats:?}"
    );
    // The windows whose count failed were left uncounted and counted themselves; every
    // other window kept the planner's count.
    let (uncounted, counted, bad): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE planned_count IS NULL),
                count(*) FILTER (WHERE planned_count IS NOT NULL),
                count(*) FILTER (WHERE status <> 'success')
         FROM ops.backfill_report",
    )
    .fetch_one(&w.db.pool().await)
    .await
    .unwrap();
    assert_eq!(bad, 0);
    assert!(
        uncounted > 0 && counted > uncounted,
        "{uncounted} uncounted, {counted} counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_common_entity_of_a_few_pages_costs_a_first_page_a_count_its_pages_and_one_sweep() {
    let w = World::new(SandboxConfig {
        invoices: 1500,
        ..small_company()
    })
    .await;
    w.backfill("invoices", "2015-01-01", "2024-12-31", &[])
        .await
        .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    // The first page (full, so not all of it), the COUNT says one window holds it all, the
    // window's two pages (its pass starts after the count, see
    // a_record_deleted_between_the_first_page_and_the_count_does_not_hide_a_skip) and the
    // sweep that proves nothing moved.
    let stats = w.sandbox.stats();
    assert_eq!(
        (
            stats.query_requests,
            stats.count_requests,
            stats.batch_items
        ),
        (5, 1, 0),
        "{stats:?}"
    );
    let invoices = windows(&w, "invoices").await;
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    assert_eq!(
        (
            invoices[0].2.as_str(),
            invoices[0].3,
            invoices[0].4,
            invoices[0].5
        ),
        ("success", Some(1500), 1500, 1)
    );
    assert_eq!(run_requests(&w, "invoices").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_that_fills_whole_pages_spares_the_empty_page_after_them() {
    let w = World::new(SandboxConfig {
        customers: 1000,
        ..small_company()
    })
    .await;
    w.backfill("customers", "2015-01-01", "2024-12-31", &[])
        .await
        .assert_code(0);
    w.assert_raw_matches_sandbox_entity("Customer", "raw.qb_customers")
        .await;
    // A full first page, then COUNT(*) = 1000, then the window's one page (read after the
    // count, which it must hold): one snapshot, so neither the empty page after it nor a
    // sweep is needed.
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (3, 1),
        "{stats:?}"
    );
    let customers = windows(&w, "customers").await;
    assert_eq!(
        (customers[0].2.as_str(), customers[0].3, customers[0].4),
        ("success", Some(1000), 1000)
    );
}

/// Every invoice the sandbox holds that raw.qb_invoices lacks.
async fn invoices_missing_from_raw(w: &World) -> Vec<String> {
    let raw = w.raw_versions("raw.qb_invoices").await;
    w.sandbox_versions("Invoice")
        .into_keys()
        .filter(|id| !raw.contains_key(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_skipped_by_a_delete_while_paging_is_not_excused_by_a_change_elsewhere() {
    let w = World::new(small_company()).await;
    // The first page (full), the COUNT (240), the window's first page, then its second is
    // held while the oldest invoice (on the first page) is deleted: every later offset slides
    // by one, so the pager skips the record that slid onto the first page. Meanwhile an
    // invoice outside the range is created, which the run's sweep sees and no window read.
    w.faults(qbo::sandbox::Faults {
        hang_from_request: 4,
        ..Default::default()
    });
    let child = w
        .qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--page-size",
            "100",
            "--concurrency",
            "1",
        ])
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.sandbox.stats().hung == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (4, 1),
        "the second page of the window's pass is held: {stats:?}"
    );
    let mut invoices = w.sandbox.records("Invoice");
    let stamp = |r: &serde_json::Value| {
        let r = qbo::sandbox::record_body(r);
        (
            r["MetaData"]["LastUpdatedTime"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            r["Id"].as_str().unwrap().parse::<u64>().unwrap(),
        )
    };
    invoices.sort_by_key(stamp);
    let oldest = stamp(&invoices[0]).1.to_string();
    w.sandbox.delete_record("Invoice", &oldest);
    let mut elsewhere = invoices[1].clone();
    elsewhere["Id"] = json!("900001");
    elsewhere["MetaData"]["LastUpdatedTime"] = json!(Utc::now().to_rfc3339());
    w.sandbox.put_record("Invoice", elsewhere);
    w.faults(qbo::sandbox::Faults::default());
    let run = Run::from(child.wait_with_output().await.unwrap());
    run.assert_code(0);
    let missing = invoices_missing_from_raw(&w).await;
    assert!(missing.is_empty(), "skipped and never read: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_loads_every_window_a_failed_window_splits_into() {
    let w = World::new(small_company()).await;
    // The run's one window fails before it is counted, so it is split only when retried.
    w.faults(qbo::sandbox::Faults {
        fail_window_containing: Some("2024-02-15T00:00:00Z".into()),
        ..Default::default()
    });
    let args = ["--page-size", "10", "--window-pages", "2"];
    let first = w
        .backfill("invoices", "2024-01-01", "2024-03-31", &args)
        .await;
    assert_ne!(first.code, Some(0), "{first:?}");
    assert_eq!(w.chunk_states("invoices").await, vec![("error".into(), 1)]);
    w.faults(qbo::sandbox::Faults::default());
    let mut retry_args = vec!["backfill", "invoices", "--retry-failed"];
    retry_args.extend(args);
    w.run(&retry_args).await.assert_code(0);
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let planned = windows(&w, "invoices").await;
    assert!(planned.len() > 1, "{planned:?}");
    assert!(planned.iter().all(|p| p.2 == "success"), "{planned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_run_keeps_its_calendar_windows_when_retried_without_chunk_days() {
    let w = World::new(small_company()).await;
    w.faults(qbo::sandbox::Faults {
        fail_window_containing: Some("2024-02-15T00:00:00Z".into()),
        ..Default::default()
    });
    let first = w
        .backfill(
            "invoices",
            "2024-01-01",
            "2024-03-31",
            &["--chunk-days", "100", "--page-size", "10"],
        )
        .await;
    assert_ne!(first.code, Some(0), "{first:?}");
    assert_eq!(w.chunk_states("invoices").await, vec![("error".into(), 1)]);
    w.faults(qbo::sandbox::Faults::default());
    // The run was planned by the calendar: its window stays whole, whatever the default
    // planning of a new run would do with 24 pages.
    w.run(&[
        "backfill",
        "invoices",
        "--retry-failed",
        "--page-size",
        "10",
    ])
    .await
    .assert_code(0);
    assert_eq!(
        w.chunk_states("invoices").await,
        vec![("success".into(), 2)]
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_deleted_between_the_first_page_and_the_count_does_not_hide_a_skip() {
    let w = World::new(small_company()).await;
    // The first page (full), then the COUNT is held while the oldest invoice (on that page)
    // is deleted: the count no longer includes it, every later offset slides by one, and
    // the record that slid onto the first page is never on a page that is read.
    w.faults(qbo::sandbox::Faults {
        hang_from_request: 2,
        ..Default::default()
    });
    let child = w
        .qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            "2024-03-31",
            "--page-size",
            "100",
            "--concurrency",
            "1",
        ])
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.sandbox.stats().hung == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (2, 1),
        "the COUNT is held: {stats:?}"
    );
    let oldest = w
        .sandbox
        .records("Invoice")
        .iter()
        .map(|r| {
            let r = qbo::sandbox::record_body(r);
            (
                r["MetaData"]["LastUpdatedTime"]
                    .as_str()
                    .unwrap()
                    .parse::<DateTime<Utc>>()
                    .unwrap(),
                r["Id"].as_str().unwrap().parse::<u64>().unwrap(),
            )
        })
        .min()
        .unwrap()
        .1;
    w.sandbox.delete_record("Invoice", &oldest.to_string());
    w.faults(qbo::sandbox::Faults::default());
    let run = Run::from(child.wait_with_output().await.unwrap());
    run.assert_code(0);
    let missing = invoices_missing_from_raw(&w).await;
    assert!(missing.is_empty(), "skipped and never read: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_date_window_reads_records_that_arrived_after_it_was_planned() {
    // --window-field txn-date: a record entered today can fall in any window, and no sync
    // watermark covers a txn-date backfill, so a window must read what it holds when read,
    // not stop at the count its planner took before.
    let args = [
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--window-field",
        "txn-date",
        "--page-size",
        "10",
        "--window-pages",
        "2",
        "--concurrency",
        "1",
    ];
    // The same company loaded once to learn how many requests the planning takes: the
    // first page, the COUNT and the batch calls of the split.
    let dry = World::new(small_company()).await;
    dry.run(&args).await.assert_code(0);
    let planning = 2 + dry.sandbox.stats().batch_requests;
    drop(dry);

    let w = World::new(small_company()).await;
    w.faults(qbo::sandbox::Faults {
        hang_from_request: planning + 1,
        ..Default::default()
    });
    let child = w.qbo(&args).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.sandbox.stats().hung == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The first window is planned and about to be read: 15 invoices dated on its first day
    // are entered now.
    let template = w.sandbox.records("Invoice")[0].clone();
    let entered = Utc::now();
    for n in 0..15 {
        let mut r = template.clone();
        r["Id"] = json!((900_000 + n).to_string());
        r["TxnDate"] = json!("2024-01-01");
        r["MetaData"]["LastUpdatedTime"] = json!(entered.to_rfc3339());
        w.sandbox.put_record("Invoice", r);
    }
    // The window's pass starts over a second later, so its own changed-since sweep does
    // not read them by chance.
    while Utc::now() < entered + Duration::seconds(2) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    w.faults(qbo::sandbox::Faults::default());
    let run = Run::from(child.wait_with_output().await.unwrap());
    run.assert_code(0);
    let missing = invoices_missing_from_raw(&w).await;
    assert!(missing.is_empty(), "never read: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_entering_a_window_that_reaches_today_does_not_excuse_a_skip() {
    let w = World::new(small_company()).await;
    // As above, but the range reaches today, so the invoice created while the window's
    // second page is held lands in the window itself, at its end: the window reads as many
    // records as it was counted with, one of them entered after the count in place of the
    // skipped one.
    w.faults(qbo::sandbox::Faults {
        hang_from_request: 4,
        ..Default::default()
    });
    let child = w
        .qbo(&[
            "backfill",
            "invoices",
            "--start",
            "2024-01-01",
            "--end",
            &Utc::now().date_naive().to_string(),
            "--page-size",
            "100",
            "--concurrency",
            "1",
        ])
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while w.sandbox.stats().hung == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = w.sandbox.stats();
    assert_eq!(
        (stats.query_requests, stats.count_requests),
        (4, 1),
        "the second page of the window's pass is held: {stats:?}"
    );
    // The new invoice is stamped a second after the COUNT, by QBO's whole-second clock.
    let counted = Utc::now();
    while Utc::now().timestamp() <= counted.timestamp() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut invoices = w.sandbox.records("Invoice");
    let stamp = |r: &serde_json::Value| {
        let r = qbo::sandbox::record_body(r);
        (
            r["MetaData"]["LastUpdatedTime"]
                .as_str()
                .unwrap()
                .parse::<DateTime<Utc>>()
                .unwrap(),
            r["Id"].as_str().unwrap().parse::<u64>().unwrap(),
        )
    };
    invoices.sort_by_key(stamp);
    let oldest = stamp(&invoices[0]).1.to_string();
    w.sandbox.delete_record("Invoice", &oldest);
    let mut elsewhere = invoices[1].clone();
    elsewhere["Id"] = json!("900001");
    elsewhere["MetaData"]["LastUpdatedTime"] = json!(Utc::now().to_rfc3339());
    w.sandbox.put_record("Invoice", elsewhere);
    w.faults(qbo::sandbox::Faults::default());
    let run = Run::from(child.wait_with_output().await.unwrap());
    run.assert_code(0);
    let missing = invoices_missing_from_raw(&w).await;
    assert!(missing.is_empty(), "skipped and never read: {missing:?}");
}
