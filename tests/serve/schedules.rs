//! Schedules: each tick fires exactly once across several `qbo serve`s sharing a database, a
//! tick whose previous work is still going is skipped, ticks missed while no instance ran
//! fire once, and `qbo schedule` / `/api/schedules` manage them.
//!
//! Every assertion is on records (ops.schedule_firings, runs, sync requests), polled with
//! generous deadlines: how many ticks land in a given time depends on the machine's load,
//! what each tick produced does not.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;
use crate::harness::Served;

/// Every two seconds (croner takes a sixth field, seconds, first).
const EVERY_2S: &str = "*/2 * * * * *";
const FAST_POLL: (&str, Option<&str>) = ("QBO_SCHEDULER_POLL_MS", Some("100"));
const DEADLINE: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
struct FiringRow {
    tick_at: DateTime<Utc>,
    missed_ticks: i32,
    outcome: String,
    reason: Option<String>,
    run_ids: Vec<Uuid>,
    sync_request_ids: Vec<Uuid>,
    fired_by: String,
}

async fn firings(pool: &PgPool, name: &str) -> Vec<FiringRow> {
    sqlx::query_as(
        "SELECT f.tick_at, f.missed_ticks, f.outcome, f.reason, f.run_ids, f.sync_request_ids,
                f.fired_by
           FROM ops.schedule_firings f JOIN ops.schedules s USING (schedule_id)
          WHERE s.name = $1 ORDER BY f.tick_at",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Polls `firings` until `done` holds, failing with what was there at the deadline.
async fn wait_for(pool: &PgPool, name: &str, what: &str, done: impl Fn(&[FiringRow]) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rows = firings(pool, name).await;
        if done(&rows) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; firings: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(rows: &[FiringRow], outcome: &str) -> usize {
    rows.iter().filter(|f| f.outcome == outcome).count()
}

async fn run_ids(pool: &PgPool) -> HashSet<Uuid> {
    sqlx::query_scalar::<_, Uuid>("SELECT run_id FROM ops.backfill_runs")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// A world whose one company is connected (in `qbo companies`, its token in the file store).
async fn connected_world() -> (World, String) {
    let w = World::new(small_company()).await;
    let realm = w.sandbox.realm_id().to_string();
    w.import_refresh_token(&realm).await.assert_code(0);
    (w, realm)
}

async fn add_schedule(w: &World, args: &[&str]) {
    let mut all = vec!["schedule", "add"];
    all.extend_from_slice(args);
    w.run(&all).await.assert_code(0);
}

/// `qbo schedule add` of a rolling backfill of `entity` over the last `days` days, for one
/// company.
async fn add_backfill(w: &World, name: &str, cron: &str, entity: &str, days: &str, realm: &str) {
    add_schedule(
        w,
        &[
            "--name",
            name,
            "--cron",
            cron,
            "--kind",
            "backfill",
            "--entity",
            entity,
            "--days",
            days,
            "--realm-id",
            realm,
        ],
    )
    .await;
}

/// A connected company with schedule `every-2s`: a one-day rolling backfill of invoices
/// every two seconds. The sandbox's invoices are from 2024, so each run is one empty window,
/// loaded in a moment by any worker.
async fn every_2s_world() -> (World, PgPool) {
    let (w, realm) = connected_world().await;
    add_backfill(&w, "every-2s", EVERY_2S, "invoices", "1", &realm).await;
    let pool = w.db.pool().await;
    (w, pool)
}

/// Two `qbo serve`s, one worker slot each, whose schedulers look every 100 ms.
async fn two_instances(w: &World) -> (Served, Served) {
    let a = Served::start_with(w, &["--workers", "1"], &[FAST_POLL]).await;
    let b = Served::start_with(w, &["--workers", "1"], &[FAST_POLL]).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fire_each_tick_exactly_once() {
    let (w, pool) = every_2s_world().await;
    let (a, b) = two_instances(&w).await;
    wait_for(&pool, "every-2s", "4 ticks fired", |rows| {
        count(rows, "fired") >= 4
    })
    .await;
    assert_eq!(a.terminate().await, Some(0));
    assert_eq!(b.terminate().await, Some(0));

    let rows = firings(&pool, "every-2s").await;
    let ticks: HashSet<_> = rows.iter().map(|f| f.tick_at).collect();
    assert_eq!(ticks.len(), rows.len(), "a tick recorded twice: {rows:#?}");
    let mut fired_runs = Vec::new();
    for f in &rows {
        assert_eq!(
            f.tick_at.timestamp() % 2,
            0,
            "not a tick of the cron: {f:?}"
        );
        assert_eq!(f.tick_at.timestamp_subsec_nanos(), 0, "{f:?}");
        match f.outcome.as_str() {
            // One company, one entity: one run per fired tick.
            "fired" => {
                assert_eq!(f.run_ids.len(), 1, "{f:?}");
                fired_runs.extend(f.run_ids.iter().copied());
            }
            "skipped" => {
                assert!(f.run_ids.is_empty(), "{f:?}");
                assert!(
                    f.reason.as_deref().unwrap_or("").contains("still going"),
                    "{f:?}"
                );
            }
            other => panic!("tick ended {other}: {f:?}"),
        }
    }
    // Every run in the database came from exactly one fired tick, and none twice.
    let distinct: HashSet<_> = fired_runs.iter().copied().collect();
    assert_eq!(distinct.len(), fired_runs.len(), "a run listed twice");
    assert_eq!(run_ids(&pool).await, distinct, "runs vs fired ticks");
    let by: HashSet<_> = rows.iter().map(|f| f.fired_by.as_str()).collect();
    eprintln!(
        "{} ticks ({} fired), claimed by {} instance(s): {by:?}",
        rows.len(),
        count(&rows, "fired"),
        by.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_is_skipped_while_the_previous_ticks_work_is_going() {
    let (w, realm) = connected_world().await;
    // No workers: the sync request the first tick enqueues is held (queued), and so is the
    // backfill run of the other schedule.
    add_schedule(
        &w,
        &[
            "--name",
            "sync-2s",
            "--cron",
            EVERY_2S,
            "--kind",
            "sync",
            "--entity",
            "all",
            "--realm-id",
            &realm,
        ],
    )
    .await;
    add_schedule(
        &w,
        &[
            "--name",
            "backfill-2s",
            "--cron",
            EVERY_2S,
            "--kind",
            "backfill",
            "--days",
            "2",
            "--entity",
            "invoices",
            "--all-companies",
        ],
    )
    .await;
    let pool = w.db.pool().await;
    let served = Served::start_with(&w, &["--workers", "0"], &[FAST_POLL]).await;
    let fired_then_skipped = |rows: &[FiringRow]| {
        rows.first().is_some_and(|f| f.outcome == "fired") && count(rows, "skipped") >= 2
    };
    wait_for(
        &pool,
        "sync-2s",
        "fired, then skipped twice",
        fired_then_skipped,
    )
    .await;
    wait_for(
        &pool,
        "backfill-2s",
        "fired, then skipped twice",
        fired_then_skipped,
    )
    .await;

    // The sync: one request, named by every skip.
    let rows = firings(&pool, "sync-2s").await;
    let requests: Vec<Uuid> = sqlx::query_scalar("SELECT request_id FROM ops.sync_requests")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(requests.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].sync_request_ids, requests);
    let (requested_by, schedule_id_set): (String, bool) =
        sqlx::query_as("SELECT requested_by::text, schedule_id IS NOT NULL FROM ops.sync_requests")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((requested_by.as_str(), schedule_id_set), ("schedule", true));
    for f in rows.iter().skip(1) {
        assert_eq!(f.outcome, "skipped", "{rows:#?}");
        let reason = f.reason.as_deref().unwrap_or("");
        assert!(
            reason.contains("still going") && reason.contains(&requests[0].to_string()),
            "{reason}"
        );
    }
    // The backfill: one run (pending windows), named by every skip.
    let rows = firings(&pool, "backfill-2s").await;
    let runs = run_ids(&pool).await;
    assert_eq!(runs.len(), 1, "{rows:#?}");
    let run = *runs.iter().next().unwrap();
    assert_eq!(rows[0].run_ids, vec![run]);
    for f in rows.iter().skip(1) {
        assert_eq!(f.outcome, "skipped", "{rows:#?}");
        assert!(
            f.reason.as_deref().unwrap_or("").contains(&run.to_string()),
            "{f:?}"
        );
    }

    // The sync request ends (cancelled here, as a worker would finish it): the next tick
    // fires again, a new request.
    sqlx::query("UPDATE ops.sync_requests SET status = 'cancelled'")
        .execute(&pool)
        .await
        .unwrap();
    wait_for(
        &pool,
        "sync-2s",
        "fired again once the sync ended",
        |rows| count(rows, "fired") >= 2,
    )
    .await;
    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM ops.sync_requests")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(requests, 2);
    // The backfill run gets loaded (a worker that exits once the queue is empty): the next
    // backfill tick fires again. (No sync request is left for that worker.)
    w.run(&["schedule", "remove", "sync-2s"])
        .await
        .assert_code(0);
    sqlx::query("UPDATE ops.sync_requests SET status = 'cancelled' WHERE status = 'queued'")
        .execute(&pool)
        .await
        .unwrap();
    w.run(&["worker", "--idle-exit"]).await.assert_code(0);
    wait_for(
        &pool,
        "backfill-2s",
        "fired again once the run ended",
        |rows| count(rows, "fired") >= 2,
    )
    .await;
    assert_eq!(served.terminate().await, Some(0));
    let rows = firings(&pool, "backfill-2s").await;
    let fired: Vec<_> = rows.iter().filter(|f| f.outcome == "fired").collect();
    assert_eq!(
        run_ids(&pool).await,
        fired.iter().flat_map(|f| f.run_ids.clone()).collect(),
        "one run per fired tick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_no_instance_ran_fire_once() {
    let (w, pool) = every_2s_world().await;
    let (a, b) = two_instances(&w).await;
    wait_for(&pool, "every-2s", "a tick fired", |rows| {
        count(rows, "fired") >= 1
    })
    .await;
    assert_eq!(a.terminate().await, Some(0));
    assert_eq!(b.terminate().await, Some(0));
    // What the last ticks enqueued gets loaded, so the tick after the downtime is not
    // skipped for it.
    w.run(&["worker", "--idle-exit"]).await.assert_code(0);
    let before = firings(&pool, "every-2s").await;
    let last = before.last().unwrap().tick_at;

    // Down for several ticks (Postgres's clock decides what is due).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let behind: f64 = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM clock_timestamp() - next_tick_at)::float8
               FROM ops.schedules WHERE name = 'every-2s'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if behind > 7.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let one = Served::start_with(&w, &["--workers", "1"], &[FAST_POLL]).await;
    wait_for(&pool, "every-2s", "a tick after the downtime", |rows| {
        rows.iter()
            .any(|f| f.tick_at > last && f.outcome != "firing")
    })
    .await;
    assert_eq!(one.terminate().await, Some(0));
    let rows = firings(&pool, "every-2s").await;
    let first_after = rows.iter().find(|f| f.tick_at > last).unwrap();
    // The ticks between the last before and the first after were never fired: the first
    // after stands for them all, fired once.
    let gap_ticks = (first_after.tick_at - last).num_seconds() / 2;
    assert!(gap_ticks >= 4, "down for {gap_ticks} ticks only: {rows:#?}");
    assert_eq!(
        i64::from(first_after.missed_ticks),
        gap_ticks - 1,
        "{first_after:?}"
    );
    assert_eq!(first_after.outcome, "fired", "{first_after:?}");
    assert_eq!(first_after.run_ids.len(), 1, "{first_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_managed_from_the_cli_and_the_api_with_clear_errors() {
    let (w, realm) = connected_world().await;

    // CLI: a bad cron expression is bad usage, and says what a good one looks like.
    let bad = w
        .run(&[
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "0 25 * * *",
            "--kind",
            "backfill",
            "--days",
            "3",
            "--all-companies",
        ])
        .await;
    bad.assert_code(2);
    assert!(bad.stderr.contains("bad cron expression"), "{}", bad.stderr);
    assert!(bad.stderr.contains("0 2 * * *"), "{}", bad.stderr);
    let no_days = w
        .run(&[
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "0 2 * * *",
            "--kind",
            "backfill",
            "--all-companies",
        ])
        .await;
    no_days.assert_code(2);
    assert!(no_days.stderr.contains("--days"), "{}", no_days.stderr);
    let unknown = w
        .run(&[
            "schedule",
            "add",
            "--name",
            "x",
            "--cron",
            "0 2 * * *",
            "--kind",
            "sync",
            "--realm-id",
            "123",
        ])
        .await;
    unknown.assert_code(2);
    assert!(
        unknown.stderr.contains("qbo companies add"),
        "{}",
        unknown.stderr
    );
    add_backfill(&w, "nightly", "0 2 * * *", "all", "3", &realm).await;
    let dup = w
        .run(&[
            "schedule",
            "add",
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--kind",
            "sync",
            "--all-companies",
        ])
        .await;
    dup.assert_code(2);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);
    let list = w.run(&["schedule", "list"]).await;
    list.assert_code(0);
    assert!(list.stdout.contains("nightly"), "{}", list.stdout);
    assert!(list.stdout.contains("0 2 * * *"), "{}", list.stdout);
    assert!(list.stdout.contains(" 02:00:00"), "{}", list.stdout);

    // API.
    let served = Served::start_with(
        &w,
        &["--workers", "0"],
        &[("QBO_SERVE_TOKEN", Some("sched-test-token"))],
    )
    .await;
    let (status, body) = served.get_json("/api/schedules").await;
    assert_eq!(status, 200, "{body}");
    let listed = body["schedules"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["name"], "nightly");
    assert_eq!(listed[0]["kind"], "backfill");
    assert_eq!(listed[0]["days"], 3);
    assert_eq!(listed[0]["realm_id"], realm.as_str());
    assert!(listed[0]["next_tick_at"]
        .as_str()
        .unwrap()
        .contains("T02:00:00"));
    assert!(listed[0]["last_firing"].is_null(), "{body}");

    let (status, body) = served
        .post_json(
            "/api/schedules",
            serde_json::json!({"name": "hourly", "cron": "0 * * * *", "kind": "sync",
                               "all_companies": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "hourly");
    assert!(body["realm_id"].is_null(), "{body}");
    for (bad, code, says) in [
        (
            serde_json::json!({"name": "b", "cron": "every hour", "kind": "sync",
                               "all_companies": true}),
            400,
            "bad cron expression",
        ),
        (
            serde_json::json!({"name": "b", "cron": "0 * * * *", "kind": "sync"}),
            400,
            "--all-companies",
        ),
        (
            serde_json::json!({"name": "b", "cron": "0 * * * *", "kind": "sync",
                               "days": 3, "all_companies": true}),
            400,
            "--days is for backfill",
        ),
        (
            serde_json::json!({"name": "b", "cron": "0 * * * *", "kind": "sync",
                               "realm_id": "4242"}),
            404,
            "4242",
        ),
        (
            serde_json::json!({"name": "hourly", "cron": "0 * * * *", "kind": "sync",
                               "all_companies": true}),
            409,
            "already exists",
        ),
        (serde_json::json!({"name": "b"}), 400, "bad schedule"),
    ] {
        let (status, body) = served.post_json("/api/schedules", bad.clone()).await;
        assert_eq!(status, code, "{bad} -> {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{bad} -> {body}");
    }
    let (status, body) = served.get_json("/api/schedules/hourly/firings").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["firings"], serde_json::json!([]));
    let (status, body) = served
        .get_json("/api/schedules/hourly/firings?limit=many")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");
    let (status, body) = served.get_json("/api/schedules/nope/firings").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");

    let delete = |name: &str| {
        served
            .req(reqwest::Method::DELETE, &format!("/api/schedules/{name}"))
            .send()
    };
    let resp = delete("hourly").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = delete("hourly").await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let unauthorized = served
        .http
        .get(served.url("/api/schedules"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    assert_eq!(served.terminate().await, Some(0));

    let removed = w.run(&["schedule", "remove", "nightly"]).await;
    removed.assert_code(0);
    let again = w.run(&["schedule", "remove", "nightly"]).await;
    again.assert_code(2);
    assert!(
        again.stderr.contains("no schedule named"),
        "{}",
        again.stderr
    );
    let list = w.run(&["schedule", "list"]).await;
    assert!(list.stdout.contains("no schedules yet"), "{}", list.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_claimers_of_one_due_tick_claim_it_once() {
    use qbo::schedule::store::{self, Claimed};
    let (w, realm) = connected_world().await;
    add_backfill(&w, "nightly", "0 2 * * *", "all", "3", &realm).await;
    let pool = w.db.pool().await;
    // Due since yesterday's 02:00 (a tick of the cron).
    sqlx::query(
        "UPDATE ops.schedules
            SET next_tick_at = date_trunc('day', now()) - interval '1 day' + interval '2 hours'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let s = store::get(&pool, "nightly").await.unwrap();
    let now = store::now(&pool).await.unwrap();
    let due = qbo::schedule::CronExpr::parse(&s.cron)
        .unwrap()
        .due(s.next_tick_at, now)
        .unwrap()
        .expect("due");
    // Each claimer on a connection of its own, all at once.
    let mut claimers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (s, url) = (s.clone(), w.db.url.clone());
        claimers.spawn(async move {
            let pool = PgPool::connect(&url).await.unwrap();
            store::claim(&pool, &s, &due, &format!("claimer-{i}"))
                .await
                .unwrap()
        });
    }
    let mut won = Vec::new();
    while let Some(claimed) = claimers.join_next().await {
        if let Some(c) = claimed.unwrap() {
            won.push(c);
        }
    }
    assert_eq!(won, vec![Claimed::Fire], "one claimer wins the tick");
    let rows = firings(&pool, "nightly").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].tick_at, due.tick_at);
    assert_eq!(rows[0].outcome, "firing");
    let next: DateTime<Utc> =
        sqlx::query_scalar("SELECT next_tick_at FROM ops.schedules WHERE name = 'nightly'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(next, due.next_tick_at);
    assert!(next > now, "the next tick is in the future");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_left_midway_holds_the_next_ticks_then_is_marked_failed() {
    use qbo::schedule::store::{self, Claimed};
    let (w, realm) = connected_world().await;
    add_backfill(&w, "nightly", "0 2 * * *", "all", "3", &realm).await;
    let pool = w.db.pool().await;
    // An instance claimed the tick of two days ago and stopped before it finished.
    let make_due = "UPDATE ops.schedules
                       SET next_tick_at = date_trunc('day', now()) - interval '1 day'
                                          + interval '2 hours'";
    sqlx::query(
        "INSERT INTO ops.schedule_firings (schedule_id, tick_at, outcome, fired_by, fired_at)
         SELECT schedule_id, date_trunc('day', now()) - interval '2 days' + interval '2 hours',
                'firing', 'gone:1', now() - interval '1 minute'
           FROM ops.schedules",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(make_due).execute(&pool).await.unwrap();
    let claim = || async {
        let s = store::get(&pool, "nightly").await.unwrap();
        let now = store::now(&pool).await.unwrap();
        let due = qbo::schedule::CronExpr::parse(&s.cron)
            .unwrap()
            .due(s.next_tick_at, now)
            .unwrap()
            .expect("due");
        store::claim(&pool, &s, &due, "test:1").await.unwrap()
    };
    // A minute old: it may still be enqueueing, so the next tick is skipped.
    match claim().await {
        Some(Claimed::Skipped(reason)) => {
            assert!(reason.contains("gone:1 is still enqueueing"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Past ten minutes: it is taken for dead, marked failed, and the next tick fires.
    sqlx::query("UPDATE ops.schedule_firings SET fired_at = now() - interval '11 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ops.schedule_firings WHERE outcome = 'skipped'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(make_due).execute(&pool).await.unwrap();
    assert_eq!(claim().await, Some(Claimed::Fire));
    let rows = firings(&pool, "nightly").await;
    assert_eq!(rows[0].outcome, "failed", "{rows:#?}");
    assert!(
        rows[0].reason.as_deref().unwrap_or("").contains("gone:1"),
        "{rows:#?}"
    );
    assert_eq!(rows[1].outcome, "firing", "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_firings_are_pruned_but_each_schedules_latest_and_last_fired_stay() {
    use qbo::schedule::store;
    let (w, realm) = connected_world().await;
    for (name, cron) in [("fast", "*/5 * * * * *"), ("daily", "0 2 * * *")] {
        add_backfill(&w, name, cron, "all", "1", &realm).await;
    }
    let pool = w.db.pool().await;
    // fast: 1,500 ticks 5 s apart, all skipped but the 1,201st newest (past the newest 1,000).
    sqlx::query(
        "INSERT INTO ops.schedule_firings (schedule_id, tick_at, outcome, fired_by, fired_at)
         SELECT s.schedule_id, now() - make_interval(secs => 5 * i),
                CASE WHEN i = 1200 THEN 'fired' ELSE 'skipped' END, 'test:1', now()
           FROM ops.schedules s, generate_series(0, 1499) i WHERE s.name = 'fast'",
    )
    .execute(&pool)
    .await
    .unwrap();
    // daily: 40 days of fired ticks, and one left `firing` 35 days ago.
    sqlx::query(
        "INSERT INTO ops.schedule_firings (schedule_id, tick_at, outcome, fired_by, fired_at)
         SELECT s.schedule_id, now() - make_interval(days => i) - interval '1 minute',
                CASE WHEN i = 35 THEN 'firing' ELSE 'fired' END, 'test:1', now()
           FROM ops.schedules s, generate_series(0, 39) i WHERE s.name = 'daily'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before_fast = firings(&pool, "fast").await;
    let before_daily = firings(&pool, "daily").await;

    let deleted = store::prune_firings(
        &pool,
        store::FIRINGS_KEPT_DAYS,
        store::FIRINGS_KEPT_PER_SCHEDULE,
    )
    .await
    .unwrap();

    let fast = firings(&pool, "fast").await;
    let daily = firings(&pool, "daily").await;
    // fast: the newest 1,000 and the last that fired.
    assert_eq!(fast.len(), 1001, "{:#?}", &fast[..3]);
    assert_eq!(
        fast.last().unwrap().tick_at,
        before_fast.last().unwrap().tick_at
    );
    assert_eq!(count(&fast, "fired"), 1);
    assert_eq!(
        fast[1..],
        before_fast[before_fast.len() - 1000..],
        "the newest 1,000 stay"
    );
    // daily: the last 30 days (days 0..=29), and the one still `firing`.
    assert_eq!(daily.len(), 31, "{daily:#?}");
    assert_eq!(count(&daily, "firing"), 1);
    assert_eq!(
        daily.last().unwrap().tick_at,
        before_daily.last().unwrap().tick_at
    );
    assert_eq!(
        deleted as usize,
        before_fast.len() + before_daily.len() - fast.len() - daily.len()
    );
    // Nothing more to prune on a second pass.
    assert_eq!(
        store::prune_firings(
            &pool,
            store::FIRINGS_KEPT_DAYS,
            store::FIRINGS_KEPT_PER_SCHEDULE
        )
        .await
        .unwrap(),
        0
    );
    // A schedule's latest firing, as `qbo schedule list` and GET /api/schedules show it.
    let listed = store::list(&pool).await.unwrap();
    let latest = |name: &str| {
        listed
            .iter()
            .find(|l| l.schedule.name == name)
            .and_then(|l| l.last_firing.as_ref())
            .map(|f| f.tick_at)
    };
    assert_eq!(latest("fast"), Some(fast.last().unwrap().tick_at));
    assert_eq!(latest("daily"), Some(daily.last().unwrap().tick_at));
}
