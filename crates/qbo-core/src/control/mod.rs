//! The operations `qbo serve`'s JSON API, its status page and its scheduler share: read the
//! companies and runs, start a backfill for the workers, pause and resume a company, and
//! cancel, resume or retry a run. Each is what a CLI command does, with the CLI's validation
//! and messages; none prints anything or talks to QBO (the workers do the loading).
//!
//! Errors are [`ControlError`]s, whose [`ErrorKind`] says whose fault they are (bad input,
//! nothing by that name, a run in the wrong state, ...): the API maps it to a status code.

mod actions;
mod error;
mod read;
mod run_ref;
mod syncs;

pub use actions::{BackfillSpec, RunAction, RunChanged, Started, StartedRun};
pub use error::{ControlError, ErrorKind};
pub use read::{CompanyView, RunDetail, RunFilter, RunView, WindowCounts};
pub use run_ref::{RunRef, RunRefError};
pub use syncs::{QueuedSync, SyncSpec, SyncsStarted};

use crate::config::Environment;
use crate::store::PgStore;

/// The shared operations on one database. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    store: PgStore,
    /// The environment a company named for the first time joins `qbo companies` with, and
    /// the one whose companies `all_companies` means (QBO_ENVIRONMENT, as for the CLI).
    environment: Environment,
    /// The QBO minor version new runs record (QBO_MINOR_VERSION).
    minor_version: u32,
}

impl Control {
    pub fn new(store: PgStore, environment: Environment, minor_version: u32) -> Self {
        Control {
            store,
            environment,
            minor_version,
        }
    }

    pub fn store(&self) -> &PgStore {
        &self.store
    }
}
