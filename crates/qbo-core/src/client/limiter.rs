//! Keeps one realm inside QBO's limits (requests per minute, requests in flight, batch calls
//! per minute, and the app's optional monthly read cap), however many workers and however
//! many qbo processes and machines share it: the budget is leased from a `Ledger` (Postgres
//! for a fleet), never assumed.
//!
//! The minute is QBO's: a sliding window in which at most the limit may start, so a burst up
//! to the limit goes at once and the next request waits for the oldest to age out (no even
//! pacing). Permits are leased in small blocks (what the waiting requests need) and must be
//! used within `PERMIT_USE` of the lease; each counts for `WINDOW` after that, used or not.
//! Seats (requests in flight) are held for a while and renewed, so a busy process pays no
//! database round trip per request; a dead process's seats free themselves after
//! `SEAT_LEASE`.

use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ledger::Ledger;
use crate::config::RateLimits;
use crate::store::throttle::{Ask, Grant, Terms};

/// A little longer than QBO's minute, so clock skew and latency between our send and
/// Intuit's receive never let the server count one request too many.
pub const WINDOW: Duration = Duration::from_millis(61_000);

/// A leased permit must be sent within this of the lease (measured from before the lease was
/// asked); a later one is dropped unused. It counts for `WINDOW` after this, so a request
/// sent at the last moment still ages out of QBO's minute before its permit does.
pub const PERMIT_USE: Duration = Duration::from_millis(1_000);

/// How long a process's seats stay its own without a renewal: a SIGKILLed process's seats
/// are free for the others after this.
pub const SEAT_LEASE: Duration = Duration::from_secs(10);

/// How often seats are renewed (and idle ones given back, reads recorded).
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// How long Postgres may keep refusing leases before the request fails.
const LEDGER_PATIENCE: Duration = Duration::from_secs(60);

/// Why a wait for the budget ended without a seat.
#[derive(Debug)]
pub enum Denied {
    /// Ctrl-C / SIGTERM.
    Cancelled,
    /// The app's reads this month reached `QBO_MONTHLY_READ_CAP`.
    ReadCap { reads: u64, cap: u64 },
    /// The ledger (Postgres) could not be reached for `LEDGER_PATIENCE`.
    Unavailable(String),
}

/// A wait was cut short by Ctrl-C / SIGTERM.
#[derive(Debug)]
pub struct Cancelled;

/// Sleeps until `until`, or returns early (Err) when `cancel` fires.
pub async fn sleep_until(cancel: &CancellationToken, until: Instant) -> Result<(), Cancelled> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Cancelled),
        _ = tokio::time::sleep_until(until) => Ok(()),
    }
}

/// A block of leased permits, usable until `until`.
#[derive(Debug, Clone, Copy)]
struct Block {
    n: u32,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Seats leased, in use, and the most this process may use now (its fair share).
    held: u32,
    busy: u32,
    cap: u32,
    /// The most seats in use since the last renewal (idle seats are given back after that).
    peak_busy: u32,
    /// Seats are ours until then (local clock, from before the lease was asked).
    seats_until: Option<Instant>,
    /// Requests waiting for a seat, and holding one while waiting for a permit.
    waiting_seats: u32,
    waiting_permits: u32,
    permits: Vec<Block>,
    batch_permits: Vec<Block>,
    /// QBO throttled the company: nobody sends before this (a 429 is about the realm's
    /// quota, not one worker's request, so every worker waits out the pause).
    paused_until: Option<Instant>,
    /// The ledger said no permit frees before this.
    permits_free_at: Option<Instant>,
    batches_free_at: Option<Instant>,
    /// Requests sent but not yet recorded in the month's reads.
    unrecorded_reads: u64,
    month_reads: u64,
    cap_reached: bool,
    /// The company's seats were all taken at the last lease: ask again then.
    seat_poll_at: Option<Instant>,
    /// Bumped by every lease and freed seat: a request that saw an older state looks again
    /// instead of leasing.
    generation: u64,
}

impl State {
    fn seats_usable(&self, now: Instant) -> u32 {
        match self.seats_until {
            Some(t) if t > now => self.held.min(self.cap),
            _ => 0,
        }
    }

    fn permits_left(blocks: &mut Vec<Block>, now: Instant) -> u32 {
        blocks.retain(|b| b.n > 0 && b.until > now);
        blocks.iter().map(|b| b.n).sum()
    }

    fn take(blocks: &mut [Block]) {
        // The block that expires first goes first.
        if let Some(b) = blocks
            .iter_mut()
            .filter(|b| b.n > 0)
            .min_by_key(|b| b.until)
        {
            b.n -= 1;
        }
    }
}

pub struct RealmLimiter {
    terms: Terms,
    ledger: Ledger,
    state: SyncMutex<State>,
    /// Wakes the waiters when seats are freed or granted.
    changed: Notify,
    /// One lease at a time per process: waiters that arrive meanwhile are served by the next.
    lease_turn: Mutex<()>,
    /// One batch call at a time waits for its slot among the batch calls.
    batch_turn: Mutex<()>,
    /// Since when QBO has answered nothing but 429s.
    throttled_since: SyncMutex<Option<Instant>>,
    /// When the last "waiting for the budget" line was logged (one every few seconds).
    last_note: SyncMutex<Option<Instant>>,
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A place among the company's requests in flight, with its permit taken: send now, and
/// hold it until the response has been read.
pub struct Seat<'a> {
    limiter: &'a RealmLimiter,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.limiter.state);
        s.busy = s.busy.saturating_sub(1);
        s.generation += 1;
        drop(s);
        self.limiter.changed.notify_waiters();
    }
}

/// What a request is waiting for.
#[derive(Clone, Copy, PartialEq)]
enum Need {
    Seat,
    Permit { batch: bool },
}

/// A request's place among the waiters (`State::waiting_*`), given up when dropped.
struct Waiting<'a> {
    limiter: &'a RealmLimiter,
    need: Option<Need>,
}

impl Waiting<'_> {
    fn set(&mut self, s: &mut State, need: Option<Need>) {
        Self::count(s, self.need, -1);
        Self::count(s, need, 1);
        self.need = need;
    }

    fn count(s: &mut State, need: Option<Need>, d: i32) {
        let n = match need {
            None => return,
            Some(Need::Seat) => &mut s.waiting_seats,
            Some(Need::Permit { .. }) => &mut s.waiting_permits,
        };
        *n = n.saturating_add_signed(d);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.need.is_some() {
            let mut s = lock(&self.limiter.state);
            Self::count(&mut s, self.need, -1);
        }
    }
}

/// What a request does next, once it has looked at the state.
enum Next {
    Sleep(Instant),
    /// Sleep until then, or until a seat frees or a lease comes back.
    Watch(Instant),
    Lease(Need),
}

impl RealmLimiter {
    pub fn new(limits: &RateLimits, ledger: Ledger) -> Self {
        RealmLimiter {
            terms: Terms {
                requests_per_window: limits.requests_per_minute.max(1),
                batches_per_window: limits.batch_calls_per_minute.max(1),
                max_seats: limits.max_in_flight.max(1),
                counts_for: WINDOW + PERMIT_USE,
                seat_lease: SEAT_LEASE,
                read_cap: limits.monthly_read_cap,
            },
            ledger,
            state: SyncMutex::new(State::default()),
            changed: Notify::new(),
            lease_turn: Mutex::new(()),
            batch_turn: Mutex::new(()),
            throttled_since: SyncMutex::new(None),
            last_note: SyncMutex::new(None),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Holds every request of the realm for `wait` from now (extending, never shortening, a
    /// pause already in force). True when that is news: no pause, or one ending more than a
    /// second earlier, was in force; the workers' 429s of one burst are not.
    pub fn pause_for(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut s = lock(&self.state);
        let news = s
            .paused_until
            .is_none_or(|t| t + Duration::from_secs(1) < until);
        if s.paused_until.is_none_or(|t| t < until) {
            s.paused_until = Some(until);
        }
        s.generation += 1;
        // Permits leased before the 429 are not used after the pause.
        s.permits.clear();
        s.batch_permits.clear();
        news
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

    /// `n` requests (a batch call's items each count) were sent: they go into the month's
    /// reads with the next lease.
    pub fn count_reads(&self, n: u64) {
        lock(&self.state).unrecorded_reads += n;
    }

    /// The reads this month as of the last lease (this process's since then excluded): the
    /// app's under a read cap, the company's own without one (see `Grant::month_reads`).
    pub fn month_reads(&self) -> u64 {
        lock(&self.state).month_reads
    }

    /// Waits for the end of any pause, a seat among the company's requests in flight and a
    /// permit of its rolling minute. Ctrl-C / SIGTERM (`cancel`) ends the wait at once.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<Seat<'_>, Denied> {
        self.acquire_seat(cancel, false).await
    }

    /// Like `acquire`, for a batch call: also a permit among the company's batch calls of the
    /// rolling minute. Batch calls take their turn one at a time, and one waiting for the
    /// minute gives its seat back meanwhile, so it never holds the places pages need.
    pub async fn acquire_batch(&self, cancel: &CancellationToken) -> Result<Seat<'_>, Denied> {
        let _turn = tokio::select! {
            _ = cancel.cancelled() => return Err(Denied::Cancelled),
            turn = self.batch_turn.lock() => turn,
        };
        self.acquire_seat(cancel, true).await
    }

    async fn acquire_seat(
        &self,
        cancel: &CancellationToken,
        batch: bool,
    ) -> Result<Seat<'_>, Denied> {
        let mut seat: Option<Seat<'_>> = None;
        // Counted among the waiters for as long as it waits, so leases ask for all of them.
        let mut waiting = Waiting {
            limiter: self,
            need: None,
        };
        loop {
            if cancel.is_cancelled() {
                return Err(Denied::Cancelled);
            }
            // Registered before looking, so a lease or a freed seat cannot be missed.
            let changed = self.changed.notified();
            let mut give_back = false;
            let (next, seen) = {
                let now = Instant::now();
                let mut s = lock(&self.state);
                if let Some(denied) = self.stop(&s) {
                    return Err(denied);
                }
                let next = if let Some(until) = s.paused_until.filter(|t| *t > now) {
                    Next::Sleep(until + jitter(250))
                } else if seat.is_none() && s.busy >= s.seats_usable(now) {
                    match s.seat_poll_at.filter(|t| *t > now) {
                        // The company's seats were all taken a moment ago: wait for one of
                        // ours to free, or the next time to ask.
                        Some(at) => Next::Watch(at),
                        None => Next::Lease(Need::Seat),
                    }
                } else {
                    if seat.is_none() {
                        s.busy += 1;
                        s.peak_busy = s.peak_busy.max(s.busy);
                        seat = Some(Seat { limiter: self });
                    }
                    let have = State::permits_left(&mut s.permits, now) > 0
                        && (!batch || State::permits_left(&mut s.batch_permits, now) > 0);
                    if have {
                        waiting.set(&mut s, None);
                        State::take(&mut s.permits);
                        if batch {
                            State::take(&mut s.batch_permits);
                        }
                        return Ok(seat.take().expect("the seat was just taken"));
                    }
                    let free_at = match batch {
                        true => s.permits_free_at.max(s.batches_free_at),
                        false => s.permits_free_at,
                    };
                    match free_at.filter(|t| *t > now) {
                        // The minute is spent until then: a batch call gives its seat back
                        // while it waits.
                        Some(until) => {
                            give_back = batch;
                            Next::Sleep(until + jitter(50))
                        }
                        None => Next::Lease(Need::Permit { batch }),
                    }
                };
                let need = match next {
                    Next::Sleep(_) => {
                        (seat.is_some() && !give_back).then_some(Need::Permit { batch })
                    }
                    Next::Watch(_) => Some(Need::Seat),
                    Next::Lease(need) => Some(need),
                };
                waiting.set(&mut s, need);
                (next, s.generation)
            };
            if give_back {
                // Dropped only now: the seat's drop takes the state lock.
                seat = None;
            }
            match next {
                Next::Sleep(until) => {
                    drop(changed);
                    sleep_until(cancel, until)
                        .await
                        .map_err(|_| Denied::Cancelled)?;
                }
                Next::Watch(until) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(Denied::Cancelled),
                        _ = changed => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
                Next::Lease(need) => self.wait_for(cancel, need, changed, seen).await?,
            }
        }
    }

    fn stop(&self, s: &State) -> Option<Denied> {
        match self.terms.read_cap {
            Some(cap) if s.cap_reached => Some(Denied::ReadCap {
                reads: s.month_reads,
                cap,
            }),
            _ => None,
        }
    }

    /// Leases what `need` lacks, unless something changed since the caller looked (another
    /// request of this process leased meanwhile, or a seat freed): then it looks again.
    async fn wait_for(
        &self,
        cancel: &CancellationToken,
        need: Need,
        changed: tokio::sync::futures::Notified<'_>,
        seen: u64,
    ) -> Result<(), Denied> {
        let outcome = async {
            let _turn = tokio::select! {
                _ = cancel.cancelled() => return Err(Denied::Cancelled),
                _ = changed => return Ok(()),
                turn = self.lease_turn.lock() => turn,
            };
            if lock(&self.state).generation != seen {
                return Ok(());
            }
            self.lease(cancel, need).await.map(|_| ())
        }
        .await;
        self.changed.notify_waiters();
        outcome
    }

    /// One lease for the waiting requests of this process (retrying while Postgres is away).
    async fn lease(&self, cancel: &CancellationToken, need: Need) -> Result<Grant, Denied> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let asked_at = Instant::now();
            let ask = self.ask(need, asked_at);
            let leased = tokio::select! {
                _ = cancel.cancelled() => return Err(Denied::Cancelled),
                r = tokio::time::timeout(Duration::from_secs(10), self.ledger.lease(ask, &self.terms)) => r,
            };
            let error = match leased {
                Ok(Ok(grant)) => {
                    self.apply(ask, &grant, asked_at);
                    if grant.permit_wait.is_some() {
                        self.note_wait(grant.permit_wait.unwrap_or_default(), ask.batches > 0);
                    }
                    return Ok(grant);
                }
                Ok(Err(e)) => crate::errors::chain(&e),
                Err(_) => "Postgres did not answer within 10 s".to_string(),
            };
            if started.elapsed() >= LEDGER_PATIENCE {
                return Err(Denied::Unavailable(error));
            }
            tracing::warn!(error = %error, delay_ms = delay.as_millis() as u64, "could not lease the company's request budget from Postgres; retrying");
            sleep_until(cancel, Instant::now() + delay)
                .await
                .map_err(|_| Denied::Cancelled)?;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// What to ask for: permits for the requests holding a seat (a block as large as their
    /// number, up to a twentieth of the minute), seats for the ones waiting, and the seats in
    /// use kept.
    fn ask(&self, need: Need, now: Instant) -> Ask {
        let mut s = lock(&self.state);
        let block = (self.terms.requests_per_window / 20).max(1);
        let (mut requests, mut batches) = (0, 0);
        if let Need::Permit { batch } = need {
            let have = State::permits_left(&mut s.permits, now);
            requests = s.waiting_permits.saturating_sub(have).clamp(1, block);
            if batch && State::permits_left(&mut s.batch_permits, now) == 0 {
                batches = 1;
                requests = s.waiting_permits.saturating_sub(have).min(block);
            }
        }
        let wanted = (s.busy + s.waiting_seats).min(self.terms.max_seats);
        Ask {
            requests,
            batches,
            keep: s.busy,
            seats: wanted.max(s.peak_busy).max(s.busy),
            wanted,
            reads: s.unrecorded_reads,
        }
    }

    fn apply(&self, ask: Ask, grant: &Grant, asked_at: Instant) {
        let mut s = lock(&self.state);
        s.generation += 1;
        s.unrecorded_reads -= ask.reads.min(s.unrecorded_reads);
        s.month_reads = grant.month_reads;
        s.cap_reached = grant.cap_reached;
        s.held = grant.seats;
        // New requests may use no more than the cap (the fair share while others wait), even
        // when more seats are held for the requests in flight.
        s.cap = grant.seat_cap;
        s.seats_until = Some(asked_at + SEAT_LEASE - Duration::from_millis(500));
        s.seat_poll_at = (s.busy >= s.held.min(s.cap) && s.waiting_seats > 0)
            .then(|| Instant::now() + Duration::from_millis(100) + jitter(100));
        let until = asked_at + PERMIT_USE;
        if grant.requests > 0 {
            s.permits.push(Block {
                n: grant.requests,
                until,
            });
            s.permits_free_at = None;
        }
        if grant.batches > 0 {
            s.batch_permits.push(Block {
                n: grant.batches,
                until,
            });
            s.batches_free_at = None;
        }
        if let Some(wait) = grant.permit_wait {
            let at = Some(Instant::now() + wait);
            if ask.batches > 0 {
                s.batches_free_at = at;
            } else {
                s.permits_free_at = at;
            }
        }
        if let Some(wait) = grant.paused_for {
            let until = Instant::now() + wait;
            if s.paused_until.is_none_or(|t| t < until) {
                s.paused_until = Some(until);
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "QBO throttled this company recently (recorded by a qbo process); pausing its requests"
                );
            }
        }
    }

    /// Renews this process's seats (giving back the ones idle since the last renewal) and
    /// records its reads: call every `RENEW_EVERY`. With `release`, gives every seat back
    /// (the process is ending).
    pub async fn renew(&self, release: bool) -> Result<(), String> {
        let _turn = self.lease_turn.lock().await;
        let asked_at = Instant::now();
        let ask = {
            let mut s = lock(&self.state);
            if !release && s.held == 0 && s.unrecorded_reads == 0 && s.waiting_seats == 0 {
                return Ok(());
            }
            let wanted = (s.busy + s.waiting_seats).min(self.terms.max_seats);
            let seats = if release { 0 } else { wanted.max(s.peak_busy) };
            s.peak_busy = s.busy;
            Ask {
                keep: if release { 0 } else { s.busy },
                seats,
                wanted: if release { 0 } else { wanted },
                reads: s.unrecorded_reads,
                ..Ask::default()
            }
        };
        let grant = match self.ledger.lease(ask, &self.terms).await {
            Ok(grant) => grant,
            Err(e) => return Err(crate::errors::chain(&e)),
        };
        self.apply(ask, &grant, asked_at);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Records a 429's pause where every process of the company sees it.
    pub async fn record_pause(
        &self,
        wait: Duration,
        retry_after: Option<Duration>,
    ) -> Result<(), String> {
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.ledger.record_pause(wait, retry_after),
        )
        .await
        {
            Ok(r) => r.map_err(|e| crate::errors::chain(&e)),
            Err(_) => Err("Postgres did not answer within 2 s".into()),
        }
    }

    fn note_wait(&self, wait: Duration, batch: bool) {
        let now = Instant::now();
        let mut last = lock(&self.last_note);
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return;
        }
        *last = Some(now);
        let wait_ms = wait.as_millis() as u64;
        if batch {
            tracing::info!(
                wait_ms,
                "waiting for the company's batch-call budget: its batch calls of the last minute (every qbo process's) reached the limit"
            );
        } else {
            tracing::info!(
                wait_ms,
                "waiting for the company's request budget: its requests of the last minute (every qbo process's) reached the limit"
            );
        }
    }
}

fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(0..=max_ms))
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
