//! Running one contender as a process of its own, so its peak memory is its own: the wall
//! time from spawn to exit, and the peak resident set (`VmHWM`) polled from /proc until it
//! exits. `VmHWM` only grows, so polling misses at most what the last few milliseconds added.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::BenchError;

/// How a child process went.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall: Duration,
    /// Peak resident set in bytes (0 where /proc is not available).
    pub peak_rss: u64,
    /// CPU time (user + system) of the child, as last seen before it exited.
    pub cpu: Duration,
    /// CPU time this process (the sandbox, mostly) spent meanwhile.
    pub sandbox_cpu: Duration,
    pub stdout: String,
    /// It was killed at its time limit, unfinished.
    pub stopped: bool,
}

/// Runs `cmd` to completion, its stderr going to `log` (kept for post-mortems).
pub async fn run_measured(cmd: Command, what: &str, log: &Path) -> Result<Measured, BenchError> {
    run_measured_within(cmd, what, log, None).await
}

/// The same, killing the process once it has run for `limit` (then `stopped` is set).
pub async fn run_measured_within(
    mut cmd: Command,
    what: &str,
    log: &Path,
    limit: Option<Duration>,
) -> Result<Measured, BenchError> {
    let stderr =
        std::fs::File::create(log).map_err(|e| BenchError::Io(log.display().to_string(), e))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let started = Instant::now();
    let own_cpu_before = cpu_time("self").unwrap_or_default();
    let mut child = cmd
        .spawn()
        .map_err(|e| BenchError::Io(format!("starting {what}"), e))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let reader = tokio::spawn(async move {
        let mut out = String::new();
        if let Some(mut s) = stdout {
            use tokio::io::AsyncReadExt;
            let _ = s.read_to_string(&mut out).await;
        }
        out
    });
    let mut peak_rss = 0;
    let mut cpu = Duration::ZERO;
    let mut stopped = false;
    let status = loop {
        if !stopped && limit.is_some_and(|l| started.elapsed() >= l) {
            let _ = child.start_kill();
            stopped = true;
        }
        if let Some(pid) = pid {
            peak_rss = peak_rss.max(vm_hwm(pid).unwrap_or(0));
            cpu = cpu.max(cpu_time(&pid.to_string()).unwrap_or_default());
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(BenchError::Io(format!("waiting for {what}"), e)),
        }
    };
    let wall = started.elapsed();
    let sandbox_cpu = cpu_time("self")
        .unwrap_or_default()
        .saturating_sub(own_cpu_before);
    let stdout = reader.await.unwrap_or_default();
    if !status.success() && !stopped {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        return Err(BenchError::Child {
            what: what.to_string(),
            status: status.to_string(),
            log: log.display().to_string(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(Measured {
        wall,
        peak_rss,
        cpu,
        sandbox_cpu,
        stdout,
        stopped,
    })
}

/// `VmHWM` of a live process, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Linux's clock tick (`getconf CLK_TCK`), 100 on every mainstream architecture.
const TICKS_PER_SEC: u64 = 100;

/// User + system CPU time of `/proc/<who>/stat` (`who` a pid or `self`).
fn cpu_time(who: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (user + system) * 1000 / TICKS_PER_SEC,
    ))
}
