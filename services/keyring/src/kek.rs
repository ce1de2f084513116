//! The deployment's key-encryption key (KEK): where it comes from, and the cipher it
//! wraps every data key with.

use std::path::Path;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;

use crate::{KeyringError, random};

/// The deployment's key-encryption key: 32 bytes, never stored in the data dir.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A fresh random KEK.
    pub fn generate() -> Result<Kek, KeyringError> {
        Ok(Kek(random()?))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Kek, KeyringError> {
        let bytes = handoff_contract::hex::decode(text.trim())
            .ok_or_else(|| KeyringError::BadKek("not hex".into()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyringError::BadKek(format!("got {} bytes", b.len())))?;
        Ok(Kek(bytes))
    }

    /// Reads a KEK from a file holding 64 hex digits.
    pub fn from_file(path: &Path) -> Result<Kek, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyringError::KekUnavailable {
            source_name: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Kek::from_hex(&text)
    }

    /// Reads a KEK from an environment variable holding 64 hex digits.
    pub fn from_env(name: &str) -> Result<Kek, KeyringError> {
        let text = std::env::var(name).map_err(|e| KeyringError::KekUnavailable {
            source_name: format!("environment variable {name}"),
            detail: e.to_string(),
        })?;
        Kek::from_hex(&text)
    }

    /// The KEK as 64 hex digits, to write to a secrets file.
    pub fn to_hex(&self) -> String {
        handoff_contract::hex::encode(&self.0)
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}
