//! The events honest agencies publish in the scenarios: the steps of casework and of
//! an eviction's statutory path, and the records that open cases.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_domain::AgencyKind;

use super::scenario::*;

/// The next step of an eviction's statutory path an agency of `kind` may take.
pub(crate) fn eviction_step(v: &CaseView, kind: AgencyKind, flag: u8) -> Event {
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

pub(crate) fn copy(recipient: CopyRecipient, to: &str) -> Event {
    Event::EvictionCopySent(EvictionCopySent {
        incident_ref: String::new(),
        recipient: recipient as i32,
        to_agency: to.into(),
    })
}

pub(crate) fn incident(n: u64) -> Event {
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

pub(crate) fn eviction(n: u64) -> Event {
    Event::EvictionOrdered(EvictionOrdered {
        incident_ref: format!("I{n}"),
        duration_days: 14,
        ..EvictionOrdered::default()
    })
}

pub(crate) fn referral(n: u64, to: &str) -> Event {
    Event::ReferralMade(ReferralMade {
        referral_id: format!("r{n}"),
        to_agency: to.into(),
        reason: "programme".into(),
        subject_details: details(),
        ..ReferralMade::default()
    })
}

pub(crate) fn offer(service_id: String) -> ServiceOffered {
    ServiceOffered {
        service_id,
        name: "Programme".into(),
        email: "info@example.org".into(),
        areas: vec!["north".into()],
        ..ServiceOffered::default()
    }
}

/// The holder's next step of work on a case, by its status.
pub(crate) fn casework(v: &CaseView, kind: AgencyKind, flag: u8) -> Event {
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
