//! The raw zone's rules for deletes and versions, through the library.

use chrono::{DateTime, Duration, Utc};
use qbo::client::RawRecord;
use qbo::entities;
use qbo::store::raw::{self, Deletion, PageMeta};
use qbo::store::PgStore;
use serde_json::{json, value::RawValue, Value};

use crate::common::TestDb;

fn version(id: &str, token: u32, at: DateTime<Utc>) -> RawRecord {
    let doc = json!({"Id": id, "SyncToken": token.to_string(), "MetaData": {"LastUpdatedTime": at.to_rfc3339()}});
    RawRecord {
        id: id.into(),
        sync_token: token.to_string(),
        last_updated: at,
        json: RawValue::from_string(doc.to_string()).unwrap(),
    }
}

struct Fixture {
    store: PgStore,
    _db: TestDb,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::unborn().await;
        let store = PgStore::connect_and_migrate(&db.url.clone().into())
            .await
            .unwrap();
        Fixture { store, _db: db }
    }

    async fn upsert(&self, r: RawRecord) {
        let payload = json!({});
        let mut tx = self.store.pool().begin().await.unwrap();
        raw::upsert_page(&mut tx, invoices(), &meta(&payload), &[r])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    async fn delete(&self, id: &str, at: DateTime<Utc>) -> i64 {
        let payload = json!({});
        let stub = json!({"Id": id, "status": "Deleted"}).to_string();
        let mut tx = self.store.pool().begin().await.unwrap();
        let n = raw::mark_deleted(
            &mut tx,
            invoices(),
            &meta(&payload),
            &[Deletion {
                id,
                deleted_at: at,
                stub: &stub,
            }],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        n
    }

    /// (sync_token, deleted, payload) of one row.
    async fn row(&self, id: &str) -> (String, bool, Value) {
        sqlx::query_as(
            "SELECT sync_token, deleted_at_utc IS NOT NULL, payload FROM raw.qb_invoices WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.store.pool())
        .await
        .unwrap()
    }
}

fn invoices() -> &'static entities::Entity {
    entities::find("invoices").unwrap()
}

fn meta(payload: &Value) -> PageMeta<'_> {
    PageMeta {
        realm_id: "1",
        run_id: uuid::Uuid::nil(),
        window_start: Utc::now(),
        window_end: Utc::now(),
        page_number: 1,
        page_size: 1000,
        request_payload: payload,
        intuit_tid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_decide_between_a_delete_and_a_version() {
    let f = Fixture::new().await;
    let t =
        |m: i64| "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(m);

    f.upsert(version("1", 1, t(10))).await;
    assert_eq!(f.delete("1", t(20)).await, 1);
    let (token, deleted, payload) = f.row("1").await;
    assert!(deleted);
    assert_eq!(
        (token.as_str(), payload["SyncToken"].as_str()),
        ("1", Some("1")),
        "last payload kept"
    );

    // An older version never resurrects it; one between its version and its delete
    // refreshes the kept payload but the row stays deleted.
    f.upsert(version("1", 0, t(5))).await;
    assert_eq!(f.row("1").await.0, "1");
    assert!(f.row("1").await.1);
    f.upsert(version("1", 2, t(15))).await;
    let (token, deleted, _) = f.row("1").await;
    assert_eq!((token.as_str(), deleted), ("2", true));
    // The same delete again changes nothing.
    assert_eq!(f.delete("1", t(20)).await, 0);
    // A newer version (re-created) is live again; a stale delete cannot hide it.
    f.upsert(version("1", 3, t(30))).await;
    assert!(!f.row("1").await.1);
    assert_eq!(f.delete("1", t(25)).await, 0);
    assert!(
        !f.row("1").await.1,
        "a stale delete never hides a newer version"
    );
    assert_eq!(f.delete("1", t(40)).await, 1);
    assert!(f.row("1").await.1);

    // A delete for an id never loaded keeps its stub, deleted; an older version stays out.
    assert_eq!(f.delete("2", t(20)).await, 1);
    let (_, deleted, payload) = f.row("2").await;
    assert!(deleted);
    assert_eq!(payload["status"], "Deleted");
    f.upsert(version("2", 4, t(10))).await;
    assert!(f.row("2").await.1);
    assert_eq!(f.row("2").await.2["status"], "Deleted");
    f.upsert(version("2", 5, t(50))).await;
    assert_eq!(f.row("2").await.0, "5");
    assert!(!f.row("2").await.1);
}
