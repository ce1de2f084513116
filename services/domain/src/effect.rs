//! What an event affects: the one rule that ingest, the rebuild and the query
//! service's replays all route events by, so none of them can disagree about
//! which projection an event belongs to.

use handoff_contract::names::EXCHANGE_SOURCE;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{CaseView, Envelope};

use crate::directory::DirectoryChange;

/// What an event is about, read from the envelope alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'e> {
    /// One case (every event of an agency except its directory listings).
    Case(&'e str),
    /// One listing of the service directory: the publishing agency's own service.
    Listing {
        /// The offering agency (always the publisher).
        agency: &'e str,
        /// Its service id.
        service_id: &'e str,
    },
    /// A subject everywhere: an erasure the exchange itself publishes.
    Subject(&'e str),
    /// An agency of the registry: a revocation or reinstatement the exchange publishes.
    Agency(&'e str),
}

/// What `envelope` is about (`None` when it carries no event).
pub fn target(envelope: &Envelope) -> Option<Target<'_>> {
    let event = envelope.event.as_ref()?;
    Some(match event {
        Event::ServiceOffered(e) => Target::Listing {
            agency: &envelope.source_agency,
            service_id: &e.service_id,
        },
        Event::ServiceWithdrawn(e) => Target::Listing {
            agency: &envelope.source_agency,
            service_id: &e.service_id,
        },
        Event::AgencyRevoked(e) => Target::Agency(&e.agency),
        Event::AgencyReinstated(e) => Target::Agency(&e.agency),
        Event::SubjectErasureRequested(_) if envelope.source_agency == EXCHANGE_SOURCE => {
            Target::Subject(&envelope.subject_pseudonym)
        }
        _ => Target::Case(&envelope.case_id),
    })
}

/// Whose keys an erasure destroys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErasureScope {
    /// Every key of the subject, and later details are dropped: the exchange's act
    /// (`handoff admin erase`, the retention rule).
    Everyone,
    /// Only the key of what this agency contributed about the subject: an agency's
    /// own request, on a case it has a part in.
    Agency(String),
}

/// A subject's personal details to erase, by destroying keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The subject.
    pub subject: String,
    /// Whose contributions.
    pub scope: ErasureScope,
    /// Why, with who asked, for the key store's tombstone.
    pub reason: String,
}

/// A change of the registry the log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    /// The agency's later events are refused and its calls too.
    Revoked {
        /// The agency.
        agency: String,
        /// Why, with who decided.
        reason: String,
    },
    /// The agency may publish and read again.
    Reinstated {
        /// The agency.
        agency: String,
    },
}

/// A case before and after an event.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseChange {
    /// The case before (`None`: the event opened it).
    pub before: Option<CaseView>,
    /// The case after.
    pub after: CaseView,
}

/// Everything one accepted event changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// The case it belongs to.
    pub case: Option<Box<CaseChange>>,
    /// The service directory.
    pub listing: Option<DirectoryChange>,
    /// Keys to destroy.
    pub erasure: Option<Erasure>,
    /// The registry.
    pub registry: Option<RegistryChange>,
}

/// The reason recorded with an erasure: what was asked, and who asked.
pub fn erasure_reason(envelope: &Envelope) -> String {
    match &envelope.event {
        Some(Event::SubjectErasureRequested(e)) if e.requested_by.is_empty() => e.reason.clone(),
        Some(Event::SubjectErasureRequested(e)) => format!(
            "{} (requested by {} of {})",
            e.reason, e.requested_by, envelope.source_agency
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::{ServiceWithdrawn, SubjectErasureRequested};

    #[test]
    fn each_event_has_one_target() {
        let mut e = Envelope {
            source_agency: "police-north".into(),
            case_id: "police-north/k".into(),
            subject_pseudonym: "police-north/s".into(),
            event: Some(Event::SubjectErasureRequested(
                SubjectErasureRequested::default(),
            )),
            ..Envelope::default()
        };
        assert_eq!(target(&e), Some(Target::Case("police-north/k")));
        e.source_agency = EXCHANGE_SOURCE.into();
        assert_eq!(target(&e), Some(Target::Subject("police-north/s")));
        e.event = Some(Event::ServiceWithdrawn(ServiceWithdrawn {
            service_id: "x".into(),
            ..Default::default()
        }));
        assert_eq!(
            target(&e),
            Some(Target::Listing {
                agency: EXCHANGE_SOURCE,
                service_id: "x"
            })
        );
        e.event = None;
        assert_eq!(target(&e), None);
    }
}
