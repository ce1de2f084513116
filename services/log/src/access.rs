//! The access log: every read of the exchange, append-only and hash-chained,
//! in its own sled tree, durable before the read is answered (through the
//! access journal, [`crate::journal`]).
//!
//! Keys: `r` + sequence → `AccessRecord`; `c` + case id + 0 + sequence and
//! `s` + subject + 0 + sequence → (empty), for reports by case or subject;
//! `mhead` → sequence and hash of the last record.

use std::path::Path;
use std::sync::{Arc, Mutex};

use handoff_contract::v1::AccessRecord;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::chain::{GENESIS, Hash};
use crate::journal::Journal;
use crate::keys::u64_at;
use crate::store::{LogError, corrupt};

/// The access log.
#[derive(Clone)]
pub struct AccessLog {
    db: sled::Db,
    tree: sled::Tree,
    head: Arc<Mutex<Head>>,
}

/// The last record's sequence and hash, and the journal that orders the appends.
struct Head {
    sequence: u64,
    hash: Hash,
    journal: Journal,
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

/// Writes one record, its case and subject index entries, then the head, as
/// single inserts: a sled batch costs ten times as much, and the journal, not
/// sled, is what makes the record durable and whole (a record that sled holds
/// only in part after a crash is written again from the journal at open).
fn write(tree: &sled::Tree, record: &AccessRecord, hash: &Hash) -> Result<(), LogError> {
    let mut rk = vec![b'r'];
    rk.extend_from_slice(&record.sequence.to_be_bytes());
    tree.insert(rk, record.encode_to_vec())?;
    for case in &record.case_ids {
        tree.insert(key(b'c', case, record.sequence), &[][..])?;
    }
    for subject in &record.subjects {
        tree.insert(key(b's', subject, record.sequence), &[][..])?;
    }
    let mut h = record.sequence.to_be_bytes().to_vec();
    h.extend_from_slice(hash);
    tree.insert(&b"mhead"[..], h)?;
    Ok(())
}

impl AccessLog {
    /// Opens the access tree of `db`, whose files are in `dir`, taking in what the
    /// journal holds beyond it.
    pub(crate) fn open(db: &sled::Db, dir: &Path) -> Result<AccessLog, LogError> {
        let tree = db.open_tree("access")?;
        let (mut sequence, mut hash) = match tree.get(b"mhead")? {
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
        let (mut journal, recovered) = Journal::open(dir, (sequence, hash))?;
        for record in recovered {
            // The journal took only frames whose `hash` is their own access hash.
            let own: Hash = record
                .hash
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("access journal", "a frame's hash is not 32 bytes"))?;
            (sequence, hash) = (record.sequence, own);
            write(&tree, &record, &hash)?;
        }
        // sled now holds everything the journal did; make that durable, then start afresh.
        db.flush()?;
        journal.clear()?;
        Ok(AccessLog {
            db: db.clone(),
            tree,
            head: Arc::new(Mutex::new(Head {
                sequence,
                hash,
                journal,
            })),
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
        Ok(head.sequence)
    }

    /// Appends a read and makes it durable. Call before answering the read.
    pub async fn record(&self, mut record: AccessRecord) -> Result<u64, LogError> {
        let (seq, (file, path)) = {
            let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
            record.sequence = head.sequence + 1;
            record.prev_hash = head.hash.to_vec();
            record.hash.clear();
            let hash = access_hash(&record);
            record.hash = hash.to_vec();
            write(&self.tree, &record, &hash)?;
            head.journal.append(&record)?;
            if head.journal.is_full() {
                // Every few thousand reads: sled takes over what the journal held.
                self.db.flush()?;
                head.journal.clear()?;
            }
            (head.sequence, head.hash) = (record.sequence, hash);
            (record.sequence, head.journal.file())
        };
        // Durable before the caller sees data: a read is never lost, even if we die
        // right after. One fdatasync also covers the frames of concurrent reads. On
        // the worker itself where the runtime allows it: handing the call to another
        // thread and back costs about as much as the fdatasync.
        let sync = move || file.sync_data();
        let synced = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(sync),
            _ => tokio::task::spawn_blocking(sync)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r),
        };
        synced.map_err(|source| LogError::Journal {
            path: path.to_path_buf(),
            source,
        })?;
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
