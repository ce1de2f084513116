//! The service directory: which services agencies offer, folded from their
//! `ServiceOffered` and `ServiceWithdrawn` events. These belong to no case and
//! no person; a listing is keyed by (agency, service id).

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{Envelope, ServiceListing, ServiceOffered};

use crate::agency::Registry;
use crate::case::Position;
use crate::rejection::Rejection;
use crate::validate::publishable;

/// What an accepted directory event does to the directory.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryChange {
    /// The listing is added or replaces the one with the same agency and service id.
    Offered(Box<ServiceListing>),
    /// The listing of this agency's service leaves the directory.
    Withdrawn {
        /// The offering agency.
        agency: String,
        /// Its service id.
        service_id: String,
    },
}

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::Invalid(msg.into())
}

/// Structural checks of an offer (called by `validate_envelope`).
pub fn validate_offer(offer: &ServiceOffered) -> Result<(), Rejection> {
    if offer.name.trim().is_empty() {
        return Err(invalid("a service offer needs a name"));
    }
    // Lengths are checked with every other field's (`limits`).
    for (field, list) in [("areas", &offer.areas), ("languages", &offer.languages)] {
        if list.iter().any(|v| v.trim().is_empty()) {
            return Err(invalid(format!("{field} holds an empty entry")));
        }
    }
    if !offer.email.is_empty() && !is_email(&offer.email) {
        return Err(invalid(format!(
            "email {:?} is not an address like name@example.org",
            offer.email
        )));
    }
    if !offer.url.is_empty() && !is_web_url(&offer.url) {
        return Err(invalid(format!(
            "url {:?} is not an http:// or https:// address without spaces",
            offer.url
        )));
    }
    if !offer.phone.is_empty() && !is_phone(&offer.phone) {
        return Err(invalid(format!(
            "phone {:?} may hold only digits, spaces and + ( ) - / (at least 3 digits)",
            offer.phone
        )));
    }
    if offer.phone.is_empty() && offer.email.is_empty() && offer.url.is_empty() {
        return Err(invalid(
            "a service offer needs a way to reach it: phone, email or url",
        ));
    }
    Ok(())
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
}

fn is_web_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    })
}

fn is_phone(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || " +()-/".contains(c))
        && s.chars().filter(char::is_ascii_digit).count() >= 3
}

/// Decides a directory event against the listing it names as it stands
/// (`current`: `None` if that agency does not offer that service) and returns
/// what it does to the directory.
pub fn decide(
    current: Option<&ServiceListing>,
    envelope: &Envelope,
    registry: &Registry,
    at: Position,
) -> Result<DirectoryChange, Rejection> {
    let (event, kind_name) = publishable(envelope, registry)?;
    let source = envelope.source_agency.as_str();
    match event {
        Event::ServiceOffered(offer) => Ok(DirectoryChange::Offered(Box::new(ServiceListing {
            agency: source.to_string(),
            agency_name: String::new(),
            offer: Some(offer.clone()),
            updated_at: Some(handoff_contract::time::from_unix_ms(at.recorded_at_ms)),
            sequence: at.sequence,
        }))),
        Event::ServiceWithdrawn(w) => {
            if current.is_none() {
                return Err(invalid(format!(
                    "agency {source} offers no service {:?} (never offered, or already withdrawn)",
                    w.service_id
                )));
            }
            Ok(DirectoryChange::Withdrawn {
                agency: source.to_string(),
                service_id: w.service_id.clone(),
            })
        }
        _ => Err(invalid(format!(
            "{kind_name} is about a case, not the service directory"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> ServiceOffered {
        ServiceOffered {
            service_id: "men-programme".into(),
            name: "Programme".into(),
            email: "info@example.org".into(),
            ..ServiceOffered::default()
        }
    }

    #[test]
    fn offers_need_a_name_and_well_formed_contacts() {
        assert!(validate_offer(&offer()).is_ok());
        let bad = |f: fn(&mut ServiceOffered)| {
            let mut o = offer();
            f(&mut o);
            validate_offer(&o).expect_err("refused").to_string()
        };
        assert!(bad(|o| o.name = " ".into()).contains("needs a name"));
        assert!(bad(|o| o.email = "nobody".into()).contains("email"));
        assert!(bad(|o| o.url = "javascript:alert(1)".into()).contains("url"));
        assert!(bad(|o| o.phone = "call us".into()).contains("phone"));
        assert!(bad(|o| o.email.clear()).contains("a way to reach it"));
    }
}
