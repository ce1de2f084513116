//! Random multi-agency scenarios: honest agencies driving plausible case
//! lifecycles, and one adversary publishing arbitrary events built from
//! everything the scenario has shown so far (every case id, pseudonym, event id,
//! referral and handoff id, and fresh ones).

use handoff_contract::names::EVENT_TYPES;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{AgencyKind, Target, may_write, target};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;

use super::{AGENCIES, Model, envelope, uuid7};

/// What an honest agency does next, read against the state when it acts: the
/// kind of step picks who may take it (the holder for casework, the addressee for
/// an answer), so lifecycles get somewhere.
#[derive(Debug, Clone)]
pub struct Honest {
    /// Which agency opens a case or lists a service.
    pub agency: Index,
    /// Which kind of step (open, refer, answer, casework, handoff, close, list, erase).
    pub action: u8,
    /// Which case or referral it acts on.
    pub pick: Index,
    /// Whom it refers or hands off to.
    pub to: Index,
    /// Small choices (outcome of a contact, whether to state the expected version, …).
    pub flag: u8,
}

/// An arbitrary event of the adversary, its fields drawn from what was seen.
#[derive(Debug, Clone)]
pub struct Attack {
    /// The event type, an index into `EVENT_TYPES` (or into the types its kind may
    /// publish, by `modes.1`).
    pub ty: usize,
    /// The case id, from every case of the log and fresh ids under every agency.
    pub case: Index,
    /// The pseudonym, from every subject and fresh ones under every agency.
    pub subject: Index,
    /// 0-4: the named case's own subject (for a new case 0-1: one of its own, 2-4:
    /// from the pool); 5: empty; 6: from the pool; 7: the pool,
    /// kept even on events that must not name one.
    pub subject_mode: u8,
    /// The event id, from every id in the log (others' included).
    pub id: Index,
    /// 0-3: fresh; 4-5: one seen in the log; 6: one of its own; 7: not a UUID.
    pub id_mode: u8,
    /// Referral, handoff or service id, from every one seen.
    pub step_id: Index,
    /// The addressee, revoked or reinstated agency.
    pub to: Index,
    /// `Some((true, _))`: the named case's version; `Some((false, v))`: `v`.
    pub version: Option<(bool, u64)>,
    /// (case: 0 one it may write, 1 one it is a party to, 2 a new one under its own
    /// id, 3 any; type: 0-2 one its
    /// kind may publish, else any; 0: schema version 2; personal details).
    pub modes: (u8, u8, u8, bool),
}

/// One step of a scenario.
#[derive(Debug, Clone)]
pub enum Step {
    /// An honest agency acts.
    Honest(Honest),
    /// The adversary publishes.
    Attack(Attack),
    /// The adversary publishes first with the event id the honest step will use.
    Preempt(Attack, Honest),
    /// The exchange revokes (0), reinstates (1) or erases a subject everywhere.
    Exchange(u8, Index),
}

prop_compose! {
    fn honest()(agency in any::<Index>(), action in any::<u8>(), pick in any::<Index>(),
                to in any::<Index>(), flag in any::<u8>()) -> Honest {
        Honest { agency, action, pick, to, flag }
    }
}

prop_compose! {
    fn attack()(ty in 0..EVENT_TYPES.len(), case in any::<Index>(), subject in any::<Index>(),
                subject_mode in 0u8..8, id in any::<Index>(), id_mode in 0u8..8,
                step_id in any::<Index>(), to in any::<Index>(),
                version in proptest::option::of((any::<bool>(), 0u64..4)),
                modes in (0u8..4, 0u8..4, 0u8..32, any::<bool>())) -> Attack {
        Attack { ty, case, subject, subject_mode, id, id_mode, step_id, to, version, modes }
    }
}

/// Any step, honest ones most often (a log needs cases before they can be attacked).
pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => honest().prop_map(Step::Honest),
        5 => attack().prop_map(Step::Attack),
        2 => (attack(), honest()).prop_map(|(a, h)| Step::Preempt(a, h)),
        1 => (any::<u8>(), any::<Index>()).prop_map(|(k, i)| Step::Exchange(k, i)),
    ]
}

/// A scenario: which agency is the adversary, and the steps.
pub fn scenario() -> impl Strategy<Value = (usize, Vec<Step>)> {
    (0..AGENCIES.len(), proptest::collection::vec(step(), 1..64))
}

fn pick<'a, T>(items: &'a [T], index: &Index) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[index.index(items.len())])
}

fn status(view: &CaseView) -> CaseStatus {
    CaseStatus::try_from(view.status).unwrap_or(CaseStatus::Unspecified)
}

fn details() -> Option<PersonalDetails> {
    Some(PersonalDetails {
        full_name: "A. Person".into(),
        date_of_birth: "1980-01-01".into(),
        ..PersonalDetails::default()
    })
}

fn kind_of(agency: &str) -> AgencyKind {
    AGENCIES
        .iter()
        .find(|(a, _)| *a == agency)
        .map_or(AgencyKind::Coordinator, |(_, k)| *k)
}

/// The event an honest agency publishes next, as event `n` of the scenario
/// (`skip`: an agency that does not act now).
pub fn honest_envelope(m: &Model, s: &Honest, skip: Option<&str>, n: u64) -> Envelope {
    let id = uuid7(n);
    let acting = |a: &str| Some(a) != skip;
    let live = |v: &&CaseView| status(v) != CaseStatus::Closed;
    // Cases with their holder, for the holder's steps.
    let held: Vec<(&str, &CaseView)> = m
        .cases
        .values()
        .filter(live)
        .filter(|v| acting(&v.holder))
        .map(|v| (v.holder.as_str(), v))
        .collect();
    let referrals: Vec<(&str, &CaseView, &str)> = m
        .cases
        .values()
        .filter(live)
        .flat_map(|v| v.referrals.iter().map(move |r| (v, r)))
        .filter(|(_, r)| {
            acting(&r.to_agency)
                && matches!(
                    StepState::try_from(r.state),
                    Ok(StepState::Pending | StepState::Acknowledged)
                )
        })
        .map(|(v, r)| (r.to_agency.as_str(), v, r.referral_id.as_str()))
        .collect();
    let handoffs: Vec<(&str, &CaseView, &str)> = m
        .cases
        .values()
        .filter(live)
        .filter_map(|v| {
            let p = v.pending_handoff.as_ref()?;
            acting(&p.to_agency).then_some((p.to_agency.as_str(), v, p.handoff_id.as_str()))
        })
        .collect();
    let parts: Vec<(&str, &CaseView)> = m
        .cases
        .values()
        .flat_map(|v| v.parties.iter().map(move |p| (p.agency.as_str(), v)))
        .filter(|(a, v)| acting(a) && may_write(v, a))
        .collect();
    // Agencies that publish at all open cases and list services.
    let publishers: Vec<&str> = AGENCIES
        .iter()
        .filter(|(a, k)| k.may_publish("referral_made") && acting(a))
        .map(|(a, _)| *a)
        .collect();
    let opener = publishers[s.agency.index(publishers.len())];
    let to_for = |agency: &str| {
        let takers: Vec<&str> = AGENCIES
            .iter()
            .filter(|(a, k)| k.may_take_cases() && *a != agency)
            .map(|(a, _)| *a)
            .collect();
        // The programme provider half the time: most referrals lead there.
        match s.to.index(2 * takers.len()) {
            i if i < takers.len() => takers[i].to_string(),
            _ if agency != "ngo-a" => "ngo-a".to_string(),
            _ => takers[0].to_string(),
        }
    };
    let flag = s.flag;
    let on = |agency: &str, v: &CaseView, event: Event| {
        let mut e = envelope(id.clone(), agency, &v.case_id, &v.subject_pseudonym, event);
        if flag & 0x10 != 0 {
            e.expected_version = Some(v.version);
        }
        e
    };
    let police_held: Vec<(&str, &CaseView)> = held
        .iter()
        .filter(|(a, _)| kind_of(a) == AgencyKind::Police)
        .copied()
        .collect();
    // Cases with an eviction, with each party that may write to them.
    let evicted: Vec<(&str, &CaseView)> = parts
        .iter()
        .filter(|(_, v)| !v.evictions.is_empty())
        .copied()
        .collect();
    // Notices waiting, with their addressee.
    let rules = handoff_domain::safety::SafetyRules::default();
    let notices: Vec<(String, &CaseView, String)> = m
        .cases
        .values()
        .filter(live)
        .flat_map(|v| {
            handoff_domain::safety::notices(v, &rules)
                .into_iter()
                .map(move |i| (i.to_agency, v, i.item_id))
        })
        .filter(|(a, _, _)| acting(a))
        .collect();
    match s.action % 20 {
        16 if !evicted.is_empty() => {
            let (a, v) = *pick(&evicted, &s.pick).expect("non-empty");
            on(a, v, eviction_step(v, kind_of(a), flag))
        }
        17 => {
            let protectors: Vec<&str> = AGENCIES
                .iter()
                .filter(|(a, k)| k.may_publish("endangered_person_recorded") && acting(a))
                .map(|(a, _)| *a)
                .collect();
            // Mostly one that already works a case it could link.
            let linkers: Vec<&str> = protectors
                .iter()
                .copied()
                .filter(|a| {
                    parts
                        .iter()
                        .any(|(p, v)| p == a && v.protected_person.is_none())
                })
                .collect();
            let a = match pick(&linkers, &s.agency) {
                Some(a) if !flag.is_multiple_of(4) => *a,
                _ => protectors[s.agency.index(protectors.len())],
            };
            let writable = |protection: bool| -> Vec<&CaseView> {
                parts
                    .iter()
                    .filter(|(p, v)| *p == a && v.protected_person.is_some() == protection)
                    .map(|(_, v)| *v)
                    .collect()
            };
            let (theirs, protection) = (writable(false), writable(true));
            match (pick(&theirs, &s.pick), pick(&protection, &s.to)) {
                (Some(v), Some(p)) if !flag.is_multiple_of(4) => on(
                    a,
                    v,
                    Event::EndangeredPersonLinked(EndangeredPersonLinked {
                        protection_case_id: p.case_id.clone(),
                        endangered_pseudonym: p.subject_pseudonym.clone(),
                        role: linked_person::Role::Victim as i32,
                        support_agency: if flag % 4 == 1 { "ic-a" } else { "victim-a" }.into(),
                    }),
                ),
                _ => envelope(
                    id,
                    a,
                    &format!("{a}/p{n}"),
                    &format!("{a}/e{}", flag % 3),
                    Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
                        role: linked_person::Role::Victim as i32,
                        age_band: "30-39".into(),
                        subject_details: details(),
                        shelter: "azylový dům".into(),
                        school: String::new(),
                    }),
                ),
            }
        }
        18 if !parts.is_empty() => {
            let (a, v) = *pick(&parts, &s.pick).expect("non-empty");
            on(
                a,
                v,
                Event::RiskAlertRaised(RiskAlertRaised {
                    concern: 1 + i32::from(flag % 2),
                    basis: "§ 10 zákona č. 359/1999 Sb.".into(),
                    notify: vec!["police-b".into()],
                    note: "threats".into(),
                }),
            )
        }
        19 if !notices.is_empty() && flag.is_multiple_of(2) => {
            let (a, v, notice_id) = pick(&notices, &s.pick).expect("non-empty");
            on(
                a,
                v,
                Event::NoticeAcknowledged(NoticeAcknowledged {
                    notice_id: notice_id.clone(),
                }),
            )
        }
        19 if !held.is_empty() => {
            let (a, v) = *pick(&held, &s.pick).expect("non-empty");
            let event = Event::ComplianceReported(ComplianceReported {
                to_agency: if v.reports_to.is_empty() {
                    "court-a".into()
                } else {
                    v.reports_to.clone()
                },
                report: 1 + i32::from(flag % 4),
                sessions_attended: v.sessions_attended,
                sessions_missed: v.sessions_missed,
                note: "report".into(),
            });
            on(a, v, event)
        }
        2 if !police_held.is_empty() => {
            let (a, v) = *pick(&police_held, &s.pick).expect("non-empty");
            on(a, v, eviction(n))
        }
        3 | 4 if !held.is_empty() => {
            let (a, v) = *pick(&held, &s.pick).expect("non-empty");
            let mut event = referral(n, &to_for(a));
            if let Event::ReferralMade(r) = &mut event
                && flag.is_multiple_of(4)
            {
                // Court-ordered, reporting to the court.
                r.participation = Participation::CourtOrdered as i32;
                r.report_to_agency = "court-a".into();
            }
            on(a, v, event)
        }
        5 | 6 if !referrals.is_empty() => {
            let (a, v, r) = *pick(&referrals, &s.pick).expect("non-empty");
            let referral_id = r.to_string();
            let event = match flag % 5 {
                0 => Event::ReferralAcknowledged(ReferralAcknowledged { referral_id }),
                4 => Event::ReferralDeclined(ReferralDeclined {
                    referral_id,
                    reason: "no capacity".into(),
                    reason_code: i32::from(flag % 10),
                }),
                _ => Event::ReferralAccepted(ReferralAccepted { referral_id }),
            };
            on(a, v, event)
        }
        7..=10 if !held.is_empty() => {
            // Half the time the case furthest along, so some lifecycles end.
            let furthest = held
                .iter()
                .filter(|(_, v)| v.status < CaseStatus::Completed as i32)
                .max_by_key(|(_, v)| (v.status, v.version));
            let (a, v) = match furthest {
                Some(far) if s.action % 16 >= 9 => *far,
                _ => *pick(&held, &s.pick).expect("non-empty"),
            };
            on(a, v, casework(v, kind_of(a), flag))
        }
        11 if !held.is_empty() => {
            let (a, v) = *pick(&held, &s.pick).expect("non-empty");
            let event = Event::HandoffRequested(HandoffRequested {
                handoff_id: format!("h{n}"),
                to_agency: to_for(a),
                reason: "moved".into(),
            });
            on(a, v, event)
        }
        12 if !handoffs.is_empty() => {
            let (a, v, h) = *pick(&handoffs, &s.pick).expect("non-empty");
            let handoff_id = h.to_string();
            let event = if flag % 4 == 3 {
                Event::HandoffDeclined(HandoffDeclined {
                    handoff_id,
                    reason: "no".into(),
                    reason_code: i32::from(flag % 10),
                })
            } else {
                Event::HandoffAccepted(HandoffAccepted { handoff_id })
            };
            on(a, v, event)
        }
        13 if !held.is_empty() => {
            let (a, v) = *pick(&held, &s.pick).expect("non-empty");
            let event = Event::CaseClosed(CaseClosed {
                reason: "done".into(),
                reason_code: i32::from(flag % 10),
            });
            on(a, v, event)
        }
        14 => {
            let service_id = format!("svc-{}", flag % 3);
            let event = if flag % 4 == 3 {
                Event::ServiceWithdrawn(ServiceWithdrawn {
                    service_id,
                    reason: "ended".into(),
                })
            } else {
                Event::ServiceOffered(offer(service_id))
            };
            envelope(id, opener, "", "", event)
        }
        15 if !parts.is_empty() => {
            let (a, v) = *pick(&parts, &s.pick).expect("non-empty");
            let event = Event::SubjectErasureRequested(SubjectErasureRequested {
                reason: "art. 17 request".into(),
                requested_by: "dpo".into(),
            });
            on(a, v, event)
        }
        _ => {
            // Open a case under its own id, about its own subject or one it knows.
            let known: Vec<&String> = m
                .subjects
                .keys()
                .filter(|subject| m.knows(opener, subject))
                .collect();
            let subject = match pick(&known, &s.pick) {
                Some(subject) if flag.is_multiple_of(3) => (*subject).clone(),
                _ => format!("{opener}/s{}", flag % 3),
            };
            let event = match kind_of(opener) {
                AgencyKind::Police if flag.is_multiple_of(2) => incident(n),
                AgencyKind::Police => eviction(n),
                _ => referral(n, &to_for(opener)),
            };
            let mut e = envelope(id, opener, &format!("{opener}/c{n}"), &subject, event);
            if flag & 0x10 != 0 {
                e.expected_version = Some(0);
            }
            e
        }
    }
}

/// The next step of an eviction's statutory path an agency of `kind` may take.
fn eviction_step(v: &CaseView, kind: AgencyKind, flag: u8) -> Event {
    use preliminary_measure::Stage;
    match kind {
        AgencyKind::Police => match flag % 7 {
            0 => copy(CopyRecipient::InterventionCentre, "ic-a"),
            1 => copy(CopyRecipient::ChildProtection, "social-a"),
            2 => copy(CopyRecipient::Court, "court-a"),
            3 => Event::EvictionComplianceChecked(EvictionComplianceChecked {
                kept: flag.is_multiple_of(2),
                note: "checked".into(),
                ..EvictionComplianceChecked::default()
            }),
            4 => Event::EvictionBreached(EvictionBreached {
                offence_ref: format!("P{flag}"),
                narrative: "came back".into(),
                ..EvictionBreached::default()
            }),
            5 => Event::EvictionObjection(EvictionObjection {
                stage: 1 + i32::from(flag % 3),
                ..EvictionObjection::default()
            }),
            _ => Event::EvictionEndedEarly(EvictionEndedEarly {
                reason: "objection upheld".into(),
                ..EvictionEndedEarly::default()
            }),
        },
        AgencyKind::Court => {
            // Mostly the step the measure's state allows next.
            let measure = v.evictions.last().and_then(|e| e.measure.as_ref());
            let stage = match measure {
                _ if flag % 5 == 4 => Stage::Ended,
                None => Stage::Petitioned,
                Some(m) if m.decided_at.is_none() || m.extension_pending => {
                    [Stage::Granted, Stage::Granted, Stage::Refused][usize::from(flag % 3)]
                }
                Some(_) => [Stage::ExtensionPetitioned, Stage::Extended][usize::from(flag % 2)],
            };
            Event::PreliminaryMeasure(PreliminaryMeasure {
                stage: stage as i32,
                until: Some(handoff_contract::time::from_unix_ms(1_702_000_000_000)),
                ..PreliminaryMeasure::default()
            })
        }
        AgencyKind::InterventionCentre | AgencyKind::VictimSupport if flag.is_multiple_of(2) => {
            Event::VictimHelpOffered(VictimHelpOffered {
                outcome: ContactOutcome::Reached as i32,
                note: "offered".into(),
                ..VictimHelpOffered::default()
            })
        }
        _ => Event::EvictionCopyReceived(EvictionCopyReceived::default()),
    }
}

fn copy(recipient: CopyRecipient, to: &str) -> Event {
    Event::EvictionCopySent(EvictionCopySent {
        incident_ref: String::new(),
        recipient: recipient as i32,
        to_agency: to.into(),
    })
}

fn incident(n: u64) -> Event {
    Event::IncidentReported(IncidentReported {
        incident_ref: format!("I{n}"),
        narrative: "recorded".into(),
        area: "north".into(),
        linked_persons: vec![LinkedPerson {
            role: linked_person::Role::Child as i32,
            age_band: "5-9".into(),
        }],
        subject_details: details(),
    })
}

fn eviction(n: u64) -> Event {
    Event::EvictionOrdered(EvictionOrdered {
        incident_ref: format!("I{n}"),
        duration_days: 14,
        ..EvictionOrdered::default()
    })
}

fn referral(n: u64, to: &str) -> Event {
    Event::ReferralMade(ReferralMade {
        referral_id: format!("r{n}"),
        to_agency: to.into(),
        reason: "programme".into(),
        subject_details: details(),
        ..ReferralMade::default()
    })
}

fn offer(service_id: String) -> ServiceOffered {
    ServiceOffered {
        service_id,
        name: "Programme".into(),
        email: "info@example.org".into(),
        areas: vec!["north".into()],
        ..ServiceOffered::default()
    }
}

/// The holder's next step of work on a case, by its status.
fn casework(v: &CaseView, kind: AgencyKind, flag: u8) -> Event {
    if flag % 7 == 6 {
        return Event::ConsentGiven(ConsentGiven {
            scope: "all".into(),
        });
    }
    match status(v) {
        CaseStatus::InContact | CaseStatus::Accepted
            if kind == AgencyKind::ProgrammeProvider && flag.is_multiple_of(2) =>
        {
            Event::IntakeCompleted(IntakeCompleted::default())
        }
        CaseStatus::Open | CaseStatus::Accepted => Event::ContactAttempted(ContactAttempted {
            outcome: if flag.is_multiple_of(3) {
                ContactOutcome::NoAnswer
            } else {
                ContactOutcome::Reached
            } as i32,
            ..ContactAttempted::default()
        }),
        CaseStatus::Intake => Event::Enrolled(Enrolled {
            programme: "p".into(),
            planned_sessions: 12,
        }),
        CaseStatus::Enrolled => match flag % 5 {
            0 | 1 => Event::SessionAttended(SessionAttended {
                session_number: 1,
                ..SessionAttended::default()
            }),
            2 => Event::SessionMissed(SessionMissed::default()),
            3 => Event::ProgrammeCompleted(ProgrammeCompleted::default()),
            _ => Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "stopped".into(),
                reason_code: i32::from(flag % 10),
            }),
        },
        _ if flag.is_multiple_of(2) => Event::ConsentWithdrawn(ConsentWithdrawn::default()),
        _ => Event::RiskAssessed(RiskAssessed {
            level: RiskLevel::High as i32,
            instrument: "ODARA".into(),
            ..RiskAssessed::default()
        }),
    }
}

/// The adversary's event `n`; `forced_id` overrides its event id.
pub fn attack_envelope(
    m: &Model,
    adversary: &str,
    a: &Attack,
    n: u64,
    forced_id: Option<String>,
) -> Envelope {
    use std::collections::BTreeSet;
    let (case_mode, ty_mode, schema, with_details) = a.modes;
    let mut cases: BTreeSet<String> = m.cases.keys().cloned().collect();
    let mut subjects: BTreeSet<String> = m.subjects.keys().cloned().collect();
    for (agency, _) in AGENCIES {
        cases.insert(format!("{agency}/k"));
        for i in 0..3 {
            subjects.insert(format!("{agency}/s{i}"));
        }
    }
    let cases: Vec<String> = cases.into_iter().collect();
    let subjects: Vec<String> = subjects.into_iter().collect();
    let part = |v: &CaseView| v.parties.iter().any(|p| p.agency == adversary);
    let nearer: Vec<&String> = m
        .cases
        .values()
        .filter(|v| match case_mode {
            0 => may_write(v, adversary),
            _ => part(v),
        })
        .map(|v| &v.case_id)
        .collect();
    let case_id = match pick(&nearer, &a.case) {
        Some(id) if case_mode < 2 => (*id).clone(),
        _ if case_mode == 2 => format!("{adversary}/k{n}"),
        _ => pick(&cases, &a.case).expect("non-empty").clone(),
    };
    let case = m.cases.get(&case_id);
    let subject = match (a.subject_mode, case) {
        (0..=4, Some(v)) => v.subject_pseudonym.clone(),
        (0..=1, None) => format!("{adversary}/s{}", a.subject.index(3)),
        (5, _) => String::new(),
        _ => pick(&subjects, &a.subject).expect("non-empty").clone(),
    };
    let ids: Vec<&String> = m.events.keys().map(|(_, id)| id).collect();
    let own: Vec<&String> = m
        .events
        .keys()
        .filter(|(agency, _)| agency == adversary)
        .map(|(_, id)| id)
        .collect();
    if a.id_mode == 6
        && forced_id.is_none()
        && a.id.index(2) == 0
        && let Some(((_, _), logged)) = m
            .events
            .iter()
            .filter(|((agency, _), _)| agency == adversary)
            .nth(a.step_id.index(own.len().max(1)))
    {
        // Its own event again, as logged: a repeat.
        return Envelope::decode(logged.as_slice()).expect("logged envelopes decode");
    }
    let event_id = forced_id.unwrap_or_else(|| match a.id_mode {
        4 | 5 => pick(&ids, &a.id).map_or_else(|| uuid7(n), |id| (*id).clone()),
        6 => pick(&own, &a.id).map_or_else(|| uuid7(n), |id| (*id).clone()),
        7 => format!("not-a-uuid-{n}"),
        _ => uuid7(n),
    });
    // Referral, handoff and service ids: the named case's half the time, else any seen.
    let of_case = |v: &CaseView| {
        let mut ids: Vec<String> = v.referrals.iter().map(|r| r.referral_id.clone()).collect();
        ids.extend(v.pending_handoff.iter().map(|h| h.handoff_id.clone()));
        ids
    };
    let named: Vec<String> = case.map(of_case).unwrap_or_default();
    let mut seen: Vec<String> = m.cases.values().flat_map(of_case).collect();
    seen.extend(m.listings.keys().map(|(_, s)| s.clone()));
    seen.extend(["r-x".to_string(), "svc-0".to_string()]);
    let step_id = match pick(&named, &a.step_id) {
        Some(id) if a.step_id.index(2) == 0 => id.clone(),
        _ => pick(&seen, &a.step_id).expect("non-empty").clone(),
    };
    let mut addressees: Vec<&str> = AGENCIES.iter().map(|(a, _)| *a).collect();
    addressees.extend(["nobody", "exchange"]);
    let to = pick(&addressees, &a.to).expect("non-empty").to_string();
    let reason = "x".to_string();
    let with_details = with_details.then(details).flatten();
    let kind = kind_of(adversary);
    let allowed: Vec<&str> = EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| kind.may_publish(t))
        .collect();
    let name = if ty_mode < 3 && !allowed.is_empty() {
        allowed[a.ty % allowed.len()]
    } else {
        EVENT_TYPES[a.ty]
    };
    let event = match name {
        "incident_reported" => Event::IncidentReported(IncidentReported {
            subject_details: with_details,
            ..IncidentReported::default()
        }),
        "eviction_ordered" => eviction(n),
        "referral_made" => Event::ReferralMade(ReferralMade {
            referral_id: step_id,
            to_agency: to,
            subject_details: with_details,
            ..ReferralMade::default()
        }),
        "referral_acknowledged" => Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: step_id,
        }),
        "referral_accepted" => Event::ReferralAccepted(ReferralAccepted {
            referral_id: step_id,
        }),
        "referral_declined" => Event::ReferralDeclined(ReferralDeclined {
            referral_id: step_id,
            reason,
            reason_code: OutcomeReason::NoCapacity as i32,
        }),
        "contact_attempted" => Event::ContactAttempted(ContactAttempted {
            outcome: ContactOutcome::Reached as i32,
            ..ContactAttempted::default()
        }),
        "intake_completed" => Event::IntakeCompleted(IntakeCompleted::default()),
        "enrolled" => Event::Enrolled(Enrolled {
            programme: "p".into(),
            planned_sessions: 10,
        }),
        "session_attended" => Event::SessionAttended(SessionAttended::default()),
        "session_missed" => Event::SessionMissed(SessionMissed::default()),
        "risk_assessed" => Event::RiskAssessed(RiskAssessed {
            level: RiskLevel::VeryHigh as i32,
            ..RiskAssessed::default()
        }),
        "handoff_requested" => Event::HandoffRequested(HandoffRequested {
            handoff_id: step_id,
            to_agency: to,
            reason,
        }),
        "handoff_accepted" => Event::HandoffAccepted(HandoffAccepted {
            handoff_id: step_id,
        }),
        "handoff_declined" => Event::HandoffDeclined(HandoffDeclined {
            handoff_id: step_id,
            reason,
            reason_code: OutcomeReason::NoCapacity as i32,
        }),
        "consent_given" => Event::ConsentGiven(ConsentGiven::default()),
        "consent_withdrawn" => Event::ConsentWithdrawn(ConsentWithdrawn::default()),
        "programme_completed" => Event::ProgrammeCompleted(ProgrammeCompleted::default()),
        "programme_dropped_out" => Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason,
            reason_code: OutcomeReason::ExcludedViolenceOrThreats as i32,
        }),
        "case_closed" => Event::CaseClosed(CaseClosed {
            reason,
            reason_code: OutcomeReason::Unreachable as i32,
        }),
        "subject_erasure_requested" => Event::SubjectErasureRequested(SubjectErasureRequested {
            reason,
            requested_by: String::new(),
        }),
        "service_offered" => Event::ServiceOffered(offer(step_id)),
        "service_withdrawn" => Event::ServiceWithdrawn(ServiceWithdrawn {
            service_id: step_id,
            reason,
        }),
        "agency_revoked" => Event::AgencyRevoked(AgencyRevoked {
            agency: to,
            reason,
            ..AgencyRevoked::default()
        }),
        "agency_reinstated" => Event::AgencyReinstated(AgencyReinstated {
            agency: to,
            reason,
            ..AgencyReinstated::default()
        }),
        "eviction_copy_sent" => Event::EvictionCopySent(EvictionCopySent {
            incident_ref: String::new(),
            recipient: 1 + (n % 3) as i32,
            to_agency: to,
        }),
        "eviction_copy_received" => Event::EvictionCopyReceived(EvictionCopyReceived::default()),
        "victim_help_offered" => Event::VictimHelpOffered(VictimHelpOffered {
            outcome: ContactOutcome::Reached as i32,
            ..VictimHelpOffered::default()
        }),
        "eviction_compliance_checked" => {
            Event::EvictionComplianceChecked(EvictionComplianceChecked {
                kept: n.is_multiple_of(2),
                ..EvictionComplianceChecked::default()
            })
        }
        "eviction_breached" => Event::EvictionBreached(EvictionBreached {
            offence_ref: step_id,
            narrative: reason,
            ..EvictionBreached::default()
        }),
        "eviction_objection" => Event::EvictionObjection(EvictionObjection {
            stage: 1 + (n % 3) as i32,
            ..EvictionObjection::default()
        }),
        "eviction_ended_early" => Event::EvictionEndedEarly(EvictionEndedEarly {
            reason,
            ..EvictionEndedEarly::default()
        }),
        "preliminary_measure" => Event::PreliminaryMeasure(PreliminaryMeasure {
            stage: 1 + (n % 6) as i32,
            until: Some(handoff_contract::time::from_unix_ms(1_800_000_000_000)),
            ..PreliminaryMeasure::default()
        }),
        "compliance_reported" => Event::ComplianceReported(ComplianceReported {
            to_agency: to,
            report: 1 + (n % 4) as i32,
            ..ComplianceReported::default()
        }),
        "risk_alert_raised" => Event::RiskAlertRaised(RiskAlertRaised {
            concern: 1 + (n % 2) as i32,
            basis: "§ 10 zákona č. 359/1999 Sb.".into(),
            notify: vec![to],
            note: reason,
        }),
        "endangered_person_recorded" => Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
            role: linked_person::Role::Victim as i32,
            subject_details: with_details,
            shelter: "azylový dům".into(),
            ..EndangeredPersonRecorded::default()
        }),
        "endangered_person_linked" => Event::EndangeredPersonLinked(EndangeredPersonLinked {
            protection_case_id: pick(&cases, &a.step_id).expect("non-empty").clone(),
            endangered_pseudonym: pick(&subjects, &a.subject).expect("non-empty").clone(),
            role: linked_person::Role::Victim as i32,
            support_agency: to,
        }),
        "notice_acknowledged" => Event::NoticeAcknowledged(NoticeAcknowledged {
            notice_id: format!(
                "{}/{}",
                ["safety", "alert", "report"][(n % 3) as usize],
                a.step_id.index(m.sequence as usize + 1)
            ),
        }),
        other => panic!("no attack with {other}: add the new event type here"),
    };
    let mut e = envelope(event_id, adversary, &case_id, &subject, event);
    if !matches!(target(&e), Some(Target::Case(_))) && a.subject_mode != 7 {
        // About no case: well formed only without case and subject.
        e.case_id.clear();
        e.subject_pseudonym.clear();
    }
    e.expected_version = a.version.map(|(current, v)| match (current, case) {
        (true, Some(view)) => view.version,
        (true, None) => 0,
        (false, _) => v,
    });
    if schema == 0 {
        e.schema_version = 2;
    }
    e
}
