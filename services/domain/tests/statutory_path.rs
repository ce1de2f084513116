//! Issue 16 on the pure model: an eviction's statutory path folded event by event,
//! its deadlines appearing, falling overdue and clearing with the event that meets
//! them (the clock is an argument); safety notices that reach the endangered person's
//! support whatever the violent person's consent; protection cases that never reach
//! an agency working with the violent person.

mod common;

use common::{AGENCIES, envelope, registry, uuid7};
use handoff_contract::time::{from_unix_ms, to_unix_ms};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::calendar::{DAY_MS, HOUR_MS, days_from_civil};
use handoff_domain::safety::{SafetyRules, acts_for_endangered, notices};
use handoff_domain::statutory::{DatedRule, Rule, StatutoryRules, apply_to_view, duties};
use handoff_domain::{Position, evolve};
use proptest::prelude::*;

const CASE: &str = "police-a/c1";
const SUBJECT: &str = "police-a/s1";

/// Noon in Prague (summer time) on a date.
fn noon(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) * DAY_MS + 10 * HOUR_MS
}

/// The table as ops/policy.toml ships it (the figures; the sources abridged).
fn rules() -> StatutoryRules {
    let row = |rule, (y, m, d), amount| DatedRule {
        rule,
        valid_from_day: days_from_civil(y, m, d),
        amount,
        source: format!("source of {rule}"),
    };
    StatutoryRules::new([
        row(Rule::EvictionDuration, (2009, 1, 1), 10),
        row(Rule::EvictionDuration, (2025, 7, 1), 14),
        row(Rule::CopyToCentre, (2009, 1, 1), 24),
        row(Rule::CopyToChildProtection, (2009, 1, 1), 24),
        row(Rule::CopyToCourt, (2009, 1, 1), 24),
        row(Rule::CentreOffersHelp, (2007, 1, 1), 48),
        row(Rule::ComplianceCheck, (2009, 1, 1), 3),
        row(Rule::ObjectionWindow, (2009, 1, 1), 3),
        row(Rule::CourtDecidesMeasure, (2014, 1, 1), 48),
        row(Rule::MeasureDuration, (2014, 1, 1), 1),
        row(Rule::MeasureMaximum, (2014, 1, 1), 6),
    ])
    .expect("valid table")
}

/// A case folded from events, each at its own time.
struct Case {
    view: Option<CaseView>,
    sequence: u64,
}

impl Case {
    fn new() -> Self {
        Case {
            view: None,
            sequence: 0,
        }
    }

    fn publish(&mut self, source: &str, at_ms: i64, event: Event) -> Result<(), String> {
        let mut e = envelope(uuid7(self.sequence + 1), source, CASE, SUBJECT, event);
        e.occurred_at = Some(from_unix_ms(at_ms));
        let at = Position {
            sequence: self.sequence + 1,
            recorded_at_ms: at_ms,
        };
        let next = evolve(self.view.as_ref(), &e, &registry(), at).map_err(|r| r.to_string())?;
        self.sequence += 1;
        self.view = Some(next);
        Ok(())
    }

    fn step(&mut self, source: &str, at_ms: i64, event: Event) {
        if let Err(why) = self.publish(source, at_ms, event) {
            panic!("refused: {why}");
        }
    }

    fn view(&self) -> &CaseView {
        self.view.as_ref().expect("a case")
    }

    /// The statutory duties waiting at `now_ms`: (agency, rule, overdue).
    fn duties(&self, now_ms: i64) -> Vec<(String, String, bool)> {
        duties(self.view(), &rules(), now_ms)
            .into_iter()
            .map(|i| (i.to_agency, i.rule, i.overdue))
            .collect()
    }

    fn duty(&self, now_ms: i64, rule: &str) -> Option<(String, bool)> {
        self.duties(now_ms)
            .into_iter()
            .find(|(_, r, _)| r == rule)
            .map(|(a, _, overdue)| (a, overdue))
    }
}

fn evicted(ordered_ms: i64, minor_in_home: bool) -> Case {
    let mut case = Case::new();
    case.step(
        "police-a",
        ordered_ms,
        Event::EvictionOrdered(EvictionOrdered {
            incident_ref: "KRPC-1".into(),
            ordered_at: Some(from_unix_ms(ordered_ms)),
            duration_days: 10,
            protected_area: "Lannova 12".into(),
            minor_in_home,
        }),
    );
    case
}

fn copy(recipient: CopyRecipient, to: &str) -> Event {
    Event::EvictionCopySent(EvictionCopySent {
        incident_ref: "KRPC-1".into(),
        recipient: recipient as i32,
        to_agency: to.into(),
    })
}

fn measure(stage: preliminary_measure::Stage) -> Event {
    Event::PreliminaryMeasure(PreliminaryMeasure {
        stage: stage as i32,
        ..PreliminaryMeasure::default()
    })
}

fn ends_at(case: &Case) -> Option<i64> {
    let mut view = case.view().clone();
    apply_to_view(&mut view, &rules(), i64::MAX);
    view.evictions[0].ends_at.as_ref().map(to_unix_ms)
}

#[test]
fn an_order_of_30_june_2025_ends_after_10_days_and_one_of_1_july_after_14() {
    let june = evicted(noon(2025, 6, 30), false);
    assert_eq!(ends_at(&june), Some(noon(2025, 7, 10)));
    let july = evicted(noon(2025, 7, 1), false);
    assert_eq!(ends_at(&july), Some(noon(2025, 7, 15)));
}

#[test]
fn each_deadline_appears_falls_overdue_and_clears_with_the_event_that_meets_it() {
    let t0 = noon(2025, 9, 1);
    let mut case = evicted(t0, true);
    // At once: the police owe three copies and the compliance check.
    for rule in [
        "copy_to_intervention_centre",
        "copy_to_child_protection",
        "copy_to_court",
        "police_compliance_check",
    ] {
        assert_eq!(
            case.duty(t0 + HOUR_MS, rule),
            Some(("police-a".into(), false)),
            "{rule}"
        );
        assert_eq!(
            case.duty(t0 + 25 * HOUR_MS, rule).map(|d| d.0),
            Some("police-a".into())
        );
    }
    assert!(
        case.duty(t0 + 25 * HOUR_MS, "copy_to_court")
            .is_some_and(|d| d.1),
        "overdue after 24 h"
    );
    // Copies sent: each clears its own duty; the centre now owes its offer of help.
    case.step(
        "police-a",
        t0 + 2 * HOUR_MS,
        copy(CopyRecipient::InterventionCentre, "ic-a"),
    );
    case.step(
        "police-a",
        t0 + 3 * HOUR_MS,
        copy(CopyRecipient::ChildProtection, "social-a"),
    );
    assert_eq!(
        case.duty(t0 + 25 * HOUR_MS, "copy_to_intervention_centre"),
        None
    );
    assert_eq!(
        case.duty(t0 + 25 * HOUR_MS, "copy_to_child_protection"),
        None
    );
    assert!(
        case.duty(t0 + 25 * HOUR_MS, "copy_to_court")
            .is_some_and(|d| d.1)
    );
    // The centre's 48 hours run from its receipt of the copy.
    case.step(
        "ic-a",
        t0 + 10 * HOUR_MS,
        Event::EvictionCopyReceived(EvictionCopyReceived::default()),
    );
    assert_eq!(
        case.duty(t0 + 57 * HOUR_MS, "centre_offers_help"),
        Some(("ic-a".into(), false))
    );
    assert_eq!(
        case.duty(t0 + 59 * HOUR_MS, "centre_offers_help"),
        Some(("ic-a".into(), true))
    );
    case.step(
        "ic-a",
        t0 + 30 * HOUR_MS,
        Event::VictimHelpOffered(VictimHelpOffered {
            incident_ref: "KRPC-1".into(),
            outcome: ContactOutcome::Reached as i32,
            note: "offered counselling".into(),
        }),
    );
    assert_eq!(case.duty(t0 + 59 * HOUR_MS, "centre_offers_help"), None);
    // A late copy to the court still clears the duty (met late: counted in compliance).
    case.step(
        "police-a",
        t0 + 30 * HOUR_MS,
        copy(CopyRecipient::Court, "court-a"),
    );
    assert_eq!(case.duty(t0 + 31 * HOUR_MS, "copy_to_court"), None);
    // Compliance check: overdue after 3 days, cleared when done.
    assert!(
        case.duty(t0 + 3 * DAY_MS + HOUR_MS, "police_compliance_check")
            .is_some_and(|d| d.1)
    );
    case.step(
        "police-a",
        t0 + 2 * DAY_MS,
        Event::EvictionComplianceChecked(EvictionComplianceChecked {
            incident_ref: String::new(),
            kept: true,
            note: "not at home".into(),
        }),
    );
    assert_eq!(
        case.duty(t0 + 3 * DAY_MS + HOUR_MS, "police_compliance_check"),
        None
    );
    // A petition: the court owes its decision within 48 hours; the eviction runs on.
    case.step(
        "court-a",
        t0 + 5 * DAY_MS,
        measure(preliminary_measure::Stage::Petitioned),
    );
    assert_eq!(
        case.duty(t0 + 6 * DAY_MS, "court_decides_preliminary_measure"),
        Some(("court-a".into(), false))
    );
    assert!(
        case.duty(t0 + 8 * DAY_MS, "court_decides_preliminary_measure")
            .is_some_and(|d| d.1)
    );
    assert_eq!(
        ends_at(&case),
        None,
        "runs on until the decision takes effect"
    );
    let effective = t0 + 20 * DAY_MS;
    case.step(
        "court-a",
        t0 + 6 * DAY_MS,
        Event::PreliminaryMeasure(PreliminaryMeasure {
            stage: preliminary_measure::Stage::Granted as i32,
            effective_at: Some(from_unix_ms(effective)),
            ..PreliminaryMeasure::default()
        }),
    );
    assert_eq!(
        case.duty(t0 + 8 * DAY_MS, "court_decides_preliminary_measure"),
        None
    );
    assert_eq!(
        ends_at(&case),
        Some(effective),
        "ends when the decision takes effect"
    );
    // Nothing is left owed.
    assert!(
        case.duties(t0 + 30 * DAY_MS).is_empty(),
        "{:?}",
        case.duties(t0 + 30 * DAY_MS)
    );
}

#[test]
fn a_copy_goes_only_to_an_agency_of_its_kind_and_only_the_ordering_police_send_it() {
    let mut case = evicted(noon(2025, 9, 1), false);
    let err = case
        .publish(
            "police-a",
            noon(2025, 9, 1),
            copy(CopyRecipient::Court, "ngo-a"),
        )
        .expect_err("a programme is no court");
    assert!(err.contains("court"), "{err}");
    assert!(
        case.publish(
            "ic-a",
            noon(2025, 9, 1),
            copy(CopyRecipient::InterventionCentre, "ic-a")
        )
        .is_err()
    );
}

/// A violent person's case linked to a protection case whose support is `victim-a`.
fn linked() -> Case {
    let mut case = Case::new();
    let t = noon(2025, 9, 1);
    case.step(
        "police-a",
        t,
        Event::IncidentReported(IncidentReported {
            incident_ref: "KRPC-2".into(),
            ..IncidentReported::default()
        }),
    );
    case.step(
        "police-a",
        t,
        Event::EndangeredPersonLinked(EndangeredPersonLinked {
            protection_case_id: "police-a/p1".into(),
            endangered_pseudonym: "police-a/e1".into(),
            role: linked_person::Role::Victim as i32,
            support_agency: "victim-a".into(),
        }),
    );
    case.step(
        "police-a",
        t,
        Event::ReferralMade(ReferralMade {
            referral_id: "r1".into(),
            to_agency: "ngo-a".into(),
            ..ReferralMade::default()
        }),
    );
    case.step(
        "ngo-a",
        t,
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r1".into(),
        }),
    );
    case
}

/// What the programme may publish next, and the consent it may record.
fn programme_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::IntakeCompleted(IntakeCompleted::default())),
        Just(Event::Enrolled(Enrolled {
            programme: "p".into(),
            planned_sessions: 12,
        })),
        Just(Event::SessionAttended(SessionAttended::default())),
        any::<bool>().prop_map(|excused| Event::SessionMissed(SessionMissed {
            excused,
            ..SessionMissed::default()
        })),
        (1..5i32).prop_map(|level| Event::RiskAssessed(RiskAssessed {
            level,
            ..RiskAssessed::default()
        })),
        Just(Event::ConsentGiven(ConsentGiven::default())),
        Just(Event::ConsentWithdrawn(ConsentWithdrawn::default())),
        Just(Event::ProgrammeCompleted(ProgrammeCompleted::default())),
        (0..10i32).prop_map(|code| Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason_code: code,
            ..ProgrammeDroppedOut::default()
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    /// Whatever the violent person's consent says, every intake, drop-out, exclusion,
    /// completion, high risk and run of missed sessions reaches the victim's support.
    #[test]
    fn safety_notices_reach_the_victims_support_whatever_the_consent(
        events in proptest::collection::vec(programme_event(), 1..40),
        threshold in 1u32..4,
    ) {
        let mut case = linked();
        let rules = SafetyRules { missed_in_a_row: threshold, basis: "čl. 6 odst. 1 písm. d) GDPR".into() };
        let mut run = 0u32;
        for event in events {
            let before = case.sequence;
            if case.publish("ngo-a", noon(2025, 9, 2), event.clone()).is_err() {
                continue;
            }
            prop_assert!(case.sequence == before + 1);
            // Counted here from the accepted events, not from the case's own counter.
            let bears = match &event {
                Event::IntakeCompleted(_) | Event::ProgrammeCompleted(_) | Event::ProgrammeDroppedOut(_) => true,
                Event::RiskAssessed(r) => r.level >= RiskLevel::High as i32,
                Event::SessionMissed(m) if !m.excused => { run += 1; run == threshold }
                Event::SessionAttended(_) => { run = 0; false }
                _ => false,
            };
            if bears {
                let id = format!("safety/{}", case.sequence);
                let items = notices(case.view(), &rules);
                let item = items.iter().find(|i| i.item_id == id && i.to_agency == "victim-a");
                prop_assert!(item.is_some(), "no notice {} to victim-a (consent {:?}): {:?}", id, case.view().consent(), items);
                let item = item.expect("checked");
                prop_assert_eq!(item.kind, inbox_item::Kind::SafetyNotice as i32);
                prop_assert_eq!(&item.basis, &rules.basis);
            }
        }
    }

    /// Whatever is published on a protection case, no agency working with the violent
    /// person becomes a party to it: none can ever read where the endangered person is.
    #[test]
    fn a_protection_case_never_reaches_an_agency_working_with_the_violent_person(
        steps in proptest::collection::vec((0..AGENCIES.len(), 0..AGENCIES.len(), 0u8..6), 1..30)
    ) {
        let reg = registry();
        let mut case = Case::new();
        case.step("victim-a", noon(2025, 9, 1), Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
            role: linked_person::Role::Victim as i32,
            age_band: "30-39".into(),
            subject_details: Some(PersonalDetails { address: "Lannova 12, České Budějovice".into(), ..PersonalDetails::default() }),
            shelter: "azylový dům".into(),
            school: String::new(),
        }));
        for (n, (source, to, what)) in steps.into_iter().enumerate() {
            let (source, to) = (AGENCIES[source].0, AGENCIES[to].0.to_string());
            let event = match what {
                0 => Event::ReferralMade(ReferralMade { referral_id: format!("r{n}"), to_agency: to, ..ReferralMade::default() }),
                1 => Event::HandoffRequested(HandoffRequested { handoff_id: format!("h{n}"), to_agency: to, ..HandoffRequested::default() }),
                2 => Event::RiskAlertRaised(RiskAlertRaised { concern: 1, basis: "§ 10".into(), notify: vec![to], ..RiskAlertRaised::default() }),
                3 => Event::ReferralAccepted(ReferralAccepted { referral_id: format!("r{}", n.saturating_sub(1)) }),
                4 => Event::HandoffAccepted(HandoffAccepted { handoff_id: format!("h{}", n.saturating_sub(1)) }),
                _ => Event::ReferralMade(ReferralMade {
                    referral_id: format!("r{n}"),
                    to_agency: "ic-a".into(),
                    participation: Participation::CourtOrdered as i32,
                    report_to_agency: "court-a".into(),
                    ..ReferralMade::default()
                }),
            };
            let _ = case.publish(source, noon(2025, 9, 1), event);
            for party in &case.view().parties {
                let kind = reg.get(&party.agency).map(|a| a.kind);
                prop_assert!(kind.is_some_and(acts_for_endangered), "{} is a party to the protection case", party.agency);
            }
        }
    }
}
