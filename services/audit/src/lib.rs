//! What auditors rely on: the exchange's Ed25519 signing key, signed receipts
//! and checkpoints, and their verification with only the public key.

pub mod export;
mod key;
mod receipts;

pub use key::{AuditError, ExchangeKey, checkpoint_message, verify_checkpoint};
pub use receipts::{RECEIPTS_PER_TREE, leaf, tree_head_message, verify_receipt};

/// The key's file name in the data dir.
pub fn key_file_name() -> &'static str {
    key::KEY_FILE
}
