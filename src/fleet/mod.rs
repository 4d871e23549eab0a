//! Many companies, many processes: runs planned ahead (`qbo backfill --enqueue`) and the
//! `qbo worker`s that load them. Postgres is the only coordinator: a worker is stateless,
//! claims windows of any company's queued runs under a lease, and a window whose worker
//! died is taken over once its lease runs out.

pub mod clients;
pub mod enqueue;
pub mod worker;

pub use enqueue::{enqueue_backfill, record_invocation, BackfillRequest, Enqueued};
pub use worker::{Worker, WorkerConfig, WorkerReport};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
    #[error(
        "a worker slot panicked, which is a bug in qbo (please report it with this message): {0}"
    )]
    SlotPanicked(String),
}
