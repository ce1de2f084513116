//! Calendar arithmetic every deadline rule shares: civil dates, calendar years and
//! months, working days, and the date in Czech local time (statutes count in it).
//! Pure: times are Unix milliseconds passed in.

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `unix_ms` plus `months` calendar months at the same time of day; a day the target
/// month lacks becomes its last (31 January + 1 month = 28 or 29 February).
pub fn add_months(unix_ms: i64, months: u32) -> i64 {
    let (y, m, d) = civil_from_days(unix_ms.div_euclid(DAY_MS));
    let index = y * 12 + i64::from(m - 1) + i64::from(months);
    let (y2, m2) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
    let d2 = d.min(days_in_month(y2, m2));
    days_from_civil(y2, m2, d2) * DAY_MS + unix_ms.rem_euclid(DAY_MS)
}

/// `unix_ms` plus `years` calendar years (29 February becomes 28 February).
pub fn add_years(unix_ms: i64, years: u32) -> i64 {
    add_months(unix_ms, years.saturating_mul(12))
}

/// `unix_ms` plus `days` working days (Saturdays and Sundays skipped; public holidays are not known).
pub fn add_working_days(unix_ms: i64, days: u32) -> i64 {
    let mut t = unix_ms;
    let mut left = days;
    while left > 0 {
        t += DAY_MS;
        // 1970-01-01 was a Thursday: weekday 0 = Monday.
        let weekday = (t.div_euclid(DAY_MS) + 3).rem_euclid(7);
        if weekday < 5 {
            left -= 1;
        }
    }
    t
}

/// The last Sunday of `month` in `year`, as days since 1970-01-01.
fn last_sunday(year: i64, month: u32) -> i64 {
    let last = days_from_civil(year, month, days_in_month(year, month));
    // weekday 0 = Monday; Sunday = 6.
    let weekday = (last + 3).rem_euclid(7);
    last - (weekday - 6).rem_euclid(7)
}

/// The civil date in Czech local time (CET, CEST from the last Sunday of March to the
/// last Sunday of October, switching at 01:00 UTC as in the whole EU since 1996), as
/// days since 1970-01-01: an order made at 23:30 UTC on 30 June is a 1 July order.
pub fn prague_day(unix_ms: i64) -> i64 {
    let (year, _, _) = civil_from_days(unix_ms.div_euclid(DAY_MS));
    let summer_from = last_sunday(year, 3) * DAY_MS + HOUR_MS;
    let summer_until = last_sunday(year, 10) * DAY_MS + HOUR_MS;
    let offset = if (summer_from..summer_until).contains(&unix_ms) {
        2 * HOUR_MS
    } else {
        HOUR_MS
    };
    (unix_ms + offset).div_euclid(DAY_MS)
}

/// "YYYY-MM-DD" to days since 1970-01-01, if it is a real date.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d))
        .then(|| days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, hour: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + hour * HOUR_MS
    }

    #[test]
    fn months_keep_the_day_or_take_the_last() {
        assert_eq!(add_months(at(2026, 1, 31, 9), 1), at(2026, 2, 28, 9));
        assert_eq!(add_months(at(2028, 1, 31, 9), 1), at(2028, 2, 29, 9));
        assert_eq!(add_months(at(2026, 11, 15, 9), 2), at(2027, 1, 15, 9));
        assert_eq!(add_years(at(2028, 2, 29, 0), 1), at(2029, 2, 28, 0));
        assert_eq!(add_years(at(2028, 2, 29, 0), 4), at(2032, 2, 29, 0));
    }

    #[test]
    fn working_days_skip_weekends() {
        let friday = at(2026, 11, 20, 12);
        assert_eq!(add_working_days(friday, 1), friday + 3 * DAY_MS);
        assert_eq!(add_working_days(friday, 5), friday + 7 * DAY_MS);
        let monday = friday + 3 * DAY_MS;
        assert_eq!(add_working_days(monday, 4), monday + 4 * DAY_MS);
        assert_eq!(add_working_days(monday, 0), monday);
    }

    #[test]
    fn the_czech_date_follows_cet_and_cest() {
        // Summer: 22:30 UTC on 30 June 2025 is 00:30 on 1 July in Prague.
        assert_eq!(
            prague_day(at(2025, 6, 30, 22) + 30 * 60_000),
            days_from_civil(2025, 7, 1)
        );
        assert_eq!(
            prague_day(at(2025, 6, 30, 21)),
            days_from_civil(2025, 6, 30)
        );
        // Winter: +1 hour only.
        assert_eq!(
            prague_day(at(2025, 12, 31, 22)),
            days_from_civil(2025, 12, 31)
        );
        assert_eq!(
            prague_day(at(2025, 12, 31, 23)),
            days_from_civil(2026, 1, 1)
        );
        // The switch: 30 March 2025 01:00 UTC.
        assert_eq!(last_sunday(2025, 3), days_from_civil(2025, 3, 30));
        assert_eq!(last_sunday(2025, 10), days_from_civil(2025, 10, 26));
    }

    #[test]
    fn dates_parse_only_when_real() {
        assert_eq!(parse_date("2025-07-01"), Some(days_from_civil(2025, 7, 1)));
        for bad in [
            "2025-02-29",
            "2025-13-01",
            "2025-7-1",
            "25-07-01",
            "2025-07-01x",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
