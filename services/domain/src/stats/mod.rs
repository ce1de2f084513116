//! Statistics for the coordinator: the referral funnel per month and referring
//! agency kind, computed from case views, with small numbers suppressed.
//!
//! A case belongs to the month (UTC) of its first referral and to the kind of
//! that referral's sender. The stages are nested by construction: a case counts
//! at a stage only if it also counts at every earlier one, so each stage is at
//! most the stage before it, whatever order the events came in.
//!
//! # Suppression rule
//!
//! 1. *Primary*: every count below the threshold (zero included) is suppressed,
//!    and so is a median taken over fewer cases than the threshold.
//! 2. *No totals within a row*: the stages of a row are nested, not parts of a
//!    whole, so no published cell of a row is the sum of others (dropped out
//!    counts drop-outs at any stage and is not a remainder of another cell).
//! 3. *Complementary*: each month has an "all" row, the column total of its
//!    kind rows. For each stage, if exactly one kind cell of the month is
//!    suppressed while the total is published, the smallest published kind cell
//!    of that column is suppressed too, so that no suppressed cell equals the
//!    total minus published cells. Every referring kind gets a row for every
//!    month (even with no cases), so a row's presence reveals nothing either.
//!    The same holds for each reason column of the breakdown below.
//!
//! # Why cases fell out
//!
//! Each row also counts, per reason code ([`crate::reason::ALL`]), the cases that
//! fell out: not completed, and dropped out (an exclusion is a drop-out for
//! violence or threats) or closed with a code (the drop-out's code, if the closure
//! gives none), or declined at their last referral and taken up by nobody (the
//! case is back, open, with the agency that opened it). A closure without a code is not counted: the case
//! may have been completed before it, which its view cannot tell. A case falls out
//! for one reason at most, so the reason cells of a row are parts of a whole, the
//! number that fell out, which is not published (rule 2): one suppressed reason cell
//! cannot be worked out from the others. Each reason column gets rules 1 and 3.

use std::collections::BTreeMap;

use handoff_contract::time::to_unix_ms;
use handoff_contract::v1::{CaseStatus, CaseView, OutcomeReason, StepState};

use crate::agency::{AgencyKind, Registry};
use crate::reason;

mod month;
mod suppress;

pub use month::{MAX_MONTHS, Month, StatsError, months};
pub use suppress::Cell;
pub(crate) use suppress::{complement, median_cell, primary};

/// Reason columns per row, in the order of [`reason::ALL`].
pub const REASONS: usize = reason::ALL.len();

/// The threshold used when the policy names none.
pub const DEFAULT_SUPPRESS_BELOW: u32 = 5;

/// The `referring_kind` of the row that totals every kind of a month.
pub const ALL_KINDS: &str = "all";

/// The `referring_kind` of cases first referred by an agency no longer registered.
pub const UNKNOWN_KIND: &str = "unknown";

/// A stage of the funnel, in funnel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The case was referred (every counted case).
    Referred,
    /// A referral of the case was acknowledged or accepted.
    Acknowledged,
    /// The subject was reached (first contact).
    Contacted,
    /// Intake was completed.
    Intake,
    /// The subject was enrolled in a programme.
    Enrolled,
    /// The subject completed the programme.
    Completed,
    /// The subject dropped out at any stage after acknowledgement.
    DroppedOut,
}

impl Stage {
    /// Every stage, in funnel order (drop-outs last).
    pub const ALL: [Stage; 7] = [
        Stage::Referred,
        Stage::Acknowledged,
        Stage::Contacted,
        Stage::Intake,
        Stage::Enrolled,
        Stage::Completed,
        Stage::DroppedOut,
    ];

    /// The stage's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Referred => "referred",
            Stage::Acknowledged => "acknowledged",
            Stage::Contacted => "contacted",
            Stage::Intake => "intake",
            Stage::Enrolled => "enrolled",
            Stage::Completed => "completed",
            Stage::DroppedOut => "dropped_out",
        }
    }

    /// The stage a case must have passed to count at this one (none for `Referred`).
    pub fn after(self) -> Option<Stage> {
        match self {
            Stage::Referred => None,
            Stage::Acknowledged => Some(Stage::Referred),
            Stage::Contacted => Some(Stage::Acknowledged),
            Stage::Intake => Some(Stage::Contacted),
            Stage::Enrolled => Some(Stage::Intake),
            Stage::Completed => Some(Stage::Enrolled),
            Stage::DroppedOut => Some(Stage::Acknowledged),
        }
    }
}

/// The funnel of the cases first referred in one month by one kind of agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The month of the first referral.
    pub month: Month,
    /// The referring kind, [`ALL_KINDS`] or [`UNKNOWN_KIND`].
    pub referring_kind: String,
    /// One cell per stage, in the order of [`Stage::ALL`].
    pub stages: [Cell; 7],
    /// Median seconds from first referral to first contact.
    pub median_to_first_contact_secs: Cell,
    /// Median seconds from first referral to intake.
    pub median_to_intake_secs: Cell,
    /// The cases that fell out, one cell per reason code in the order of [`reason::ALL`].
    pub reasons: [Cell; REASONS],
}

impl Row {
    /// The cell of one stage.
    pub fn stage(&self, stage: Stage) -> Cell {
        self.stages[stage as usize]
    }

    /// The cell of one reason code.
    pub fn reason(&self, code: OutcomeReason) -> Cell {
        reason_index(code).map_or(Cell::Suppressed, |i| self.reasons[i])
    }
}

fn reason_index(code: OutcomeReason) -> Option<usize> {
    reason::ALL.iter().position(|r| *r == code)
}

/// A statistics report over a range of months.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// First month.
    pub from: Month,
    /// Last month (inclusive).
    pub to: Month,
    /// Counts below this were suppressed.
    pub suppress_below: u32,
    /// By month; within a month "all" first, then the kinds in a fixed order.
    pub rows: Vec<Row>,
}

/// What one case contributes: the stages it reached and its durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reached {
    stages: [bool; 7],
    to_first_contact_secs: Option<i64>,
    to_intake_secs: Option<i64>,
    fell_out: Option<OutcomeReason>,
}

fn outcome(view: &CaseView, status: CaseStatus) -> bool {
    let now = CaseStatus::try_from(view.status).unwrap_or_default();
    let before = CaseStatus::try_from(view.status_before_referral).unwrap_or_default();
    // A new referral after the outcome parks the outcome in status_before_referral.
    now == status || (now == CaseStatus::Referred && before == status)
}

/// Why the case fell out, if it did (the module documentation says when).
fn fell_out(view: &CaseView) -> Option<OutcomeReason> {
    let code = |v: i32| OutcomeReason::try_from(v).unwrap_or(OutcomeReason::Unspecified);
    if outcome(view, CaseStatus::Completed) {
        return None;
    }
    let now = CaseStatus::try_from(view.status).unwrap_or_default();
    if outcome(view, CaseStatus::DroppedOut) {
        return Some(code(view.outcome_reason));
    }
    if now == CaseStatus::Closed {
        return Some(code(view.outcome_reason)).filter(|r| *r != OutcomeReason::Unspecified);
    }
    let last = view.referrals.last()?;
    (now == CaseStatus::Open && last.state == StepState::Declined as i32)
        .then(|| code(last.decline_reason_code))
}

fn reached(view: &CaseView, first_ms: i64) -> Reached {
    let acknowledged = view.referrals.iter().any(|r| r.acknowledged_at.is_some());
    let enrolled = !view.programme.is_empty()
        || view.planned_sessions > 0
        || view.sessions_attended > 0
        || view.sessions_missed > 0
        || outcome(view, CaseStatus::Enrolled)
        || outcome(view, CaseStatus::Completed);
    let raw = [
        true,
        acknowledged,
        view.first_contact_at.is_some(),
        view.intake_at.is_some(),
        enrolled,
        outcome(view, CaseStatus::Completed),
        outcome(view, CaseStatus::DroppedOut),
    ];
    let mut stages = [false; 7];
    for stage in Stage::ALL {
        let i = stage as usize;
        stages[i] = raw[i] && stage.after().is_none_or(|p| stages[p as usize]);
    }
    // A contact before the referral (the case came by a handoff first) counts as at once.
    let since = |ts: &Option<prost_types::Timestamp>| {
        ts.as_ref()
            .map(|t| ((to_unix_ms(t) - first_ms) / 1000).max(0))
    };
    Reached {
        stages,
        to_first_contact_secs: since(&view.first_contact_at)
            .filter(|_| stages[Stage::Contacted as usize]),
        to_intake_secs: since(&view.intake_at).filter(|_| stages[Stage::Intake as usize]),
        fell_out: fell_out(view),
    }
}

/// The kinds that may send referrals, in a fixed order: each gets a row every month.
fn referring_kinds() -> impl Iterator<Item = &'static str> {
    AgencyKind::ALL
        .into_iter()
        .filter(|k| k.may_publish("referral_made"))
        .map(AgencyKind::as_str)
}

#[derive(Debug, Default)]
struct Tally {
    counts: [u64; 7],
    reasons: [u64; REASONS],
    to_first_contact: Vec<i64>,
    to_intake: Vec<i64>,
}

impl Tally {
    fn add(&mut self, r: &Reached) {
        for (count, hit) in self.counts.iter_mut().zip(r.stages) {
            *count += u64::from(hit);
        }
        if let Some(i) = r.fell_out.and_then(reason_index) {
            self.reasons[i] += 1;
        }
        self.to_first_contact.extend(r.to_first_contact_secs);
        self.to_intake.extend(r.to_intake_secs);
    }
}

/// The exact counts per month and referring kind (and [`ALL_KINDS`]), unsuppressed.
fn tally<'a>(
    views: impl IntoIterator<Item = &'a CaseView>,
    registry: &Registry,
    from: Month,
    to: Month,
) -> BTreeMap<(Month, &'static str), Tally> {
    let mut tallies: BTreeMap<(Month, &'static str), Tally> = BTreeMap::new();
    for view in views {
        // Referrals are kept in the order made: the first is the case's way in.
        let Some(first) = view.referrals.first() else {
            continue;
        };
        let Some(made) = &first.made_at else {
            continue;
        };
        let made_ms = to_unix_ms(made);
        let month = Month::of_unix_ms(made_ms);
        if month < from || month > to {
            continue;
        }
        let kind = registry
            .get(&first.from_agency)
            .map_or(UNKNOWN_KIND, |a| a.kind.as_str());
        let r = reached(view, made_ms);
        tallies.entry((month, kind)).or_default().add(&r);
        tallies.entry((month, ALL_KINDS)).or_default().add(&r);
    }
    tallies
}

/// The funnel of `views` for each month from `from` to `to` (inclusive), suppressing
/// numbers below `suppress_below` as the module documentation describes.
pub fn compute<'a>(
    views: impl IntoIterator<Item = &'a CaseView>,
    registry: &Registry,
    from: Month,
    to: Month,
    suppress_below: u32,
) -> Result<Report, StatsError> {
    if suppress_below == 0 {
        return Err(StatsError::NoThreshold);
    }
    let months = months(from, to)?;
    let mut tallies = tally(views, registry, from, to);
    let mut rows = Vec::new();
    for month in months {
        let mut kinds: Vec<&str> = std::iter::once(ALL_KINDS)
            .chain(referring_kinds())
            .collect();
        if tallies.contains_key(&(month, UNKNOWN_KIND)) {
            kinds.push(UNKNOWN_KIND);
        }
        let start = rows.len();
        for kind in kinds {
            let mut tally = tallies.remove(&(month, kind)).unwrap_or_default();
            rows.push(Row {
                month,
                referring_kind: kind.to_string(),
                stages: tally.counts.map(|c| primary(c, suppress_below)),
                median_to_first_contact_secs: median_cell(
                    &mut tally.to_first_contact,
                    suppress_below,
                ),
                median_to_intake_secs: median_cell(&mut tally.to_intake, suppress_below),
                reasons: tally.reasons.map(|c| primary(c, suppress_below)),
            });
        }
        complementary(&mut rows[start..]);
    }
    Ok(Report {
        from,
        to,
        suppress_below,
        rows,
    })
}

/// Rule 3: `rows[0]` is the month's total, the rest its parts; for each stage and
/// each reason column.
fn complementary(rows: &mut [Row]) {
    let Some((total, parts)) = rows.split_first_mut() else {
        return;
    };
    for i in 0..Stage::ALL.len() {
        complement(
            &mut total.stages[i],
            parts.iter_mut().map(|r| &mut r.stages[i]).collect(),
        );
    }
    for i in 0..REASONS {
        complement(
            &mut total.reasons[i],
            parts.iter_mut().map(|r| &mut r.reasons[i]).collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agency::Agency;
    use handoff_contract::time::from_unix_ms;
    use handoff_contract::v1::{ReferralStep, StepState};
    use proptest::prelude::*;

    const MARCH: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
    const HOUR_MS: i64 = 3_600_000;

    fn registry() -> Registry {
        let a = |id: &str, kind| Agency {
            id: id.into(),
            name: id.into(),
            kind,
        };
        Registry::new([
            a("police-north", AgencyKind::Police),
            a("court-city", AgencyKind::Court),
            a("ic-north", AgencyKind::InterventionCentre),
        ])
        .expect("registry")
    }

    /// A case referred at `made` by `from` that went through the first `depth` stages
    /// (1 = referred only … 6 = completed; 7 = dropped out after contact).
    fn case(from: &str, made: i64, depth: u8) -> CaseView {
        let at = |h: i64| Some(from_unix_ms(made + h * HOUR_MS));
        let mut view = CaseView {
            case_id: format!("c-{made}-{depth}"),
            status: CaseStatus::Referred as i32,
            referrals: vec![ReferralStep {
                referral_id: "r1".into(),
                from_agency: from.into(),
                to_agency: "ic-north".into(),
                state: StepState::Pending as i32,
                made_at: at(0),
                ..ReferralStep::default()
            }],
            ..CaseView::default()
        };
        let depth = if depth == 7 {
            view.status = CaseStatus::DroppedOut as i32;
            3
        } else {
            depth
        };
        if depth >= 2 {
            view.referrals[0].acknowledged_at = at(1);
            view.referrals[0].state = StepState::Accepted as i32;
            view.status = view.status.max(CaseStatus::Accepted as i32);
        }
        if depth >= 3 {
            view.first_contact_at = at(24);
        }
        if depth >= 4 {
            view.intake_at = at(72);
        }
        if depth >= 5 {
            view.programme = "Step Up".into();
            view.status = CaseStatus::Enrolled as i32;
        }
        if depth >= 6 {
            view.status = CaseStatus::Completed as i32;
        }
        view
    }

    /// `view` fallen out for `code`: a first referral declined (depth 1), a drop-out
    /// (depth 7, as it is), else closed.
    fn fallen(mut view: CaseView, code: OutcomeReason) -> CaseView {
        let status = CaseStatus::try_from(view.status).unwrap_or_default();
        if status == CaseStatus::DroppedOut {
            view.outcome_reason = code as i32;
        } else if view.referrals[0].acknowledged_at.is_none() {
            view.referrals[0].state = StepState::Declined as i32;
            view.referrals[0].decline_reason_code = code as i32;
            view.status = CaseStatus::Open as i32;
        } else {
            view.status = CaseStatus::Closed as i32;
            view.outcome_reason = code as i32;
        }
        view
    }

    #[test]
    fn cases_that_fell_out_are_counted_by_reason_and_suppressed_like_the_rest() {
        use OutcomeReason as R;
        let mut views = Vec::new();
        // Police: 6 declined for no capacity, 5 excluded, 1 unreachable, 2 completed.
        views.extend((0..6).map(|_| fallen(case("police-north", MARCH, 1), R::NoCapacity)));
        views.extend(
            (0..5).map(|_| fallen(case("police-north", MARCH, 7), R::ExcludedViolenceOrThreats)),
        );
        views.push(fallen(case("police-north", MARCH, 3), R::Unreachable));
        views.extend((0..2).map(|_| case("police-north", MARCH, 6)));
        // Court: 5 declined for no capacity, 2 excluded.
        views.extend((0..5).map(|_| fallen(case("court-city", MARCH, 1), R::NoCapacity)));
        views.extend(
            (0..2).map(|_| fallen(case("court-city", MARCH, 7), R::ExcludedViolenceOrThreats)),
        );
        // Not fallen out: pending, in contact, closed without a code (maybe completed).
        views.push(case("police-north", MARCH, 1));
        views.push(case("police-north", MARCH, 3));
        let mut closed = case("police-north", MARCH, 6);
        closed.status = CaseStatus::Closed as i32;
        views.push(closed);
        let r = compute(&views, &registry(), march(), march(), 5).expect("report");
        let row = |kind: &str| {
            r.rows
                .iter()
                .find(|r| r.referring_kind == kind)
                .expect("row")
        };
        let (all, police, court) = (row(ALL_KINDS), row("police"), row("court"));
        assert_eq!(all.reason(R::NoCapacity), Cell::Shown(11));
        assert_eq!(police.reason(R::NoCapacity), Cell::Shown(6));
        assert_eq!(court.reason(R::NoCapacity), Cell::Shown(5));
        assert_eq!(all.reason(R::ExcludedViolenceOrThreats), Cell::Shown(7));
        assert_eq!(police.reason(R::ExcludedViolenceOrThreats), Cell::Shown(5));
        // Court's 2 exclusions hide among the other kinds' zeros.
        assert_eq!(court.reason(R::ExcludedViolenceOrThreats), Cell::Suppressed);
        assert_eq!(all.reason(R::Unreachable), Cell::Suppressed);
        assert_eq!(all.reason(R::Unspecified), Cell::Suppressed);
        assert!(recoverable(&r).is_none(), "{:?}", recoverable(&r));
        // Drop-outs in the stage column are the drop-outs by reason.
        assert_eq!(all.stage(Stage::DroppedOut), Cell::Shown(7));

        // With the police the only other referrer of exclusions, court's 2 would be
        // the total minus police's 5: police's cell is withheld as well.
        let mut rows = vec![all.clone(), police.clone(), court.clone()];
        complementary(&mut rows);
        let ex = reason_index(R::ExcludedViolenceOrThreats).expect("index");
        assert_eq!(rows[1].reasons[ex], Cell::Suppressed);
        assert_eq!(rows[0].reasons[ex], Cell::Shown(7));
    }

    fn march() -> Month {
        "2026-03".parse().expect("month")
    }

    #[test]
    fn counts_medians_and_primary_suppression() {
        let mut views = Vec::new();
        for depth in [1, 2, 3, 3, 4, 4, 5, 6, 6, 6, 7] {
            views.push(case("police-north", MARCH + HOUR_MS, depth));
        }
        views.push(case("court-city", MARCH, 6));
        let r = compute(&views, &registry(), march(), march(), 5).expect("report");
        let police = r
            .rows
            .iter()
            .find(|r| r.referring_kind == "police")
            .expect("police row");
        let shown: Vec<Option<u64>> = police.stages.iter().map(|c| c.value()).collect();
        // referred 11, acknowledged 10, contacted 9, intake 6, enrolled 4 (suppressed),
        // completed 3 (suppressed), dropped out 1 (suppressed).
        assert_eq!(
            shown,
            [Some(11), Some(10), Some(9), Some(6), None, None, None]
        );
        assert_eq!(police.median_to_first_contact_secs, Cell::Shown(24 * 3600));
        assert_eq!(police.median_to_intake_secs, Cell::Shown(72 * 3600));
        let all = &r.rows[0];
        assert_eq!(all.referring_kind, ALL_KINDS);
        assert_eq!(all.stage(Stage::Referred), Cell::Shown(12));
        // Court's one case is suppressed; it hides among the kinds with none (also
        // suppressed), so rule 3 needs to withhold nothing more.
        let court = r
            .rows
            .iter()
            .find(|r| r.referring_kind == "court")
            .expect("court row");
        assert_eq!(court.stage(Stage::Referred), Cell::Suppressed);
    }

    #[test]
    fn a_lone_suppressed_cell_is_not_left_recoverable_from_the_total() {
        let mut views: Vec<CaseView> = (0..8).map(|_| case("police-north", MARCH, 2)).collect();
        views.extend((0..2).map(|_| case("court-city", MARCH, 2)));
        let r = compute(&views, &registry(), march(), march(), 5).expect("report");
        let all = &r.rows[0];
        assert_eq!(all.stage(Stage::Referred), Cell::Shown(10));
        // The other kinds have 0 cases: suppressed too, so court's 2 hides among them.
        let police = r
            .rows
            .iter()
            .find(|r| r.referring_kind == "police")
            .expect("police");
        assert_eq!(police.stage(Stage::Referred), Cell::Shown(8));
        assert!(recoverable(&r).is_none(), "{:?}", recoverable(&r));
    }

    #[test]
    fn a_single_referring_kind_gets_its_twin_suppressed() {
        // Only one kind may refer at all in this registry's month: the total is that kind.
        let mut rows = vec![
            Row {
                month: march(),
                referring_kind: ALL_KINDS.into(),
                stages: [Cell::Shown(9); 7],
                median_to_first_contact_secs: Cell::Suppressed,
                median_to_intake_secs: Cell::Suppressed,
                reasons: [Cell::Suppressed; REASONS],
            },
            Row {
                month: march(),
                referring_kind: "police".into(),
                stages: [Cell::Shown(6); 7],
                median_to_first_contact_secs: Cell::Suppressed,
                median_to_intake_secs: Cell::Suppressed,
                reasons: [Cell::Suppressed; REASONS],
            },
            Row {
                month: march(),
                referring_kind: "court".into(),
                stages: [Cell::Suppressed; 7],
                median_to_first_contact_secs: Cell::Suppressed,
                median_to_intake_secs: Cell::Suppressed,
                reasons: [Cell::Suppressed; REASONS],
            },
        ];
        complementary(&mut rows);
        assert!(rows[1].stages.iter().all(|c| *c == Cell::Suppressed));
        let mut lone = vec![rows[0].clone(), rows[2].clone()];
        complementary(&mut lone);
        assert!(lone[0].stages.iter().all(|c| *c == Cell::Suppressed));
    }

    #[test]
    fn a_median_over_too_few_cases_is_suppressed() {
        let views: Vec<CaseView> = (0..4).map(|_| case("police-north", MARCH, 4)).collect();
        let r = compute(&views, &registry(), march(), march(), 5).expect("report");
        assert!(r.rows.iter().all(|r| {
            r.median_to_first_contact_secs == Cell::Suppressed
                && r.median_to_intake_secs == Cell::Suppressed
        }));
        let r = compute(&views, &registry(), march(), march(), 3).expect("report");
        assert_eq!(r.rows[0].median_to_intake_secs, Cell::Shown(72 * 3600));
    }

    #[test]
    fn cases_outside_the_range_or_unreferred_are_left_out() {
        let views = vec![
            case("police-north", MARCH - HOUR_MS, 6),
            CaseView::default(),
            case("gone-agency", MARCH, 1),
        ];
        let r = compute(&views, &registry(), march(), march(), 1).expect("report");
        assert_eq!(r.rows[0].stage(Stage::Referred), Cell::Shown(1));
        assert_eq!(
            r.rows.last().map(|r| r.referring_kind.as_str()),
            Some(UNKNOWN_KIND)
        );
        assert_eq!(
            compute(&views, &registry(), march(), march(), 0),
            Err(StatsError::NoThreshold)
        );
    }

    /// A (month, stage or reason) whose one suppressed kind cell equals the total minus
    /// published cells.
    fn recoverable(report: &Report) -> Option<(Month, String)> {
        let mut by_month: BTreeMap<Month, Vec<&Row>> = BTreeMap::new();
        for row in &report.rows {
            by_month.entry(row.month).or_default().push(row);
        }
        for (month, rows) in by_month {
            let (total, parts) = rows.split_first()?;
            for stage in Stage::ALL {
                let hidden = parts
                    .iter()
                    .filter(|r| r.stage(stage) == Cell::Suppressed)
                    .count();
                if total.stage(stage) != Cell::Suppressed && hidden == 1 {
                    return Some((month, format!("{stage:?}")));
                }
            }
            for code in reason::ALL {
                let hidden = parts
                    .iter()
                    .filter(|r| r.reason(code) == Cell::Suppressed)
                    .count();
                if total.reason(code) != Cell::Suppressed && hidden == 1 {
                    return Some((month, reason::name(code).to_string()));
                }
            }
        }
        None
    }

    proptest! {
        #[test]
        fn the_funnel_is_monotone_and_suppression_never_reveals_a_small_count(
            cases in prop::collection::vec(
                (0usize..4, 0i64..(60 * 24), 1u8..=7, 0usize..(2 * REASONS)),
                0..80,
            ),
            threshold in 1u32..8,
        ) {
            let senders = ["police-north", "court-city", "ic-north", "gone-agency"];
            let views: Vec<CaseView> = cases
                .iter()
                .map(|&(s, hours, depth, code)| {
                    let view = case(senders[s], MARCH + hours * HOUR_MS, depth);
                    // Half the cases fall out (drop-outs always do), for a random reason.
                    match reason::ALL.get(code) {
                        Some(r) if depth != 6 => fallen(view, *r),
                        _ => view,
                    }
                })
                .collect();
            let to = "2026-04".parse().expect("month");
            let r = compute(&views, &registry(), march(), to, threshold).expect("report");
            let tallies = tally(&views, &registry(), march(), to);
            for row in &r.rows {
                let exact = tallies
                    .get(&(row.month, row.referring_kind.as_str()))
                    .map_or([0; 7], |t| t.counts);
                for stage in Stage::ALL {
                    let exact_at = |s: Stage| exact[s as usize];
                    if let Some(prev) = stage.after() {
                        prop_assert!(exact_at(stage) <= exact_at(prev));
                    }
                    let exact = exact_at(stage);
                    match row.stage(stage) {
                        Cell::Shown(v) => {
                            prop_assert_eq!(v, exact);
                            prop_assert!(v >= u64::from(threshold));
                        }
                        Cell::Suppressed => {}
                    }
                }
                let by_reason = tallies
                    .get(&(row.month, row.referring_kind.as_str()))
                    .map_or([0; REASONS], |t| t.reasons);
                prop_assert!(by_reason.iter().sum::<u64>() <= exact[Stage::Referred as usize]);
                for (cell, exact) in row.reasons.iter().zip(by_reason) {
                    if let Cell::Shown(v) = cell {
                        prop_assert_eq!(*v, exact);
                        prop_assert!(*v >= u64::from(threshold));
                    }
                }
            }
            prop_assert_eq!(recoverable(&r), None);
        }
    }
}
