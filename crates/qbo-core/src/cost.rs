//! What a run cost in QBO requests, beside the least its data could have cost, so that users
//! see how their request budget (500 a minute, a monthly allowance per app) was spent.

use std::fmt;
use std::iter::Sum;
use std::ops::Add;

use crate::query::MAX_PAGE_SIZE;

/// The fewest requests that can load `records` records in one entity run:
/// `max(1, ceil(records / 1000))`. QBO answers at most 1,000 records a request, and even an
/// empty entity takes one request to learn that it is empty. For several runs (`backfill
/// all`), add the minimum of each run: each entity is asked on its own.
pub fn minimum_requests(records: u64) -> u64 {
    records.div_ceil(u64::from(MAX_PAGE_SIZE)).max(1)
}

/// Requests a run (or several) used, and the minimum for the records it loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    pub requests: u64,
    pub minimum: u64,
}

impl Cost {
    /// One entity run: `requests` it made (its windows' and its own), `records` it loaded.
    pub fn of_run(requests: u64, records: u64) -> Cost {
        Cost {
            requests,
            minimum: minimum_requests(records),
        }
    }

    /// Requests per minimum request (1.0 is the best a loader can do).
    pub fn ratio(&self) -> f64 {
        if self.minimum == 0 {
            0.0
        } else {
            self.requests as f64 / self.minimum as f64
        }
    }
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, other: Cost) -> Cost {
        Cost {
            requests: self.requests + other.requests,
            minimum: self.minimum + other.minimum,
        }
    }
}

impl Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::default(), Add::add)
    }
}

/// `requests 57 (minimum 38, 1.5x)`.
impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {} (minimum {}, {:.1}x)",
            self.requests,
            self.minimum,
            self.ratio()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_is_one_request_per_thousand_records_and_never_zero() {
        assert_eq!(
            minimum_requests(0),
            1,
            "an empty entity still takes a request"
        );
        assert_eq!(minimum_requests(1), 1);
        assert_eq!(minimum_requests(1000), 1);
        assert_eq!(minimum_requests(1001), 2);
        assert_eq!(minimum_requests(4815), 5);
        assert_eq!(minimum_requests(500_000), 500);
    }

    #[test]
    fn several_runs_add_their_own_minimums() {
        // Three empty entities and one of 1,500 records: 1 + 1 + 1 + 2, not ceil(1500/1000).
        let total: Cost = [0, 0, 0, 1500]
            .into_iter()
            .map(|records| Cost::of_run(10, records))
            .sum();
        assert_eq!(
            total,
            Cost {
                requests: 40,
                minimum: 5
            }
        );
    }

    #[test]
    fn it_reads_as_requests_beside_the_minimum() {
        assert_eq!(
            Cost {
                requests: 57,
                minimum: 38
            }
            .to_string(),
            "requests 57 (minimum 38, 1.5x)"
        );
        assert_eq!(
            Cost::of_run(1, 0).to_string(),
            "requests 1 (minimum 1, 1.0x)"
        );
    }
}
