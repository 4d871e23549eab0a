//! The raw zone: one upsert statement per page. A re-run never duplicates a row, and an
//! older version of a record never overwrites a newer one. Deletes mark a row
//! (`deleted_at_utc`) and keep its last payload; times decide between a delete and a version.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::client::RawRecord;
use crate::entities::Entity;

/// Where a page came from; stored with every row it wrote.
#[derive(Debug, Clone)]
pub struct PageMeta<'a> {
    pub realm_id: &'a str,
    pub run_id: Uuid,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub page_number: i32,
    pub page_size: i32,
    /// The query and parameters sent (never a token).
    pub request_payload: &'a serde_json::Value,
    pub intuit_tid: Option<&'a str>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: i64,
    pub updated: i64,
    pub skipped: i64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, o: Self) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.skipped += o.skipped;
    }
}

/// Versions compare by `LastUpdatedTime`, then by `SyncToken` as a number (length first, so
/// "10" beats "9" without casting). An equal version with a different payload still
/// replaces the row (QBO may add fields, e.g. with a new minor version); an identical one is
/// skipped. A deleted row comes back to life only for a version newer than its deletion; an
/// older version may still refresh the kept payload, but the row stays deleted.
fn upsert_sql(table: &str) -> String {
    format!(
        r#"
WITH input AS (
    SELECT DISTINCT ON (id) id, payload::jsonb AS payload, sync_token, last_updated_utc
    FROM UNNEST($2::text[], $3::text[], $4::text[], $5::timestamptz[])
         AS t(id, payload, sync_token, last_updated_utc)
    ORDER BY id, last_updated_utc DESC, length(sync_token) DESC, sync_token COLLATE "C" DESC
), written AS (
    INSERT INTO {table} AS r (realm_id, id, payload, sync_token, last_updated_utc, ingested_at_utc,
        extract_window_start_utc, extract_window_end_utc, page_number, page_size,
        request_payload, run_id, intuit_tid)
    SELECT $1, id, payload, sync_token, last_updated_utc, now(), $6, $7, $8, $9, $10, $11, $12
    FROM input
    ON CONFLICT (realm_id, id) DO UPDATE SET
        payload = EXCLUDED.payload,
        sync_token = EXCLUDED.sync_token,
        last_updated_utc = EXCLUDED.last_updated_utc,
        ingested_at_utc = EXCLUDED.ingested_at_utc,
        extract_window_start_utc = EXCLUDED.extract_window_start_utc,
        extract_window_end_utc = EXCLUDED.extract_window_end_utc,
        page_number = EXCLUDED.page_number,
        page_size = EXCLUDED.page_size,
        request_payload = EXCLUDED.request_payload,
        run_id = EXCLUDED.run_id,
        intuit_tid = EXCLUDED.intuit_tid,
        deleted_at_utc = CASE WHEN EXCLUDED.last_updated_utc > r.deleted_at_utc
                              THEN NULL ELSE r.deleted_at_utc END
    WHERE (EXCLUDED.last_updated_utc, length(EXCLUDED.sync_token), EXCLUDED.sync_token COLLATE "C")
              > (r.last_updated_utc, length(r.sync_token), r.sync_token COLLATE "C")
       OR (EXCLUDED.last_updated_utc = r.last_updated_utc
           AND EXCLUDED.sync_token = r.sync_token
           AND EXCLUDED.payload IS DISTINCT FROM r.payload)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM written
"#
    )
}

/// Upserts one page inside the caller's transaction (which also records the chunk's progress).
pub async fn upsert_page(
    tx: &mut Transaction<'_, Postgres>,
    entity: &Entity,
    meta: &PageMeta<'_>,
    records: &[RawRecord],
) -> Result<UpsertCounts, sqlx::Error> {
    if records.is_empty() {
        return Ok(UpsertCounts::default());
    }
    let n = records.len();
    let mut ids = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for r in records {
        ids.push(r.id.as_str());
        payloads.push(r.json.get());
        tokens.push(r.sync_token.as_str());
        times.push(r.last_updated);
    }
    let (inserted, updated): (i64, i64) = sqlx::query_as(&upsert_sql(entity.table))
        .bind(meta.realm_id)
        .bind(&ids)
        .bind(&payloads)
        .bind(&tokens)
        .bind(&times)
        .bind(meta.window_start)
        .bind(meta.window_end)
        .bind(meta.page_number)
        .bind(meta.page_size)
        .bind(meta.request_payload)
        .bind(meta.run_id)
        .bind(meta.intuit_tid)
        .fetch_one(&mut **tx)
        .await?;
    Ok(UpsertCounts {
        inserted,
        updated,
        skipped: n as i64 - inserted - updated,
    })
}

/// A record QBO says is gone: its id, when it was deleted (by QBO's clock) and what QBO sent
/// about it (a CDC delete stub; stored only when the raw zone never had the record).
#[derive(Debug, Clone)]
pub struct Deletion<'a> {
    pub id: &'a str,
    pub deleted_at: DateTime<Utc>,
    pub stub: &'a str,
}

/// Marks rows deleted in one statement. A row keeps its payload and where it came from; a
/// deletion older than the row's version is stale (the record was re-created) and ignored;
/// an id never loaded gets a row holding the stub, so no delete is silently dropped.
/// Returns how many rows became deleted (or got a later deletion time).
fn mark_deleted_sql(table: &str) -> String {
    format!(
        r#"
WITH input AS (
    SELECT DISTINCT ON (id) id, stub::jsonb AS stub, deleted_at
    FROM UNNEST($2::text[], $3::text[], $4::timestamptz[]) AS t(id, stub, deleted_at)
    ORDER BY id, deleted_at DESC
), written AS (
    INSERT INTO {table} AS r (realm_id, id, payload, sync_token, last_updated_utc, ingested_at_utc,
        extract_window_start_utc, extract_window_end_utc, page_number, page_size,
        request_payload, run_id, intuit_tid, deleted_at_utc)
    SELECT $1, id, stub, '', deleted_at, now(), $5, $6, $7, $8, $9, $10, $11, deleted_at
    FROM input
    ON CONFLICT (realm_id, id) DO UPDATE SET deleted_at_utc = EXCLUDED.deleted_at_utc
    WHERE EXCLUDED.deleted_at_utc >= r.last_updated_utc
      AND (r.deleted_at_utc IS NULL OR EXCLUDED.deleted_at_utc > r.deleted_at_utc)
    RETURNING 1
)
SELECT count(*) FROM written
"#
    )
}

pub async fn mark_deleted(
    tx: &mut Transaction<'_, Postgres>,
    entity: &Entity,
    meta: &PageMeta<'_>,
    deletions: &[Deletion<'_>],
) -> Result<i64, sqlx::Error> {
    if deletions.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = deletions.iter().map(|d| d.id).collect();
    let stubs: Vec<&str> = deletions.iter().map(|d| d.stub).collect();
    let times: Vec<DateTime<Utc>> = deletions.iter().map(|d| d.deleted_at).collect();
    sqlx::query_scalar(&mark_deleted_sql(entity.table))
        .bind(meta.realm_id)
        .bind(&ids)
        .bind(&stubs)
        .bind(&times)
        .bind(meta.window_start)
        .bind(meta.window_end)
        .bind(meta.page_number)
        .bind(meta.page_size)
        .bind(meta.request_payload)
        .bind(meta.run_id)
        .bind(meta.intuit_tid)
        .fetch_one(&mut **tx)
        .await
}

/// Ids of the rows not marked deleted: what a reconciliation compares with QBO's ids.
pub async fn live_ids(
    pool: &sqlx::PgPool,
    entity: &Entity,
    realm_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM {} WHERE realm_id = $1 AND deleted_at_utc IS NULL",
        entity.table
    ))
    .bind(realm_id)
    .fetch_all(pool)
    .await
}

/// Whether the raw zone holds anything of this entity for the company (a backfill into an
/// empty table cannot have missed a delete).
pub async fn has_rows(
    pool: &sqlx::PgPool,
    entity: &Entity,
    realm_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE realm_id = $1)",
        entity.table
    ))
    .bind(realm_id)
    .fetch_one(pool)
    .await
}
