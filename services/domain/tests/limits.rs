//! What one agency can make the exchange keep is bounded field by field
//! (`limits.rs`). The fields are enumerated from the contract's descriptors, not
//! from a list written here, so a field added to any event without a limit fails
//! `every_string_and_list_of_every_event_is_bounded`.

// Every literal below ends in `..Default::default()`, needed or not, so a field added
// to the contract compiles here and fails the reflection test until it has a limit.
#![allow(clippy::needless_update)]

mod common;

use std::collections::BTreeSet;

use common::{envelope, from_exchange, uuid7};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::Rejection;
use handoff_domain::limits::{
    DETAIL, EVICTION_DAYS, ID, LABEL, LINKED_PERSONS, LIST, SESSIONS, TEXT,
};
use handoff_domain::validate::validate_envelope;
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};

/// What every string field is set to.
const HUGE: usize = 64 * 1024;
/// What every repeated field is filled to.
const MANY: usize = 1000;

fn details() -> Option<PersonalDetails> {
    Some(PersonalDetails {
        full_name: "A. Person".into(),
        date_of_birth: "1980-01-01".into(),
        phone: "+420 387 000 000".into(),
        address: "Street 1".into(),
        ..Default::default()
    })
}

/// A valid envelope carrying the event of the Envelope's oneof field `name`, every
/// string and list of it filled with a well-formed value.
fn base(name: &str) -> Envelope {
    let reason = || "a reason".to_string();
    let event = match name {
        "incident_reported" => Event::IncidentReported(IncidentReported {
            incident_ref: "I-1".into(),
            narrative: "recorded".into(),
            area: "north".into(),
            linked_persons: vec![LinkedPerson {
                role: linked_person::Role::Child as i32,
                age_band: "5-9".into(),
                ..Default::default()
            }],
            subject_details: details(),
            ..Default::default()
        }),
        "eviction_ordered" => Event::EvictionOrdered(EvictionOrdered {
            incident_ref: "I-1".into(),
            ordered_at: Some(handoff_contract::time::from_unix_ms(1_700_000_000_000)),
            duration_days: 14,
            protected_area: "the flat".into(),
            ..Default::default()
        }),
        "referral_made" => Event::ReferralMade(ReferralMade {
            referral_id: "r1".into(),
            to_agency: "ic-a".into(),
            reason: reason(),
            court_ordered: false,
            subject_details: details(),
            ..Default::default()
        }),
        "referral_acknowledged" => Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: "r1".into(),
            ..Default::default()
        }),
        "referral_accepted" => Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r1".into(),
            ..Default::default()
        }),
        "referral_declined" => Event::ReferralDeclined(ReferralDeclined {
            referral_id: "r1".into(),
            reason: reason(),
            ..Default::default()
        }),
        "contact_attempted" => Event::ContactAttempted(ContactAttempted {
            note: "called".into(),
            ..ContactAttempted::default()
        }),
        "intake_completed" => Event::IntakeCompleted(IntakeCompleted {
            note: "ok".into(),
            ..Default::default()
        }),
        "enrolled" => Event::Enrolled(Enrolled {
            programme: "p".into(),
            planned_sessions: 24,
            ..Default::default()
        }),
        "session_attended" => Event::SessionAttended(SessionAttended {
            session_number: 1,
            note: "ok".into(),
            ..Default::default()
        }),
        "session_missed" => Event::SessionMissed(SessionMissed {
            session_number: 1,
            reason: reason(),
            excused: false,
            ..Default::default()
        }),
        "risk_assessed" => Event::RiskAssessed(RiskAssessed {
            instrument: "ODARA".into(),
            level: RiskLevel::High as i32,
            note: "n".into(),
            ..Default::default()
        }),
        "handoff_requested" => Event::HandoffRequested(HandoffRequested {
            handoff_id: "h1".into(),
            to_agency: "ic-a".into(),
            reason: reason(),
            ..Default::default()
        }),
        "handoff_accepted" => Event::HandoffAccepted(HandoffAccepted {
            handoff_id: "h1".into(),
            ..Default::default()
        }),
        "handoff_declined" => Event::HandoffDeclined(HandoffDeclined {
            handoff_id: "h1".into(),
            reason: reason(),
            ..Default::default()
        }),
        "consent_given" => Event::ConsentGiven(ConsentGiven {
            scope: "all".into(),
            ..Default::default()
        }),
        "consent_withdrawn" => Event::ConsentWithdrawn(ConsentWithdrawn {
            scope: "all".into(),
            ..Default::default()
        }),
        "programme_completed" => Event::ProgrammeCompleted(ProgrammeCompleted {
            note: "done".into(),
            ..Default::default()
        }),
        "programme_dropped_out" => Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason: reason(),
            ..Default::default()
        }),
        "case_closed" => Event::CaseClosed(CaseClosed {
            reason: reason(),
            ..Default::default()
        }),
        "subject_erasure_requested" => Event::SubjectErasureRequested(SubjectErasureRequested {
            reason: reason(),
            requested_by: "dpo".into(),
            ..Default::default()
        }),
        "service_offered" => Event::ServiceOffered(ServiceOffered {
            service_id: "svc-1".into(),
            name: "Programme".into(),
            description: "d".into(),
            eligibility: "e".into(),
            areas: vec!["north".into()],
            languages: vec!["cs".into()],
            how_to_refer: "call".into(),
            phone: "+420 387 000 000".into(),
            email: "info@example.org".into(),
            url: "https://example.org/p".into(),
            opening_hours: "9-5".into(),
            ..Default::default()
        }),
        "service_withdrawn" => Event::ServiceWithdrawn(ServiceWithdrawn {
            service_id: "svc-1".into(),
            reason: reason(),
            ..Default::default()
        }),
        "agency_revoked" | "agency_reinstated" => {
            let (agency, reason, requested_by) = ("ic-a".into(), reason(), "operator".into());
            let event = if name == "agency_revoked" {
                Event::AgencyRevoked(AgencyRevoked {
                    agency,
                    reason,
                    requested_by,
                    ..Default::default()
                })
            } else {
                Event::AgencyReinstated(AgencyReinstated {
                    agency,
                    reason,
                    requested_by,
                    ..Default::default()
                })
            };
            return with_headers(from_exchange(uuid7(1), "", event));
        }
        "eviction_copy_sent" => Event::EvictionCopySent(EvictionCopySent {
            incident_ref: "I1".into(),
            recipient: CopyRecipient::InterventionCentre as i32,
            to_agency: "ic-a".into(),
        }),
        "eviction_copy_received" => Event::EvictionCopyReceived(EvictionCopyReceived {
            incident_ref: "I1".into(),
        }),
        "victim_help_offered" => Event::VictimHelpOffered(VictimHelpOffered {
            incident_ref: "I1".into(),
            outcome: ContactOutcome::Reached as i32,
            note: "n".into(),
        }),
        "eviction_compliance_checked" => {
            Event::EvictionComplianceChecked(EvictionComplianceChecked {
                incident_ref: "I1".into(),
                kept: true,
                note: "n".into(),
            })
        }
        "eviction_breached" => Event::EvictionBreached(EvictionBreached {
            incident_ref: "I1".into(),
            offence_ref: "P1".into(),
            narrative: "n".into(),
        }),
        "eviction_objection" => Event::EvictionObjection(EvictionObjection {
            incident_ref: "I1".into(),
            stage: eviction_objection::Stage::Filed as i32,
            note: "n".into(),
        }),
        "eviction_ended_early" => Event::EvictionEndedEarly(EvictionEndedEarly {
            incident_ref: "I1".into(),
            reason: reason(),
        }),
        "preliminary_measure" => Event::PreliminaryMeasure(PreliminaryMeasure {
            incident_ref: "I1".into(),
            stage: preliminary_measure::Stage::Petitioned as i32,
            note: "n".into(),
            ..Default::default()
        }),
        "compliance_reported" => Event::ComplianceReported(ComplianceReported {
            to_agency: "court-a".into(),
            report: ComplianceReportKind::Attendance as i32,
            sessions_attended: 3,
            sessions_missed: 1,
            note: "n".into(),
        }),
        "risk_alert_raised" => Event::RiskAlertRaised(RiskAlertRaised {
            concern: RiskConcern::ImminentDanger as i32,
            basis: "§ 10".into(),
            notify: vec!["police-b".into()],
            note: "n".into(),
        }),
        "endangered_person_recorded" => Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
            role: linked_person::Role::Victim as i32,
            age_band: "30-39".into(),
            subject_details: details(),
            shelter: "s".into(),
            school: "z".into(),
        }),
        "endangered_person_linked" => Event::EndangeredPersonLinked(EndangeredPersonLinked {
            protection_case_id: "police-a/p1".into(),
            endangered_pseudonym: "police-a/e1".into(),
            role: linked_person::Role::Victim as i32,
            support_agency: "victim-a".into(),
        }),
        "notice_acknowledged" => Event::NoticeAcknowledged(NoticeAcknowledged {
            notice_id: "safety/1".into(),
        }),
        other => panic!("no base envelope for event {other}: add one to this test"),
    };
    let about_a_case = !matches!(event, Event::ServiceOffered(_) | Event::ServiceWithdrawn(_));
    let (case, subject) = if about_a_case {
        ("police-a/c1", "police-a/s1")
    } else {
        ("", "")
    };
    with_headers(envelope(uuid7(1), "police-a", case, subject, event))
}

fn with_headers(mut e: Envelope) -> Envelope {
    e.actor = "officer-1".into();
    e.correlation_id = "corr-1".into();
    e.causation_id = uuid7(0);
    e
}

/// What is done to the field at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    /// A repeated field gets [`MANY`] entries.
    Many,
    /// A string or bytes field (or the first entry of a repeated one) gets [`HUGE`] bytes.
    Huge,
}

/// Every path from the envelope to a string, bytes or repeated field, through the
/// event `event` (the other members of the oneof are other envelopes).
fn paths(
    desc: &MessageDescriptor,
    event: &str,
    prefix: &[FieldDescriptor],
    out: &mut Vec<(Vec<FieldDescriptor>, Leaf)>,
) {
    assert!(prefix.len() < 8, "messages nest too deep: a cycle?");
    for field in desc.fields() {
        if prefix.is_empty() && field.containing_oneof().is_some() && field.name() != event {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(field.clone());
        let kind = field.kind();
        if field.is_list() || field.is_map() {
            out.push((path.clone(), Leaf::Many));
        }
        if matches!(kind, Kind::String | Kind::Bytes) {
            out.push((path.clone(), Leaf::Huge));
        }
        if let Kind::Message(inner) = kind
            && !field.is_map()
        {
            paths(&inner, event, &path, out);
        }
    }
}

fn name(path: &[FieldDescriptor], leaf: Leaf) -> String {
    let mut name = path
        .iter()
        .map(FieldDescriptor::name)
        .collect::<Vec<_>>()
        .join(".");
    if leaf == Leaf::Huge && path.last().is_some_and(FieldDescriptor::is_list) {
        name.push_str("[0]");
    }
    name
}

/// A string padded to [`HUGE`] bytes with its own last character (so it keeps its
/// form: an e-mail address stays one), or bytes of that length.
fn huge(value: &mut Value) {
    match value {
        Value::String(s) => {
            let pad = s.chars().last().unwrap_or('x');
            while s.len() < HUGE {
                s.push(pad);
            }
        }
        Value::Bytes(b) => *b = vec![1u8; HUGE].into(),
        other => panic!("cannot make {other:?} huge"),
    }
}

/// Does `leaf` to the field at the end of `path`, creating what leads there.
fn inflate(message: &mut DynamicMessage, path: &[FieldDescriptor], leaf: Leaf) {
    let (field, rest) = path.split_first().expect("a path");
    let value = message.get_field_mut(field);
    let first = |kind: Kind| match kind {
        Kind::String => Value::String("x".into()),
        Kind::Message(desc) => Value::Message(DynamicMessage::new(desc)),
        kind => Value::default_value(&kind),
    };
    if !rest.is_empty() {
        let inner = match value {
            Value::List(items) => {
                if items.is_empty() {
                    items.push(first(field.kind()));
                }
                items[0].as_message_mut().expect("a message")
            }
            value => value.as_message_mut().expect("a message"),
        };
        return inflate(inner, rest, leaf);
    }
    match (value, leaf) {
        (Value::List(items), Leaf::Many) => {
            let item = items
                .first()
                .cloned()
                .unwrap_or_else(|| first(field.kind()));
            *items = vec![item; MANY];
        }
        (Value::List(items), Leaf::Huge) => {
            if items.is_empty() {
                items.push(first(field.kind()));
            }
            huge(&mut items[0]);
        }
        (value @ (Value::String(_) | Value::Bytes(_)), Leaf::Huge) => huge(value),
        (other, _) => panic!(
            "{}: cannot inflate {other:?} (a map? extend this test)",
            name(path, leaf)
        ),
    }
}

#[test]
fn every_string_and_list_of_every_event_is_bounded() {
    let pool = handoff_contract::json::pool();
    let envelope_desc = pool
        .get_message_by_name("handoff.v1.Envelope")
        .expect("Envelope in the contract");
    let events = envelope_desc
        .oneofs()
        .find(|o| o.name() == "event")
        .expect("the event oneof");
    let mut bases: Vec<(String, Envelope)> = events
        .fields()
        .map(|f| (f.name().to_string(), base(f.name())))
        .collect();
    // The exchange's own erasure names a subject and no case: another path through validation.
    bases.push((
        "subject_erasure_requested".into(),
        with_headers(from_exchange(
            uuid7(1),
            "police-a/s1",
            base("subject_erasure_requested").event.expect("event"),
        )),
    ));
    let mut covered = BTreeSet::new();
    let mut cases = 0;
    let mut failures = Vec::new();
    for (event, base) in &bases {
        assert_eq!(
            validate_envelope(base),
            Ok(()),
            "the base envelope of {event}"
        );
        let mut found = Vec::new();
        paths(&envelope_desc, event, &[], &mut found);
        for (path, leaf) in found {
            let field = name(&path, leaf);
            let mut message =
                DynamicMessage::decode(envelope_desc.clone(), base.encode_to_vec().as_slice())
                    .expect("decodes");
            inflate(&mut message, &path, leaf);
            let inflated =
                Envelope::decode(message.encode_to_vec().as_slice()).expect("re-encodes");
            assert!(
                inflated.encoded_len() > base.encoded_len() + MANY,
                "{event}: {field} did not grow"
            );
            covered.insert(field.clone());
            cases += 1;
            match validate_envelope(&inflated) {
                // Refused because of this field: the message names it.
                Err(Rejection::Invalid(why)) if why.contains(path.last().expect("leaf").name()) => {
                }
                other => failures.push(format!(
                    "{event}: {field} at {HUGE} bytes or {MANY} entries: {:?}",
                    other.map_err(|r| handoff_domain::limits::bounded(&r.to_string(), 200))
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "fields without a limit:\n{}",
        failures.join("\n")
    );
    // The walk reaches the envelope's own fields, nested messages and repeated fields.
    for expected in [
        "event_id",
        "source_agency",
        "case_id",
        "subject_pseudonym",
        "actor",
        "correlation_id",
        "causation_id",
        "incident_reported.narrative",
        "incident_reported.linked_persons",
        "incident_reported.linked_persons.age_band",
        "incident_reported.subject_details.full_name",
        "referral_made.subject_details.address",
        "referral_made.to_agency",
        "service_offered.areas",
        "service_offered.areas[0]",
        "service_offered.languages",
        "service_offered.languages[0]",
        "service_offered.opening_hours",
        "agency_revoked.agency",
    ] {
        assert!(covered.contains(expected), "the walk missed {expected}");
    }
    eprintln!(
        "{} (event, field) cases, {} distinct paths",
        cases,
        covered.len()
    );
    assert!(covered.len() >= 60, "only {} fields walked", covered.len());
}

/// Builds `base(event)`, changes it with `set(n)`, and says whether it is valid.
fn valid_at(event: &str, n: usize, set: fn(&mut Envelope, usize)) -> Result<(), Rejection> {
    let mut e = base(event);
    set(&mut e, n);
    validate_envelope(&e)
}

fn text(n: usize) -> String {
    "a".repeat(n)
}

#[test]
fn each_limit_is_accepted_exactly_at_the_limit() {
    type Set = fn(&mut Envelope, usize);
    macro_rules! on {
        ($variant:ident, |$e:ident, $n:ident| $body:expr) => {
            (|env: &mut Envelope, $n: usize| match env.event.as_mut() {
                Some(Event::$variant($e)) => $body,
                _ => unreachable!("the base envelope carries this event"),
            }) as Set
        };
    }
    let cases: Vec<(&str, &str, usize, Set)> = vec![
        (
            "ID",
            "referral_made",
            ID,
            on!(ReferralMade, |e, n| e.referral_id = text(n)),
        ),
        (
            "ID",
            "incident_reported",
            ID,
            on!(IncidentReported, |e, n| e.incident_ref = text(n)),
        ),
        ("ID", "case_closed", ID, |e, n| {
            e.case_id = format!("police-a/{}", text(n - 9))
        }),
        ("ID", "case_closed", ID, |e, n| e.actor = text(n)),
        (
            "ID",
            "service_withdrawn",
            ID,
            on!(ServiceWithdrawn, |e, n| e.service_id = text(n)),
        ),
        (
            "LABEL",
            "incident_reported",
            LABEL,
            on!(IncidentReported, |e, n| e.area = text(n)),
        ),
        (
            "LABEL",
            "enrolled",
            LABEL,
            on!(Enrolled, |e, n| e.programme = text(n)),
        ),
        (
            "LABEL",
            "service_offered",
            LABEL,
            on!(ServiceOffered, |e, n| e.areas[0] = text(n)),
        ),
        (
            "TEXT",
            "incident_reported",
            TEXT,
            on!(IncidentReported, |e, n| e.narrative = text(n)),
        ),
        (
            "TEXT",
            "case_closed",
            TEXT,
            on!(CaseClosed, |e, n| e.reason =
                "é".repeat(n / 2) + &text(n % 2)),
        ),
        (
            "TEXT",
            "service_offered",
            TEXT,
            on!(ServiceOffered, |e, n| e.description = text(n)),
        ),
        (
            "DETAIL",
            "referral_made",
            DETAIL,
            on!(ReferralMade, |e, n| e
                .subject_details
                .as_mut()
                .expect("details")
                .full_name = text(n)),
        ),
        (
            "DETAIL",
            "incident_reported",
            DETAIL,
            on!(IncidentReported, |e, n| e
                .subject_details
                .as_mut()
                .expect("details")
                .address = text(n)),
        ),
        (
            "LINKED_PERSONS",
            "incident_reported",
            LINKED_PERSONS,
            on!(IncidentReported, |e, n| e.linked_persons =
                vec![LinkedPerson::default(); n]),
        ),
        (
            "LIST",
            "service_offered",
            LIST,
            on!(ServiceOffered, |e, n| e.languages = vec!["cs".into(); n]),
        ),
        (
            "SESSIONS",
            "enrolled",
            SESSIONS as usize,
            on!(Enrolled, |e, n| e.planned_sessions = n as u32),
        ),
        (
            "SESSIONS",
            "session_missed",
            SESSIONS as usize,
            on!(SessionMissed, |e, n| e.session_number = n as u32),
        ),
        (
            "EVICTION_DAYS",
            "eviction_ordered",
            EVICTION_DAYS as usize,
            on!(EvictionOrdered, |e, n| e.duration_days = n as u32),
        ),
    ];
    for (class, event, limit, set) in cases {
        assert_eq!(
            valid_at(event, limit, set),
            Ok(()),
            "{class} on {event}: at the limit"
        );
        assert!(
            matches!(valid_at(event, limit + 1, set), Err(Rejection::Invalid(_))),
            "{class} on {event}: one over the limit is accepted"
        );
    }
}
