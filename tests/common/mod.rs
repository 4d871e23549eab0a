//! Shared test helpers: a fresh database per test on a real Postgres, a sandbox QBO per
//! test on a free loopback port, and the real `qbo` binary wired to both.
#![allow(dead_code)]

pub mod pg_proxy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use chrono::NaiveDate;
use qbo::sandbox::{Faults, RealmStats, Sandbox, SandboxConfig};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::process::Command;

/// Where tests create their databases. Set QBO_TEST_DATABASE_URL (or DATABASE_URL) to a
/// server you can CREATE DATABASE on; with `--features testcontainers` and Docker, a
/// throwaway Postgres is started instead when neither is set.
async fn admin_url() -> String {
    if let Ok(url) =
        std::env::var("QBO_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL"))
    {
        return url;
    }
    container_url().await
}

#[cfg(feature = "testcontainers")]
async fn container_url() -> String {
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::ContainerAsync;
    use tokio::sync::OnceCell;
    static PG: OnceCell<(ContainerAsync<Postgres>, String)> = OnceCell::const_new();
    let (_, url) = PG
        .get_or_init(|| async {
            let c = Postgres::default()
                .start()
                .await
                .expect("start a Postgres container (is Docker running?)");
            let port = c.get_host_port_ipv4(5432).await.expect("container port");
            (
                c,
                format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
            )
        })
        .await;
    url.clone()
}

#[cfg(not(feature = "testcontainers"))]
async fn container_url() -> String {
    panic!(
        "no database for the tests: set QBO_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
         (any server where the user may CREATE DATABASE), or run with --features testcontainers and Docker"
    )
}

fn with_db(url: &str, db: &str) -> String {
    let mut u = url::Url::parse(url).expect("database URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

/// A database of its own for one test, dropped at the end when possible.
pub struct TestDb {
    pub url: String,
    pub name: String,
    admin: String,
}

impl TestDb {
    /// A name and URL only: the database does not exist until qbo creates it.
    pub async fn unborn() -> Self {
        let admin = admin_url().await;
        let name = format!("qbo_test_{}", uuid::Uuid::new_v4().simple());
        TestDb {
            url: with_db(&admin, &name),
            name,
            admin,
        }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    pub async fn exists(&self) -> bool {
        let mut c = PgConnection::connect(&self.admin)
            .await
            .expect("admin connection");
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(&self.name)
        .fetch_one(&mut c)
        .await
        .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Best effort, on a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A small company whose records were all last updated in 2024.
pub fn small_company() -> SandboxConfig {
    SandboxConfig {
        invoices: 240,
        customers: 60,
        items: 30,
        data_start: date("2024-01-01"),
        data_end: date("2024-03-30"),
        ..SandboxConfig::default()
    }
}

/// `n` small companies (realms) in one sandbox, each with its own data, tokens and limits.
pub fn small_companies(n: usize) -> SandboxConfig {
    SandboxConfig {
        companies: n,
        ..small_company()
    }
}

pub async fn sandbox(cfg: SandboxConfig) -> Sandbox {
    Sandbox::start(cfg).await.expect("start the sandbox")
}

/// Test world: one sandbox (one company unless the config asks for more), one database,
/// one token file. `sandbox` speaks for the first company; `realm(id)` for any.
pub struct World {
    pub sandbox: Sandbox,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    /// The first company's refresh token as issued at start.
    pub initial_refresh_token: String,
    /// Every company's refresh token as issued at start, by realm id.
    pub initial_refresh_tokens: BTreeMap<String, String>,
}

impl World {
    pub async fn new(cfg: SandboxConfig) -> Self {
        let sandbox = sandbox(cfg).await;
        let initial_refresh_token = sandbox.current_refresh_token();
        let initial_refresh_tokens = sandbox
            .realm_ids()
            .into_iter()
            .map(|id| {
                let token = sandbox.for_realm(&id).unwrap().current_refresh_token();
                (id, token)
            })
            .collect();
        World {
            sandbox,
            db: TestDb::unborn().await,
            dir: tempfile::tempdir().unwrap(),
            initial_refresh_token,
            initial_refresh_tokens,
        }
    }

    /// Every company's realm id, the first (`sandbox`'s) first.
    pub fn realm_ids(&self) -> Vec<String> {
        self.sandbox.realm_ids()
    }

    /// A sandbox handle on company `realm_id` (records, edits, tokens, its counters).
    #[track_caller]
    pub fn realm(&self, realm_id: &str) -> Sandbox {
        self.sandbox
            .for_realm(realm_id)
            .unwrap_or_else(|| panic!("the sandbox serves no realm {realm_id}"))
    }

    /// A refresh token of `realm_id` that works now (its latest rotation).
    pub fn refresh_token(&self, realm_id: &str) -> String {
        self.realm(realm_id).current_refresh_token()
    }

    /// The user disconnects the app from `realm_id`: its refresh tokens answer
    /// `invalid_grant`, its access tokens 401; the other companies are untouched.
    pub fn revoke(&self, realm_id: &str) {
        self.realm(realm_id).revoke_tokens();
    }

    /// `realm_id`'s own counters (requests, peak per minute, peak in flight, refreshes,
    /// invalid_grants, retired token uses, ...).
    pub fn realm_stats(&self, realm_id: &str) -> RealmStats {
        self.realm(realm_id).realm_stats()
    }

    /// `qbo <args>` for company `realm_id`: its realm id and initial refresh token in the
    /// environment instead of the first company's (the token file holds every realm).
    pub fn qbo_for(&self, realm_id: &str, args: &[&str]) -> Command {
        let mut cmd = self.qbo(args);
        cmd.env("QBO_REALM_ID", realm_id)
            .env("QBO_REFRESH_TOKEN", &self.initial_refresh_tokens[realm_id]);
        cmd
    }

    pub async fn run_for(&self, realm_id: &str, args: &[&str]) -> Run {
        Run::from(
            self.qbo_for(realm_id, args)
                .output()
                .await
                .expect("run qbo"),
        )
    }

    /// `qbo auth import --realm-id R` with R's current refresh token on stdin: stores its
    /// tokens and adds it to the companies, as an operator connecting it would.
    pub async fn import_refresh_token(&self, realm_id: &str) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut cmd = self.qbo(&["auth", "import", "--realm-id", realm_id]);
        cmd.env_remove("QBO_REFRESH_TOKEN").stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("run qbo auth import");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(self.refresh_token(realm_id).as_bytes())
            .await
            .unwrap();
        drop(stdin);
        Run::from(child.wait_with_output().await.unwrap())
    }

    /// Connects every company of the sandbox (`import_refresh_token` each), failing the test
    /// if one is refused.
    pub async fn import_all_companies(&self) {
        for realm in self.realm_ids() {
            self.import_refresh_token(&realm).await.assert_code(0);
        }
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("tokens.json")
    }

    /// `qbo <args>` against this world's sandbox and database, with fast retries (and a
    /// 20 ms pause after a 429 without Retry-After instead of Intuit's minute).
    pub fn qbo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbo"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db.url)
            .env("QBO_CLIENT_ID", self.sandbox.client_id())
            .env("QBO_CLIENT_SECRET", self.sandbox.client_secret())
            .env("QBO_REALM_ID", self.sandbox.realm_id())
            .env("QBO_REFRESH_TOKEN", &self.initial_refresh_token)
            .env("QBO_API_BASE_URL", self.sandbox.api_base_url())
            .env("QBO_TOKEN_URL", self.sandbox.token_url())
            .env("QBO_AUTHORIZE_URL", self.sandbox.authorize_url())
            .env(
                "QBO_TOKEN_STORE",
                format!("file:{}", self.token_file().display()),
            )
            .env("QBO_RETRY_BASE_MS", "20")
            .env("QBO_THROTTLE_PAUSE_MS", "20")
            .env("QBO_LEASE_SECS", "3")
            // Tests start many processes at once against one Postgres (max_connections 100):
            // a small pool each, which also proves a small pool never deadlocks.
            .env("QBO_DB_POOL_MAX", "4")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        let out = self.qbo(args).output().await.expect("run qbo");
        Run::from(out)
    }

    /// `qbo <args>` with some variables changed: `Some(v)` sets, `None` removes.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
        let mut cmd = self.qbo(args);
        for (name, value) in env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        Run::from(cmd.output().await.expect("run qbo"))
    }

    pub async fn backfill(&self, entity: &str, start: &str, end: &str, extra: &[&str]) -> Run {
        let mut args = vec!["backfill", entity, "--start", start, "--end", end];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    pub fn faults(&self, f: Faults) {
        self.sandbox.set_faults(f);
    }

    /// Id -> SyncToken of every record the sandbox holds (inactive ones included).
    pub fn sandbox_versions(&self, qbo_entity: &str) -> BTreeMap<String, String> {
        self.sandbox_versions_of(self.sandbox.realm_id(), qbo_entity)
    }

    /// Id -> SyncToken of every record company `realm_id` holds (inactive ones included).
    pub fn sandbox_versions_of(
        &self,
        realm_id: &str,
        qbo_entity: &str,
    ) -> BTreeMap<String, String> {
        self.realm(realm_id)
            .records(qbo_entity)
            .into_iter()
            .map(|r| {
                let r = qbo::sandbox::record_body(&r);
                (
                    r["Id"].as_str().unwrap().to_string(),
                    r["SyncToken"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Id -> SyncToken of every row of a raw table for this realm.
    pub async fn raw_versions(&self, table: &str) -> BTreeMap<String, String> {
        self.raw_versions_of(self.sandbox.realm_id(), table).await
    }

    /// Id -> SyncToken of every row of a raw table for company `realm_id`.
    pub async fn raw_versions_of(&self, realm_id: &str, table: &str) -> BTreeMap<String, String> {
        let pool = self.db.pool().await;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id, sync_token FROM {table} WHERE realm_id = $1"
        ))
        .bind(realm_id)
        .fetch_all(&pool)
        .await
        .unwrap();
        let n = rows.len();
        let map: BTreeMap<_, _> = rows.into_iter().collect();
        assert_eq!(map.len(), n, "duplicate ids in {table}");
        map
    }

    /// Every registered entity's raw table holds exactly the sandbox's ids and versions.
    pub async fn assert_raw_matches_sandbox(&self) {
        self.assert_realm_raw_matches_sandbox(self.sandbox.realm_id())
            .await;
    }

    /// Every registered entity's raw table holds, for company `realm_id`, exactly that
    /// company's ids and versions in the sandbox.
    pub async fn assert_realm_raw_matches_sandbox(&self, realm_id: &str) {
        for e in qbo::entities::ENTITIES {
            let expected = self.sandbox_versions_of(realm_id, e.qbo_name);
            let got = self.raw_versions_of(realm_id, e.table).await;
            assert_eq!(
                got.len(),
                expected.len(),
                "{realm_id} {}: row count",
                e.table
            );
            assert_eq!(got, expected, "{realm_id} {}: ids and versions", e.table);
        }
    }

    /// Every payload in `table` is the sandbox's record, field for field (jsonb keeps values,
    /// not text, so this compares parsed JSON).
    pub async fn assert_payloads_match_sandbox(&self, qbo_name: &str, table: &str) {
        let expected: BTreeMap<String, serde_json::Value> = self
            .sandbox
            .records(qbo_name)
            .into_iter()
            .map(|r| {
                (
                    qbo::sandbox::record_body(&r)["Id"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    r,
                )
            })
            .collect();
        let pool = self.db.pool().await;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id, payload::text FROM {table} WHERE realm_id = $1"
        ))
        .bind(self.sandbox.realm_id())
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), expected.len(), "{table}: row count");
        for (id, text) in rows {
            let got: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(Some(&got), expected.get(&id), "{table}: payload of {id}");
        }
    }

    /// (status, attempts) per chunk of the latest run of `entity`.
    pub async fn chunk_states(&self, entity: &str) -> Vec<(String, i32)> {
        let pool = self.db.pool().await;
        sqlx::query_as(
            "SELECT status, attempts FROM ops.backfill_report WHERE run_id = (
                 SELECT run_id FROM ops.backfill_runs WHERE entity = $1 ORDER BY started_at DESC LIMIT 1)
             ORDER BY chunk_index",
        )
        .bind(entity)
        .fetch_all(&pool)
        .await
        .unwrap()
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        // The errors first: a long stderr is often cut in the middle where CI shows it.
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains(" ERROR ") || l.starts_with("error") || l.contains("Error:"))
            .collect();
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\n--- errors in stderr\n{}\n--- stdout\n{}\n--- stderr\n{}",
            errors.join("\n"),
            self.stdout,
            self.stderr
        );
        self
    }
}

impl World {
    pub async fn assert_raw_matches_sandbox_entity(&self, qbo_name: &str, table: &str) {
        let expected = self.sandbox_versions(qbo_name);
        let got = self.raw_versions(table).await;
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{table}: missing ids {missing:?}");
        assert_eq!(got, expected, "{table}: ids and versions");
    }
}

/// A token the sandbox issued, if `text` holds one: access tokens start with `eyJsbx.`,
/// refresh tokens are `AB11` and 64 hex digits.
pub fn find_issued_token(text: &str) -> Option<&str> {
    if let Some(i) = text.find("eyJsbx.") {
        return Some(&text[i..(i + 20).min(text.len())]);
    }
    text.match_indices("AB11").find_map(|(i, _)| {
        let rest = &text[i + 4..];
        let hex = rest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        (hex >= 64).then(|| &text[i..i + 20])
    })
}
