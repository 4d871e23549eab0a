//! The order of the benchmark: per size, a sandbox company, then each contender against it
//! in a throwaway database; then the API-bound run; then the API cost section (`cost`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;
use sqlx::{Connection, PgConnection};
use tokio::process::Command;

use super::api::ApiSpec;
use super::child::{run_measured, Measured};
use super::copy::{CopySpec, FetchCopySpec};
use super::print::{self, Figure, Targets};
use super::replay::Replay;
use super::seed::SeedSpec;
use super::{entities, BenchArgs, BenchError, ChildReport, Section, CHILD_ENV, SPEC_ENV};
use qbo_sandbox::{Faults, Sandbox, SandboxConfig};

/// Records are last updated during 2024 (company time); in UTC that runs into 2025-01-01.
pub(super) fn data_start() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default()
}
fn data_end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default()
}
pub(super) fn range_end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default()
}

/// Splits `n` records 2000:300:150 like the sandbox's default company.
pub fn company(n: u64) -> (usize, usize, usize) {
    let customers = (n * 300 / 2450) as usize;
    let items = ((n * 150 / 2450) as usize).max(1);
    let invoices = (n as usize).saturating_sub(customers + items);
    (invoices, customers.max(1), items)
}

/// The sandbox, and where its query API is reached (itself, or the replay cache before it).
pub(super) struct Api<'a> {
    pub sandbox: &'a Sandbox,
    pub base_url: String,
}

/// A company of `n` records of the measured entities, and of the others only what those
/// refer to (the chart of accounts, say), so the sandbox does not generate data nobody loads.
pub(super) fn sandbox_config(n: u64) -> SandboxConfig {
    let (invoices, customers, items) = company(n);
    let mut cfg = SandboxConfig {
        invoices,
        customers,
        items,
        data_start: data_start(),
        data_end: data_end(),
        ..SandboxConfig::default()
    };
    let measured = entities();
    for e in qbo_core::entities::ENTITIES
        .iter()
        .filter(|e| !measured.contains(e))
    {
        cfg.counts.insert(e.qbo_name.to_string(), 0);
        if cfg.validate().is_err() {
            cfg.counts.remove(e.qbo_name);
        }
    }
    cfg
}

pub(crate) struct Bench {
    pub args: BenchArgs,
    pub qbo: PathBuf,
    pub work: PathBuf,
    admin: url::Url,
    tag: String,
}

/// Runs everything the arguments ask for and prints it. A missed target is a figure like any
/// other, not a failure of the bench.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let args = args.effective();
    let bench = Bench::new(args)?;
    print::header(&bench.qbo, &bench.admin).await;
    let mut targets = Targets::default();
    if bench.args.runs(Section::Sizes) {
        for &n in &bench.args.sizes {
            bench.size(n, &mut targets).await?;
        }
    }
    if bench.args.runs(Section::ApiBound) {
        bench.api_bound(&mut targets).await?;
    }
    if bench.args.runs(Section::ApiCost) {
        bench.api_cost(&mut targets).await?;
    }
    if bench.args.runs(Section::Fleet) {
        bench.fleet(&mut targets).await?;
    }
    if bench.args.runs(Section::Staging) {
        let figures = bench.staging(bench.args.staging_invoices).await?;
        print::staging(&figures);
    }
    targets.print();
    let _ = std::fs::remove_dir_all(&bench.work);
    Ok(())
}

impl Bench {
    fn new(args: BenchArgs) -> Result<Bench, BenchError> {
        let qbo = match &args.qbo {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| BenchError::Io("finding qbo-bench".into(), e))?
                .with_file_name("qbo"),
        };
        if !qbo.is_file() {
            return Err(BenchError::Usage(format!(
                "no qbo binary at {}; run `cargo build --release` or pass --qbo",
                qbo.display()
            )));
        }
        let admin = url::Url::parse(&args.database_url)
            .map_err(|e| BenchError::Usage(format!("DATABASE_URL: {e}")))?;
        let tag = format!("{}", std::process::id());
        let work = std::env::temp_dir().join(format!("qbo-bench-{tag}"));
        std::fs::create_dir_all(&work)
            .map_err(|e| BenchError::Io(work.display().to_string(), e))?;
        Ok(Bench {
            args,
            qbo,
            work,
            admin,
            tag,
        })
    }

    async fn size(&self, n: u64, targets: &mut Targets) -> Result<(), BenchError> {
        let (invoices, customers, items) = company(n);
        let sandbox = Sandbox::start(sandbox_config(n)).await?;
        // No latency and no rate limit: what is measured is qbo, not the API.
        sandbox.set_faults(Faults {
            max_requests_per_minute: 0,
            ..Faults::default()
        });
        print::size_header(n, invoices, customers, items, !self.args.live);
        let replay = match self.args.live {
            true => None,
            false => Some(Replay::start(sandbox.api_base_url()).await?),
        };
        let api = Api {
            sandbox: &sandbox,
            base_url: replay
                .as_ref()
                .map_or_else(|| sandbox.api_base_url(), Replay::base_url),
        };
        let result = self.contenders(n, &api, replay.as_ref(), targets).await;
        drop(replay);
        sandbox.shutdown().await;
        result
    }

    async fn contenders(
        &self,
        n: u64,
        api: &Api<'_>,
        replay: Option<&Replay>,
        targets: &mut Targets,
    ) -> Result<(), BenchError> {
        // Contender (3f) reads the pages qbo will read, so it goes first and records them.
        if let Some(r) = replay {
            r.record(true);
        }
        let copies = match (self.args.skip_copy, replay) {
            (true, None) => None,
            _ => Some(self.copy(n, api).await?),
        };
        if let Some(r) = replay {
            if !self.args.skip_baseline {
                // An unmeasured run of the seed's method records its (smaller) pages too.
                self.seed(n, api).await?;
            }
            r.record(false);
            outln!(
                "  recorded the sandbox's answers to {} page requests; they are replayed to the runs below",
                r.pages()
            );
        }
        let qbo = self.qbo_per_entity(n, api, &[]).await?;
        qbo.print(
            "(1)",
            &format!(
                "qbo backfill, default options (--concurrency {})",
                qbo_core::backfill::DEFAULT_CONCURRENCY
            ),
        );
        let mut best = qbo.clone();
        if self.args.also_concurrency > 0
            && self.args.also_concurrency != qbo_core::backfill::DEFAULT_CONCURRENCY
        {
            let c = self.args.also_concurrency.to_string();
            let more = self.qbo_per_entity(n, api, &["--concurrency", &c]).await?;
            more.print("(1c)", &format!("qbo backfill --concurrency {c}"));
            if more.rows_per_sec() > best.rows_per_sec() {
                best = more;
            }
        }
        targets.qbo_memory(n, qbo.peak_rss);
        if !self.args.skip_baseline {
            let seed = self.seed(n, api).await?;
            seed.print(
                "(2)",
                "seed method: 7-day chunks, 100/page, 1 request at a time, 1 upsert per row",
            );
            targets.vs_seed(n, &qbo, &best, &seed);
        }
        if let (false, Some((fetched, copied))) = (self.args.skip_copy, copies) {
            copied.print(
                "(3)",
                "COPY of the same payloads into an unindexed jsonb table",
            );
            fetched.print(
                "(3f)",
                "fetch from the sandbox like qbo + one COPY stream (the live sandbox, rendering)",
            );
            targets.vs_copy(n, &qbo, &best, &copied, &fetched);
        }
        Ok(())
    }

    /// A database of its own for one contender.
    pub(super) async fn create_db(&self, label: &str) -> Result<(String, String), BenchError> {
        let name = format!("qbo_bench_{}_{label}", self.tag);
        let mut admin = PgConnection::connect(self.admin.as_str()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let mut url = self.admin.clone();
        url.set_path(&format!("/{name}"));
        Ok((name, url.to_string()))
    }

    pub(super) async fn drop_db(&self, name: &str) {
        if let Ok(mut admin) = PgConnection::connect(self.admin.as_str()).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }

    /// `qbo <args>` against the sandbox and a database, as a user would run it.
    pub(super) fn qbo_cmd(
        &self,
        api: &Api<'_>,
        db_url: &str,
        label: &str,
        args: &[&str],
    ) -> Command {
        let sandbox = api.sandbox;
        let mut cmd = Command::new(&self.qbo);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db_url)
            .env("QBO_CLIENT_ID", sandbox.client_id())
            .env("QBO_CLIENT_SECRET", sandbox.client_secret())
            .env("QBO_REALM_ID", sandbox.realm_id())
            .env("QBO_REFRESH_TOKEN", sandbox.current_refresh_token())
            .env("QBO_API_BASE_URL", &api.base_url)
            .env("QBO_TOKEN_URL", sandbox.token_url())
            .env(
                "QBO_TOKEN_STORE",
                format!(
                    "file:{}",
                    self.work.join(format!("tokens-{label}.json")).display()
                ),
            );
        cmd
    }

    /// (1): one `qbo backfill <entity>` per entity, one after the other, into one database.
    async fn qbo_per_entity(
        &self,
        n: u64,
        api: &Api<'_>,
        extra: &[&str],
    ) -> Result<Figure, BenchError> {
        let label = format!("qbo{}_{n}", extra.join("").replace('-', ""));
        let (db, url) = self.create_db(&label).await?;
        let mut total = Figure::default();
        for e in entities() {
            let (start, end) = (data_start().to_string(), range_end().to_string());
            let mut args = vec![
                "backfill",
                e.cli_name,
                "--start",
                &start,
                "--end",
                &end,
                "--no-rate-limit",
            ];
            args.extend_from_slice(extra);
            let cmd = self.qbo_cmd(api, &url, &label, &args);
            let log = self.work.join(format!("{label}-{}.log", e.cli_name));
            let m = run_measured(cmd, "qbo backfill", &log).await?;
            total.add(&m, 0, summary_requests(&m.stdout));
        }
        total.rows = count_rows(&url, None).await?;
        self.drop_db(&db).await;
        total.expected = Some(n);
        Ok(total)
    }

    pub(super) fn api_spec(&self, api: &Api<'_>) -> ApiSpec {
        let sandbox = api.sandbox;
        ApiSpec {
            api_base_url: api.base_url.clone(),
            token_url: sandbox.token_url(),
            client_id: sandbox.client_id().into(),
            client_secret: sandbox.client_secret().into(),
            realm_id: sandbox.realm_id().into(),
            refresh_token: sandbox.current_refresh_token(),
            time_scale: 1,
        }
    }

    /// This program again, as the child contender `kind`.
    pub(super) async fn child(
        &self,
        kind: &str,
        spec: &impl serde::Serialize,
        log: &Path,
    ) -> Result<(Measured, ChildReport), BenchError> {
        let m = run_measured(child_cmd(kind, spec)?, kind, log).await?;
        let line = m.stdout.lines().last().unwrap_or_default();
        let report = serde_json::from_str(line).map_err(|e| BenchError::NoResult {
            what: kind.into(),
            detail: format!("{e}: {line}"),
        })?;
        Ok((m, report))
    }

    /// (2): the seed's method, on the first `--baseline-rows` records.
    async fn seed(&self, n: u64, api: &Api<'_>) -> Result<Figure, BenchError> {
        let (db, url) = self.create_db(&format!("seed_{n}")).await?;
        let spec = SeedSpec {
            api: self.api_spec(api),
            db_url: url,
            start: data_start(),
            end: range_end(),
            max_rows: self.args.baseline_rows,
            entities: entities().iter().map(|e| e.cli_name.to_string()).collect(),
        };
        let log = self.work.join(format!("seed-{n}.log"));
        let result = self.child("seed", &spec, &log).await;
        self.drop_db(&db).await;
        let (m, report) = result?;
        let mut f = Figure::from_child(&m, report);
        if self.args.baseline_rows >= n {
            f.expected = Some(n);
        }
        Ok(f)
    }

    /// (3f) then (3): fetch + COPY, and COPY alone of the file it wrote.
    async fn copy(&self, n: u64, api: &Api<'_>) -> Result<(Figure, Figure), BenchError> {
        let (db, url) = self.create_db(&format!("copy_{n}")).await?;
        let file = self.work.join(format!("payloads-{n}.copy"));
        let fetch = FetchCopySpec {
            api: self.api_spec(api),
            db_url: url.clone(),
            start: data_start(),
            end: range_end(),
            chunk_days: 7,
            concurrency: qbo_core::backfill::DEFAULT_CONCURRENCY,
            file: file.clone(),
        };
        let fetched = self
            .child(
                "fetch-copy",
                &fetch,
                &self.work.join(format!("fetch-copy-{n}.log")),
            )
            .await;
        let copied = match &fetched {
            Ok(_) => {
                let spec = CopySpec {
                    db_url: url,
                    file: file.clone(),
                    table: "bench_copy.copied".into(),
                };
                Some(
                    self.child("copy", &spec, &self.work.join(format!("copy-{n}.log")))
                        .await,
                )
            }
            Err(_) => None,
        };
        let _ = std::fs::remove_file(&file);
        self.drop_db(&db).await;
        let (fm, fr) = fetched?;
        let (cm, cr) = copied.unwrap_or_else(|| Err(BenchError::Usage("no payloads".into())))?;
        let mut f = Figure::from_child(&fm, fr);
        f.expected = Some(n);
        let mut c = Figure::from_child(&cm, cr);
        c.expected = Some(n);
        Ok((f, c))
    }

    /// (4): invoices under QBO's real limits: latency on every request, N per minute.
    async fn api_bound(&self, targets: &mut Targets) -> Result<(), BenchError> {
        let (invoices, _, _) = company(self.args.api_records);
        let sandbox = Sandbox::start(sandbox_config(self.args.api_records)).await?;
        sandbox.set_faults(Faults {
            latency_ms: self.args.api_latency_ms,
            max_requests_per_minute: self.args.api_rpm,
            ..Faults::default()
        });
        let api = Api {
            sandbox: &sandbox,
            base_url: sandbox.api_base_url(),
        };
        let result = self.api_bound_run(&api, invoices as u64).await;
        let stats = sandbox.stats();
        sandbox.shutdown().await;
        let figure = result?;
        let latency = Duration::from_millis(self.args.api_latency_ms);
        let minimum = print::minimum_wall(
            stats.query_requests,
            self.args.api_rpm,
            self.args.api_concurrency,
            latency,
        );
        print::api_bound(
            &figure,
            &stats,
            self.args.api_rpm,
            self.args.api_concurrency,
            self.args.api_latency_ms,
            self.args.api_chunk_days,
            minimum,
        );
        targets.api_bound(figure.wall, minimum, stats.throttled);
        Ok(())
    }

    async fn api_bound_run(&self, api: &Api<'_>, invoices: u64) -> Result<Figure, BenchError> {
        let (db, url) = self.create_db("api").await?;
        let (c, days, rpm) = (
            self.args.api_concurrency.to_string(),
            self.args.api_chunk_days.to_string(),
            self.args.api_rpm.to_string(),
        );
        let (start, end) = (data_start().to_string(), range_end().to_string());
        let args = [
            "backfill",
            "invoices",
            "--start",
            &start,
            "--end",
            &end,
            "--concurrency",
            &c,
            "--chunk-days",
            &days,
            "--requests-per-minute",
            &rpm,
        ];
        let cmd = self.qbo_cmd(api, &url, "api", &args);
        let result =
            run_measured(cmd, "qbo backfill (API-bound)", &self.work.join("api.log")).await;
        let rows = match &result {
            Ok(_) => count_rows(&url, Some("invoices")).await,
            Err(_) => Ok(0),
        };
        self.drop_db(&db).await;
        let m = result?;
        let mut f = Figure::default();
        f.add(&m, 0, summary_requests(&m.stdout));
        f.rows = rows?;
        f.expected = Some(invoices);
        Ok(f)
    }
}

/// This program again, as the child contender `kind` given `spec`.
pub(super) fn child_cmd(kind: &str, spec: &impl serde::Serialize) -> Result<Command, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::Io("finding qbo-bench".into(), e))?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, kind)
        .env(SPEC_ENV, serde_json::to_string(spec).unwrap_or_default());
    Ok(cmd)
}

/// Rows in the raw tables of the measured entities (or of one).
async fn count_rows(url: &str, only: Option<&str>) -> Result<u64, BenchError> {
    let mut db = PgConnection::connect(url).await?;
    let mut total = 0i64;
    for e in entities()
        .into_iter()
        .filter(|e| only.is_none_or(|o| o == e.cli_name))
    {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", e.table))
            .fetch_one(&mut db)
            .await?;
        total += n;
    }
    Ok(total as u64)
}

/// Requests from qbo's per-entity summary lines (`..., requests 161 (minimum 1, 161.0x),
/// ...`); `all`'s `total:` line repeats their sum and is left out.
fn summary_requests(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|l| !l.starts_with("total: "))
        .flat_map(|l| l.split(", "))
        .filter_map(|part| part.strip_prefix("requests "))
        .filter_map(|n| n.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companies_keep_the_sandbox_mix_and_size() {
        assert_eq!(company(2450), (2000, 300, 150));
        let (i, c, t) = company(500_000);
        assert_eq!(i + c + t, 500_000);
    }

    #[test]
    fn requests_are_read_from_summary_lines() {
        let out = "invoices: run x success - 3 chunks (3 success, 0 error, 0 not done), 10 rows (10 inserted, 0 updated, 0 skipped), requests 12 (minimum 1, 12.0x), 0 retries, 1.0 s, 10 rows/s\n\
                   bills: run y success - 1 chunks (1 success, 0 error, 0 not done), 0 rows (0 inserted, 0 updated, 0 skipped), requests 1 (minimum 1, 1.0x), 0 retries, 0.1 s, 0 rows/s\n\
                   total: 2 entities, 10 rows (10 inserted, 0 updated, 0 skipped), requests 13 (minimum 2, 6.5x), 0 retries, 1.0 s\n";
        assert_eq!(summary_requests(out), 13);
    }
}
