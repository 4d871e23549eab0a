use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_without_cdc_sync_by_windows_and_reconciliation() {
    let w = World::new(recent_company(30)).await;
    let since = days_ago(21);
    let first = w
        .run(&["sync", "time_activities", "company_info", "--since", &since])
        .await;
    first.assert_code(0);
    assert!(
        first.stdout.contains("time_activities: sync run"),
        "{}",
        first.stdout
    );
    assert_synced(&w, "TimeActivity", "raw.qb_time_activities").await;
    assert_synced(&w, "CompanyInfo", "raw.qb_company_info").await;

    let records = w.sandbox.records("TimeActivity");
    assert!(records.len() >= 2, "the sandbox serves time activities");
    let id = |i: usize| records[i]["Id"].as_str().unwrap().to_string();
    w.sandbox.touch_record("TimeActivity", &id(0));
    w.sandbox.delete_record("TimeActivity", &id(1));

    let before = log_len(&w);
    let next = w.run(&["sync", "time_activities", "company_info"]).await;
    next.assert_code(0);
    let log = requests_since(&w, before);
    assert!(
        log.iter().all(|e| e.kind != "cdc"),
        "CDC does not serve TimeActivity and CompanyInfo is reloaded whole: {log:#?}"
    );
    let report = sync_report(&w, "time_activities").await;
    assert_eq!(latest_run_vias(&report).last().unwrap(), "reconcile");
    assert!(latest_run_vias(&report).contains(&"query".to_string()));
    assert_eq!(latest_run_sum(&report, "deleted"), 1);
    assert_eq!(latest_run_sum(&report, "updated"), 1);
    let info = sync_report(&w, "company_info").await;
    assert_eq!(latest_run_vias(&info), ["whole", "reconcile"]);
    assert_synced(&w, "TimeActivity", "raw.qb_time_activities").await;
    assert_synced(&w, "CompanyInfo", "raw.qb_company_info").await;
    assert!(raw_rows(&w, "raw.qb_time_activities").await[&id(1)].deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entity_syncs_and_the_next_sync_batches_cdc() {
    let w = World::new(recent_company(30)).await;
    w.run(&["sync", "all", "--since", &days_ago(21)])
        .await
        .assert_code(0);
    for e in qbo::entities::ENTITIES {
        assert_synced(&w, e.qbo_name, e.table).await;
    }
    let bill = w.sandbox.records("Bill")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.delete_record("Bill", &bill);
    let before = log_len(&w);
    let run = w.run(&["sync"]).await;
    run.assert_code(0);
    let cdc_entities = qbo::entities::ENTITIES
        .iter()
        .filter(|e| e.cdc && !e.is_whole())
        .count();
    let calls = requests_since(&w, before)
        .iter()
        .filter(|e| e.kind == "cdc")
        .count();
    assert_eq!(calls, cdc_entities.div_ceil(10), "10 entities per CDC call");
    for e in qbo::entities::ENTITIES {
        assert_synced(&w, e.qbo_name, e.table).await;
    }
    assert!(raw_rows(&w, "raw.qb_bills").await[&bill].deleted);
}
