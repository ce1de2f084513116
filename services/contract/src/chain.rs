//! The hash chain over log records, the one formula the exchange, its store and
//! every auditor's verifier share.
//!
//! `hash = SHA-256(prev_hash ‖ sequence ‖ stream_sequence ‖ recorded_at_unix_ms ‖ len(envelope) ‖ envelope)`,
//! integers as 8-byte big-endian. Defined over these fields rather than over
//! a protobuf encoding, so that any implementation can recompute it.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The chain hash of a record with these fields.
pub fn record_hash(
    prev_hash: &[u8],
    sequence: u64,
    stream_sequence: u64,
    recorded_at_unix_ms: i64,
    envelope: &[u8],
) -> Hash {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(sequence.to_be_bytes());
    h.update(stream_sequence.to_be_bytes());
    h.update(recorded_at_unix_ms.to_be_bytes());
    h.update((envelope.len() as u64).to_be_bytes());
    h.update(envelope);
    h.finalize().into()
}
