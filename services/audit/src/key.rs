//! The exchange's signing key: generated on first start, kept in the data dir
//! (mode 0600), never in the log; checkpoints (receipts: `receipts.rs`).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use handoff_contract::v1::Checkpoint;

/// File name of the key in the data dir.
pub const KEY_FILE: &str = "exchange-signing.key";

/// Problems with the key or with a signature, in words an operator or auditor can act on.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The key file could not be read or written.
    #[error("signing key {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no key.
    #[error("signing key {0} is damaged (expected 64 hex digits); restore it from backup")]
    Damaged(PathBuf),
    /// No randomness to make a key.
    #[error("no system randomness to create a signing key: {0}")]
    Randomness(String),
    /// A signature or public key does not verify.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
}

/// The exchange's signing key.
pub struct ExchangeKey {
    key: SigningKey,
}

impl std::fmt::Debug for ExchangeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExchangeKey({})", self.public_hex())
    }
}

impl ExchangeKey {
    /// Loads the key from `dir`, creating it (0600) if there is none.
    pub fn load_or_create(dir: &Path) -> Result<ExchangeKey, AuditError> {
        let path = dir.join(KEY_FILE);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = text.trim();
                if text.len() != 64 {
                    return Err(AuditError::Damaged(path));
                }
                let seed: [u8; 32] = handoff_contract::hex::decode(text)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| AuditError::Damaged(path.clone()))?;
                Ok(ExchangeKey {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| AuditError::Randomness(e.to_string()))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                std::io::Write::write_all(
                    &mut file,
                    handoff_contract::hex::encode(&seed).as_bytes(),
                )
                .map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(ExchangeKey {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The public key (32 bytes).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key in hex, as `handoff key show` prints it.
    pub fn public_hex(&self) -> String {
        handoff_contract::hex::encode(&self.public_key())
    }

    /// An Ed25519 signature over `message` (64 bytes).
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// A signed checkpoint of the head.
    pub fn checkpoint(
        &self,
        sequence: u64,
        head_hash: &[u8],
        recorded_at_unix_ms: i64,
    ) -> Checkpoint {
        let signature = self.key.sign(&checkpoint_message(
            sequence,
            head_hash,
            recorded_at_unix_ms,
        ));
        Checkpoint {
            sequence,
            head_hash: head_hash.to_vec(),
            recorded_at_unix_ms,
            public_key: self.public_key().to_vec(),
            signature: signature.to_bytes().to_vec(),
        }
    }
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(sequence: u64, head_hash: &[u8], recorded_at_unix_ms: i64) -> Vec<u8> {
    let mut m = b"handoff-checkpoint-v1".to_vec();
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(head_hash);
    m.extend_from_slice(&recorded_at_unix_ms.to_be_bytes());
    m
}

pub(crate) fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, AuditError> {
    let bytes: [u8; 32] = public_key
        .try_into()
        .map_err(|_| AuditError::BadSignature("public key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| AuditError::BadSignature(e.to_string()))
}

pub(crate) fn signature(bytes: &[u8]) -> Result<Signature, AuditError> {
    Signature::from_slice(bytes).map_err(|e| AuditError::BadSignature(e.to_string()))
}

/// Checks a checkpoint against the exchange's public key (not the one it carries).
pub fn verify_checkpoint(checkpoint: &Checkpoint, public_key: &[u8]) -> Result<(), AuditError> {
    let message = checkpoint_message(
        checkpoint.sequence,
        &checkpoint.head_hash,
        checkpoint.recorded_at_unix_ms,
    );
    verifying_key(public_key)?
        .verify(&message, &signature(&checkpoint.signature)?)
        .map_err(|e| {
            AuditError::BadSignature(format!(
                "checkpoint at sequence {}: {e}",
                checkpoint.sequence
            ))
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A new key in a temporary directory, kept while the directory lives.
    pub(crate) fn fresh_key() -> (tempfile::TempDir, ExchangeKey) {
        let dir = tempfile::tempdir().expect("tmp");
        let key = ExchangeKey::load_or_create(dir.path()).expect("key");
        (dir, key)
    }

    #[test]
    fn the_key_persists_and_signatures_verify_only_unaltered() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = ExchangeKey::load_or_create(dir.path()).expect("created");
        let again = ExchangeKey::load_or_create(dir.path()).expect("loaded");
        assert_eq!(key.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let cp = key.checkpoint(42, &[7u8; 32], 1000);
        verify_checkpoint(&cp, &key.public_key()).expect("valid");
        let mut altered = cp.clone();
        altered.sequence = 43;
        assert!(verify_checkpoint(&altered, &key.public_key()).is_err());
        let other =
            ExchangeKey::load_or_create(tempfile::tempdir().expect("tmp").path()).expect("other");
        assert!(
            verify_checkpoint(&cp, &other.public_key()).is_err(),
            "another exchange's key"
        );
    }
}
