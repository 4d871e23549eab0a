//! The app's monthly read cap stops a sync like a backfill: the sync fails with the cap's
//! error and exit code 1, sends nothing, and keeps its watermark, so the next sync (once the
//! cap allows) reads every change.

use crate::common::World;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_at_the_monthly_read_cap_sends_nothing_and_keeps_its_watermark() {
    let w = World::new(recent_company(120)).await;
    backfill_recent(&w).await;
    let id = w.sandbox.records("Invoice")[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandbox.touch_record("Invoice", &id);
    let watermark = invoice_watermark(&w).await.expect("a watermark");
    let pool = w.db.pool().await;
    let reads: i64 = sqlx::query_scalar("SELECT sum(reads)::int8 FROM ops.app_reads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(reads > 0, "the backfill's requests were counted");

    // The cap is what the app has already read this month.
    let cap = reads.to_string();
    let before = log_len(&w);
    let capped = w
        .run_with(
            &["sync", "invoices"],
            &[("QBO_MONTHLY_READ_CAP", Some(&cap))],
        )
        .await;
    capped.assert_code(1);
    let said = format!("{}{}", capped.stdout, capped.stderr);
    assert!(
        said.contains(&format!("reached QBO_MONTHLY_READ_CAP ({cap})")),
        "{said}"
    );
    let sent: Vec<_> = requests_since(&w, before)
        .into_iter()
        .filter(|e| e.kind != "token")
        .collect();
    assert!(sent.is_empty(), "requests past the cap: {sent:#?}");
    assert_eq!(invoice_watermark(&w).await, Some(watermark));

    w.run(&["sync", "invoices"]).await.assert_code(0);
    assert_synced(&w, "Invoice", "raw.qb_invoices").await;
}
