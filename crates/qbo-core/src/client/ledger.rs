//! Where the company's budget is kept: in Postgres for every qbo process of the company
//! (`store::throttle`), or in memory when a client runs without a database (library use,
//! tests). Both grant the same way, so the limiter has one code path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::store::throttle::{Ask, Grant, SharedBudget, Terms};
use crate::store::StoreError;

#[derive(Clone)]
pub enum Ledger {
    /// In this process only; several limiters sharing one `LocalLedger` behave like
    /// several processes sharing a company's row.
    Local {
        book: Arc<LocalLedger>,
        holder: Uuid,
    },
    Shared(SharedBudget),
}

impl Ledger {
    pub fn local() -> Ledger {
        Ledger::on(Arc::new(LocalLedger::default()))
    }

    /// Another holder of the same in-memory budget.
    pub fn on(book: Arc<LocalLedger>) -> Ledger {
        Ledger::Local {
            book,
            holder: Uuid::new_v4(),
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Ledger::Shared(_))
    }

    pub async fn lease(&self, ask: Ask, terms: &Terms) -> Result<Grant, StoreError> {
        match self {
            Ledger::Local { book, holder } => Ok(book.lease(*holder, ask, terms)),
            Ledger::Shared(budget) => budget.lease(ask, terms).await,
        }
    }

    pub async fn record_pause(
        &self,
        wait: Duration,
        retry_after: Option<Duration>,
    ) -> Result<(), StoreError> {
        match self {
            Ledger::Local { book, .. } => {
                book.pause(wait);
                Ok(())
            }
            Ledger::Shared(budget) => budget.record_pause(wait, retry_after).await,
        }
    }
}

/// `ops.lease_budget` in memory (see the migration for the rules).
#[derive(Default)]
pub struct LocalLedger {
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// When each permit of the window stops counting, oldest first.
    requests: VecDeque<Instant>,
    batches: VecDeque<Instant>,
    seats: HashMap<Uuid, SeatRow>,
    paused_until: Option<Instant>,
    reads: u64,
}

struct SeatRow {
    seats: u32,
    wanted: u32,
    expires: Instant,
}

impl LocalLedger {
    fn pause(&self, wait: Duration) {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + wait;
        book.paused_until = Some(book.paused_until.map_or(until, |t| t.max(until)));
    }

    fn lease(&self, holder: Uuid, ask: Ask, terms: &Terms) -> Grant {
        let mut book = self.book.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let book = &mut *book;
        book.requests.retain(|u| *u > now);
        book.batches.retain(|u| *u > now);
        book.reads += ask.reads;
        let mut grant = Grant {
            month_reads: book.reads,
            cap_reached: terms.read_cap.is_some_and(|cap| book.reads >= cap),
            paused_for: book
                .paused_until
                .filter(|t| *t > now)
                .map(|t| t.duration_since(now)),
            ..Grant::default()
        };
        if (ask.requests > 0 || ask.batches > 0) && grant.paused_for.is_none() && !grant.cap_reached
        {
            grant_permits(book, &mut grant, ask, terms, now);
        }
        grant_seats(book, &mut grant, holder, ask, terms, now);
        grant
    }
}

fn grant_permits(book: &mut Book, grant: &mut Grant, ask: Ask, terms: &Terms, now: Instant) {
    let free = |used: &VecDeque<Instant>, limit: u32| (limit as usize).saturating_sub(used.len());
    // When `n` more permits free: the entry that keeps the window full `n` times over.
    let frees_at = |used: &VecDeque<Instant>, limit: u32, n: u32| {
        let i = (used.len() + n as usize).saturating_sub(limit as usize + 1);
        used.get(i).map(|t| t.duration_since(now))
    };
    let free_r = free(&book.requests, terms.requests_per_window);
    let free_b = free(&book.batches, terms.batches_per_window);
    if ask.batches > 0 {
        if free_b >= ask.batches as usize && free_r >= ask.requests as usize {
            grant.requests = ask.requests;
            grant.batches = ask.batches;
        } else {
            let r = (free_r < ask.requests as usize)
                .then(|| frees_at(&book.requests, terms.requests_per_window, ask.requests))
                .flatten();
            let b = (free_b < ask.batches as usize)
                .then(|| frees_at(&book.batches, terms.batches_per_window, ask.batches))
                .flatten();
            grant.permit_wait = r.max(b);
        }
    } else {
        grant.requests = ask.requests.min(free_r as u32);
        if grant.requests == 0 {
            grant.permit_wait = frees_at(&book.requests, terms.requests_per_window, 1);
        }
    }
    let until = now + terms.counts_for;
    book.requests
        .extend(std::iter::repeat_n(until, grant.requests as usize));
    book.batches
        .extend(std::iter::repeat_n(until, grant.batches as usize));
}

fn grant_seats(
    book: &mut Book,
    grant: &mut Grant,
    holder: Uuid,
    ask: Ask,
    terms: &Terms,
    now: Instant,
) {
    book.seats.retain(|_, row| row.expires > now);
    let others = book.seats.iter().filter(|(h, _)| **h != holder);
    let (mut held, mut starved, mut wanting) = (0u32, 0u32, 0u32);
    for (_, row) in others {
        held += row.seats;
        starved += u32::from(row.wanted > row.seats);
        wanting += u32::from(row.wanted > 0);
    }
    let mine = book.seats.get(&holder).map_or(0, |r| r.seats);
    let fair = match starved {
        0 => terms.max_seats,
        _ => terms.max_seats.div_ceil(wanting + 1).max(1),
    };
    grant.seat_cap = fair.min(terms.max_seats.saturating_sub(held));
    grant.seats = ask
        .keep
        .min(mine)
        .max(ask.seats.max(ask.keep).min(grant.seat_cap));
    if grant.seats > 0 || ask.wanted > 0 {
        book.seats.insert(
            holder,
            SeatRow {
                seats: grant.seats,
                wanted: ask.wanted,
                expires: now + terms.seat_lease,
            },
        );
    } else {
        book.seats.remove(&holder);
    }
}
