//! Structural checks of an envelope, before any case state is consulted.

use handoff_contract::SCHEMA_VERSION;
use handoff_contract::names::{EXCHANGE_SOURCE, is_valid_agency_id};
use handoff_contract::v1::Envelope;
use handoff_contract::v1::envelope::Event;

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
        }
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
