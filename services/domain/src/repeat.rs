//! Repeat flags: a subject reported or evicted again within 12 months of an earlier
//! report or eviction, across all of the subject's cases. A repeat is one of the
//! strongest signs of risk for the endangered person, so the parties granted the
//! `risk` group see it on the case. Pure: the cases are arguments.

use handoff_contract::time::to_unix_ms;
use handoff_contract::v1::CaseView;

use crate::calendar::add_months;

/// How far apart two reports (or evictions) may be to count as a repeat.
pub const REPEAT_WITHIN_MONTHS: u32 = 12;

/// What the subject's record shows up to a point in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepeatFlags {
    /// Two police reports within 12 months of each other.
    pub reported_again: bool,
    /// Two evictions within 12 months of each other.
    pub evicted_again: bool,
    /// More than one endangered person linked to the subject's cases.
    pub several_endangered: bool,
}

/// Whether any two of `times` (Unix ms) lie within 12 months of each other.
fn repeated(mut times: Vec<i64>) -> bool {
    times.sort_unstable();
    times
        .windows(2)
        .any(|w| add_months(w[0], REPEAT_WITHIN_MONTHS) >= w[1])
}

/// The flags of a subject from all their cases (`cases`), counting only what was
/// recorded by `until_ms`, so a view of the past shows the flags of then.
pub fn flags(cases: &[CaseView], until_ms: i64) -> RepeatFlags {
    let by =
        |t: &Option<prost_types::Timestamp>| t.as_ref().map(to_unix_ms).filter(|t| *t <= until_ms);
    let reports = cases
        .iter()
        .flat_map(|c| c.incidents.iter().filter_map(|i| by(&i.reported_at)))
        .collect();
    let evictions = cases
        .iter()
        .flat_map(|c| c.evictions.iter().filter_map(|e| by(&e.ordered_at)))
        .collect();
    let mut endangered: Vec<&str> = cases
        .iter()
        .flat_map(|c| c.endangered.iter())
        .filter(|l| by(&l.linked_at).is_some())
        .map(|l| l.endangered_pseudonym.as_str())
        .collect();
    endangered.sort_unstable();
    endangered.dedup();
    RepeatFlags {
        reported_again: repeated(reports),
        evicted_again: repeated(evictions),
        several_endangered: endangered.len() > 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{DAY_MS, days_from_civil};
    use handoff_contract::time::from_unix_ms;
    use handoff_contract::v1::{Eviction, Incident};

    fn day(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY_MS
    }

    fn case(reported: &[i64], evicted: &[i64]) -> CaseView {
        CaseView {
            incidents: reported
                .iter()
                .map(|t| Incident {
                    reported_at: Some(from_unix_ms(*t)),
                    ..Incident::default()
                })
                .collect(),
            evictions: evicted
                .iter()
                .map(|t| Eviction {
                    ordered_at: Some(from_unix_ms(*t)),
                    ..Eviction::default()
                })
                .collect(),
            ..CaseView::default()
        }
    }

    #[test]
    fn a_second_report_or_eviction_within_twelve_months_is_a_repeat() {
        let now = day(2026, 12, 1);
        let first = case(&[day(2026, 1, 10)], &[day(2026, 1, 10)]);
        let again = case(&[day(2026, 11, 2)], &[day(2027, 1, 10)]);
        let flags = flags(&[first.clone(), again.clone()], now);
        assert!(flags.reported_again);
        // The second eviction lies in the future of `now`: not yet.
        assert!(!flags.evicted_again);
        let later = super::flags(&[first.clone(), again], day(2027, 2, 1));
        assert!(
            later.evicted_again,
            "exactly twelve months apart still counts"
        );
        let apart = super::flags(&[first, case(&[day(2027, 1, 11)], &[])], day(2027, 2, 1));
        assert!(
            !apart.reported_again,
            "twelve months and a day apart is not a repeat"
        );
        assert_eq!(super::flags(&[], now), RepeatFlags::default());
    }
}
