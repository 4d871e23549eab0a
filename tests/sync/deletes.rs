use chrono::{Duration, Utc};
use serde_json::Value;

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_re_creations_and_short_lived_records_land_as_qbo_has_them() {
    let w = World::new(recent_company(60)).await;
    backfill_recent(&w).await;
    let records = w.sandbox.records("Invoice");
    let id = |i: usize| records[i]["Id"].as_str().unwrap().to_string();
    let (deleted, recreated, edited) = (id(0), id(1), id(2));
    let kept_payload = records[0].clone();

    w.sandbox.delete_record("Invoice", &deleted);
    // Deleted, then re-created with the same Id (a newer version, a later second).
    w.sandbox.delete_record("Invoice", &recreated);
    let mut again = records[1].clone();
    let token: u64 = again["SyncToken"].as_str().unwrap().parse().unwrap();
    let recreated_at = Utc::now() + Duration::seconds(2);
    again["SyncToken"] = Value::String((token + 1).to_string());
    again["MetaData"]["LastUpdatedTime"] =
        Value::String(recreated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
    w.sandbox.put_record("Invoice", again);
    // Created and deleted between two syncs: the raw zone never saw it live.
    w.sandbox
        .put_record("Invoice", new_record(&w, "Invoice", "990002", Utc::now()));
    w.sandbox.delete_record("Invoice", "990002");
    w.sandbox.touch_record("Invoice", &edited);

    let run = w.run(&["sync", "invoices"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("skipped), 2 deleted,"),
        "{}",
        run.stdout
    );
    let raw = raw_rows(&w, "raw.qb_invoices").await;

    let gone = &raw[&deleted];
    assert!(gone.deleted);
    assert_eq!(
        gone.payload, kept_payload,
        "a deleted record keeps its last payload"
    );
    assert!(
        !raw[&recreated].deleted,
        "re-created after its delete: live"
    );
    assert_eq!(raw[&recreated].sync_token, (token + 1).to_string());
    let short = &raw["990002"];
    assert!(short.deleted, "created then deleted lands as a deleted row");
    assert_eq!(
        short.payload["status"], "Deleted",
        "its payload is the delete stub"
    );
    assert!(!raw[&edited].deleted);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;

    let pool = w.db.pool().await;
    let (deleted_at, lut): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) = sqlx::query_as(
        "SELECT deleted_at_utc, last_updated_utc FROM raw.qb_invoices WHERE id = $1",
    )
    .bind(&deleted)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(deleted_at > lut, "deleted_at_utc is when QBO deleted it");
    assert!(deleted_at > Utc::now() - Duration::minutes(5));

    // Deleted a second time (after its re-creation, by the clock): deleted again.
    while Utc::now() < recreated_at + Duration::seconds(1) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    w.sandbox.delete_record("Invoice", &recreated);
    let second = w.run(&["sync", "invoices"]).await;
    second.assert_code(0);
    let raw = raw_rows(&w, "raw.qb_invoices").await;
    assert!(raw[&recreated].deleted);
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices WHERE deleted_at_utc IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live as usize, w.sandbox.records("Invoice").len());
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}

/// QBO never deletes a name: "deleting" a customer makes it inactive with " (deleted)" after
/// its names, and CDC reports it as a change. The raw zone keeps such a record live with
/// `Active=false`; a deleted transaction is still marked deleted. Driven through the
/// sandbox's control API, as another process would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_name_stays_live_and_inactive_while_a_deleted_transaction_is_marked() {
    let w = World::new(recent_company(30)).await;
    backfill_recent(&w).await;
    let active = |entity: &str| {
        w.sandbox
            .records(entity)
            .into_iter()
            .find(|r| r["Active"] == true)
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (customer, item) = (active("Customer"), active("Item"));
    let invoice = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::new();
    for path in [
        format!("delete/Customer/{customer}"),
        format!("delete/Invoice/{invoice}"),
        format!("deactivate/Item/{item}"),
    ] {
        let url = format!("{}/__sandbox/{path}", w.sandbox.api_base_url());
        let r = http.post(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }

    let run = w.run(&["sync", "customers", "invoices", "items"]).await;
    run.assert_code(0);
    let customers = raw_rows(&w, "raw.qb_customers").await;
    let c = &customers[&customer];
    assert!(!c.deleted, "a deleted name stays live in the raw zone");
    assert_eq!(c.payload["Active"], false);
    assert!(
        c.payload["DisplayName"]
            .as_str()
            .unwrap()
            .ends_with(" (deleted)"),
        "{}",
        c.payload
    );
    let items = raw_rows(&w, "raw.qb_items").await;
    assert!(!items[&item].deleted);
    assert_eq!(items[&item].payload["Active"], false);
    let invoices = raw_rows(&w, "raw.qb_invoices").await;
    assert!(
        invoices[&invoice].deleted,
        "a deleted transaction is marked"
    );
    assert_synced(&w, "Customer", "raw.qb_customers").await;
    assert_synced(&w, "Item", "raw.qb_items").await;
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}
