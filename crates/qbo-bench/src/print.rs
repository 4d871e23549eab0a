//! What the benchmark prints: the machine, one line per contender, the ratios to the targets.

use std::path::Path;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::child::Measured;
use super::ChildReport;
use qbo_sandbox::Stats;

/// One contender's result.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    pub rows: u64,
    /// Records the sandbox holds for it, when it should have loaded them all.
    pub expected: Option<u64>,
    pub wall: Duration,
    pub peak_rss: u64,
    pub requests: u64,
    /// CPU time of the contender's process(es).
    pub cpu: Duration,
    /// CPU time the in-process sandbox spent serving it.
    pub sandbox_cpu: Duration,
}

impl Figure {
    pub fn from_child(m: &Measured, r: ChildReport) -> Figure {
        let mut f = Figure::default();
        f.add(m, r.rows, r.requests);
        f
    }

    /// Adds one more process: times add up, the peak is the highest.
    pub fn add(&mut self, m: &Measured, rows: u64, requests: u64) {
        self.wall += m.wall;
        self.cpu += m.cpu;
        self.sandbox_cpu += m.sandbox_cpu;
        self.peak_rss = self.peak_rss.max(m.peak_rss);
        self.rows += rows;
        self.requests += requests;
    }

    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, tag: &str, label: &str) {
        outln!("  {tag:<5} {label}");
        self.print_figures();
    }

    fn print_figures(&self) {
        let mut line = format!(
            "        {:>8} rows in {:>7.2} s = {:>7.0} rows/s, peak RSS {:>6.1} MB",
            self.rows,
            self.wall.as_secs_f64(),
            self.rows_per_sec(),
            mb(self.peak_rss)
        );
        if self.requests > 0 {
            line.push_str(&format!(", {} requests", self.requests));
        }
        line.push_str(&format!(
            ", CPU {:.1} s (sandbox {:.1} s)",
            self.cpu.as_secs_f64(),
            self.sandbox_cpu.as_secs_f64()
        ));
        match self.expected {
            Some(n) if n != self.rows => {
                line.push_str(&format!("  WRONG: the sandbox holds {n} records"))
            }
            None => line.push_str("  (a subset: the first 7-day chunks)"),
            _ => {}
        }
        outln!("{line}");
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn first_line(path: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}

/// The machine and the software, so the figures can be compared with care.
pub async fn header(qbo: &Path, admin: &url::Url) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = first_line("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let mem = first_line("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into());
    let pg = match PgConnection::connect(admin.as_str()).await {
        Ok(mut c) => sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|_| "?".into()),
        Err(_) => "?".into(),
    };
    outln!(
        "qbo-bench {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    outln!(
        "machine: {cores} cores, {cpu}, {mem} RAM; Postgres {pg}; qbo at {}",
        qbo.display()
    );
    outln!("the sandbox runs in this process, on the same cores as qbo and Postgres");
}

pub fn size_header(n: u64, invoices: usize, customers: usize, items: usize, replay: bool) {
    outln!();
    outln!(
        "N = {n} records ({invoices} invoices, {customers} customers, {items} items), sandbox without latency or rate limit (qbo run with --no-rate-limit)"
    );
    if replay {
        outln!("  pages recorded by the first contenders are replayed to the others (--live to turn off)");
    }
}

/// The shortest possible wall time for `requests` requests when at most `rpm` may start in
/// any 60 s and at most `concurrency` are in flight, each taking `latency`.
pub fn minimum_wall(requests: u64, rpm: u32, concurrency: u32, latency: Duration) -> Duration {
    minimum_wall_in(requests, rpm, Duration::from_secs(60), concurrency, latency)
}

/// The same with a rate window of any length: each request starts as early as both limits
/// allow (the k-th no sooner than `window` after the (k - per_window)-th, and no sooner than
/// `latency` after the (k - concurrency)-th), which no schedule can beat.
pub fn minimum_wall_in(
    requests: u64,
    per_window: u32,
    window: Duration,
    concurrency: u32,
    latency: Duration,
) -> Duration {
    let (rpm, c) = (per_window.max(1) as usize, concurrency.max(1) as usize);
    let mut starts: Vec<f64> = Vec::with_capacity(requests as usize);
    let (lat, win) = (latency.as_secs_f64(), window.as_secs_f64());
    for k in 0..requests as usize {
        let by_rate = if k >= rpm { starts[k - rpm] + win } else { 0.0 };
        let by_slots = if k >= c { starts[k - c] + lat } else { 0.0 };
        starts.push(by_rate.max(by_slots));
    }
    Duration::from_secs_f64(starts.last().map_or(0.0, |s| s + lat))
}

pub fn api_bound(
    f: &Figure,
    stats: &Stats,
    rpm: u32,
    concurrency: u32,
    latency_ms: u64,
    chunk_days: i64,
    minimum: Duration,
) {
    outln!();
    outln!(
        "  (4)   API-bound: qbo backfill invoices --concurrency {concurrency} --chunk-days {chunk_days}, {latency_ms} ms per request, {rpm} requests/minute"
    );
    f.print_figures();
    let steady = stats.query_requests as f64 * 60.0 / f64::from(rpm.max(1));
    outln!(
        "        {} requests ({} throttled); theoretical minimum {:.1} s (at most {rpm} in any 60 s, {concurrency} in flight, {latency_ms} ms each; requests / rate alone = {:.1} s)",
        stats.query_requests,
        stats.throttled,
        minimum.as_secs_f64(),
        steady
    );
}

/// The targets of issue 4, checked as the figures come in.
#[derive(Default)]
pub struct Targets {
    lines: Vec<(String, bool)>,
    memory: Vec<(u64, u64)>,
}

impl Targets {
    pub fn check(&mut self, text: String, met: bool) {
        self.lines.push((text, met));
    }

    pub fn qbo_memory(&mut self, n: u64, peak: u64) {
        self.memory.push((n, peak));
    }

    pub fn vs_seed(&mut self, n: u64, qbo: &Figure, best: &Figure, seed: &Figure) {
        let r = qbo.rows_per_sec() / seed.rows_per_sec().max(1e-9);
        let b = best.rows_per_sec() / seed.rows_per_sec().max(1e-9);
        self.check(
            format!("N={n}: (1)/(2) qbo vs the seed's method = {r:.1}x (best qbo run {b:.1}x), target >= 5"),
            r >= 5.0,
        );
    }

    pub fn vs_copy(
        &mut self,
        n: u64,
        qbo: &Figure,
        best: &Figure,
        copy: &Figure,
        fetched: &Figure,
    ) {
        let r = qbo.rows_per_sec() / copy.rows_per_sec().max(1e-9);
        let b = best.rows_per_sec() / copy.rows_per_sec().max(1e-9);
        let f = best.rows_per_sec() / fetched.rows_per_sec().max(1e-9);
        self.check(
            format!(
                "N={n}: (1)/(3) qbo vs COPY = {r:.2} (best qbo run {b:.2}; best vs fetch+COPY (3f) {f:.2}), target >= 0.6"
            ),
            r >= 0.6,
        );
    }

    pub fn api_bound(&mut self, wall: Duration, minimum: Duration, throttled: u64) {
        let r = wall.as_secs_f64() / minimum.as_secs_f64().max(1e-9);
        self.check(
            format!(
                "(4) API-bound wall / theoretical minimum = {r:.3} ({:.1} s vs {:.1} s, {throttled} throttled), target <= 1.10",
                wall.as_secs_f64(),
                minimum.as_secs_f64()
            ),
            r <= 1.10,
        );
    }

    /// Prints every target with its verdict.
    pub fn print(mut self) {
        if let (Some(&(n0, lo)), Some(&(n1, hi))) = (self.memory.first(), self.memory.last()) {
            let all: Vec<String> = self
                .memory
                .iter()
                .map(|(n, b)| format!("{:.1} MB at N={n}", mb(*b)))
                .collect();
            let flat = n1 == n0 || (hi as f64) < (lo as f64) * 1.5 + 16.0 * 1024.0 * 1024.0;
            self.check(
                format!(
                    "qbo peak memory (defaults): {}; target flat in N and under 150 MB",
                    all.join(", ")
                ),
                flat && self.memory.iter().all(|(_, b)| mb(*b) < 150.0),
            );
        }
        outln!();
        outln!("Targets:");
        for (text, met) in &self.lines {
            outln!("  [{}] {text}", if *met { "met" } else { "MISSED" });
        }
    }
}

/// (7): the staging section's figures, one line per materialized view and run.
pub fn staging(f: &super::staging::StagingFigures) {
    outln!();
    outln!(
        "(7)   staging: qbo model refresh on {} invoices (one in five in EUR), raw zone written by SQL in {:.1} s (raw.qb_invoices {:.1} MB)",
        f.invoices,
        f.generate.as_secs_f64(),
        mb(f.raw_bytes.max(0) as u64)
    );
    for (label, runs) in [("first fill", &f.first), ("again (concurrently)", &f.again)] {
        let total: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let bytes: i64 = runs.iter().map(|r| r.bytes).sum();
        outln!(
            "      {label}: {total:.1} s, staging {:.1} MB",
            mb(bytes.max(0) as u64)
        );
        for r in runs.iter() {
            outln!(
                "        {:<28} {:>10} rows {:>8.1} s {:>9.1} MB",
                r.view,
                r.rows,
                r.elapsed.as_secs_f64(),
                mb(r.bytes.max(0) as u64)
            );
        }
    }
    let mut check = format!(
        "      ledger: {} unbalanced transactions, {} invoice lines missing or extra",
        f.unbalanced, f.missing_lines
    );
    if f.unbalanced != 0 || f.missing_lines != 0 {
        check.push_str("  WRONG");
    }
    outln!("{check}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_is_set_by_the_rate_once_it_binds() {
        let lat = Duration::from_millis(100);
        // 1000 requests at 500/min: the second 500 wait for the first minute to pass.
        let m = minimum_wall(1000, 500, 4, lat).as_secs_f64();
        assert!((m - (60.0 + 12.5)).abs() < 0.2, "{m}");
        // Few requests: only latency and the slots count.
        let m = minimum_wall(8, 500, 4, lat).as_secs_f64();
        assert!((m - 0.2).abs() < 1e-6, "{m}");
    }
}
