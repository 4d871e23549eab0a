//! A run as a person names it: a whole id, or the start of one (`qbo report` prints the
//! first 8 hex digits), like git's abbreviated commit ids.

use uuid::Uuid;

use crate::store::{PgStore, StoreError};

/// Fewer digits than this would match most runs of a busy database.
const MIN_DIGITS: usize = 4;
/// Matches listed when a prefix names more than one run.
const MAX_LISTED: i64 = 20;

/// A whole run id, or a prefix of at least 4 hex digits (any case, dashes optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunRef {
    Id(Uuid),
    /// Lowercase hex digits, no dashes.
    Prefix(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunRefError {
    #[error("{0}")]
    Malformed(String),
    #[error("no run id starts with {0} (`qbo report` lists the runs)")]
    NoMatch(String),
    /// The text lists the matches so the user can pick.
    #[error("{text}")]
    Ambiguous { text: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl std::str::FromStr for RunRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(id) = Uuid::try_parse(s) {
            return Ok(RunRef::Id(id));
        }
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "`{s}` is not a run id: give the id `qbo report` shows (hex digits, e.g. 278e32ae)"
            ));
        }
        if hex.len() < MIN_DIGITS {
            return Err(format!(
                "`{s}` is too short: give at least {MIN_DIGITS} hex digits of the run id"
            ));
        }
        if hex.len() > 32 {
            return Err(format!("`{s}` is longer than a run id"));
        }
        Ok(RunRef::Prefix(hex.to_ascii_lowercase()))
    }
}

impl RunRef {
    /// Parses, with the message as a [`RunRefError::Malformed`].
    pub fn parse(s: &str) -> Result<RunRef, RunRefError> {
        s.parse().map_err(RunRefError::Malformed)
    }

    /// The one run this names. A prefix that matches no run, or several, is an error
    /// (several are listed so the user can pick). A whole id is taken as it is: whoever
    /// uses it says whether it exists.
    pub async fn resolve(&self, store: &PgStore) -> Result<Uuid, RunRefError> {
        let prefix = match self {
            RunRef::Id(id) => return Ok(*id),
            RunRef::Prefix(p) => p,
        };
        let matches = store.runs_with_prefix(prefix, MAX_LISTED + 1).await?;
        match matches.as_slice() {
            [] => Err(RunRefError::NoMatch(prefix.clone())),
            [one] => Ok(one.run_id),
            many => {
                let mut text =
                    format!("{prefix} is the start of more than one run id; give more digits:");
                for m in many.iter().take(MAX_LISTED as usize) {
                    text.push_str(&format!(
                        "\n  {}  {:<24} {:<8} started {}",
                        m.run_id,
                        m.entity,
                        m.kind,
                        m.started_at.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                }
                if many.len() > MAX_LISTED as usize {
                    text.push_str("\n  ... and more");
                }
                Err(RunRefError::Ambiguous { text })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_ids_and_prefixes_of_any_case_parse() {
        let id = "278e32ae-6f1c-4a00-8000-000000000001";
        assert_eq!(id.parse(), Ok(RunRef::Id(Uuid::parse_str(id).unwrap())));
        assert_eq!("278E32AE".parse(), Ok(RunRef::Prefix("278e32ae".into())));
        assert_eq!(
            "278e32ae-6f1c".parse(),
            Ok(RunRef::Prefix("278e32ae6f1c".into()))
        );
        assert!("278".parse::<RunRef>().unwrap_err().contains("at least 4"));
        assert!("last"
            .parse::<RunRef>()
            .unwrap_err()
            .contains("not a run id"));
    }
}
