//! The access log: every read of the exchange, append-only and hash-chained,
//! in its own sled tree, flushed before the read is answered.
//!
//! Keys: `r` + sequence → `AccessRecord`; `c` + case id + 0 + sequence and
//! `s` + subject + 0 + sequence → (empty), for reports by case or subject;
//! `mhead` → sequence and hash of the last record.

use std::sync::{Arc, Mutex};

use handoff_contract::v1::AccessRecord;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::chain::{GENESIS, Hash};
use crate::keys::u64_at;
use crate::store::LogError;

/// The access log.
#[derive(Clone)]
pub struct AccessLog {
    db: sled::Db,
    tree: sled::Tree,
    head: Arc<Mutex<(u64, Hash)>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

fn key(prefix: u8, name: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(prefix);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The hash of an access record: over its previous hash and its encoding with both hashes empty.
pub fn access_hash(record: &AccessRecord) -> Hash {
    let mut bare = record.clone();
    bare.prev_hash.clear();
    bare.hash.clear();
    let mut h = Sha256::new();
    h.update(&record.prev_hash);
    h.update(bare.encode_to_vec());
    h.finalize().into()
}

impl AccessLog {
    pub(crate) fn open(db: &sled::Db) -> Result<AccessLog, LogError> {
        let tree = db.open_tree("access")?;
        let head = match tree.get(b"mhead")? {
            None => (0, GENESIS),
            Some(v) => {
                let seq = u64_at(&v, 0).unwrap_or(0);
                let hash: Hash = v
                    .get(8..40)
                    .and_then(|h| h.try_into().ok())
                    .unwrap_or(GENESIS);
                (seq, hash)
            }
        };
        Ok(AccessLog {
            db: db.clone(),
            tree,
            head: Arc::new(Mutex::new(head)),
        })
    }

    /// Copies the whole access log into `target`'s `access` tree, consistently (reads
    /// wait for the copy).
    pub(crate) fn copy_into(&self, target: &sled::Db) -> Result<u64, LogError> {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let copy = target.open_tree("access")?;
        for item in self.tree.iter() {
            let (k, v) = item?;
            copy.insert(k, v)?;
        }
        Ok(head.0)
    }

    /// Appends a read and flushes it to disk. Call before answering the read.
    pub async fn record(&self, mut record: AccessRecord) -> Result<u64, LogError> {
        let seq = {
            let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
            record.sequence = head.0 + 1;
            record.prev_hash = head.1.to_vec();
            record.hash.clear();
            let hash = access_hash(&record);
            record.hash = hash.to_vec();
            let mut batch = sled::Batch::default();
            let mut rk = vec![b'r'];
            rk.extend_from_slice(&record.sequence.to_be_bytes());
            batch.insert(rk, record.encode_to_vec());
            for case in &record.case_ids {
                batch.insert(key(b'c', case, record.sequence), &[][..]);
            }
            for subject in &record.subjects {
                batch.insert(key(b's', subject, record.sequence), &[][..]);
            }
            let mut h = record.sequence.to_be_bytes().to_vec();
            h.extend_from_slice(&hash);
            batch.insert(&b"mhead"[..], h);
            self.tree.apply_batch(batch)?;
            *head = (record.sequence, hash);
            record.sequence
        };
        // Durable before the caller sees data: a read is never lost, even if we die right after.
        self.db.flush_async().await?;
        Ok(seq)
    }

    /// Every recorded read by `agency`, in order. Reads by agency are rare questions
    /// (an auditor's), so this walks the records rather than keeping a third index.
    pub fn report_by_agency(&self, agency: &str) -> Result<Vec<AccessRecord>, LogError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([b'r']) {
            let (k, v) = item?;
            let record = AccessRecord::decode(v.as_ref()).map_err(|e| LogError::Corrupt {
                what: format!("access record {}", u64_at(&k, 1).unwrap_or(0)),
                detail: e.to_string(),
            })?;
            if record.agency == agency {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every recorded read of a case (`by_subject` false) or of a subject, in order.
    pub fn report(&self, name: &str, by_subject: bool) -> Result<Vec<AccessRecord>, LogError> {
        let prefix = key(if by_subject { b's' } else { b'c' }, name, 0);
        let prefix = &prefix[..prefix.len() - 8];
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item?;
            let seq = u64_at(&k, prefix.len()).unwrap_or(0);
            let mut rk = vec![b'r'];
            rk.extend_from_slice(&seq.to_be_bytes());
            if let Some(v) = self.tree.get(rk)? {
                out.push(
                    AccessRecord::decode(v.as_ref()).map_err(|e| LogError::Corrupt {
                        what: format!("access record {seq}"),
                        detail: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }
}
