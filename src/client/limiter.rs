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
}

impl RealmLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        RealmLimiter {
            in_flight: Semaphore::new(limits.max_in_flight.max(1) as usize),
            per_window: limits.requests_per_minute.max(1) as usize,
            recent: Mutex::new(VecDeque::new()),
        }
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
