//! Cron expressions (parsed by `croner`, evaluated in UTC) and the next-tick rule: which tick
//! is due now, how many earlier ones it stands for, and when the next one is.

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};

/// The earlier ticks a due tick counts at most (a one-second schedule after a week down
/// would otherwise be walked tick by tick).
pub const MISSED_TICKS_COUNTED: u32 = 10_000;

const CRON_HELP: &str = "give 5 fields, minute hour day-of-month month day-of-week (e.g. \
    `0 2 * * *`: daily at 02:00 UTC; `0 * * * *`: hourly), or 6 with seconds first (e.g. \
    `*/30 * * * * *`); names (MON, JAN) and @hourly, @daily, @weekly work too";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("bad cron expression `{text}`: {reason}; {CRON_HELP}")]
    Bad { text: String, reason: String },
    #[error("cron expression `{0}` never fires (no such date after now)")]
    NeverFires(String),
}

/// A valid cron expression, kept with the text it was given (stored and shown as typed).
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

/// The tick to fire now, and the schedule's next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The latest tick at or before now.
    pub tick_at: DateTime<Utc>,
    /// Earlier ticks (from the stored next tick on) that this one stands for: they were
    /// missed while no instance ran, and fire once, as this one. At most
    /// `MISSED_TICKS_COUNTED`.
    pub missed_ticks: u32,
    /// The first tick after now.
    pub next_tick_at: DateTime<Utc>,
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<Self, CronError> {
        let text = text.trim();
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text).map_err(|e| CronError::Bad {
            text: text.to_string(),
            reason: e.to_string().trim_end_matches('.').to_string(),
        })?;
        let expr = CronExpr {
            text: text.to_string(),
            cron,
        };
        // An expression such as `0 0 30 2 *` parses but has no date: refuse it now rather
        // than store a schedule that can never be due.
        expr.next_after(Utc::now())?;
        Ok(expr)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, CronError> {
        self.cron
            .find_next_occurrence(&t, false)
            .map_err(|_| CronError::NeverFires(self.text.clone()))
    }

    /// What is due at `now` for a schedule whose next tick is `next_tick_at`: nothing before
    /// it; from it on, the latest tick at or before `now` (the missed ones collapse into it:
    /// a schedule fires once after downtime, not once per missed tick), and the first tick
    /// after `now`, so no tick in the past is ever left to fire.
    pub fn due(
        &self,
        next_tick_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Due>, CronError> {
        if next_tick_at > now {
            return Ok(None);
        }
        let mut tick_at = next_tick_at;
        let mut missed_ticks = 0;
        loop {
            let next = self.next_after(tick_at)?;
            if next > now {
                return Ok(Some(Due {
                    tick_at,
                    missed_ticks,
                    next_tick_at: next,
                }));
            }
            tick_at = next;
            missed_ticks += 1;
            if missed_ticks == MISSED_TICKS_COUNTED {
                break;
            }
        }
        // Too many to count: jump to the latest tick at or before now.
        let tick_at = self
            .cron
            .find_previous_occurrence(&now, true)
            .map_err(|_| CronError::NeverFires(self.text.clone()))?;
        Ok(Some(Due {
            tick_at,
            missed_ticks,
            next_tick_at: self.next_after(now)?,
        }))
    }
}

impl std::fmt::Display for CronExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_fields_are_minutes_and_six_start_with_seconds() {
        let daily = CronExpr::parse("0 2 * * *").unwrap();
        assert_eq!(
            daily.next_after(at("2026-12-04T01:59:59Z")).unwrap(),
            at("2026-12-04T02:00:00Z")
        );
        // Strictly after: the tick itself is not its own next tick.
        assert_eq!(
            daily.next_after(at("2026-12-04T02:00:00Z")).unwrap(),
            at("2026-12-05T02:00:00Z")
        );
        let every_2s = CronExpr::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            every_2s.next_after(at("2026-12-04T10:00:01.500Z")).unwrap(),
            at("2026-12-04T10:00:02Z")
        );
        let hourly = CronExpr::parse("@hourly").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-04T10:00:00Z")).unwrap(),
            at("2026-12-04T11:00:00Z")
        );
    }

    #[test]
    fn bad_expressions_say_what_a_good_one_looks_like() {
        for bad in ["", "every day", "61 * * * *", "* * * *", "0 0 * * * * 2027"] {
            let err = CronExpr::parse(bad).unwrap_err().to_string();
            assert!(err.contains("bad cron expression"), "{bad}: {err}");
            assert!(err.contains("`0 2 * * *`"), "{bad}: {err}");
        }
        let never = CronExpr::parse("0 0 30 2 *").unwrap_err();
        assert!(matches!(never, CronError::NeverFires(_)), "Feb 30: {never}");
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let c = CronExpr::parse("0 * * * *").unwrap();
        assert_eq!(
            c.due(at("2026-12-04T11:00:00Z"), at("2026-12-04T10:59:59Z"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_tick_on_time_fires_itself_and_moves_to_the_next() {
        let c = CronExpr::parse("0 * * * *").unwrap();
        let due = c
            .due(at("2026-12-04T11:00:00Z"), at("2026-12-04T11:00:00.300Z"))
            .unwrap()
            .unwrap();
        assert_eq!(
            due,
            Due {
                tick_at: at("2026-12-04T11:00:00Z"),
                missed_ticks: 0,
                next_tick_at: at("2026-12-04T12:00:00Z"),
            }
        );
    }

    #[test]
    fn missed_ticks_collapse_into_the_latest_and_the_next_is_in_the_future() {
        let c = CronExpr::parse("0 * * * *").unwrap();
        // Down from 11:00 to 15:20: 11, 12, 13, 14 and 15 o'clock were due; 15:00 fires
        // once, for the four before it, and 16:00 is next.
        let due = c
            .due(at("2026-12-04T11:00:00Z"), at("2026-12-04T15:20:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(due.tick_at, at("2026-12-04T15:00:00Z"));
        assert_eq!(due.missed_ticks, 4);
        assert_eq!(due.next_tick_at, at("2026-12-04T16:00:00Z"));
        // Exactly on a tick: that tick is the one fired.
        let due = c
            .due(at("2026-12-04T11:00:00Z"), at("2026-12-04T13:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(due.tick_at, at("2026-12-04T13:00:00Z"));
        assert_eq!(due.missed_ticks, 2);
        assert_eq!(due.next_tick_at, at("2026-12-04T14:00:00Z"));
    }

    #[test]
    fn a_long_downtime_of_a_fast_schedule_is_not_walked_tick_by_tick() {
        let c = CronExpr::parse("* * * * * *").unwrap();
        let due = c
            .due(at("2026-12-01T00:00:00Z"), at("2026-12-04T10:30:15.250Z"))
            .unwrap()
            .unwrap();
        assert_eq!(due.tick_at, at("2026-12-04T10:30:15Z"));
        assert_eq!(due.missed_ticks, MISSED_TICKS_COUNTED);
        assert_eq!(due.next_tick_at, at("2026-12-04T10:30:16Z"));
    }
}
