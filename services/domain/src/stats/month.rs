//! Calendar months (UTC), the unit statistics are reported in, and month ranges.

use std::fmt;
use std::str::FromStr;

use crate::calendar::civil_from_days;

/// The longest month range one report may cover (ten years).
pub const MAX_MONTHS: usize = 120;

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u8,
}

impl Month {
    /// The month `year`-`month`, if `month` is 1 to 12 and the year has four digits.
    pub fn new(year: i32, month: u8) -> Option<Month> {
        ((1..=12).contains(&month) && (1..=9999).contains(&year)).then_some(Month { year, month })
    }

    /// The month (UTC) holding the instant `unix_ms`.
    pub fn of_unix_ms(unix_ms: i64) -> Month {
        let (y, m, _) = civil_from_days(unix_ms.div_euclid(86_400_000));
        Month {
            year: y.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            month: m as u8,
        }
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Why a statistics request cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// A month is not written `YYYY-MM`.
    #[error("month {0:?} is not a month: write it as YYYY-MM, e.g. 2026-03")]
    BadMonth(String),
    /// The range ends before it starts.
    #[error("the range ends ({to}) before it starts ({from}): give the earlier month first")]
    Reversed {
        /// First month asked for.
        from: Month,
        /// Last month asked for.
        to: Month,
    },
    /// The range is longer than one report may cover.
    #[error("{from} to {to} is more than {MAX_MONTHS} months: ask for a shorter range")]
    TooLong {
        /// First month asked for.
        from: Month,
        /// Last month asked for.
        to: Month,
    },
    /// The threshold would suppress nothing at all.
    #[error("suppress_below must be at least 1 (the policy's [statistics] section)")]
    NoThreshold,
}

impl FromStr for Month {
    type Err = StatsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StatsError::BadMonth(s.to_string());
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        Month::new(year, month).ok_or_else(bad)
    }
}

/// The months from `from` to `to`, checked.
pub fn months(from: Month, to: Month) -> Result<Vec<Month>, StatsError> {
    if to < from {
        return Err(StatsError::Reversed { from, to });
    }
    let mut out = vec![from];
    while let Some(&last) = out.last().filter(|m| **m < to) {
        if out.len() == MAX_MONTHS {
            return Err(StatsError::TooLong { from, to });
        }
        out.push(last.next());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARCH: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

    fn march() -> Month {
        "2026-03".parse().expect("month")
    }

    #[test]
    fn months_parse_print_and_come_from_instants() {
        assert_eq!(march().to_string(), "2026-03");
        assert_eq!(Month::of_unix_ms(MARCH), march());
        assert_eq!(Month::of_unix_ms(MARCH - 1).to_string(), "2026-02");
        for bad in [
            "2026-13", "2026-3", "26-03", "2026/03", "", "2026-00", "+026-03",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        let dec: Month = "2025-12".parse().expect("month");
        assert_eq!(dec.next().to_string(), "2026-01");
        assert!(matches!(
            months(march(), dec),
            Err(StatsError::Reversed { .. })
        ));
        assert!(months(dec, Month::new(2040, 1).expect("m")).is_err());
    }
}
