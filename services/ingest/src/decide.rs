//! The decision for one message: append, duplicate or quarantine.
//!
//! A pure function of the message and the batch it joins (which sees the log
//! before it), so every replica consuming the same stream decides the same.

use handoff_contract::names::event_type;
use handoff_contract::v1::{
    CaseView, Envelope, QuarantineEntry, Receipt, RejectionReason, receipt::Status,
};
use handoff_domain::{Position, Registry, evolve, validate::validate_envelope};
use handoff_log::{LogError, WriteBatch};
use prost::Message;

/// A message as consumed from the stream.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// NATS subject it was published on.
    pub subject: &'a str,
    /// Its body, as published.
    pub payload: &'a [u8],
    /// The Nats-Msg-Id header, if any.
    pub msg_id: Option<&'a str>,
    /// JetStream stream sequence.
    pub stream_sequence: u64,
    /// JetStream's receive time, Unix ms (the same on every replica).
    pub recorded_at_unix_ms: i64,
}

struct Refusal {
    reason: RejectionReason,
    detail: String,
}

fn refuse(reason: RejectionReason, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

/// Decides one message into `batch`. Returns the agency to send the receipt to (the
/// publisher as NATS identified it, from the subject; empty if the subject names none)
/// and the receipt.
pub fn decide(
    batch: &mut WriteBatch<'_>,
    registry: &Registry,
    max_message_bytes: usize,
    incoming: &Incoming<'_>,
) -> Result<(String, Receipt), LogError> {
    let mut tokens = incoming.subject.split('.');
    let (subject_agency, subject_type) = match (
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
    ) {
        (Some("handoff"), Some("events"), Some(a), Some(t), None) => (a, t),
        (Some("handoff"), Some("events"), Some(a), _, _) => (a, ""),
        _ => ("", ""),
    };
    let envelope = Envelope::decode(incoming.payload).ok();
    let mut receipt = Receipt {
        event_id: envelope
            .as_ref()
            .map(|e| e.event_id.clone())
            .filter(|id| !id.is_empty())
            .or_else(|| incoming.msg_id.map(str::to_string))
            .unwrap_or_default(),
        stream_sequence: incoming.stream_sequence,
        case_id: envelope
            .as_ref()
            .map(|e| e.case_id.clone())
            .unwrap_or_default(),
        ..Receipt::default()
    };

    match check(
        batch,
        registry,
        max_message_bytes,
        incoming,
        envelope.as_ref(),
        subject_agency,
        subject_type,
    )? {
        Ok(Checked::Duplicate(original)) => {
            batch.advance(incoming.stream_sequence);
            receipt = Receipt {
                stream_sequence: incoming.stream_sequence,
                ..original
            };
        }
        Ok(Checked::Accepted(accepted)) => {
            let Accepted { before, view } = *accepted;
            receipt.case_version = view.version;
            let appended = batch.append(
                incoming.stream_sequence,
                incoming.recorded_at_unix_ms,
                incoming.payload,
                &receipt.event_id,
                before.as_ref(),
                view,
            )?;
            receipt.status = Status::Accepted as i32;
            receipt.sequence = appended.sequence;
            receipt.hash = appended.hash.to_vec();
        }
        Err(refusal) => {
            receipt.status = Status::Rejected as i32;
            receipt.reason = refusal.reason as i32;
            receipt.detail = refusal.detail.clone();
            let entry = QuarantineEntry {
                stream_sequence: incoming.stream_sequence,
                subject: incoming.subject.to_string(),
                recorded_at_unix_ms: incoming.recorded_at_unix_ms,
                raw: incoming.payload.to_vec(),
                reason: refusal.reason as i32,
                detail: refusal.detail,
                event_id: envelope
                    .as_ref()
                    .map(|e| e.event_id.clone())
                    .unwrap_or_default(),
                msg_id: incoming.msg_id.unwrap_or_default().to_string(),
            };
            batch.quarantine(entry, &receipt, subject_agency);
        }
    }
    Ok((subject_agency.to_string(), receipt))
}

/// An accepted event's case before and after it.
struct Accepted {
    before: Option<CaseView>,
    view: CaseView,
}

enum Checked {
    /// The case as it was before the event and as it is after.
    Accepted(Box<Accepted>),
    /// The original's receipt.
    Duplicate(Receipt),
}

fn check(
    batch: &WriteBatch<'_>,
    registry: &Registry,
    max_message_bytes: usize,
    incoming: &Incoming<'_>,
    envelope: Option<&Envelope>,
    subject_agency: &str,
    subject_type: &str,
) -> Result<Result<Checked, Refusal>, LogError> {
    use RejectionReason as R;
    if incoming.payload.len() > max_message_bytes {
        return Ok(Err(refuse(
            R::TooLarge,
            format!(
                "message is {} bytes; the most the exchange takes is {max_message_bytes}",
                incoming.payload.len()
            ),
        )));
    }
    if subject_agency.is_empty() || subject_type.is_empty() {
        return Ok(Err(refuse(
            R::Invalid,
            format!(
                "subject {:?} is not handoff.events.<agency>.<event type>",
                incoming.subject
            ),
        )));
    }
    let Some(envelope) = envelope else {
        return Ok(Err(refuse(
            R::Malformed,
            "the body is not a handoff.v1.Envelope (protobuf); check the adapter's encoder",
        )));
    };
    if let Err(rejection) = validate_envelope(envelope) {
        return Ok(Err(refuse(rejection.reason(), rejection.to_string())));
    }
    if envelope.source_agency != subject_agency {
        return Ok(Err(refuse(
            R::SourceMismatch,
            format!(
                "published on agency {subject_agency}'s subject but claims to come from {}; an agency may publish only as itself",
                envelope.source_agency
            ),
        )));
    }
    let kind = envelope.event.as_ref().map(event_type).unwrap_or_default();
    if kind != subject_type {
        return Ok(Err(refuse(
            R::SubjectMismatch,
            format!("published on subject type {subject_type} but the event is {kind}"),
        )));
    }
    if let Some((original, logged)) = batch.duplicate_of(&envelope.event_id)? {
        return Ok(match Envelope::decode(logged.as_slice()) {
            Ok(logged) if &logged == envelope => Ok(Checked::Duplicate(original)),
            _ => Err(refuse(
                R::DuplicateEventId,
                format!(
                    "event id {} is already in the log (sequence {}) with different content; give a new fact a new event id",
                    envelope.event_id, original.sequence
                ),
            )),
        });
    }
    let current = batch.case(&envelope.case_id)?;
    let at = Position {
        sequence: batch.next_sequence(),
        recorded_at_ms: incoming.recorded_at_unix_ms,
    };
    Ok(match evolve(current.as_ref(), envelope, registry, at) {
        Ok(view) => Ok(Checked::Accepted(Box::new(Accepted {
            before: current,
            view,
        }))),
        Err(rejection) => Err(refuse(rejection.reason(), rejection.to_string())),
    })
}
