//! The coordinator's statutory-deadline table: for each month and each kind of agency
//! whose duty a statutory deadline is (`statutory::Rule::duty_of`), how many of those
//! deadlines fell due, and how many were met in time, met late, or are still unmet.
//!
//! A deadline belongs to the month (UTC) it fell due in, and counts only once it has
//! (`due ≤ now`): a month's row is final once the month is past. A duty met early
//! whose deadline is still ahead is not counted yet. The clocks are the ones inboxes
//! show (`statutory::clocks`, from the dated table in force on each fact's date).
//!
//! # Suppression rule
//!
//! The funnel's rules ([`crate::stats`]), applied to a table whose cells add up:
//! 1. *Primary*: every count below the threshold (zero included) is suppressed.
//! 2. *Within a row*: `fell_due` is the sum of `met_in_time`, `met_late` and
//!    `overdue`; if exactly one of the three is suppressed while `fell_due` is shown,
//!    the smallest shown one is suppressed too (or `fell_due`, if none is left).
//! 3. *Within a month*: the "all" row is the column total of the kind rows; each of
//!    the four columns gets the same complement.
//!
//! Rules 2 and 3 are applied until neither changes anything. Every duty kind gets a
//! row every month, so a row's presence reveals nothing. The share met in time is
//! shown only where both its counts are, so it reveals nothing they do not.

use handoff_contract::v1::CaseView;

use crate::agency::AgencyKind;
use crate::stats::{ALL_KINDS, Cell, Month, StatsError, complement, months, primary};
use crate::statutory::{ClockState, Rule, StatutoryRules, clocks, facts_of};

/// How the deadlines owed by one kind of agency that fell due in one month were met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlineRow {
    /// The month the deadlines fell due in.
    pub month: Month,
    /// The kind whose duty they were, or [`ALL_KINDS`].
    pub duty_kind: String,
    /// Deadlines that fell due (the sum of the next three).
    pub fell_due: Cell,
    /// ... met by the deadline.
    pub met_in_time: Cell,
    /// ... met after it.
    pub met_late: Cell,
    /// ... still unmet.
    pub overdue: Cell,
    /// `met_in_time` as a share of `fell_due`, in whole percent rounded down.
    pub met_in_time_percent: Cell,
}

/// The kinds that owe statutory duties, in the order of [`Rule::ALL`].
pub fn duty_kinds() -> Vec<AgencyKind> {
    let mut kinds: Vec<AgencyKind> = Vec::new();
    for kind in Rule::ALL.into_iter().filter_map(Rule::duty_of) {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}

/// Exact counts: fell due, met in time, met late, overdue.
type Tally = [u64; 4];

/// The deadline table of `views` for each month from `from` to `to` (inclusive), as the
/// clocks stand at `now_ms`, suppressed as the module documentation describes.
pub fn compute<'a>(
    views: impl IntoIterator<Item = &'a CaseView>,
    rules: &StatutoryRules,
    now_ms: i64,
    from: Month,
    to: Month,
    suppress_below: u32,
) -> Result<Vec<DeadlineRow>, StatsError> {
    if suppress_below == 0 {
        return Err(StatsError::NoThreshold);
    }
    let months = months(from, to)?;
    let kinds = duty_kinds();
    let mut tallies: std::collections::BTreeMap<(Month, Option<AgencyKind>), Tally> =
        Default::default();
    for view in views {
        for eviction in view.evictions.iter().filter(|e| e.ordered_at.is_some()) {
            for clock in clocks(&facts_of(eviction), rules) {
                let (Some(kind), Some(due)) = (clock.rule.duty_of(), clock.due_ms) else {
                    continue;
                };
                if due > now_ms {
                    continue;
                }
                let month = Month::of_unix_ms(due);
                if month < from || month > to {
                    continue;
                }
                let column = match clock.state(now_ms) {
                    ClockState::Met => 1,
                    ClockState::MetLate => 2,
                    _ => 3,
                };
                for key in [(month, Some(kind)), (month, None)] {
                    let tally = tallies.entry(key).or_default();
                    tally[0] += 1;
                    tally[column] += 1;
                }
            }
        }
    }
    let mut rows = Vec::new();
    for month in months {
        let mut cells: Vec<[Cell; 4]> = std::iter::once(None)
            .chain(kinds.iter().copied().map(Some))
            .map(|kind| {
                tallies
                    .get(&(month, kind))
                    .copied()
                    .unwrap_or_default()
                    .map(|c| primary(c, suppress_below))
            })
            .collect();
        suppress_complements(&mut cells);
        for (i, [fell_due, met_in_time, met_late, overdue]) in cells.into_iter().enumerate() {
            let duty_kind = match i {
                0 => ALL_KINDS.to_string(),
                _ => kinds[i - 1].as_str().to_string(),
            };
            let met_in_time_percent = match (fell_due, met_in_time) {
                (Cell::Shown(due), Cell::Shown(met)) if due > 0 => Cell::Shown(met * 100 / due),
                _ => Cell::Suppressed,
            };
            rows.push(DeadlineRow {
                month,
                duty_kind,
                fell_due,
                met_in_time,
                met_late,
                overdue,
                met_in_time_percent,
            });
        }
    }
    Ok(rows)
}

/// Rules 2 and 3 until nothing changes: `rows[0]` is the month's total, each row's
/// first cell the sum of its other three.
fn suppress_complements(rows: &mut [[Cell; 4]]) {
    loop {
        let before = rows.to_vec();
        for row in rows.iter_mut() {
            let [total, parts @ ..] = row;
            complement(total, parts.iter_mut().collect());
        }
        if let Some((total, parts)) = rows.split_first_mut() {
            for column in 0..4 {
                complement(
                    &mut total[column],
                    parts.iter_mut().map(|r| &mut r[column]).collect(),
                );
            }
        }
        if rows == before.as_slice() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statutory::czech_rules;
    use handoff_contract::time::from_unix_ms;
    use handoff_contract::v1::{Eviction, EvictionCopy};
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;
    /// 2026-03-02T00:00:00Z: every deadline of an order then falls due in March.
    const ORDERED: i64 = 1_772_409_600_000;
    const LATER: i64 = ORDERED + 90 * 24 * HOUR;

    /// An eviction whose copy to the centre went out `copy_after_hours` after the order
    /// (`None`: not at all); the rest of its duties unmet.
    fn evicted(copy_after_hours: Option<i64>) -> CaseView {
        CaseView {
            evictions: vec![Eviction {
                incident_ref: "I-1".into(),
                ordered_by: "police-north".into(),
                ordered_at: Some(from_unix_ms(ORDERED)),
                copies: copy_after_hours
                    .map(|h| EvictionCopy {
                        recipient: handoff_contract::v1::CopyRecipient::InterventionCentre as i32,
                        to_agency: "ic-north".into(),
                        sent_at: Some(from_unix_ms(ORDERED + h * HOUR)),
                        ..EvictionCopy::default()
                    })
                    .into_iter()
                    .collect(),
                ..Eviction::default()
            }],
            ..CaseView::default()
        }
    }

    fn march() -> Month {
        Month::new(2026, 3).expect("a month")
    }

    fn police(rows: &[DeadlineRow]) -> &DeadlineRow {
        rows.iter()
            .find(|r| r.duty_kind == "police")
            .expect("a police row")
    }

    #[test]
    fn deadlines_are_counted_met_late_or_overdue_by_the_kind_that_owes_them() {
        let views: Vec<CaseView> = (0..6)
            .map(|_| evicted(Some(2)))
            .chain((0..5).map(|_| evicted(Some(30))))
            .chain((0..5).map(|_| evicted(None)))
            .collect();
        let rows = compute(&views, &czech_rules(), LATER, march(), march(), 5).expect("rows");
        assert_eq!(rows.len(), 1 + duty_kinds().len());
        assert_eq!(rows[0].duty_kind, ALL_KINDS);
        let p = police(&rows);
        // With no minor in the home the police owe every duty of theirs but the copy to
        // child protection: the copies to the centre and the court, the compliance check.
        let owed_per_eviction = Rule::ALL
            .iter()
            .filter(|r| r.duty_of() == Some(AgencyKind::Police))
            .filter(|r| **r != Rule::CopyToChildProtection)
            .count() as u64;
        assert_eq!(p.fell_due, Cell::Shown(16 * owed_per_eviction));
        assert_eq!(p.met_in_time, Cell::Shown(6));
        assert_eq!(p.met_late, Cell::Shown(5));
        assert_eq!(p.overdue, Cell::Shown(16 * owed_per_eviction - 11));
        assert_eq!(
            p.met_in_time_percent,
            Cell::Shown(600 / (16 * owed_per_eviction))
        );
        // The centre owes its offer of help wherever a copy reached it (11), none made;
        // the court owes nothing (no petition), so its suppressed 0 would be the total
        // minus police and centre: rule 3 withholds the centre's cells too.
        let all = &rows[0];
        assert_eq!(
            [all.fell_due, all.met_in_time, all.met_late, all.overdue],
            [
                Cell::Shown(16 * owed_per_eviction + 11),
                Cell::Shown(6),
                Cell::Shown(5),
                Cell::Shown(16 * owed_per_eviction - 11 + 11)
            ]
        );
        let centre = rows
            .iter()
            .find(|r| r.duty_kind == "intervention_centre")
            .expect("a row");
        assert_eq!(centre.fell_due, Cell::Suppressed);
        assert_eq!(centre.overdue, Cell::Suppressed);
        // Nothing owed yet before the deadlines pass; nothing in another month.
        let early =
            compute(&views, &czech_rules(), ORDERED + HOUR, march(), march(), 1).expect("rows");
        assert_eq!(police(&early).fell_due, Cell::Suppressed);
        let april = Month::new(2026, 4).expect("a month");
        let other = compute(&views, &czech_rules(), LATER, april, april, 1).expect("rows");
        assert!(other.iter().all(|r| r.fell_due == Cell::Suppressed));
    }

    /// Whether a suppressed cell of a month equals a shown total minus shown parts.
    fn recoverable(rows: &[DeadlineRow]) -> bool {
        let cells = |r: &DeadlineRow| [r.fell_due, r.met_in_time, r.met_late, r.overdue];
        let lone = |total: Cell, parts: &[Cell]| {
            total != Cell::Suppressed
                && parts.iter().filter(|c| **c == Cell::Suppressed).count() == 1
        };
        rows.chunks(1 + duty_kinds().len()).any(|month| {
            let in_rows = month.iter().any(|r| {
                let [t, a, b, c] = cells(r);
                lone(t, &[a, b, c])
            });
            let in_columns = (0..4).any(|i| {
                let parts: Vec<Cell> = month[1..].iter().map(|r| cells(r)[i]).collect();
                lone(cells(&month[0])[i], &parts)
            });
            in_rows || in_columns
        })
    }

    proptest! {
        /// Whatever the cases, no shown count is below the threshold and no suppressed
        /// count can be worked out from a total and the shown cells beside it.
        #[test]
        fn suppression_never_reveals_a_small_count(
            copies in proptest::collection::vec(proptest::option::of(0i64..60), 0..40),
            threshold in 1u32..8,
        ) {
            let views: Vec<CaseView> = copies.into_iter().map(evicted).collect();
            let rows = compute(&views, &czech_rules(), LATER, march(), march(), threshold).expect("rows");
            for r in &rows {
                for c in [r.fell_due, r.met_in_time, r.met_late, r.overdue] {
                    prop_assert!(c.value().is_none_or(|v| v >= u64::from(threshold)));
                }
            }
            prop_assert!(!recoverable(&rows), "{rows:?}");
        }
    }
}
