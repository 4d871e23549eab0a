//! Keeps one realm inside QBO's limits (requests per minute, requests in flight, batch calls
//! per minute), however many workers, and however many qbo processes (through
//! `store::throttle`), share it.
//!
//! The minute is QBO's: a sliding window in which at most the limit may start, so a burst up
//! to the limit goes at once and the next request waits for the oldest to age out (no even
//! pacing).

use std::collections::VecDeque;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RateLimits;
use crate::store::throttle::SharedBudget;
use crate::store::StoreError;

/// A little longer than QBO's minute, so clock skew and latency between our send and
/// Intuit's receive never let the server count one request too many.
pub const WINDOW: Duration = Duration::from_millis(61_000);

/// How often a process publishes its requests to, and reads the others' from, Postgres.
pub const SHARE_EVERY: Duration = Duration::from_secs(1);

/// A wait was cut short by Ctrl-C / SIGTERM.
#[derive(Debug)]
pub struct Cancelled;

pub struct RealmLimiter {
    in_flight: Semaphore,
    per_window: usize,
    /// Start times of this process's requests in the current window, oldest first.
    recent: Mutex<VecDeque<Instant>>,
    /// Start times of other processes' requests in the window, as of the last exchange.
    others: SyncMutex<Vec<Instant>>,
    per_window_batches: usize,
    /// Start times of this process's batch calls in the current window, oldest first.
    batches: SyncMutex<VecDeque<Instant>>,
    /// Start times of other processes' batch calls in the window, as of the last exchange.
    other_batches: SyncMutex<Vec<Instant>>,
    /// One batch call at a time waits for its slot among the batch calls (see `acquire_batch`).
    batch_turn: Mutex<()>,
    /// QBO throttled the company: nobody sends before this (a 429 is about the realm's
    /// quota, not one worker's request, so every worker waits out the pause).
    paused_until: SyncMutex<Option<Instant>>,
    /// Since when QBO has answered nothing but 429s.
    throttled_since: SyncMutex<Option<Instant>>,
    /// When the last "waiting for the budget" line was logged (one every few seconds).
    last_note: SyncMutex<Option<Instant>>,
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `until`, or returns early (Err) when `cancel` fires.
pub async fn sleep_until(cancel: &CancellationToken, until: Instant) -> Result<(), Cancelled> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep_until(until) => Ok(()),
    }
}

impl RealmLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        RealmLimiter {
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            per_window: limits.requests_per_minute.max(1) as usize,
            recent: Mutex::new(VecDeque::new()),
            others: SyncMutex::new(Vec::new()),
            per_window_batches: limits.batch_calls_per_minute.max(1) as usize,
            batches: SyncMutex::new(VecDeque::new()),
            other_batches: SyncMutex::new(Vec::new()),
            batch_turn: Mutex::new(()),
            paused_until: SyncMutex::new(None),
            throttled_since: SyncMutex::new(None),
            last_note: SyncMutex::new(None),
        }
    }

    /// Holds every request of the realm for `wait` from now (extending, never shortening, a
    /// pause already in force). True when that is news: no pause, or one ending more than a
    /// second earlier, was in force; the workers' 429s of one burst (and our own pause read
    /// back from Postgres) are not.
    pub fn pause_for(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut paused = lock(&self.paused_until);
        let news = paused.is_none_or(|t| t + Duration::from_secs(1) < until);
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
        news
    }

    fn pause(&self) -> Option<Instant> {
        let paused = *lock(&self.paused_until);
        paused.filter(|t| *t > Instant::now())
    }

    /// QBO throttled a request: returns how long it has throttled the company without a
    /// break (zero for the first 429 after any other answer).
    pub fn throttled(&self) -> Duration {
        let now = Instant::now();
        now - *lock(&self.throttled_since).get_or_insert(now)
    }

    /// QBO answered something other than a throttle: the stretch of throttling is over.
    pub fn answered(&self) {
        *lock(&self.throttled_since) = None;
    }

    /// Waits for the end of any pause, a slot in the rolling minute (counting the other
    /// processes' requests) and a place among the requests in flight. Hold the permit until
    /// the response has been read. Ctrl-C / SIGTERM (`cancel`) ends the wait at once.
    pub async fn acquire(
        &self,
        cancel: &CancellationToken,
    ) -> Result<SemaphorePermit<'_>, Cancelled> {
        self.acquire_seat(cancel, false).await
    }

    /// Like `acquire`, for a batch call: also waits for a slot among the company's batch
    /// calls of the rolling minute. Batch calls take their turn one at a time and wait for
    /// that slot before taking a place in flight, so batch calls waiting for the minute never
    /// hold the places pages need.
    pub async fn acquire_batch(
        &self,
        cancel: &CancellationToken,
    ) -> Result<SemaphorePermit<'_>, Cancelled> {
        let _turn = tokio::select! {
            _ = cancel.cancelled() => return Err(Cancelled),
            turn = self.batch_turn.lock() => turn,
        };
        while let Some(until) = self.batch_slot_frees_at(Instant::now()) {
            sleep_until(cancel, until).await?;
        }
        self.acquire_seat(cancel, true).await
    }

    /// When the next batch slot frees (counting the other processes' batch calls), or None
    /// if one is free now.
    fn batch_slot_frees_at(&self, now: Instant) -> Option<Instant> {
        let mut batches = lock(&self.batches);
        while batches
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            batches.pop_front();
        }
        let mut others = lock(&self.other_batches);
        others.retain(|t| now.duration_since(*t) < WINDOW);
        let n = batches.len() + others.len();
        if n < self.per_window_batches {
            return None;
        }
        let mut all: Vec<Instant> = batches.iter().chain(others.iter()).copied().collect();
        all.sort_unstable();
        let until = all[n - self.per_window_batches] + WINDOW;
        self.note_batch_wait(until - now, batches.len(), others.len());
        Some(until)
    }

    async fn acquire_seat(
        &self,
        cancel: &CancellationToken,
        batch: bool,
    ) -> Result<SemaphorePermit<'_>, Cancelled> {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return Err(Cancelled),
            p = self.in_flight.acquire() => p.expect("the limiter's semaphore is never closed"),
        };
        loop {
            if let Some(until) = self.pause() {
                // A little jitter, so the workers do not all return in the same millisecond.
                let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..=250));
                sleep_until(cancel, until + jitter).await?;
                continue;
            }
            let wait_until = {
                let mut recent = self.recent.lock().await;
                let now = Instant::now();
                while recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    recent.pop_front();
                }
                let mut others = lock(&self.others);
                others.retain(|t| now.duration_since(*t) < WINDOW);
                let batch_wait = batch.then(|| self.batch_slot_frees_at(now)).flatten();
                if recent.len() + others.len() < self.per_window && batch_wait.is_none() {
                    recent.push_back(now);
                    if batch {
                        lock(&self.batches).push_back(now);
                    }
                    return Ok(permit);
                }
                let request_wait = (recent.len() + others.len() >= self.per_window).then(|| {
                    // The slot that frees first: the oldest start that still keeps us at the
                    // limit.
                    let mut all: Vec<Instant> =
                        recent.iter().chain(others.iter()).copied().collect();
                    all.sort_unstable();
                    let until = all[all.len() - self.per_window] + WINDOW;
                    self.note_wait(until - now, recent.len(), others.len());
                    until
                });
                request_wait.max(batch_wait).unwrap_or(now)
            };
            sleep_until(cancel, wait_until).await?;
        }
    }

    fn note_wait(&self, wait: Duration, own: usize, others: usize) {
        let now = Instant::now();
        let mut last = lock(&self.last_note);
        if others == 0 || last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return;
        }
        *last = Some(now);
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            own,
            other_processes = others,
            "waiting for the company's request budget: other qbo processes started requests of it in the last minute"
        );
    }

    fn note_batch_wait(&self, wait: Duration, own: usize, others: usize) {
        let now = Instant::now();
        let mut last = lock(&self.last_note);
        if others == 0 || last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return;
        }
        *last = Some(now);
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            own,
            other_processes = others,
            "waiting for the company's batch-call budget: other qbo processes started batch calls of it in the last minute"
        );
    }

    /// Ages of this process's batch calls in the current window.
    fn own_batch_ages(&self) -> Vec<Duration> {
        let now = Instant::now();
        lock(&self.batches)
            .iter()
            .map(|t| now.duration_since(*t))
            .filter(|age| *age < WINDOW)
            .collect()
    }

    /// Ages of this process's requests in the current window.
    async fn own_ages(&self) -> Vec<Duration> {
        let recent = self.recent.lock().await;
        let now = Instant::now();
        recent
            .iter()
            .map(|t| now.duration_since(*t))
            .filter(|age| *age < WINDOW)
            .collect()
    }

    /// One exchange with the company's other processes through Postgres: publishes this
    /// process's requests and batch calls, takes in theirs and any pause a 429 recorded.
    pub async fn share(&self, budget: &SharedBudget) -> Result<(), StoreError> {
        let own = self.own_ages().await;
        let own_batches = self.own_batch_ages();
        let seen = budget.exchange(&own, &own_batches, WINDOW).await?;
        let now = Instant::now();
        let starts = |ages: &[Duration]| -> Vec<Instant> {
            ages.iter()
                .filter_map(|age| now.checked_sub(*age))
                .collect()
        };
        *lock(&self.others) = starts(&seen.others);
        *lock(&self.other_batches) = starts(&seen.other_batches);
        if let Some(wait) = seen.paused_for {
            if self.pause_for(wait) {
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "QBO throttled this company recently (recorded by a qbo process); pausing its requests"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_pauses_every_worker_of_the_realm() {
        let limiter = RealmLimiter::new(&RateLimits::default());
        let start = Instant::now();
        limiter.pause_for(Duration::from_secs(3));
        limiter.pause_for(Duration::from_secs(1));
        let _p = limiter.acquire(&CancellationToken::new()).await.unwrap();
        assert!(Instant::now().duration_since(start) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_a_rolling_minute() {
        let limiter = RealmLimiter::new(&RateLimits {
            requests_per_minute: 5,
            max_in_flight: 2,
            ..RateLimits::default()
        });
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            let _p = limiter.acquire(&CancellationToken::new()).await.unwrap();
            starts.push(Instant::now().duration_since(start));
        }
        for (i, t) in starts.iter().enumerate().skip(5) {
            assert!(
                *t >= starts[i - 5] + WINDOW,
                "request {i} started too early"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_processes_requests_use_the_same_budget() {
        let limiter = RealmLimiter::new(&RateLimits {
            requests_per_minute: 3,
            max_in_flight: 2,
            ..RateLimits::default()
        });
        let start = Instant::now();
        // Two requests of another process, 10 s ago: one slot is left until they age out.
        *lock(&limiter.others) = vec![start - Duration::from_secs(10); 2];
        let cancel = CancellationToken::new();
        drop(limiter.acquire(&cancel).await.unwrap());
        assert_eq!(Instant::now(), start);
        drop(limiter.acquire(&cancel).await.unwrap());
        assert_eq!(Instant::now() - start, WINDOW - Duration::from_secs(10));
    }

    /// At most `batch_calls_per_minute` batch calls start in any rolling minute, bursts
    /// allowed; each is also one of the requests per minute.
    #[tokio::test(start_paused = true)]
    async fn batch_calls_have_their_own_rolling_minute() {
        let limiter = RealmLimiter::new(&RateLimits {
            requests_per_minute: 100,
            max_in_flight: 4,
            batch_calls_per_minute: 3,
        });
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..7 {
            drop(limiter.acquire_batch(&cancel).await.unwrap());
            starts.push(Instant::now() - start);
        }
        assert_eq!(
            starts[..3],
            [Duration::ZERO; 3],
            "a burst up to the limit goes at once"
        );
        assert_eq!(starts[3..6], [WINDOW; 3]);
        assert_eq!(starts[6], WINDOW * 2);
        assert_eq!(
            limiter.own_ages().await.len(),
            1,
            "each also took a request slot"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_processes_batch_calls_use_the_same_batch_budget() {
        let limiter = RealmLimiter::new(&RateLimits {
            batch_calls_per_minute: 3,
            ..RateLimits::default()
        });
        let start = Instant::now();
        *lock(&limiter.other_batches) = vec![start - Duration::from_secs(20); 2];
        let cancel = CancellationToken::new();
        drop(limiter.acquire_batch(&cancel).await.unwrap());
        assert_eq!(Instant::now(), start);
        drop(limiter.acquire_batch(&cancel).await.unwrap());
        assert_eq!(Instant::now() - start, WINDOW - Duration::from_secs(20));
        drop(limiter.acquire(&cancel).await.unwrap());
        assert_eq!(
            limiter.own_batch_ages().len(),
            2,
            "a query is no batch call"
        );
    }

    /// A batch call waiting for its minute holds no place in flight: queries go on.
    #[tokio::test(start_paused = true)]
    async fn a_batch_call_waiting_for_its_minute_holds_no_place_in_flight() {
        let limiter = std::sync::Arc::new(RealmLimiter::new(&RateLimits {
            requests_per_minute: 100,
            max_in_flight: 1,
            batch_calls_per_minute: 1,
        }));
        let cancel = CancellationToken::new();
        drop(limiter.acquire_batch(&cancel).await.unwrap());
        let (l, c) = (limiter.clone(), cancel.clone());
        let waiting = tokio::spawn(async move {
            drop(l.acquire_batch(&c).await.unwrap());
            Instant::now()
        });
        tokio::task::yield_now().await;
        let start = Instant::now();
        let query = limiter.acquire(&cancel).await.unwrap();
        assert_eq!(
            Instant::now(),
            start,
            "the query did not wait for the batch call"
        );
        drop(query);
        assert!(waiting.await.unwrap() - start >= WINDOW - Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_ends_at_once() {
        let limiter = RealmLimiter::new(&RateLimits::default());
        limiter.pause_for(Duration::from_secs(3600));
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            c.cancel();
        });
        assert!(limiter.acquire(&cancel).await.is_err());
        assert!(Instant::now() - start < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stretch_of_throttling_ends_with_any_other_answer() {
        let limiter = RealmLimiter::new(&RateLimits::default());
        assert_eq!(limiter.throttled(), Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(limiter.throttled(), Duration::from_secs(5));
        limiter.answered();
        assert_eq!(limiter.throttled(), Duration::ZERO);
    }
}
