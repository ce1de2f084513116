//! The size limit of every field an agency can make the exchange keep, checked
//! before anything is stored. What one agency may publish is bounded field by
//! field here, in message size by `[nats] max_message_bytes`, and in volume by
//! its ingress quota; request fields of the query service are bounded by
//! [`check_request`]. The table in `docs/limits.md` is this file in words.

use handoff_contract::names::is_valid_agency_id;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    ComplianceReportKind, ContactOutcome, CopyRecipient, Envelope, LinkedPerson, Participation,
    PersonalDetails, RiskConcern, TransportSeal, eviction_objection, linked_person,
    preliminary_measure,
};

use crate::rejection::Rejection;

/// Ids: case ids, pseudonyms, referral, handoff, service and incident ids, actor,
/// correlation and causation ids. Bytes.
pub const ID: usize = 128;
/// Short labels: area, instrument, programme, consent scope, age band, who asked,
/// each entry of a listing's areas and languages, a listing's phone, email and url. Bytes.
pub const LABEL: usize = 256;
/// Free text: narratives, reasons, notes, a protected area, a listing's descriptions. Bytes.
pub const TEXT: usize = 4096;
/// Each field of the personal details (name, date of birth, phone, address). Bytes.
pub const DETAIL: usize = 256;
/// Linked persons of one incident.
pub const LINKED_PERSONS: usize = 32;
/// Entries of a listing's areas, and of its languages.
pub const LIST: usize = 64;
/// Planned sessions of an enrolment, and the number of one session.
pub const SESSIONS: u32 = 1000;
/// Longest eviction, in days.
pub const EVICTION_DAYS: u32 = 366;
/// Agencies a risk alert may name besides the case's own.
pub const NOTIFY: usize = 16;
/// Entries one case keeps of each kind the statutory path and safety add (copies,
/// breaches, links, reports, safety facts, acknowledgements): past it, refused.
pub const PER_CASE: usize = 256;

/// A transport seal's encapsulated key (X25519), bytes.
pub const SEAL_KEY: usize = 32;
/// A transport seal's nonce (XChaCha20-Poly1305), bytes.
pub const SEAL_NONCE: usize = 24;
/// A transport seal's ciphertext: the private parts at their limits, sealed. Bytes.
pub const SEALED: usize = 16 * 1024;

/// Each string field of a query request (filters, tokens, ids), bytes.
pub const REQUEST_FIELD: usize = 256;
/// The stated purpose of a read, bytes.
pub const REQUEST_PURPOSE: usize = 512;
/// The largest encoded query request the server decodes, bytes.
pub const REQUEST_BYTES: usize = 16 * 1024;

/// The first field over its limit, in words a caseworker can act on.
struct Check(Result<(), Rejection>);

impl Check {
    fn new() -> Self {
        Check(Ok(()))
    }

    fn fail(&mut self, why: String) {
        if self.0.is_ok() {
            self.0 = Err(Rejection::Invalid(why));
        }
    }

    fn text(&mut self, field: &str, value: &str, limit: usize) -> &mut Self {
        if value.len() > limit {
            self.fail(format!(
                "{field} is {} bytes; at most {limit} are kept",
                value.len()
            ));
        }
        self
    }

    fn bytes(&mut self, field: &str, value: &[u8], limit: usize, exact: bool) -> &mut Self {
        if value.len() > limit || (exact && !value.is_empty() && value.len() != limit) {
            let want = if exact { "exactly" } else { "at most" };
            self.fail(format!(
                "{field} is {} bytes; it must be {want} {limit}",
                value.len()
            ));
        }
        self
    }

    fn list<T>(&mut self, field: &str, values: &[T], limit: usize) -> &mut Self {
        if values.len() > limit {
            self.fail(format!(
                "{field} has {} entries; at most {limit} are kept",
                values.len()
            ));
        }
        self
    }

    fn count(&mut self, field: &str, value: u32, limit: u32) -> &mut Self {
        if value > limit {
            self.fail(format!("{field} is {value}; at most {limit}"));
        }
        self
    }

    fn reason(&mut self, field: &str, value: i32) -> &mut Self {
        if let Err(why) = crate::reason::check(field, value) {
            self.fail(why);
        }
        self
    }

    fn choice(&mut self, field: &str, value: i32, known: bool) -> &mut Self {
        if !known {
            self.fail(format!(
                "{field} {value} is not a value this contract knows (a newer contract?)"
            ));
        }
        self
    }

    fn agency(&mut self, field: &str, value: &str) -> &mut Self {
        if !is_valid_agency_id(value) {
            self.fail(format!(
                "{field} {value:?} is not an agency id (1-64 lowercase letters, digits, '-' or '_')"
            ));
        }
        self
    }

    fn details(&mut self, field: &str, details: Option<&PersonalDetails>) -> &mut Self {
        if let Some(d) = details {
            for (name, value) in [
                ("full_name", &d.full_name),
                ("date_of_birth", &d.date_of_birth),
                ("phone", &d.phone),
                ("address", &d.address),
            ] {
                self.text(&format!("{field}.{name}"), value, DETAIL);
            }
        }
        self
    }

    fn linked(&mut self, persons: &[LinkedPerson]) -> &mut Self {
        self.list("linked_persons", persons, LINKED_PERSONS);
        for p in persons {
            self.text("linked_persons.age_band", &p.age_band, LABEL);
        }
        self
    }
}

/// Checks a transport seal's fields against their sizes, before any key agreement.
pub fn check_transport_seal(seal: &TransportSeal) -> Result<(), Rejection> {
    let mut c = Check::new();
    c.bytes(
        "transport_seal.encapsulated_key",
        &seal.encapsulated_key,
        SEAL_KEY,
        true,
    )
    .bytes("transport_seal.nonce", &seal.nonce, SEAL_NONCE, true)
    .bytes("transport_seal.ciphertext", &seal.ciphertext, SEALED, false);
    c.0
}

/// Checks every field of an envelope against its limit (ids are checked for form by
/// `validate_envelope`, which calls this).
pub fn check_fields(envelope: &Envelope) -> Result<(), Rejection> {
    let mut c = Check::new();
    if let Some(seal) = &envelope.transport_seal
        && let Err(e) = check_transport_seal(seal)
    {
        return Err(e);
    }
    c.text("actor", &envelope.actor, ID)
        .text("correlation_id", &envelope.correlation_id, ID)
        .text("causation_id", &envelope.causation_id, ID);
    let Some(event) = &envelope.event else {
        return c.0;
    };
    match event {
        Event::IncidentReported(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .text("narrative", &e.narrative, TEXT)
                .text("area", &e.area, LABEL)
                .linked(&e.linked_persons)
                .details("subject_details", e.subject_details.as_ref());
        }
        Event::EvictionOrdered(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .text("protected_area", &e.protected_area, TEXT)
                .count("duration_days", e.duration_days, EVICTION_DAYS);
            if e.duration_days == 0 {
                c.fail(format!(
                    "eviction duration_days must be between 1 and {EVICTION_DAYS}"
                ));
            }
        }
        Event::ReferralMade(e) => {
            c.text("referral_id", &e.referral_id, ID)
                .text("reason", &e.reason, TEXT)
                .details("subject_details", e.subject_details.as_ref())
                .choice(
                    "participation",
                    e.participation,
                    Participation::try_from(e.participation).is_ok(),
                );
            if !e.report_to_agency.is_empty() {
                c.agency("report_to_agency", &e.report_to_agency);
            }
        }
        Event::ReferralAcknowledged(e) => {
            c.text("referral_id", &e.referral_id, ID);
        }
        Event::ReferralAccepted(e) => {
            c.text("referral_id", &e.referral_id, ID);
        }
        Event::ReferralDeclined(e) => {
            c.text("referral_id", &e.referral_id, ID)
                .text("reason", &e.reason, TEXT)
                .reason("reason_code", e.reason_code);
        }
        Event::ContactAttempted(e) => {
            c.text("note", &e.note, TEXT);
        }
        Event::IntakeCompleted(e) => {
            c.text("note", &e.note, TEXT);
        }
        Event::Enrolled(e) => {
            c.text("programme", &e.programme, LABEL).count(
                "planned_sessions",
                e.planned_sessions,
                SESSIONS,
            );
        }
        Event::SessionAttended(e) => {
            c.count("session_number", e.session_number, SESSIONS)
                .text("note", &e.note, TEXT);
        }
        Event::SessionMissed(e) => {
            c.count("session_number", e.session_number, SESSIONS)
                .text("reason", &e.reason, TEXT);
        }
        Event::RiskAssessed(e) => {
            c.text("instrument", &e.instrument, LABEL)
                .text("note", &e.note, TEXT);
        }
        Event::HandoffRequested(e) => {
            c.text("handoff_id", &e.handoff_id, ID)
                .text("reason", &e.reason, TEXT);
        }
        Event::HandoffAccepted(e) => {
            c.text("handoff_id", &e.handoff_id, ID);
        }
        Event::HandoffDeclined(e) => {
            c.text("handoff_id", &e.handoff_id, ID)
                .text("reason", &e.reason, TEXT)
                .reason("reason_code", e.reason_code);
        }
        Event::ConsentGiven(e) => {
            c.text("scope", &e.scope, LABEL);
        }
        Event::ConsentWithdrawn(e) => {
            c.text("scope", &e.scope, LABEL);
        }
        Event::ProgrammeCompleted(e) => {
            c.text("note", &e.note, TEXT);
        }
        Event::ProgrammeDroppedOut(e) => {
            c.text("reason", &e.reason, TEXT)
                .reason("reason_code", e.reason_code);
        }
        Event::CaseClosed(e) => {
            c.text("reason", &e.reason, TEXT)
                .reason("reason_code", e.reason_code);
        }
        Event::SubjectErasureRequested(e) => {
            c.text("reason", &e.reason, TEXT)
                .text("requested_by", &e.requested_by, LABEL);
        }
        Event::ServiceOffered(e) => {
            c.text("service_id", &e.service_id, ID)
                .text("name", &e.name, TEXT)
                .text("description", &e.description, TEXT)
                .text("eligibility", &e.eligibility, TEXT)
                .text("how_to_refer", &e.how_to_refer, TEXT)
                .text("opening_hours", &e.opening_hours, TEXT)
                .text("phone", &e.phone, LABEL)
                .text("email", &e.email, LABEL)
                .text("url", &e.url, LABEL)
                .list("areas", &e.areas, LIST)
                .list("languages", &e.languages, LIST);
            for (field, list) in [("areas", &e.areas), ("languages", &e.languages)] {
                for value in list {
                    c.text(field, value, LABEL);
                }
            }
        }
        Event::ServiceWithdrawn(e) => {
            c.text("service_id", &e.service_id, ID)
                .text("reason", &e.reason, TEXT);
        }
        Event::AgencyRevoked(e) => {
            c.agency("agency", &e.agency)
                .text("reason", &e.reason, TEXT)
                .text("requested_by", &e.requested_by, LABEL);
        }
        Event::AgencyReinstated(e) => {
            c.agency("agency", &e.agency)
                .text("reason", &e.reason, TEXT)
                .text("requested_by", &e.requested_by, LABEL);
        }
        Event::EvictionCopySent(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .choice(
                    "recipient",
                    e.recipient,
                    CopyRecipient::try_from(e.recipient).is_ok(),
                )
                .agency("to_agency", &e.to_agency);
        }
        Event::EvictionCopyReceived(e) => {
            c.text("incident_ref", &e.incident_ref, ID);
        }
        Event::VictimHelpOffered(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .choice(
                    "outcome",
                    e.outcome,
                    ContactOutcome::try_from(e.outcome).is_ok(),
                )
                .text("note", &e.note, TEXT);
        }
        Event::EvictionComplianceChecked(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .text("note", &e.note, TEXT);
        }
        Event::EvictionBreached(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .text("offence_ref", &e.offence_ref, ID)
                .text("narrative", &e.narrative, TEXT);
        }
        Event::EvictionObjection(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .choice(
                    "stage",
                    e.stage,
                    eviction_objection::Stage::try_from(e.stage).is_ok(),
                )
                .text("note", &e.note, TEXT);
        }
        Event::EvictionEndedEarly(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .text("reason", &e.reason, TEXT);
        }
        Event::PreliminaryMeasure(e) => {
            c.text("incident_ref", &e.incident_ref, ID)
                .choice(
                    "stage",
                    e.stage,
                    preliminary_measure::Stage::try_from(e.stage).is_ok(),
                )
                .text("note", &e.note, TEXT);
        }
        Event::ComplianceReported(e) => {
            c.agency("to_agency", &e.to_agency)
                .choice(
                    "report",
                    e.report,
                    ComplianceReportKind::try_from(e.report).is_ok(),
                )
                .count("sessions_attended", e.sessions_attended, SESSIONS)
                .count("sessions_missed", e.sessions_missed, SESSIONS)
                .text("note", &e.note, TEXT);
        }
        Event::RiskAlertRaised(e) => {
            c.choice(
                "concern",
                e.concern,
                RiskConcern::try_from(e.concern).is_ok(),
            )
            .text("basis", &e.basis, LABEL)
            .list("notify", &e.notify, NOTIFY)
            .text("note", &e.note, TEXT);
            for agency in &e.notify {
                c.agency("notify", agency);
            }
        }
        Event::EndangeredPersonRecorded(e) => {
            c.choice(
                "role",
                e.role,
                linked_person::Role::try_from(e.role).is_ok(),
            )
            .text("age_band", &e.age_band, LABEL)
            .details("subject_details", e.subject_details.as_ref())
            .text("shelter", &e.shelter, DETAIL)
            .text("school", &e.school, DETAIL);
        }
        Event::EndangeredPersonLinked(e) => {
            c.text("protection_case_id", &e.protection_case_id, ID)
                .text("endangered_pseudonym", &e.endangered_pseudonym, ID)
                .choice(
                    "role",
                    e.role,
                    linked_person::Role::try_from(e.role).is_ok(),
                )
                .agency("support_agency", &e.support_agency);
        }
        Event::NoticeAcknowledged(e) => {
            c.text("notice_id", &e.notice_id, ID);
        }
    }
    c.0
}

/// At most `limit` bytes of `text`, cut at a character boundary and marked when cut:
/// refusals and records quote what was sent, and what was sent may be anything.
pub fn bounded(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Longest detail, id, header value or query description a receipt, quarantine entry
/// or access record keeps, bytes.
pub const KEPT_TEXT: usize = 1024;

/// A query request field over its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes; at most {limit} are accepted")]
pub struct RequestTooLong {
    /// The field's name.
    pub field: String,
    /// Its length.
    pub len: usize,
    /// Its limit.
    pub limit: usize,
}

/// The limit of a query request's string field, by its name.
pub fn request_limit(field: &str) -> usize {
    match field {
        "purpose" => REQUEST_PURPOSE,
        _ => REQUEST_FIELD,
    }
}

/// Checks every string field of a query request, however nested, against
/// [`request_limit`]: generic over the contract's descriptors, so no field of a
/// request, present or future, goes unchecked. `full_name` is the request's
/// message name (`handoff.v1.GetCaseRequest`), `encoded` its bytes.
pub fn check_request(full_name: &str, encoded: &[u8]) -> Result<(), RequestTooLong> {
    use prost_reflect::{DynamicMessage, ReflectMessage, Value};
    let Some(desc) = handoff_contract::json::pool().get_message_by_name(full_name) else {
        return Ok(());
    };
    let Ok(message) = DynamicMessage::decode(desc, encoded) else {
        return Ok(()); // the server's own decoder has already accepted it
    };
    fn walk(message: &DynamicMessage) -> Result<(), RequestTooLong> {
        let _ = ReflectMessage::descriptor(message);
        for (field, value) in message.fields() {
            let check = |s: &str| {
                let limit = request_limit(field.name());
                if s.len() > limit {
                    return Err(RequestTooLong {
                        field: field.name().to_string(),
                        len: s.len(),
                        limit,
                    });
                }
                Ok(())
            };
            match value {
                Value::String(s) => check(s)?,
                Value::Message(m) => walk(m)?,
                Value::List(items) => {
                    if items.len() > LIST {
                        return Err(RequestTooLong {
                            field: field.name().to_string(),
                            len: items.len(),
                            limit: LIST,
                        });
                    }
                    for item in items {
                        match item {
                            Value::String(s) => check(s)?,
                            Value::Message(m) => walk(m)?,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(&message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::{GetCaseRequest, ListServicesRequest};
    use prost::Message;

    #[test]
    fn kept_text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded(&"é".repeat(10), 5);
        assert!(cut.starts_with("éé") && cut.ends_with("(20 bytes)"));
    }

    #[test]
    fn request_fields_are_bounded_by_name() {
        let ok = GetCaseRequest {
            case_id: "police-north/k".into(),
            purpose: "p".repeat(REQUEST_PURPOSE),
        };
        assert!(check_request("handoff.v1.GetCaseRequest", &ok.encode_to_vec()).is_ok());
        let long = GetCaseRequest {
            purpose: "p".repeat(REQUEST_PURPOSE + 1),
            ..ok.clone()
        };
        let err = check_request("handoff.v1.GetCaseRequest", &long.encode_to_vec())
            .expect_err("too long");
        assert_eq!(err.field, "purpose");
        let filter = ListServicesRequest {
            text: "t".repeat(REQUEST_FIELD + 1),
            ..Default::default()
        };
        assert!(check_request("handoff.v1.ListServicesRequest", &filter.encode_to_vec()).is_err());
    }
}
