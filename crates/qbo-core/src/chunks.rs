//! Cuts a date range into the windows (chunks) a backfill loads one at a time.
//! Windows are half-open UTC intervals, so a record on a boundary belongs to exactly one.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};

use crate::query::{Literal, Op, Query, LAST_UPDATED_FIELD, TXN_DATE_FIELD};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("`{0}` is not a date; use YYYY-MM-DD, e.g. 2024-01-31")]
    BadDate(String),
    #[error("--end ({end}) is before --start ({start}); --end is inclusive, so use --end {start} or later")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("--chunk-days must be between 1 and 3660, got {0}")]
    BadChunkDays(i64),
}

/// Which timestamp a window filters on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WindowField {
    /// `MetaData.LastUpdatedTime`: every entity has it, and edits move a record forward.
    LastUpdated,
    /// `TxnDate`: the business date of a transaction (invoices and other transactions only).
    TxnDate,
}

impl WindowField {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowField::LastUpdated => "last-updated",
            WindowField::TxnDate => "txn-date",
        }
    }

    pub fn parse_stored(s: &str) -> Option<Self> {
        match s {
            "last-updated" => Some(WindowField::LastUpdated),
            "txn-date" => Some(WindowField::TxnDate),
            _ => None,
        }
    }
}

pub fn parse_date(s: &str) -> Result<NaiveDate, PlanError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| PlanError::BadDate(s.to_string()))
}

/// An inclusive range of calendar days, as the user typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start: NaiveDate,
    pub end_inclusive: NaiveDate,
}

impl DateRange {
    pub fn new(start: NaiveDate, end_inclusive: NaiveDate) -> Result<Self, PlanError> {
        if end_inclusive < start {
            return Err(PlanError::EndBeforeStart {
                start,
                end: end_inclusive,
            });
        }
        Ok(DateRange {
            start,
            end_inclusive,
        })
    }
}

/// `[start, end)` in UTC; for `txn-date` windows both ends are midnights standing for dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

fn midnight_utc(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

impl Window {
    /// Adds this window's bounds to a query on `field`.
    pub fn constrain(&self, query: Query, field: WindowField) -> Query {
        match field {
            WindowField::LastUpdated => query
                .filter(LAST_UPDATED_FIELD, Op::Ge, Literal::Instant(self.start))
                .filter(LAST_UPDATED_FIELD, Op::Lt, Literal::Instant(self.end)),
            WindowField::TxnDate => query
                .filter(
                    TXN_DATE_FIELD,
                    Op::Ge,
                    Literal::Date(self.start.date_naive()),
                )
                .filter(TXN_DATE_FIELD, Op::Lt, Literal::Date(self.end.date_naive())),
        }
    }
}

impl Window {
    /// Cuts the window into about `pieces` windows of equal length, never shorter than the
    /// field's grain (a second of LastUpdatedTime, a day of TxnDate), so the pieces still
    /// cover it without gaps or overlap. One piece when it cannot be cut.
    pub fn split_even(&self, pieces: u64, field: WindowField) -> Vec<Window> {
        let grain = match field {
            WindowField::LastUpdated => Duration::seconds(1),
            WindowField::TxnDate => Duration::days(1),
        };
        let grains = ((self.end - self.start).num_seconds() / grain.num_seconds()).max(1);
        let per_piece = (grains as u64).div_ceil(pieces.max(1)).max(1) as i32;
        let step = grain * per_piece;
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            let next = (at + step).min(self.end);
            out.push(Window {
                start: at,
                end: next,
            });
            at = next;
        }
        out
    }
}

/// `[range.start, range.end + 1 day)` as one window: the chunk of an entity read whole.
pub fn whole_range(range: DateRange) -> Window {
    Window {
        start: midnight_utc(range.start),
        end: midnight_utc(range.end_inclusive) + Duration::days(1),
    }
}

/// Splits `[range.start, range.end + 1 day)` into pieces of `chunk_days` (the last may be shorter).
pub fn plan(range: DateRange, chunk_days: i64) -> Result<Vec<Window>, PlanError> {
    if !(1..=3660).contains(&chunk_days) {
        return Err(PlanError::BadChunkDays(chunk_days));
    }
    let end = midnight_utc(range.end_inclusive) + Duration::days(1);
    let mut windows = Vec::new();
    let mut start = midnight_utc(range.start);
    while start < end {
        let next = (start + Duration::days(chunk_days)).min(end);
        windows.push(Window { start, end: next });
        start = next;
    }
    Ok(windows)
}

/// Splits `[start, end)` into pieces of at most `chunk_days` (sync's catch-up windows, which
/// start at a watermark rather than a midnight). Empty when `end <= start`.
pub fn plan_between(start: DateTime<Utc>, end: DateTime<Utc>, chunk_days: i64) -> Vec<Window> {
    let step = Duration::days(chunk_days.clamp(1, 3660));
    let mut windows = Vec::new();
    let mut at = start;
    while at < end {
        let next = (at + step).min(end);
        windows.push(Window {
            start: at,
            end: next,
        });
        at = next;
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn windows_cover_the_range_without_gaps_or_overlap() {
        let w = plan(DateRange::new(d("2024-01-01"), d("2024-01-10")).unwrap(), 7).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].start, midnight_utc(d("2024-01-01")));
        assert_eq!(w[0].end, w[1].start);
        assert_eq!(w[1].end, midnight_utc(d("2024-01-11")));
    }

    #[test]
    fn a_single_day_is_one_window() {
        let w = plan(DateRange::new(d("2024-02-29"), d("2024-02-29")).unwrap(), 7).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].end - w[0].start, Duration::days(1));
    }

    #[test]
    fn an_even_split_covers_the_window_at_the_fields_grain() {
        let w = whole_range(DateRange::new(d("2024-01-01"), d("2024-01-10")).unwrap());
        let days = w.split_even(4, WindowField::TxnDate);
        assert_eq!(days.len(), 4, "{days:?}");
        assert!(days.iter().all(|p| p.start.time() == NaiveTime::MIN));
        for pair in days.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert_eq!((days[0].start, days[3].end), (w.start, w.end));
        // A day cannot be cut by TxnDate, and a second cannot be cut at all.
        let day = whole_range(DateRange::new(d("2024-01-01"), d("2024-01-01")).unwrap());
        assert_eq!(day.split_even(8, WindowField::TxnDate), vec![day]);
        let second = Window {
            start: day.start,
            end: day.start + Duration::seconds(1),
        };
        assert_eq!(second.split_even(8, WindowField::LastUpdated), vec![second]);
        assert_eq!(day.split_even(3, WindowField::LastUpdated).len(), 3);
    }

    #[test]
    fn bad_input_is_explained() {
        assert_eq!(
            parse_date("2024-13-01"),
            Err(PlanError::BadDate("2024-13-01".into()))
        );
        assert!(matches!(
            DateRange::new(d("2024-02-01"), d("2024-01-01")),
            Err(PlanError::EndBeforeStart { .. })
        ));
        let r = DateRange::new(d("2024-01-01"), d("2024-01-01")).unwrap();
        assert_eq!(plan(r, 0), Err(PlanError::BadChunkDays(0)));
    }
}
