//! Shared by the admission tests: a registry of one agency of every kind (two
//! police forces), the log's state as admission sees it held in memory, and the
//! way ingest applies what an accepted event changes.
//!
//! The model is pure test scaffolding: it answers [`Known`] from BTreeMaps and
//! checks repeats the way ingest does (validate, then the event-id index keyed
//! by (agency, event id), then `admit`), so every decision a test asserts on is
//! the domain's own.

#![allow(dead_code)] // each test crate uses its own part of this module

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use handoff_contract::names::EXCHANGE_SOURCE;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    AgencyReinstated, AgencyRevoked, CaseView, Envelope, RejectionReason, ServiceListing,
    SubjectErasureRequested,
};
use handoff_domain::directory::DirectoryChange;
use handoff_domain::validate::validate_envelope;
use handoff_domain::{
    Agency, AgencyKind, Effects, ErasureScope, Known, Position, Registry, RegistryChange, admit,
};
use prost::Message;

pub mod attack;
pub mod scenario;
mod steps;

/// Every agency of the scenarios, with its kind.
pub const AGENCIES: &[(&str, AgencyKind)] = &[
    ("police-a", AgencyKind::Police),
    ("police-b", AgencyKind::Police),
    ("social-a", AgencyKind::SocialServices),
    ("ic-a", AgencyKind::InterventionCentre),
    ("ngo-a", AgencyKind::ProgrammeProvider),
    ("probation-a", AgencyKind::Probation),
    ("court-a", AgencyKind::Court),
    ("victim-a", AgencyKind::VictimSupport),
    ("audit-a", AgencyKind::Auditor),
    ("coord-a", AgencyKind::Coordinator),
];

/// The registry of [`AGENCIES`].
pub fn registry() -> Registry {
    Registry::new(AGENCIES.iter().map(|(id, kind)| Agency {
        id: (*id).into(),
        name: (*id).into(),
        kind: *kind,
    }))
    .expect("valid registry")
}

/// A UUIDv7 that depends only on `n`.
pub fn uuid7(n: u64) -> String {
    let mut random = [0u8; 10];
    random[2..].copy_from_slice(&n.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000 + (n % 1_000_000), &random)
        .into_uuid()
        .to_string()
}

/// A well-formed envelope (schema 1, occurred at a time derived from `n`).
pub fn envelope(
    event_id: String,
    source: &str,
    case_id: &str,
    subject: &str,
    event: Event,
) -> Envelope {
    Envelope {
        event_id,
        source_agency: source.into(),
        case_id: case_id.into(),
        subject_pseudonym: subject.into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(1_700_000_000_000)),
        schema_version: 1,
        event: Some(event),
        ..Envelope::default()
    }
}

/// What ingest would answer one message with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Appended, changing this.
    Accepted(Box<Effects>),
    /// The same event from the same agency is already logged.
    Duplicate,
    /// Quarantined, with what the receipt says.
    Refused {
        /// The wire reason.
        reason: RejectionReason,
        /// The receipt's detail text.
        detail: String,
    },
}

impl Outcome {
    /// The reason, if refused.
    pub fn reason(&self) -> Option<RejectionReason> {
        match self {
            Outcome::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The effects, if accepted.
    pub fn effects(&self) -> Option<&Effects> {
        match self {
            Outcome::Accepted(e) => Some(e),
            _ => None,
        }
    }
}

/// The log's state as admission asks it, and what ingest keeps besides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Case views by case id.
    pub cases: BTreeMap<String, CaseView>,
    /// Listings by (agency, service id).
    pub listings: BTreeMap<(String, String), ServiceListing>,
    /// Case ids by subject pseudonym.
    pub subjects: BTreeMap<String, BTreeSet<String>>,
    /// Revoked agencies.
    pub revoked: BTreeSet<String>,
    /// The event-id index: (agency, event id) → the logged envelope, encoded.
    pub events: BTreeMap<(String, String), Vec<u8>>,
    /// Keys destroyed: (subject, `Some(agency)` for one agency's contributions, `None` for all).
    pub destroyed: BTreeSet<(String, Option<String>)>,
    /// The last log sequence.
    pub sequence: u64,
}

impl Known for Model {
    type Error = Infallible;

    fn case(&self, case_id: &str) -> Result<Option<CaseView>, Infallible> {
        Ok(self.cases.get(case_id).cloned())
    }

    fn listing(
        &self,
        agency: &str,
        service_id: &str,
    ) -> Result<Option<ServiceListing>, Infallible> {
        Ok(self
            .listings
            .get(&(agency.to_string(), service_id.to_string()))
            .cloned())
    }

    fn knows_subject(&self, agency: &str, subject: &str) -> Result<bool, Infallible> {
        Ok(self.subjects.get(subject).is_some_and(|cases| {
            cases.iter().any(|id| {
                self.cases
                    .get(id)
                    .is_some_and(|v| v.parties.iter().any(|p| p.agency == agency))
            })
        }))
    }

    fn revoked(&self, agency: &str) -> Result<bool, Infallible> {
        Ok(self.revoked.contains(agency))
    }
}

fn refused(reason: RejectionReason, detail: String) -> Outcome {
    Outcome::Refused { reason, detail }
}

impl Model {
    /// Whether `agency` is a party of any kind to any case about `subject`.
    pub fn knows(&self, agency: &str, subject: &str) -> bool {
        let Ok(known) = self.knows_subject(agency, subject);
        known
    }

    /// The position the next accepted event gets.
    pub fn next_position(&self) -> Position {
        let sequence = self.sequence + 1;
        Position {
            sequence,
            recorded_at_ms: 1_700_000_000_000 + sequence as i64 * 1000,
        }
    }

    /// What ingest decides for `envelope` against this state: structure, then the
    /// publisher's own event-id index, then admission.
    pub fn decide(&self, envelope: &Envelope, registry: &Registry) -> Outcome {
        if let Err(rejection) = validate_envelope(envelope) {
            return refused(rejection.reason(), rejection.to_string());
        }
        let key = (envelope.source_agency.clone(), envelope.event_id.clone());
        if let Some(logged) = self.events.get(&key) {
            return if *logged == envelope.encode_to_vec() {
                Outcome::Duplicate
            } else {
                refused(
                    RejectionReason::DuplicateEventId,
                    format!(
                        "event id {} is already in the log with different content",
                        envelope.event_id
                    ),
                )
            };
        }
        let Ok(decision) = admit(self, envelope, registry, self.next_position());
        match decision {
            Ok(effects) => Outcome::Accepted(Box::new(effects)),
            Err(rejection) => refused(rejection.reason(), rejection.to_string()),
        }
    }

    /// Applies an accepted event the way ingest's batch does.
    pub fn apply(&mut self, envelope: &Envelope, effects: &Effects) {
        self.sequence += 1;
        self.events.insert(
            (envelope.source_agency.clone(), envelope.event_id.clone()),
            envelope.encode_to_vec(),
        );
        if let Some(change) = &effects.case {
            let after = change.after.clone();
            self.subjects
                .entry(after.subject_pseudonym.clone())
                .or_default()
                .insert(after.case_id.clone());
            self.cases.insert(after.case_id.clone(), after);
        }
        match &effects.listing {
            Some(DirectoryChange::Offered(listing)) => {
                let service = listing
                    .offer
                    .as_ref()
                    .map(|o| o.service_id.clone())
                    .unwrap_or_default();
                self.listings
                    .insert((listing.agency.clone(), service), (**listing).clone());
            }
            Some(DirectoryChange::Withdrawn { agency, service_id }) => {
                self.listings.remove(&(agency.clone(), service_id.clone()));
            }
            None => {}
        }
        match &effects.registry {
            Some(RegistryChange::Revoked { agency, .. }) => {
                self.revoked.insert(agency.clone());
            }
            Some(RegistryChange::Reinstated { agency }) => {
                self.revoked.remove(agency);
            }
            None => {}
        }
        if let Some(erasure) = &effects.erasure {
            let whose = match &erasure.scope {
                ErasureScope::Everyone => None,
                ErasureScope::Agency(a) => Some(a.clone()),
            };
            self.destroyed.insert((erasure.subject.clone(), whose));
        }
    }

    /// Decides `envelope` and applies it if accepted.
    pub fn publish(&mut self, envelope: &Envelope, registry: &Registry) -> Outcome {
        let outcome = self.decide(envelope, registry);
        if let Outcome::Accepted(effects) = &outcome {
            self.apply(envelope, effects);
        }
        outcome
    }

    /// The state as `agency` may know it: only the cases it is a party to (of any
    /// kind), the subjects of those, its own listings and its own event ids. The
    /// registry's revocations and the log's length stay: every receipt tells them.
    pub fn seen_by(&self, agency: &str) -> Model {
        let cases: BTreeMap<String, CaseView> = self
            .cases
            .iter()
            .filter(|(_, v)| v.parties.iter().any(|p| p.agency == agency))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect();
        let mut subjects: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for view in cases.values() {
            subjects
                .entry(view.subject_pseudonym.clone())
                .or_default()
                .insert(view.case_id.clone());
        }
        Model {
            cases,
            listings: self
                .listings
                .iter()
                .filter(|((a, _), _)| a == agency)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            subjects,
            revoked: self.revoked.clone(),
            events: self
                .events
                .iter()
                .filter(|((a, _), _)| a == agency)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            destroyed: self
                .destroyed
                .iter()
                .filter(|(_, a)| a.as_deref() == Some(agency))
                .cloned()
                .collect(),
            sequence: self.sequence,
        }
    }
}

/// An event the exchange itself publishes (no case; a subject only for erasures).
pub fn from_exchange(event_id: String, subject: &str, event: Event) -> Envelope {
    envelope(event_id, EXCHANGE_SOURCE, "", subject, event)
}

/// What the exchange itself publishes as event `n`: a revocation, a reinstatement,
/// or an erasure of a subject everywhere.
pub fn exchange_envelope(m: &Model, what: u8, index: &proptest::sample::Index, n: u64) -> Envelope {
    let agency = AGENCIES[index.index(AGENCIES.len())].0.to_string();
    match what % 8 {
        0 => from_exchange(
            uuid7(n),
            "",
            Event::AgencyRevoked(AgencyRevoked {
                agency,
                reason: "contract ended".into(),
                requested_by: "operator".into(),
            }),
        ),
        1..=3 => from_exchange(
            uuid7(n),
            "",
            Event::AgencyReinstated(AgencyReinstated {
                agency,
                reason: "renewed".into(),
                ..AgencyReinstated::default()
            }),
        ),
        _ => {
            let subjects: Vec<&String> = m.subjects.keys().collect();
            let subject = match subjects.len() {
                0 => format!("{agency}/s0"),
                len => subjects[index.index(len)].clone(),
            };
            from_exchange(
                uuid7(n),
                &subject,
                Event::SubjectErasureRequested(SubjectErasureRequested {
                    reason: "retention".into(),
                    requested_by: "retention rule".into(),
                }),
            )
        }
    }
}
