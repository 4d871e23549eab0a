//! (6) The fleet: many companies, several `qbo worker` processes, QBO's real limits per
//! company. `qbo backfill invoices --all-companies --enqueue` plans every company's run, then
//! the workers load them all (`--idle-exit`). What is measured: the requests per minute the
//! workers kept up together, against 0.9 x (companies x the per-company limit), the bound
//! QBO sets; rows/s per worker; and the CPU the workers, the sandbox and everything else on
//! the machine (Postgres) used meanwhile, so that a run that fell short says whether the
//! machine's CPU was the bound.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::child::{run_measured, Measured};
use super::plan::{Api, Bench};
use super::print::Targets;
use super::BenchError;
use qbo_sandbox::{Faults, Sandbox};

/// The fleet's token key (32 bytes, base64): tokens live in Postgres, as in a fleet.
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// QBO's per-company limits, as the sandbox enforces them.
const RPM: u64 = 500;

/// What one fleet run measured.
struct FleetRun {
    workers: Vec<(Measured, u64)>,
    wall: Duration,
    requests: u64,
    throttled: u64,
    peak_rpm: u64,
    peak_in_flight: u64,
    rows: u64,
    machine: Option<CpuUse>,
    /// CPU this process (the sandbox, mostly) used over the run.
    sandbox_cpu: Duration,
    /// CPU the Postgres server's processes used over the run (None where /proc does not
    /// show them).
    postgres_cpu: Option<Duration>,
}

impl Bench {
    pub(super) async fn fleet(&self, targets: &mut Targets) -> Result<(), BenchError> {
        let a = &self.args;
        let companies = a.fleet_companies.max(1) as usize;
        let mut cfg = super::plan::sandbox_config(0);
        cfg.companies = companies;
        cfg.invoices = a.fleet_invoices;
        cfg.customers = 10;
        cfg.items = 5;
        let sandbox = Sandbox::start(cfg).await?;
        // QBO's limits per company (500 a minute, 10 in flight, 40 batch calls a minute: the
        // sandbox's defaults) and its latency.
        sandbox.set_faults(Faults {
            latency_ms: a.fleet_latency_ms,
            ..Faults::default()
        });
        let api = Api {
            sandbox: &sandbox,
            base_url: sandbox.api_base_url(),
        };
        outln!();
        outln!(
            "(6) Fleet: {companies} companies x {} invoices, {} ms latency, QBO's limits per company (500 requests/min, 10 in flight, 40 batch calls/min), {} `qbo worker` processes, pages of {}",
            a.fleet_invoices,
            a.fleet_latency_ms,
            a.fleet_workers,
            a.fleet_page_size
        );
        let (db, url) = self.create_db("fleet").await?;
        let run = self.fleet_run(&api, &url).await;
        self.drop_db(&db).await;
        let run = run?;
        print_run(&run, companies, a.fleet_invoices as u64, targets);
        Ok(())
    }

    async fn fleet_run(&self, api: &Api<'_>, url: &str) -> Result<FleetRun, BenchError> {
        let a = &self.args;
        let sandbox = api.sandbox;
        let realms = sandbox.realm_ids();
        for realm in &realms {
            let token = sandbox
                .for_realm(realm)
                .map(|s| s.current_refresh_token())
                .unwrap_or_default();
            let mut cmd = self.fleet_cmd(api, url, &["auth", "import", "--realm-id", realm]);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| BenchError::Io("starting qbo auth import".into(), e))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(token.as_bytes())
                    .await
                    .map_err(|e| BenchError::Io("writing the token".into(), e))?;
            }
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| BenchError::Io("qbo auth import".into(), e))?;
            if !out.status.success() {
                return Err(BenchError::Child {
                    what: "qbo auth import".into(),
                    status: out.status.to_string(),
                    log: "(stderr)".into(),
                    tail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        let (start, end) = (
            super::plan::data_start().to_string(),
            super::plan::range_end().to_string(),
        );
        let page_size = a.fleet_page_size.to_string();
        let enqueue = self.fleet_cmd(
            api,
            url,
            &[
                "backfill",
                "invoices",
                "--all-companies",
                "--enqueue",
                "--start",
                &start,
                "--end",
                &end,
                "--page-size",
                &page_size,
            ],
        );
        run_measured(
            enqueue,
            "qbo backfill --enqueue",
            &self.work.join("fleet-enqueue.log"),
        )
        .await?;

        let before = machine_cpu();
        let (own_before, pg_before) = (process_cpu("self", false), postgres_cpu());
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..a.fleet_workers.max(1) {
            let cmd = self.fleet_cmd(api, url, &["worker", "--idle-exit", "--poll-ms", "200"]);
            let log = self.work.join(format!("fleet-worker-{n}.log"));
            workers.spawn(async move { (n, run_measured(cmd, "qbo worker", &log).await) });
        }
        let mut done = Vec::new();
        while let Some(joined) = workers.join_next().await {
            let (n, measured) = joined.map_err(|e| BenchError::Http(e.to_string()))?;
            let measured = measured?;
            let rows = worker_rows(&measured.stdout);
            done.push((n, measured, rows));
        }
        let wall = started.elapsed();
        let machine = before.zip(machine_cpu()).map(|(b, e)| e.since(&b));
        let sandbox_cpu = process_cpu("self", false)
            .zip(own_before)
            .map(|(e, b)| e.saturating_sub(b))
            .unwrap_or_default();
        let pg_cpu = pg_before
            .zip(postgres_cpu())
            .map(|(b, e)| e.saturating_sub(b));
        done.sort_by_key(|(n, _, _)| *n);
        let stats: Vec<_> = realms
            .iter()
            .filter_map(|r| sandbox.for_realm(r))
            .map(|s| s.realm_stats())
            .collect();
        let rows = loaded_rows(url).await?;
        Ok(FleetRun {
            workers: done.into_iter().map(|(_, m, r)| (m, r)).collect(),
            wall,
            requests: stats.iter().map(|s| s.requests).sum(),
            throttled: stats.iter().map(|s| s.throttled).sum(),
            peak_rpm: stats
                .iter()
                .map(|s| s.peak_requests_per_minute)
                .max()
                .unwrap_or(0),
            peak_in_flight: stats.iter().map(|s| s.peak_in_flight).max().unwrap_or(0),
            rows,
            machine,
            sandbox_cpu,
            postgres_cpu: pg_cpu,
        })
    }

    /// `qbo <args>` for the fleet: every company's tokens in Postgres, none from the
    /// environment.
    fn fleet_cmd(&self, api: &Api<'_>, url: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.qbo_cmd(api, url, "fleet", args);
        cmd.env_remove("QBO_REALM_ID")
            .env_remove("QBO_REFRESH_TOKEN")
            .env("QBO_TOKEN_STORE", "postgres")
            .env("QBO_TOKEN_KEY", KEY);
        cmd
    }
}

fn print_run(run: &FleetRun, companies: usize, invoices: u64, targets: &mut Targets) {
    let wall = run.wall.as_secs_f64().max(1e-9);
    let worker_cpu: f64 = run.workers.iter().map(|(m, _)| m.cpu.as_secs_f64()).sum();
    for (n, (m, rows)) in run.workers.iter().enumerate() {
        outln!(
            "        worker {}: {:>8} rows in {:>7.2} s = {:>7.0} rows/s, CPU {:.1} s, peak RSS {:.1} MB",
            n + 1,
            rows,
            m.wall.as_secs_f64(),
            *rows as f64 / m.wall.as_secs_f64().max(1e-9),
            m.cpu.as_secs_f64(),
            m.peak_rss as f64 / (1024.0 * 1024.0),
        );
    }
    let expected = companies as u64 * invoices;
    let mut line = format!(
        "        all:      {:>8} rows in {:>7.2} s = {:>7.0} rows/s",
        run.rows,
        wall,
        run.rows as f64 / wall
    );
    if run.rows != expected {
        line.push_str(&format!("  WRONG: the sandbox holds {expected} records"));
    }
    outln!("{line}");
    let rpm = run.requests as f64 * 60.0 / wall;
    let bound = companies as f64 * RPM as f64;
    outln!(
        "        requests: {} in {:.2} s = {:.0}/min (bound {companies} x {RPM} = {bound:.0}/min); 429s {}; busiest company: {} in a minute, {} in flight",
        run.requests,
        wall,
        rpm,
        run.throttled,
        run.peak_rpm,
        run.peak_in_flight
    );
    // A run shorter than QBO's minute lets each company spend a whole minute's budget at
    // once: its rate is not bounded by 500/min and says little.
    if wall < 120.0 {
        outln!("        (under two minutes: the rate limit's rolling minute barely binds; use a bigger --fleet-invoices for a figure that means something)");
    }
    let cpu_bound = match &run.machine {
        Some(cpu) => {
            let sandbox = run.sandbox_cpu.as_secs_f64();
            let postgres = run.postgres_cpu.map(|d| d.as_secs_f64());
            let other =
                (cpu.busy.as_secs_f64() - worker_cpu - sandbox - postgres.unwrap_or(0.0)).max(0.0);
            let split = format!(
                "qbo workers {worker_cpu:.1} s, the sandbox {sandbox:.1} s, Postgres {}, other processes {other:.1} s",
                postgres.map_or("unknown".to_string(), |p| format!("{p:.1} s"))
            );
            outln!(
                "        CPU: the machine's {} cores were {:.0}% busy over {wall:.0} s: {split}; each worker {:.0}% of one core",
                cpu.cores,
                cpu.busy_share() * 100.0,
                worker_cpu / wall / run.workers.len().max(1) as f64 * 100.0,
            );
            (cpu.busy_share() >= 0.9).then(|| {
                format!(
                    "CPU-bound: the machine's {} cores were {:.0}% busy ({split})",
                    cpu.cores,
                    cpu.busy_share() * 100.0,
                )
            })
        }
        None => None,
    };
    let ratio = rpm / (0.9 * bound);
    let per_worker: Vec<String> = run
        .workers
        .iter()
        .map(|(m, rows)| format!("{:.0}", *rows as f64 / m.wall.as_secs_f64().max(1e-9)))
        .collect();
    let text = format!(
        "(6) fleet requests/min / (0.9 x {companies} x {RPM}) = {ratio:.2}, target >= 1{}; rows/s per worker {}",
        cpu_bound
            .as_deref()
            .map(|why| format!(" unless CPU-bound ({why})"))
            .unwrap_or_default(),
        per_worker.join(", ")
    );
    targets.check(text, ratio >= 1.0 || cpu_bound.is_some());
}

/// "worker stopped (...): N windows, M companies, R rows loaded" -> R.
fn worker_rows(stdout: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.starts_with("worker stopped"))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" rows loaded")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn loaded_rows(url: &str) -> Result<u64, BenchError> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM raw.qb_invoices")
        .fetch_one(&mut db)
        .await?;
    Ok(n.max(0) as u64)
}

/// User + system CPU of `/proc/<who>/stat`, and with `children` that of its reaped children
/// (a Postgres backend that exits adds its time to the postmaster's).
fn process_cpu(who: &str, children: bool) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(if children { 4 } else { 2 })
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Some(Duration::from_millis(ticks * 10))
}

/// The CPU every `postgres` process on this machine has used (with reaped backends'), or
/// None when there is none to see (a server on another machine).
fn postgres_cpu() -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            if let Some(cpu) = process_cpu(pid, true) {
                total += cpu;
                seen = true;
            }
        }
    }
    seen.then_some(total)
}

/// The whole machine's CPU time, from /proc/stat.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    cores: usize,
    busy: Duration,
    total: Duration,
}

impl CpuUse {
    fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            cores: self.cores,
            busy: self.busy.saturating_sub(before.busy),
            total: self.total.saturating_sub(before.total),
        }
    }

    fn busy_share(&self) -> f64 {
        self.busy.as_secs_f64() / self.total.as_secs_f64().max(1e-9)
    }
}

/// Every core's busy and total time so far (None where /proc is not available).
fn machine_cpu() -> Option<CpuUse> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_proc_stat(stat: &str) -> Option<CpuUse> {
    let cores = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let first = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = first
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let tick = |t: u64| Duration::from_millis(t * 10);
    Some(CpuUse {
        cores: cores.max(1),
        busy: tick(total - idle),
        total: tick(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_workers_rows_and_the_machines_cpu() {
        assert_eq!(
            worker_rows(
                "worker stopped (the queue is empty): 12 windows, 3 companies, 4500 rows loaded\n"
            ),
            4500
        );
        assert_eq!(worker_rows("nothing"), 0);
        let cpu = parse_proc_stat(
            "cpu  300 0 100 500 100 0 0 0 0 0\ncpu0 150 0 50 250 50 0 0 0 0 0\ncpu1 150 0 50 250 50 0 0 0 0 0\n",
        )
        .unwrap();
        assert_eq!(cpu.cores, 2);
        assert_eq!(cpu.busy, Duration::from_secs(4));
        assert_eq!(cpu.total, Duration::from_secs(10));
        assert!((cpu.busy_share() - 0.4).abs() < 1e-9);
    }
}
