//! Contender (2): the method users have today, the Mage pipelines of the seed document,
//! redone in Rust so the comparison is about the method, not the language. Per entity:
//! 7-day chunks written `[day 00:00:00Z, day+6 23:59:59Z]`, pages of 100 with
//! STARTPOSITION/MAXRESULTS, one request at a time, then one `INSERT ... ON CONFLICT (id)
//! DO UPDATE` statement per row (one transaction per chunk), parsed and planned each time
//! as psycopg2's `cursor.execute` has Postgres do (no prepared statement). Only change from
//! the seed:
//! name lists ask for `Active IN (true, false)`, so every contender loads the same records.

use chrono::{Duration, NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use super::api::{Api, ApiSpec};
use super::{BenchError, ChildReport};
use qbo_core::entities::Entity;

const PAGE_SIZE: usize = 100;
const CHUNK_DAYS: i64 = 7;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedSpec {
    pub api: ApiSpec,
    pub db_url: String,
    pub start: NaiveDate,
    /// Inclusive.
    pub end: NaiveDate,
    /// Stop after the chunk that reaches this many rows (the method is slow at large N).
    pub max_rows: u64,
    /// The entities to load (CLI names), in this order.
    pub entities: Vec<String>,
}

/// The entities a spec names, in its order (unknown names are a usage error).
pub fn named(names: &[String]) -> Result<Vec<&'static Entity>, BenchError> {
    names
        .iter()
        .map(|n| {
            qbo_core::entities::find(n)
                .ok_or_else(|| BenchError::Usage(format!("unknown entity `{n}`")))
        })
        .collect()
}

/// The seed's table shape: `id` alone is the key.
fn table(entity: &Entity) -> String {
    entity.table.replace("raw.", "bench_seed.")
}

fn ddl(entity: &Entity) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
            id text PRIMARY KEY,
            payload jsonb NOT NULL,
            ingested_at_utc timestamptz NOT NULL,
            extract_window_start_utc timestamptz NOT NULL,
            extract_window_end_utc timestamptz NOT NULL,
            page_number integer NOT NULL,
            page_size integer NOT NULL,
            request_payload jsonb NOT NULL)",
        table(entity)
    )
}

fn upsert(entity: &Entity) -> String {
    format!(
        "INSERT INTO {} (id, payload, ingested_at_utc, extract_window_start_utc,
             extract_window_end_utc, page_number, page_size, request_payload)
         VALUES ($1, $2::jsonb, now(), $3::timestamptz, $4::timestamptz, $5, $6, $7::jsonb)
         ON CONFLICT (id) DO UPDATE SET
             payload = EXCLUDED.payload,
             ingested_at_utc = EXCLUDED.ingested_at_utc,
             extract_window_start_utc = EXCLUDED.extract_window_start_utc,
             extract_window_end_utc = EXCLUDED.extract_window_end_utc,
             page_number = EXCLUDED.page_number,
             page_size = EXCLUDED.page_size,
             request_payload = EXCLUDED.request_payload",
        table(entity)
    )
}

/// The seed's query: inclusive bounds in `Z` form, no ORDER BY. Entities QBO does not filter
/// by time (CompanyInfo, Preferences, ...) are read whole, in the one chunk.
fn query(entity: &Entity, from: &str, to: &str, position: usize) -> String {
    if entity.is_whole() {
        return format!(
            "SELECT * FROM {} STARTPOSITION {position} MAXRESULTS {PAGE_SIZE}",
            entity.qbo_name
        );
    }
    let active = if entity.hides_inactive() {
        " AND Active IN (true, false)"
    } else {
        ""
    };
    format!(
        "SELECT * FROM {} WHERE Metadata.LastUpdatedTime >= '{from}' AND Metadata.LastUpdatedTime <= '{to}'{active} STARTPOSITION {position} MAXRESULTS {PAGE_SIZE}",
        entity.qbo_name
    )
}

struct Row {
    id: String,
    payload: String,
    page_number: i32,
    request_payload: String,
}

pub async fn run(spec: SeedSpec) -> Result<ChildReport, BenchError> {
    let mut db = PgConnection::connect(&spec.db_url).await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS bench_seed")
        .execute(&mut db)
        .await?;
    let entities = named(&spec.entities)?;
    for e in &entities {
        sqlx::query(&ddl(e)).execute(&mut db).await?;
    }
    let mut api = Api::connect(spec.api.clone()).await?;
    let mut rows_total = 0u64;
    'entities: for entity in entities {
        let sql = upsert(entity);
        let mut day = spec.start;
        while day <= spec.end {
            let from = day.and_time(NaiveTime::MIN).and_utc();
            let to = from + Duration::days(CHUNK_DAYS) - Duration::seconds(1);
            let (from_s, to_s) = (
                from.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                to.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            let rows = fetch_chunk(&mut api, entity, &from_s, &to_s).await?;
            let mut tx = db.begin().await?;
            for r in &rows {
                sqlx::query(&sql)
                    .persistent(false)
                    .bind(&r.id)
                    .bind(&r.payload)
                    .bind(&from_s)
                    .bind(&to_s)
                    .bind(r.page_number)
                    .bind(PAGE_SIZE as i32)
                    .bind(&r.request_payload)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            rows_total += rows.len() as u64;
            if rows_total >= spec.max_rows {
                break 'entities;
            }
            if entity.is_whole() {
                break;
            }
            day += Duration::days(CHUNK_DAYS);
        }
    }
    Ok(ChildReport {
        rows: rows_total,
        requests: api.requests,
    })
}

/// Every page of one chunk, as the seed's loader collects them before the exporter runs.
async fn fetch_chunk(
    api: &mut Api,
    entity: &Entity,
    from: &str,
    to: &str,
) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    let mut position = 1;
    let mut page_number = 1;
    loop {
        let q = query(entity, from, to, position);
        let records = api.page(entity.list_key, &q).await?;
        let request_payload = serde_json::json!({
            "query": q, "startposition": position, "maxresults": PAGE_SIZE,
        })
        .to_string();
        let n = records.len();
        rows.extend(records.into_iter().map(|r| Row {
            id: r.id,
            payload: r.json.get().to_string(),
            page_number,
            request_payload: request_payload.clone(),
        }));
        if n < PAGE_SIZE {
            return Ok(rows);
        }
        position += PAGE_SIZE;
        page_number += 1;
    }
}
