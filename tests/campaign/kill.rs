//! SIGKILL at more than twenty chosen points of a multi-chunk backfill, `--resume` after
//! each, and at the end the raw zone equals the sandbox exactly.
//!
//! Every kill point is reached deterministically, never by sleeping a random time:
//! - mid-request: the sandbox holds query request N unanswered (`hang_from_request`) and the
//!   test kills qbo once the sandbox reports it is holding it;
//! - mid-refresh: the sandbox expires every access token and holds the token endpoint
//!   (`hang_token_requests`), so qbo is killed while it waits for a refresh;
//! - inside a page's transaction, after the upsert and before the chunk's progress update:
//!   the test locks the chunk's report row, qbo's upsert runs and its progress update then
//!   waits on the lock (seen in `pg_stat_activity`), and qbo is killed there. When the last
//!   page of a chunk is done, the statement caught is the chunk's final update instead,
//!   which is the point "every page committed, chunk still `running`";
//! - after a response: qbo is killed as soon as the sandbox has answered request N, which
//!   lands in parsing, in a commit or at the start of the next request.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use chrono::SecondsFormat;
use qbo::sandbox::{Faults, SandboxConfig};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::process::Child;
use tokio::time::Instant;

use crate::common::*;

const START: &str = "2024-01-01";
const END: &str = "2024-03-31";
/// 31 chunks of about 16 invoices, three pages each: six requests a chunk.
const SHAPE: &[&str] = &["--chunk-days", "3", "--page-size", "6", "--lease-secs", "2"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    MidRequest,
    MidRefresh,
    InPageCommit,
    BeforeChunkFinish,
    AfterResponse,
}

fn company() -> SandboxConfig {
    SandboxConfig {
        invoices: 480,
        customers: 20,
        items: 10,
        data_start: date("2024-01-01"),
        data_end: date("2024-03-30"),
        ..SandboxConfig::default()
    }
}

fn base_faults() -> Faults {
    Faults {
        latency_ms: 2,
        ..Faults::default()
    }
}

/// Newer versions of `n` invoices, still inside the range: a stale row would show.
fn bump_versions(w: &World, n: usize) {
    for mut r in w.sandbox.records("Invoice").into_iter().step_by(7).take(n) {
        let token: u64 = r["SyncToken"].as_str().unwrap().parse().unwrap();
        let lut = chrono::DateTime::parse_from_rfc3339(
            r["MetaData"]["LastUpdatedTime"].as_str().unwrap(),
        )
        .unwrap()
            + chrono::Duration::seconds(1);
        r["SyncToken"] = (token + 1).to_string().into();
        r["MetaData"]["LastUpdatedTime"] = lut.to_rfc3339_opts(SecondsFormat::Secs, true).into();
        r["PrivateNote"] = "edited after the first load".into();
        w.sandbox.put_record("Invoice", r);
    }
}

/// Query requests the sandbox has answered so far.
fn answered(w: &World) -> usize {
    w.sandbox
        .stats()
        .request_log
        .iter()
        .filter(|e| e.kind == "query" || e.kind == "count")
        .count()
}

/// Polls `probe` until it yields a value, or returns None if the child exits on its own.
async fn poll<T, F, Fut>(child: &mut Child, what: &str, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(Instant::now() < deadline, "waited 90 s for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `cond` until it holds (true) or the child exits on its own (false).
async fn wait_for<F, Fut>(child: &mut Child, what: &str, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(child, what, || {
        let f = cond();
        async move { f.await.then_some(()) }
    })
    .await
    .is_some()
}

struct Campaign<'a> {
    w: &'a World,
    pool: PgPool,
    cycle: usize,
}

impl Campaign<'_> {
    fn spawn(&mut self) -> Child {
        self.cycle += 1;
        let args: Vec<&str> = if self.cycle == 1 {
            ["backfill", "invoices", "--start", START, "--end", END].to_vec()
        } else {
            ["backfill", "invoices", "--resume"].to_vec()
        };
        // Every other process runs two workers, so some kills leave two chunks mid-flight.
        let workers = if self.cycle.is_multiple_of(2) {
            "2"
        } else {
            "1"
        };
        let log_path = self.w.dir.path().join(format!("cycle{}.log", self.cycle));
        let log = std::fs::File::create(log_path).unwrap();
        self.w
            .qbo(&[args.as_slice(), SHAPE, &["--concurrency", workers]].concat())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    async fn kill(&self, mut child: Child) {
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        self.w.faults(base_faults());
    }

    /// Kills qbo while the sandbox holds its `k`th query request from now.
    async fn mid_request(&mut self, k: u64) -> Option<Point> {
        let s = self.w.sandbox.stats();
        self.w.faults(Faults {
            hang_from_request: s.query_requests + k,
            ..base_faults()
        });
        let mut child = self.spawn();
        let w = self.w;
        let hit = wait_for(&mut child, "a held request", || async {
            w.sandbox.stats().hung > s.hung
        })
        .await;
        self.kill(child).await;
        hit.then_some(Point::MidRequest)
    }

    /// Kills qbo while it waits for the token endpoint.
    async fn mid_refresh(&mut self) -> Option<Point> {
        let hung = self.w.sandbox.stats().hung;
        self.w.faults(Faults {
            expire_access_every: 1,
            hang_token_requests: true,
            ..base_faults()
        });
        let mut child = self.spawn();
        let w = self.w;
        let hit = wait_for(&mut child, "a held refresh", || async {
            w.sandbox.stats().hung > hung
        })
        .await;
        self.kill(child).await;
        hit.then_some(Point::MidRefresh)
    }

    /// Kills qbo right after the sandbox answered its `k`th query request from now.
    async fn after_response(&mut self, k: usize) -> Option<Point> {
        let n = answered(self.w);
        let mut child = self.spawn();
        let w = self.w;
        let hit = wait_for(&mut child, "answers", || async { answered(w) >= n + k }).await;
        self.kill(child).await;
        hit.then_some(Point::AfterResponse)
    }

    /// Kills qbo inside a page's transaction, between its upsert and its progress update
    /// (or, after a chunk's last page, just before the chunk's final update).
    async fn in_commit(&mut self) -> Option<Point> {
        let mut child = self.spawn();
        let owner = format!("%:{}:%", child.id().unwrap());
        let pool = self.pool.clone();
        let lock: Option<Transaction<'static, Postgres>> =
            poll(&mut child, "qbo's chunk to lock", || async {
                let mut tx = pool.begin().await.unwrap();
                let locked: Option<i32> = sqlx::query_scalar(
                    "SELECT chunk_index FROM ops.backfill_report
                     WHERE status = 'running' AND lease_owner LIKE $1 FOR UPDATE",
                )
                .bind(&owner)
                .fetch_optional(&mut *tx)
                .await
                .unwrap();
                locked.map(|_| tx)
            })
            .await;
        let mut caught = None;
        if lock.is_some() {
            let db = self.w.db.name.clone();
            caught = poll(&mut child, "qbo to wait on the locked row", || async {
                sqlx::query_scalar::<_, String>(
                    "SELECT query FROM pg_stat_activity
                     WHERE datname = $1 AND application_name = 'qbo' AND wait_event_type = 'Lock'
                       AND (query LIKE '%row_count = $5%' OR query LIKE '%error_message = $5%')",
                )
                .bind(&db)
                .fetch_optional(&pool)
                .await
                .unwrap()
            })
            .await;
        }
        self.kill(child).await;
        if let Some(tx) = lock {
            tx.rollback().await.unwrap();
        }
        caught.map(|q| {
            if q.contains("row_count = $5") {
                Point::InPageCommit
            } else {
                Point::BeforeChunkFinish
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_many_points_and_resume_loses_nothing() {
    let w = World::new(company()).await;
    // A complete first load, then newer versions appear inside the range: the killed and
    // resumed second run must leave none of the old versions behind.
    w.backfill("invoices", START, END, &["--chunk-days", "31"])
        .await
        .assert_code(0);
    bump_versions(&w, 60);
    w.faults(base_faults());
    let mut c = Campaign {
        w: &w,
        pool: w.db.pool().await,
        cycle: 0,
    };
    let mut hits: BTreeMap<Point, usize> = BTreeMap::new();
    for round in 0..6u64 {
        let points = [
            c.mid_request(2 + round % 3).await,
            c.in_commit().await,
            c.after_response(3 + round as usize % 4).await,
            c.mid_refresh().await,
            c.in_commit().await,
        ];
        for p in points.into_iter().flatten() {
            *hits.entry(p).or_default() += 1;
        }
    }
    let kills: usize = hits.values().sum();
    eprintln!("kill points hit: {hits:?}");
    let states = w.chunk_states("invoices").await;
    assert!(
        states.iter().any(|(s, _)| s != "success"),
        "the campaign ended before the run did: {hits:?}"
    );
    assert!(kills >= 20, "only {kills} kill points were hit: {hits:?}");
    for p in [
        Point::MidRequest,
        Point::MidRefresh,
        Point::InPageCommit,
        Point::AfterResponse,
    ] {
        assert!(hits.get(&p).copied().unwrap_or(0) >= 3, "{p:?}: {hits:?}");
    }

    let done = w
        .run(&[&["backfill", "invoices", "--resume"], SHAPE].concat())
        .await;
    done.assert_code(0);
    let states = w.chunk_states("invoices").await;
    assert_eq!(states.len(), 31);
    assert!(states.iter().all(|(s, _)| s == "success"), "{states:?}");
    assert!(
        states.iter().any(|(_, attempts)| *attempts > 1),
        "killed chunks were loaded again: {states:?}"
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
    let edited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM raw.qb_invoices WHERE payload->>'PrivateNote' = 'edited after the first load'",
    )
    .fetch_one(&c.pool)
    .await
    .unwrap();
    assert_eq!(edited, 60, "every newer version replaced the old one");
}
