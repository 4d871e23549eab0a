//! What this process asked QBO, counted as it happens: the client records every attempt
//! (`client::QboClient::execute_call`). Only `qbo serve` shows them (its workers' requests, as
//! `qbo_process_*`); in other commands they are counted and never read, at the cost of an
//! atomic add per request.
//!
//! These are the process's own: another `qbo serve` or `qbo worker` on the same database
//! counts its own, and a restart starts them at 0 (Prometheus sees a counter reset). The
//! fleet's totals, the same from every instance, come from Postgres (`super::snapshot`).

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type RealmAnd = [(&'static str, String); 2];
type Realm = [(&'static str, String); 1];

struct Process {
    requests: Family<RealmAnd, Counter>,
    throttled: Family<Realm, Counter>,
    retries: Family<RealmAnd, Counter>,
}

static PROCESS: LazyLock<Process> = LazyLock::new(|| Process {
    requests: Family::default(),
    throttled: Family::default(),
    retries: Family::default(),
});

/// How one attempt of a request ended, as a label (a fixed, small set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// 429.
    Throttled,
    /// 401.
    Unauthorized,
    /// 5xx.
    ServerError,
    /// A QBO Fault (4xx, a Fault in a 200, a batch item's fault).
    Fault,
    /// A 200 whose body was not what QBO sends.
    Malformed,
    /// No answer: a timeout, a refused or cut connection.
    TransportError,
    /// Abandoned on SIGTERM/SIGINT.
    Cancelled,
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::Unauthorized => "unauthorized",
            Outcome::ServerError => "server_error",
            Outcome::Fault => "fault",
            Outcome::Malformed => "malformed",
            Outcome::TransportError => "transport_error",
            Outcome::Cancelled => "cancelled",
            Outcome::Other => "other",
        }
    }
}

/// Why a request was sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// After a 429 and the company's pause.
    Throttled,
    /// QBO rejected an access token right after a refresh.
    Unauthorized,
    /// A 5xx, a transport error or a malformed answer, after a backoff.
    Transient,
}

impl RetryReason {
    fn as_str(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::Unauthorized => "unauthorized",
            RetryReason::Transient => "transient",
        }
    }
}

/// One attempt sent to QBO for `realm_id`: `requests` as QBO meters them (a batch call
/// counts its queries), so the sum matches the `requests` of `qbo report`'s rows.
pub fn request(realm_id: &str, outcome: Outcome, requests: u32) {
    PROCESS
        .requests
        .get_or_create(&[
            ("realm", realm_id.to_string()),
            ("outcome", outcome.as_str().to_string()),
        ])
        .inc_by(u64::from(requests));
    if outcome == Outcome::Throttled {
        PROCESS
            .throttled
            .get_or_create(&[("realm", realm_id.to_string())])
            .inc();
    }
}

/// `requests` (metered as in `request`) that will be sent again.
pub fn retry(realm_id: &str, reason: RetryReason, requests: u32) {
    PROCESS
        .retries
        .get_or_create(&[
            ("realm", realm_id.to_string()),
            ("reason", reason.as_str().to_string()),
        ])
        .inc_by(u64::from(requests));
}

/// Adds this process's counters to a scrape's registry (they stay shared with the recorder).
pub(super) fn register(registry: &mut Registry) {
    registry.register(
        "qbo_process_requests",
        "Requests this process sent to QBO (a batch call counts its queries), by company and how the attempt ended",
        PROCESS.requests.clone(),
    );
    registry.register(
        "qbo_process_throttled",
        "429 answers this process received from QBO, by company",
        PROCESS.throttled.clone(),
    );
    registry.register(
        "qbo_process_retries",
        "Requests this process sent again (a batch call counts its queries), by company and why",
        PROCESS.retries.clone(),
    );
}
