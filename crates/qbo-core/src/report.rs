//! `qbo report`: one line per chunk of a backfill, or per step (CDC read, window,
//! reconciliation) of a sync, as a table for people or JSON for machines. The table ends
//! with what each backfill run cost in requests beside the minimum for its records.

use std::collections::HashMap;
use std::fmt::Write;

use uuid::Uuid;

use crate::cost::Cost;
use crate::queue::{ChunkStatus, RunKind};
use crate::store::ChunkRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `run_requests`: each run's requests outside its windows (`ops.backfill_runs.run_requests`);
/// a run missing from it spent none.
pub fn render(rows: &[ChunkRow], run_requests: &HashMap<Uuid, u64>, format: Format) -> String {
    match format {
        Format::Json => {
            let mut out = serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into());
            out.push('\n');
            out
        }
        Format::Table => {
            let mut out = table(rows);
            out.push_str(&costs(rows, run_requests));
            out
        }
    }
}

const HEADER: [&str; 17] = [
    "RUN",
    "KIND",
    "ENTITY",
    "CHUNK",
    "VIA",
    "WINDOW (UTC)",
    "STATUS",
    "ATTEMPTS",
    "EXPECTED",
    "LOADED",
    "INSERTED",
    "UPDATED",
    "SKIPPED",
    "DELETED",
    "PAGES",
    "REQUESTS",
    "ERROR",
];

fn cells(c: &ChunkRow) -> [String; 17] {
    let run = c.run_id.to_string();
    [
        run[..8].to_string(),
        c.kind.to_string(),
        c.entity.clone(),
        c.chunk_index.to_string(),
        c.read_via.clone(),
        window_cell(c),
        c.status.to_string(),
        c.attempts.to_string(),
        c.expected_count
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        c.row_count.to_string(),
        c.inserted.to_string(),
        c.updated.to_string(),
        c.skipped.to_string(),
        c.deleted.to_string(),
        c.pages.to_string(),
        c.requests.to_string(),
        c.error_message.clone().unwrap_or_default(),
    ]
}

/// An entity read whole has no window: say so rather than show a range it was not cut by.
/// A sync's steps start at a watermark, not a midnight: show the time too.
fn window_cell(c: &ChunkRow) -> String {
    // A report window is a period of days: shown inclusive, as `qbo reports` names it.
    if c.kind == RunKind::Report {
        let last = c.window_end_utc - chrono::Duration::days(1);
        return format!(
            "{} .. {} (period)",
            c.window_start_utc.format("%Y-%m-%d"),
            last.max(c.window_start_utc).format("%Y-%m-%d")
        );
    }
    let whole = crate::entities::find(&c.entity).is_some_and(|e| e.is_whole());
    if whole && c.read_via != "reconcile" {
        return "whole entity (no window)".to_string();
    }
    let fmt = if c.kind == RunKind::Sync {
        "%Y-%m-%d %H:%M:%S"
    } else {
        "%Y-%m-%d"
    };
    format!(
        "{} .. {}",
        c.window_start_utc.format(fmt),
        c.window_end_utc.format(fmt)
    )
}

fn table(rows: &[ChunkRow]) -> String {
    if rows.is_empty() {
        return "no chunks match; start a run with `qbo backfill <entity> --start .. --end ..`\n"
            .into();
    }
    let body: Vec<[String; 17]> = rows.iter().map(cells).collect();
    let mut out = crate::stdout::table(&HEADER, &body);
    let total = |f: fn(&ChunkRow) -> i64| rows.iter().map(f).sum::<i64>();
    let cancelled = rows
        .iter()
        .filter(|c| c.status == ChunkStatus::Cancelled)
        .count();
    let _ = writeln!(
        out,
        "{} chunks: {} success, {} error, {} pending/running{}; {} rows loaded ({} expected), {} inserted, {} updated, {} skipped, {} deleted",
        rows.len(),
        rows.iter().filter(|c| c.status == ChunkStatus::Success).count(),
        rows.iter().filter(|c| c.status == ChunkStatus::Error).count(),
        rows.iter()
            .filter(|c| matches!(c.status, ChunkStatus::Pending | ChunkStatus::Running | ChunkStatus::Paged))
            .count(),
        match cancelled {
            0 => String::new(),
            n => format!(", {n} cancelled (never loaded: their run was cancelled)"),
        },
        total(|c| c.row_count),
        total(|c| c.expected_count.unwrap_or(0)),
        total(|c| c.inserted),
        total(|c| c.updated),
        total(|c| c.skipped),
        total(|c| c.deleted),
    );
    out
}

/// What each backfill run among `rows` cost: its windows' requests and its own, beside the
/// minimum for the records it loaded (see `crate::cost`); and their sum when there are
/// several. A sync reads changes, not a range, so the minimum says nothing of it.
fn costs(rows: &[ChunkRow], run_requests: &HashMap<Uuid, u64>) -> String {
    let mut runs: Vec<(Uuid, &str, u64, u64)> = Vec::new();
    for c in rows.iter().filter(|c| c.kind == RunKind::Backfill) {
        let i = match runs.iter().position(|(id, ..)| *id == c.run_id) {
            Some(i) => i,
            None => {
                let own = run_requests.get(&c.run_id).copied().unwrap_or(0);
                runs.push((c.run_id, &c.entity, own, 0));
                runs.len() - 1
            }
        };
        runs[i].2 += u64::try_from(c.requests).unwrap_or(0);
        runs[i].3 += u64::try_from(c.row_count).unwrap_or(0);
    }
    let mut out = String::new();
    let mut total = Cost::default();
    for (run_id, entity, requests, records) in &runs {
        let cost = Cost::of_run(*requests, *records);
        let run = run_id.to_string();
        let _ = writeln!(out, "run {} {entity}: {cost}", &run[..8]);
        total = total + cost;
    }
    if runs.len() > 1 {
        let _ = writeln!(out, "{} backfill runs: {total}", runs.len());
    }
    out
}

/// `qbo report --companies`: one line per company, its windows by state.
/// One company's line of `qbo report --companies`: its windows, and its sync requests
/// queued and running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompanyLine {
    #[serde(flatten)]
    pub windows: crate::store::fleet::CompanyQueue,
    pub syncs_queued: i64,
    pub syncs_running: i64,
}

/// Every company with runs or open sync requests, by realm id.
pub fn company_lines(
    queues: Vec<crate::store::fleet::CompanyQueue>,
    syncs: &[crate::store::sync_requests::CompanySyncs],
) -> Vec<CompanyLine> {
    let mut lines: std::collections::BTreeMap<String, CompanyLine> = queues
        .into_iter()
        .map(|q| {
            let line = CompanyLine {
                windows: q,
                syncs_queued: 0,
                syncs_running: 0,
            };
            (line.windows.realm_id.clone(), line)
        })
        .collect();
    for s in syncs {
        let line = lines
            .entry(s.realm_id.clone())
            .or_insert_with(|| CompanyLine {
                windows: crate::store::fleet::CompanyQueue {
                    realm_id: s.realm_id.clone(),
                    runs: 0,
                    queued: 0,
                    running: 0,
                    succeeded: 0,
                    failed: 0,
                    last_claimed_at: None,
                },
                syncs_queued: 0,
                syncs_running: 0,
            });
        line.syncs_queued = s.queued;
        line.syncs_running = s.running;
    }
    lines.into_values().collect()
}

pub fn render_companies(lines: &[CompanyLine], format: Format) -> String {
    if format == Format::Json {
        let mut out = serde_json::to_string_pretty(lines).unwrap_or_else(|_| "[]".into());
        out.push('\n');
        return out;
    }
    let header = [
        "REALM",
        "RUNS",
        "QUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "LAST CLAIMED (UTC)",
        "SYNCS QUEUED",
        "SYNCS RUNNING",
    ];
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let q = &l.windows;
            vec![
                q.realm_id.clone(),
                q.runs.to_string(),
                q.queued.to_string(),
                q.running.to_string(),
                q.succeeded.to_string(),
                q.failed.to_string(),
                time(q.last_claimed_at),
                l.syncs_queued.to_string(),
                l.syncs_running.to_string(),
            ]
        })
        .collect();
    let mut out = crate::stdout::table(&header, &rows);
    if lines.is_empty() {
        out.push_str("(no runs yet)\n");
    }
    out
}

/// `qbo report --sync-requests`: the latest sync requests, newest first.
pub fn render_sync_requests(
    requests: &[crate::store::sync_requests::SyncRequestRow],
    format: Format,
) -> String {
    if format == Format::Json {
        let mut out = serde_json::to_string_pretty(requests).unwrap_or_else(|_| "[]".into());
        out.push('\n');
        return out;
    }
    let header = [
        "REQUEST",
        "REALM",
        "ENTITIES",
        "STATUS",
        "BY",
        "REQUESTED (UTC)",
        "FINISHED (UTC)",
        "ATTEMPTS",
        "RUNS",
        "ERROR",
    ];
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                r.request_id.to_string(),
                r.realm_id.clone(),
                r.entities.join(","),
                r.status.to_string(),
                r.requested_by.to_string(),
                time(Some(r.requested_at)),
                time(r.finished_at),
                r.attempts.to_string(),
                r.run_ids.len().to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = crate::stdout::table(&header, &rows);
    if requests.is_empty() {
        out.push_str("(no sync requests)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(run_id: Uuid, kind: RunKind, entity: &str, rows: i64, requests: i32) -> ChunkRow {
        ChunkRow {
            run_id,
            kind,
            chunk_index: 0,
            realm_id: "1".into(),
            entity: entity.into(),
            window_start_utc: chrono::DateTime::UNIX_EPOCH,
            window_end_utc: chrono::DateTime::UNIX_EPOCH,
            status: ChunkStatus::Success,
            attempts: 1,
            expected_count: Some(rows),
            planned_count: None,
            row_count: rows,
            inserted: rows,
            updated: 0,
            skipped: 0,
            deleted: 0,
            read_via: "query".into(),
            pages: 1,
            requests,
            retries: 0,
            passes: 1,
            started_at: None,
            finished_at: None,
            error_message: None,
            last_intuit_tid: None,
        }
    }

    #[test]
    fn each_backfill_run_shows_its_requests_beside_the_minimum_and_several_their_sum() {
        let (invoices, customers, sync) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let rows = [
            chunk(invoices, RunKind::Backfill, "invoices", 1200, 3),
            chunk(invoices, RunKind::Backfill, "invoices", 300, 2),
            chunk(customers, RunKind::Backfill, "customers", 0, 1),
            chunk(sync, RunKind::Sync, "invoices", 5, 1),
        ];
        // The planning COUNTs and the sweep of the invoices run count too.
        let own = HashMap::from([(invoices, 2)]);
        let text = costs(&rows, &own);
        let lines: Vec<&str> = text.lines().collect();
        let short = |id: Uuid| id.to_string()[..8].to_string();
        assert_eq!(
            lines,
            [
                format!(
                    "run {} invoices: requests 7 (minimum 2, 3.5x)",
                    short(invoices)
                ),
                format!(
                    "run {} customers: requests 1 (minimum 1, 1.0x)",
                    short(customers)
                ),
                "2 backfill runs: requests 8 (minimum 3, 2.7x)".to_string(),
            ]
        );
        assert_eq!(
            costs(&rows[2..3], &own).lines().count(),
            1,
            "no sum of one run"
        );
    }
}
