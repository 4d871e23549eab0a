//! The limiter against an in-memory ledger, in tokio's paused time: several limiters on one
//! `LocalLedger` are several processes sharing a company's row.

use std::sync::Arc;

use super::*;
use crate::client::ledger::LocalLedger;

fn limits(requests_per_minute: u32, max_in_flight: u32, batch_calls_per_minute: u32) -> RateLimits {
    RateLimits {
        requests_per_minute,
        max_in_flight,
        batch_calls_per_minute,
        monthly_read_cap: None,
    }
}

fn alone(l: RateLimits) -> RealmLimiter {
    RealmLimiter::new(&l, Ledger::local())
}

/// `n` limiters ("processes") sharing one company's budget.
fn sharing(n: usize, l: RateLimits, cap: Option<u64>) -> Vec<Arc<RealmLimiter>> {
    let book = Arc::new(LocalLedger::default());
    let l = RateLimits {
        monthly_read_cap: cap,
        ..l
    };
    (0..n)
        .map(|_| Arc::new(RealmLimiter::new(&l, Ledger::on(book.clone()))))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_throttle_pauses_every_worker_of_the_realm() {
    let limiter = alone(RateLimits::default());
    let start = Instant::now();
    limiter.pause_for(Duration::from_secs(3));
    limiter.pause_for(Duration::from_secs(1));
    let _p = limiter.acquire(&CancellationToken::new()).await.unwrap();
    assert!(Instant::now().duration_since(start) >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_pause_recorded_by_one_process_holds_the_others() {
    let all = sharing(2, RateLimits::default(), None);
    let start = Instant::now();
    all[0]
        .record_pause(Duration::from_secs(5), None)
        .await
        .unwrap();
    let _p = all[1].acquire(&CancellationToken::new()).await.unwrap();
    assert!(Instant::now().duration_since(start) >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_limit_in_a_rolling_minute() {
    let limiter = alone(limits(5, 2, 40));
    let start = Instant::now();
    let mut starts = Vec::new();
    for _ in 0..12 {
        let _p = limiter.acquire(&CancellationToken::new()).await.unwrap();
        starts.push(Instant::now().duration_since(start));
    }
    assert_eq!(starts[..5], [Duration::ZERO; 5], "a burst goes at once");
    for (i, t) in starts.iter().enumerate().skip(5) {
        assert!(
            *t >= starts[i - 5] + WINDOW,
            "request {i} started too early"
        );
    }
}

/// Processes starting at once share the minute: together they never pass it.
#[tokio::test(start_paused = true)]
async fn processes_starting_at_once_never_pass_the_limit_together() {
    let all = sharing(3, limits(10, 10, 40), None);
    let start = Instant::now();
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for l in &all {
        for _ in 0..3 {
            let (l, c) = (l.clone(), cancel.clone());
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                for _ in 0..3 {
                    drop(l.acquire(&c).await.unwrap());
                    starts.push(Instant::now() - start);
                }
                starts
            }));
        }
    }
    let mut starts = Vec::new();
    for t in tasks {
        starts.extend(t.await.unwrap());
    }
    starts.sort();
    assert_eq!(starts.len(), 27);
    for (i, t) in starts.iter().enumerate().skip(10) {
        assert!(*t >= starts[i - 10] + WINDOW, "{starts:?}");
    }
    assert!(starts[9] < WINDOW, "the first ten went at once: {starts:?}");
}

#[tokio::test(start_paused = true)]
async fn other_processes_requests_use_the_same_budget() {
    let all = sharing(2, limits(3, 2, 40), None);
    let cancel = CancellationToken::new();
    let start = Instant::now();
    drop(all[0].acquire(&cancel).await.unwrap());
    drop(all[0].acquire(&cancel).await.unwrap());
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(all[1].acquire(&cancel).await.unwrap());
    assert_eq!(Instant::now() - start, Duration::from_secs(10));
    drop(all[1].acquire(&cancel).await.unwrap());
    assert!(
        Instant::now() - start >= WINDOW,
        "the other process's requests counted"
    );
}

/// At most `batch_calls_per_minute` batch calls start in any rolling minute, bursts
/// allowed; each is also one of the requests per minute.
#[tokio::test(start_paused = true)]
async fn batch_calls_have_their_own_rolling_minute() {
    let limiter = alone(limits(100, 4, 3));
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
    for i in 3..7 {
        assert!(starts[i] >= starts[i - 3] + WINDOW, "{starts:?}");
        assert!(
            starts[i] < starts[i - 3] + WINDOW + Duration::from_secs(2),
            "{starts:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn other_processes_batch_calls_use_the_same_batch_budget() {
    let all = sharing(2, limits(500, 10, 3), None);
    let cancel = CancellationToken::new();
    let start = Instant::now();
    drop(all[0].acquire_batch(&cancel).await.unwrap());
    drop(all[0].acquire_batch(&cancel).await.unwrap());
    drop(all[1].acquire_batch(&cancel).await.unwrap());
    assert_eq!(Instant::now(), start);
    // A query is no batch call.
    drop(all[1].acquire(&cancel).await.unwrap());
    assert_eq!(Instant::now(), start);
    drop(all[1].acquire_batch(&cancel).await.unwrap());
    assert!(Instant::now() - start >= WINDOW);
}

/// A batch call waiting for its minute holds no place in flight: queries go on.
#[tokio::test(start_paused = true)]
async fn a_batch_call_waiting_for_its_minute_holds_no_place_in_flight() {
    let limiter = Arc::new(alone(limits(100, 1, 1)));
    let cancel = CancellationToken::new();
    drop(limiter.acquire_batch(&cancel).await.unwrap());
    let (l, c) = (limiter.clone(), cancel.clone());
    let waiting = tokio::spawn(async move {
        drop(l.acquire_batch(&c).await.unwrap());
        Instant::now()
    });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
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

/// However many requests several processes start at once, no more than the company's seats
/// are in flight.
#[tokio::test(start_paused = true)]
async fn seats_are_the_companys_across_processes() {
    let all = sharing(3, limits(500, 4, 40), None);
    let cancel = CancellationToken::new();
    let in_flight = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for l in &all {
        for _ in 0..4 {
            let (l, c, n, p) = (l.clone(), cancel.clone(), in_flight.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let seat = l.acquire(&c).await.unwrap();
                    let now = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    drop(seat);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&peak), "peak in flight {peak}");
}

/// A process that stops renewing (SIGKILL) holds its seats only until their lease ends.
#[tokio::test(start_paused = true)]
async fn a_dead_processs_seats_free_after_their_lease() {
    let all = sharing(2, limits(500, 2, 40), None);
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let a = all[0].acquire(&cancel).await.unwrap();
    let b = all[0].acquire(&cancel).await.unwrap();
    // The process dies with both seats: they are never given back.
    std::mem::forget(a);
    std::mem::forget(b);
    drop(all[1].acquire(&cancel).await.unwrap());
    let waited = Instant::now() - start;
    assert!(waited >= SEAT_LEASE - Duration::from_secs(1), "{waited:?}");
}

/// A process holding every seat shares them once another process waits for one.
#[tokio::test(start_paused = true)]
async fn a_busy_process_shares_its_seats_with_a_waiting_one() {
    let all = sharing(2, limits(500, 2, 40), None);
    let cancel = CancellationToken::new();
    // Two workers that take a seat again the moment they give one back.
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let (busy, c) = (all[0].clone(), cancel.clone());
            tokio::spawn(async move {
                while let Ok(seat) = busy.acquire(&c).await {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    drop(seat);
                }
            })
        })
        .collect();
    let renew = all[0].clone();
    let c = cancel.clone();
    let renewer = tokio::spawn(async move {
        while !c.is_cancelled() {
            tokio::time::sleep(RENEW_EVERY).await;
            renew.renew(false).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Virtual time: well within the seats' lease, so only sharing can give it a seat.
    let seat = tokio::time::timeout(SEAT_LEASE / 2, all[1].acquire(&cancel))
        .await
        .expect("the busy process never shared its seats");
    drop(seat.unwrap());
    cancel.cancel();
    for hog in hogs {
        hog.await.unwrap();
    }
    renewer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_monthly_read_cap_stops_new_requests() {
    let all = sharing(2, RateLimits::default(), Some(3));
    let cancel = CancellationToken::new();
    for _ in 0..3 {
        drop(all[0].acquire(&cancel).await.unwrap());
        all[0].count_reads(1);
    }
    all[0].renew(false).await.unwrap();
    match all[1].acquire(&cancel).await {
        Err(Denied::ReadCap { reads: 3, cap: 3 }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(all[1].month_reads(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_wait_ends_at_once() {
    let limiter = alone(RateLimits::default());
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
    let limiter = alone(RateLimits::default());
    assert_eq!(limiter.throttled(), Duration::ZERO);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(limiter.throttled(), Duration::from_secs(5));
    limiter.answered();
    assert_eq!(limiter.throttled(), Duration::ZERO);
}
