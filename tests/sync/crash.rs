use std::time::Duration;

use chrono::Utc;
use qbo::sandbox::Faults;

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

/// Starts `qbo args` and SIGKILLs it once the sandbox has answered `n` more API requests
/// (query or CDC; token refreshes are not counted, and a kill is never aimed at one: a kill
/// between QBO rotating the refresh token and qbo saving it needs `qbo auth login`, which
/// the campaign documents). Returns 1 if the kill landed while qbo ran, 0 if it had ended.
async fn kill_after_requests(w: &World, args: &[&str], n: usize) -> usize {
    let api_requests = |w: &World| {
        w.sandbox
            .stats()
            .request_log
            .iter()
            .filter(|e| e.kind != "token")
            .count()
    };
    let from = api_requests(w);
    let mut child = w.qbo(args).spawn().expect("spawn qbo");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while api_requests(w) < from + n && std::time::Instant::now() < deadline {
        if child.try_wait().expect("poll qbo").is_some() {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = child.start_kill();
    let status = child.wait().await.expect("wait for qbo");
    usize::from(status.code().is_none())
}

/// Starts `qbo args` and SIGKILLs it while the sandbox holds its API request number `n + 1`
/// (query or CDC) unanswered: a kill point reached by an event, not by how fast either side
/// runs. Returns 1 if the kill landed, 0 if qbo ended first (it needed at most `n` requests).
async fn kill_at_request(w: &World, args: &[&str], n: u64) -> usize {
    let before = w.sandbox.stats();
    // The sandbox numbers query and CDC requests together for its every-Nth faults.
    let numbered = before.query_requests + before.cdc_requests;
    w.faults(Faults {
        hang_from_request: numbered + n + 1,
        ..Faults::default()
    });
    let mut child = w.qbo(args).spawn().expect("spawn qbo");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let landed = loop {
        if w.sandbox.stats().hung > before.hung {
            break 1;
        }
        if child.try_wait().expect("poll qbo").is_some() {
            break 0;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "qbo neither reached request {} nor ended",
            n + 1
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = child.start_kill();
    let status = child.wait().await.expect("wait for qbo");
    w.faults(Faults::default());
    landed * usize::from(status.code().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_moves_no_watermark_and_loses_no_change() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let before = invoice_watermark(&w).await;
    let rows_before = raw_rows(&w, "raw.qb_invoices").await;
    change_things(&w, 0);
    let crashed = w
        .run_with(
            &["sync", "invoices"],
            &[("QBO_TEST_FAILPOINT", Some("sync-before-commit"))],
        )
        .await;
    assert_ne!(crashed.code, Some(0), "{crashed:?}");
    assert!(crashed.stderr.contains("failpoint"), "{}", crashed.stderr);
    assert_eq!(
        invoice_watermark(&w).await,
        before,
        "no watermark without its rows"
    );
    assert_eq!(
        raw_rows(&w, "raw.qb_invoices").await,
        rows_before,
        "no row (update, insert or delete mark) without its watermark"
    );

    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert!(invoice_watermark(&w).await > before);
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
    assert_eq!(invoice_watermark(&w).await, None);
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
    let mut held = 0;
    for round in 0..8 {
        change_things(&w, round + 2);
        // Two moments of the sync: while its CDC read is out (after its clock COUNT), every
        // time; and just after the CDC read, while its changes and watermark commit, when
        // the kill is quick enough to land there (a race, so not counted).
        if round % 2 == 0 {
            held += kill_at_request(&w, &["sync", "invoices"], 1).await;
        } else {
            kill_after_requests(&w, &["sync", "invoices"], 2).await;
        }
    }
    assert_eq!(held, 4, "every kill during the CDC read landed");
    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_syncs_killed_at_many_points_lose_nothing() {
    let w = World::new(recent_company(60)).await;
    let since = days_ago(21);
    let mut killed = 0;
    for round in 0..8 {
        change_things(&w, round + 20);
        let args = ["sync", "invoices", "customers", "--since", &since];
        killed += kill_at_request(&w, &args, 1 + 2 * round as u64).await;
    }
    // A round whose sync needs fewer requests than the kill waits for ends on its own (once
    // invoices have a watermark, they take one CDC read instead of their windows).
    eprintln!("first-sync kills landed: {killed} of 8");
    assert!(killed >= 5, "only {killed} of 8 kills landed mid-sync");
    w.run(&["sync", "invoices", "customers", "--since", &since])
        .await
        .assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
}
