//! Retention: how long the exchange keeps a subject's personal details after
//! their cases are closed. Pure: the current time is an argument, so the rule
//! is tested with any clock.

use std::collections::BTreeMap;

use handoff_contract::time::to_unix_ms;
use handoff_contract::v1::{CaseStatus, CaseView};

/// The retention rule (from `ops/policy.toml`, `[retention]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    /// Whole calendar years after the last of a subject's cases was closed.
    pub years_after_closure: u32,
}

/// A subject whose details are due for erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The subject's pseudonym.
    pub subject: String,
    /// When the last of their cases was closed, Unix ms.
    pub closed_at_ms: i64,
    /// When the rule made them due, Unix ms.
    pub due_at_ms: i64,
}

pub use crate::calendar::add_years;

/// The subjects due for erasure at `now_ms`: every one of their cases is closed, and
/// the last closure is at least the rule's years ago. `views` are all case views.
pub fn due<'a>(
    views: impl IntoIterator<Item = &'a CaseView>,
    rule: RetentionRule,
    now_ms: i64,
) -> Vec<Due> {
    // Subject -> latest closure, or None while any of their cases is open.
    let mut subjects: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    for view in views {
        let closed = view.status == CaseStatus::Closed as i32;
        let closed_at = view.updated_at.as_ref().map(to_unix_ms);
        let entry = subjects
            .entry(view.subject_pseudonym.as_str())
            .or_insert(Some(i64::MIN));
        *entry = match (*entry, closed, closed_at) {
            (Some(latest), true, Some(at)) => Some(latest.max(at)),
            _ => None,
        };
    }
    subjects
        .into_iter()
        .filter_map(|(subject, closed)| {
            let closed_at_ms = closed?;
            let due_at_ms = add_years(closed_at_ms, rule.years_after_closure);
            (now_ms >= due_at_ms).then(|| Due {
                subject: subject.to_string(),
                closed_at_ms,
                due_at_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{DAY_MS, civil_from_days, days_from_civil};
    use handoff_contract::time::from_unix_ms;

    // 2026-11-25T10:00:00Z
    const CLOSED: i64 = 1_795_600_800_000;

    fn view(case: &str, subject: &str, status: CaseStatus, at: i64) -> CaseView {
        CaseView {
            case_id: case.into(),
            subject_pseudonym: subject.into(),
            status: status as i32,
            updated_at: Some(from_unix_ms(at)),
            ..CaseView::default()
        }
    }

    #[test]
    fn years_are_calendar_years() {
        assert_eq!(
            civil_from_days(days_from_civil(2026, 11, 25)),
            (2026, 11, 25)
        );
        assert_eq!(
            add_years(CLOSED, 5),
            days_from_civil(2031, 11, 25) * DAY_MS + CLOSED.rem_euclid(DAY_MS)
        );
        let leap_day = days_from_civil(2028, 2, 29) * DAY_MS;
        assert_eq!(
            add_years(leap_day, 1),
            days_from_civil(2029, 2, 28) * DAY_MS
        );
        assert_eq!(
            add_years(leap_day, 4),
            days_from_civil(2032, 2, 29) * DAY_MS
        );
    }

    #[test]
    fn a_subject_is_due_only_when_every_case_is_closed_long_enough() {
        let rule = RetentionRule {
            years_after_closure: 5,
        };
        let due_at = add_years(CLOSED, 5);
        let views = [
            view("c1", "s1", CaseStatus::Closed, CLOSED),
            view("c2", "s2", CaseStatus::Closed, CLOSED - DAY_MS),
            view("c3", "s2", CaseStatus::Enrolled, CLOSED),
            view("c4", "s3", CaseStatus::Completed, CLOSED),
        ];
        // The clock is an argument: the day before, nobody; on the day, s1 only.
        assert!(due(&views, rule, due_at - 1).is_empty());
        assert_eq!(
            due(&views, rule, due_at),
            vec![Due {
                subject: "s1".into(),
                closed_at_ms: CLOSED,
                due_at_ms: due_at,
            }]
        );
        // s2 still has an open case, s3's programme ended but the case is not closed.
        assert_eq!(due(&views, rule, due_at + 10 * 365 * DAY_MS).len(), 1);
        // The latest closure counts.
        let both = [
            view("c1", "s1", CaseStatus::Closed, CLOSED),
            view("c5", "s1", CaseStatus::Closed, CLOSED + 30 * DAY_MS),
        ];
        assert!(due(&both, rule, due_at).is_empty());
        assert_eq!(due(&both, rule, due_at + 30 * DAY_MS).len(), 1);
    }
}
