//! Stable names of event types, as used in NATS subjects, JSON and permissions.

use crate::v1::envelope::Event;

/// Every event type name, in contract order.
pub const EVENT_TYPES: &[&str] = &[
    "incident_reported",
    "eviction_ordered",
    "referral_made",
    "referral_acknowledged",
    "referral_accepted",
    "referral_declined",
    "contact_attempted",
    "intake_completed",
    "enrolled",
    "session_attended",
    "session_missed",
    "risk_assessed",
    "handoff_requested",
    "handoff_accepted",
    "handoff_declined",
    "consent_given",
    "consent_withdrawn",
    "programme_completed",
    "programme_dropped_out",
    "case_closed",
    "subject_erasure_requested",
    "service_offered",
    "service_withdrawn",
    "agency_revoked",
    "agency_reinstated",
    "eviction_copy_sent",
    "eviction_copy_received",
    "victim_help_offered",
    "eviction_compliance_checked",
    "eviction_breached",
    "eviction_objection",
    "eviction_ended_early",
    "preliminary_measure",
    "compliance_reported",
    "risk_alert_raised",
    "endangered_person_recorded",
    "endangered_person_linked",
    "notice_acknowledged",
];

/// The source agency id the exchange itself publishes as (erasures by an operator or
/// by the retention rule). No agency may be registered under it.
pub const EXCHANGE_SOURCE: &str = "exchange";

/// The snake_case name of an event's type (the last token of its NATS subject).
pub fn event_type(event: &Event) -> &'static str {
    match event {
        Event::IncidentReported(_) => "incident_reported",
        Event::EvictionOrdered(_) => "eviction_ordered",
        Event::ReferralMade(_) => "referral_made",
        Event::ReferralAcknowledged(_) => "referral_acknowledged",
        Event::ReferralAccepted(_) => "referral_accepted",
        Event::ReferralDeclined(_) => "referral_declined",
        Event::ContactAttempted(_) => "contact_attempted",
        Event::IntakeCompleted(_) => "intake_completed",
        Event::Enrolled(_) => "enrolled",
        Event::SessionAttended(_) => "session_attended",
        Event::SessionMissed(_) => "session_missed",
        Event::RiskAssessed(_) => "risk_assessed",
        Event::HandoffRequested(_) => "handoff_requested",
        Event::HandoffAccepted(_) => "handoff_accepted",
        Event::HandoffDeclined(_) => "handoff_declined",
        Event::ConsentGiven(_) => "consent_given",
        Event::ConsentWithdrawn(_) => "consent_withdrawn",
        Event::ProgrammeCompleted(_) => "programme_completed",
        Event::ProgrammeDroppedOut(_) => "programme_dropped_out",
        Event::CaseClosed(_) => "case_closed",
        Event::SubjectErasureRequested(_) => "subject_erasure_requested",
        Event::ServiceOffered(_) => "service_offered",
        Event::ServiceWithdrawn(_) => "service_withdrawn",
        Event::AgencyRevoked(_) => "agency_revoked",
        Event::AgencyReinstated(_) => "agency_reinstated",
        Event::EvictionCopySent(_) => "eviction_copy_sent",
        Event::EvictionCopyReceived(_) => "eviction_copy_received",
        Event::VictimHelpOffered(_) => "victim_help_offered",
        Event::EvictionComplianceChecked(_) => "eviction_compliance_checked",
        Event::EvictionBreached(_) => "eviction_breached",
        Event::EvictionObjection(_) => "eviction_objection",
        Event::EvictionEndedEarly(_) => "eviction_ended_early",
        Event::PreliminaryMeasure(_) => "preliminary_measure",
        Event::ComplianceReported(_) => "compliance_reported",
        Event::RiskAlertRaised(_) => "risk_alert_raised",
        Event::EndangeredPersonRecorded(_) => "endangered_person_recorded",
        Event::EndangeredPersonLinked(_) => "endangered_person_linked",
        Event::NoticeAcknowledged(_) => "notice_acknowledged",
    }
}

/// NATS subject an agency publishes an event on: `handoff.events.<agency>.<type>`.
pub fn event_subject(agency: &str, event: &Event) -> String {
    format!("handoff.events.{agency}.{}", event_type(event))
}

/// Prefix of the per-agency ingress streams; see [`ingress_stream`].
pub const INGRESS_PREFIX: &str = "HANDOFF_IN_";

/// The JetStream stream that takes what one agency publishes (`handoff.events.<agency>.>`):
/// its own duplicate window and its own quota, sourced into the one ordered events stream.
/// An agency can neither occupy another's message ids nor fill another's share.
pub fn ingress_stream(agency: &str) -> String {
    format!("{INGRESS_PREFIX}{agency}")
}

/// The agency whose ingress stream this is (`None` for any other stream name).
pub fn ingress_agency(stream: &str) -> Option<&str> {
    stream
        .strip_prefix(INGRESS_PREFIX)
        .filter(|a| is_valid_agency_id(a))
}

/// The subjects an agency publishes on (its ingress stream captures exactly these).
pub fn event_subjects(agency: &str) -> String {
    format!("handoff.events.{agency}.>")
}

/// The JetStream stream that keeps receipts (`handoff.receipts.>`) for a day. The
/// exchange sends an agency's receipts of one committed batch as one message
/// (`Receipts`) with `Nats-Msg-Id` = [`receipts_msg_id`], so nodes that committed the
/// same batch send the same id and the stream keeps one of them.
pub const RECEIPTS_STREAM: &str = "HANDOFF_RECEIPTS";

/// The message id of a message of receipts: the agency and the stream sequences of its
/// first and last receipt, the same on every node that committed the same batch.
pub fn receipts_msg_id(
    agency: &str,
    first_stream_sequence: u64,
    last_stream_sequence: u64,
) -> String {
    format!("receipts:{agency}:{first_stream_sequence}:{last_stream_sequence}")
}

/// NATS subject the exchange sends an agency's receipts on.
pub fn receipt_subject(agency: &str) -> String {
    format!("handoff.receipts.{agency}")
}

/// NATS subject an agency asks on for the receipt of an event it published earlier.
pub fn receipt_lookup_subject(agency: &str) -> String {
    format!("handoff.lookup.{agency}")
}

/// Whether `id` can stand as an agency id in a NATS subject token.
pub fn is_valid_agency_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_ids_that_would_break_subjects_are_invalid() {
        assert!(is_valid_agency_id("police-north"));
        assert!(!is_valid_agency_id(""));
        assert!(!is_valid_agency_id("police.north"));
        assert!(!is_valid_agency_id("police*"));
        assert!(!is_valid_agency_id("Police"));
    }

    #[test]
    fn ingress_streams_name_their_agency() {
        assert_eq!(
            ingress_agency(&ingress_stream("police-north")),
            Some("police-north")
        );
        assert_eq!(ingress_agency("HANDOFF_EVENTS"), None);
        assert_eq!(ingress_agency("HANDOFF_IN_"), None);
    }
}
