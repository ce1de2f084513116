//! Why an event may not enter the log, in words a caseworker can act on.

use handoff_contract::v1::RejectionReason;

use crate::agency::AgencyKind;

/// A decision against an event. Each maps to one `RejectionReason` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Required fields missing or malformed.
    #[error("invalid event: {0}")]
    Invalid(String),
    /// Written for a contract version this exchange does not know.
    #[error(
        "schema version {found} is not supported (this exchange understands {supported}); upgrade the exchange or publish version {supported}"
    )]
    UnsupportedSchemaVersion {
        /// The version in the envelope.
        found: u32,
        /// The version this exchange understands.
        supported: u32,
    },
    /// The agency is not in the registry.
    #[error("agency {0:?} is not registered with the exchange")]
    UnknownAgency(String),
    /// The agency's kind may not publish this event type.
    #[error("agencies of kind {kind} may not publish {event_type}")]
    KindMayNotPublish {
        /// The publisher's kind.
        kind: AgencyKind,
        /// The refused event type.
        event_type: &'static str,
    },
    /// No case with this id that the agency has a part in: it does not exist, it is
    /// another agency's, or the event cannot open it. Worded from the envelope alone,
    /// so the answer is the same in each of these cases (as NOT_FOUND on gRPC is).
    #[error(
        "no case {case_id} that agency {agency} has a part in; a case is opened by an incident, an eviction or a referral under an id of the opening agency's own ({agency}/...)"
    )]
    NoSuchCase {
        /// The case named.
        case_id: String,
        /// The publisher.
        agency: String,
    },
    /// A new case names a subject its agency may not know. Worded from the envelope
    /// alone: the same whether or not such a subject exists.
    #[error(
        "subject {pseudonym} is not one agency {agency} may name in a new case: use a pseudonym under its own id ({agency}/...) or the subject of a case it has a part in"
    )]
    UnknownSubject {
        /// The pseudonym named.
        pseudonym: String,
        /// The publisher.
        agency: String,
    },
    /// The agency was revoked earlier in the log.
    #[error(
        "agency {0} is revoked: the exchange takes no more events from it (ask the exchange's operator)"
    )]
    AgencyRevoked(String),
    /// Optimistic concurrency: the case moved on since the publisher read it.
    #[error(
        "case {case_id} is at version {actual} but the event expected version {expected}; read the case again and decide anew"
    )]
    WrongExpectedVersion {
        /// The case named.
        case_id: String,
        /// What the publisher expected.
        expected: u64,
        /// The case's version now.
        actual: u64,
    },
    /// The event does not fit the case's current state.
    #[error("{event_type} is not allowed on case {case_id} (status {status}): {why}")]
    TransitionNotAllowed {
        /// The case named.
        case_id: String,
        /// The refused event type.
        event_type: &'static str,
        /// The case's status, in words.
        status: String,
        /// What is missing.
        why: String,
    },
    /// The publisher has no part in the case that allows this event.
    #[error("agency {agency} may not publish {event_type} on case {case_id}: only {role} may")]
    AgencyNotAParty {
        /// The publisher.
        agency: String,
        /// The case named.
        case_id: String,
        /// The refused event type.
        event_type: &'static str,
        /// Who may.
        role: String,
    },
}

impl Rejection {
    /// The wire code for this rejection.
    pub fn reason(&self) -> RejectionReason {
        match self {
            Rejection::Invalid(_) => RejectionReason::Invalid,
            Rejection::UnsupportedSchemaVersion { .. } => RejectionReason::UnsupportedSchemaVersion,
            Rejection::UnknownAgency(_) => RejectionReason::UnknownAgency,
            Rejection::KindMayNotPublish { .. } => RejectionReason::KindMayNotPublish,
            Rejection::NoSuchCase { .. } => RejectionReason::UnknownCase,
            Rejection::UnknownSubject { .. } => RejectionReason::UnknownSubject,
            Rejection::AgencyRevoked(_) => RejectionReason::AgencyRevoked,
            Rejection::WrongExpectedVersion { .. } => RejectionReason::WrongExpectedVersion,
            Rejection::TransitionNotAllowed { .. } => RejectionReason::TransitionNotAllowed,
            Rejection::AgencyNotAParty { .. } => RejectionReason::AgencyNotAParty,
        }
    }
}
