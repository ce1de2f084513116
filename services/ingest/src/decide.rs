//! The decision for one message: append, duplicate or quarantine.
//!
//! The outcome is a function of the message and the batch it joins (which
//! sees the log before it), so every replica consuming the same stream decides
//! the same and chains the same hashes. Who may cause what is the domain's
//! `admit`; this file checks what only the transport knows (size, subject,
//! encoding, the transport seal), answers repeats, seals the private parts
//! (personal details, free text) under the subject's key and carries out the
//! effects. Only the sealing uses each node's own keys; sealed parts sit outside
//! the hash chain. Nothing private is ever kept in the clear: a refused body that
//! cannot be read is sealed whole under the agency's quarantine key.

use handoff_contract::names::event_type;
use handoff_contract::v1::{
    Envelope, QuarantineEntry, Receipt, RejectionReason, SealedDetails, receipt::Status,
};
use handoff_domain::limits::{KEPT_TEXT, bounded};
use handoff_domain::private::take_private;
use handoff_domain::{
    Effects, ErasureScope, Position, Registry, admit, validate::validate_envelope,
};
use handoff_keyring::{Keyring, Opened, QUARANTINE_SUBJECT};
use handoff_log::{NewRecord, WriteBatch};
use handoff_transport::{OpenError, Opener};
use prost::Message;
use sha2::{Digest, Sha256};

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
    /// The agency ingress stream it was sourced from and its sequence there (the
    /// `Nats-Stream-Source` header), if it came through one.
    pub ingress: Option<(&'a str, u64)>,
}

/// Bounds on what one message may make the exchange keep.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Larger messages are refused as too large.
    pub max_message_bytes: usize,
    /// Once an agency's quarantine entries take this many bytes, its further refused
    /// messages are kept as a summary only (reason, size, digest, ids).
    pub quarantine_quota_bytes: u64,
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
    /// The message erased keys: the key store must be rewritten after the commit.
    pub erased: bool,
}

/// Decides one message into `batch`, opening its transport seal with `transport` and
/// sealing its private parts with `keyring`. New keys and erasures are written to the
/// keyring but not flushed: flush it before committing the batch.
pub fn decide(
    batch: &mut WriteBatch<'_>,
    registry: &Registry,
    keyring: &Keyring,
    transport: &Opener,
    limits: Limits,
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
    if let Some((agency, sequence)) = incoming.ingress {
        batch.ingress(agency, sequence);
    }
    let mut envelope = Envelope::decode(incoming.payload).ok();
    // Opened here, once: the checks below see the envelope as its publisher wrote it.
    let opened = envelope.as_mut().map(|e| transport.open(e));
    let mut receipt = Receipt {
        event_id: bounded(
            &envelope
                .as_ref()
                .map(|e| e.event_id.clone())
                .filter(|id| !id.is_empty())
                .or_else(|| incoming.msg_id.map(str::to_string))
                .unwrap_or_default(),
            KEPT_TEXT,
        ),
        stream_sequence: incoming.stream_sequence,
        case_id: envelope
            .as_ref()
            .map(|e| bounded(&e.case_id, KEPT_TEXT))
            .unwrap_or_default(),
        ..Receipt::default()
    };

    let mut erased = false;
    match check(
        batch,
        registry,
        keyring,
        limits,
        incoming,
        envelope.as_ref(),
        opened.clone(),
        subject_agency,
        subject_type,
    )? {
        Ok(Checked::Duplicate(original)) => {
            batch.advance(incoming.stream_sequence);
            receipt = Receipt {
                stream_sequence: incoming.stream_sequence,
                ..*original
            };
        }
        Ok(Checked::Accepted(effects)) => {
            let Some(envelope) = envelope else {
                unreachable!("only a decoded envelope is accepted")
            };
            let Effects {
                case,
                listing,
                erasure,
                registry: registry_change,
            } = *effects;
            receipt.case_version = case.as_ref().map_or(0, |c| c.after.version);
            let Stored { facts, sealed } = stored(
                keyring,
                &envelope,
                batch.next_sequence(),
                "",
                subject_agency,
            )?;
            let appended = batch.append(
                NewRecord {
                    stream_sequence: incoming.stream_sequence,
                    recorded_at_unix_ms: incoming.recorded_at_unix_ms,
                    envelope: &facts,
                    event_id: &receipt.event_id,
                    agency: &envelope.source_agency,
                    sealed_details: sealed.as_ref(),
                },
                case.map(|c| *c),
            )?;
            if let Some(change) = listing {
                batch.directory(change);
            }
            if let Some(change) = registry_change {
                batch.registry(change, appended.sequence);
            }
            if let Some(erasure) = erasure {
                let agency = match &erasure.scope {
                    ErasureScope::Everyone => None,
                    ErasureScope::Agency(a) => Some(a.as_str()),
                };
                keyring.erase(
                    &erasure.subject,
                    agency,
                    &erasure.reason,
                    incoming.recorded_at_unix_ms,
                )?;
                erased = true;
            }
            receipt.status = Status::Accepted as i32;
            receipt.sequence = appended.sequence;
            receipt.hash = appended.hash.to_vec();
        }
        Err(refusal) => {
            let detail = bounded(&refusal.detail, KEPT_TEXT);
            receipt.status = Status::Rejected as i32;
            receipt.reason = refusal.reason as i32;
            receipt.detail = detail.clone();
            let used = batch.quarantine_usage(subject_agency)?;
            let summarized =
                used.bytes + incoming.payload.len() as u64 > limits.quarantine_quota_bytes;
            // Refused messages can carry personal details and free text too: they are
            // kept sealed, and a body that cannot be read is sealed whole.
            let mut sealed_raw = None;
            let (raw, sealed_details) = match (&envelope, &opened) {
                _ if summarized => (Vec::new(), None),
                (Some(e), Some(Ok(()) | Err(OpenError::Unsealed))) => {
                    let fallback = format!("unattributed-{}", incoming.stream_sequence);
                    let Stored { facts, sealed } =
                        stored(keyring, e, 0, &fallback, subject_agency)?;
                    (facts, sealed)
                }
                _ => {
                    let id = format!("stream-{}", incoming.stream_sequence);
                    sealed_raw = Some(keyring.seal_bytes(
                        QUARANTINE_SUBJECT,
                        subject_agency,
                        &id,
                        incoming.payload,
                    )?);
                    (Vec::new(), None)
                }
            };
            let entry = QuarantineEntry {
                stream_sequence: incoming.stream_sequence,
                subject: bounded(incoming.subject, KEPT_TEXT),
                recorded_at_unix_ms: incoming.recorded_at_unix_ms,
                raw,
                reason: refusal.reason as i32,
                detail,
                event_id: receipt.event_id.clone(),
                msg_id: bounded(incoming.msg_id.unwrap_or_default(), KEPT_TEXT),
                sealed_details,
                raw_size: incoming.payload.len() as u64,
                raw_sha256: Sha256::digest(incoming.payload).to_vec(),
                summarized,
                agency: subject_agency.to_string(),
                sealed_raw,
            };
            batch.quarantine(entry, &receipt, subject_agency)?;
        }
    }
    Ok(Decision {
        agency: subject_agency.to_string(),
        receipt,
        erased,
    })
}

/// An envelope as it is kept: the facts (encoded, private parts taken out, their
/// references pointing at `sequence`) and the private parts sealed.
struct Stored {
    facts: Vec<u8>,
    sealed: Option<SealedDetails>,
}

/// The envelope as it is stored, with the private parts the publisher wrote sealed under
/// the key of the subject and `agency`, who contributed them (`fallback_subject` when
/// the envelope names none).
fn stored(
    keyring: &Keyring,
    envelope: &Envelope,
    sequence: u64,
    fallback_subject: &str,
    agency: &str,
) -> Result<Stored, IngestError> {
    let mut facts = envelope.clone();
    facts.transport_seal = None;
    let Some(parts) = take_private(&mut facts, sequence) else {
        return Ok(Stored {
            facts: facts.encode_to_vec(),
            sealed: None,
        });
    };
    let subject = if facts.subject_pseudonym.is_empty() {
        fallback_subject
    } else {
        facts.subject_pseudonym.as_str()
    };
    let sealed = keyring.seal(subject, agency, &facts.event_id, &parts)?;
    Ok(Stored {
        facts: facts.encode_to_vec(),
        sealed: Some(sealed),
    })
}

enum Checked {
    /// Everything the event changes.
    Accepted(Box<Effects>),
    /// The original's receipt.
    Duplicate(Box<Receipt>),
}

#[allow(clippy::too_many_arguments)]
fn check(
    batch: &WriteBatch<'_>,
    registry: &Registry,
    keyring: &Keyring,
    limits: Limits,
    incoming: &Incoming<'_>,
    envelope: Option<&Envelope>,
    opened: Option<Result<(), OpenError>>,
    subject_agency: &str,
    subject_type: &str,
) -> Result<Result<Checked, Refusal>, IngestError> {
    use RejectionReason as R;
    let max = limits.max_message_bytes;
    if incoming.payload.len() > max {
        return Ok(Err(refuse(
            R::TooLarge,
            format!(
                "message is {} bytes; the most the exchange takes is {max}",
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
    match opened {
        Some(Err(e @ OpenError::Unsealed)) => return Ok(Err(refuse(R::Unsealed, e.to_string()))),
        Some(Err(e @ OpenError::Seal(_))) => {
            return Ok(Err(refuse(R::TransportSeal, e.to_string())));
        }
        Some(Err(OpenError::Mismatch(why))) => return Ok(Err(refuse(R::Invalid, why))),
        _ => {}
    }
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
    if let Some(logged) = batch.duplicate_of(&envelope.source_agency, &envelope.event_id)? {
        let mut facts = envelope.clone();
        facts.transport_seal = None;
        let parts = take_private(&mut facts, logged.receipt.sequence);
        let same_facts = Envelope::decode(logged.envelope.as_slice()).ok() == Some(facts);
        let same_details = match (parts, &logged.sealed_details) {
            (None, None) => true,
            (Some(d), Some(sealed)) => match keyring.open(sealed)? {
                Opened::Private(logged) => logged == d,
                // Nothing left to compare with; the facts decide.
                Opened::Erased => true,
            },
            _ => false,
        };
        return Ok(if same_facts && same_details {
            Ok(Checked::Duplicate(Box::new(logged.receipt)))
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
    let at = Position {
        sequence: batch.next_sequence(),
        recorded_at_ms: incoming.recorded_at_unix_ms,
    };
    // The fold sees the facts as they are stored (references in place of the private
    // parts), so the views hold no text in the clear and a rebuild derives the same.
    let mut facts = envelope.clone();
    facts.transport_seal = None;
    take_private(&mut facts, at.sequence);
    Ok(match admit(batch, &facts, registry, at)? {
        Ok(effects) => Ok(Checked::Accepted(Box::new(effects))),
        Err(rejection) => Err(refuse(rejection.reason(), rejection.to_string())),
    })
}
