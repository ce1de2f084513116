//! The directory adapter: an organisation's service listing
//! (`schemas/service-listing.schema.json`) becomes a `service_offered` event,
//! or `service_withdrawn` when the listing says so.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use serde::Deserialize;
use serde_json::Value;

use crate::document::{from_value, parse_time};
use crate::schema::Schema;
use crate::{AdapterError, AgencySecret, ids};

/// A service listing, as the schema describes it.
#[derive(Debug, Clone, Deserialize)]
struct Listing {
    service_id: String,
    listed_at: String,
    listed_by: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    eligibility: String,
    #[serde(default)]
    areas: Vec<String>,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    how_to_refer: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    opening_hours: String,
    withdrawn: Option<Withdrawal>,
}

#[derive(Debug, Clone, Deserialize)]
struct Withdrawal {
    reason: String,
}

/// Turns one validated listing into the directory event from `agency`. Directory
/// events belong to no case. The event id comes from the agency, the service and
/// `listed_at` (keyed by the agency's `secret`), so re-sending a listing is a
/// duplicate and a new version is not.
pub fn listing(
    agency: &str,
    secret: &AgencySecret,
    document: &Value,
) -> Result<Envelope, AdapterError> {
    Schema::ServiceListing
        .validate(document)
        .map_err(AdapterError::Invalid)?;
    let l: Listing = from_value(document)?;
    let at = parse_time("/listed_at", &l.listed_at)?;
    let unix_ms = handoff_contract::time::to_unix_ms(&at);
    let (kind, event) = match l.withdrawn {
        Some(w) => (
            "withdrawn",
            Event::ServiceWithdrawn(ServiceWithdrawn {
                service_id: l.service_id.clone(),
                reason: w.reason,
            }),
        ),
        None => (
            "offered",
            Event::ServiceOffered(ServiceOffered {
                service_id: l.service_id.clone(),
                name: l.name,
                description: l.description,
                eligibility: l.eligibility,
                areas: l.areas,
                languages: l.languages,
                how_to_refer: l.how_to_refer,
                phone: l.phone,
                email: l.email,
                url: l.url,
                opening_hours: l.opening_hours,
            }),
        ),
    };
    Ok(Envelope {
        event_id: ids::event_id(
            secret,
            unix_ms,
            &["handoff-listing", agency, &l.service_id, kind, &l.listed_at],
        ),
        source_agency: agency.to_string(),
        occurred_at: Some(at),
        actor: l.listed_by,
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(event),
        ..Envelope::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> AgencySecret {
        AgencySecret::from_bytes([7; 32])
    }

    fn offer() -> Value {
        json!({
            "service_id": "programme-men-north",
            "listed_at": "2026-11-02T09:00:00Z",
            "listed_by": "programme lead",
            "name": "Anti-violence programme for men",
            "areas": ["North"],
            "languages": ["cs"],
            "phone": "+420 387 000 000"
        })
    }

    #[test]
    fn a_listing_becomes_an_offer_without_a_case_and_with_a_stable_id() {
        let e = listing("ngo-men-north", &secret(), &offer()).expect("valid");
        assert!(e.case_id.is_empty() && e.subject_pseudonym.is_empty());
        assert_eq!(e.source_agency, "ngo-men-north");
        let Some(Event::ServiceOffered(o)) = &e.event else {
            panic!("not an offer: {e:?}");
        };
        assert_eq!(
            (o.name.as_str(), o.areas.len()),
            ("Anti-violence programme for men", 1)
        );
        let again = listing("ngo-men-north", &secret(), &offer()).expect("valid");
        assert_eq!(e.event_id, again.event_id, "re-sending is idempotent");
        let mut newer = offer();
        newer["listed_at"] = json!("2026-11-03T09:00:00Z");
        assert_ne!(
            listing("ngo-men-north", &secret(), &newer)
                .expect("valid")
                .event_id,
            e.event_id
        );
    }

    #[test]
    fn a_withdrawal_needs_no_name_and_an_offer_needs_a_contact() {
        let withdrawn = json!({
            "service_id": "programme-men-north",
            "listed_at": "2026-12-01T09:00:00Z",
            "listed_by": "programme lead",
            "withdrawn": {"reason": "funding ended"}
        });
        let e = listing("ngo-men-north", &secret(), &withdrawn).expect("valid");
        assert!(matches!(e.event, Some(Event::ServiceWithdrawn(_))));
        let mut no_contact = offer();
        no_contact.as_object_mut().map(|m| m.remove("phone"));
        assert!(matches!(
            listing("ngo-men-north", &secret(), &no_contact),
            Err(AdapterError::Invalid(_))
        ));
    }
}
