//! The company clock: America/Los_Angeles, written by hand (US DST rules) so the sandbox needs
//! no time-zone database. QBO renders every timestamp in the company's offset, and reads
//! offset-less query literals in that zone, so both directions live here.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, Utc,
    Weekday,
};

const PST_SECS: i32 = -8 * 3600;
const PDT_SECS: i32 = -7 * 3600;

fn offset(secs: i32) -> FixedOffset {
    // Both callers pass constants well inside ±24 h; UTC is an unreachable fallback.
    FixedOffset::east_opt(secs).unwrap_or_else(|| Utc.fix())
}

/// The `n`th (1-based) Sunday of a month.
fn nth_sunday(year: i32, month: u32, n: u32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or_default();
    let to_sunday = (7 - first.weekday().num_days_from_sunday()) % 7;
    first + Duration::days(i64::from(to_sunday + 7 * (n - 1)))
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut d = nth_sunday(year, month, 4);
    while (d + Duration::days(7)).month() == month {
        d += Duration::days(7);
    }
    debug_assert_eq!(d.weekday(), Weekday::Sun);
    d
}

/// The local dates DST starts and ends in `year` (US rules since 1967, revised 1987 and 2007).
fn dst_dates(year: i32) -> (NaiveDate, NaiveDate) {
    if year >= 2007 {
        (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1))
    } else if year >= 1987 {
        (nth_sunday(year, 4, 1), last_sunday(year, 10))
    } else {
        (last_sunday(year, 4), last_sunday(year, 10))
    }
}

fn at(date: NaiveDate, h: u32) -> NaiveDateTime {
    date.and_time(NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_default())
}

/// The company's UTC offset at an instant. DST starts at 02:00 PST (10:00 UTC) and ends at
/// 02:00 PDT (09:00 UTC).
pub fn offset_at(utc: DateTime<Utc>) -> FixedOffset {
    let naive = utc.naive_utc();
    let (start, end) = dst_dates(naive.year());
    if naive >= at(start, 10) && naive < at(end, 9) {
        offset(PDT_SECS)
    } else {
        offset(PST_SECS)
    }
}

/// The offset to read a local wall-clock time with. In the spring gap (02:00–02:59, which does
/// not exist) we use standard time, so 02:30 means 03:30 PDT; in the autumn overlap
/// (01:00–01:59, which happens twice) we pick the earlier instant, i.e. daylight time.
pub fn offset_for_local(local: NaiveDateTime) -> FixedOffset {
    let (start, end) = dst_dates(local.year());
    if local >= at(start, 3) && local < at(end, 2) {
        offset(PDT_SECS)
    } else {
        offset(PST_SECS)
    }
}

/// A local wall-clock time in the company zone as a UTC instant.
pub fn local_to_utc(local: NaiveDateTime) -> DateTime<Utc> {
    let off = offset_for_local(local);
    let utc = local - Duration::seconds(i64::from(off.local_minus_utc()));
    DateTime::from_naive_utc_and_offset(utc, Utc)
}

/// Midnight at the start of a local date, as a UTC instant.
pub fn local_midnight(date: NaiveDate) -> DateTime<Utc> {
    local_to_utc(date.and_time(NaiveTime::MIN))
}

pub fn to_company(utc: DateTime<Utc>) -> DateTime<FixedOffset> {
    utc.with_timezone(&offset_at(utc))
}

/// The company-local calendar date of an instant.
pub fn local_date(utc: DateTime<Utc>) -> NaiveDate {
    to_company(utc).date_naive()
}

/// QBO's record timestamp form: seconds precision, company offset (`2024-03-04T16:00:00-08:00`).
pub fn format_secs(utc: DateTime<Utc>) -> String {
    to_company(utc).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// QBO's envelope `time` form: milliseconds, company offset (`2024-06-01T10:11:12.123-07:00`).
pub fn format_millis(utc: DateTime<Utc>) -> String {
    to_company(utc)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// UTC instant from epoch milliseconds (out-of-range values clamp to the epoch).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Parses a date or datetime the way QBO reads query literals: explicit offsets and `Z` are
/// honoured; date-only and offset-less values are company-local. Returns epoch milliseconds.
pub fn parse_instant_ms(s: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(local_to_utc(naive).timestamp_millis());
        }
    }
    parse_date(s).map(|d| local_midnight(d).timestamp_millis())
}

/// Strict `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").unwrap()
    }

    #[test]
    fn spring_forward_2024() {
        assert_eq!(
            offset_at(utc("2024-03-10T09:59:59Z")).local_minus_utc(),
            PST_SECS
        );
        assert_eq!(
            offset_at(utc("2024-03-10T10:00:00Z")).local_minus_utc(),
            PDT_SECS
        );
        assert_eq!(
            format_secs(utc("2024-03-10T10:00:00Z")),
            "2024-03-10T03:00:00-07:00"
        );
        // 02:30 does not exist locally: read as standard time, i.e. 03:30 PDT.
        assert_eq!(
            format_secs(local_to_utc(local("2024-03-10T02:30:00"))),
            "2024-03-10T03:30:00-07:00"
        );
    }

    #[test]
    fn fall_back_2024() {
        assert_eq!(
            offset_at(utc("2024-11-03T08:59:59Z")).local_minus_utc(),
            PDT_SECS
        );
        assert_eq!(
            offset_at(utc("2024-11-03T09:00:00Z")).local_minus_utc(),
            PST_SECS
        );
        // 01:30 happens twice; the earlier (daylight) reading wins.
        assert_eq!(
            local_to_utc(local("2024-11-03T01:30:00")),
            utc("2024-11-03T08:30:00Z")
        );
        assert_eq!(
            local_to_utc(local("2024-11-03T02:00:00")),
            utc("2024-11-03T10:00:00Z")
        );
    }

    #[test]
    fn other_years_and_rules() {
        assert_eq!(
            nth_sunday(2023, 3, 2),
            NaiveDate::from_ymd_opt(2023, 3, 12).unwrap()
        );
        assert_eq!(
            nth_sunday(2025, 11, 1),
            NaiveDate::from_ymd_opt(2025, 11, 2).unwrap()
        );
        assert_eq!(
            nth_sunday(2026, 3, 2),
            NaiveDate::from_ymd_opt(2026, 3, 8).unwrap()
        );
        // 2006 still used April–October.
        assert_eq!(
            dst_dates(2006).0,
            NaiveDate::from_ymd_opt(2006, 4, 2).unwrap()
        );
        assert_eq!(
            dst_dates(2006).1,
            NaiveDate::from_ymd_opt(2006, 10, 29).unwrap()
        );
        assert_eq!(
            offset_at(utc("2024-07-01T00:00:00Z")).local_minus_utc(),
            PDT_SECS
        );
        assert_eq!(
            offset_at(utc("2024-01-01T00:00:00Z")).local_minus_utc(),
            PST_SECS
        );
    }

    #[test]
    fn formats_and_midnights() {
        assert_eq!(
            format_secs(utc("2024-03-05T00:00:00Z")),
            "2024-03-04T16:00:00-08:00"
        );
        assert_eq!(
            format_millis(utc("2024-06-01T17:11:12.123Z")),
            "2024-06-01T10:11:12.123-07:00"
        );
        assert_eq!(
            local_midnight(NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()),
            utc("2024-06-01T07:00:00Z")
        );
        assert_eq!(
            local_date(utc("2024-03-05T07:59:59Z")),
            NaiveDate::from_ymd_opt(2024, 3, 4).unwrap()
        );
    }

    #[test]
    fn literal_parsing() {
        let ms = |s: &str| utc(s).timestamp_millis();
        assert_eq!(
            parse_instant_ms("2024-03-04"),
            Some(ms("2024-03-04T08:00:00Z"))
        );
        assert_eq!(
            parse_instant_ms("2024-07-04"),
            Some(ms("2024-07-04T07:00:00Z"))
        );
        assert_eq!(
            parse_instant_ms("2024-03-04T16:00:00"),
            Some(ms("2024-03-05T00:00:00Z"))
        );
        assert_eq!(
            parse_instant_ms("2024-03-04T16:00:00Z"),
            Some(ms("2024-03-04T16:00:00Z"))
        );
        assert_eq!(
            parse_instant_ms("2024-03-04T16:00:00.5+01:00"),
            Some(ms("2024-03-04T15:00:00.5Z"))
        );
        assert_eq!(parse_instant_ms("2024-13-04"), None);
        assert_eq!(parse_instant_ms("yesterday"), None);
        assert_eq!(parse_date("2024-3-4"), None);
    }
}
