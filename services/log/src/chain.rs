//! The hash chain over log records.
//!
//! `hash = SHA-256(prev_hash ‖ sequence ‖ stream_sequence ‖ recorded_at_unix_ms ‖ len(envelope) ‖ envelope)`,
//! integers as 8-byte big-endian. Defined over these fields rather than over
//! a protobuf encoding, so that any implementation can recompute it.

use handoff_contract::v1::LogRecord;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first record.
pub const GENESIS: Hash = [0u8; 32];

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

/// Whether a record's stored hash matches its contents.
pub fn is_intact(record: &LogRecord) -> bool {
    record_hash(
        &record.prev_hash,
        record.sequence,
        record.stream_sequence,
        record.recorded_at_unix_ms,
        &record.envelope,
    )
    .as_slice()
        == record.hash.as_slice()
}

/// Lower-case hex of a hash, for people and logs.
pub use handoff_contract::hex::encode as hex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_field_changes_the_hash() {
        let base = record_hash(&GENESIS, 1, 7, 1000, b"env");
        assert_ne!(base, record_hash(&GENESIS, 2, 7, 1000, b"env"));
        assert_ne!(base, record_hash(&GENESIS, 1, 8, 1000, b"env"));
        assert_ne!(base, record_hash(&GENESIS, 1, 7, 1001, b"env"));
        assert_ne!(base, record_hash(&GENESIS, 1, 7, 1000, b"enw"));
        assert_ne!(base, record_hash(&[1u8; 32], 1, 7, 1000, b"env"));
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }
}
