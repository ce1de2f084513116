//! The casework adapter: activities (acknowledging and answering referrals,
//! contact attempts, intake, enrolment, sessions, completion or drop-out,
//! handoffs) per `schemas/programme-activity.schema.json`, as the programme
//! provider, the intervention centre and probation record them; and the steps of
//! an eviction's statutory path and the endangered person's side, as the police,
//! the centre, the court, the programme and victim support record them
//! (`crate::statutory`).

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use serde::Deserialize;
use serde_json::Value;

use crate::document::{from_value, parse_time};
use crate::schema::Schema;
use crate::{AdapterError, AgencySecret, ids};

/// One casework activity, as the schema describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Activity {
    /// Which event it becomes (the event type's name).
    pub activity: String,
    /// The agency's own id of the activity.
    pub activity_ref: String,
    /// The case (derived from `protection_ref` for `endangered_person_recorded`).
    #[serde(default)]
    pub case_id: String,
    /// The case's subject (derived from the person's ref for `endangered_person_recorded`).
    #[serde(default)]
    pub subject_pseudonym: String,
    /// RFC 3339.
    pub occurred_at: String,
    /// Who did it.
    pub worker: String,
    /// Optimistic concurrency, if the agency's system tracks case versions.
    pub expected_version: Option<u64>,
    /// Referral answered or made.
    pub referral_id: Option<String>,
    /// Handoff requested or answered.
    pub handoff_id: Option<String>,
    /// Addressee of a referral or handoff.
    pub to_agency: Option<String>,
    /// A referral's participation: `voluntary`, `court_ordered`, `probation_condition`.
    pub participation: Option<String>,
    /// The court or probation a referral's compliance reports go to.
    pub report_to_agency: Option<String>,
    /// Contact channel.
    pub channel: Option<String>,
    /// Contact outcome.
    pub outcome: Option<String>,
    /// Programme name.
    pub programme: Option<String>,
    /// Planned sessions.
    pub planned_sessions: Option<u32>,
    /// Session number.
    pub session_number: Option<u32>,
    /// Missed session excused.
    #[serde(default)]
    pub excused: bool,
    /// Risk instrument.
    pub risk_instrument: Option<String>,
    /// Risk level.
    pub risk_level: Option<String>,
    /// Consent scope.
    pub scope: Option<String>,
    /// Reason (decline, drop-out, referral, closure).
    pub reason: Option<String>,
    /// Reason code of a decline, drop-out (exclusion) or closure: `no_capacity`, ….
    pub reason_code: Option<String>,
    /// Free note.
    pub note: Option<String>,
    /// The statutory path's and the endangered person's fields.
    #[serde(flatten)]
    pub statutory: crate::statutory::StatutoryFields,
}

/// Turns one validated activity into its event, published by `agency` (event id keyed by its `secret`).
pub fn event(
    agency: &str,
    secret: &AgencySecret,
    document: &Value,
) -> Result<Envelope, AdapterError> {
    Schema::ProgrammeActivity
        .validate(document)
        .map_err(AdapterError::Invalid)?;
    let a: Activity = from_value(document)?;
    let at = parse_time("occurred_at", &a.occurred_at)?;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    let code = reason_code(a.reason_code.as_deref())?;
    let event = match a.activity.as_str() {
        "referral_acknowledged" => Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: s(&a.referral_id),
        }),
        "referral_accepted" => Event::ReferralAccepted(ReferralAccepted {
            referral_id: s(&a.referral_id),
        }),
        "referral_declined" => Event::ReferralDeclined(ReferralDeclined {
            referral_id: s(&a.referral_id),
            reason: s(&a.reason),
            reason_code: code,
        }),
        "referral_made" => Event::ReferralMade(ReferralMade {
            referral_id: s(&a.referral_id),
            to_agency: s(&a.to_agency),
            reason: s(&a.reason),
            court_ordered: false,
            subject_details: None,
            participation: crate::document::named(
                "PARTICIPATION_",
                a.participation.as_deref(),
                Participation::from_str_name,
            ),
            report_to_agency: s(&a.report_to_agency),
        }),
        "contact_attempted" => Event::ContactAttempted(ContactAttempted {
            channel: match a.channel.as_deref() {
                Some("phone") => ContactChannel::Phone,
                Some("letter") => ContactChannel::Letter,
                Some("in_person") => ContactChannel::InPerson,
                Some("home_visit") => ContactChannel::HomeVisit,
                _ => ContactChannel::Unspecified,
            } as i32,
            outcome: crate::document::named(
                "CONTACT_OUTCOME_",
                a.outcome.as_deref(),
                ContactOutcome::from_str_name,
            ),
            note: s(&a.note),
        }),
        "intake_completed" => Event::IntakeCompleted(IntakeCompleted { note: s(&a.note) }),
        "enrolled" => Event::Enrolled(Enrolled {
            programme: s(&a.programme),
            planned_sessions: a.planned_sessions.unwrap_or(0),
        }),
        "session_attended" => Event::SessionAttended(SessionAttended {
            session_number: a.session_number.unwrap_or(0),
            note: s(&a.note),
        }),
        "session_missed" => Event::SessionMissed(SessionMissed {
            session_number: a.session_number.unwrap_or(0),
            reason: s(&a.reason),
            excused: a.excused,
        }),
        "risk_assessed" => Event::RiskAssessed(RiskAssessed {
            instrument: s(&a.risk_instrument),
            level: match a.risk_level.as_deref() {
                Some("low") => RiskLevel::Low,
                Some("medium") => RiskLevel::Medium,
                Some("high") => RiskLevel::High,
                Some("very_high") => RiskLevel::VeryHigh,
                _ => RiskLevel::Unspecified,
            } as i32,
            note: s(&a.note),
        }),
        "handoff_requested" => Event::HandoffRequested(HandoffRequested {
            handoff_id: s(&a.handoff_id),
            to_agency: s(&a.to_agency),
            reason: s(&a.reason),
        }),
        "handoff_accepted" => Event::HandoffAccepted(HandoffAccepted {
            handoff_id: s(&a.handoff_id),
        }),
        "handoff_declined" => Event::HandoffDeclined(HandoffDeclined {
            handoff_id: s(&a.handoff_id),
            reason: s(&a.reason),
            reason_code: code,
        }),
        "consent_given" => Event::ConsentGiven(ConsentGiven { scope: s(&a.scope) }),
        "consent_withdrawn" => Event::ConsentWithdrawn(ConsentWithdrawn { scope: s(&a.scope) }),
        "programme_completed" => Event::ProgrammeCompleted(ProgrammeCompleted { note: s(&a.note) }),
        "programme_dropped_out" => Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason: s(&a.reason),
            reason_code: code,
        }),
        "case_closed" => Event::CaseClosed(CaseClosed {
            reason: s(&a.reason),
            reason_code: code,
        }),
        other => match crate::statutory::event(agency, secret, other, &a)? {
            Some(event) => event,
            None => {
                return Err(AdapterError::Invalid(vec![format!(
                    "/activity: unknown activity {other:?}"
                )]));
            }
        },
    };
    let (case_id, subject_pseudonym) = match &event {
        // A protection case is the agency's own: its ids come from its references.
        Event::EndangeredPersonRecorded(_) => {
            crate::statutory::protection_ids(agency, secret, &a.statutory)?
        }
        _ => (a.case_id.clone(), a.subject_pseudonym.clone()),
    };
    Ok(Envelope {
        event_id: ids::event_id(
            secret,
            handoff_contract::time::to_unix_ms(&at),
            &[agency, &case_id, &a.activity, &a.activity_ref],
        ),
        source_agency: agency.to_string(),
        case_id,
        subject_pseudonym,
        occurred_at: Some(at),
        actor: a.worker,
        expected_version: a.expected_version,
        correlation_id: String::new(),
        causation_id: String::new(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        transport_seal: None,
        event: Some(event),
    })
}

/// The wire value of a document's `reason_code` (0 when it has none).
fn reason_code(name: Option<&str>) -> Result<i32, AdapterError> {
    let Some(name) = name else {
        return Ok(0);
    };
    handoff_domain::reason::parse(name)
        .filter(|r| *r != OutcomeReason::Unspecified)
        .map(|r| r as i32)
        .ok_or_else(|| {
            AdapterError::Invalid(vec![format!(
                "/reason_code: {name:?} is not a reason code; use one of {}",
                handoff_domain::reason::names()
            )])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_map_by_name_and_unknown_ones_are_refused() {
        assert_eq!(reason_code(None).ok(), Some(0));
        assert_eq!(
            reason_code(Some("excluded_violence_or_threats")).ok(),
            Some(OutcomeReason::ExcludedViolenceOrThreats as i32)
        );
        for bad in ["unspecified", "vylouceni", ""] {
            assert!(reason_code(Some(bad)).is_err(), "{bad}");
        }
    }
}
