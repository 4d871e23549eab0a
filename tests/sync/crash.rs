use std::time::Duration;

use chrono::Utc;

use crate::common::World;
use crate::*;

/// Changes of every kind, so a lost one would show.
fn change_things(w: &World, round: usize) {
    let records = w.sandbox.records("Invoice");
    let id = |i: usize| {
        records[i % records.len()]["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    w.sandbox.touch_record("Invoice", &id(round * 3));
    w.sandbox.delete_record("Invoice", &id(round * 3 + 1));
    let new_id = format!("98{round:04}");
    w.sandbox
        .put_record("Invoice", new_record(w, "Invoice", &new_id, Utc::now()));
    if round.is_multiple_of(2) {
        w.sandbox.delete_record("Invoice", &new_id);
    }
}

async fn watermark(w: &World) -> Option<chrono::DateTime<Utc>> {
    let pool = w.db.pool().await;
    sqlx::query_scalar("SELECT watermark_utc FROM ops.sync_watermarks WHERE entity = 'invoices'")
        .fetch_optional(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_moves_no_watermark_and_loses_no_change() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let before = watermark(&w).await;
    change_things(&w, 0);
    let crashed = w
        .run_with(
            &["sync", "invoices"],
            &[("QBO_TEST_FAILPOINT", Some("sync-before-commit"))],
        )
        .await;
    assert_ne!(crashed.code, Some(0), "{crashed:?}");
    assert!(crashed.stderr.contains("failpoint"), "{}", crashed.stderr);
    assert_eq!(watermark(&w).await, before, "no watermark without its rows");
    let deleted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices WHERE deleted_at_utc IS NOT NULL")
            .fetch_one(&w.db.pool().await)
            .await
            .unwrap();
    assert_eq!(deleted, 0, "no rows without their watermark");

    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert!(watermark(&w).await > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_that_crashes_before_its_last_commit_starts_over() {
    let w = World::new(recent_company(60)).await;
    let since = days_ago(21);
    let crashed = w
        .run_with(
            &["sync", "invoices", "--since", &since],
            &[("QBO_TEST_FAILPOINT", Some("sync-before-commit"))],
        )
        .await;
    assert_ne!(crashed.code, Some(0), "{crashed:?}");
    assert_eq!(watermark(&w).await, None);
    // Still a first sync: --since is still required.
    w.run(&["sync", "invoices"]).await.assert_code(2);
    change_things(&w, 1);
    w.run(&["sync", "invoices", "--since", &since])
        .await
        .assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_killed_at_many_points_lose_nothing() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    for round in 0..8 {
        change_things(&w, round + 2);
        let mut child = w.qbo(&["sync", "invoices"]).spawn().expect("spawn qbo");
        // Different moments of the sync: starting, reading, committing, done.
        tokio::time::sleep(Duration::from_millis(40 * round as u64)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_syncs_killed_at_many_points_lose_nothing() {
    let w = World::new(recent_company(60)).await;
    let since = days_ago(21);
    for round in 0..8 {
        change_things(&w, round + 20);
        let mut child = w
            .qbo(&["sync", "invoices", "customers", "--since", &since])
            .spawn()
            .expect("spawn qbo");
        tokio::time::sleep(Duration::from_millis(60 * round as u64)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    w.run(&["sync", "invoices", "customers", "--since", &since])
        .await
        .assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
}
