//! One company (realm) of the sandbox: its records, generated from its own seed, its own
//! limits (500 requests a minute, 10 in flight, 40 batch calls a minute, as QBO meters them
//! per realm) and its own counters. Tokens live in `oauth`, each tagged with its realm.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{faults::RateLimiter, lock, store::Store};

/// QBO's rate limits are per minute; the peak is measured over the same window whatever
/// window a test gives the limiter (`rate_window_secs`).
const PEAK_WINDOW: Duration = Duration::from_secs(60);

/// What one realm saw. All of it is since the sandbox started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealmStats {
    /// API requests addressed to this realm's URLs (query, count, CDC, read, batch), counted
    /// on arrival, whatever they were answered (429s and 401s included).
    pub requests: u64,
    /// The most `requests` that arrived within any 60 seconds (a rolling window, as QBO
    /// counts its 500 a minute).
    pub peak_requests_per_minute: u64,
    /// The most of this realm's API requests that were in flight at once.
    pub peak_in_flight: u64,
    /// Requests answered 429 (rate, concurrency, batch limit or injected).
    pub throttled: u64,
    /// Requests answered 401 (no, unknown, expired or revoked access token).
    pub unauthorized: u64,
    /// Requests answered 403 because the access token was issued for another realm.
    pub forbidden: u64,
    /// Successful refresh_token grants for this realm.
    pub refreshes: u64,
    /// Refresh or authorization-code grants for this realm answered `invalid_grant` (a
    /// retired, revoked or expired refresh token).
    pub invalid_grants: u64,
    /// Refresh attempts that presented one of this realm's refresh tokens after it had been
    /// rotated away (the race that kills a connection at Intuit); a subset of
    /// `invalid_grants`.
    pub retired_token_uses: u64,
    /// Times an operator revoked this realm's tokens (`Sandbox::revoke_tokens`).
    pub revocations: u64,
}

/// Per-realm counters plus the rolling window behind `peak_requests_per_minute`.
#[derive(Default)]
pub(crate) struct Meter {
    pub stats: RealmStats,
    arrivals: VecDeque<Instant>,
}

impl Meter {
    /// Counts a request arriving at `now`; the peak covers every 60-second window, since the
    /// busiest one always ends at an arrival.
    pub fn arrive(&mut self, now: Instant) {
        self.stats.requests += 1;
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.duration_since(*t) >= PEAK_WINDOW)
        {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        let in_window = self.arrivals.len() as u64;
        self.stats.peak_requests_per_minute = self.stats.peak_requests_per_minute.max(in_window);
    }
}

pub(crate) struct Realm {
    pub id: String,
    pub seed: u64,
    pub store: Store,
    pub in_flight: AtomicU64,
    /// The 500 requests a minute.
    pub rate: RateLimiter,
    /// The batch endpoint's own limit (40 calls a minute per company).
    pub batch_rate: RateLimiter,
    meter: Mutex<Meter>,
}

impl Realm {
    pub fn new(id: String, seed: u64, store: Store) -> Realm {
        Realm {
            id,
            seed,
            store,
            in_flight: AtomicU64::new(0),
            rate: RateLimiter::default(),
            batch_rate: RateLimiter::default(),
            meter: Mutex::new(Meter::default()),
        }
    }

    pub fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        lock(&self.meter)
    }

    pub fn stats(&self) -> RealmStats {
        self.meter().stats.clone()
    }

    /// Counts an arriving request in flight until the guard drops; returns the level it
    /// raised this realm to.
    pub fn enter(&self) -> (RealmInFlight<'_>, u64) {
        let level = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut m = self.meter();
        m.arrive(Instant::now());
        m.stats.peak_in_flight = m.stats.peak_in_flight.max(level);
        (RealmInFlight(self), level)
    }
}

pub(crate) struct RealmInFlight<'a>(&'a Realm);

impl Drop for RealmInFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The realm id of company `k` (0-based): the configured id for the first, then the next
/// numbers (QBO realm ids are numeric), so one company keeps today's id.
pub fn realm_id(base: &str, k: usize) -> String {
    if k == 0 {
        return base.to_string();
    }
    match base.parse::<u64>() {
        Ok(n) => (n + k as u64).to_string(),
        Err(_) => format!("{base}-{k}"),
    }
}

/// The seed of company `k`: the configured seed for the first (so one company's data is
/// today's), a well-mixed derivative for the others so no two companies look alike.
pub fn realm_seed(seed: u64, k: usize) -> u64 {
    if k == 0 {
        return seed;
    }
    // splitmix64 of (seed, k): deterministic, and neighbouring k give unrelated seeds.
    let mut z = seed.wrapping_add((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_seeds() {
        assert_eq!(realm_id("9130350000000001", 0), "9130350000000001");
        assert_eq!(realm_id("9130350000000001", 3), "9130350000000004");
        assert_eq!(realm_id("acme", 2), "acme-2");
        assert_eq!(realm_seed(42, 0), 42);
        assert_ne!(realm_seed(42, 1), realm_seed(42, 2));
        assert_eq!(realm_seed(42, 5), realm_seed(42, 5));
    }

    #[test]
    fn peak_is_a_rolling_minute() {
        let mut m = Meter::default();
        let t0 = Instant::now();
        for i in 0..5 {
            m.arrive(t0 + Duration::from_secs(i * 20));
        }
        // Arrivals at 0, 20, 40, 60, 80 s: any 60 s window holds at most three.
        assert_eq!(m.stats.requests, 5);
        assert_eq!(m.stats.peak_requests_per_minute, 3);
        m.arrive(t0 + Duration::from_secs(81));
        m.arrive(t0 + Duration::from_secs(82));
        // 40, 60, 80, 81 and 82 lie within one minute.
        assert_eq!(m.stats.peak_requests_per_minute, 5);
    }
}
