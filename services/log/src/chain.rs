//! The hash chain over log records: the formula is the contract's
//! (`handoff_contract::chain`); here, the chain's start and the check of a record.

use handoff_contract::v1::LogRecord;

pub use handoff_contract::chain::{Hash, record_hash};

/// The `prev_hash` of the first record.
pub const GENESIS: Hash = [0u8; 32];

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
