//! End-to-end tests of `qbo sync`: the real binary, a real Postgres, the sandbox's CDC over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod budget;
mod crash;
mod deletes;
mod fallback;
mod faults;
mod incremental;
mod no_cdc;
mod overlap;
mod quirks;
mod rates;
mod raw_zone;
mod split;

use std::collections::BTreeMap;

use chrono::{Duration, SecondsFormat, Utc};
use qbo::sandbox::{RequestLogEntry, SandboxConfig};
use serde_json::Value;

use common::World;

/// A company whose records were last updated 20 to 2 days ago: inside CDC's 30 days.
pub fn recent_company(invoices: usize) -> SandboxConfig {
    let today = Utc::now().date_naive();
    SandboxConfig {
        invoices,
        customers: 40,
        items: 20,
        data_start: today - Duration::days(20),
        data_end: today - Duration::days(2),
        ..SandboxConfig::default()
    }
}

pub fn days_ago(n: i64) -> String {
    (Utc::now().date_naive() - Duration::days(n)).to_string()
}

pub fn today() -> String {
    Utc::now().date_naive().to_string()
}

/// Backfills invoices, customers and items over the recent company's whole range, then makes
/// any physical DELETE on their raw tables fail: a sync marks deletes, it never drops a row,
/// so a sync that tried would exit non-zero and fail the test.
pub async fn backfill_recent(w: &World) {
    for entity in ["invoices", "customers", "items"] {
        w.backfill(entity, &days_ago(21), &today(), &[])
            .await
            .assert_code(0);
    }
    let pool = w.db.pool().await;
    sqlx::query(
        "CREATE FUNCTION raw.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'a raw row was dropped: %', OLD.id; END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    for table in ["raw.qb_invoices", "raw.qb_customers", "raw.qb_items"] {
        sqlx::query(&format!(
            "CREATE TRIGGER refuse_delete BEFORE DELETE ON {table}
             FOR EACH ROW EXECUTE FUNCTION raw.refuse_delete()"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
}

/// A raw row as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub sync_token: String,
    pub deleted: bool,
    pub payload: Value,
}

pub async fn raw_rows(w: &World, table: &str) -> BTreeMap<String, RawRow> {
    let pool = w.db.pool().await;
    let rows: Vec<(String, String, bool, Value)> = sqlx::query_as(&format!(
        "SELECT id, sync_token, deleted_at_utc IS NOT NULL, payload FROM {table} WHERE realm_id = $1"
    ))
    .bind(w.sandbox.realm_id())
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, sync_token, deleted, payload)| {
            (
                id,
                RawRow {
                    sync_token,
                    deleted,
                    payload,
                },
            )
        })
        .collect()
}

/// The raw zone says what the sandbox says: live rows are exactly the sandbox's records at
/// their versions, and every other row is marked deleted (never a live record so marked).
pub async fn assert_synced(w: &World, qbo_name: &str, table: &str) {
    let expected = w.sandbox_versions(qbo_name);
    let raw = raw_rows(w, table).await;
    let live: BTreeMap<String, String> = raw
        .iter()
        .filter(|(_, r)| !r.deleted)
        .map(|(id, r)| (id.clone(), r.sync_token.clone()))
        .collect();
    let missing: Vec<_> = expected.keys().filter(|k| !live.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{table}: live records missing or marked deleted: {missing:?}"
    );
    assert_eq!(live, expected, "{table}: live ids and versions");
    for id in w.sandbox.deleted_ids(qbo_name) {
        if let Some(r) = raw.get(&id) {
            assert!(
                r.deleted,
                "{table}: {id} is deleted in QBO but live in the raw zone"
            );
        }
    }
}

/// The invoices' sync watermark, if there is one.
pub async fn invoice_watermark(w: &World) -> Option<chrono::DateTime<Utc>> {
    let pool = w.db.pool().await;
    sqlx::query_scalar("SELECT watermark_utc FROM ops.sync_watermarks WHERE entity = 'invoices'")
        .fetch_optional(&pool)
        .await
        .unwrap()
}

/// Request-log entries from `from` on.
pub fn requests_since(w: &World, from: usize) -> Vec<RequestLogEntry> {
    w.sandbox.stats().request_log[from..].to_vec()
}

pub fn log_len(w: &World) -> usize {
    w.sandbox.stats().request_log.len()
}

/// A new record for `qbo_name` shaped like an existing one, stamped `at`.
pub fn new_record(w: &World, qbo_name: &str, id: &str, at: chrono::DateTime<Utc>) -> Value {
    let mut r = w.sandbox.records(qbo_name)[0].clone();
    let stamp = at.to_rfc3339_opts(SecondsFormat::Secs, false);
    r["Id"] = Value::String(id.into());
    r["SyncToken"] = Value::String("0".into());
    r["MetaData"]["CreateTime"] = Value::String(stamp.clone());
    r["MetaData"]["LastUpdatedTime"] = Value::String(stamp);
    r
}

/// The sync runs' report rows (`qbo report --all-runs --format json`).
pub async fn sync_report(w: &World, entity: &str) -> Vec<Value> {
    let out = w
        .run(&["report", entity, "--all-runs", "--format", "json"])
        .await;
    out.assert_code(0);
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).expect("report JSON");
    rows.into_iter().filter(|r| r["kind"] == "sync").collect()
}

/// Sum of a numeric report column over rows of the latest sync run.
pub fn latest_run_sum(rows: &[Value], column: &str) -> i64 {
    let Some(last) = rows.last() else { return 0 };
    let run = &last["run_id"];
    rows.iter()
        .filter(|r| &r["run_id"] == run)
        .map(|r| r[column].as_i64().unwrap())
        .sum()
}

pub fn latest_run_vias(rows: &[Value]) -> Vec<String> {
    let Some(last) = rows.last() else {
        return vec![];
    };
    let run = &last["run_id"];
    rows.iter()
        .filter(|r| &r["run_id"] == run)
        .map(|r| r["read_via"].as_str().unwrap().to_string())
        .collect()
}
