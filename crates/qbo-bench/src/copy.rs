//! Contender (3): Postgres `COPY` of the same payloads into an unindexed jsonb table, the
//! practical ceiling of any loader. Two forms: `fetch_copy` pages through the sandbox like
//! qbo does (same windows, 1000 per page, several windows at once) straight into one COPY
//! stream, and keeps the payloads in a file; `copy_file` then COPYs that file alone, which is
//! Postgres' cost without any API in the way.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use super::api::{Api, ApiSpec};
use super::{BenchError, ChildReport};
use qbo_core::chunks::{self, DateRange, Window, WindowField};
use qbo_core::entities::Entity;
use qbo_core::query::{Query, LAST_UPDATED_FIELD, MAX_PAGE_SIZE};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchCopySpec {
    pub api: ApiSpec,
    pub db_url: String,
    pub start: NaiveDate,
    /// Inclusive.
    pub end: NaiveDate,
    pub chunk_days: i64,
    pub concurrency: u32,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopySpec {
    pub db_url: String,
    pub file: PathBuf,
    pub table: String,
}

/// The ceiling gets the same lz4 compression qbo asks for.
async fn create_table(db: &mut PgConnection, table: &str) -> Result<(), BenchError> {
    qbo_core::store::prefer_lz4(db).await;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS bench_copy")
        .execute(&mut *db)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (payload jsonb NOT NULL)"
    ))
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Appends one payload as a line of COPY's text format.
fn push_copy_line(out: &mut Vec<u8>, json: &str) {
    for b in json.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
    out.push(b'\n');
}

pub async fn fetch_copy(spec: FetchCopySpec) -> Result<ChildReport, BenchError> {
    let mut db = PgConnection::connect(&spec.db_url).await?;
    create_table(&mut db, "bench_copy.fetched").await?;
    let range =
        DateRange::new(spec.start, spec.end).map_err(|e| BenchError::Usage(e.to_string()))?;
    let windows =
        chunks::plan(range, spec.chunk_days).map_err(|e| BenchError::Usage(e.to_string()))?;
    let jobs: VecDeque<(&'static Entity, Window)> = super::entities()
        .into_iter()
        .flat_map(|e| windows.iter().map(move |w| (e, *w)))
        .collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let api = Api::connect(spec.api.clone()).await?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(spec.concurrency as usize * 2);
    let mut fetchers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let (jobs, tx, mut api) = (jobs.clone(), tx.clone(), api.clone());
        fetchers.spawn(async move {
            loop {
                let job = jobs.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                let Some((entity, window)) = job else {
                    return Ok::<u64, BenchError>(api.requests);
                };
                fetch_window(&mut api, entity, window, &tx).await?;
            }
        });
    }
    drop(tx);
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&spec.file)
            .map_err(|e| BenchError::Io(spec.file.display().to_string(), e))?,
    );
    let mut copy = db
        .copy_in_raw("COPY bench_copy.fetched (payload) FROM STDIN")
        .await?;
    while let Some(bytes) = rx.recv().await {
        file.write_all(&bytes)
            .map_err(|e| BenchError::Io(spec.file.display().to_string(), e))?;
        copy.send(bytes).await?;
    }
    let mut requests = 0;
    while let Some(done) = fetchers.join_next().await {
        match done {
            Ok(Ok(n)) => requests += n,
            Ok(Err(e)) => {
                let _ = copy.abort("a fetcher failed").await;
                return Err(e);
            }
            Err(e) => return Err(BenchError::Http(format!("a fetcher panicked: {e}"))),
        }
    }
    let rows = copy.finish().await?;
    file.flush()
        .map_err(|e| BenchError::Io(spec.file.display().to_string(), e))?;
    Ok(ChildReport { rows, requests })
}

/// Pages one window like qbo does and sends each page as COPY lines.
async fn fetch_window(
    api: &mut Api,
    entity: &Entity,
    window: Window,
    out: &mpsc::Sender<Vec<u8>>,
) -> Result<(), BenchError> {
    let query = window
        .constrain(Query::select(entity), WindowField::LastUpdated)
        .order_by(LAST_UPDATED_FIELD);
    let mut start = 1;
    loop {
        let text = query.clone().page(start, MAX_PAGE_SIZE).render();
        let records = api.page(entity.qbo_name, &text).await?;
        let mut lines = Vec::with_capacity(records.iter().map(|r| r.json.get().len() + 1).sum());
        for r in &records {
            push_copy_line(&mut lines, r.json.get());
        }
        if !lines.is_empty() && out.send(lines).await.is_err() {
            return Err(BenchError::Http("the COPY writer stopped".into()));
        }
        if records.len() < MAX_PAGE_SIZE as usize {
            return Ok(());
        }
        start += MAX_PAGE_SIZE;
    }
}

/// COPYs the payload file written by `fetch_copy` into a fresh unindexed table.
pub async fn copy_file(spec: CopySpec) -> Result<ChildReport, BenchError> {
    let mut db = PgConnection::connect(&spec.db_url).await?;
    create_table(&mut db, &spec.table).await?;
    let io = |e| BenchError::Io(spec.file.display().to_string(), e);
    let mut file = std::fs::File::open(&spec.file).map_err(io)?;
    let mut copy = db
        .copy_in_raw(&format!("COPY {} (payload) FROM STDIN", spec.table))
        .await?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        copy.send(&buf[..n]).await?;
    }
    let rows = copy.finish().await?;
    Ok(ChildReport { rows, requests: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_escape_what_copy_text_format_reads_specially() {
        let mut out = Vec::new();
        push_copy_line(&mut out, "{\"a\":\"x\\\"y\\\\n\"}");
        assert_eq!(out, b"{\"a\":\"x\\\\\"y\\\\\\\\n\"}\n".to_vec());
    }
}
