//! A local QuickBooks Online lookalike: the v3 query API, Intuit's OAuth2 endpoints and a
//! `/__sandbox` control API, served by axum. Tests and `qbo demo` use it instead of QBO.
//! It is deliberately at least as strict as QBO. See docs/sandbox-spec.md for the contract.
#![forbid(unsafe_code)]

mod cdc;
#[cfg(test)]
mod cdc_tests;
mod clock;
mod control;
mod custom_fields;
mod data;
#[cfg(test)]
mod entity_tests;
mod envelope;
mod eval;
mod faults;
mod gate;
mod oauth;
mod query;
mod rates;
#[cfg(test)]
mod rates_tests;
mod realm;
#[cfg(test)]
mod realm_tests;
mod reports;
#[cfg(test)]
mod reports_tests;
mod rest;
#[cfg(test)]
mod rest_tests;
mod revoke;
mod server;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

pub use data::record_body;
pub use faults::{Faults, Malformation};
pub use realm::RealmStats;

/// How many request-log entries are kept; older ones are dropped so a long demo cannot grow
/// memory without bound.
const REQUEST_LOG_CAP: usize = 100_000;

/// Companies one sandbox serves at most: each holds its own copy of the data.
pub const MAX_COMPANIES: usize = 10_000;

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The first company's realm id; company `k` gets the `k`-th next number.
    pub realm_id: String,
    /// How many companies (realms) the sandbox serves, each with its own data (from its own
    /// seed: the first company's is `seed`), tokens and limits. 1 unless a test asks for more.
    pub companies: usize,
    pub client_id: String,
    pub client_secret: String,
    /// Same seed => same records.
    pub seed: u64,
    pub invoices: usize,
    pub customers: usize,
    pub items: usize,
    /// Per-entity record counts by QBO name (e.g. `"Bill" => 50`), overriding the defaults
    /// every other entity derives from the three counts above (see `count_of`).
    pub counts: BTreeMap<String, usize>,
    /// LastUpdatedTime / TxnDate spread over `[data_start, data_end]` (company-local days).
    pub data_start: NaiveDate,
    pub data_end: NaiveDate,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bind: SocketAddr,
    /// A multi-currency company, as QBO has them: home currency USD, some customers and
    /// vendors (and their transactions) in EUR, GBP or CAD with `CurrencyRef`,
    /// `ExchangeRate` and `HomeTotalAmt`, and exchange rates served at `/exchangerate`.
    /// False (the default) keeps every record in USD, exactly as before.
    pub multi_currency: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            realm_id: "9130350000000001".into(),
            companies: 1,
            client_id: "sandbox-client-id".into(),
            client_secret: "sandbox-client-secret".into(),
            seed: 42,
            invoices: 1000,
            customers: 100,
            items: 30,
            counts: BTreeMap::new(),
            data_start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
            data_end: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap_or_default(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(101 * 86_400),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            multi_currency: false,
        }
    }
}

impl SandboxConfig {
    /// How many records of `qbo_name` the company holds: `counts` if it names the entity,
    /// else the entity's default for a company of `invoices`/`customers`/`items` (singletons
    /// such as CompanyInfo always 1). Unknown names yield 0.
    pub fn count_of(&self, qbo_name: &str) -> usize {
        self.entity_counts()
            .map(|c| c.get(qbo_name) as usize)
            .unwrap_or(0)
    }

    /// Checks what `Sandbox::start` would refuse, without starting anything.
    pub fn validate(&self) -> Result<(), SandboxError> {
        if !(1..=MAX_COMPANIES).contains(&self.companies) {
            return Err(SandboxError::Config(format!(
                "companies must be 1 to {MAX_COMPANIES}, not {}",
                self.companies
            )));
        }
        if self.data_end < self.data_start {
            return Err(SandboxError::Config("data_end is before data_start".into()));
        }
        self.entity_counts().map(drop)
    }

    fn entity_counts(&self) -> Result<data::Counts, SandboxError> {
        if let Some(unknown) = self.counts.keys().find(|n| data::spec(n).is_none()) {
            return Err(SandboxError::Config(format!(
                "unknown entity `{unknown}` in counts; use QBO names such as `Invoice` or `JournalEntry`"
            )));
        }
        let mut overrides = self.counts.clone();
        for (name, n) in [
            ("Invoice", self.invoices),
            ("Customer", self.customers),
            ("Item", self.items),
        ] {
            overrides.entry(name.to_string()).or_insert(n);
        }
        let counts = data::default_counts(self.invoices, self.customers, self.items, &overrides);
        data::check_counts(&counts).map_err(SandboxError::Config)?;
        Ok(counts)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox config: {0}")]
    Config(String),
    #[error("cannot bind sandbox to {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid record for {entity}: {reason}")]
    Record { entity: String, reason: String },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Milliseconds since the sandbox started.
    pub at_ms: u64,
    /// `query`, `count`, `cdc`, `read`, `batch`, `report`, `token` or `authorize`.
    pub kind: String,
    pub status: u16,
    /// The query text, or a CDC request's `entities` and `changedSince` (never tokens or
    /// secrets).
    pub query: Option<String>,
    /// Which injected fault, if any, shaped the answer (e.g. `drop`, `throttle_every`).
    pub fault: Option<String>,
    /// The realm the request was addressed to (API requests) or granted for (token
    /// requests), when there is one.
    #[serde(default)]
    pub realm: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Every request to the query endpoint, COUNT(*) included.
    pub query_requests: u64,
    /// The subset of `query_requests` that were `SELECT COUNT(*)`.
    pub count_requests: u64,
    /// Every request to the change data capture endpoint.
    pub cdc_requests: u64,
    /// Reads by id (`GET .../{entity}/{id}`, `.../companyinfo/{realm}`, `.../preferences`).
    pub read_requests: u64,
    /// Requests to the batch endpoint (each counted once, whatever it holds).
    pub batch_requests: u64,
    /// Items carried by the batch calls that were answered (QBO meters each item as a
    /// request): 31 counts sent as 30 + 1 are 2 `batch_requests` and 31 `batch_items`.
    pub batch_items: u64,
    /// Requests to the reports endpoint (`GET .../reports/{name}`).
    pub report_requests: u64,
    pub token_requests: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub unauthorized: u64,
    /// Successful refresh_token grants.
    pub refreshes: u64,
    /// Refresh attempts that presented a retired token.
    pub retired_refresh_token_uses: u64,
    /// refresh_token grants answered `invalid_grant` (retired, revoked, expired or unknown).
    #[serde(default)]
    pub invalid_grants: u64,
    pub max_in_flight: u64,
    /// Records touched by `mutate_while_paging_every`.
    pub mutations: u64,
    /// Records deleted (library or control API).
    pub deletes: u64,
    /// Requests held by `hang_from_request` or `hang_token_requests` (counted when they start
    /// hanging, so a test can wait for one).
    pub hung: u64,
    /// Query requests delayed by `slow_every`.
    pub slowed: u64,
    /// Answers spoiled by `malformed_every`.
    pub malformed: u64,
    pub request_log: Vec<RequestLogEntry>,
    /// Each company's own counters, by realm id. The fields above count every company.
    #[serde(default)]
    pub realms: BTreeMap<String, RealmStats>,
}

/// State shared by the handlers and the `Sandbox` handles.
pub(crate) struct Inner {
    cfg: SandboxConfig,
    addr: SocketAddr,
    started: Instant,
    /// The companies, first (the default realm) first.
    realms: Vec<realm::Realm>,
    oauth: Mutex<oauth::OAuth>,
    faults: RwLock<Faults>,
    stats: Mutex<Stats>,
    /// Numbers query requests for the every-Nth faults.
    query_counter: AtomicU64,
    /// Numbers SELECT pages with STARTPOSITION > 1 for `mutate_while_paging_every`.
    paging_counter: AtomicU64,
    /// Alternates injected server errors between 500 and 503.
    server_error_counter: AtomicU64,
    /// Requests in flight across every company (limits are per company, in `Realm`).
    in_flight: AtomicU64,
    /// Numbers batch items across calls for `batch_item_fault_every`.
    batch_item_counter: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A handler that panicked mid-update leaves counters at worst slightly off; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The index of the company with this realm id.
    fn realm_ix(&self, id: &str) -> Option<usize> {
        self.realms.iter().position(|r| r.id == id)
    }

    /// The user disconnects the app from company `ix`.
    fn revoke(&self, ix: usize) {
        lock(&self.oauth).revoke(ix);
        self.count_revocation(ix);
    }

    fn count_revocation(&self, ix: usize) {
        if let Some(r) = self.realms.get(ix) {
            r.meter().stats.revocations += 1;
        }
    }

    /// A snapshot of the counters, each company's included.
    fn snapshot(&self) -> Stats {
        let mut s = self.stats().clone();
        s.realms = self
            .realms
            .iter()
            .map(|r| (r.id.clone(), r.stats()))
            .collect();
        s
    }

    fn log(&self, kind: &str, status: u16, query: Option<&str>, fault: Option<&str>) {
        self.log_for(None, kind, status, query, fault);
    }

    fn log_for(
        &self,
        realm: Option<&str>,
        kind: &str,
        status: u16,
        query: Option<&str>,
        fault: Option<&str>,
    ) {
        let entry = RequestLogEntry {
            at_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind: kind.into(),
            status,
            query: query.map(str::to_string),
            fault: fault.map(str::to_string),
            realm: realm.map(str::to_string),
        };
        let mut s = self.stats();
        if s.request_log.len() >= REQUEST_LOG_CAP {
            s.request_log.remove(0);
        }
        s.request_log.push(entry);
    }

    /// The sandbox's clock: every mutation, horizon and `time` reads it here.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// `time` for envelopes: now, company offset, milliseconds.
    fn time(&self) -> String {
        clock::format_millis(self.now())
    }

    fn touch(&self, realm: &realm::Realm, entity: &str, id: &str) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        realm
            .store
            .write(entity)
            .is_some_and(|mut t| t.touch(id, self.now()))
    }

    /// A user deleting a record: a transaction (or any record that is not a name) goes, leaving
    /// a tombstone; a name is never removed by QBO, only made inactive with ` (deleted)` after
    /// its names (see `Table::deactivate`).
    fn delete(&self, realm: &realm::Realm, entity: &str, id: &str) -> Result<(), String> {
        let id = id
            .parse::<u64>()
            .map_err(|_| format!("Id {id:?} is not a numeric Id"))?;
        let mut t = realm.store.write(entity).ok_or("unknown entity")?;
        let done = if t.entity.hides_inactive() {
            t.deactivate(&realm.store.ctx, id, self.now(), true)
        } else {
            t.delete(id, self.now())
        };
        if !done {
            return Err(format!(
                "no live (and active, for a name) record with Id {id}"
            ));
        }
        drop(t);
        self.stats().deletes += 1;
        Ok(())
    }

    /// A user marking a name inactive (Active=false, names kept).
    fn deactivate(&self, realm: &realm::Realm, entity: &str, id: &str) -> Result<(), String> {
        let id = id
            .parse::<u64>()
            .map_err(|_| format!("Id {id:?} is not a numeric Id"))?;
        let mut t = realm.store.write(entity).ok_or("unknown entity")?;
        if !t.entity.hides_inactive() {
            return Err(format!(
                "{entity} is not a name list; only names have Active"
            ));
        }
        if !t.deactivate(&realm.store.ctx, id, self.now(), false) {
            return Err(format!("no active record with Id {id}"));
        }
        Ok(())
    }

    /// Tombstoned Ids in numeric order; `None` for an unknown entity.
    fn deleted_ids(realm: &realm::Realm, entity: &str) -> Option<Vec<String>> {
        let t = realm.store.read(entity)?;
        Some(t.tombstones.keys().map(u64::to_string).collect())
    }

    fn records(realm: &realm::Realm, entity: &str) -> Option<Vec<serde_json::Value>> {
        let t = realm.store.read(entity)?;
        Some(
            t.rows
                .values()
                .map(|r| t.render(&realm.store.ctx, r))
                .collect(),
        )
    }
}

/// A running sandbox. Cheap to clone; all clones share one server. A handle speaks for one
/// company (realm): the first unless it came from `for_realm`; `stats` and the faults cover
/// the whole sandbox.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
    control: Arc<server::Control>,
    realm: usize,
}

impl Sandbox {
    pub async fn start(cfg: SandboxConfig) -> Result<Sandbox, SandboxError> {
        cfg.validate()?;
        let realms = generate_realms(&cfg).await?;
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let oauth = oauth::OAuth::new(cfg.refresh_token_ttl, realms.len());
        let inner = Arc::new(Inner {
            cfg,
            addr,
            started: Instant::now(),
            realms,
            oauth: Mutex::new(oauth),
            faults: RwLock::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            query_counter: AtomicU64::new(0),
            paging_counter: AtomicU64::new(0),
            server_error_counter: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            batch_item_counter: AtomicU64::new(0),
        });
        let control = Arc::new(server::spawn(listener, inner.clone()));
        tracing::debug!(%addr, "sandbox listening");
        Ok(Sandbox {
            inner,
            control,
            realm: 0,
        })
    }

    /// A handle on company `realm_id` of this sandbox (same server), or `None` if it serves
    /// no such company.
    pub fn for_realm(&self, realm_id: &str) -> Option<Sandbox> {
        let realm = self.inner.realm_ix(realm_id)?;
        Some(Sandbox {
            realm,
            ..self.clone()
        })
    }

    /// Every company's realm id, the first (the default) first.
    pub fn realm_ids(&self) -> Vec<String> {
        self.inner.realms.iter().map(|r| r.id.clone()).collect()
    }

    fn company(&self) -> &realm::Realm {
        &self.inner.realms[self.realm]
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://127.0.0.1:PORT`; the query URL is `{api_base_url}/v3/company/{realm}/query`.
    pub fn api_base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/v1/tokens/bearer", self.api_base_url())
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/connect/oauth2", self.api_base_url())
    }

    /// This handle's company.
    pub fn realm_id(&self) -> &str {
        &self.company().id
    }

    /// The seed this handle's company was generated from.
    pub fn seed(&self) -> u64 {
        self.company().seed
    }

    pub fn client_id(&self) -> &str {
        &self.inner.cfg.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.inner.cfg.client_secret
    }

    /// A refresh token for this handle's company that is valid now: the one issued at start,
    /// or the latest rotation (a new one if that expired or was revoked, as if the user
    /// connected the company again).
    pub fn current_refresh_token(&self) -> String {
        lock(&self.inner.oauth).current_refresh_token(self.realm, self.inner.cfg.refresh_token_ttl)
    }

    /// The user disconnects the app from this handle's company: its refresh tokens answer
    /// `invalid_grant` from now on and its access tokens 401. Other companies are untouched.
    pub fn revoke_tokens(&self) {
        self.inner.revoke(self.realm);
    }

    /// The rate the multi-currency company books `code` (EUR, GBP, CAD) at on `day`, as its
    /// ExchangeRate endpoint and its transactions of that day say (`None` for another code).
    pub fn exchange_rate(code: &str, day: chrono::NaiveDate) -> Option<f64> {
        data::currency::rate_e4(code, day).map(|r| r as f64 / 10_000.0)
    }

    /// This handle's company's own counters.
    pub fn realm_stats(&self) -> RealmStats {
        self.company().stats()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults()
    }

    /// Every live record of an entity (QBO name), inactive included, deleted ones not, as the
    /// API would serialise it. Unknown entities yield an empty list.
    pub fn records(&self, qbo_entity: &str) -> Vec<serde_json::Value> {
        Inner::records(self.company(), qbo_entity).unwrap_or_default()
    }

    /// Inserts or replaces a record (Id taken from the value); re-creating a deleted Id clears
    /// its tombstone, so the record is live again and CDC reports it as such. Panics on an
    /// unknown entity or a record without Id / MetaData.LastUpdatedTime, since that is a bug in
    /// the calling test; see `try_put_record` for the fallible form.
    pub fn put_record(&self, qbo_entity: &str, record: serde_json::Value) {
        if let Err(e) = self.try_put_record(qbo_entity, record) {
            panic!("{e}");
        }
    }

    pub fn try_put_record(
        &self,
        qbo_entity: &str,
        record: serde_json::Value,
    ) -> Result<(), SandboxError> {
        let err = |reason: String| SandboxError::Record {
            entity: qbo_entity.into(),
            reason,
        };
        let mut t = self
            .company()
            .store
            .write(qbo_entity)
            .ok_or_else(|| err("unknown entity".into()))?;
        let keys = t.keys_from_json(&record).map_err(err)?;
        t.upsert(store::Row {
            keys,
            doc: Some(Arc::new(record)),
        });
        Ok(())
    }

    /// Simulates a user deleting a record now. A transaction vanishes from queries and
    /// COUNT(*), and CDC reports it as Deleted (at this instant, whole seconds) to any
    /// `changedSince` at or before it. A name (Customer, Item, Account, ... every name list) is
    /// never removed, as in QBO: it becomes inactive with ` (deleted)` after its Name /
    /// DisplayName / FullyQualifiedName, a new SyncToken and LastUpdatedTime, and CDC reports
    /// it as a change. Panics on an unknown entity or an Id with no live (active, for a name)
    /// record, since that is a bug in the calling test; see `try_delete_record` for the
    /// fallible form.
    pub fn delete_record(&self, qbo_entity: &str, id: &str) {
        if let Err(e) = self.try_delete_record(qbo_entity, id) {
            panic!("{e}");
        }
    }

    pub fn try_delete_record(&self, qbo_entity: &str, id: &str) -> Result<(), SandboxError> {
        self.inner
            .delete(self.company(), qbo_entity, id)
            .map_err(|reason| SandboxError::Record {
                entity: qbo_entity.into(),
                reason,
            })
    }

    /// Simulates a user marking a name inactive now (Active=false, SyncToken + 1,
    /// LastUpdatedTime = now, names unchanged). Errs for an entity that is not a name list or
    /// an Id with no active record.
    pub fn deactivate_record(&self, qbo_entity: &str, id: &str) -> Result<(), SandboxError> {
        self.inner
            .deactivate(self.company(), qbo_entity, id)
            .map_err(|reason| SandboxError::Record {
                entity: qbo_entity.into(),
                reason,
            })
    }

    /// Ids deleted and not re-created since, in numeric order (never a name's: QBO does not
    /// delete names). Unknown entities yield none.
    pub fn deleted_ids(&self, qbo_entity: &str) -> Vec<String> {
        Inner::deleted_ids(self.company(), qbo_entity).unwrap_or_default()
    }

    /// Simulates a user editing a record now: SyncToken + 1, LastUpdatedTime = now.
    /// Unknown entities or Ids are ignored.
    pub fn touch_record(&self, qbo_entity: &str, id: &str) {
        self.inner.touch(self.company(), qbo_entity, id);
    }

    /// Every counter of the sandbox, each company's in `realms`.
    pub fn stats(&self) -> Stats {
        self.inner.snapshot()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(self) {
        self.control.shutdown().await;
    }
}

/// Each company's records, generated from its own seed. Generating 500k keys takes a moment
/// of pure CPU; keep it off the async workers.
async fn generate_realms(cfg: &SandboxConfig) -> Result<Vec<realm::Realm>, SandboxError> {
    let counts = cfg.entity_counts()?;
    let start = clock::local_midnight(cfg.data_start);
    let end = clock::local_to_utc(
        cfg.data_end
            .and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default()),
    );
    let (base, seed, companies) = (cfg.realm_id.clone(), cfg.seed, cfg.companies);
    let multi_currency = cfg.multi_currency;
    tokio::task::spawn_blocking(move || {
        (0..companies)
            .map(|k| {
                let seed = realm::realm_seed(seed, k);
                let ctx = data::GenCtx {
                    seed,
                    start,
                    end,
                    counts: counts.clone(),
                    multi_currency,
                };
                realm::Realm::new(realm::realm_id(&base, k), seed, store::Store::generate(ctx))
            })
            .collect()
    })
    .await
    .map_err(|e| SandboxError::Config(format!("data generation failed: {e}")))
}
