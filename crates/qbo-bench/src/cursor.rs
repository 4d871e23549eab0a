//! A cost baseline for the API cost section: the cursor loader of Singer's tap-quickbooks.
//! Per entity, one query ordered by `MetaData.LastUpdatedTime` (name lists with
//! `Active IN (true, false)`, so it loads what the others load), paged with
//! STARTPOSITION/MAXRESULTS 1000 until a short page; entities one after another, one request
//! at a time; each page upserted in one statement. No windows, no counts, no guarantees (an
//! edit mid-paging shifts the offsets): it shows what reading the data costs, nothing more.

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use super::api::{Api, ApiSpec};
use super::seed::named;
use super::{BenchError, ChildReport};
use qbo_core::entities::Entity;
use qbo_core::query::MAX_PAGE_SIZE;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CursorSpec {
    pub api: ApiSpec,
    pub db_url: String,
    /// The entities to load (CLI names), in this order.
    pub entities: Vec<String>,
}

/// The loader's own table for `entity`, keyed by id like the seed's.
pub fn table(entity: &Entity) -> String {
    entity.table.replace("raw.", "bench_cursor.")
}

/// Entities QBO does not filter or sort by time (CompanyInfo, Preferences, ...) are read in
/// their natural order.
fn query(entity: &Entity, position: u32) -> String {
    if entity.is_whole() {
        return format!(
            "SELECT * FROM {} STARTPOSITION {position} MAXRESULTS {MAX_PAGE_SIZE}",
            entity.qbo_name
        );
    }
    let active = match entity.hides_inactive() {
        true => " WHERE Active IN (true, false)",
        false => "",
    };
    format!(
        "SELECT * FROM {}{active} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {position} MAXRESULTS {MAX_PAGE_SIZE}",
        entity.qbo_name
    )
}

pub async fn run(spec: CursorSpec) -> Result<ChildReport, BenchError> {
    let mut db = PgConnection::connect(&spec.db_url).await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS bench_cursor")
        .execute(&mut db)
        .await?;
    let entities = named(&spec.entities)?;
    let mut api = Api::connect(spec.api.clone()).await?;
    let mut rows = 0u64;
    for entity in entities {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, payload jsonb NOT NULL)",
            table(entity)
        ))
        .execute(&mut db)
        .await?;
        rows += load_entity(&mut api, &mut db, entity).await?;
    }
    Ok(ChildReport {
        rows,
        requests: api.requests,
    })
}

/// Every page of one entity's cursor, each upserted as it arrives.
async fn load_entity(
    api: &mut Api,
    db: &mut PgConnection,
    entity: &Entity,
) -> Result<u64, BenchError> {
    let upsert = format!(
        "INSERT INTO {} (id, payload) SELECT * FROM UNNEST($1::text[], $2::text[]::jsonb[])
         ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
        table(entity)
    );
    let mut position = 1;
    let mut rows = 0u64;
    loop {
        let records = api.page(entity.list_key, &query(entity, position)).await?;
        let n = records.len();
        let (ids, payloads): (Vec<String>, Vec<String>) = records
            .into_iter()
            .map(|r| (r.id, r.json.get().to_string()))
            .unzip();
        if n > 0 {
            sqlx::query(&upsert)
                .bind(&ids)
                .bind(&payloads)
                .execute(&mut *db)
                .await?;
        }
        rows += n as u64;
        if n < MAX_PAGE_SIZE as usize {
            return Ok(rows);
        }
        position += MAX_PAGE_SIZE;
    }
}
