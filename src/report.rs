//! `qbo report`: one line per chunk of a backfill, or per step (CDC read, window,
//! reconciliation) of a sync, as a table for people or JSON for machines.

use std::fmt::Write;

use crate::store::ChunkRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn render(rows: &[ChunkRow], format: Format) -> String {
    match format {
        Format::Json => {
            let mut out = serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".into());
            out.push('\n');
            out
        }
        Format::Table => table(rows),
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
        c.kind.clone(),
        c.entity.clone(),
        c.chunk_index.to_string(),
        c.read_via.clone(),
        window_cell(c),
        c.status.clone(),
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
    let whole = crate::entities::find(&c.entity).is_some_and(|e| e.is_whole());
    if whole && c.read_via != "reconcile" {
        return "whole entity (no window)".to_string();
    }
    let fmt = if c.kind == "sync" {
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
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&HEADER);
    for row in &body {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&refs);
    }
    let total = |f: fn(&ChunkRow) -> i64| rows.iter().map(f).sum::<i64>();
    let _ = writeln!(
        out,
        "{} chunks: {} success, {} error, {} pending/running; {} rows loaded ({} expected), {} inserted, {} updated, {} skipped, {} deleted",
        rows.len(),
        rows.iter().filter(|c| c.status == "success").count(),
        rows.iter().filter(|c| c.status == "error").count(),
        rows.iter().filter(|c| c.status == "pending" || c.status == "running").count(),
        total(|c| c.row_count),
        total(|c| c.expected_count.unwrap_or(0)),
        total(|c| c.inserted),
        total(|c| c.updated),
        total(|c| c.skipped),
        total(|c| c.deleted),
    );
    out
}
