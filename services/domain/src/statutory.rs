//! The statutory clocks of a police eviction (vykázání) and what follows it, from a
//! dated rule table (`ops/policy.toml`, `[[statutory]]`): each rule's figure is the
//! one in force on the date (Czech local time) of the fact that starts its clock, so
//! an order of 30 June 2025 lasts 10 days and one of 1 July 2025 lasts 14.
//! Pure: the facts and the current time are arguments.

use std::fmt;
use std::str::FromStr;

use handoff_contract::time::{from_unix_ms, to_unix_ms};
use handoff_contract::v1::{
    CaseView, ClockState as StatutoryClockState, CopyRecipient, Eviction, InboxItem,
    StatutoryClock, inbox_item,
};

use crate::agency::AgencyKind;
use crate::calendar::{DAY_MS, HOUR_MS, add_months, prague_day};

/// A statutory rule: a duty some agency must meet by a deadline, or a period that ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// How long an eviction lasts, from the order.
    EvictionDuration,
    /// Police send the record's copy to the intervention centre, from the order.
    CopyToCentre,
    /// ... to child protection (OSPOD) when a minor lives in the home.
    CopyToChildProtection,
    /// ... to the court that would decide a preliminary measure.
    CopyToCourt,
    /// The intervention centre offers help to the endangered person, from receiving the copy.
    CentreOffersHelp,
    /// Police check that the evicted person keeps away, from the order.
    ComplianceCheck,
    /// The evicted person may object, from the order's confirmation being served.
    ObjectionWindow,
    /// The court decides a petition for a preliminary measure, from its filing.
    CourtDecidesMeasure,
    /// How long a granted preliminary measure lasts, from its issue.
    MeasureDuration,
    /// The longest a preliminary measure may last with its extensions, from its issue.
    MeasureMaximum,
}

impl Rule {
    /// Every rule, in the order a case meets them.
    pub const ALL: [Rule; 10] = [
        Rule::EvictionDuration,
        Rule::CopyToCentre,
        Rule::CopyToChildProtection,
        Rule::CopyToCourt,
        Rule::CentreOffersHelp,
        Rule::ComplianceCheck,
        Rule::ObjectionWindow,
        Rule::CourtDecidesMeasure,
        Rule::MeasureDuration,
        Rule::MeasureMaximum,
    ];

    /// The rule's name in `policy.toml` and in inbox items.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::EvictionDuration => "eviction_duration",
            Rule::CopyToCentre => "copy_to_intervention_centre",
            Rule::CopyToChildProtection => "copy_to_child_protection",
            Rule::CopyToCourt => "copy_to_court",
            Rule::CentreOffersHelp => "centre_offers_help",
            Rule::ComplianceCheck => "police_compliance_check",
            Rule::ObjectionWindow => "objection_window",
            Rule::CourtDecidesMeasure => "court_decides_preliminary_measure",
            Rule::MeasureDuration => "preliminary_measure_duration",
            Rule::MeasureMaximum => "preliminary_measure_maximum",
        }
    }

    /// The unit its figure is given in, in `policy.toml`.
    pub fn unit(self) -> Unit {
        match self {
            Rule::EvictionDuration | Rule::ComplianceCheck | Rule::ObjectionWindow => Unit::Days,
            Rule::CopyToCentre
            | Rule::CopyToChildProtection
            | Rule::CopyToCourt
            | Rule::CentreOffersHelp
            | Rule::CourtDecidesMeasure => Unit::Hours,
            Rule::MeasureDuration | Rule::MeasureMaximum => Unit::Months,
        }
    }

    /// The kind of agency whose duty it is (whose inbox shows it); `None` for a period
    /// that simply ends.
    pub fn duty_of(self) -> Option<AgencyKind> {
        match self {
            Rule::CopyToCentre
            | Rule::CopyToChildProtection
            | Rule::CopyToCourt
            | Rule::ComplianceCheck => Some(AgencyKind::Police),
            Rule::CentreOffersHelp => Some(AgencyKind::InterventionCentre),
            Rule::CourtDecidesMeasure => Some(AgencyKind::Court),
            Rule::EvictionDuration
            | Rule::ObjectionWindow
            | Rule::MeasureDuration
            | Rule::MeasureMaximum => None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rule {
    type Err = StatutoryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| StatutoryError::UnknownRule(s.to_string()))
    }
}

/// What a rule's figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Hours (`hours = N`).
    Hours,
    /// Calendar days, counted as 24 hours each from the fact (`days = N`).
    Days,
    /// Calendar months (`months = N`).
    Months,
}

impl Unit {
    /// The key that gives the figure in `policy.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Months => "months",
        }
    }
}

/// One row of the table: a rule's figure from a date on, and the law that sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatedRule {
    /// Which rule.
    pub rule: Rule,
    /// In force for facts on or after this Czech date (days since 1970-01-01).
    pub valid_from_day: i64,
    /// The figure, in the rule's [`Unit`].
    pub amount: u32,
    /// The statute and section, e.g. "§ 44 odst. 3 zákona č. 273/2008 Sb.".
    pub source: String,
}

impl DatedRule {
    /// `from_ms` plus this rule's figure.
    pub fn after(&self, from_ms: i64) -> i64 {
        let amount = i64::from(self.amount);
        match self.rule.unit() {
            Unit::Hours => from_ms + amount * HOUR_MS,
            Unit::Days => from_ms + amount * DAY_MS,
            Unit::Months => add_months(from_ms, self.amount),
        }
    }
}

/// A rule table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatutoryError {
    /// A name that is no rule.
    #[error(
        "unknown statutory rule {0:?}; expected one of eviction_duration, copy_to_intervention_centre, copy_to_child_protection, copy_to_court, centre_offers_help, police_compliance_check, objection_window, court_decides_preliminary_measure, preliminary_measure_duration, preliminary_measure_maximum"
    )]
    UnknownRule(String),
    /// Two rows of one rule from the same date.
    #[error("statutory rule {0} has two rows valid from the same date; keep one")]
    SameDate(Rule),
    /// A row without the law it comes from.
    #[error("statutory rule {0}: every row needs a `source` naming the statute and section")]
    NoSource(Rule),
    /// A figure of zero.
    #[error("statutory rule {0}: the figure must be at least 1")]
    Zero(Rule),
}

/// The dated rule table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatutoryRules {
    rows: Vec<DatedRule>,
}

impl StatutoryRules {
    /// Checks and orders the rows.
    pub fn new(rows: impl IntoIterator<Item = DatedRule>) -> Result<Self, StatutoryError> {
        let mut rows: Vec<DatedRule> = rows.into_iter().collect();
        rows.sort_by_key(|r| (r.rule, r.valid_from_day));
        for row in &rows {
            if row.source.trim().is_empty() {
                return Err(StatutoryError::NoSource(row.rule));
            }
            if row.amount == 0 {
                return Err(StatutoryError::Zero(row.rule));
            }
        }
        if let Some(pair) = rows
            .windows(2)
            .find(|w| w[0].rule == w[1].rule && w[0].valid_from_day == w[1].valid_from_day)
        {
            return Err(StatutoryError::SameDate(pair[0].rule));
        }
        Ok(StatutoryRules { rows })
    }

    /// Whether the table has no rows (no statutory clock runs).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row of `rule` in force for a fact at `fact_ms`: the latest one valid from
    /// that Czech date or before. `None` when the rule did not exist yet.
    pub fn in_force(&self, rule: Rule, fact_ms: i64) -> Option<&DatedRule> {
        let day = prague_day(fact_ms);
        self.rows
            .iter()
            .filter(|r| r.rule == rule && r.valid_from_day <= day)
            .max_by_key(|r| r.valid_from_day)
    }
}

/// Who receives a copy of the eviction record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// The intervention centre.
    Centre,
    /// Child protection (OSPOD).
    ChildProtection,
    /// The court competent for a preliminary measure.
    Court,
}

impl Recipient {
    /// The rule that sets when its copy is due.
    pub fn rule(self) -> Rule {
        match self {
            Recipient::Centre => Rule::CopyToCentre,
            Recipient::ChildProtection => Rule::CopyToChildProtection,
            Recipient::Court => Rule::CopyToCourt,
        }
    }
}

/// A petition for a preliminary measure (předběžné opatření) and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Petition {
    /// When the endangered person filed it.
    pub filed_ms: i64,
    /// When the court decided it.
    pub decided_ms: Option<i64>,
    /// Whether it was granted (with `decided_ms`).
    pub granted: bool,
    /// When the decision became final (an eviction runs on until then).
    pub final_ms: Option<i64>,
    /// Extensions the court granted, each to this end.
    pub extended_until_ms: Vec<i64>,
    /// A petition to extend, filed before the measure ran out and not decided yet.
    pub extension_pending: bool,
    /// When the measure ended early (lifted by the court).
    pub ended_ms: Option<i64>,
}

/// What is known of one eviction: the facts its clocks depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictionFacts {
    /// When the police carried out the eviction.
    pub ordered_ms: i64,
    /// A minor lives in the home (the copy then goes to child protection too).
    pub minor_in_home: bool,
    /// Copies of the record the police sent: to whom, when.
    pub copies_sent: Vec<(Recipient, i64)>,
    /// When the intervention centre received its copy (its 48 hours run from then).
    pub centre_received_ms: Option<i64>,
    /// When the intervention centre offered help to the endangered person.
    pub help_offered_ms: Option<i64>,
    /// When the police checked compliance.
    pub compliance_checked_ms: Option<i64>,
    /// When the confirmation of the eviction was served on the evicted person (else: the order).
    pub confirmation_served_ms: Option<i64>,
    /// When the evicted person objected.
    pub objection_filed_ms: Option<i64>,
    /// When the eviction was ended early (by the regional police, on an objection).
    pub ended_early_ms: Option<i64>,
    /// A petition for a preliminary measure, if filed.
    pub petition: Option<Petition>,
}

/// One statutory clock of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    /// Which rule.
    pub rule: Rule,
    /// When it runs out; `None` while it runs until a decision that has not come.
    pub due_ms: Option<i64>,
    /// When the duty was met (or the window used, or the period ended early).
    pub met_ms: Option<i64>,
    /// The law, as the table names it.
    pub source: String,
}

/// Where a clock stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    /// Running; the deadline has not passed.
    Running,
    /// A duty whose deadline has passed unmet: an alert.
    Overdue,
    /// Met in time.
    Met,
    /// Met, but after the deadline (counts against the agency's compliance).
    MetLate,
    /// A period (not a duty) that has ended.
    Ended,
}

impl Clock {
    /// Where the clock stands at `now_ms`.
    pub fn state(&self, now_ms: i64) -> ClockState {
        let passed = self.due_ms.is_some_and(|due| now_ms > due);
        match (self.met_ms, self.rule.duty_of()) {
            (Some(met), Some(_)) => match self.due_ms {
                Some(due) if met > due => ClockState::MetLate,
                _ => ClockState::Met,
            },
            (Some(_), None) => ClockState::Ended,
            (None, Some(_)) if passed => ClockState::Overdue,
            (None, None) if passed => ClockState::Ended,
            (None, _) => ClockState::Running,
        }
    }
}

/// Every statutory clock an eviction starts, with the figures in force on the date of
/// the fact each counts from. A rule the table lacks for that date starts no clock.
pub fn clocks(facts: &EvictionFacts, rules: &StatutoryRules) -> Vec<Clock> {
    let mut out = Vec::new();
    let mut clock = |rule: Rule, from_ms: i64, met_ms: Option<i64>| {
        if let Some(row) = rules.in_force(rule, from_ms) {
            out.push(Clock {
                rule,
                due_ms: Some(row.after(from_ms)),
                met_ms,
                source: row.source.clone(),
            });
        }
    };
    let ordered = facts.ordered_ms;
    let sent = |to: Recipient| {
        facts
            .copies_sent
            .iter()
            .filter(|(r, _)| *r == to)
            .map(|(_, at)| *at)
            .min()
    };
    clock(Rule::CopyToCentre, ordered, sent(Recipient::Centre));
    if facts.minor_in_home {
        clock(
            Rule::CopyToChildProtection,
            ordered,
            sent(Recipient::ChildProtection),
        );
    }
    clock(Rule::CopyToCourt, ordered, sent(Recipient::Court));
    // The centre's 48 hours run from its receipt of the copy; until it is known to
    // have arrived, from the police sending it.
    if let Some(received) = facts.centre_received_ms.or(sent(Recipient::Centre)) {
        clock(Rule::CentreOffersHelp, received, facts.help_offered_ms);
    }
    clock(Rule::ComplianceCheck, ordered, facts.compliance_checked_ms);
    clock(
        Rule::ObjectionWindow,
        facts.confirmation_served_ms.unwrap_or(ordered),
        facts.objection_filed_ms,
    );
    if let Some(petition) = &facts.petition {
        clock(
            Rule::CourtDecidesMeasure,
            petition.filed_ms,
            petition.decided_ms,
        );
    }
    out.extend(eviction_clock(facts, rules));
    if let Some(petition) = &facts.petition {
        out.extend(measure_clocks(petition, rules));
    }
    out.sort_by_key(|c| (c.due_ms.unwrap_or(i64::MAX), c.rule));
    out
}

/// The eviction's own period: its statutory length from the order, run on while a
/// petition filed during it waits for a final decision; ended early if so decided.
fn eviction_clock(facts: &EvictionFacts, rules: &StatutoryRules) -> Option<Clock> {
    let row = rules.in_force(Rule::EvictionDuration, facts.ordered_ms)?;
    let statutory_end = row.after(facts.ordered_ms);
    let due_ms = match &facts.petition {
        Some(p) if p.filed_ms <= statutory_end && facts.ended_early_ms.is_none() => {
            p.final_ms.map(|at| at.max(statutory_end))
        }
        _ => Some(statutory_end),
    };
    Some(Clock {
        rule: Rule::EvictionDuration,
        due_ms,
        met_ms: facts.ended_early_ms,
        source: row.source.clone(),
    })
}

/// A granted measure's period (one month from issue, or to the latest extension, never
/// past the maximum), running on while an extension petition waits.
fn measure_clocks(petition: &Petition, rules: &StatutoryRules) -> Vec<Clock> {
    let (Some(issued), true) = (petition.decided_ms, petition.granted) else {
        return Vec::new();
    };
    let Some(row) = rules.in_force(Rule::MeasureDuration, issued) else {
        return Vec::new();
    };
    let maximum = rules.in_force(Rule::MeasureMaximum, issued);
    let cap = maximum.map(|m| m.after(issued));
    let mut end = row.after(issued);
    if let Some(latest) = petition.extended_until_ms.iter().max() {
        end = end.max(*latest);
    }
    if let Some(cap) = cap {
        end = end.min(cap);
    }
    let running_on = petition.extension_pending && cap.is_none_or(|cap| end < cap);
    let mut out = vec![Clock {
        rule: Rule::MeasureDuration,
        due_ms: (!running_on).then_some(end),
        met_ms: petition.ended_ms,
        source: row.source.clone(),
    }];
    if let (Some(maximum), Some(cap)) = (maximum, cap) {
        out.push(Clock {
            rule: Rule::MeasureMaximum,
            due_ms: Some(cap),
            met_ms: petition.ended_ms,
            source: maximum.source.clone(),
        });
    }
    out
}

/// The facts of an eviction as the case records them (`eviction_path` folds them).
pub fn facts_of(eviction: &Eviction) -> EvictionFacts {
    let ms = |t: &Option<prost_types::Timestamp>| t.as_ref().map(to_unix_ms);
    let recipient = |r: i32| match CopyRecipient::try_from(r) {
        Ok(CopyRecipient::ChildProtection) => Some(Recipient::ChildProtection),
        Ok(CopyRecipient::Court) => Some(Recipient::Court),
        Ok(CopyRecipient::InterventionCentre) => Some(Recipient::Centre),
        _ => None,
    };
    EvictionFacts {
        ordered_ms: ms(&eviction.ordered_at).unwrap_or_default(),
        minor_in_home: eviction.minor_in_home,
        copies_sent: eviction
            .copies
            .iter()
            .filter_map(|c| Some((recipient(c.recipient)?, ms(&c.sent_at)?)))
            .collect(),
        centre_received_ms: eviction
            .copies
            .iter()
            .filter(|c| recipient(c.recipient) == Some(Recipient::Centre))
            .filter_map(|c| ms(&c.received_at))
            .min(),
        help_offered_ms: ms(&eviction.help_offered_at),
        compliance_checked_ms: ms(&eviction.compliance_checked_at),
        confirmation_served_ms: None,
        objection_filed_ms: ms(&eviction.objection_filed_at),
        ended_early_ms: ms(&eviction.ended_early_at),
        petition: eviction.measure.as_ref().and_then(|m| {
            Some(Petition {
                filed_ms: ms(&m.petitioned_at)?,
                decided_ms: ms(&m.decided_at),
                granted: m.granted,
                final_ms: ms(&m.effective_at),
                extended_until_ms: m.extended_until.iter().map(to_unix_ms).collect(),
                extension_pending: m.extension_pending,
                ended_ms: ms(&m.ended_at),
            })
        }),
    }
}

/// The agency whose duty a rule of this eviction is: the police that ordered it, the
/// centre its copy went to, the court that recorded the petition. Empty for a period.
pub fn duty_agency(eviction: &Eviction, rule: Rule) -> String {
    let copied_to = |want: CopyRecipient| {
        eviction
            .copies
            .iter()
            .find(|c| c.recipient == want as i32)
            .map(|c| c.to_agency.clone())
            .unwrap_or_default()
    };
    match rule.duty_of() {
        Some(AgencyKind::Police) => eviction.ordered_by.clone(),
        Some(AgencyKind::InterventionCentre) => copied_to(CopyRecipient::InterventionCentre),
        Some(AgencyKind::Court) => eviction
            .measure
            .as_ref()
            .map(|m| m.court.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn clock_state(state: ClockState) -> StatutoryClockState {
    match state {
        ClockState::Running => StatutoryClockState::Running,
        ClockState::Overdue => StatutoryClockState::Overdue,
        ClockState::Met => StatutoryClockState::Met,
        ClockState::MetLate => StatutoryClockState::MetLate,
        ClockState::Ended => StatutoryClockState::Ended,
    }
}

/// Sets each eviction's end and its statutory clocks in a view, from the table in
/// force on the date of the fact each counts from, as they stand at `now_ms`, naming
/// the law. An eviction the table has no row for keeps the publisher's `duration_days`.
/// Done at read time, so the log never depends on the table.
pub fn apply_to_view(view: &mut CaseView, rules: &StatutoryRules, now_ms: i64) {
    for eviction in &mut view.evictions {
        if eviction.ordered_at.is_none() {
            continue;
        }
        let facts = facts_of(eviction);
        let all = clocks(&facts, rules);
        if let Some(Clock { due_ms, source, .. }) =
            all.iter().find(|c| c.rule == Rule::EvictionDuration)
        {
            // No end while a petition waits: it runs until the decision takes effect.
            eviction.ends_at = due_ms.map(from_unix_ms);
            eviction.duration_source = source.clone();
        }
        eviction.clocks = all
            .iter()
            .map(|c| StatutoryClock {
                rule: c.rule.as_str().to_string(),
                due_at: c.due_ms.map(from_unix_ms),
                met_at: c.met_ms.map(from_unix_ms),
                state: clock_state(c.state(now_ms)) as i32,
                source: c.source.clone(),
                duty_of: duty_agency(eviction, c.rule),
            })
            .collect();
    }
}

/// The statutory duties of a case waiting for agencies at `now_ms`: one inbox item per
/// duty not yet met, in the inbox of the agency whose duty it is, with its deadline.
/// An overdue one is an alert (`handoff_sla_overdue{rule}`); the event that meets it clears it.
pub fn duties(view: &CaseView, rules: &StatutoryRules, now_ms: i64) -> Vec<InboxItem> {
    let mut items = Vec::new();
    for eviction in &view.evictions {
        if eviction.ordered_at.is_none() {
            continue;
        }
        for clock in clocks(&facts_of(eviction), rules) {
            let state = clock.state(now_ms);
            if !matches!(state, ClockState::Running | ClockState::Overdue)
                || clock.rule.duty_of().is_none()
            {
                continue;
            }
            let to = duty_agency(eviction, clock.rule);
            if to.is_empty() {
                continue;
            }
            items.push(InboxItem {
                kind: inbox_item::Kind::Statutory as i32,
                case_id: view.case_id.clone(),
                item_id: format!("statutory/{}/{}", eviction.incident_ref, clock.rule),
                from_agency: eviction.ordered_by.clone(),
                to_agency: to,
                since: eviction.ordered_at,
                subject_pseudonym: view.subject_pseudonym.clone(),
                due_at: clock.due_ms.map(from_unix_ms),
                overdue: state == ClockState::Overdue,
                rule: clock.rule.as_str().to_string(),
                basis: clock.source.clone(),
                ..InboxItem::default()
            });
        }
    }
    items
}

/// The table as `ops/policy.toml` ships it, for tests of code that needs one.
#[cfg(test)]
pub fn czech_rules() -> StatutoryRules {
    use crate::calendar::days_from_civil;
    let row = |rule, (y, m, d), amount, source: &str| DatedRule {
        rule,
        valid_from_day: days_from_civil(y, m, d),
        amount,
        source: source.into(),
    };
    let police = "zákon č. 273/2008 Sb., o Policii České republiky, § 44-47";
    StatutoryRules::new([
        row(Rule::EvictionDuration, (2009, 1, 1), 10, police),
        row(
            Rule::EvictionDuration,
            (2025, 7, 1),
            14,
            "§ 44 zákona č. 273/2008 Sb., ve znění zákona č. 78/2025 Sb.",
        ),
        row(Rule::CopyToCentre, (2009, 1, 1), 24, police),
        row(Rule::CopyToChildProtection, (2009, 1, 1), 24, police),
        row(Rule::CopyToCourt, (2009, 1, 1), 24, police),
        row(
            Rule::CentreOffersHelp,
            (2007, 1, 1),
            48,
            "§ 60a zákona č. 108/2006 Sb.",
        ),
        row(Rule::ComplianceCheck, (2009, 1, 1), 3, police),
        row(Rule::ObjectionWindow, (2009, 1, 1), 3, police),
        row(
            Rule::CourtDecidesMeasure,
            (2014, 1, 1),
            48,
            "§ 400 an. zákona č. 292/2013 Sb.",
        ),
        row(
            Rule::MeasureDuration,
            (2014, 1, 1),
            1,
            "§ 400 an. zákona č. 292/2013 Sb.",
        ),
        row(
            Rule::MeasureMaximum,
            (2014, 1, 1),
            6,
            "§ 400 an. zákona č. 292/2013 Sb.",
        ),
    ])
    .expect("the shipped table is valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::days_from_civil;

    /// Noon, Czech summer time (10:00 UTC), on a date.
    fn noon(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + 10 * HOUR_MS
    }

    fn clock(clocks: &[Clock], rule: Rule) -> Clock {
        clocks
            .iter()
            .find(|c| c.rule == rule)
            .cloned()
            .unwrap_or_else(|| panic!("no {rule} clock in {clocks:?}"))
    }

    fn eviction(ordered_ms: i64) -> EvictionFacts {
        EvictionFacts {
            ordered_ms,
            ..EvictionFacts::default()
        }
    }

    #[test]
    fn an_order_of_30_june_2025_lasts_10_days_and_one_of_1_july_14() {
        let rules = czech_rules();
        let june = clock(
            &clocks(&eviction(noon(2025, 6, 30)), &rules),
            Rule::EvictionDuration,
        );
        assert_eq!(june.due_ms, Some(noon(2025, 7, 10)));
        let july = clock(
            &clocks(&eviction(noon(2025, 7, 1)), &rules),
            Rule::EvictionDuration,
        );
        assert_eq!(july.due_ms, Some(noon(2025, 7, 15)));
        assert!(july.source.contains("78/2025"), "{}", july.source);
        // The Czech date decides: 22:30 UTC on 30 June is already 1 July in Prague.
        let late = noon(2025, 6, 30) + 12 * HOUR_MS + 30 * 60_000;
        let late = clock(&clocks(&eviction(late), &rules), Rule::EvictionDuration);
        assert_eq!(
            late.due_ms,
            Some(noon(2025, 7, 14) + 12 * HOUR_MS + 30 * 60_000)
        );
    }

    #[test]
    fn a_pending_petition_extends_the_eviction_until_the_final_decision() {
        let rules = czech_rules();
        let ordered = noon(2025, 9, 1);
        let mut facts = eviction(ordered);
        facts.petition = Some(Petition {
            filed_ms: noon(2025, 9, 10),
            ..Petition::default()
        });
        let pending = clock(&clocks(&facts, &rules), Rule::EvictionDuration);
        assert_eq!(pending.due_ms, None, "runs until the decision");
        assert_eq!(pending.state(noon(2025, 10, 1)), ClockState::Running);
        let petition = facts.petition.as_mut().expect("petition");
        petition.decided_ms = Some(noon(2025, 9, 12));
        petition.final_ms = Some(noon(2025, 9, 27));
        let decided = clock(&clocks(&facts, &rules), Rule::EvictionDuration);
        assert_eq!(decided.due_ms, Some(noon(2025, 9, 27)));
        // A decision final before the statutory end does not shorten it.
        facts.petition.as_mut().expect("petition").final_ms = Some(noon(2025, 9, 13));
        let early = clock(&clocks(&facts, &rules), Rule::EvictionDuration);
        assert_eq!(early.due_ms, Some(noon(2025, 9, 15)));
        // A petition filed after the eviction ended extends nothing.
        let mut after = eviction(ordered);
        after.petition = Some(Petition {
            filed_ms: noon(2025, 9, 20),
            ..Petition::default()
        });
        let unaffected = clock(&clocks(&after, &rules), Rule::EvictionDuration);
        assert_eq!(unaffected.due_ms, Some(noon(2025, 9, 15)));
    }

    #[test]
    fn each_duty_becomes_overdue_and_clears_with_the_event_that_meets_it() {
        let rules = czech_rules();
        let ordered = noon(2025, 9, 1);
        let mut facts = eviction(ordered);
        facts.minor_in_home = true;
        let now = |hours: i64| ordered + hours * HOUR_MS;
        let states = |facts: &EvictionFacts, at: i64| -> Vec<(Rule, ClockState)> {
            clocks(facts, &rules)
                .iter()
                .filter(|c| c.rule.duty_of().is_some())
                .map(|c| (c.rule, c.state(at)))
                .collect()
        };
        // Before any deadline: the three copies and the check run.
        let early = states(&facts, now(1));
        assert!(
            early.iter().all(|(_, s)| *s == ClockState::Running),
            "{early:?}"
        );
        assert_eq!(
            early.len(),
            4,
            "copies to IC, OSPOD, court; compliance check: {early:?}"
        );
        // A day later the copies are overdue.
        let late = states(&facts, now(25));
        for rule in [
            Rule::CopyToCentre,
            Rule::CopyToChildProtection,
            Rule::CopyToCourt,
        ] {
            assert!(
                late.contains(&(rule, ClockState::Overdue)),
                "{rule}: {late:?}"
            );
        }
        // The copies sent in time clear them, and start the centre's 48 hours.
        facts.copies_sent = vec![
            (Recipient::Centre, now(3)),
            (Recipient::ChildProtection, now(3)),
            (Recipient::Court, now(30)),
        ];
        facts.centre_received_ms = Some(now(4));
        let sent = clocks(&facts, &rules);
        assert_eq!(
            clock(&sent, Rule::CopyToCentre).state(now(25)),
            ClockState::Met
        );
        assert_eq!(
            clock(&sent, Rule::CopyToCourt).state(now(31)),
            ClockState::MetLate
        );
        let offer = clock(&sent, Rule::CentreOffersHelp);
        assert_eq!(offer.due_ms, Some(now(4 + 48)));
        assert_eq!(offer.state(now(53)), ClockState::Overdue);
        facts.help_offered_ms = Some(now(20));
        assert_eq!(
            clock(&clocks(&facts, &rules), Rule::CentreOffersHelp).state(now(53)),
            ClockState::Met
        );
        // The compliance check: 3 days.
        let check = clock(&clocks(&facts, &rules), Rule::ComplianceCheck);
        assert_eq!(check.state(now(73)), ClockState::Overdue);
        facts.compliance_checked_ms = Some(now(50));
        assert_eq!(
            clock(&clocks(&facts, &rules), Rule::ComplianceCheck).state(now(73)),
            ClockState::Met
        );
        // Without a minor in the home no copy to OSPOD is due.
        facts.minor_in_home = false;
        assert!(
            clocks(&facts, &rules)
                .iter()
                .all(|c| c.rule != Rule::CopyToChildProtection)
        );
    }

    #[test]
    fn the_objection_window_and_the_periods_end_rather_than_fall_overdue() {
        let rules = czech_rules();
        let ordered = noon(2025, 9, 1);
        let facts = eviction(ordered);
        let all = clocks(&facts, &rules);
        let window = clock(&all, Rule::ObjectionWindow);
        assert_eq!(window.due_ms, Some(ordered + 3 * DAY_MS));
        assert_eq!(window.state(ordered + 4 * DAY_MS), ClockState::Ended);
        assert_eq!(
            clock(&all, Rule::EvictionDuration).state(ordered + 15 * DAY_MS),
            ClockState::Ended
        );
        let mut ended = facts.clone();
        ended.ended_early_ms = Some(ordered + 5 * DAY_MS);
        let early = clock(&clocks(&ended, &rules), Rule::EvictionDuration);
        assert_eq!(early.state(ordered + 6 * DAY_MS), ClockState::Ended);
    }

    #[test]
    fn a_granted_measure_lasts_a_month_runs_on_while_extended_and_stops_at_six() {
        let rules = czech_rules();
        let issued = noon(2025, 9, 12);
        let mut petition = Petition {
            filed_ms: noon(2025, 9, 10),
            decided_ms: Some(issued),
            granted: true,
            final_ms: Some(noon(2025, 9, 27)),
            ..Petition::default()
        };
        let facts = |p: &Petition| EvictionFacts {
            petition: Some(p.clone()),
            ..eviction(noon(2025, 9, 1))
        };
        let court = clock(
            &clocks(&facts(&petition), &rules),
            Rule::CourtDecidesMeasure,
        );
        assert_eq!(
            court.state(issued),
            ClockState::Met,
            "decided within 48 hours"
        );
        let measure = clock(&clocks(&facts(&petition), &rules), Rule::MeasureDuration);
        assert_eq!(measure.due_ms, Some(noon(2025, 10, 12)));
        petition.extension_pending = true;
        let pending = clock(&clocks(&facts(&petition), &rules), Rule::MeasureDuration);
        assert_eq!(
            pending.due_ms, None,
            "runs on until the extension is decided"
        );
        petition.extension_pending = false;
        petition.extended_until_ms = vec![noon(2026, 6, 1)];
        let extended = clock(&clocks(&facts(&petition), &rules), Rule::MeasureDuration);
        assert_eq!(
            extended.due_ms,
            Some(noon(2026, 3, 12)),
            "never past six months"
        );
        let refused = Petition {
            granted: false,
            ..petition.clone()
        };
        assert!(
            clocks(&facts(&refused), &rules)
                .iter()
                .all(|c| c.rule != Rule::MeasureDuration)
        );
    }

    #[test]
    fn the_table_refuses_rows_without_a_source_twins_and_zeros() {
        let row = |amount, source: &str| DatedRule {
            rule: Rule::CopyToCentre,
            valid_from_day: 0,
            amount,
            source: source.into(),
        };
        assert_eq!(
            StatutoryRules::new([row(24, " ")]),
            Err(StatutoryError::NoSource(Rule::CopyToCentre))
        );
        assert_eq!(
            StatutoryRules::new([row(24, "a"), row(12, "b")]),
            Err(StatutoryError::SameDate(Rule::CopyToCentre))
        );
        assert_eq!(
            StatutoryRules::new([row(0, "a")]),
            Err(StatutoryError::Zero(Rule::CopyToCentre))
        );
        for rule in Rule::ALL {
            assert_eq!(rule.as_str().parse::<Rule>(), Ok(rule));
        }
        // Before a rule existed, it starts no clock.
        let rules = czech_rules();
        assert!(
            rules
                .in_force(Rule::CopyToCourt, noon(2008, 6, 1))
                .is_none()
        );
    }
}
