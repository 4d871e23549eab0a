//! Postgres goes away in the middle of a run (every connection dropped, new ones refused
//! for a few seconds) and comes back: the run waits it out and nothing is lost. A proxy
//! between qbo and Postgres plays the outage, so the shared server is never touched.

use std::process::Stdio;
use std::time::Duration;

use qbo::sandbox::Faults;
use tokio::time::Instant;

use crate::common::pg_proxy::PgProxy;
use crate::common::*;

/// Windows loaded so far: settled, or parked for the run's sweep (a multi-page window stays
/// `paged` until the sweep at the end of the run, so counting only `success` would wait for
/// the run's last window and put the outage at the sweep instead of mid-run).
async fn loaded(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_report WHERE status IN ('success', 'paged')",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(0)
}

fn spawn_through(w: &World, proxy: &PgProxy, lease_secs: &str) -> tokio::process::Child {
    w.qbo(&[
        "backfill",
        "invoices",
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--chunk-days",
        "3",
        "--page-size",
        "4",
        "--concurrency",
        "2",
        "--lease-secs",
        lease_secs,
    ])
    .env("DATABASE_URL", proxy.url(&w.db.url))
    .stdout(Stdio::piped())
    .spawn()
    .unwrap()
}

async fn wait_for_loaded(pool: &sqlx::PgPool, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while loaded(pool).await < n {
        assert!(Instant::now() < deadline, "the run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_mid_run_is_waited_out_and_loses_nothing() {
    let w = World::new(small_company()).await;
    // Create the database first so the test can watch it directly while qbo uses the proxy.
    w.run(&["migrate"]).await.assert_code(0);
    let pool = w.db.pool().await;
    let proxy = PgProxy::start(&w.db.url).await;
    w.faults(Faults {
        latency_ms: 15,
        ..Faults::default()
    });
    let child = spawn_through(&w, &proxy, "10");
    wait_for_loaded(&pool, 4).await;
    let before = loaded(&pool).await;
    proxy.cut();
    // The outage lasts until qbo has tried to reconnect through it, however long a loaded
    // machine takes to get there (a fixed 3 s assumed it would be quick).
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.refused() == 0 {
        assert!(
            Instant::now() < deadline,
            "qbo never tried to reconnect during the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();

    let out = Run::from(child.wait_with_output().await.unwrap());
    out.assert_code(0);
    // Whichever of qbo's Postgres calls meets the outage first retries it: a window's write
    // (the queue's retry) or the lease of the company's request budget (the client's).
    assert!(
        out.stderr.contains("database unavailable; retrying")
            || out
                .stderr
                .contains("could not lease the company's request budget from Postgres; retrying"),
        "the outage was noticed and waited out:\n{}",
        out.stderr
    );
    let states = w.chunk_states("invoices").await;
    assert!(states.iter().all(|(s, _)| s == "success"), "{states:?}");
    assert!(
        (before as usize) < states.len(),
        "the outage came before the end of the run"
    );
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}

/// Longer than the engine waits for Postgres (about 24 s of backoff): the outage lasts until
/// qbo gives up, so the chunks being committed fail cleanly, qbo exits 1 saying how to
/// continue, and `--resume` finishes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_outage_fails_chunks_cleanly_and_resume_finishes() {
    let w = World::new(small_company()).await;
    w.run(&["migrate"]).await.assert_code(0);
    let pool = w.db.pool().await;
    let proxy = PgProxy::start(&w.db.url).await;
    // Slow enough answers that the run is far from done when the cut comes.
    w.faults(Faults {
        latency_ms: 40,
        ..Faults::default()
    });
    let child = spawn_through(&w, &proxy, "3");
    wait_for_loaded(&pool, 4).await;
    proxy.cut();
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("qbo gives up on an unreachable Postgres")
        .unwrap();
    proxy.restore();
    let out = Run::from(out);
    out.assert_code(1);
    assert!(
        out.stdout.contains("--retry-failed") || out.stderr.contains("--resume"),
        "says how to continue:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        out.stderr.contains("database unavailable; retrying"),
        "{}",
        out.stderr
    );
    let states = w.chunk_states("invoices").await;
    assert!(
        states.iter().any(|(s, _)| s != "success"),
        "the outage cost some chunks: {states:?}"
    );

    w.faults(Faults::default());
    w.run(&["backfill", "invoices", "--resume", "--lease-secs", "3"])
        .await
        .assert_code(0);
    let states = w.chunk_states("invoices").await;
    assert!(states.iter().all(|(s, _)| s == "success"), "{states:?}");
    w.assert_raw_matches_sandbox_entity("Invoice", "raw.qb_invoices")
        .await;
}
