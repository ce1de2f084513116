//! The agency's own secret, which keys every id its adapter derives (see `ids`).
//! It stays with the agency's adapter: the exchange never sees it, so nobody
//! else can recompute a pseudonym from a person id or reverse one.

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What can go wrong with an agency secret, naming the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error(
        "cannot read the agency secret {path}: {source}; create one with `handoff agency-secret --agency ID --out {path}` (only for a new agency: a new secret starts new case ids and pseudonyms) or point --agency-secret at the agency's existing one"
    )]
    Unreadable {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold 64 hex digits.
    #[error(
        "{path} is not an agency secret: expected 64 hex digits as `handoff agency-secret` writes them ({detail}); restore the file from the agency's backup"
    )]
    Malformed {
        /// Which file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Randomness(String),
}

/// An agency's 32-byte secret that keys its ids (HMAC-SHA-256).
#[derive(Clone)]
pub struct AgencySecret([u8; 32]);

impl std::fmt::Debug for AgencySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: debug output ends up in logs.
        f.write_str("AgencySecret(..)")
    }
}

impl AgencySecret {
    /// A secret from its bytes (tests and tools; agencies load theirs from a file).
    pub fn from_bytes(bytes: [u8; 32]) -> AgencySecret {
        AgencySecret(bytes)
    }

    /// A fresh random secret from the operating system.
    pub fn generate() -> Result<AgencySecret, SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Randomness(e.to_string()))?;
        Ok(AgencySecret(bytes))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored); `path` names the source in errors.
    fn from_hex(path: &Path, text: &str) -> Result<AgencySecret, SecretError> {
        let malformed = |detail: String| SecretError::Malformed {
            path: path.display().to_string(),
            detail,
        };
        let text = text.trim();
        let bytes = handoff_contract::hex::decode(text)
            .ok_or_else(|| malformed(format!("{} characters, not all hex", text.len())))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| malformed(format!("{} bytes instead of 32", b.len())))?;
        Ok(AgencySecret(bytes))
    }

    /// Reads the secret `handoff agency-secret` wrote to `path`.
    pub fn from_file(path: &Path) -> Result<AgencySecret, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        AgencySecret::from_hex(path, &text)
    }

    /// The secret as 64 hex digits, to write to its file.
    pub fn to_hex(&self) -> String {
        handoff_contract::hex::encode(&self.0)
    }

    /// HMAC-SHA-256 under this secret over `parts`, each prefixed by its length so
    /// that no two different lists of parts feed the MAC the same bytes.
    pub(crate) fn mac(&self, parts: &[&str]) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key_and_files_round_trip() {
        let secret = AgencySecret::from_bytes([0xab; 32]);
        assert_eq!(format!("{secret:?}"), "AgencySecret(..)");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("police.secret");
        std::fs::write(&path, format!("{}\n", secret.to_hex())).expect("write");
        let read = AgencySecret::from_file(&path).expect("read");
        assert_eq!(read.to_hex(), secret.to_hex());
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.secret");
        let e = AgencySecret::from_file(&missing)
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("missing.secret") && e.contains("handoff agency-secret"),
            "{e}"
        );
        let short = dir.path().join("short.secret");
        std::fs::write(&short, "abcd\n").expect("write");
        let e = AgencySecret::from_file(&short)
            .expect_err("short")
            .to_string();
        assert!(
            e.contains("short.secret") && e.contains("2 bytes instead of 32"),
            "{e}"
        );
        let garbage = dir.path().join("garbage.secret");
        std::fs::write(&garbage, "z".repeat(64)).expect("write");
        assert!(matches!(
            AgencySecret::from_file(&garbage),
            Err(SecretError::Malformed { .. })
        ));
    }
}
