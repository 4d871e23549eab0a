//! What can go wrong in an operation, and whose fault it is.

use crate::backfill::BackfillError;
use crate::companies::CompaniesError;
use crate::queue::QueueError;
use crate::store::StoreError;

/// Whose fault an error is (the API's status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (a bad date, an unknown entity, end before start): 400.
    Invalid,
    /// No run or company by that name: 404.
    NotFound,
    /// The run or company is in a state that refuses this (cancelling a finished run,
    /// retrying a run still running): 409.
    Conflict,
    /// This build cannot do it: 501.
    NotAvailable,
    /// Postgres failed, or a bug: 500.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotAvailable(String),
    #[error(transparent)]
    Companies(#[from] CompaniesError),
    #[error(transparent)]
    Backfill(#[from] BackfillError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl From<crate::fleet::FleetError> for ControlError {
    fn from(e: crate::fleet::FleetError) -> Self {
        use crate::fleet::FleetError;
        match e {
            FleetError::Store(e) => ControlError::Store(e),
            FleetError::Backfill(e) => ControlError::Backfill(e),
            FleetError::Companies(e) => ControlError::Companies(e),
            e @ FleetError::UnknownCompany(_) => ControlError::NotFound(e.to_string()),
            e @ FleetError::BadSyncOptions(_) => ControlError::Invalid(e.to_string()),
            e @ FleetError::SlotPanicked(_) => ControlError::Conflict(e.to_string()),
        }
    }
}

impl From<super::RunRefError> for ControlError {
    fn from(e: super::RunRefError) -> Self {
        match e {
            super::RunRefError::Store(e) => ControlError::Store(e),
            e @ super::RunRefError::Ambiguous { .. } => ControlError::Invalid(e.to_string()),
            e @ super::RunRefError::NoMatch(_) => ControlError::NotFound(e.to_string()),
            e @ super::RunRefError::Malformed(_) => ControlError::Invalid(e.to_string()),
        }
    }
}

impl ControlError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ControlError::Invalid(_) => ErrorKind::Invalid,
            ControlError::NotFound(_) => ErrorKind::NotFound,
            ControlError::Conflict(_) => ErrorKind::Conflict,
            ControlError::NotAvailable(_) => ErrorKind::NotAvailable,
            ControlError::Companies(CompaniesError::NotFound(_)) => ErrorKind::NotFound,
            ControlError::Companies(CompaniesError::EnvironmentMismatch { .. }) => {
                ErrorKind::Conflict
            }
            ControlError::Backfill(
                BackfillError::NoTxnDate(_)
                | BackfillError::Plan(_)
                | BackfillError::NothingToResume { .. },
            ) => ErrorKind::Invalid,
            ControlError::Backfill(BackfillError::RunNotFound(_)) => ErrorKind::NotFound,
            ControlError::Backfill(
                BackfillError::RunCancelled { .. } | BackfillError::WrongRun { .. },
            ) => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        }
    }
}
