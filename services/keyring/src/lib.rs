//! The keyring: one random data key per subject and contributing agency,
//! wrapped by the deployment's key-encryption key (KEK) and kept in a sled
//! store of its own (`<data>/keys`), never in the log.
//!
//! Personal details are sealed with XChaCha20-Poly1305 under the key of the
//! subject and the agency that contributed them, before anything is written to
//! the log or a projection. Erasing destroys keys and rewrites the key store
//! into fresh files, so no wrapped key is left behind in sled's old segments:
//! from then on every sealed copy under those keys, in the log, the
//! projections, the quarantine and every export, is ciphertext nobody can open.
//! An agency's own erasure destroys only its key for the subject; the
//! exchange's destroys them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use handoff_contract::v1::{PrivateParts, SealedDetails};
use prost::Message;

mod entries;
mod files;
mod kek;

use entries::{agencies_prefix, agency_entry, entry};
use files::{open_db, recover, sync_dir};
pub use kek::Kek;

/// The directory of the key store inside the data dir.
pub const KEYS_DIR: &str = "keys";

const KEY_PREFIX: u8 = b'k';
const ERASED_PREFIX: u8 = b'e';
const CHECK: &[u8] = b"mcheck";
const PENDING_REWRITE: &[u8] = b"mrewrite";
const CHECK_PLAINTEXT: &[u8] = b"handoff-kek-check-v1";
const WRAP_AAD: &[u8] = b"handoff-subject-key-v1";
const DETAILS_AAD: &[u8] = b"handoff-details-v3";

/// The subject under whose key (with the publishing agency) the exchange seals a refused
/// body it could not read: it may hold anything, so it is never kept in the clear.
pub const QUARANTINE_SUBJECT: &str = "";
const NONCE_LEN: usize = 24;

/// What went wrong with keys; each message says what an operator can do.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The KEK text is not 32 bytes of hex.
    #[error(
        "the key-encryption key must be 64 hex digits (32 bytes): {0}. Create one with `handoff kek --out FILE`"
    )]
    BadKek(String),
    /// The KEK could not be read from where the config says it is.
    #[error("cannot read the key-encryption key from {source_name}: {detail}")]
    KekUnavailable {
        /// File path or environment variable.
        source_name: String,
        /// Why.
        detail: String,
    },
    /// sled failed.
    #[error("key store {path}: {source}")]
    Store {
        /// The key store directory.
        path: PathBuf,
        /// sled's error.
        source: sled::Error,
    },
    /// A file operation of the rewrite after an erasure failed.
    #[error("key store {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store was created under a different KEK.
    #[error(
        "the key-encryption key does not open the key store at {0}; start with the KEK it was created with"
    )]
    WrongKek(PathBuf),
    /// A wrapped key or sealed details failed authentication.
    #[error(
        "the sealed personal details of subject {subject} (event {event_id}) fail authentication: altered, or sealed by another exchange's keys"
    )]
    Tampered {
        /// Whose details.
        subject: String,
        /// The event they came with.
        event_id: String,
    },
    /// Sealed details exist but neither a key nor an erasure does.
    #[error(
        "no data key for subject {0} and no record of an erasure: the key store does not belong to this log (restored from another backup?)"
    )]
    KeyMissing(String),
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Randomness(String),
}

/// A recorded erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// When the key was destroyed (the erasure event's log time).
    pub at_unix_ms: i64,
    /// Why, as requested.
    pub reason: String,
}

/// What sealed private parts open to.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// The subject's details and the event's free text.
    Private(PrivateParts),
    /// The subject was erased; the details are gone for good.
    Erased,
}

/// Per-subject data keys in their own sled store.
pub struct Keyring {
    dir: PathBuf,
    kek: Kek,
    db: RwLock<sled::Db>,
    cache: Mutex<HashMap<String, [u8; 32]>>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("dir", &self.dir).finish()
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeyringError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| KeyringError::Randomness(e.to_string()))?;
    Ok(bytes)
}

fn aad(prefix: &[u8], parts: &[&str]) -> Vec<u8> {
    let mut a = prefix.to_vec();
    for p in parts {
        a.extend_from_slice(&(p.len() as u64).to_be_bytes());
        a.extend_from_slice(p.as_bytes());
    }
    a
}

fn lock_poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    // A panic elsewhere cannot leave the map or handle half-written; carry on.
    e.into_inner()
}

impl Keyring {
    /// Opens (or creates) the key store under `data_dir`, finishing a rewrite a crash
    /// interrupted, and refuses a KEK the store was not created with.
    pub fn load(data_dir: &Path, kek: Kek) -> Result<Keyring, KeyringError> {
        let dir = data_dir.join(KEYS_DIR);
        recover(data_dir)?;
        let db = open_db(&dir)?;
        let keyring = Keyring {
            dir: dir.clone(),
            kek,
            db: RwLock::new(db),
            cache: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
        };
        keyring.check_kek()?;
        if keyring.read(PENDING_REWRITE)?.is_some() {
            keyring.rewrite()?;
        }
        Ok(keyring)
    }

    fn store_err(&self, source: sled::Error) -> KeyringError {
        KeyringError::Store {
            path: self.dir.clone(),
            source,
        }
    }

    fn read(&self, key: &[u8]) -> Result<Option<sled::IVec>, KeyringError> {
        let db = self.db.read().unwrap_or_else(lock_poisoned);
        db.get(key).map_err(|e| self.store_err(e))
    }

    fn write(&self, key: &[u8], value: &[u8]) -> Result<(), KeyringError> {
        let db = self.db.read().unwrap_or_else(lock_poisoned);
        db.insert(key, value).map_err(|e| self.store_err(e))?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    fn check_kek(&self) -> Result<(), KeyringError> {
        match self.read(CHECK)? {
            Some(wrapped) => {
                let opened = self.unwrap_with_kek(&wrapped, b"")?;
                if opened.as_deref() != Some(CHECK_PLAINTEXT) {
                    return Err(KeyringError::WrongKek(self.dir.clone()));
                }
            }
            None => {
                let wrapped = self.wrap_with_kek(CHECK_PLAINTEXT, b"")?;
                self.write(CHECK, &wrapped)?;
                self.flush_blocking()?;
            }
        }
        Ok(())
    }

    fn wrap_with_kek(&self, plaintext: &[u8], subject: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut associated = WRAP_AAD.to_vec();
        associated.extend_from_slice(subject);
        let sealed = self
            .kek
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &associated,
                },
            )
            .map_err(|_| KeyringError::Randomness("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// None when the KEK does not open it.
    fn unwrap_with_kek(
        &self,
        wrapped: &[u8],
        subject: &[u8],
    ) -> Result<Option<Vec<u8>>, KeyringError> {
        if wrapped.len() < NONCE_LEN {
            return Ok(None);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let mut associated = WRAP_AAD.to_vec();
        associated.extend_from_slice(subject);
        Ok(self
            .kek
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &associated,
                },
            )
            .ok())
    }

    /// The data key of what `agency` contributed about `subject`; created (not yet
    /// flushed) when `create` and none exists.
    fn data_key(
        &self,
        subject: &str,
        agency: &str,
        create: bool,
    ) -> Result<Option<[u8; 32]>, KeyringError> {
        let name = agency_entry(KEY_PREFIX, subject, agency);
        let cache_key = String::from_utf8_lossy(&name).into_owned();
        if let Some(k) = self
            .cache
            .lock()
            .unwrap_or_else(lock_poisoned)
            .get(&cache_key)
        {
            return Ok(Some(*k));
        }
        let wrap_aad = &name[1..];
        let key = match self.read(&name)? {
            Some(wrapped) => self
                .unwrap_with_kek(&wrapped, wrap_aad)?
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| KeyringError::Tampered {
                    subject: subject.to_string(),
                    event_id: "(data key)".into(),
                })?,
            None if create => {
                let key: [u8; 32] = random()?;
                let wrapped = self.wrap_with_kek(&key, wrap_aad)?;
                self.write(&name, &wrapped)?;
                key
            }
            None => return Ok(None),
        };
        self.cache
            .lock()
            .unwrap_or_else(lock_poisoned)
            .insert(cache_key, key);
        Ok(Some(key))
    }

    /// Whether what `agency` contributed about `subject` is erased: by the exchange
    /// (everything about the subject) or by the agency itself.
    fn erased_for(&self, subject: &str, agency: &str) -> Result<bool, KeyringError> {
        Ok(self.erasure(subject)?.is_some() || self.erasure_by(subject, agency)?.is_some())
    }

    /// Seals the private parts (personal details, free text) that `agency` contributed
    /// about `subject` under their key, creating it if needed. Parts about a subject
    /// already erased (by the exchange, or by this agency) are dropped and the seal says
    /// so. Call [`Keyring::flush`] before writing anything that refers to a new key.
    pub fn seal(
        &self,
        subject: &str,
        agency: &str,
        event_id: &str,
        parts: &PrivateParts,
    ) -> Result<SealedDetails, KeyringError> {
        let mut sealed = self.seal_bytes(subject, agency, event_id, &parts.encode_to_vec())?;
        sealed.has_details = parts.details.is_some();
        Ok(sealed)
    }

    /// Seals any bytes under the key of `subject` and `agency` (a refused body that could
    /// not be read is sealed under the agency's quarantine key, [`QUARANTINE_SUBJECT`]).
    pub fn seal_bytes(
        &self,
        subject: &str,
        agency: &str,
        event_id: &str,
        plaintext: &[u8],
    ) -> Result<SealedDetails, KeyringError> {
        let mut sealed = SealedDetails {
            subject_pseudonym: subject.to_string(),
            event_id: event_id.to_string(),
            agency: agency.to_string(),
            ..SealedDetails::default()
        };
        if self.erased_for(subject, agency)? {
            sealed.erased = true;
            return Ok(sealed);
        }
        let Some(key) = self.data_key(subject, agency, true)? else {
            return Err(KeyringError::KeyMissing(subject.to_string()));
        };
        let nonce: [u8; NONCE_LEN] = random()?;
        let associated = aad(DETAILS_AAD, &[subject, agency, event_id]);
        sealed.ciphertext = XChaCha20Poly1305::new((&key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &associated,
                },
            )
            .map_err(|_| KeyringError::Randomness("encryption failed".into()))?;
        sealed.nonce = nonce.to_vec();
        Ok(sealed)
    }

    /// Opens sealed private parts: the parts, or `Erased` once their key is destroyed.
    pub fn open(&self, sealed: &SealedDetails) -> Result<Opened, KeyringError> {
        let Some(plaintext) = self.open_bytes(sealed)? else {
            return Ok(Opened::Erased);
        };
        PrivateParts::decode(plaintext.as_slice())
            .map(Opened::Private)
            .map_err(|_| KeyringError::Tampered {
                subject: sealed.subject_pseudonym.clone(),
                event_id: sealed.event_id.clone(),
            })
    }

    /// Opens sealed bytes: `None` once their key is destroyed.
    pub fn open_bytes(&self, sealed: &SealedDetails) -> Result<Option<Vec<u8>>, KeyringError> {
        let subject = sealed.subject_pseudonym.as_str();
        let agency = sealed.agency.as_str();
        if sealed.erased {
            return Ok(None);
        }
        let Some(key) = self.data_key(subject, agency, false)? else {
            return if self.erased_for(subject, agency)? {
                Ok(None)
            } else {
                Err(KeyringError::KeyMissing(subject.to_string()))
            };
        };
        let tampered = || KeyringError::Tampered {
            subject: subject.to_string(),
            event_id: sealed.event_id.clone(),
        };
        if sealed.nonce.len() != NONCE_LEN {
            return Err(tampered());
        }
        let associated = aad(DETAILS_AAD, &[subject, agency, &sealed.event_id]);
        XChaCha20Poly1305::new((&key).into())
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &associated,
                },
            )
            .map(Some)
            .map_err(|_| tampered())
    }

    /// The exchange's erasure of the subject (every key), if there was one.
    pub fn erasure(&self, subject: &str) -> Result<Option<Erasure>, KeyringError> {
        Ok(self
            .read(&entry(ERASED_PREFIX, subject))?
            .map(|v| tombstone(&v)))
    }

    /// An agency's erasure of what it contributed about the subject, if there was one.
    pub fn erasure_by(&self, subject: &str, agency: &str) -> Result<Option<Erasure>, KeyringError> {
        Ok(self
            .read(&agency_entry(ERASED_PREFIX, subject, agency))?
            .map(|v| tombstone(&v)))
    }

    /// Every agency's own erasure about the subject, by agency.
    pub fn agency_erasures(&self, subject: &str) -> Result<Vec<(String, Erasure)>, KeyringError> {
        self.by_agency(ERASED_PREFIX, subject, tombstone)
    }

    /// The subject's wrapped data keys as stored, by contributing agency (for checking
    /// that an erasure left no copy).
    pub fn wrapped_keys(&self, subject: &str) -> Result<Vec<(String, Vec<u8>)>, KeyringError> {
        self.by_agency(KEY_PREFIX, subject, |v| v.to_vec())
    }

    fn by_agency<T>(
        &self,
        prefix: u8,
        subject: &str,
        value: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<(String, T)>, KeyringError> {
        let start = agencies_prefix(prefix, subject);
        let db = self.db.read().unwrap_or_else(lock_poisoned);
        let mut out = Vec::new();
        for item in db.scan_prefix(&start) {
            let (k, v) = item.map_err(|e| self.store_err(e))?;
            out.push((
                String::from_utf8_lossy(&k[start.len()..]).into_owned(),
                value(&v),
            ));
        }
        Ok(out)
    }

    /// Destroys keys and records the erasure (not yet flushed; then call
    /// [`Keyring::flush`] and [`Keyring::finish_erasures`]): with `agency`, only that
    /// agency's key for the subject; without, every key of the subject (the exchange's
    /// erasure). False if that erasure already happened.
    pub fn erase(
        &self,
        subject: &str,
        agency: Option<&str>,
        reason: &str,
        at_unix_ms: i64,
    ) -> Result<bool, KeyringError> {
        let (tombstone_key, doomed) = match agency {
            Some(agency) => {
                if self.erased_for(subject, agency)? {
                    return Ok(false);
                }
                (
                    agency_entry(ERASED_PREFIX, subject, agency),
                    vec![agency_entry(KEY_PREFIX, subject, agency)],
                )
            }
            None => {
                if self.erasure(subject)?.is_some() {
                    return Ok(false);
                }
                let keys = self
                    .wrapped_keys(subject)?
                    .into_iter()
                    .map(|(agency, _)| agency_entry(KEY_PREFIX, subject, &agency))
                    .collect();
                (entry(ERASED_PREFIX, subject), keys)
            }
        };
        let mut value = (at_unix_ms as u64).to_be_bytes().to_vec();
        value.extend_from_slice(reason.as_bytes());
        {
            let db = self.db.read().unwrap_or_else(lock_poisoned);
            let mut batch = sled::Batch::default();
            batch.insert(tombstone_key, value);
            for key in &doomed {
                batch.remove(key.as_slice());
            }
            batch.insert(PENDING_REWRITE, &[] as &[u8]);
            db.apply_batch(batch).map_err(|e| self.store_err(e))?;
        }
        self.dirty.store(true, Ordering::Release);
        let mut cache = self.cache.lock().unwrap_or_else(lock_poisoned);
        for key in &doomed {
            cache.remove(String::from_utf8_lossy(key).as_ref());
        }
        drop(cache);
        tracing::info!(
            subject,
            agency,
            reason,
            "subject erased: data keys destroyed"
        );
        Ok(true)
    }

    /// Makes new keys and erasures durable (a no-op when nothing changed).
    pub async fn flush(&self) -> Result<(), KeyringError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let db = self.db.read().unwrap_or_else(lock_poisoned).clone();
        db.flush_async().await.map_err(|e| self.store_err(e))?;
        Ok(())
    }

    fn flush_blocking(&self) -> Result<(), KeyringError> {
        let db = self.db.read().unwrap_or_else(lock_poisoned);
        db.flush().map_err(|e| self.store_err(e))?;
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }

    /// The key store's directory (`<data_dir>/keys`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies the key store into a new sled store at `<data_dir>/keys` (for a backup).
    pub fn copy_to(&self, data_dir: &Path) -> Result<(), KeyringError> {
        let db = self.db.read().unwrap_or_else(lock_poisoned);
        let target = open_db(&data_dir.join(KEYS_DIR))?;
        for item in db.iter() {
            let (k, v) = item.map_err(|e| self.store_err(e))?;
            if k.as_ref() != PENDING_REWRITE {
                target.insert(k, v).map_err(|e| self.store_err(e))?;
            }
        }
        target.flush().map_err(|e| self.store_err(e))?;
        Ok(())
    }

    /// After erasures: rewrites the key store into fresh files so that no destroyed
    /// key survives in sled's old segments. Blocking; a no-op when none is pending.
    pub fn finish_erasures(&self) -> Result<(), KeyringError> {
        if self.read(PENDING_REWRITE)?.is_some() {
            self.rewrite()?;
        }
        Ok(())
    }

    fn rewrite(&self) -> Result<(), KeyringError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyringError::Io { path, source }
        };
        let parent = self.dir.parent().unwrap_or(Path::new(".")).to_path_buf();
        let next = parent.join(format!("{KEYS_DIR}.next"));
        let old = parent.join(format!("{KEYS_DIR}.old"));
        let mut guard = self.db.write().unwrap_or_else(lock_poisoned);
        if next.exists() {
            std::fs::remove_dir_all(&next).map_err(io(&next))?;
        }
        {
            let fresh = open_db(&next)?;
            for item in guard.iter() {
                let (k, v) = item.map_err(|e| self.store_err(e))?;
                if k.as_ref() != PENDING_REWRITE {
                    fresh.insert(k, v).map_err(|e| self.store_err(e))?;
                }
            }
            fresh.flush().map_err(|e| self.store_err(e))?;
        }
        // Let go of the old files before moving them.
        let placeholder = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| self.store_err(e))?;
        drop(std::mem::replace(&mut *guard, placeholder));
        std::fs::rename(&self.dir, &old).map_err(io(&self.dir))?;
        std::fs::rename(&next, &self.dir).map_err(io(&next))?;
        sync_dir(&parent).map_err(io(&parent))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
        sync_dir(&parent).map_err(io(&parent))?;
        *guard = open_db(&self.dir)?;
        tracing::info!(dir = %self.dir.display(), "key store rewritten after erasure");
        Ok(())
    }
}

fn tombstone(v: &[u8]) -> Erasure {
    Erasure {
        at_unix_ms: u64_prefix(v) as i64,
        reason: String::from_utf8_lossy(v.get(8..).unwrap_or_default()).into_owned(),
    }
}

fn u64_prefix(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> PrivateParts {
        PrivateParts {
            details: Some(handoff_contract::v1::PersonalDetails {
                full_name: "Tomáš Procházka".into(),
                date_of_birth: "1984-03-02".into(),
                phone: "+420 603 123 456".into(),
                address: "Husova 5, 370 05 České Budějovice".into(),
            }),
            text: vec!["met him at Husova 5".into()],
        }
    }

    fn files_contain(dir: &Path, needle: &[u8]) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(bytes) = std::fs::read(&p)
                    && bytes.windows(needle.len()).any(|w| w == needle)
                {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn seals_opens_and_erases_for_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = Kek::generate().expect("kek");
        let ring = Keyring::load(dir.path(), kek.clone()).expect("open");
        let sealed = ring.seal("s1", "police", "e1", &details()).expect("seal");
        let other = ring.seal("s2", "police", "e2", &details()).expect("seal");
        assert!(!sealed.ciphertext.is_empty());
        assert!(
            !sealed
                .ciphertext
                .windows("Procházka".len())
                .any(|w| w == "Procházka".as_bytes())
        );
        assert_eq!(
            ring.open(&sealed).expect("open"),
            Opened::Private(details())
        );
        ring.flush_blocking().expect("flush");
        let wrapped = ring.wrapped_keys("s1").expect("read").remove(0).1;
        assert!(
            files_contain(dir.path(), &wrapped),
            "the scan sees stored keys"
        );

        assert!(ring.erase("s1", None, "asked to", 1000).expect("erase"));
        assert!(!ring.erase("s1", None, "again", 2000).expect("erase"));
        ring.flush_blocking().expect("flush");
        ring.finish_erasures().expect("rewrite");
        assert_eq!(ring.open(&sealed).expect("open"), Opened::Erased);
        assert_eq!(
            ring.erasure("s1").expect("read"),
            Some(Erasure {
                at_unix_ms: 1000,
                reason: "asked to".into()
            })
        );
        assert!(
            !files_contain(dir.path(), &wrapped),
            "no copy of the key left"
        );
        assert_eq!(ring.open(&other).expect("open"), Opened::Private(details()));
        // New details for an erased subject are dropped, not stored.
        let again = ring.seal("s1", "police", "e3", &details()).expect("seal");
        assert!(again.erased && again.ciphertext.is_empty());
        assert!(ring.wrapped_keys("s1").expect("read").is_empty());

        drop(ring);
        let ring = Keyring::load(dir.path(), kek).expect("reopen");
        assert_eq!(ring.open(&sealed).expect("open"), Opened::Erased);
        assert_eq!(ring.open(&other).expect("open"), Opened::Private(details()));
    }

    #[test]
    fn an_agency_erases_only_what_it_contributed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load(dir.path(), Kek::generate().expect("kek")).expect("open");
        let police = ring.seal("s1", "police", "e1", &details()).expect("seal");
        let social = ring.seal("s1", "social", "e2", &details()).expect("seal");
        assert!(ring.erase("s1", Some("police"), "asked", 5).expect("erase"));
        assert!(!ring.erase("s1", Some("police"), "again", 6).expect("erase"));
        ring.flush_blocking().expect("flush");
        ring.finish_erasures().expect("rewrite");
        assert_eq!(ring.open(&police).expect("open"), Opened::Erased);
        assert_eq!(
            ring.open(&social).expect("open"),
            Opened::Private(details())
        );
        assert!(ring.erasure("s1").expect("read").is_none());
        assert_eq!(ring.agency_erasures("s1").expect("read").len(), 1);
        // The police's later details about the subject are dropped; others' are kept.
        assert!(
            ring.seal("s1", "police", "e3", &details())
                .expect("seal")
                .erased
        );
        assert!(
            !ring
                .seal("s1", "social", "e4", &details())
                .expect("seal")
                .erased
        );
        // A sealed copy moved to another agency's name does not open.
        let mut moved = social.clone();
        moved.agency = "ngo".into();
        assert!(ring.open(&moved).is_err());
        // The exchange's erasure takes every key.
        assert!(ring.erase("s1", None, "retention", 7).expect("erase"));
        assert_eq!(ring.open(&social).expect("open"), Opened::Erased);
        assert!(ring.wrapped_keys("s1").expect("read").is_empty());
    }

    #[test]
    fn refuses_a_foreign_kek_and_altered_details() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = Keyring::load(dir.path(), Kek::generate().expect("kek")).expect("open");
        let mut sealed = ring.seal("s1", "police", "e1", &details()).expect("seal");
        sealed.event_id = "e2".into();
        assert!(matches!(
            ring.open(&sealed),
            Err(KeyringError::Tampered { .. })
        ));
        drop(ring);
        assert!(matches!(
            Keyring::load(dir.path(), Kek::generate().expect("kek")),
            Err(KeyringError::WrongKek(_))
        ));
    }

    #[test]
    fn an_interrupted_rewrite_is_finished_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = Kek::generate().expect("kek");
        let sealed;
        {
            let ring = Keyring::load(dir.path(), kek.clone()).expect("open");
            sealed = ring.seal("s1", "police", "e1", &details()).expect("seal");
            ring.erase("s1", None, "asked", 1).expect("erase");
            ring.flush_blocking().expect("flush");
            // Crash before the rewrite: the marker stays.
        }
        let ring = Keyring::load(dir.path(), kek.clone()).expect("reopen");
        assert!(ring.read(PENDING_REWRITE).expect("read").is_none());
        assert_eq!(ring.open(&sealed).expect("open"), Opened::Erased);
        drop(ring);
        // Crash between the two renames: only keys.next is whole.
        std::fs::rename(dir.path().join("keys"), dir.path().join("keys.next")).expect("rename");
        let ring = Keyring::load(dir.path(), kek).expect("recovered");
        assert_eq!(ring.open(&sealed).expect("open"), Opened::Erased);
    }

    #[test]
    fn kek_round_trips_as_hex() {
        let kek = Kek::generate().expect("kek");
        let again = Kek::from_hex(&format!("{}\n", kek.to_hex())).expect("parse");
        assert_eq!(kek.to_hex(), again.to_hex());
        assert!(Kek::from_hex("abcd").is_err());
    }
}
