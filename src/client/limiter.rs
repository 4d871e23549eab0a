//! Keeps one realm inside QBO's limits (requests per minute, requests in flight), however
//! many workers share the client.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::config::RateLimits;

/// A little longer than QBO's minute, so clock skew and latency between our send and
/// Intuit's receive never let the server count one request too many.
const WINDOW: Duration = Duration::from_millis(61_000);

pub struct RealmLimiter {
    in_flight: Semaphore,
    per_window: usize,
    /// Start times of the requests in the current window, oldest first.
    recent: Mutex<VecDeque<Instant>>,
    /// QBO throttled the company: nobody sends before this (a 429 is about the realm's
    /// quota, not one worker's request, so every worker waits out its Retry-After).
    paused_until: std::sync::Mutex<Option<Instant>>,
}

impl RealmLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        RealmLimiter {
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            per_window: limits.requests_per_minute.max(1) as usize,
            recent: Mutex::new(VecDeque::new()),
            paused_until: std::sync::Mutex::new(None),
        }
    }

    /// Holds every request of the realm for `wait` from now (extending, never shortening, a
    /// pause already in force).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
    }

    fn pause(&self) -> Option<Instant> {
        let paused = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        paused.filter(|t| *t > Instant::now())
    }

    /// Waits for a slot in the rolling minute and a place among the requests in flight.
    /// Hold the permit until the response has been read.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self
            .in_flight
            .acquire()
            .await
            .expect("the limiter's semaphore is never closed");
        loop {
            if let Some(until) = self.pause() {
                tokio::time::sleep_until(until).await;
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
                if recent.len() < self.per_window {
                    recent.push_back(now);
                    return permit;
                }
                *recent.front().expect("full window is not empty") + WINDOW
            };
            tokio::time::sleep_until(wait_until).await;
        }
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
        let _p = limiter.acquire().await;
        assert!(Instant::now().duration_since(start) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_a_rolling_minute() {
        let limiter = RealmLimiter::new(&RateLimits {
            requests_per_minute: 5,
            max_in_flight: 2,
        });
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..12 {
            let _p = limiter.acquire().await;
            starts.push(Instant::now().duration_since(start));
        }
        for (i, t) in starts.iter().enumerate().skip(5) {
            assert!(
                *t >= starts[i - 5] + WINDOW,
                "request {i} started too early"
            );
        }
    }
}
