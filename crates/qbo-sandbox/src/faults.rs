//! Fault injection knobs and the per-realm rate limiter.

mod malformed;
mod quirks;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use malformed::{Malformation, RawBody};

/// What the sandbox does wrong, on purpose. `#[serde(default)]` lets the control API take a
/// partial object: omitted knobs keep their defaults (off; 500/min; 10 concurrent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API and token response.
    pub latency_ms: u64,
    /// Every Nth query request answers a 429 throttle fault (0 = off).
    pub throttle_every: u32,
    /// Retry-After header on those 429s.
    pub throttle_retry_after_secs: Option<u64>,
    /// Throttle body as XML instead of JSON.
    pub throttle_as_xml: bool,
    /// Every Nth query request answers 500, then 503, alternately, with a Fault body.
    pub server_error_every: u32,
    /// Every Nth query request: the connection is cut mid-response.
    pub drop_every: u32,
    /// Every Nth query request: HTTP 200 whose body is a Fault.
    pub fault_in_200_every: u32,
    /// Every Nth query request: the presented access token is expired (401), for good.
    pub expire_access_every: u32,
    /// Every Nth access token issued is refused (401, and expired for good) the first time a
    /// request presents it, as when another client's refresh revoked it in between.
    pub reject_fresh_access_every: u32,
    /// Every Nth SELECT page with STARTPOSITION > 1: first touch the first record (in sort
    /// order) of that query's result set, so offset pagers skip one.
    pub mutate_while_paging_every: u32,
    /// RFC 3339 instant: a query whose LastUpdatedTime/TxnDate range contains it answers 500,
    /// and so does a report whose days (start_date..end_date, or report_date) hold its date.
    pub fail_window_containing: Option<String>,
    /// Per realm, sliding 60 s window; excess answers 429 (0 = unlimited).
    pub max_requests_per_minute: u32,
    /// The length of that sliding window in seconds (60, as QBO counts; shorter lets a test
    /// see a throttled company recover without waiting a minute).
    pub rate_window_secs: u64,
    /// Per realm in flight; excess answers 429 (0 = unlimited).
    pub max_concurrent: u32,
    /// A `throttle_every` storm lasts this many consecutive query requests (0 or 1: one).
    pub throttle_burst: u32,
    /// Every Nth query request answers 429 without `Retry-After`, whatever
    /// `throttle_retry_after_secs` says (so one run sees throttles with and without it).
    pub bare_throttle_every: u32,
    /// Every Nth query request answers only after `slow_ms` more, e.g. past a client's timeout.
    pub slow_every: u32,
    pub slow_ms: u64,
    /// Every Nth query request that would have answered 200 is spoiled as `malformation` says.
    pub malformed_every: u32,
    pub malformation: Malformation,
    /// Query requests numbered this or later (1-based, the every-Nth numbering; 0 = off) hang
    /// without answering until this knob changes, so a test can kill a client mid-request.
    pub hang_from_request: u64,
    /// Token requests hang, before they are processed, until this is cleared.
    pub hang_token_requests: bool,
    /// Every Nth query or CDC request that would answer 200 answers 200 with a SystemFault
    /// inside `QueryResponse` in place of its results (0 = off). QBO does this; a client that
    /// reads it as "no rows" or a COUNT of 0 loses records without a word.
    pub fault_in_query_response_every: u32,
    // QBO's quirks: odd answers that are still answers (see `faults/quirks.rs`).
    /// SELECT pages with rows carry `totalCount` too.
    pub total_count_on_pages: bool,
    /// SELECT pages answer this many rows past MAXRESULTS: the rows that follow the page,
    /// which the next page starts with again.
    pub rows_past_max_results: u32,
    /// Every answer's `time` is epoch milliseconds instead of a timestamp string.
    pub numeric_time: bool,
    /// A CDC answer in which no entity changed is one `{}` (`"QueryResponse": [{}]`), not one
    /// per entity asked for.
    pub cdc_empty_as_one_object: bool,
    /// Every Nth batch item (1-based, counted across batch calls; 0 = off) answers a
    /// SystemFault in its own slot instead of its QueryResponse, inside a 200 answer whose
    /// other items are answered as usual.
    pub batch_item_fault_every: u32,
    /// A report of more cells than this (every ColData entry counts) is cut short as QBO
    /// cuts it: a 200 ending in "Unable to display more data. Please reduce the date
    /// range." (QBO's cap is 400,000; a test lowers it to make a month too large).
    pub report_max_cells: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            throttle_every: 0,
            throttle_retry_after_secs: None,
            throttle_as_xml: false,
            server_error_every: 0,
            drop_every: 0,
            fault_in_200_every: 0,
            expire_access_every: 0,
            reject_fresh_access_every: 0,
            mutate_while_paging_every: 0,
            fail_window_containing: None,
            max_requests_per_minute: 500,
            rate_window_secs: 60,
            max_concurrent: 10,
            throttle_burst: 0,
            bare_throttle_every: 0,
            slow_every: 0,
            slow_ms: 0,
            malformed_every: 0,
            malformation: Malformation::None,
            hang_from_request: 0,
            hang_token_requests: false,
            fault_in_query_response_every: 0,
            total_count_on_pages: false,
            rows_past_max_results: 0,
            numeric_time: false,
            cdc_empty_as_one_object: false,
            batch_item_fault_every: 0,
            report_max_cells: 400_000,
        }
    }
}

/// A fault chosen by the every-Nth counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    ExpireAccess,
    Throttle,
    /// A 429 without `Retry-After`.
    BareThrottle,
    ServerError,
    FaultIn200,
    Drop,
}

fn every(n: u64, period: u32) -> bool {
    period > 0 && n.is_multiple_of(u64::from(period))
}

/// Like `every`, but each hit is followed by `burst - 1` more.
fn every_burst(n: u64, period: u32, burst: u32) -> bool {
    let p = u64::from(period);
    period > 0 && n >= p && n % p < u64::from(burst.max(1))
}

impl Faults {
    /// The fault for query request number `n` (1-based); when several periods divide `n`, the
    /// first in this list wins.
    pub fn injected(&self, n: u64) -> Option<Injected> {
        if every(n, self.expire_access_every) {
            return Some(Injected::ExpireAccess);
        }
        if every_burst(n, self.throttle_every, self.throttle_burst) {
            return Some(Injected::Throttle);
        }
        [
            (self.bare_throttle_every, Injected::BareThrottle),
            (self.server_error_every, Injected::ServerError),
            (self.fault_in_200_every, Injected::FaultIn200),
            (self.drop_every, Injected::Drop),
        ]
        .into_iter()
        .find(|(p, _)| every(n, *p))
        .map(|(_, f)| f)
    }

    /// Extra delay for query request `n`.
    pub fn slow(&self, n: u64) -> Option<Duration> {
        every(n, self.slow_every).then(|| Duration::from_millis(self.slow_ms))
    }

    /// How to spoil query request `n`'s 200 answer, if at all.
    pub fn malformed(&self, n: u64) -> Option<Malformation> {
        (self.malformation != Malformation::None && every(n, self.malformed_every))
            .then_some(self.malformation)
    }

    pub fn hangs(&self, n: u64) -> bool {
        self.hang_from_request > 0 && n >= self.hang_from_request
    }

    pub fn mutate_now(&self, nth_page: u64) -> bool {
        every(nth_page, self.mutate_while_paging_every)
    }

    /// Whether batch item `n` (1-based, counted across calls) answers a Fault.
    pub fn batch_item_fails(&self, n: u64) -> bool {
        every(n, self.batch_item_fault_every)
    }
}

/// Sliding window (60 s unless a test shortens it) of admitted requests.
#[derive(Default)]
pub struct RateLimiter {
    admitted: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// Admits a request now unless `max` were admitted in the last `window` (0 = unlimited).
    /// Refused requests do not count, so a client that backs off recovers.
    pub fn admit(&self, max: u32, window: Duration, now: Instant) -> bool {
        if max == 0 {
            return true;
        }
        let mut q = self.admitted.lock().unwrap_or_else(|e| e.into_inner());
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= max as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_carry_limits() {
        let f = Faults::default();
        assert_eq!((f.max_requests_per_minute, f.max_concurrent), (500, 10));
        let partial: Faults = serde_json::from_str(r#"{"throttle_every":3}"#).unwrap();
        assert_eq!(partial.throttle_every, 3);
        assert_eq!(partial.max_concurrent, 10);
    }

    #[test]
    fn every_nth() {
        let f = Faults {
            throttle_every: 3,
            server_error_every: 2,
            ..Faults::default()
        };
        let got: Vec<_> = (1..=6).map(|n| f.injected(n)).collect();
        use Injected::*;
        assert_eq!(
            got,
            vec![
                None,
                Some(ServerError),
                Some(Throttle),
                Some(ServerError),
                None,
                Some(Throttle)
            ]
        );
    }

    #[test]
    fn storms_and_bare_throttles() {
        let f = Faults {
            throttle_every: 5,
            throttle_burst: 3,
            bare_throttle_every: 4,
            ..Faults::default()
        };
        use Injected::*;
        let got: Vec<_> = (1..=8).map(|n| f.injected(n)).collect();
        assert_eq!(
            got,
            vec![
                None,
                None,
                None,
                Some(BareThrottle),
                Some(Throttle),
                Some(Throttle),
                Some(Throttle),
                Some(BareThrottle)
            ]
        );
        assert!(!f.hangs(1));
        let f = Faults {
            hang_from_request: 3,
            slow_every: 2,
            slow_ms: 7,
            ..Faults::default()
        };
        assert!(!f.hangs(2) && f.hangs(3) && f.hangs(9));
        assert_eq!(f.slow(4), Some(Duration::from_millis(7)));
        assert_eq!(f.slow(3), None);
    }

    #[test]
    fn sliding_window() {
        let r = RateLimiter::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(r.admit(2, minute, t0));
        assert!(r.admit(2, minute, t0 + Duration::from_secs(1)));
        assert!(!r.admit(2, minute, t0 + Duration::from_secs(59)));
        assert!(r.admit(2, minute, t0 + Duration::from_secs(60)));
        assert!(!r.admit(2, minute, t0 + Duration::from_secs(60)));
        assert!(r.admit(0, minute, t0));
        // A shorter window frees its slots sooner: 5 s after a request, not a minute.
        let r = RateLimiter::default();
        let five = Duration::from_secs(5);
        assert!(r.admit(1, five, t0));
        assert!(!r.admit(1, five, t0 + Duration::from_secs(4)));
        assert!(r.admit(1, five, t0 + five));
    }
}
