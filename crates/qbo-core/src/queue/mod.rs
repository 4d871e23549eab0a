//! The work queue in Postgres: runs, their chunks (one window each, one row of
//! `ops.backfill_report`), and the only ways a chunk's state changes.
//!
//! A worker claims a chunk (`claim`: one run's next chunk; `claim_next_any`: any company's,
//! least recently served company first) and gets a [`ClaimedChunk`]: it heartbeats the
//! lease while the worker loads the window, and every write it makes (progress, succeed,
//! fail, park, split, hand back) is fenced on the lease owner and the attempt number. A
//! worker whose lease ran out and whose chunk another worker claimed writes nothing and gets
//! [`QueueError::LeaseLost`]: the chunk is someone else's now, which is not a failure of the
//! window. Parked (`paged`) windows wait for their run's sweep: an in-process run's stay leased
//! and are settled through the [`ParkedChunk`] the park returned; a queued run's are parked
//! durably, without a lease, and settled by the one worker holding the run's [`SweepClaim`].
//!
//! States are enums ([`ChunkStatus`], [`RunStatus`], [`RunKind`]) stored as text under
//! CHECK constraints that list the same spellings.
//!
//! Dependency direction: `sync` -> `backfill` -> `queue` -> `store`. Nothing here calls up.

mod claim;
mod handle;
mod keep_alive;
mod manage;
mod paged;
mod retry;
mod run;
mod state;
mod sweep_lease;

pub use claim::{ClaimMode, Claimer};
pub use handle::{ClaimedChunk, PlannedWindow, Progress};
pub use manage::{Changed, Refusal};
pub use paged::{PagedVerdict, ParkedChunk};
pub use retry::{retry_transient, Transient};
pub use state::{ChunkStatus, RunKind, RunStatus, UnknownState};
pub use sweep_lease::{StoredPark, SweepClaim};

use uuid::Uuid;

use crate::store::{PgStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The chunk's lease ran out and another worker claimed it (or it was settled without
    /// us): this write changed nothing. Stop working on the chunk; it is not a failure.
    #[error("lost the lease on chunk {chunk} of run {run_id}: another worker took it over, so this worker's write was rolled back")]
    LeaseLost { run_id: Uuid, chunk: i32 },
    /// The run's sweep lease ran out and another worker took the sweep over: this sweep
    /// settled nothing. Not a failure of the run.
    #[error("lost the sweep of run {run_id}: another worker took it over, so this worker settled nothing")]
    SweepLost { run_id: Uuid },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Store(StoreError::Db(e))
    }
}

impl QueueError {
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, QueueError::LeaseLost { .. })
    }
}

/// The queue's operations on one database (cheap to clone: it shares the pool).
#[derive(Clone)]
pub struct Queue {
    store: PgStore,
}

impl Queue {
    pub fn new(store: PgStore) -> Self {
        Queue { store }
    }

    fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }
}
