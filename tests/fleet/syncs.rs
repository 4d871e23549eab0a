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

// ---- workers running queued syncs (the real binary, the sandbox over HTTP) ----

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use qbo::sandbox::{Faults, SandboxConfig};
use serde_json::Value;
use tokio::process::Child;
use tokio::time::Instant;

/// `n` companies whose records were last updated 20 to 2 days ago: a first sync from 21
/// days back reads windows, the next ones read CDC.
fn recent_companies(n: usize) -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        companies: n,
        invoices: 40,
        customers: 20,
        items: 10,
        data_start: today - chrono::Duration::days(20),
        data_end: today - chrono::Duration::days(2),
        ..SandboxConfig::default()
    }
}

fn days_ago(n: i64) -> String {
    (Utc::now().date_naive() - chrono::Duration::days(n)).to_string()
}

/// A worker serving every company from the token file, its log in a file of `w.dir`
/// (a pipe nobody reads while it runs would fill and block it).
fn worker(w: &World, name: &str, extra: &[&str]) -> Child {
    let mut args = vec!["worker", "--poll-ms", "50"];
    args.extend_from_slice(extra);
    let log = std::fs::File::create(w.dir.path().join(format!("{name}.log"))).unwrap();
    w.qbo(&args)
        .env_remove("QBO_REALM_ID")
        .env_remove("QBO_REFRESH_TOKEN")
        .stderr(log)
        .spawn()
        .expect("start qbo worker")
}

/// Waits for a worker to end and checks it exited `code`, showing its log if not.
async fn ended(w: &World, name: &str, child: Child, code: i32) -> Run {
    let out = Run::from(child.wait_with_output().await.expect("wait for qbo worker"));
    if out.code != Some(code) {
        let log =
            std::fs::read_to_string(w.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "{name}: exit {:?}, expected {code}\n{}\n--- its last log lines, newest first\n{}",
            out.code,
            out.stdout,
            tail.join("\n")
        );
    }
    out
}

fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let ok = std::process::Command::new("kill")
        .args([name, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {name} {pid}");
}

/// The request ids `qbo sync --enqueue` printed, by realm.
fn request_ids(stdout: &str) -> BTreeMap<String, uuid::Uuid> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("realm ")?;
            let (realm, rest) = rest.split_once(": sync request ")?;
            let id = rest.split_whitespace().next()?;
            Some((realm.to_string(), id.parse().ok()?))
        })
        .collect()
}

/// (status, attempts, runs) of a request.
async fn request_state(pool: &sqlx::PgPool, id: uuid::Uuid) -> (String, i32, usize) {
    let (status, attempts, runs): (String, i32, i32) = sqlx::query_as(
        "SELECT status::text, attempts, cardinality(run_ids) FROM ops.sync_requests
         WHERE request_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    (status, attempts, runs as usize)
}

/// Waits until `cond` holds (a safety net, not a timing claim).
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(300);
    while !cond().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Changes of every kind in company `realm`: an invoice edited, one deleted, a customer
/// created, a bill deleted.
fn change_things(w: &World, realm: &str) {
    let company = w.realm(realm);
    let id = |entity: &str, i: usize| {
        let records = company.records(entity);
        qbo::sandbox::record_body(&records[i % records.len()])["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    company.touch_record("Invoice", &id("Invoice", 0));
    company.delete_record("Invoice", &id("Invoice", 1));
    if !company.records("Bill").is_empty() {
        company.delete_record("Bill", &id("Bill", 0));
    }
    let mut customer = company.records("Customer")[0].clone();
    let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, false);
    customer["Id"] = Value::String("990001".into());
    customer["SyncToken"] = Value::String("0".into());
    customer["MetaData"]["CreateTime"] = Value::String(stamp.clone());
    customer["MetaData"]["LastUpdatedTime"] = Value::String(stamp);
    company.put_record("Customer", customer);
}

/// Company `realm`'s raw zone says what the sandbox says, entity by entity: live rows are
/// exactly its records at their versions, and a record deleted in QBO is marked deleted.
async fn assert_synced(w: &World, realm: &str) {
    assert_entities_synced(
        w,
        realm,
        &qbo::entities::ENTITIES.iter().collect::<Vec<_>>(),
    )
    .await
}

async fn assert_entities_synced(w: &World, realm: &str, entities: &[&qbo::entities::Entity]) {
    let pool = w.db.pool().await;
    for e in entities {
        let expected = w.sandbox_versions_of(realm, e.qbo_name);
        let rows: Vec<(String, String, bool)> = sqlx::query_as(&format!(
            "SELECT id, sync_token, deleted_at_utc IS NOT NULL FROM {} WHERE realm_id = $1",
            e.table
        ))
        .bind(realm)
        .fetch_all(&pool)
        .await
        .unwrap();
        let live: BTreeMap<String, String> = rows
            .iter()
            .filter(|(_, _, deleted)| !deleted)
            .map(|(id, token, _)| (id.clone(), token.clone()))
            .collect();
        assert_eq!(live, expected, "{realm} {}: live ids and versions", e.table);
        let deleted: BTreeMap<&str, bool> =
            rows.iter().map(|(id, _, d)| (id.as_str(), *d)).collect();
        for id in w.realm(realm).deleted_ids(e.qbo_name) {
            if let Some(d) = deleted.get(id.as_str()) {
                assert!(*d, "{realm} {}: {id} is deleted in QBO but live", e.table);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_syncs_of_three_companies_run_once_each_on_two_workers() {
    let w = World::new(recent_companies(3)).await;
    w.import_all_companies().await;
    let realms = w.realm_ids();
    let pool = w.db.pool().await;
    let since = days_ago(21);
    let args = [
        "--idle-exit",
        "--companies-at-once",
        "2",
        "--concurrency",
        "2",
    ];

    // The first sync of each company, queued like any other (it reads windows from --since).
    let first = w
        .run(&[
            "sync",
            "all",
            "--since",
            &since,
            "--enqueue",
            "--all-companies",
        ])
        .await;
    first.assert_code(0);
    let first_ids = request_ids(&first.stdout);
    assert_eq!(first_ids.len(), 3, "{}", first.stdout);
    let (a, b) = (worker(&w, "a1", &args), worker(&w, "b1", &args));
    ended(&w, "a1", a, 0).await;
    ended(&w, "b1", b, 0).await;
    for id in first_ids.values() {
        assert_eq!(request_state(&pool, *id).await.0, "success");
    }

    for realm in &realms {
        change_things(&w, realm);
    }
    // Planning needs no QBO credentials and asks QBO nothing.
    let before: u64 = realms.iter().map(|r| w.realm_stats(r).requests).sum();
    let queued = w
        .run_with(
            &["sync", "all", "--enqueue", "--all-companies"],
            &[
                ("QBO_CLIENT_ID", None),
                ("QBO_CLIENT_SECRET", None),
                ("QBO_REFRESH_TOKEN", None),
            ],
        )
        .await;
    queued.assert_code(0);
    assert!(
        queued.stdout.contains("3 sync requests for 3 companies"),
        "{}",
        queued.stdout
    );
    let after: u64 = realms.iter().map(|r| w.realm_stats(r).requests).sum();
    assert_eq!(before, after, "enqueueing asked QBO something");
    let ids = request_ids(&queued.stdout);
    assert_eq!(
        ids.keys().collect::<Vec<_>>(),
        realms.iter().collect::<Vec<_>>()
    );
    let report = w.run(&["report", "--companies"]).await;
    report.assert_code(0);
    assert!(report.stdout.contains("SYNCS QUEUED"), "{}", report.stdout);

    let (a, b) = (worker(&w, "a2", &args), worker(&w, "b2", &args));
    let (a, b) = (ended(&w, "a2", a, 0).await, ended(&w, "b2", b, 0).await);
    for out in [&a, &b] {
        assert!(
            out.stdout.contains("worker stopped (the queue is empty)"),
            "{}",
            out.stdout
        );
    }
    let entities = qbo::entities::ENTITIES.len();
    for (realm, id) in &ids {
        // Synced once: one attempt, one sync run per entity.
        assert_eq!(
            request_state(&pool, *id).await,
            ("success".to_string(), 1, entities),
            "{realm}"
        );
        let runs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ops.backfill_runs r JOIN ops.sync_requests q
               ON r.run_id = ANY(q.run_ids)
             WHERE q.request_id = $1 AND r.realm_id = $2 AND r.kind = 'sync'",
        )
        .bind(id)
        .bind(realm)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(runs as usize, entities, "{realm}");
        assert_synced(&w, realm).await;
    }
    // Nothing else ran: every request of the fleet ended success, none is left.
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.sync_requests WHERE status <> 'success'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(open, 0);
    let listed = w
        .run_with(&["report", "--sync-requests"], &[("QBO_REALM_ID", None)])
        .await;
    listed.assert_code(0);
    for id in ids.values() {
        assert!(listed.stdout.contains(&id.to_string()), "{}", listed.stdout);
    }
}

/// The entities the kill and drain tests sync (a few, so that they stay short).
const FEW: [&str; 4] = ["invoices", "customers", "items", "bills"];

fn few() -> Vec<&'static qbo::entities::Entity> {
    FEW.iter()
        .map(|e| qbo::entities::find(e).unwrap())
        .collect()
}

/// A company whose sync of [`FEW`] (three weeks, two-day windows) a worker is running.
struct MidSync {
    w: World,
    realm: String,
    pool: sqlx::PgPool,
    /// The sync request.
    id: uuid::Uuid,
    worker: Child,
}

/// Enqueues a sync of [`FEW`] for a company and starts worker `name` (one window at a time)
/// under slow answers (30 ms each; `w.faults(Faults::default())` lifts them), returning once
/// the request is running and a few requests in, so that it is still going when the test
/// stops the worker.
async fn worker_mid_sync(name: &str) -> MidSync {
    let w = World::new(recent_companies(1)).await;
    w.import_all_companies().await;
    let realm = w.realm_ids()[0].clone();
    let pool = w.db.pool().await;
    let mut args = vec!["sync"];
    args.extend(FEW);
    let since = days_ago(21);
    args.extend(["--since", since.as_str(), "--chunk-days", "2", "--enqueue"]);
    args.extend(["--realm-id", realm.as_str()]);
    let queued = w.run(&args).await;
    queued.assert_code(0);
    let id = request_ids(&queued.stdout)[&realm];
    w.faults(Faults {
        latency_ms: 30,
        ..Faults::default()
    });
    let worker = worker(&w, name, &["--concurrency", "1"]);
    let started = w.realm_stats(&realm).requests;
    wait_until("the sync to be running and past a few requests", || async {
        request_state(&pool, id).await.0 == "running"
            && w.realm_stats(&realm).requests >= started + 5
    })
    .await;
    MidSync {
        w,
        realm,
        pool,
        id,
        worker,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_worker_was_killed_is_taken_over_after_its_lease() {
    let MidSync {
        w,
        realm,
        pool,
        id,
        worker: mut doomed,
    } = worker_mid_sync("doomed").await;
    doomed.start_kill().unwrap(); // SIGKILL: the request stays running under its lease
    doomed.wait().await.unwrap();
    assert_eq!(request_state(&pool, id).await.0, "running");

    w.faults(Faults::default());
    let rescuer = worker(&w, "rescuer", &["--idle-exit"]);
    let out = ended(&w, "rescuer", rescuer, 0).await;
    assert!(out.stdout.contains("1 syncs"), "{}", out.stdout);
    let (status, attempts, runs) = request_state(&pool, id).await;
    assert_eq!((status.as_str(), attempts), ("success", 2));
    assert!(runs >= FEW.len(), "{runs} runs");
    // The dead worker's sync runs were closed, not left running.
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_runs WHERE kind = 'sync' AND status = 'running'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(running, 0);
    assert_entities_synced(&w, &realm, &few()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_sync_puts_the_request_back_and_the_next_worker_finishes_it() {
    let MidSync {
        w,
        realm,
        pool,
        id,
        worker: drained,
    } = worker_mid_sync("drained").await;
    signal(&drained, "-TERM");
    let out = ended(&w, "drained", drained, 0).await;
    assert!(
        out.stdout.contains("worker stopped (drained)"),
        "{}",
        out.stdout
    );
    let (status, attempts, _) = request_state(&pool, id).await;
    assert_eq!((status.as_str(), attempts), ("queued", 1));

    w.faults(Faults::default());
    let next = worker(&w, "next", &["--idle-exit"]);
    ended(&w, "next", next, 0).await;
    let (status, attempts, _) = request_state(&pool, id).await;
    assert_eq!((status.as_str(), attempts), ("success", 2));
    assert_entities_synced(&w, &realm, &few()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueueing_twice_on_the_cli_while_queued_adds_one_request() {
    let w = World::new(recent_companies(1)).await;
    let realm = w.realm_ids()[0].clone();
    let args = ["sync", "invoices", "--enqueue", "--realm-id", &realm];
    let first = w.run(&args).await;
    first.assert_code(0);
    let second = w.run(&args).await;
    second.assert_code(0);
    assert!(
        second
            .stdout
            .contains("was already queued for the same entities"),
        "{}",
        second.stdout
    );
    assert_eq!(request_ids(&first.stdout), request_ids(&second.stdout));
    let pool = w.db.pool().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.sync_requests")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Without a company the command says what to give.
    let none = w
        .run_with(&["sync", "--enqueue"], &[("QBO_REALM_ID", None)])
        .await;
    none.assert_code(2);
    assert!(none.stderr.contains("--realm-id"), "{}", none.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_all_companies_in_process_goes_on_past_a_revoked_company_and_exits_3() {
    let w = World::new(recent_companies(3)).await;
    w.import_all_companies().await;
    let realms = w.realm_ids();
    let revoked = realms[1].clone();
    w.revoke(&revoked);
    let out = w
        .run(&["sync", "all", "--since", &days_ago(21), "--all-companies"])
        .await;
    out.assert_code(3);
    assert!(
        out.stdout.contains("3 companies: some need a human"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("needs_reauth"), "{}", out.stderr);
    for realm in realms.iter().filter(|r| **r != revoked) {
        assert_synced(&w, realm).await;
    }
    let pool = w.db.pool().await;
    let status: String =
        sqlx::query_scalar("SELECT status::text FROM ops.companies WHERE realm_id = $1")
            .bind(&revoked)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "needs_reauth");
    let synced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1")
            .bind(&revoked)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(synced, 0);
    // The next night: the needs_reauth company is skipped with a line, still exit 3.
    let again = w.run(&["sync", "all", "--all-companies"]).await;
    again.assert_code(3);
}
