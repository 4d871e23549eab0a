//! Queued syncs: `fleet::enqueue_sync` (what `qbo sync --enqueue`, the API's "sync now" and
//! schedules call) records one request per company and selection while it is queued; the
//! status reads say what is queued or running.

use qbo::fleet::{
    self, Enqueue, Requester, SyncOptions, SyncRequest, SyncRequestStatus, SyncSelection,
};
use qbo::store::PgStore;

use crate::common::*;

async fn store(db: &TestDb) -> PgStore {
    PgStore::connect_and_migrate(&db.url.clone().into())
        .await
        .expect("connect and migrate the test database")
}

fn request(realm_id: &str, selection: SyncSelection) -> SyncRequest<'_> {
    SyncRequest {
        realm_id,
        selection,
        options: SyncOptions::default(),
        requested_by: Requester::Cli,
        schedule_id: None,
    }
}

fn one(name: &str) -> SyncSelection {
    SyncSelection::of(&[qbo::entities::find(name).expect("a known entity")])
}

#[tokio::test]
async fn enqueueing_twice_while_queued_returns_the_same_request() {
    let db = TestDb::unborn().await;
    let store = store(&db).await;
    let all = request("1001", SyncSelection::All);
    let first = fleet::enqueue_sync_or_existing(&store, &all).await.unwrap();
    let Enqueue::Created(id) = first else {
        panic!("the first request is new: {first:?}")
    };
    assert_eq!(
        fleet::enqueue_sync_or_existing(&store, &all).await.unwrap(),
        Enqueue::Existing(id)
    );
    assert_eq!(fleet::enqueue_sync(&store, &all).await.unwrap(), id);
    // Another selection, or another company, is another request.
    let invoices = fleet::enqueue_sync(&store, &request("1001", one("invoices")))
        .await
        .unwrap();
    assert_ne!(invoices, id);
    let other = fleet::enqueue_sync(&store, &request("1002", SyncSelection::All))
        .await
        .unwrap();
    assert_ne!(other, id);
    // Selections are compared as sets of entities, in registry order.
    let both = [
        qbo::entities::find("invoices").unwrap(),
        qbo::entities::find("customers").unwrap(),
    ];
    let a = fleet::enqueue_sync(&store, &request("1001", SyncSelection::of(&both)))
        .await
        .unwrap();
    let reversed = [both[1], both[0]];
    let b = fleet::enqueue_sync(&store, &request("1001", SyncSelection::of(&reversed)))
        .await
        .unwrap();
    assert_eq!(a, b);

    let info = fleet::sync_request(&store, id).await.unwrap().unwrap();
    assert_eq!(info.status, SyncRequestStatus::Queued);
    assert_eq!(info.realm_id, "1001");
    assert_eq!(info.entities, vec!["all".to_string()]);
    assert_eq!(info.requested_by, Requester::Cli);
    assert_eq!(
        SyncOptions::from_json(&info.options).unwrap(),
        SyncOptions::default()
    );
    assert!(fleet::sync_request(&store, uuid::Uuid::new_v4())
        .await
        .unwrap()
        .is_none());

    // Queued for the company: `all` overlaps any selection; another company's does not count.
    let going = fleet::sync_in_progress(&store, "1001", &one("vendors"))
        .await
        .unwrap()
        .expect("the queued `all` covers vendors");
    assert_eq!(going.request_id, id);
    assert!(fleet::sync_in_progress(&store, "1003", &SyncSelection::All)
        .await
        .unwrap()
        .is_none());

    // Cancelled while queued: no longer in progress, and a new request is recorded next time.
    assert_eq!(
        fleet::cancel_sync_request(&store, other).await.unwrap(),
        Some(SyncRequestStatus::Cancelled)
    );
    assert!(fleet::sync_in_progress(&store, "1002", &SyncSelection::All)
        .await
        .unwrap()
        .is_none());
    let again = fleet::enqueue_sync(&store, &request("1002", SyncSelection::All))
        .await
        .unwrap();
    assert_ne!(again, other);
    let by_company = fleet::open_syncs_by_company(&store, None).await.unwrap();
    assert_eq!(
        by_company
            .iter()
            .map(|c| (c.realm_id.as_str(), c.queued, c.running))
            .collect::<Vec<_>>(),
        vec![("1001", 3, 0), ("1002", 1, 0)]
    );
}

#[tokio::test]
async fn concurrent_enqueues_record_one_request() {
    let db = TestDb::unborn().await;
    let store = store(&db).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            fleet::enqueue_sync(&store, &request("1001", SyncSelection::All))
                .await
                .unwrap()
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn enqueue_refuses_unknown_companies_and_bad_options() {
    let db = TestDb::unborn().await;
    let store = store(&db).await;
    qbo::companies::add(
        store.pool(),
        "1001",
        qbo::companies::Environment::Sandbox,
        None,
    )
    .await
    .unwrap();
    let err = fleet::enqueue_sync(&store, &request("1002", SyncSelection::All))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("qbo companies add --realm-id 1002"),
        "{err}"
    );
    let mut bad = request("1001", SyncSelection::All);
    bad.options.cdc_batch = 0;
    assert!(fleet::enqueue_sync(&store, &bad).await.is_err());
    fleet::enqueue_sync(&store, &request("1001", SyncSelection::All))
        .await
        .unwrap();
}
