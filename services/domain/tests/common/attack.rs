//! The adversary's events: anything, its fields drawn from what the scenario has
//! shown so far.

use handoff_contract::names::EVENT_TYPES;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::{Target, may_write, target};
use prost::Message;

use super::scenario::*;
use super::steps::*;
use super::*;

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
