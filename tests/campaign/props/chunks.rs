//! Date parsing never panics and round-trips; planned windows are contiguous, half-open,
//! cover the range exactly, and are `chunk_days` long except the last.

use chrono::{Duration, NaiveDate, NaiveTime};
use proptest::prelude::*;
use qbo::chunks::{parse_date, plan, DateRange, PlanError};

use super::config;

fn day() -> impl Strategy<Value = NaiveDate> {
    // 1900-01-01 .. about 2099.
    (0i64..73_000).prop_map(|n| NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + Duration::days(n))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_date_never_panics(s in any::<String>()) {
        let _ = parse_date(&s);
    }

    #[test]
    fn parse_date_reads_what_it_should(d in day(), pad in "[ \t]{0,2}") {
        let text = format!("{pad}{}{pad}", d.format("%Y-%m-%d"));
        prop_assert_eq!(parse_date(&text), Ok(d));
        let bad = format!("{}T00:00", d.format("%Y-%m-%d"));
        prop_assert_eq!(parse_date(&bad), Err(PlanError::BadDate(bad.clone())));
    }

    #[test]
    fn windows_tile_the_range_exactly(start in day(), len in 0i64..2_000, chunk_days in 1i64..=400) {
        let end = start + Duration::days(len);
        let windows = plan(DateRange::new(start, end).unwrap(), chunk_days).unwrap();
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN).and_utc();
        prop_assert_eq!(windows.len() as i64, (len + 1 + chunk_days - 1) / chunk_days);
        prop_assert_eq!(windows[0].start, midnight(start));
        prop_assert_eq!(windows.last().unwrap().end, midnight(end) + Duration::days(1));
        for (i, w) in windows.iter().enumerate() {
            prop_assert!(w.start < w.end, "empty window {:?}", w);
            prop_assert!(w.end - w.start <= Duration::days(chunk_days));
            if i + 1 < windows.len() {
                prop_assert_eq!(w.end - w.start, Duration::days(chunk_days));
                prop_assert_eq!(w.end, windows[i + 1].start, "gap or overlap after window {}", i);
            }
        }
    }

    #[test]
    fn bad_ranges_and_chunk_sizes_are_refused(a in day(), b in day(), chunk_days in any::<i64>()) {
        match DateRange::new(a, b) {
            Ok(r) => {
                prop_assert!(a <= b);
                let planned = plan(r, chunk_days);
                if (1..=3660).contains(&chunk_days) {
                    prop_assert!(planned.is_ok());
                } else {
                    prop_assert_eq!(planned, Err(PlanError::BadChunkDays(chunk_days)));
                }
            }
            Err(e) => {
                prop_assert!(b < a);
                prop_assert!(e.to_string().contains("--end is inclusive"));
            }
        }
    }
}
