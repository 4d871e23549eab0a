//! The states of runs and chunks, and a run's kind, as Rust enums.
//!
//! They are stored as `text` columns whose CHECK constraints list exactly these spellings
//! (`migrations/*_create_ops_backfill.sql`, `*_add_run_kind.sql`,
//! `*_request_optimal_backfills.sql`); each enum's `as_str` is the one place Rust spells
//! them, and decoding an unknown spelling is an error, never a guess.

/// Defines a state enum stored as text: `as_str`, `Display`, `FromStr`, serde's
/// `Serialize` (the same spelling, so JSON output is unchanged) and sqlx's text mapping.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in Postgres (and printed).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownState {
                        what: stringify!($name),
                        value: other.to_string(),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

/// A stored state this build of qbo does not know (a newer qbo wrote it, or a hand edit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} in the database (written by a newer qbo?)")]
pub struct UnknownState {
    pub what: &'static str,
    pub value: String,
}

text_enum! {
    /// Where a chunk (a window of a run, one report row) stands.
    pub enum ChunkStatus {
        /// Not loaded yet, or handed back (interrupted) or sent back to be read again.
        Pending => "pending",
        /// Claimed under a lease by one worker.
        Running => "running",
        /// Every page loaded; still leased, waiting for the run's changed-since sweep.
        Paged => "paged",
        Success => "success",
        Error => "error",
        /// Its run was cancelled before it finished: no lease, never claimed again.
        Cancelled => "cancelled",
    }
}

impl ChunkStatus {
    /// Not finished either way: a run with such a chunk is `incomplete`.
    pub fn is_unfinished(self) -> bool {
        matches!(
            self,
            ChunkStatus::Pending | ChunkStatus::Running | ChunkStatus::Paged
        )
    }
}

text_enum! {
    /// Where a run stands, derived from its chunks when it settles.
    pub enum RunStatus {
        Running => "running",
        /// Some chunks are not finished (interrupted, or leased by a worker that died).
        Incomplete => "incomplete",
        Success => "success",
        /// Some chunks succeeded, some failed.
        Partial => "partial",
        Error => "error",
        /// Stopped by a human (`POST /api/runs/{id}/cancel`): its unfinished windows were
        /// handed back and are never claimed again; what its finished windows loaded stays.
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// Nothing more will happen to the run by itself (`incomplete` and `running` runs have
    /// windows left).
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::Incomplete)
    }
}

text_enum! {
    /// What made a run.
    pub enum RunKind {
        Backfill => "backfill",
        Sync => "sync",
        /// `qbo reports` (or `qbo sync --reports`): its windows are report pieces, one per
        /// (report, period piece), each of entity `report:<ReportName>`. Never claimed by
        /// `qbo worker`s (`Queue::claim_next_any` takes queued backfills only).
        Report => "report",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in ChunkStatus::ALL {
            assert_eq!(s.as_str().parse::<ChunkStatus>(), Ok(*s));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        for k in RunKind::ALL {
            assert_eq!(k.as_str().parse::<RunKind>(), Ok(*k));
        }
        assert!("done".parse::<ChunkStatus>().is_err());
    }

    #[test]
    fn serializes_as_stored() {
        assert_eq!(
            serde_json::to_string(&RunStatus::Partial).unwrap(),
            "\"partial\""
        );
    }
}
