//! `--run`: a run as the user names it (see [`crate::control::RunRef`]); a prefix that names
//! no run or several is a usage error (exit 2).

pub use crate::control::RunRef;
use crate::control::RunRefError;

use super::CliError;

impl From<RunRefError> for CliError {
    fn from(e: RunRefError) -> Self {
        match e {
            RunRefError::Store(e) => CliError::failed(e),
            e => CliError::usage(e),
        }
    }
}
