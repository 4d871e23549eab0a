//! Many companies, many processes: runs planned ahead (`qbo backfill --enqueue`) and the
//! `qbo worker`s that load them. Postgres is the only coordinator: a worker is stateless,
//! claims windows of any company's queued runs under a lease, and a window whose worker
//! died is taken over once its lease runs out.

pub mod clients;
pub mod enqueue;
pub mod sync_requests;
mod sync_slot;
pub mod worker;

pub use enqueue::{enqueue_backfill, record_invocation, BackfillRequest, Enqueued};
pub use sync_requests::{
    cancel_sync_request, enqueue_sync, enqueue_sync_or_existing, open_syncs_by_company,
    recent_sync_requests, sync_in_progress, sync_request, Enqueue, Requester, SyncOptions,
    SyncRequest, SyncRequestInfo, SyncRequestStatus, SyncSelection,
};
pub use worker::{Worker, WorkerConfig, WorkerReport};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),
    #[error(transparent)]
    Companies(#[from] crate::companies::CompaniesError),
    #[error("no company with realm id {0} in ops.companies; add it with `qbo companies add --realm-id {0}`")]
    UnknownCompany(String),
    #[error("bad sync options: {0}")]
    BadSyncOptions(String),
    #[error(
        "a worker slot panicked, which is a bug in qbo (please report it with this message): {0}"
    )]
    SlotPanicked(String),
}
