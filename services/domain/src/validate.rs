//! Structural checks of an envelope, before any case state is consulted.

use handoff_contract::SCHEMA_VERSION;
use handoff_contract::names::{EXCHANGE_SOURCE, is_valid_agency_id};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    CopyRecipient, Envelope, Participation, linked_person, preliminary_measure,
};

use crate::rejection::Rejection;

use crate::effect::Target;
use crate::limits::ID as MAX_ID_LEN;

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::Invalid(msg.into())
}

fn check_id(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    if value.len() > MAX_ID_LEN || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "{field} must be at most {MAX_ID_LEN} bytes without spaces or control characters"
        )));
    }
    Ok(())
}

/// An id of the form `<agency>/<local part>` (see `ids`).
fn owned_id(field: &str, value: &str) -> Result<(), Rejection> {
    check_id(field, value)?;
    if crate::ids::owner(value).is_none() {
        return Err(invalid(format!(
            "{field} {value:?} must be written <agency id>/<local part>, under the agency that introduced it"
        )));
    }
    Ok(())
}

/// An endangered person is a victim or a child.
fn endangered_role(role: i32) -> Result<(), Rejection> {
    match linked_person::Role::try_from(role) {
        Ok(linked_person::Role::Victim | linked_person::Role::Child) => Ok(()),
        _ => Err(invalid(
            "role must be victim or child for an endangered person",
        )),
    }
}

/// Checks what every envelope needs regardless of the case: ids, version, timestamps,
/// and every field's size limit.
pub fn validate_envelope(envelope: &Envelope) -> Result<(), Rejection> {
    match envelope.schema_version {
        0 => {
            return Err(invalid(
                "schema_version is missing (this exchange writes 1)",
            ));
        }
        v if v != SCHEMA_VERSION => {
            return Err(Rejection::UnsupportedSchemaVersion {
                found: v,
                supported: SCHEMA_VERSION,
            });
        }
        _ => {}
    }
    let id = uuid::Uuid::try_parse(&envelope.event_id)
        .map_err(|_| invalid(format!("event_id {:?} is not a UUID", envelope.event_id)))?;
    if id.get_version_num() != 7 {
        return Err(invalid(format!(
            "event_id {} is a version {} UUID; use UUIDv7",
            envelope.event_id,
            id.get_version_num()
        )));
    }
    if !is_valid_agency_id(&envelope.source_agency) {
        return Err(invalid(format!(
            "source_agency {:?} is not a valid agency id",
            envelope.source_agency
        )));
    }
    let from_exchange = envelope.source_agency == EXCHANGE_SOURCE;
    let Some(target) = crate::effect::target(envelope) else {
        return Err(invalid(
            "the envelope carries no event (unknown event type from a newer contract?)",
        ));
    };
    let none = |what: &str| -> Result<(), Rejection> {
        if !envelope.case_id.is_empty() || !envelope.subject_pseudonym.is_empty() {
            return Err(invalid(format!(
                "{what}: leave case_id and subject_pseudonym empty"
            )));
        }
        Ok(())
    };
    match target {
        // A listing describes the agency's own service: no case, no person.
        Target::Listing { .. } => {
            none("a service listing is about the agency, not a case or a person")?
        }
        Target::Agency(_) if !from_exchange => {
            return Err(invalid("only the exchange revokes or reinstates agencies"));
        }
        Target::Agency(_) => none("a revocation is about an agency, not a case or a person")?,
        Target::Subject(subject) => {
            // The exchange's erasure is about a subject everywhere, not one case.
            if !envelope.case_id.is_empty() {
                return Err(invalid(
                    "an erasure from the exchange names a subject, not a case: leave case_id empty",
                ));
            }
            owned_id("subject_pseudonym", subject)?;
        }
        Target::Case(_) if from_exchange => {
            return Err(invalid(
                "the exchange publishes only erasures and revocations under its own name",
            ));
        }
        Target::Case(case_id) => {
            owned_id("case_id", case_id)?;
            owned_id("subject_pseudonym", &envelope.subject_pseudonym)?;
        }
    }
    match &envelope.occurred_at {
        None => return Err(invalid("occurred_at is missing")),
        Some(ts) if ts.nanos < 0 || ts.nanos >= 1_000_000_000 => {
            return Err(invalid("occurred_at has out-of-range nanoseconds"));
        }
        Some(_) => {}
    }
    let Some(event) = &envelope.event else {
        return Err(invalid("the envelope carries no event"));
    };
    let need = |field: &str, value: &str| check_id(field, value);
    match event {
        Event::ReferralMade(e) => {
            need("referral_id", &e.referral_id)?;
            need("to_agency", &e.to_agency)?;
            let ordered = matches!(
                Participation::try_from(e.participation),
                Ok(Participation::CourtOrdered | Participation::ProbationCondition)
            );
            match (ordered, e.report_to_agency.is_empty()) {
                (true, true) => {
                    return Err(invalid(
                        "a court-ordered participation or probation condition names report_to_agency, the court or probation that receives the compliance reports",
                    ));
                }
                (false, false) => {
                    return Err(invalid(
                        "report_to_agency is only for a participation that is court-ordered or a probation condition",
                    ));
                }
                _ => {}
            }
        }
        Event::EvictionCopySent(e) => {
            if e.recipient == CopyRecipient::Unspecified as i32 {
                return Err(invalid(
                    "recipient is missing: intervention centre, child protection or court",
                ));
            }
            need("to_agency", &e.to_agency)?;
        }
        Event::EvictionObjection(e) if e.stage == 0 => {
            return Err(invalid("stage is missing: filed, upheld or dismissed"));
        }
        Event::PreliminaryMeasure(e) => {
            if e.stage == 0 {
                return Err(invalid(
                    "stage is missing: petitioned, granted, refused, extension_petitioned, extended or ended",
                ));
            }
            if e.stage == preliminary_measure::Stage::Extended as i32 && e.until.is_none() {
                return Err(invalid(
                    "an extended preliminary measure needs `until`, its new end",
                ));
            }
        }
        Event::ComplianceReported(e) => {
            need("to_agency", &e.to_agency)?;
            if e.report == 0 {
                return Err(invalid(
                    "report is missing: attendance, completion, drop_out or exclusion",
                ));
            }
        }
        Event::RiskAlertRaised(e) => {
            if e.concern == 0 {
                return Err(invalid(
                    "concern is missing: imminent_danger or child_at_risk",
                ));
            }
            if e.basis.trim().is_empty() {
                return Err(invalid(
                    "a risk alert shares without consent: name its legal basis in `basis`",
                ));
            }
        }
        Event::EndangeredPersonRecorded(e) => endangered_role(e.role)?,
        Event::EndangeredPersonLinked(e) => {
            owned_id("protection_case_id", &e.protection_case_id)?;
            owned_id("endangered_pseudonym", &e.endangered_pseudonym)?;
            need("support_agency", &e.support_agency)?;
            endangered_role(e.role)?;
        }
        Event::NoticeAcknowledged(e) => need("notice_id", &e.notice_id)?,
        Event::SubjectErasureRequested(e) if e.reason.trim().is_empty() => {
            return Err(invalid("an erasure needs a reason, for the record"));
        }
        Event::ReferralAcknowledged(e) => need("referral_id", &e.referral_id)?,
        Event::ReferralAccepted(e) => need("referral_id", &e.referral_id)?,
        Event::ReferralDeclined(e) => need("referral_id", &e.referral_id)?,
        Event::HandoffRequested(e) => {
            need("handoff_id", &e.handoff_id)?;
            need("to_agency", &e.to_agency)?;
        }
        Event::HandoffAccepted(e) => need("handoff_id", &e.handoff_id)?,
        Event::HandoffDeclined(e) => need("handoff_id", &e.handoff_id)?,
        Event::ServiceOffered(e) => {
            need("service_id", &e.service_id)?;
            crate::directory::validate_offer(e)?;
        }
        Event::ServiceWithdrawn(e) => need("service_id", &e.service_id)?,
        Event::AgencyRevoked(e) => need("agency", &e.agency)?,
        Event::AgencyReinstated(e) => need("agency", &e.agency)?,
        _ => {}
    }
    crate::private::check_references(envelope)?;
    crate::limits::check_fields(envelope)
}

/// Checks the envelope's structure and that its source is a registered agency whose
/// kind may publish its event type; returns the event and its type name. Shared by
/// the case fold and the directory so both refuse the same way.
pub fn publishable<'e>(
    envelope: &'e Envelope,
    registry: &crate::agency::Registry,
) -> Result<(&'e Event, &'static str), Rejection> {
    validate_envelope(envelope)?;
    let event = envelope
        .event
        .as_ref()
        .ok_or_else(|| invalid("the envelope carries no event"))?;
    let kind_name = handoff_contract::names::event_type(event);
    let source = envelope.source_agency.as_str();
    let agency = registry
        .get(source)
        .ok_or_else(|| Rejection::UnknownAgency(source.to_string()))?;
    if !agency.kind.may_publish(kind_name) {
        return Err(Rejection::KindMayNotPublish {
            kind: agency.kind,
            event_type: kind_name,
        });
    }
    Ok((event, kind_name))
}
