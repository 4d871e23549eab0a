use sqlx::Connection;

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_waits_its_turn_and_a_dead_ones_run_is_closed() {
    let w = World::new(recent_company(30)).await;
    backfill_recent(&w).await;
    w.run(&["sync", "invoices"]).await.assert_code(0);

    // Another sync of invoices holds the lock (a slow run and the next cron tick).
    let mut other = sqlx::PgConnection::connect(&w.db.url).await.unwrap();
    let key = format!("{}/invoices", w.sandbox.realm_id());
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('qbo-sync'), hashtext($1))")
            .bind(&key)
            .fetch_one(&mut other)
            .await
            .unwrap();
    assert!(got);
    let cdc_before = w.sandbox.stats().cdc_requests;
    let blocked = w.run(&["sync", "invoices", "customers"]).await;
    blocked.assert_code(1);
    assert!(
        blocked.stderr.contains("another `qbo sync`") && blocked.stderr.contains("invoices"),
        "{}",
        blocked.stderr
    );
    assert_eq!(
        w.sandbox.stats().cdc_requests,
        cdc_before,
        "nothing is read while another sync holds the entity"
    );

    // That other sync dies: its session ends, and a run it left `running` is closed as
    // incomplete by the next sync, which then proceeds.
    let pool = w.db.pool().await;
    sqlx::query(
        "UPDATE ops.backfill_runs SET status = 'running'
          WHERE run_id = (SELECT run_id FROM ops.backfill_runs
                           WHERE kind = 'sync' AND entity = 'invoices'
                           ORDER BY started_at DESC LIMIT 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    drop(other);
    w.run(&["sync", "invoices", "customers"])
        .await
        .assert_code(0);
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_runs WHERE kind = 'sync' AND status = 'running'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(running, 0, "no sync run is left looking alive");
    let closed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ops.backfill_runs WHERE kind = 'sync' AND status = 'incomplete'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(closed, 1);
}
