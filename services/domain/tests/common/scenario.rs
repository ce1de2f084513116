//! Random multi-agency scenarios: honest agencies driving plausible case
//! lifecycles, and one adversary publishing arbitrary events built from
//! everything the scenario has shown so far (every case id, pseudonym, event id,
//! referral and handoff id, and fresh ones).

use handoff_contract::names::EVENT_TYPES;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{AgencyKind, may_write};
use proptest::prelude::*;
use proptest::sample::Index;

use super::steps::*;
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

pub(crate) fn pick<'a, T>(items: &'a [T], index: &Index) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[index.index(items.len())])
}

pub(crate) fn status(view: &CaseView) -> CaseStatus {
    CaseStatus::try_from(view.status).unwrap_or(CaseStatus::Unspecified)
}

pub(crate) fn details() -> Option<PersonalDetails> {
    Some(PersonalDetails {
        full_name: "A. Person".into(),
        date_of_birth: "1980-01-01".into(),
        ..PersonalDetails::default()
    })
}

pub(crate) fn kind_of(agency: &str) -> AgencyKind {
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
