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
    /// The event names a case that does not exist and cannot open one.
    #[error(
        "case {case_id} does not exist; a case is opened by an incident, an eviction or a referral, not by {event_type}"
    )]
    UnknownCase {
        /// The case named.
        case_id: String,
        /// The event type that cannot open a case.
        event_type: &'static str,
    },
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
            Rejection::UnknownCase { .. } => RejectionReason::UnknownCase,
            Rejection::WrongExpectedVersion { .. } => RejectionReason::WrongExpectedVersion,
            Rejection::TransitionNotAllowed { .. } => RejectionReason::TransitionNotAllowed,
            Rejection::AgencyNotAParty { .. } => RejectionReason::AgencyNotAParty,
        }
    }
}
