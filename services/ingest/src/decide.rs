//! The decision for one message: append, duplicate or quarantine.
//!
//! The outcome is a function of the message and the batch it joins (which
//! sees the log before it), so every replica consuming the same stream decides
//! the same and chains the same hashes. Only the sealing of personal details
//! uses each node's own keys; sealed details sit outside the hash chain.

use handoff_contract::names::{EXCHANGE_SOURCE, event_type};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    CaseView, Envelope, QuarantineEntry, Receipt, RejectionReason, SealedDetails, receipt::Status,
};
use handoff_domain::directory::{self, DirectoryChange};
use handoff_domain::{Position, Registry, evolve, validate::validate_envelope};
use handoff_keyring::{Keyring, Opened, take_details};
use handoff_log::{NewRecord, WriteBatch};
use prost::Message;

use crate::IngestError;

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

/// What deciding one message produced.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The agency to send the receipt to (the publisher as NATS identified it, from
    /// the subject; empty if the subject names none).
    pub agency: String,
    /// The receipt.
    pub receipt: Receipt,
    /// The message erased a subject: the key store must be rewritten after the commit.
    pub erased: bool,
}

/// Decides one message into `batch`, sealing personal details with `keyring`. New
/// keys and erasures are written to the keyring but not flushed: flush it before
/// committing the batch.
pub fn decide(
    batch: &mut WriteBatch<'_>,
    registry: &Registry,
    keyring: &Keyring,
    max_message_bytes: usize,
    incoming: &Incoming<'_>,
) -> Result<Decision, IngestError> {
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

    let mut erased = false;
    match check(
        batch,
        registry,
        keyring,
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
            let Accepted {
                before,
                view,
                listing,
            } = *accepted;
            let Some(envelope) = envelope else {
                unreachable!("only a decoded envelope is accepted")
            };
            receipt.case_version = view.as_ref().map_or(0, |v| v.version);
            let (facts, sealed) = seal(keyring, &envelope, incoming.payload, "")?;
            let appended = batch.append(
                NewRecord {
                    stream_sequence: incoming.stream_sequence,
                    recorded_at_unix_ms: incoming.recorded_at_unix_ms,
                    envelope: &facts,
                    event_id: &receipt.event_id,
                    sealed_details: sealed.as_ref(),
                },
                before.as_ref(),
                view,
            )?;
            if let Some(change) = listing {
                batch.directory(change);
            }
            if let Some(Event::SubjectErasureRequested(e)) = &envelope.event {
                let reason = if e.requested_by.is_empty() {
                    e.reason.clone()
                } else {
                    format!(
                        "{} (requested by {} of {})",
                        e.reason, e.requested_by, envelope.source_agency
                    )
                };
                keyring.erase(
                    &envelope.subject_pseudonym,
                    &reason,
                    incoming.recorded_at_unix_ms,
                )?;
                erased = true;
            }
            receipt.status = Status::Accepted as i32;
            receipt.sequence = appended.sequence;
            receipt.hash = appended.hash.to_vec();
        }
        Err(refusal) => {
            receipt.status = Status::Rejected as i32;
            receipt.reason = refusal.reason as i32;
            receipt.detail = refusal.detail.clone();
            // Refused messages can carry personal details too: they are kept sealed.
            let (raw, sealed_details) = match &envelope {
                Some(e) => {
                    let fallback = format!("unattributed-{}", incoming.stream_sequence);
                    seal(keyring, e, incoming.payload, &fallback)?
                }
                None => (incoming.payload.to_vec(), None),
            };
            let entry = QuarantineEntry {
                stream_sequence: incoming.stream_sequence,
                subject: incoming.subject.to_string(),
                recorded_at_unix_ms: incoming.recorded_at_unix_ms,
                raw,
                reason: refusal.reason as i32,
                detail: refusal.detail,
                event_id: envelope
                    .as_ref()
                    .map(|e| e.event_id.clone())
                    .unwrap_or_default(),
                msg_id: incoming.msg_id.unwrap_or_default().to_string(),
                sealed_details,
            };
            batch.quarantine(entry, &receipt, subject_agency);
        }
    }
    Ok(Decision {
        agency: subject_agency.to_string(),
        receipt,
        erased,
    })
}

/// The envelope as it is stored (the published bytes when it carries no personal
/// details, else re-encoded without them) and the details sealed under the subject's
/// key (`fallback_subject` when the envelope names none).
fn seal(
    keyring: &Keyring,
    envelope: &Envelope,
    payload: &[u8],
    fallback_subject: &str,
) -> Result<(Vec<u8>, Option<SealedDetails>), IngestError> {
    let mut facts = envelope.clone();
    let Some(details) = take_details(&mut facts) else {
        return Ok((payload.to_vec(), None));
    };
    let subject = if facts.subject_pseudonym.is_empty() {
        fallback_subject
    } else {
        facts.subject_pseudonym.as_str()
    };
    let sealed = keyring.seal(subject, &facts.event_id, &details)?;
    Ok((facts.encode_to_vec(), Some(sealed)))
}

/// An accepted event's case before and after it (`None` for a subject-wide erasure
/// from the exchange itself, and for a directory event, which changes `listing`).
struct Accepted {
    before: Option<CaseView>,
    view: Option<CaseView>,
    listing: Option<DirectoryChange>,
}

enum Checked {
    /// The case as it was before the event and as it is after.
    Accepted(Box<Accepted>),
    /// The original's receipt.
    Duplicate(Receipt),
}

#[allow(clippy::too_many_arguments)]
fn check(
    batch: &WriteBatch<'_>,
    registry: &Registry,
    keyring: &Keyring,
    max_message_bytes: usize,
    incoming: &Incoming<'_>,
    envelope: Option<&Envelope>,
    subject_agency: &str,
    subject_type: &str,
) -> Result<Result<Checked, Refusal>, IngestError> {
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
    if let Some(logged) = batch.duplicate_of(&envelope.event_id)? {
        let mut facts = envelope.clone();
        let details = take_details(&mut facts);
        let same_facts = Envelope::decode(logged.envelope.as_slice()).ok() == Some(facts);
        let same_details = match (details, &logged.sealed_details) {
            (None, None) => true,
            (Some(d), Some(sealed)) => match keyring.open(sealed)? {
                Opened::Details(logged) => logged == d,
                // Nothing left to compare with; the facts decide.
                Opened::Erased => true,
            },
            _ => false,
        };
        return Ok(if same_facts && same_details {
            Ok(Checked::Duplicate(logged.receipt))
        } else {
            Err(refuse(
                R::DuplicateEventId,
                format!(
                    "event id {} is already in the log (sequence {}) with different content; give a new fact a new event id",
                    envelope.event_id, logged.receipt.sequence
                ),
            ))
        });
    }
    if envelope.source_agency == EXCHANGE_SOURCE {
        // validate_envelope let through only a subject-wide erasure under this name,
        // and only the exchange's own NATS user may publish on its subjects.
        return Ok(Ok(Checked::Accepted(Box::new(Accepted {
            before: None,
            view: None,
            listing: None,
        }))));
    }
    let at = Position {
        sequence: batch.next_sequence(),
        recorded_at_ms: incoming.recorded_at_unix_ms,
    };
    if let Some(service_id) = directory::service_id(envelope) {
        // A listing belongs to no case: decided against the directory as it stands.
        let current = batch.listing(&envelope.source_agency, service_id)?;
        return Ok(
            match directory::decide(current.as_ref(), envelope, registry, at) {
                Ok(change) => Ok(Checked::Accepted(Box::new(Accepted {
                    before: None,
                    view: None,
                    listing: Some(change),
                }))),
                Err(rejection) => Err(refuse(rejection.reason(), rejection.to_string())),
            },
        );
    }
    let current = batch.case(&envelope.case_id)?;
    Ok(match evolve(current.as_ref(), envelope, registry, at) {
        Ok(view) => Ok(Checked::Accepted(Box::new(Accepted {
            before: current,
            view: Some(view),
            listing: None,
        }))),
        Err(rejection) => Err(refuse(rejection.reason(), rejection.to_string())),
    })
}
