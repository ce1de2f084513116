//! Issue 13: no partner can harm, learn or hold up what is not its own.
//!
//! Random scenarios over a registry of every kind of agency: honest agencies
//! drive case lifecycles, one adversary (each kind in turn) publishes arbitrary
//! events built from everything the log has shown. After every event of an
//! agency the tests check that
//!
//! - **harm**: no case it could not write to changes, nor any case it did not
//!   name, nor another agency's listing, nor another agency's keys, nor the
//!   registry; a new case is under its own id about a subject it may know;
//! - **learn**: the outcome (accepted with these effects, or refused with this
//!   reason and detail) is the same against the state as the agency may know it
//!   (only the cases it is a party to), so no receipt tells it more than
//!   NOT_FOUND would;
//! - **hold up**: publishing first with an honest agency's next event id does not
//!   change how that event is decided.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::attack::attack_envelope;
use common::scenario::{Step, honest_envelope, scenario};
use common::{
    AGENCIES, Model, Outcome, envelope, exchange_envelope, from_exchange, registry, uuid7,
};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::directory::DirectoryChange;
use handoff_domain::ids::owned_by;
use handoff_domain::{AgencyKind, Erasure, ErasureScope, Registry, may_write};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use prost::Message;

/// What the scenarios reached, so the coverage test can show the properties are not vacuous.
#[derive(Debug, Default)]
struct Stats {
    honest: usize,
    honest_accepted: usize,
    attacks: usize,
    attacks_accepted: usize,
    /// Attacks naming an existing case the adversary may not write to.
    foreign: usize,
    /// Accepted attacks on a case the adversary may write to (it had a part).
    on_own_part: usize,
    own_erasures: usize,
    preempts: usize,
    preempted_accepted: usize,
    reasons: BTreeMap<String, usize>,
    kinds: BTreeSet<AgencyKind>,
    statuses: BTreeSet<i32>,
    /// Issue 16's facts reached: event types accepted of the statutory path and safety.
    new_kinds: BTreeSet<&'static str>,
    /// Safety notices checked to reach the endangered person's support.
    notices: usize,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.honest += other.honest;
        self.honest_accepted += other.honest_accepted;
        self.attacks += other.attacks;
        self.attacks_accepted += other.attacks_accepted;
        self.foreign += other.foreign;
        self.on_own_part += other.on_own_part;
        self.own_erasures += other.own_erasures;
        self.preempts += other.preempts;
        self.preempted_accepted += other.preempted_accepted;
        for (reason, count) in other.reasons {
            *self.reasons.entry(reason).or_default() += count;
        }
        self.kinds.extend(other.kinds);
        self.statuses.extend(other.statuses);
        self.new_kinds.extend(other.new_kinds);
        self.notices += other.notices;
    }
}

struct Run {
    reg: Registry,
    model: Model,
    adversary: &'static str,
    n: u64,
    stats: Stats,
}

fn encoded(view: Option<&CaseView>) -> Option<Vec<u8>> {
    view.map(Message::encode_to_vec)
}

/// What `e` may have changed, given it came from its source agency: only what is
/// that agency's own.
fn confined(
    before: &Model,
    after: &Model,
    e: &Envelope,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    let p = e.source_agency.as_str();
    let Outcome::Accepted(effects) = outcome else {
        if *outcome == Outcome::Duplicate {
            prop_assert!(
                before
                    .events
                    .contains_key(&(p.to_string(), e.event_id.clone())),
                "{p}'s event {} is a duplicate of another agency's",
                e.event_id
            );
        }
        prop_assert_eq!(before, after, "a refused event changed the state");
        return Ok(());
    };
    prop_assert!(effects.registry.is_none(), "{p} changed the registry");
    if let Some(erasure) = &effects.erasure {
        prop_assert_eq!(&erasure.scope, &ErasureScope::Agency(p.to_string()));
        prop_assert_eq!(&erasure.subject, &e.subject_pseudonym);
        prop_assert!(effects.case.is_some(), "an erasure outside a case");
    }
    if let Some(change) = &effects.listing {
        let agency = match change {
            DirectoryChange::Offered(listing) => &listing.agency,
            DirectoryChange::Withdrawn { agency, .. } => agency,
        };
        prop_assert_eq!(agency.as_str(), p, "{} changed another agency's listing", p);
    }
    if let Some(change) = &effects.case {
        prop_assert_eq!(&change.before, &before.cases.get(&e.case_id).cloned());
    }
    for (id, view) in &before.cases {
        let now = encoded(after.cases.get(id));
        // Its part, as the domain says and as the parties list reads (asked, holding or
        // having held, and not declined), so a looser `may_write` is caught too.
        let part = may_write(view, p)
            && view
                .parties
                .iter()
                .any(|x| x.agency == p && x.visible_until_sequence == 0);
        if id != &e.case_id || !part {
            prop_assert_eq!(
                now,
                encoded(Some(view)),
                "case {} changed by {}'s event on {} (part it could write: {})",
                id,
                p,
                &e.case_id,
                may_write(view, p)
            );
        }
    }
    for (id, view) in &after.cases {
        if !before.cases.contains_key(id) {
            prop_assert_eq!(id, &e.case_id);
            prop_assert!(owned_by(id, p), "{p} opened case {id} under another's id");
            prop_assert_eq!(view.opened_by.as_str(), p);
            let subject = &view.subject_pseudonym;
            prop_assert!(
                owned_by(subject, p) || before.knows(p, subject),
                "{p} opened a case about {subject}, which it may not know"
            );
        }
    }
    let others = |m: &Model| {
        m.listings
            .iter()
            .filter(|((agency, _), _)| agency != p)
            .map(|(k, v)| (k.clone(), v.encode_to_vec()))
            .collect::<Vec<_>>()
    };
    prop_assert_eq!(
        others(before),
        others(after),
        "{} changed a listing of another",
        p
    );
    prop_assert_eq!(&before.revoked, &after.revoked);
    for (subject, whose) in after.destroyed.difference(&before.destroyed) {
        prop_assert_eq!(
            whose.as_deref(),
            Some(p),
            "{}'s event destroyed keys of {}",
            p,
            subject
        );
    }
    Ok(())
}

impl Run {
    fn new(adversary: usize) -> Self {
        Run {
            reg: registry(),
            model: Model::default(),
            adversary: AGENCIES[adversary].0,
            n: 0,
            stats: Stats::default(),
        }
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    /// Publishes an agency's event and checks it changed, and told, only what is its own.
    fn publish(&mut self, e: &Envelope) -> Result<Outcome, TestCaseError> {
        let before = self.model.clone();
        let outcome = self.model.publish(e, &self.reg);
        confined(&before, &self.model, e, &outcome)?;
        if let Some(effects) = outcome.effects() {
            self.safe(e, effects)?;
        }
        let blind = before.seen_by(&e.source_agency).decide(e, &self.reg);
        prop_assert_eq!(
            &outcome,
            &blind,
            "{}'s outcome depends on what it may not know: {:?}",
            &e.source_agency,
            e
        );
        Ok(outcome)
    }

    /// Issue 16: no agency working with the violent person is ever a party to a
    /// protection case (so none sees where the endangered person is), and every fact
    /// that bears on safety reaches the linked support, whatever the consent.
    fn safe(
        &mut self,
        e: &Envelope,
        effects: &handoff_domain::Effects,
    ) -> Result<(), TestCaseError> {
        let name = handoff_contract::names::event_type(e.event.as_ref().expect("event"));
        let new = handoff_contract::names::EVENT_TYPES
            .iter()
            .position(|t| *t == "eviction_copy_sent")
            .expect("listed");
        if let Some(i) = handoff_contract::names::EVENT_TYPES
            .iter()
            .position(|t| *t == name)
            && i >= new
        {
            self.stats
                .new_kinds
                .insert(handoff_contract::names::EVENT_TYPES[i]);
        }
        for view in self
            .model
            .cases
            .values()
            .filter(|v| v.protected_person.is_some())
        {
            for party in &view.parties {
                let kind = self.reg.get(&party.agency).map(|a| a.kind);
                prop_assert!(
                    kind.is_some_and(handoff_domain::safety::acts_for_endangered),
                    "{} ({:?}) is a party to protection case {}",
                    &party.agency,
                    kind,
                    &view.case_id
                );
            }
        }
        let Some(change) = &effects.case else {
            return Ok(());
        };
        let bears_on_safety = match e.event.as_ref().expect("event") {
            Event::IntakeCompleted(_)
            | Event::ProgrammeCompleted(_)
            | Event::ProgrammeDroppedOut(_)
            | Event::EvictionBreached(_) => true,
            Event::RiskAssessed(r) => r.level >= RiskLevel::High as i32,
            _ => false,
        };
        let sequence = self.model.sequence;
        let support: BTreeSet<&str> = change
            .after
            .endangered
            .iter()
            .filter(|l| l.linked_sequence < sequence)
            .map(|l| l.support_agency.as_str())
            .collect();
        if bears_on_safety && !support.is_empty() {
            let mut view = change.after.clone();
            for consent in [
                ConsentState::Given,
                ConsentState::Withdrawn,
                ConsentState::Unspecified,
            ] {
                view.consent = consent as i32;
                let rules = handoff_domain::safety::SafetyRules::default();
                let told: BTreeSet<String> = handoff_domain::safety::notices(&view, &rules)
                    .into_iter()
                    .filter(|i| i.item_id == format!("safety/{sequence}"))
                    .map(|i| i.to_agency)
                    .collect();
                for agency in &support {
                    prop_assert!(
                        told.contains(*agency),
                        "{} was not told of {} on {} (consent {:?})",
                        agency,
                        name,
                        &view.case_id,
                        consent
                    );
                }
            }
            self.stats.notices += 1;
        }
        Ok(())
    }

    fn honest(&mut self, e: &Envelope) -> Result<Outcome, TestCaseError> {
        let outcome = self.publish(e)?;
        self.stats.honest += 1;
        if let Some(effects) = outcome.effects() {
            self.stats.honest_accepted += 1;
            if let Some(change) = &effects.case {
                self.stats.statuses.insert(change.after.status);
            }
        }
        Ok(outcome)
    }

    fn attack(&mut self, e: &Envelope) -> Result<Outcome, TestCaseError> {
        let before = self.model.cases.get(&e.case_id);
        let foreign = before.is_some_and(|v| !may_write(v, self.adversary));
        let writable = before.is_some_and(|v| may_write(v, self.adversary));
        let outcome = self.publish(e)?;
        let s = &mut self.stats;
        s.attacks += 1;
        s.foreign += usize::from(foreign);
        let name = match &outcome {
            Outcome::Accepted(effects) => {
                s.attacks_accepted += 1;
                s.on_own_part += usize::from(writable);
                s.own_erasures += usize::from(effects.erasure.is_some());
                "ACCEPTED".to_string()
            }
            Outcome::Duplicate => "DUPLICATE".to_string(),
            Outcome::Refused { reason, .. } => reason.as_str_name().to_string(),
        };
        *s.reasons.entry(name).or_default() += 1;
        Ok(outcome)
    }
}

/// Plays a scenario, checking every property after every event.
fn play(adversary: usize, steps: &[Step]) -> Result<Stats, TestCaseError> {
    let mut run = Run::new(adversary);
    run.stats.kinds.insert(AGENCIES[adversary].1);
    for step in steps {
        match step {
            Step::Honest(h) => {
                let n = run.next();
                let e = honest_envelope(&run.model, h, None, n);
                run.honest(&e)?;
            }
            Step::Attack(a) => {
                let n = run.next();
                let e = attack_envelope(&run.model, run.adversary, a, n, None);
                run.attack(&e)?;
            }
            Step::Preempt(a, h) => {
                let hn = run.next();
                let honest = honest_envelope(&run.model, h, Some(run.adversary), hn);
                let an = run.next();
                let first = attack_envelope(
                    &run.model,
                    run.adversary,
                    a,
                    an,
                    Some(honest.event_id.clone()),
                );
                // The same attack under an id nobody uses, in a twin of the log.
                let mut twin = run.model.clone();
                let mut elsewhere = first.clone();
                elsewhere.event_id = uuid7((1 << 40) | an);
                let taken = run.attack(&first)?;
                prop_assert_eq!(&taken, &twin.publish(&elsewhere, &run.reg));
                let answer = run.honest(&honest)?;
                prop_assert!(
                    answer != Outcome::Duplicate
                        && answer.reason() != Some(RejectionReason::DuplicateEventId),
                    "{}'s event {} was held up by {}'s use of its id: {:?}",
                    &honest.source_agency,
                    &honest.event_id,
                    run.adversary,
                    answer
                );
                prop_assert_eq!(&answer, &twin.publish(&honest, &run.reg));
                run.stats.preempts += 1;
                run.stats.preempted_accepted += usize::from(answer.effects().is_some());
            }
            Step::Exchange(what, index) => {
                let n = run.next();
                let e = exchange_envelope(&run.model, *what, index, n);
                let outcome = run.model.publish(&e, &run.reg);
                if let Event::SubjectErasureRequested(_) = e.event.as_ref().expect("event") {
                    let erasure = outcome.effects().and_then(|x| x.erasure.clone());
                    prop_assert_eq!(
                        erasure.map(|x| x.scope),
                        Some(ErasureScope::Everyone),
                        "the exchange's erasure"
                    );
                }
            }
        }
    }
    Ok(run.stats)
}

proptest! {
    // Cases: PROPTEST_CASES (512 in CI through ops/bin/test).
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn no_partner_can_harm_learn_or_hold_up_what_is_not_its_own(
        (adversary, steps) in scenario()
    ) {
        play(adversary, &steps)?;
    }
}

/// The properties are only as good as what the scenarios reach: honest lifecycles
/// that get somewhere, attacks on others' cases, attacks that succeed where the
/// adversary has a part, every kind as the adversary, every refusal reason.
#[test]
fn the_scenarios_reach_what_the_properties_are_about() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut total = Stats::default();
    for _ in 0..400 {
        let (adversary, steps) = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        total.add(play(adversary, &steps).expect("the properties hold"));
    }
    eprintln!("{total:#?}");
    assert_eq!(
        total.kinds.len(),
        AgencyKind::ALL.len(),
        "every kind attacked"
    );
    assert!(
        total.honest_accepted * 3 >= total.honest,
        "honest steps mostly fail"
    );
    for status in [
        CaseStatus::Enrolled,
        CaseStatus::Completed,
        CaseStatus::Closed,
    ] {
        assert!(
            total.statuses.contains(&(status as i32)),
            "no case got {status:?}"
        );
    }
    assert!(total.foreign >= 500, "too few attacks on others' cases");
    for name in handoff_contract::names::EVENT_TYPES
        .iter()
        .skip_while(|t| **t != "eviction_copy_sent")
    {
        assert!(
            total.new_kinds.contains(name),
            "no {name} was ever accepted"
        );
    }
    assert!(
        total.notices >= 3,
        "too few safety notices checked: {}",
        total.notices
    );
    assert!(
        total.on_own_part >= 100,
        "too few accepted attacks where it had a part"
    );
    assert!(
        total.own_erasures >= 10,
        "too few erasures by the adversary"
    );
    assert!(
        total.preempted_accepted >= 50,
        "too few preempted honest events accepted"
    );
    for reason in [
        "ACCEPTED",
        "DUPLICATE",
        "REJECTION_REASON_INVALID",
        "REJECTION_REASON_UNSUPPORTED_SCHEMA_VERSION",
        "REJECTION_REASON_KIND_MAY_NOT_PUBLISH",
        "REJECTION_REASON_UNKNOWN_CASE",
        "REJECTION_REASON_UNKNOWN_SUBJECT",
        "REJECTION_REASON_UNKNOWN_AGENCY",
        "REJECTION_REASON_AGENCY_REVOKED",
        "REJECTION_REASON_WRONG_EXPECTED_VERSION",
        "REJECTION_REASON_TRANSITION_NOT_ALLOWED",
        "REJECTION_REASON_AGENCY_NOT_A_PARTY",
        "REJECTION_REASON_DUPLICATE_EVENT_ID",
    ] {
        assert!(
            total.reasons.get(reason).is_some_and(|n| *n >= 3),
            "attacks rarely end {reason}"
        );
    }
}

fn referral(id: &str, to: &str) -> Event {
    Event::ReferralMade(ReferralMade {
        referral_id: id.into(),
        to_agency: to.into(),
        reason: "programme".into(),
        ..ReferralMade::default()
    })
}

fn incident() -> Event {
    Event::IncidentReported(IncidentReported {
        incident_ref: "I-1".into(),
        narrative: "recorded".into(),
        ..IncidentReported::default()
    })
}

fn erasure() -> Event {
    Event::SubjectErasureRequested(SubjectErasureRequested {
        reason: "art. 17".into(),
        requested_by: "dpo".into(),
    })
}

fn accept(m: &mut Model, reg: &Registry, e: &Envelope) -> handoff_domain::Effects {
    match m.publish(e, reg) {
        Outcome::Accepted(effects) => *effects,
        other => panic!("{} refused: {other:?}", e.event_id),
    }
}

fn detail(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Refused { detail, .. } => detail.clone(),
        other => panic!("accepted: {other:?}"),
    }
}

/// The police cannot learn whether child protection works with a subject by naming
/// the pseudonym in a case of its own: it is refused the same whether or not the
/// subject exists, and the same as against a log that has never heard of it.
#[test]
fn police_cannot_name_child_protections_subject() {
    let reg = registry();
    let mut m = Model::default();
    accept(
        &mut m,
        &reg,
        &envelope(
            uuid7(1),
            "social-a",
            "social-a/c1",
            "social-a/s1",
            referral("r1", "probation-a"),
        ),
    );
    let naming = |subject: &str| envelope(uuid7(2), "police-a", "police-a/c9", subject, incident());
    let known = m.decide(&naming("social-a/s1"), &reg);
    let unknown = m.decide(&naming("social-a/s2"), &reg);
    assert_eq!(known.reason(), Some(RejectionReason::UnknownSubject));
    assert_eq!(unknown.reason(), Some(RejectionReason::UnknownSubject));
    assert_eq!(
        detail(&known).replace("social-a/s1", "<subject>"),
        detail(&unknown).replace("social-a/s2", "<subject>")
    );
    assert_eq!(known, Model::default().decide(&naming("social-a/s1"), &reg));
    assert_eq!(
        m.decide(&naming("police-a/s1"), &reg).reason(),
        None,
        "its own subject"
    );

    // Nor by writing to the case itself, or opening one under child protection's id.
    let close = envelope(
        uuid7(3),
        "police-a",
        "social-a/c1",
        "social-a/s1",
        Event::CaseClosed(CaseClosed::default()),
    );
    let refused = m.decide(&close, &reg);
    assert_eq!(refused.reason(), Some(RejectionReason::UnknownCase));
    assert_eq!(refused, Model::default().decide(&close, &reg));
    let squat = envelope(
        uuid7(4),
        "police-a",
        "social-a/c2",
        "police-a/s1",
        incident(),
    );
    assert_eq!(
        m.decide(&squat, &reg).reason(),
        Some(RejectionReason::UnknownCase)
    );

    // The agency it was referred to may name the subject in a case of its own.
    let probation = envelope(
        uuid7(5),
        "probation-a",
        "probation-a/c1",
        "social-a/s1",
        referral("r1", "ngo-a"),
    );
    assert!(m.decide(&probation, &reg).effects().is_some());
}

/// A party's erasure request destroys only the keys of what it contributed; an
/// agency without a part is answered like on a missing case; the exchange's own
/// erasure is the only one that reaches every key.
#[test]
fn an_erasure_by_a_party_erases_only_its_own_contributions() {
    let reg = registry();
    let mut m = Model::default();
    let on_case = |n: u64, source: &str, event: Event| {
        envelope(uuid7(n), source, "police-a/c1", "police-a/s1", event)
    };
    accept(&mut m, &reg, &on_case(1, "police-a", incident()));
    accept(
        &mut m,
        &reg,
        &on_case(2, "police-a", referral("r1", "ic-a")),
    );
    accept(
        &mut m,
        &reg,
        &on_case(
            3,
            "ic-a",
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r1".into(),
            }),
        ),
    );
    let effects = accept(&mut m, &reg, &on_case(4, "ic-a", erasure()));
    assert_eq!(
        effects.erasure,
        Some(Erasure {
            subject: "police-a/s1".into(),
            scope: ErasureScope::Agency("ic-a".into()),
            reason: "art. 17 (requested by dpo of ic-a)".into(),
        })
    );
    let effects = accept(&mut m, &reg, &on_case(5, "police-a", erasure()));
    assert_eq!(
        effects.erasure.map(|e| e.scope),
        Some(ErasureScope::Agency("police-a".into()))
    );
    let expected: BTreeSet<(String, Option<String>)> = [
        ("police-a/s1".to_string(), Some("ic-a".to_string())),
        ("police-a/s1".to_string(), Some("police-a".to_string())),
    ]
    .into();
    assert_eq!(m.destroyed, expected);

    // Without a part: UNKNOWN_CASE, worded as for a case that does not exist.
    let stranger = on_case(6, "social-a", erasure());
    let refused = m.decide(&stranger, &reg);
    assert_eq!(refused.reason(), Some(RejectionReason::UnknownCase));
    assert_eq!(refused, Model::default().decide(&stranger, &reg));
    // Nor under its own case id: an erasure opens no case.
    let own_id = envelope(
        uuid7(7),
        "social-a",
        "social-a/c1",
        "police-a/s1",
        erasure(),
    );
    assert_eq!(
        m.decide(&own_id, &reg).reason(),
        Some(RejectionReason::UnknownCase)
    );
    // A party naming another subject on the case erases nothing.
    let other = envelope(uuid7(8), "ic-a", "police-a/c1", "social-a/s1", erasure());
    assert_eq!(
        m.decide(&other, &reg).reason(),
        Some(RejectionReason::Invalid)
    );

    let everyone = from_exchange(uuid7(9), "police-a/s1", erasure());
    let effects = accept(&mut m, &reg, &everyone);
    assert_eq!(
        effects.erasure.map(|e| e.scope),
        Some(ErasureScope::Everyone)
    );
    assert!(effects.case.is_none());
}
