//! Who may cause what: the decision whether an event may enter the log, and
//! everything it changes if it may. Ingest calls this for every message, in
//! stream order, over what the log holds before it.
//!
//! The write path is an authorisation path. An agency affects only what it has
//! a part in: cases it may write to, cases it opens under its own ids about
//! subjects it may know, its own listings, and only its own contributions when
//! it asks for an erasure. A refusal of an event on a case it has no part in is
//! worded from the envelope alone, exactly like one on a case that does not
//! exist, so no receipt tells it more than NOT_FOUND on gRPC would.

use std::borrow::Cow;

use handoff_contract::names::EXCHANGE_SOURCE;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{CaseView, Envelope, ServiceListing};

use crate::agency::Registry;
use crate::case::{Position, fold, may_write, opens_case};
use crate::effect::{
    CaseChange, Effects, Erasure, ErasureScope, RegistryChange, Target, erasure_reason, target,
};
use crate::rejection::Rejection;
use crate::validate::{publishable, validate_envelope};

/// What the log knows before an event, as admission asks it.
pub trait Known {
    /// A read of the store failed.
    type Error;
    /// The case as it stands.
    fn case(&self, case_id: &str) -> Result<Option<CaseView>, Self::Error>;
    /// The agency's current listing of this service.
    fn listing(
        &self,
        agency: &str,
        service_id: &str,
    ) -> Result<Option<ServiceListing>, Self::Error>;
    /// Whether `agency` is a party (of any kind) to any case about `subject`.
    fn knows_subject(&self, agency: &str, subject: &str) -> Result<bool, Self::Error>;
    /// Whether `agency` is revoked.
    fn revoked(&self, agency: &str) -> Result<bool, Self::Error>;
}

/// Decides an event against what the log knows and returns what it changes, or
/// why it is refused. The outer error is a failed read of the store.
pub fn admit<K: Known>(
    known: &K,
    envelope: &Envelope,
    registry: &Registry,
    at: Position,
) -> Result<Result<Effects, Rejection>, K::Error> {
    let source = envelope.source_agency.as_str();
    if source == EXCHANGE_SOURCE {
        // Only the exchange's own NATS user may publish under this name.
        if let Err(rejection) = validate_envelope(envelope) {
            return Ok(Err(rejection));
        }
        return from_exchange(known, envelope, registry);
    }
    let (event, kind_name) = match publishable(envelope, registry) {
        Ok(ok) => ok,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if known.revoked(source)? {
        return Ok(Err(Rejection::AgencyRevoked(source.to_string())));
    }
    match target(envelope) {
        Some(Target::Listing { agency, service_id }) => {
            let current = known.listing(agency, service_id)?;
            Ok(
                crate::directory::decide(current.as_ref(), envelope, registry, at).map(|change| {
                    Effects {
                        listing: Some(change),
                        ..Effects::default()
                    }
                }),
            )
        }
        Some(Target::Case(case_id)) => {
            admit_case(known, envelope, event, kind_name, case_id, registry, at)
        }
        // `validate_envelope` lets agencies publish neither.
        Some(Target::Subject(_) | Target::Agency(_)) | None => Ok(Err(Rejection::Invalid(
            format!("{kind_name} is published only by the exchange"),
        ))),
    }
}

fn admit_case<K: Known>(
    known: &K,
    envelope: &Envelope,
    event: &Event,
    kind_name: &'static str,
    case_id: &str,
    registry: &Registry,
    at: Position,
) -> Result<Result<Effects, Rejection>, K::Error> {
    let source = envelope.source_agency.as_str();
    let no_such_case = || {
        Ok(Err(Rejection::NoSuchCase {
            case_id: case_id.to_string(),
            agency: source.to_string(),
        }))
    };
    let current = known.case(case_id)?;
    match &current {
        Some(view) if may_write(view, source) => {}
        // Another agency's case, or one the source declined: answered like a missing one.
        Some(_) => return no_such_case(),
        None if crate::ids::owned_by(case_id, source) && opens_case(event) => {
            let subject = envelope.subject_pseudonym.as_str();
            if !crate::ids::owned_by(subject, source) && !known.knows_subject(source, subject)? {
                return Ok(Err(Rejection::UnknownSubject {
                    pseudonym: subject.to_string(),
                    agency: source.to_string(),
                }));
            }
        }
        None => return no_such_case(),
    }
    // A link names another case: one the source may write to, about the endangered
    // person it names, and a protection case. Otherwise answered like a missing one,
    // so a link cannot probe for other agencies' cases.
    if let Event::EndangeredPersonLinked(link) = event {
        let linkable = known.case(&link.protection_case_id)?.is_some_and(|p| {
            may_write(&p, source)
                && p.protected_person.is_some()
                && p.subject_pseudonym == link.endangered_pseudonym
        });
        if !linkable {
            return Ok(Err(Rejection::NoSuchCase {
                case_id: link.protection_case_id.clone(),
                agency: source.to_string(),
            }));
        }
    }
    // From here on the source has a part in the case: detailed answers tell it nothing new.
    if let Some(to) = addressee(event)
        && known.revoked(to)?
    {
        return Ok(Err(Rejection::TransitionNotAllowed {
            case_id: case_id.to_string(),
            event_type: kind_name,
            status: current
                .as_ref()
                .map_or_else(|| "new".into(), |v| crate::case::status_name(v.status())),
            why: format!("agency {to} is revoked and cannot take up cases"),
        }));
    }
    let after = match fold(
        current.as_ref().map(Cow::Borrowed),
        envelope,
        event,
        kind_name,
        registry,
        at,
    ) {
        Ok(after) => after,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let erasure = matches!(event, Event::SubjectErasureRequested(_)).then(|| Erasure {
        subject: envelope.subject_pseudonym.clone(),
        scope: ErasureScope::Agency(source.to_string()),
        reason: erasure_reason(envelope),
    });
    Ok(Ok(Effects {
        case: Some(Box::new(CaseChange {
            before: current,
            after,
        })),
        erasure,
        ..Effects::default()
    }))
}

/// The agency a referral or handoff asks to take the case.
fn addressee(event: &Event) -> Option<&str> {
    match event {
        Event::ReferralMade(e) => Some(&e.to_agency),
        Event::HandoffRequested(e) => Some(&e.to_agency),
        Event::EvictionCopySent(e) => Some(&e.to_agency),
        Event::EndangeredPersonLinked(e) => Some(&e.support_agency),
        _ => None,
    }
}

/// The exchange's own events: subject-wide erasures and registry changes.
fn from_exchange<K: Known>(
    known: &K,
    envelope: &Envelope,
    registry: &Registry,
) -> Result<Result<Effects, Rejection>, K::Error> {
    let invalid = |why: String| Ok(Err(Rejection::Invalid(why)));
    Ok(Ok(match &envelope.event {
        Some(Event::SubjectErasureRequested(_)) => Effects {
            erasure: Some(Erasure {
                subject: envelope.subject_pseudonym.clone(),
                scope: ErasureScope::Everyone,
                reason: erasure_reason(envelope),
            }),
            ..Effects::default()
        },
        Some(Event::AgencyRevoked(e)) => {
            if registry.get(&e.agency).is_none() {
                return Ok(Err(Rejection::UnknownAgency(e.agency.clone())));
            }
            if known.revoked(&e.agency)? {
                return invalid(format!("agency {} is already revoked", e.agency));
            }
            let reason = if e.requested_by.is_empty() {
                e.reason.clone()
            } else {
                format!("{} (decided by {})", e.reason, e.requested_by)
            };
            Effects {
                registry: Some(RegistryChange::Revoked {
                    agency: e.agency.clone(),
                    reason,
                }),
                ..Effects::default()
            }
        }
        Some(Event::AgencyReinstated(e)) => {
            if !known.revoked(&e.agency)? {
                return invalid(format!("agency {} is not revoked", e.agency));
            }
            Effects {
                registry: Some(RegistryChange::Reinstated {
                    agency: e.agency.clone(),
                }),
                ..Effects::default()
            }
        }
        _ => {
            return invalid(
                "the exchange publishes only erasures and revocations under its own name".into(),
            );
        }
    }))
}
