//! The generic adapters: any event as JSON (`schemas/event.schema.json`),
//! and the referral form any agency can send (`schemas/referral-form.schema.json`).

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use serde::Deserialize;
use serde_json::Value;

use crate::document::{from_value, parse_time};
use crate::schema::Schema;
use crate::{AdapterError, AgencySecret, ids};

/// Turns a JSON event (canonical protobuf JSON of `Envelope`) into an envelope from `agency`.
/// A missing event id is generated (UUIDv7); a missing source is `agency`.
pub fn event(agency: &str, document: &Value) -> Result<Envelope, AdapterError> {
    Schema::Event
        .validate(document)
        .map_err(AdapterError::Invalid)?;
    let mut doc = document.clone();
    if let Value::Object(map) = &mut doc {
        map.entry("source_agency")
            .or_insert_with(|| Value::from(agency));
        map.entry("schema_version")
            .or_insert_with(|| Value::from(handoff_contract::SCHEMA_VERSION));
        map.entry("event_id")
            .or_insert_with(|| Value::from(uuid::Uuid::now_v7().to_string()));
    }
    let envelope = handoff_contract::json::envelope_from_json(&doc)
        .map_err(|e| AdapterError::Invalid(vec![e.to_string()]))?;
    if envelope.source_agency != agency {
        return Err(AdapterError::Invalid(vec![format!(
            "/source_agency: {} is not this adapter's agency {agency}; an agency publishes only as itself",
            envelope.source_agency
        )]));
    }
    Ok(envelope)
}

/// A referral form, as the schema describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferralForm {
    /// The referrer's reference.
    pub referral_ref: String,
    /// RFC 3339.
    pub referred_at: String,
    /// Who refers.
    pub referrer: String,
    /// Addressee.
    pub to_agency: String,
    /// Why.
    pub reason: String,
    /// Court-ordered.
    #[serde(default)]
    pub court_ordered: bool,
    /// `voluntary`, `court_ordered` or `probation_condition`.
    pub participation: Option<String>,
    /// The court or probation that receives the compliance reports.
    pub report_to_agency: Option<String>,
    /// Existing case, if any.
    pub case_id: Option<String>,
    /// Existing case's subject.
    pub subject_pseudonym: Option<String>,
    /// The person, for a new case.
    pub person: Option<FormPerson>,
}

/// The referred person on a form.
#[derive(Debug, Clone, Deserialize)]
pub struct FormPerson {
    /// The referrer's own id of the person.
    pub person_ref: String,
    /// Name.
    pub full_name: String,
    /// ISO date.
    pub date_of_birth: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Address.
    pub address: Option<String>,
}

impl FormPerson {
    /// The person's details as the contract carries them (sealed before they leave).
    pub fn details(&self) -> PersonalDetails {
        PersonalDetails {
            full_name: self.full_name.clone(),
            date_of_birth: self.date_of_birth.clone().unwrap_or_default(),
            phone: self.phone.clone().unwrap_or_default(),
            address: self.address.clone().unwrap_or_default(),
        }
    }
}

/// Turns one validated referral form into a `referral_made` event from `agency`
/// (ids keyed by its `secret`).
pub fn referral(
    agency: &str,
    secret: &AgencySecret,
    document: &Value,
) -> Result<Envelope, AdapterError> {
    Schema::ReferralForm
        .validate(document)
        .map_err(AdapterError::Invalid)?;
    let form: ReferralForm = from_value(document)?;
    let at = parse_time("referred_at", &form.referred_at)?;
    let (case_id, subject, details, expected) = match (&form.case_id, &form.person) {
        (Some(case), _) => (
            case.clone(),
            form.subject_pseudonym.clone().unwrap_or_default(),
            None,
            None,
        ),
        (None, Some(p)) => (
            ids::case_id(secret, agency, &form.referral_ref),
            ids::pseudonym(secret, agency, &p.person_ref),
            Some(p.details()),
            Some(0),
        ),
        (None, None) => {
            return Err(AdapterError::Invalid(vec![
                "a referral needs a case_id or a person".into(),
            ]));
        }
    };
    Ok(Envelope {
        event_id: ids::event_id(
            secret,
            handoff_contract::time::to_unix_ms(&at),
            &[agency, &form.referral_ref, "referral"],
        ),
        source_agency: agency.to_string(),
        case_id,
        subject_pseudonym: subject,
        occurred_at: Some(at),
        actor: form.referrer,
        expected_version: expected,
        correlation_id: String::new(),
        causation_id: String::new(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        transport_seal: None,
        event: Some(Event::ReferralMade(ReferralMade {
            referral_id: ids::step_id(secret, "ref", &[agency, &form.referral_ref]),
            to_agency: form.to_agency,
            reason: form.reason,
            court_ordered: form.court_ordered,
            subject_details: details,
            participation: crate::document::named(
                "PARTICIPATION_",
                form.participation.as_deref(),
                Participation::from_str_name,
            ),
            report_to_agency: form.report_to_agency.unwrap_or_default(),
        })),
    })
}
