//! Sealed before it leaves the agency: a publisher seals an event's private parts
//! (`handoff_domain::private`: the subject's personal details and every free-text
//! field) to the deployment's transport public key, so the broker only ever stores
//! ciphertext; the exchange opens them with the epoch's private key and re-seals
//! them under the subject's own key (the keyring).
//!
//! One key agreement per publisher session and epoch, not per message: the sender
//! sets up an HPKE context (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, export only) once and exports a 32-byte key; each message is then
//! XChaCha20-Poly1305 under that key with a random nonce, bound to the agency, the
//! event id and the epoch. The exchange caches the key per encapsulated key.
//!
//! The transport keys rotate in epochs ([`TransportKeys`], a file held like the KEK
//! by every exchange node); an epoch's private key is destroyed once the stream can
//! no longer hold messages sealed to it (`prune`, after the stream's max age).

mod keys;

pub use keys::{Epoch, TransportKeys, TransportPublic};

use std::collections::HashMap;
use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use handoff_contract::v1::{Envelope, PrivateParts, TransportSeal};
use handoff_domain::private::{put_private, take_private};
use hpke::aead::ExportOnlyAead;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use prost::Message;

const INFO: &[u8] = b"handoff-transport-v1";
const EXPORT_CONTEXT: &[u8] = b"handoff-transport-key";
const NONCE_LEN: usize = 24;
/// Exported keys the exchange keeps before it starts over: a flood of fresh
/// encapsulated keys costs the flooder its quota, not the exchange's memory.
const CACHE_ENTRIES: usize = 4096;

type Suite = X25519HkdfSha256;

/// What can go wrong sealing or opening.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No randomness from the operating system.
    #[error("no randomness for the transport seal: {0}")]
    Randomness(String),
    /// HPKE refused the key (a malformed public key).
    #[error("the transport public key cannot be used: {0}")]
    BadKey(String),
    /// A transport keys or public key file could not be read or written.
    #[error("transport key file {path}: {detail}")]
    File {
        /// Which file.
        path: String,
        /// What went wrong and what to do.
        detail: String,
    },
}

/// Why an envelope's private parts could not be opened (the exchange refuses it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Personal details or free text in the clear (or references with no seal).
    #[error(
        "personal details or free text travel in the clear; seal them to the exchange's transport key before publishing (docs/publishing.md)"
    )]
    Unsealed,
    /// The seal does not open: unknown or retired epoch, altered, or not this event's.
    #[error("the transport seal does not open: {0}")]
    Seal(String),
    /// It opened, but its parts do not fit the envelope.
    #[error("{0}")]
    Mismatch(String),
}

fn associated(agency: &str, event_id: &str, epoch: u32) -> Vec<u8> {
    let mut a = INFO.to_vec();
    for part in [agency, event_id] {
        a.extend_from_slice(&(part.len() as u64).to_be_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a.extend_from_slice(&u64::from(epoch).to_be_bytes());
    a
}

/// A publisher's sealing context: one HPKE key agreement with one epoch's key.
pub struct Sealer {
    epoch: u32,
    encapsulated: Vec<u8>,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Sealer {
    /// Sets up a context to `public` (one key agreement).
    pub fn new(public: &TransportPublic) -> Result<Sealer, TransportError> {
        let (encapsulated, context) = hpke::setup_sender::<ExportOnlyAead, HkdfSha256, Suite>(
            &OpModeS::Base,
            public.key(),
            INFO,
        )
        .map_err(|e| TransportError::BadKey(e.to_string()))?;
        let mut key = [0u8; 32];
        context
            .export(EXPORT_CONTEXT, &mut key)
            .map_err(|e| TransportError::BadKey(e.to_string()))?;
        Ok(Sealer {
            epoch: public.epoch,
            encapsulated: encapsulated.to_bytes().to_vec(),
            cipher: XChaCha20Poly1305::new((&key).into()),
        })
    }

    /// The epoch this context seals to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Takes `envelope`'s private parts out and seals them into its `transport_seal`
    /// (references stay in the free-text fields). Nothing private: left as it is.
    pub fn seal(&self, envelope: &mut Envelope) -> Result<(), TransportError> {
        let Some(parts) = take_private(envelope, 0) else {
            return Ok(());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| TransportError::Randomness(e.to_string()))?;
        let aad = associated(&envelope.source_agency, &envelope.event_id, self.epoch);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &parts.encode_to_vec(),
                    aad: &aad,
                },
            )
            .map_err(|_| TransportError::Randomness("encryption failed".into()))?;
        envelope.transport_seal = Some(TransportSeal {
            epoch: self.epoch,
            encapsulated_key: self.encapsulated.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        });
        Ok(())
    }
}

/// The exchange's side: the epochs' private keys and the keys agreed so far.
pub struct Opener {
    keys: TransportKeys,
    agreed: Mutex<HashMap<(u32, Vec<u8>), XChaCha20Poly1305>>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field(
                "epochs",
                &self.keys.epochs().map(|e| e.epoch).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Opener {
    /// Opens with the private keys of `keys`' epochs.
    pub fn new(keys: TransportKeys) -> Opener {
        Opener {
            keys,
            agreed: Mutex::new(HashMap::new()),
        }
    }

    fn cipher(&self, seal: &TransportSeal) -> Result<XChaCha20Poly1305, OpenError> {
        let index = (seal.epoch, seal.encapsulated_key.clone());
        let mut agreed = self.agreed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = agreed.get(&index) {
            return Ok(c.clone());
        }
        let epoch = self.keys.private(seal.epoch).ok_or_else(|| {
            OpenError::Seal(format!(
                "epoch {} is not held by this exchange (unknown, or retired and destroyed); seal to the current transport key",
                seal.epoch
            ))
        })?;
        let encapsulated = <Suite as Kem>::EncappedKey::from_bytes(&seal.encapsulated_key)
            .map_err(|_| {
                OpenError::Seal("the encapsulated key is not an X25519 public key".into())
            })?;
        let context = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Suite>(
            &OpModeR::Base,
            epoch,
            &encapsulated,
            INFO,
        )
        .map_err(|e| OpenError::Seal(format!("key agreement failed: {e}")))?;
        let mut key = [0u8; 32];
        context
            .export(EXPORT_CONTEXT, &mut key)
            .map_err(|e| OpenError::Seal(format!("key export failed: {e}")))?;
        let cipher = XChaCha20Poly1305::new((&key).into());
        if agreed.len() >= CACHE_ENTRIES {
            agreed.clear();
        }
        agreed.insert(index, cipher.clone());
        Ok(cipher)
    }

    /// Opens `envelope`'s transport seal and puts its private parts back, so it stands
    /// as the publisher wrote it. An envelope without a seal must carry nothing
    /// private.
    pub fn open(&self, envelope: &mut Envelope) -> Result<(), OpenError> {
        let Some(seal) = envelope.transport_seal.take() else {
            let mut probe = envelope.clone();
            return match take_private(&mut probe, 0) {
                None => Ok(()),
                Some(_) => Err(OpenError::Unsealed),
            };
        };
        handoff_domain::limits::check_transport_seal(&seal)
            .map_err(|r| OpenError::Seal(r.to_string()))?;
        // The limits let an empty nonce through (an absent field); a cipher needs all 24.
        if seal.nonce.len() != NONCE_LEN {
            return Err(OpenError::Seal(format!(
                "transport_seal.nonce is {} bytes; it must be exactly {NONCE_LEN}",
                seal.nonce.len()
            )));
        }
        let aad = associated(&envelope.source_agency, &envelope.event_id, seal.epoch);
        let plaintext = self
            .cipher(&seal)?
            .decrypt(
                XNonce::from_slice(&seal.nonce),
                Payload {
                    msg: &seal.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                OpenError::Seal(
                    "authentication failed: altered, or sealed for another event or agency".into(),
                )
            })?;
        let parts = PrivateParts::decode(plaintext.as_slice())
            .map_err(|_| OpenError::Seal("the sealed parts are not PrivateParts".into()))?;
        put_private(envelope, parts).map_err(|r| OpenError::Mismatch(r.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::envelope::Event;
    use handoff_contract::v1::{IncidentReported, PersonalDetails};

    fn incident() -> Envelope {
        Envelope {
            event_id: "0190b0c0-0000-7000-8000-000000000001".into(),
            source_agency: "police".into(),
            event: Some(Event::IncidentReported(IncidentReported {
                narrative: "Lidická 12 and 100 m around it".into(),
                subject_details: Some(PersonalDetails {
                    full_name: "Jan Novák".into(),
                    ..PersonalDetails::default()
                }),
                ..IncidentReported::default()
            })),
            ..Envelope::default()
        }
    }

    #[test]
    fn seals_for_the_exchange_only() {
        let keys = TransportKeys::generate(1_000).expect("keys");
        let sealer = Sealer::new(&keys.current_public()).expect("sealer");
        let original = incident();
        let mut sent = original.clone();
        sealer.seal(&mut sent).expect("sealed");
        let wire = sent.encode_to_vec();
        for clear in ["Jan Nov", "Lidická"] {
            assert!(
                !wire.windows(clear.len()).any(|w| w == clear.as_bytes()),
                "{clear} on the wire"
            );
        }
        let opener = Opener::new(keys.clone());
        let mut got = Envelope::decode(wire.as_slice()).expect("decodes");
        opener.open(&mut got).expect("opens");
        assert_eq!(got, original);

        // Another exchange's keys, another event id, or an altered byte do not open it.
        let other = Opener::new(TransportKeys::generate(1_000).expect("keys"));
        let mut e = sent.clone();
        assert!(matches!(other.open(&mut e), Err(OpenError::Seal(_))));
        let mut e = sent.clone();
        e.event_id = "0190b0c0-0000-7000-8000-000000000002".into();
        assert!(matches!(opener.open(&mut e), Err(OpenError::Seal(_))));
        let mut e = sent.clone();
        if let Some(s) = e.transport_seal.as_mut() {
            s.ciphertext[0] ^= 1;
        }
        assert!(matches!(opener.open(&mut e), Err(OpenError::Seal(_))));
        // Missing or short parts are refused, never a panic (found by the fuzzer).
        for cut in [
            |s: &mut TransportSeal| s.nonce.clear(),
            |s: &mut TransportSeal| s.encapsulated_key.clear(),
        ] {
            let mut e = sent.clone();
            if let Some(s) = e.transport_seal.as_mut() {
                cut(s);
            }
            assert!(matches!(opener.open(&mut e), Err(OpenError::Seal(_))));
        }
    }

    #[test]
    fn refuses_the_clear_and_retired_epochs() {
        let mut keys = TransportKeys::generate(1_000).expect("keys");
        let opener = Opener::new(keys.clone());
        assert_eq!(opener.open(&mut incident()), Err(OpenError::Unsealed));
        let old = Sealer::new(&keys.current_public()).expect("sealer");
        keys.rotate(2_000).expect("rotate");
        assert_eq!(keys.current_public().epoch, 2);
        // Retired only once the stream's max age has passed since the successor came.
        assert!(keys.prune(2_000 + 99, 100).is_empty());
        assert_eq!(keys.prune(2_000 + 100, 100), vec![1]);
        let mut e = incident();
        old.seal(&mut e).expect("sealed");
        assert!(matches!(
            Opener::new(keys).open(&mut e),
            Err(OpenError::Seal(_))
        ));
    }
}
