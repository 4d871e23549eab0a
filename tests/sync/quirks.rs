//! QBO's quirks in CDC answers: a Fault inside `QueryResponse` (an error: the watermark stays
//! where it was), one `[{}]` for a multi-entity answer without changes, a numeric `time`.

use chrono::Utc;
use qbo::sandbox::Faults;

use crate::common::World;
use crate::*;

/// Changes of every kind to invoices and customers.
fn change_things(w: &World, round: usize) {
    for qbo_name in ["Invoice", "Customer"] {
        let records = w.sandbox.records(qbo_name);
        let id = |i: usize| records[i]["Id"].as_str().unwrap().to_string();
        w.sandbox.touch_record(qbo_name, &id(round * 2));
        if qbo_name == "Invoice" {
            w.sandbox.delete_record(qbo_name, &id(round * 2 + 1));
        }
    }
    let new_id = format!("97{round:04}");
    w.sandbox
        .put_record("Invoice", new_record(w, "Invoice", &new_id, Utc::now()));
}

fn faults_noted(w: &World, from: usize, note: &str) -> usize {
    requests_since(w, from)
        .iter()
        .filter(|e| e.fault.as_deref() == Some(note))
        .count()
}

/// Before the fix, a CDC answer whose `QueryResponse` held a Fault read as "no changes": the
/// sync exited 0 and moved the watermark past the changes it never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_inside_a_cdc_answer_keeps_the_watermark_and_loses_no_change() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let before = invoice_watermark(&w).await.expect("a watermark");
    change_things(&w, 0);
    let from = log_len(&w);
    // The sync's second request (its CDC read, after the clock) is faulted. The sandbox
    // numbers requests from its start, the backfill's included; the log is asked below
    // which one it was.
    let s = w.sandbox.stats();
    let sent = s.query_requests + s.cdc_requests + s.read_requests + s.batch_requests;
    w.faults(Faults {
        fault_in_query_response_every: (sent + 2) as u32,
        ..Faults::default()
    });
    let failed = w
        .run_with(
            &["sync", "invoices", "customers"],
            &[("QBO_MAX_ATTEMPTS", Some("1"))],
        )
        .await;
    assert!(
        requests_since(&w, from)
            .iter()
            .any(|e| e.kind == "cdc"
                && e.fault.as_deref() == Some("fault_in_query_response_every")),
        "the CDC answer was the faulted one"
    );
    failed.assert_code(1);
    assert_eq!(invoice_watermark(&w).await, Some(before));
    let report = sync_report(&w, "invoices").await;
    let last = report.last().unwrap();
    assert_eq!(
        (&last["status"], &last["read_via"]),
        (&"error".into(), &"cdc".into())
    );
    assert!(
        last["error_message"]
            .as_str()
            .unwrap()
            .contains("QBO server error (HTTP 200)"),
        "{last}"
    );

    // Retried past, with the fault still on: everything lands.
    w.run(&["sync", "invoices", "customers"])
        .await
        .assert_code(0);
    assert!(invoice_watermark(&w).await > Some(before));
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
    assert_synced(&w, "Customer", "raw.qb_customers").await;
}

/// One `{}` for three entities without changes is "no changes" for each of them; a numeric
/// `time` is not trusted, and the watermark then comes from our clock minus the allowed skew,
/// never from the future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_empty_object_and_a_numeric_time_sync_every_change() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    w.faults(Faults {
        cdc_empty_as_one_object: true,
        ..Faults::default()
    });
    let from = log_len(&w);
    let all = ["sync", "invoices", "customers", "items"];
    w.run(&all).await.assert_code(0);
    assert_eq!(faults_noted(&w, from, "cdc_empty_as_one_object"), 1);
    let quiet = invoice_watermark(&w).await.expect("a watermark");

    w.faults(Faults {
        cdc_empty_as_one_object: true,
        numeric_time: true,
        ..Faults::default()
    });
    for round in 1..=2 {
        change_things(&w, round);
        let from = log_len(&w);
        w.run(&all).await.assert_code(0);
        assert!(
            faults_noted(&w, from, "numeric_time") > 0,
            "the sync met a numeric time"
        );
        assert_synced(&w, "Invoice", "raw.qb_invoices").await;
        assert_synced(&w, "Customer", "raw.qb_customers").await;
        assert_synced(&w, "Item", "raw.qb_items").await;
        let watermark = invoice_watermark(&w).await.expect("a watermark");
        assert!(watermark >= quiet && watermark <= Utc::now(), "{watermark}");
    }
}
