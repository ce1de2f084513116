//! The transport key epochs: the private keys every exchange node holds (one
//! file, like the KEK), and the public key publishers seal to.
//!
//! Keys file, one epoch per line: `<epoch> <created, unix seconds> <private key,
//! 64 hex digits>`; `#` starts a comment. Public key file, one line:
//! `handoff-transport-v1 <epoch> <public key, 64 hex digits>`.

use std::collections::BTreeMap;
use std::path::Path;

use handoff_contract::hex;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};

use crate::TransportError;

type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;

const PUBLIC_TAG: &str = "handoff-transport-v1";

/// One epoch's key pair.
#[derive(Clone)]
pub struct Epoch {
    /// Its number, from 1.
    pub epoch: u32,
    /// When it was made, Unix seconds.
    pub created_unix_s: i64,
    private: PrivateKey,
}

/// The transport key epochs an exchange holds (private).
#[derive(Clone, Default)]
pub struct TransportKeys {
    epochs: BTreeMap<u32, Epoch>,
}

impl std::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportKeys")
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The public key of one epoch: what publishers seal to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportPublic {
    /// The epoch.
    pub epoch: u32,
    key: PublicKey,
}

fn file_error(path: &Path, detail: impl Into<String>) -> TransportError {
    TransportError::File {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn fresh(epoch: u32, created_unix_s: i64) -> Result<Epoch, TransportError> {
    let mut ikm = [0u8; 32];
    getrandom::fill(&mut ikm).map_err(|e| TransportError::Randomness(e.to_string()))?;
    let (private, _) = X25519HkdfSha256::derive_keypair(&ikm);
    Ok(Epoch {
        epoch,
        created_unix_s,
        private,
    })
}

impl TransportPublic {
    /// The public key from its 32 bytes.
    pub fn from_bytes(epoch: u32, bytes: &[u8]) -> Result<TransportPublic, TransportError> {
        let key =
            PublicKey::from_bytes(bytes).map_err(|e| TransportError::BadKey(e.to_string()))?;
        Ok(TransportPublic { epoch, key })
    }

    /// Parses the one-line form `handoff-transport-v1 <epoch> <hex>`.
    pub fn parse(text: &str) -> Result<TransportPublic, TransportError> {
        let bad = |why: &str| {
            TransportError::BadKey(format!(
                "{why}; expected one line `{PUBLIC_TAG} <epoch> <64 hex digits>` (from `handoff transport-key public`)"
            ))
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("empty"))?;
        let mut parts = line.split_whitespace();
        if parts.next() != Some(PUBLIC_TAG) {
            return Err(bad("not a transport public key"));
        }
        let epoch = parts
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| bad("no epoch"))?;
        let bytes = parts
            .next()
            .and_then(hex::decode)
            .ok_or_else(|| bad("the key is not hex"))?;
        TransportPublic::from_bytes(epoch, &bytes)
    }

    /// Reads the one-line form from a file.
    pub fn from_file(path: &Path) -> Result<TransportPublic, TransportError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
        TransportPublic::parse(&text)
    }

    /// The one-line form.
    pub fn to_line(&self) -> String {
        format!(
            "{PUBLIC_TAG} {} {}",
            self.epoch,
            hex::encode(&self.key.to_bytes())
        )
    }

    /// The key itself, for HPKE.
    pub(crate) fn key(&self) -> &PublicKey {
        &self.key
    }
}

impl TransportKeys {
    /// A first epoch, made now (`now_unix_s`).
    pub fn generate(now_unix_s: i64) -> Result<TransportKeys, TransportError> {
        let mut keys = TransportKeys::default();
        keys.epochs.insert(1, fresh(1, now_unix_s)?);
        Ok(keys)
    }

    /// Adds the next epoch (publishers should move to it); returns its number.
    pub fn rotate(&mut self, now_unix_s: i64) -> Result<u32, TransportError> {
        let next = self.epochs.keys().next_back().copied().unwrap_or(0) + 1;
        self.epochs.insert(next, fresh(next, now_unix_s)?);
        Ok(next)
    }

    /// Destroys every epoch whose successor was made at least `max_age_s` ago: the
    /// stream (whose messages live at most `max_age_s`) can no longer hold anything
    /// sealed to it. Returns the epochs destroyed. The newest epoch always stays.
    pub fn prune(&mut self, now_unix_s: i64, max_age_s: i64) -> Vec<u32> {
        let created: Vec<(u32, i64)> = self
            .epochs
            .values()
            .map(|e| (e.epoch, e.created_unix_s))
            .collect();
        let mut gone = Vec::new();
        for pair in created.windows(2) {
            let (epoch, _) = pair[0];
            let (_, successor_created) = pair[1];
            if now_unix_s - successor_created >= max_age_s {
                self.epochs.remove(&epoch);
                gone.push(epoch);
            }
        }
        gone
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs.values()
    }

    /// The newest epoch's public key.
    pub fn current_public(&self) -> TransportPublic {
        let newest = self.epochs.values().next_back();
        // `generate` and `load` never leave the map empty.
        let key = newest.map(|e| X25519HkdfSha256::sk_to_pk(&e.private));
        TransportPublic {
            epoch: newest.map_or(0, |e| e.epoch),
            key: key.unwrap_or_else(|| X25519HkdfSha256::derive_keypair(&[0u8; 32]).1),
        }
    }

    pub(crate) fn private(&self, epoch: u32) -> Option<&PrivateKey> {
        self.epochs.get(&epoch).map(|e| &e.private)
    }

    /// Parses the keys file's text.
    pub fn parse(text: &str) -> Result<TransportKeys, TransportError> {
        let mut keys = TransportKeys::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                TransportError::BadKey(format!(
                    "line {} is not `<epoch> <created unix seconds> <64 hex digits>`",
                    n + 1
                ))
            };
            let mut parts = line.split_whitespace();
            let epoch: u32 = parts.next().and_then(|e| e.parse().ok()).ok_or_else(bad)?;
            let created_unix_s: i64 = parts.next().and_then(|e| e.parse().ok()).ok_or_else(bad)?;
            let bytes = parts.next().and_then(hex::decode).ok_or_else(bad)?;
            let private = PrivateKey::from_bytes(&bytes).map_err(|_| bad())?;
            keys.epochs.insert(
                epoch,
                Epoch {
                    epoch,
                    created_unix_s,
                    private,
                },
            );
        }
        if keys.epochs.is_empty() {
            return Err(TransportError::BadKey(
                "no epoch in the transport keys; make them with `handoff transport-key new`".into(),
            ));
        }
        Ok(keys)
    }

    /// The keys file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# handoff transport keys: <epoch> <created unix seconds> <private key>. Secret: keep like the KEK.\n",
        );
        for e in self.epochs.values() {
            text.push_str(&format!(
                "{} {} {}\n",
                e.epoch,
                e.created_unix_s,
                hex::encode(&e.private.to_bytes())
            ));
        }
        text
    }

    /// Reads the keys file.
    pub fn load(path: &Path) -> Result<TransportKeys, TransportError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            file_error(
                path,
                format!("{e}; make it with `handoff transport-key new --out FILE`"),
            )
        })?;
        TransportKeys::parse(&text).map_err(|e| file_error(path, e.to_string()))
    }

    /// Writes the keys file (mode 0600), replacing it whole (written beside it, then
    /// renamed), so a crash leaves the old or the new keys, never half.
    pub fn save(&self, path: &Path) -> Result<(), TransportError> {
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            let mut f = options.open(&tmp)?;
            std::io::Write::write_all(&mut f, self.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| file_error(path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let mut keys = TransportKeys::generate(10).expect("keys");
        keys.rotate(20).expect("rotate");
        let back = TransportKeys::parse(&keys.to_text()).expect("parses");
        assert_eq!(back.current_public(), keys.current_public());
        assert_eq!(back.epochs().count(), 2);
        let public = keys.current_public();
        assert_eq!(
            TransportPublic::parse(&public.to_line()).expect("parses"),
            public
        );
        assert!(format!("{keys:?}").len() < 60, "Debug prints no key");
    }
}
