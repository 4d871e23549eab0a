//! The queue (`qbo::queue`) through the library, on a real Postgres: concurrent claims,
//! fencing of a claim whose lease was lost, the fair claim across companies, and the state
//! enums against the CHECK constraints that hold the same spellings.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use qbo::chunks::Window;
use qbo::queue::{
    ChunkStatus, ClaimMode, ClaimedChunk, Claimer, PagedVerdict, Progress, Queue, QueueError,
    RunKind, RunStatus,
};
use qbo::store::{NewRun, PgStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::TestDb;

struct Fixture {
    store: PgStore,
    queue: Queue,
    db: TestDb,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::unborn().await;
        let store = PgStore::connect_and_migrate(&db.url.clone().into())
            .await
            .unwrap();
        Fixture {
            queue: Queue::new(store.clone()),
            store,
            db,
        }
    }

    /// A queue on a pool of its own, so each claimer claims on its own connection.
    async fn own_queue(&self) -> Queue {
        Queue::new(
            PgStore::connect(&self.db.url.clone().into(), false)
                .await
                .unwrap(),
        )
    }

    /// A backfill run of `windows` one-day windows for `realm_id`, run in-process.
    async fn run(&self, realm_id: &str, windows: usize) -> Uuid {
        self.new_run(realm_id, windows, false).await
    }

    /// The same, planned for workers (`--enqueue`).
    async fn queued(&self, realm_id: &str, windows: usize) -> Uuid {
        self.new_run(realm_id, windows, true).await
    }

    async fn new_run(&self, realm_id: &str, windows: usize, queued: bool) -> Uuid {
        let day0 = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let windows: Vec<Window> = (0..windows as i64)
            .map(|i| Window {
                start: day0 + chrono::Duration::days(i),
                end: day0 + chrono::Duration::days(i + 1),
            })
            .collect();
        self.store
            .create_run(
                &NewRun {
                    realm_id,
                    entity: "invoices",
                    range_start: day0.date_naive(),
                    range_end: day0.date_naive(),
                    window_field: "last-updated",
                    options: json!({ "queued": queued }),
                    kind: RunKind::Backfill,
                    read_via: "query",
                },
                &windows,
            )
            .await
            .unwrap()
    }

    /// What a worker that stalled past its lease finds: the lease ran out.
    async fn expire_leases(&self, run_id: Uuid) {
        sqlx::query(
            "UPDATE ops.backfill_report SET lease_expires_at = now() - interval '1 second'
             WHERE run_id = $1",
        )
        .bind(run_id)
        .execute(self.store.pool())
        .await
        .unwrap();
    }

    /// (status, attempts, row_count, lease_owner) of one chunk.
    async fn chunk(&self, run_id: Uuid, index: i32) -> (ChunkStatus, i32, i64, Option<String>) {
        sqlx::query_as(
            "SELECT status, attempts, row_count, lease_owner FROM ops.backfill_report
             WHERE run_id = $1 AND chunk_index = $2",
        )
        .bind(run_id)
        .bind(index)
        .fetch_one(self.store.pool())
        .await
        .unwrap()
    }
}

fn claimer(owner: &str) -> Claimer {
    Claimer {
        owner: owner.to_string(),
        invocation: Uuid::new_v4(),
        // Long enough that no lease runs out during a test: expiry is simulated in SQL.
        lease: Duration::from_secs(600),
        cancel: CancellationToken::new(),
    }
}

fn rows(n: i64) -> Progress {
    Progress {
        row_count: n,
        pages: 1,
        ..Progress::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_claimers_claim_every_chunk_exactly_once() {
    let f = Fixture::new().await;
    let run_id = f.run("r1", 300).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let queue = f.own_queue().await;
        let me = claimer(&format!("test:{n}"));
        tasks.spawn(async move {
            // Each claimer holds what it claimed until the end, so a chunk claimed twice
            // would be held twice at once.
            let mut held: Vec<ClaimedChunk> = Vec::new();
            while let Some(c) = queue
                .claim(run_id, ClaimMode::Unfinished, &me)
                .await
                .unwrap()
            {
                held.push(c);
                tokio::task::yield_now().await;
            }
            held
        });
    }
    let mut claims: BTreeMap<i32, usize> = BTreeMap::new();
    let mut all = Vec::new();
    let mut busy_claimers = 0;
    while let Some(held) = tasks.join_next().await {
        let held = held.unwrap();
        busy_claimers += usize::from(!held.is_empty());
        for c in &held {
            *claims.entry(c.index()).or_default() += 1;
        }
        all.extend(held);
    }
    assert_eq!(claims.len(), 300, "every chunk is claimed");
    assert!(
        claims.values().all(|&n| n == 1),
        "no chunk is claimed twice: {:?}",
        claims.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert!(busy_claimers > 1, "the claims were shared between claimers");
    for c in all {
        let index = c.index();
        c.succeed(&rows(i64::from(index))).await.unwrap();
    }
    assert_eq!(
        f.queue.settle_run(run_id).await.unwrap(),
        RunStatus::Success
    );
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT attempts FROM ops.backfill_report WHERE run_id = $1 ORDER BY chunk_index",
    )
    .bind(run_id)
    .fetch_all(f.store.pool())
    .await
    .unwrap();
    assert_eq!(attempts, vec![1; 300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_claimers_across_runs_claim_every_chunk_exactly_once() {
    let f = Fixture::new().await;
    for realm in ["r1", "r2", "r3", "r4"] {
        f.queued(realm, 50).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let queue = f.own_queue().await;
        let me = claimer(&format!("test:{n}"));
        tasks.spawn(async move {
            let mut held: Vec<ClaimedChunk> = Vec::new();
            while let Some(c) = queue.claim_next_any(&me, &[], &[]).await.unwrap() {
                held.push(c);
            }
            held
        });
    }
    let mut claims: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    while let Some(held) = tasks.join_next().await {
        for c in held.unwrap() {
            *claims.entry((c.run_id(), c.index())).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), 200, "every chunk of every run is claimed");
    assert!(
        claims.values().all(|&n| n == 1),
        "no chunk is claimed twice"
    );
}

#[tokio::test]
async fn a_claim_whose_lease_was_lost_writes_nothing_and_the_new_owner_stands() {
    let f = Fixture::new().await;
    let run_id = f.run("r1", 1).await;
    // The same worker name for both: the attempt, not only the owner, fences the writes
    // (a restarted process can reuse a name).
    let stalled = f
        .queue
        .claim(run_id, ClaimMode::Unfinished, &claimer("host:1:0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stalled.attempt(), 1);
    f.expire_leases(run_id).await;
    let owner = f
        .queue
        .claim(run_id, ClaimMode::Unfinished, &claimer("host:1:0"))
        .await
        .unwrap()
        .expect("an expired lease is claimable");
    assert_eq!(owner.attempt(), 2);

    // The stalled worker's page rolls back: its progress is fenced off.
    let mut tx = f.store.pool().begin().await.unwrap();
    let late = stalled.record_progress(&mut tx, &rows(99), None).await;
    assert!(
        matches!(late, Err(QueueError::LeaseLost { .. })),
        "{late:?}"
    );
    drop(tx);

    let mut tx = f.store.pool().begin().await.unwrap();
    owner
        .record_progress(&mut tx, &rows(3), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(f.chunk(run_id, 0).await.2, 3);

    // Nor can it finish (either way) or hand the chunk back.
    let finished = stalled.succeed(&rows(99)).await;
    assert!(
        matches!(finished, Err(QueueError::LeaseLost { .. })),
        "{finished:?}"
    );
    assert_eq!(f.chunk(run_id, 0).await.0, ChunkStatus::Running);

    owner.succeed(&rows(7)).await.unwrap();
    assert_eq!(
        f.chunk(run_id, 0).await,
        (ChunkStatus::Success, 2, 7, Some("host:1:0".to_string()))
    );
}

#[tokio::test]
async fn a_lost_claim_can_neither_fail_park_split_nor_hand_back() {
    let f = Fixture::new().await;
    let run_id = f.run("r1", 1).await;
    let mut stale = Vec::new();
    for _ in 0..4 {
        stale.push(
            f.queue
                .claim(run_id, ClaimMode::Unfinished, &claimer("w"))
                .await
                .unwrap()
                .unwrap(),
        );
        f.expire_leases(run_id).await;
    }
    let owner = f
        .queue
        .claim(run_id, ClaimMode::Unfinished, &claimer("w"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.attempt(), 5);
    let mut stale = stale.into_iter();
    let lost = |r: Result<(), QueueError>| matches!(r, Err(QueueError::LeaseLost { .. }));
    assert!(lost(stale.next().unwrap().fail(&rows(1), "late").await));
    assert!(lost(stale.next().unwrap().park(&rows(1)).await.map(|_| ())));
    assert!(lost(stale.next().unwrap().split(&[], &rows(1)).await));
    assert!(lost(stale.next().unwrap().hand_back().await));
    assert_eq!(
        f.chunk(run_id, 0).await,
        (ChunkStatus::Running, 5, 0, Some("w".to_string()))
    );

    // A parked window whose lease ran out and was claimed again is not settled by the
    // sweep of the invocation that parked it.
    let parked = owner.park(&rows(4)).await.unwrap();
    f.expire_leases(run_id).await;
    let next = f
        .queue
        .claim(run_id, ClaimMode::Unfinished, &claimer("w"))
        .await
        .unwrap()
        .expect("an expired paged window is claimable");
    let settled = f.queue.settle_paged(&parked, &PagedVerdict::Complete).await;
    assert!(matches!(settled, Err(QueueError::LeaseLost { .. })));
    assert_eq!(f.chunk(run_id, 0).await.0, ChunkStatus::Running);
    next.succeed(&rows(5)).await.unwrap();
    assert_eq!(f.chunk(run_id, 0).await.0, ChunkStatus::Success);
}

#[tokio::test]
async fn the_claim_across_runs_serves_the_least_recently_served_company_first() {
    let f = Fixture::new().await;
    // r1's run is older and has more windows; an in-process run (its command's to finish)
    // and a paused company wait.
    f.queued("r1", 4).await;
    f.queued("r2", 2).await;
    f.run("r3", 2).await;
    f.queued("r4", 2).await;
    let me = claimer("worker");
    let exclude = vec!["r4".to_string()];
    let mut order = Vec::new();
    while let Some(c) = f.queue.claim_next_any(&me, &exclude, &[]).await.unwrap() {
        order.push((c.row().realm_id.clone(), c.index()));
        c.succeed(&rows(1)).await.unwrap();
    }
    let realms: Vec<&str> = order.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(realms, ["r1", "r2", "r1", "r2", "r1", "r1"]);
    let r1_windows: Vec<i32> = order
        .iter()
        .filter(|(r, _)| r == "r1")
        .map(|(_, i)| *i)
        .collect();
    assert_eq!(r1_windows, [0, 1, 2, 3], "a company's windows in order");

    // A company served long ago goes before one served just now, whatever its runs' age.
    let r5 = f.queued("r5", 1).await;
    f.queued("r1", 1).await;
    sqlx::query("INSERT INTO ops.realm_service VALUES ('r5', now() - interval '1 hour')")
        .execute(f.store.pool())
        .await
        .unwrap();
    let c = f
        .queue
        .claim_next_any(&me, &exclude, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.run_id(), r5);
    drop(c);

    // The excluded company is served once it is no longer excluded.
    let c = f
        .queue
        .claim_next_any(&me, &[], &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.row().realm_id, "r4", "never served, so first");
}

/// The enums and the CHECK constraints spell the same states.
#[tokio::test]
async fn the_state_enums_match_the_check_constraints() {
    let f = Fixture::new().await;
    let check = |table: &'static str, constraint: &'static str| {
        let pool = f.store.pool().clone();
        async move {
            let def: String = sqlx::query_scalar(
                "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 WHERE t.relname = $1 AND c.conname = $2",
            )
            .bind(table)
            .bind(constraint)
            .fetch_one(&pool)
            .await
            .unwrap();
            // CHECK ((status = ANY (ARRAY['pending'::text, ...]))): the quoted words.
            def.split('\'')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<BTreeSet<String>>()
        }
    };
    let spellings = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        check("backfill_report", "backfill_report_status_check").await,
        spellings(
            &ChunkStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        check("backfill_runs", "backfill_runs_status_check").await,
        spellings(
            &RunStatus::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(
        check("backfill_runs", "backfill_runs_kind_check").await,
        spellings(&RunKind::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>())
    );
}

/// A claim Postgres committed whose answer the dropped connection lost (an outage mid-claim)
/// leaves a chunk `running` under the claimer's own owner, invocation and lease, which the
/// claimer does not know it holds. No claim takes it while the lease runs, but its claimer
/// takes it back through `claim_holding_none` (the engine's and the report loader's claim)
/// once nothing else is claimable: the window is not stranded until a `--resume`. Nobody
/// else takes it back that way.
#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_taken_back_by_its_claimer() {
    let f = Fixture::new().await;
    let run_id = f.run("r1", 3).await;
    let me = claimer("host:1:inv:0");
    let other = Claimer {
        owner: "host:1:inv:1".to_string(),
        ..me.clone()
    };
    // Windows 0 and 2 are done; window 1 was claimed by `me`, but the answer never came.
    sqlx::query(
        "UPDATE ops.backfill_report
            SET status = CASE WHEN chunk_index = 1 THEN 'running' ELSE 'success' END,
                lease_owner = $2, last_invocation = $3, attempts = 1,
                lease_expires_at = now() + interval '10 minutes'
          WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(&me.owner)
    .bind(me.invocation)
    .execute(f.store.pool())
    .await
    .unwrap();

    for who in [&me, &other] {
        assert!(
            f.queue
                .claim(run_id, ClaimMode::Unfinished, who)
                .await
                .unwrap()
                .is_none(),
            "a leased window is no claim's ({})",
            who.owner
        );
    }
    assert!(
        f.queue
            .claim_holding_none(run_id, ClaimMode::Unfinished, &other)
            .await
            .unwrap()
            .is_none(),
        "only its claimer takes a lost claim back"
    );
    let again = f
        .queue
        .claim_holding_none(run_id, ClaimMode::FailedOnly, &me)
        .await
        .unwrap()
        .expect("its own lost claim is taken back, in --retry-failed mode too");
    assert_eq!((again.index(), again.attempt()), (1, 2));
    again.succeed(&rows(4)).await.unwrap();
    assert_eq!(
        f.chunk(run_id, 1).await,
        (ChunkStatus::Success, 2, 4, Some(me.owner.clone()))
    );
    assert_eq!(
        f.queue.settle_run(run_id).await.unwrap(),
        RunStatus::Success
    );
}
