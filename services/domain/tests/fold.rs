//! The case state machine on named scenarios and on random event sequences.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{
    Agency, AgencyKind, Position, Registry, Rejection, Visibility, evolve, visibility,
};
use proptest::prelude::*;

fn registry() -> Registry {
    let a = |id: &str, kind| Agency {
        id: id.into(),
        name: id.into(),
        kind,
    };
    Registry::new([
        a("police", AgencyKind::Police),
        a("ic", AgencyKind::InterventionCentre),
        a("ngo", AgencyKind::ProgrammeProvider),
        a("probation", AgencyKind::Probation),
        a("social", AgencyKind::SocialServices),
        a("audit", AgencyKind::Auditor),
        a("court", AgencyKind::Court),
        a("victim", AgencyKind::VictimSupport),
    ])
    .expect("valid registry")
}

fn uuid7(n: u64) -> String {
    uuid::Builder::from_unix_timestamp_millis(
        1_700_000_000_000 + n,
        &n.to_be_bytes().repeat(2)[..10]
            .try_into()
            .expect("10 bytes"),
    )
    .into_uuid()
    .to_string()
}

fn env(n: u64, source: &str, event: Event) -> Envelope {
    Envelope {
        event_id: uuid7(n),
        source_agency: source.into(),
        case_id: "police/case-1".into(),
        subject_pseudonym: "police/subj-1".into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(
            1_700_000_000_000 + n as i64 * 60_000,
        )),
        schema_version: 1,
        event: Some(event),
        ..Envelope::default()
    }
}

/// Folds events in order, stopping at the first rejection.
fn fold(events: &[Envelope]) -> Result<CaseView, (usize, Rejection)> {
    let reg = registry();
    let mut view: Option<CaseView> = None;
    for (i, e) in events.iter().enumerate() {
        let at = Position {
            sequence: i as u64 + 1,
            recorded_at_ms: 1_700_000_000_000 + i as i64,
        };
        view = Some(evolve(view.as_ref(), e, &reg, at).map_err(|r| (i, r))?);
    }
    view.ok_or((0, Rejection::Invalid("no events".into())))
}

fn referral(id: &str, to: &str) -> Event {
    Event::ReferralMade(ReferralMade {
        referral_id: id.into(),
        to_agency: to.into(),
        ..Default::default()
    })
}

fn lifecycle() -> Vec<Envelope> {
    vec![
        env(
            1,
            "police",
            Event::IncidentReported(IncidentReported {
                incident_ref: "I-1".into(),
                narrative: "n".into(),
                ..Default::default()
            }),
        ),
        env(
            2,
            "police",
            Event::EvictionOrdered(EvictionOrdered {
                incident_ref: "I-1".into(),
                duration_days: 10,
                ..Default::default()
            }),
        ),
        env(3, "police", referral("r1", "ic")),
        env(
            4,
            "ic",
            Event::ReferralAcknowledged(ReferralAcknowledged {
                referral_id: "r1".into(),
            }),
        ),
        env(
            5,
            "ic",
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r1".into(),
            }),
        ),
        env(
            6,
            "ic",
            Event::ContactAttempted(ContactAttempted {
                outcome: ContactOutcome::Reached as i32,
                ..Default::default()
            }),
        ),
        env(7, "ic", referral("r2", "ngo")),
        env(
            8,
            "ngo",
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r2".into(),
            }),
        ),
        env(
            9,
            "ngo",
            Event::ContactAttempted(ContactAttempted {
                outcome: ContactOutcome::NoAnswer as i32,
                ..Default::default()
            }),
        ),
        env(
            10,
            "ngo",
            Event::IntakeCompleted(IntakeCompleted::default()),
        ),
        env(
            11,
            "ngo",
            Event::Enrolled(Enrolled {
                programme: "p".into(),
                planned_sessions: 24,
            }),
        ),
        env(
            12,
            "ngo",
            Event::SessionAttended(SessionAttended {
                session_number: 1,
                ..Default::default()
            }),
        ),
        env(
            13,
            "ngo",
            Event::SessionMissed(SessionMissed {
                session_number: 2,
                ..Default::default()
            }),
        ),
    ]
}

#[test]
fn a_full_lifecycle_ends_enrolled_with_the_provider_holding() {
    let view = fold(&lifecycle()).expect("all accepted");
    assert_eq!(view.status, CaseStatus::Enrolled as i32);
    assert_eq!(view.holder, "ngo");
    assert_eq!(view.version, 13);
    assert_eq!(view.sessions_attended, 1);
    assert_eq!(view.sessions_missed, 1);
    assert_eq!(view.contact_attempts, 2);
    assert_eq!(view.referrals.len(), 2);
    let parties: Vec<&str> = view.parties.iter().map(|p| p.agency.as_str()).collect();
    assert_eq!(parties, vec!["ic", "ngo", "police"]);
    assert!(
        view.parties
            .iter()
            .all(|p| p.visible_until_sequence == 0 && !p.only_asked)
    );
    // first contact was the intervention centre's call at event 6
    assert_eq!(view.first_contact_at, lifecycle()[5].occurred_at);
    assert_eq!(
        view.evictions[0].ends_at.expect("set").seconds
            - view.evictions[0].ordered_at.expect("set").seconds,
        10 * 86_400
    );
}

#[test]
fn a_second_acceptance_of_the_same_handoff_is_rejected() {
    let mut events = lifecycle();
    events.push(env(
        20,
        "ngo",
        Event::HandoffRequested(HandoffRequested {
            handoff_id: "h1".into(),
            to_agency: "probation".into(),
            ..Default::default()
        }),
    ));
    events.push(env(
        21,
        "probation",
        Event::HandoffAccepted(HandoffAccepted {
            handoff_id: "h1".into(),
        }),
    ));
    let view = fold(&events).expect("handoff accepted");
    assert_eq!(view.holder, "probation");
    events.push(env(
        22,
        "probation",
        Event::HandoffAccepted(HandoffAccepted {
            handoff_id: "h1".into(),
        }),
    ));
    let (at, why) = fold(&events).expect_err("second acceptance refused");
    assert_eq!(at, events.len() - 1);
    assert!(
        matches!(why, Rejection::TransitionNotAllowed { .. }),
        "{why}"
    );
}

#[test]
fn each_typed_reason_is_produced() {
    let reg = registry();
    let at = Position {
        sequence: 1,
        recorded_at_ms: 0,
    };
    let first = &lifecycle()[0];
    let case = evolve(None, first, &reg, at).expect("opens");

    // unknown case
    let e = env(
        2,
        "ic",
        Event::ContactAttempted(ContactAttempted::default()),
    );
    assert!(matches!(
        evolve(None, &e, &reg, at),
        Err(Rejection::NoSuchCase { .. })
    ));
    // wrong expected version
    let mut e = env(2, "police", referral("r1", "ic"));
    e.expected_version = Some(0);
    assert!(matches!(
        evolve(Some(&case), &e, &reg, at),
        Err(Rejection::WrongExpectedVersion {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    // transition not allowed: enrol before intake
    let e = env(2, "police", Event::Enrolled(Enrolled::default()));
    assert!(matches!(
        evolve(Some(&case), &e, &reg, at),
        Err(Rejection::KindMayNotPublish { .. })
    ));
    let e = env(2, "police", Event::CaseClosed(CaseClosed::default()));
    let closed = evolve(Some(&case), &e, &reg, at).expect("holder closes");
    let e = env(3, "police", referral("r1", "ic"));
    assert!(matches!(
        evolve(Some(&closed), &e, &reg, at),
        Err(Rejection::TransitionNotAllowed { .. })
    ));
    // not a party
    let e = env(2, "ngo", Event::RiskAssessed(RiskAssessed::default()));
    assert!(matches!(
        evolve(Some(&case), &e, &reg, at),
        Err(Rejection::AgencyNotAParty { .. })
    ));
    // kind may not publish
    let e = env(
        2,
        "ic",
        Event::EvictionOrdered(EvictionOrdered {
            duration_days: 10,
            ..Default::default()
        }),
    );
    assert!(matches!(
        evolve(Some(&case), &e, &reg, at),
        Err(Rejection::KindMayNotPublish { .. })
    ));
    // unknown agency
    let e = env(
        2,
        "nobody",
        Event::IncidentReported(IncidentReported::default()),
    );
    assert!(matches!(
        evolve(None, &e, &reg, at),
        Err(Rejection::UnknownAgency(_))
    ));
    // invalid: not a v7 uuid
    let mut e = env(
        2,
        "police",
        Event::IncidentReported(IncidentReported::default()),
    );
    e.event_id = "00000000-0000-4000-8000-000000000000".into();
    assert!(matches!(
        evolve(None, &e, &reg, at),
        Err(Rejection::Invalid(_))
    ));
    // future schema
    let mut e = env(
        2,
        "police",
        Event::IncidentReported(IncidentReported::default()),
    );
    e.schema_version = 2;
    assert!(matches!(
        evolve(None, &e, &reg, at),
        Err(Rejection::UnsupportedSchemaVersion { found: 2, .. })
    ));
    // referral to an auditor
    let e = env(2, "police", referral("r1", "audit"));
    assert!(matches!(
        evolve(Some(&case), &e, &reg, at),
        Err(Rejection::TransitionNotAllowed { .. })
    ));
}

#[test]
fn an_exclusion_keeps_its_code_through_a_closure_without_one() {
    let mut events = lifecycle()[..8].to_vec();
    events.push(env(
        9,
        "ngo",
        Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason: "threatened a worker".into(),
            reason_code: OutcomeReason::ExcludedViolenceOrThreats as i32,
        }),
    ));
    let view = fold(&events).expect("accepted");
    assert_eq!(view.status, CaseStatus::DroppedOut as i32);
    assert_eq!(
        view.outcome_reason,
        OutcomeReason::ExcludedViolenceOrThreats as i32
    );
    events.push(env(10, "ngo", Event::CaseClosed(CaseClosed::default())));
    let closed = fold(&events).expect("accepted");
    assert_eq!(closed.outcome_reason, view.outcome_reason);
    events.pop();
    events.push(env(
        10,
        "ngo",
        Event::CaseClosed(CaseClosed {
            reason_code: OutcomeReason::MovedOutOfRegion as i32,
            ..Default::default()
        }),
    ));
    let moved = fold(&events).expect("accepted");
    assert_eq!(moved.outcome_reason, OutcomeReason::MovedOutOfRegion as i32);
}

#[test]
fn an_unknown_reason_code_is_refused_in_words() {
    let mut events = lifecycle()[..6].to_vec();
    events.push(env(
        7,
        "ic",
        Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason_code: 99,
            ..Default::default()
        }),
    ));
    match fold(&events) {
        Err((6, Rejection::Invalid(why))) => {
            assert!(why.contains("reason_code 99"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_declined_referral_returns_the_case_and_keeps_the_decliner_a_party() {
    let mut events = lifecycle()[..3].to_vec();
    events.push(env(
        4,
        "ic",
        Event::ReferralDeclined(ReferralDeclined {
            referral_id: "r1".into(),
            reason: "capacity".into(),
            reason_code: OutcomeReason::NoCapacity as i32,
        }),
    ));
    let view = fold(&events).expect("accepted");
    assert_eq!(view.status, CaseStatus::Open as i32);
    assert_eq!(view.holder, "police");
    assert_eq!(
        view.referrals[0].decline_reason_code,
        OutcomeReason::NoCapacity as i32
    );
    let ic = view
        .parties
        .iter()
        .find(|p| p.agency == "ic")
        .expect("the decliner stays a party");
    assert_eq!(
        ic.visible_until_sequence, 4,
        "it sees the case up to its own decline"
    );
    assert_eq!(
        visibility(&view, "ic", AgencyKind::InterventionCentre),
        Visibility::UpTo(4)
    );
    assert_eq!(
        visibility(&view, "ngo", AgencyKind::ProgrammeProvider),
        Visibility::Hidden
    );
    assert_eq!(
        visibility(&view, "audit", AgencyKind::Auditor),
        Visibility::Whole
    );
    assert_eq!(view.referrals[0].state, StepState::Declined as i32);
    // the decliner can no longer act on the case
    events.push(env(
        5,
        "ic",
        Event::ContactAttempted(ContactAttempted::default()),
    ));
    assert!(matches!(
        fold(&events),
        Err((4, Rejection::AgencyNotAParty { .. }))
    ));
}

// ---- properties over random event sequences ----

const AGENCIES: &[&str] = &[
    "police",
    "ic",
    "ngo",
    "probation",
    "social",
    "audit",
    "court",
    "victim",
    "nobody",
];

fn any_event() -> impl Strategy<Value = Event> {
    let id = prop_oneof![
        Just("r1".to_string()),
        Just("r2".to_string()),
        Just("h1".to_string())
    ];
    let agency = proptest::sample::select(AGENCIES).prop_map(String::from);
    prop_oneof![
        Just(Event::IncidentReported(IncidentReported::default())),
        Just(Event::EvictionOrdered(EvictionOrdered {
            duration_days: 10,
            ..Default::default()
        })),
        (id.clone(), agency.clone()).prop_map(|(i, a)| referral(&i, &a)),
        id.clone()
            .prop_map(|i| Event::ReferralAcknowledged(ReferralAcknowledged { referral_id: i })),
        id.clone()
            .prop_map(|i| Event::ReferralAccepted(ReferralAccepted { referral_id: i })),
        (id.clone(), 0..10i32).prop_map(|(i, code)| Event::ReferralDeclined(ReferralDeclined {
            referral_id: i,
            reason: String::new(),
            reason_code: code,
        })),
        (0..5i32).prop_map(|o| Event::ContactAttempted(ContactAttempted {
            outcome: o,
            ..Default::default()
        })),
        Just(Event::IntakeCompleted(IntakeCompleted::default())),
        Just(Event::Enrolled(Enrolled::default())),
        Just(Event::SessionAttended(SessionAttended::default())),
        Just(Event::SessionMissed(SessionMissed::default())),
        (0..5i32).prop_map(|l| Event::RiskAssessed(RiskAssessed {
            level: l,
            ..Default::default()
        })),
        (id.clone(), agency).prop_map(|(i, a)| Event::HandoffRequested(HandoffRequested {
            handoff_id: i,
            to_agency: a,
            reason: String::new()
        })),
        id.clone()
            .prop_map(|i| Event::HandoffAccepted(HandoffAccepted { handoff_id: i })),
        (id, 0..10i32).prop_map(|(i, code)| Event::HandoffDeclined(HandoffDeclined {
            handoff_id: i,
            reason: String::new(),
            reason_code: code,
        })),
        Just(Event::ConsentGiven(ConsentGiven::default())),
        Just(Event::ConsentWithdrawn(ConsentWithdrawn::default())),
        Just(Event::ProgrammeCompleted(ProgrammeCompleted::default())),
        (0..10i32).prop_map(|code| Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason_code: code,
            ..Default::default()
        })),
        (0..10i32).prop_map(|code| Event::CaseClosed(CaseClosed {
            reason_code: code,
            ..Default::default()
        })),
        statutory_event(),
    ]
}

/// The events of issue 16: an eviction's statutory path, safety, reports.
fn statutory_event() -> impl Strategy<Value = Event> {
    let agency = proptest::sample::select(AGENCIES).prop_map(String::from);
    prop_oneof![
        (0..4i32, agency.clone()).prop_map(|(r, a)| Event::EvictionCopySent(EvictionCopySent {
            recipient: r,
            to_agency: a,
            ..Default::default()
        })),
        Just(Event::EvictionCopyReceived(EvictionCopyReceived::default())),
        Just(Event::VictimHelpOffered(VictimHelpOffered::default())),
        any::<bool>().prop_map(|kept| Event::EvictionComplianceChecked(
            EvictionComplianceChecked {
                kept,
                ..Default::default()
            }
        )),
        Just(Event::EvictionBreached(EvictionBreached::default())),
        (0..4i32).prop_map(|stage| Event::EvictionObjection(EvictionObjection {
            stage,
            ..Default::default()
        })),
        Just(Event::EvictionEndedEarly(EvictionEndedEarly::default())),
        (0..7i32).prop_map(|stage| Event::PreliminaryMeasure(PreliminaryMeasure {
            stage,
            until: Some(handoff_contract::time::from_unix_ms(1_702_000_000_000)),
            ..Default::default()
        })),
        (agency.clone(), 0..5i32).prop_map(|(a, report)| Event::ComplianceReported(
            ComplianceReported {
                to_agency: a,
                report,
                ..Default::default()
            }
        )),
        (agency.clone(), 0..3i32).prop_map(|(a, concern)| Event::RiskAlertRaised(
            RiskAlertRaised {
                concern,
                basis: "§ 10".into(),
                notify: vec![a],
                ..Default::default()
            }
        )),
        (0..4i32).prop_map(
            |role| Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
                role,
                shelter: "azylový dům".into(),
                ..Default::default()
            })
        ),
        (agency, 1..3i32).prop_map(|(a, role)| Event::EndangeredPersonLinked(
            EndangeredPersonLinked {
                protection_case_id: "ic/p1".into(),
                endangered_pseudonym: "ic/e1".into(),
                role,
                support_agency: a,
            }
        )),
        (0..3u64).prop_map(|s| Event::NoticeAcknowledged(NoticeAcknowledged {
            notice_id: format!("safety/{s}"),
        })),
    ]
}

fn any_sequence() -> impl Strategy<Value = Vec<Envelope>> {
    proptest::collection::vec(
        (
            proptest::sample::select(AGENCIES),
            any_event(),
            proptest::option::of(0u64..6),
        ),
        1..60,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, (src, ev, expected))| {
                let mut e = env(i as u64 + 1, src, ev);
                e.expected_version = expected;
                e
            })
            .collect()
    })
}

/// Applies what is accepted, skipping what is rejected, as ingest does.
fn run(events: &[Envelope]) -> Vec<Option<CaseView>> {
    let reg = registry();
    let mut view: Option<CaseView> = None;
    let mut seq = 0;
    let mut out = Vec::new();
    for e in events {
        let at = Position {
            sequence: seq + 1,
            recorded_at_ms: seq as i64,
        };
        match evolve(view.as_ref(), e, &reg, at) {
            Ok(v) => {
                seq += 1;
                view = Some(v);
                out.push(view.clone());
            }
            Err(_) => out.push(None),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn folding_is_deterministic(events in any_sequence()) {
        prop_assert_eq!(run(&events), run(&events));
    }

    #[test]
    fn versions_are_dense(events in any_sequence()) {
        let accepted: Vec<CaseView> = run(&events).into_iter().flatten().collect();
        for (i, v) in accepted.iter().enumerate() {
            prop_assert_eq!(v.version, i as u64 + 1);
            prop_assert_eq!(v.last_sequence, i as u64 + 1);
        }
    }

    #[test]
    fn exactly_one_holder_and_it_is_a_party(events in any_sequence()) {
        for v in run(&events).into_iter().flatten() {
            prop_assert!(!v.holder.is_empty());
            let holder = v.parties.iter().find(|p| p.agency == v.holder);
            prop_assert!(holder.is_some_and(|p| p.visible_until_sequence == 0 && !p.only_asked), "holder {} not a full party in {:?}", v.holder, v.parties);
            let open: Vec<_> = v.referrals.iter().filter(|r| r.state == StepState::Pending as i32 || r.state == StepState::Acknowledged as i32).collect();
            prop_assert!(open.len() <= 1, "more than one open referral");
            prop_assert_eq!(open.len() == 1, v.status == CaseStatus::Referred as i32);
        }
    }

    #[test]
    fn holders_change_only_by_acceptance(events in any_sequence()) {
        let reg = registry();
        let mut view: Option<CaseView> = None;
        for (i, e) in events.iter().enumerate() {
            let at = Position { sequence: i as u64 + 1, recorded_at_ms: 0 };
            if let Ok(next) = evolve(view.as_ref(), e, &reg, at) {
                if let Some(prev) = &view && prev.holder != next.holder {
                    let is_acceptance = matches!(e.event, Some(Event::ReferralAccepted(_) | Event::HandoffAccepted(_)));
                    prop_assert!(is_acceptance, "holder moved on {:?}", e.event);
                    prop_assert_eq!(&next.holder, &e.source_agency);
                }
                view = Some(next);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random scenarios, every agency as caller: a case is visible only to agencies that
    /// published into it or were addressed by it, and a limited view never reaches past
    /// the caller's own decline.
    #[test]
    fn only_agencies_with_a_part_see_a_case(events in any_sequence()) {
        let reg = registry();
        let mut view: Option<CaseView> = None;
        let mut involved: std::collections::BTreeSet<String> = Default::default();
        let mut seq = 0u64;
        for e in &events {
            let at = Position { sequence: seq + 1, recorded_at_ms: 0 };
            if let Ok(next) = evolve(view.as_ref(), e, &reg, at) {
                seq += 1;
                involved.insert(e.source_agency.clone());
                match &e.event {
                    Some(Event::ReferralMade(r)) => { involved.insert(r.to_agency.clone()); }
                    Some(Event::HandoffRequested(h)) => { involved.insert(h.to_agency.clone()); }
                    Some(Event::EvictionCopySent(c)) => { involved.insert(c.to_agency.clone()); }
                    Some(Event::RiskAlertRaised(a)) => { involved.extend(a.notify.iter().cloned()); }
                    Some(Event::EndangeredPersonLinked(l)) => { involved.insert(l.support_agency.clone()); }
                    _ => {}
                }
                // A referral that names whom to report to makes that court or probation a party.
                if !next.reports_to.is_empty() { involved.insert(next.reports_to.clone()); }
                view = Some(next);
            }
        }
        let Some(view) = view else { return Ok(()) };
        for caller in AGENCIES {
            let kind = reg.get(caller).map(|a| a.kind).unwrap_or(AgencyKind::Police);
            match visibility(&view, caller, kind) {
                Visibility::Hidden => prop_assert!(!involved.contains(*caller), "{caller} took part but cannot see the case"),
                Visibility::Whole => prop_assert!(kind == AgencyKind::Auditor || involved.contains(*caller), "{caller} sees a case it has no part in"),
                Visibility::UpTo(limit) => {
                    prop_assert!(involved.contains(*caller));
                    prop_assert!(limit <= view.last_sequence);
                    prop_assert!(*caller != view.holder, "the holder's view is limited");
                }
            }
        }
    }
}

fn any_grant() -> impl Strategy<Value = (Vec<handoff_domain::policy::FieldGroup>, bool)> {
    (
        proptest::sample::subsequence(
            handoff_domain::policy::FieldGroup::ALL.to_vec(),
            0..=handoff_domain::policy::FieldGroup::ALL.len(),
        ),
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random scenarios, random field policies, every kind of caller, consent given or
    /// withdrawn: no field of a withheld group survives redaction, in the case or its events.
    #[test]
    fn no_response_contains_a_field_the_policy_denies(events in any_sequence(), (granted, withdrawn) in any_grant(), keep in any_grant()) {
        use handoff_domain::policy::{FieldGroup as G, FieldPolicy};
        let reg = registry();
        let mut view: Option<CaseView> = None;
        let mut accepted = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let mut e = e.clone();
            if let Some(Event::IncidentReported(inc)) = &mut e.event {
                inc.narrative = "narrative".into();
                inc.subject_details = Some(PersonalDetails { full_name: "N".into(), date_of_birth: "D".into(), phone: "P".into(), address: "A".into() });
            }
            if let Ok(next) = evolve(view.as_ref(), &e, &reg, Position { sequence: i as u64 + 1, recorded_at_ms: 0 }) {
                view = Some(next);
                accepted.push(e);
            }
        }
        let Some(mut view) = view else { return Ok(()) };
        if withdrawn { view.consent = ConsentState::Withdrawn as i32; }
        for kind in AgencyKind::ALL {
            let policy = FieldPolicy::new([(kind, granted.clone())], keep.0.clone());
            let grant = policy.grant(kind, view.consent(), handoff_domain::policy::Side::of(&view));
            let mut shown = view.clone();
            grant.redact_case(&mut shown);
            let details = shown.subject_details.clone().unwrap_or_default();
            if !grant.allows(G::Incidents) { prop_assert!(shown.incidents.is_empty()); }
            if !grant.allows(G::Evictions) { prop_assert!(shown.evictions.is_empty()); }
            if !grant.allows(G::PersonalDetails) { prop_assert!(details.full_name.is_empty() && details.date_of_birth.is_empty()); }
            if !grant.allows(G::ContactDetails) { prop_assert!(details.phone.is_empty() && details.address.is_empty()); }
            if !grant.allows(G::Attendance) { prop_assert_eq!((shown.sessions_attended, shown.sessions_missed), (0, 0)); }
            if !grant.allows(G::Risk) { prop_assert_eq!(shown.risk_level, 0); }
            if !grant.allows(G::Engagement) { prop_assert!(shown.first_contact_at.is_none() && shown.contact_attempts == 0); }
            if !grant.allows(G::Notes) { prop_assert!(shown.outcome_note.is_empty()); }
            if !grant.allows(G::Reasons) { prop_assert!(shown.referrals.iter().all(|r| r.reason.is_empty() && r.decline_reason.is_empty())); }
            if withdrawn && kind != AgencyKind::Auditor {
                for g in G::ALL { prop_assert!(!grant.allows(g) || (granted.contains(&g) && keep.0.contains(&g))); }
            }
            for e in &accepted {
                let mut e = e.clone();
                grant.redact_event(&mut e);
                if let Some(Event::IncidentReported(inc)) = &e.event {
                    let d = inc.subject_details.clone().unwrap_or_default();
                    if !grant.allows(G::Incidents) { prop_assert!(inc.narrative.is_empty()); }
                    if !grant.allows(G::PersonalDetails) { prop_assert!(d.full_name.is_empty()); }
                    if !grant.allows(G::ContactDetails) { prop_assert!(d.phone.is_empty() && d.address.is_empty()); }
                }
            }
        }
    }
}
