//! The sled-backed store: reading the log and its projections, and writing
//! batches atomically and durably.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use handoff_contract::v1::{
    CaseStatus, CaseView, InboxItem, LogRecord, QuarantineEntry, Receipt, SealedDetails,
    receipt::Status,
};
use prost::Message;

use handoff_domain::{Position, Registry, evolve};

use crate::chain::{GENESIS, Hash, hex, is_intact, record_hash};
use crate::keys::{self, u64_at};

/// How many records at the tail are re-hashed when the store opens.
const TAIL_CHECK: u64 = 1024;

/// What can go wrong with the log store. Messages say what an operator should do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// sled could not open the data dir.
    #[error(
        "cannot open the log store at {path}: {source}. If another handoff process uses this data dir, stop it; if the store is damaged, restore from a backup (the exchange never repairs a store silently)"
    )]
    Open {
        /// The data dir.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// sled failed while reading or writing.
    #[error("the log store failed: {0}. Check free disk space and permissions of the data dir")]
    Store(#[from] sled::Error),
    /// A stored value does not decode or does not match its hash.
    #[error(
        "the log store is damaged at {what}: {detail}. Stop the exchange and restore from a backup; do not edit the data dir"
    )]
    Corrupt {
        /// Where (e.g. "record 42").
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A rebuild of the projections was cut off: they are incomplete.
    #[error(
        "the projections in {path} are incomplete: a rebuild was cut off. Run `handoff admin rebuild` again before serving"
    )]
    RebuildUnfinished {
        /// The data dir.
        path: PathBuf,
    },
    /// The store was written by an incompatible version of Handoff.
    #[error("the log store at {path} has format {found}, this build reads format {expected}")]
    Format {
        /// The data dir.
        path: PathBuf,
        /// The format found.
        found: u64,
        /// The format this build writes.
        expected: u64,
    },
}

fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> LogError {
    LogError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

fn decode<M: Message + Default>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<M, LogError> {
    M::decode(bytes).map_err(|e| corrupt(what(), e.to_string()))
}

/// The state of the log's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Sequence of the last record (0 when empty).
    pub sequence: u64,
    /// Hash of the last record (`GENESIS` when empty).
    pub hash: Hash,
    /// The last JetStream stream sequence consumed (appended or quarantined).
    pub stream_position: u64,
    /// How many messages the quarantine holds.
    pub quarantined: u64,
}

impl Head {
    fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&self.sequence.to_be_bytes());
        b[8..].copy_from_slice(&self.hash);
        b
    }
}

/// Which cases `Log::list_cases` returns.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only cases in this status.
    pub status: Option<CaseStatus>,
    /// Only cases held by this agency.
    pub holder: Option<String>,
}

impl CaseFilter {
    /// Whether a case view passes the filter.
    pub fn matches(&self, v: &CaseView) -> bool {
        self.status.is_none_or(|s| v.status == s as i32)
            && self.holder.as_ref().is_none_or(|h| &v.holder == h)
    }
}

/// The append-only log and its projections.
#[derive(Clone)]
pub struct Log {
    db: sled::Db,
    tree: sled::Tree,
    head: Arc<Mutex<Head>>,
    path: PathBuf,
    access: crate::access::AccessLog,
    committed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Held by every commit, and by a backup for as long as it copies.
    gate: Arc<tokio::sync::Mutex<()>>,
}

/// While this lives, no batch is committed (see [`Log::pause_commits`]).
pub struct CommitPause<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("path", &self.path).finish()
    }
}

impl Log {
    /// Opens (or creates) the log in `dir` and verifies the tail of the hash chain.
    pub fn open(dir: &Path) -> Result<Log, LogError> {
        Self::open_with(dir, &StoreOptions::default())
    }

    /// Opens (or creates) the log in `dir` with these options.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<Log, LogError> {
        let db = open_sled(dir, options.cache_bytes)?;
        let tree = db.open_tree("log")?;
        match tree.get(keys::META_FORMAT)? {
            None if tree.is_empty() => {
                tree.insert(keys::META_FORMAT, &keys::FORMAT.to_be_bytes())?;
                db.flush()?;
            }
            None => return Err(corrupt("format marker", "missing in a non-empty store")),
            Some(v) => {
                let found = u64_at(&v, 0).unwrap_or(0);
                if found != keys::FORMAT {
                    return Err(LogError::Format {
                        path: dir.to_path_buf(),
                        found,
                        expected: keys::FORMAT,
                    });
                }
            }
        }
        if !options.rebuilding && tree.contains_key(keys::META_REBUILDING)? {
            return Err(LogError::RebuildUnfinished {
                path: dir.to_path_buf(),
            });
        }
        let head = Self::read_head(&tree)?;
        let access = crate::access::AccessLog::open(&db)?;
        let log = Log {
            db,
            tree,
            head: Arc::new(Mutex::new(head)),
            path: dir.to_path_buf(),
            access,
            committed: Arc::new(tokio::sync::watch::channel(head.sequence).0),
            gate: Arc::new(tokio::sync::Mutex::new(())),
        };
        log.verify_tail(head)?;
        Ok(log)
    }

    fn read_head(tree: &sled::Tree) -> Result<Head, LogError> {
        let (sequence, hash) = match tree.get(keys::META_HEAD)? {
            None => (0, GENESIS),
            Some(v) => {
                let seq = u64_at(&v, 0).ok_or_else(|| corrupt("head", "too short"))?;
                let hash: Hash = v
                    .get(8..40)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| corrupt("head", "too short"))?;
                (seq, hash)
            }
        };
        let read_u64 = |k: &[u8]| -> Result<u64, LogError> {
            Ok(tree.get(k)?.and_then(|v| u64_at(&v, 0)).unwrap_or(0))
        };
        Ok(Head {
            sequence,
            hash,
            stream_position: read_u64(keys::META_POSITION)?,
            quarantined: read_u64(keys::META_QUARANTINED)?,
        })
    }

    /// Re-hashes the last records and checks they link up to the stored head.
    fn verify_tail(&self, head: Head) -> Result<(), LogError> {
        if let Some((k, _)) = self
            .tree
            .scan_prefix([keys::RECORD])
            .next_back()
            .transpose()?
        {
            let last = u64_at(&k, 1).unwrap_or(0);
            if last != head.sequence {
                return Err(corrupt(
                    "head",
                    format!(
                        "the head says sequence {} but the last record is {last}",
                        head.sequence
                    ),
                ));
            }
        } else if head.sequence != 0 {
            return Err(corrupt(
                "head",
                format!(
                    "the head says sequence {} but there are no records",
                    head.sequence
                ),
            ));
        }
        let from = head.sequence.saturating_sub(TAIL_CHECK).max(1);
        let mut expected_next_prev: Option<Vec<u8>> = None;
        for seq in from..=head.sequence {
            let rec = self.record(seq)?.ok_or_else(|| {
                corrupt(format!("record {seq}"), "missing (sequences must be dense)")
            })?;
            if let Some(prev) = &expected_next_prev
                && prev != &rec.prev_hash
            {
                return Err(corrupt(
                    format!("record {seq}"),
                    "does not link to the record before it",
                ));
            }
            expected_next_prev = Some(rec.hash);
        }
        if let Some(last) = expected_next_prev
            && last.as_slice() != head.hash
        {
            return Err(corrupt(
                "head",
                "the head hash is not the last record's hash",
            ));
        }
        Ok(())
    }

    /// The access log kept beside the event log.
    pub fn access(&self) -> &crate::access::AccessLog {
        &self.access
    }

    /// Follows the head sequence as batches are committed (flushed).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// The state of the log's end, as of the last commit.
    pub fn head(&self) -> Head {
        *self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record at `seq`, checked against its hash.
    pub fn record(&self, seq: u64) -> Result<Option<LogRecord>, LogError> {
        let Some(bytes) = self.tree.get(keys::record(seq))? else {
            return Ok(None);
        };
        let rec: LogRecord = decode(|| format!("record {seq}"), &bytes)?;
        if rec.sequence != seq || !is_intact(&rec) {
            return Err(corrupt(
                format!("record {seq}"),
                "its contents do not match its hash",
            ));
        }
        Ok(Some(rec))
    }

    /// Records from `from` to `to` inclusive (`to` = 0: to the head), in order.
    pub fn records(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<LogRecord, LogError>> + '_ {
        let to = if to == 0 { u64::MAX } else { to };
        self.tree
            .range(keys::record(from.max(1))..=keys::record(to))
            .map(|item| {
                let (k, v) = item?;
                let seq = u64_at(&k, 1).unwrap_or(0);
                let rec: LogRecord = decode(|| format!("record {seq}"), &v)?;
                if rec.sequence != seq || !is_intact(&rec) {
                    return Err(corrupt(
                        format!("record {seq}"),
                        "its contents do not match its hash",
                    ));
                }
                Ok(rec)
            })
    }

    /// The current view of a case.
    pub fn case(&self, case_id: &str) -> Result<Option<CaseView>, LogError> {
        self.tree
            .get(keys::view(case_id))?
            .map(|b| decode(|| format!("view of case {case_id}"), &b))
            .transpose()
    }

    /// The records of one case, in log order.
    pub fn case_records(&self, case_id: &str) -> Result<Vec<LogRecord>, LogError> {
        let prefix = keys::case_records_prefix(case_id);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            let seq = u64_at(&k, prefix.len()).ok_or_else(|| corrupt("case index", "short key"))?;
            let rec = self.record(seq)?.ok_or_else(|| {
                corrupt(
                    format!("record {seq}"),
                    format!("indexed for case {case_id} but missing"),
                )
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Up to `limit` cases after `after` (by case id), each passed through `select`
    /// (which may drop it or replace it, e.g. by what a caller may see), and whether more follow.
    pub fn list_cases(
        &self,
        after: &str,
        limit: usize,
        mut select: impl FnMut(CaseView) -> Result<Option<CaseView>, LogError>,
    ) -> Result<(Vec<CaseView>, bool), LogError> {
        let start = if after.is_empty() {
            vec![keys::VIEW]
        } else {
            let mut k = keys::view(after);
            k.push(0); // strictly after
            k
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..[keys::VIEW + 1].to_vec()) {
            let (k, v) = item?;
            let view: CaseView =
                decode(|| format!("view {}", String::from_utf8_lossy(&k[1..])), &v)?;
            if let Some(view) = select(view)? {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(view);
            }
        }
        Ok((out, false))
    }

    /// The case as it stood after log sequence `until`, re-folded from its records
    /// (`None` if it had no events by then).
    pub fn case_as_of(
        &self,
        case_id: &str,
        until: u64,
        registry: &Registry,
    ) -> Result<Option<CaseView>, LogError> {
        let mut view: Option<CaseView> = None;
        for record in self.case_records(case_id)? {
            if record.sequence > until {
                break;
            }
            let envelope = handoff_contract::v1::Envelope::decode(record.envelope.as_slice())
                .map_err(|e| corrupt(format!("record {}", record.sequence), e.to_string()))?;
            let at = Position {
                sequence: record.sequence,
                recorded_at_ms: record.recorded_at_unix_ms,
            };
            let next = evolve(view.as_ref(), &envelope, registry, at).map_err(|r| {
                corrupt(
                    format!("record {}", record.sequence),
                    format!("replaying case {case_id} no longer accepts it ({r}); was the agency registry changed?"),
                )
            })?;
            let mut next = next;
            attach_sealed_details(&mut next, record.sealed_details.as_ref());
            view = Some(next);
        }
        Ok(view)
    }

    /// The last log sequence of a case recorded at or before `unix_ms` (0 if none).
    pub fn case_sequence_at(&self, case_id: &str, unix_ms: i64) -> Result<u64, LogError> {
        Ok(self
            .case_records(case_id)?
            .iter()
            .take_while(|r| r.recorded_at_unix_ms <= unix_ms)
            .map(|r| r.sequence)
            .last()
            .unwrap_or(0))
    }

    /// Referrals and handoffs waiting for `agency`, oldest first.
    pub fn inbox(&self, agency: &str) -> Result<Vec<InboxItem>, LogError> {
        let mut items = Vec::new();
        for item in self.tree.scan_prefix(keys::inbox_prefix(agency)) {
            let (_, v) = item?;
            items.push(decode::<InboxItem>(|| format!("inbox of {agency}"), &v)?);
        }
        items.sort_by_key(|i| i.since.map(|t| (t.seconds, t.nanos)));
        Ok(items)
    }

    /// Quarantined messages after a stream sequence.
    pub fn quarantine(
        &self,
        after_stream_seq: u64,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, LogError> {
        let mut out = Vec::new();
        for item in self
            .tree
            .range(
                keys::quarantine(after_stream_seq.saturating_add(1))..=keys::quarantine(u64::MAX),
            )
            .take(limit)
        {
            let (_, v) = item?;
            out.push(decode(|| "quarantine entry".into(), &v)?);
        }
        Ok(out)
    }

    /// The receipt `agency` should get for an event it published: from the log if it is
    /// there, else its latest rejection, else `None` (not seen yet, or not this agency's).
    pub fn receipt_for(&self, agency: &str, event_id: &str) -> Result<Option<Receipt>, LogError> {
        if let Ok(id) = uuid_bytes(event_id)
            && let Some(v) = self.tree.get(keys::event(&id))?
        {
            let receipt = self.duplicate_receipt(event_id, &v)?;
            let source = self
                .record(receipt.sequence)?
                .and_then(|r| handoff_contract::v1::Envelope::decode(r.envelope.as_slice()).ok())
                .map(|e| e.source_agency);
            return Ok((source.as_deref() == Some(agency)).then_some(receipt));
        }
        self.tree
            .get(keys::rejected_event(agency, event_id))?
            .map(|b| decode(|| format!("rejection of {event_id}"), &b))
            .transpose()
    }

    fn duplicate_receipt(&self, event_id: &str, index_value: &[u8]) -> Result<Receipt, LogError> {
        let seq = u64_at(index_value, 0).ok_or_else(|| corrupt("event index", "short value"))?;
        let version = u64_at(index_value, 8).unwrap_or(0);
        let rec = self.record(seq)?.ok_or_else(|| {
            corrupt(
                format!("record {seq}"),
                format!("indexed for event {event_id} but missing"),
            )
        })?;
        let case_id = handoff_contract::v1::Envelope::decode(rec.envelope.as_slice())
            .map(|e| e.case_id)
            .unwrap_or_default();
        Ok(Receipt {
            event_id: event_id.to_string(),
            status: Status::Duplicate as i32,
            sequence: seq,
            hash: rec.hash,
            stream_sequence: rec.stream_sequence,
            case_id,
            case_version: version,
            ..Receipt::default()
        })
    }

    /// Starts a batch of writes on top of the current state.
    pub fn batch(&self) -> WriteBatch<'_> {
        WriteBatch {
            log: self,
            head: self.head(),
            batch: sled::Batch::default(),
            views: HashMap::new(),
            events: HashMap::new(),
        }
    }

    /// Applies a batch atomically and flushes it to disk. Only after this returns
    /// may the batch's messages be acknowledged or receipted.
    pub async fn commit(&self, batch: WriteBatch<'_>) -> Result<Head, LogError> {
        let _gate = self.gate.lock().await;
        let WriteBatch {
            head, mut batch, ..
        } = batch;
        batch.insert(keys::META_HEAD, &head.encode()[..]);
        batch.insert(keys::META_POSITION, &head.stream_position.to_be_bytes()[..]);
        batch.insert(keys::META_QUARANTINED, &head.quarantined.to_be_bytes()[..]);
        self.tree.apply_batch(batch)?;
        self.db.flush_async().await?;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        self.committed.send_replace(head.sequence);
        Ok(head)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Bytes free for the store on the file system of its directory.
    pub fn free_bytes(&self) -> Result<u64, LogError> {
        let stat = rustix::fs::statvfs(&self.path).map_err(|e| LogError::Open {
            path: self.path.clone(),
            source: sled::Error::Io(std::io::Error::from(e)),
        })?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Whether this process may create and write files in the store's directory
    /// (permissions, read-only mounts), without writing anything.
    pub fn check_writable(&self) -> Result<(), std::io::Error> {
        check_writable(&self.path)
    }

    /// Holds off commits until the pause is dropped: a backup takes the log and
    /// everything that must match it (the keyring) at one point of the stream.
    pub async fn pause_commits(&self) -> CommitPause<'_> {
        CommitPause(self.gate.lock().await)
    }

    /// Copies the log and the access log into a new sled store at `dir` (which must
    /// not exist), flushed. Call with commits paused; returns the head it copied.
    pub fn copy_to(&self, _paused: &CommitPause<'_>, dir: &Path) -> Result<Head, LogError> {
        if dir.exists() {
            return Err(LogError::Open {
                path: dir.to_path_buf(),
                source: sled::Error::Unsupported(
                    "the backup directory already exists; give a new one".into(),
                ),
            });
        }
        let target = open_sled(dir, DEFAULT_CACHE_BYTES)?;
        let copy = target.open_tree("log")?;
        for item in self.tree.iter() {
            let (k, v) = item?;
            copy.insert(k, v)?;
        }
        self.access.copy_into(&target)?;
        target.flush()?;
        Ok(self.head())
    }

    /// A digest of every projection (case views and inboxes), to compare two stores.
    pub fn projection_digest(&self) -> Result<Hash, LogError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for prefix in [keys::VIEW, keys::INBOX, keys::CASE_RECORDS, keys::EVENT] {
            for item in self.tree.scan_prefix([prefix]) {
                let (k, v) = item?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(h.finalize().into())
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache, bytes (sled's own default, 1 GiB, would dominate the
    /// exchange's memory; reads of views and records stay fast with far less).
    pub cache_bytes: u64,
    /// Open a store whose projection rebuild was cut off (only to rebuild it).
    pub rebuilding: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            rebuilding: false,
        }
    }
}

/// sled's page cache unless configured otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, LogError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|source| LogError::Open {
            path: dir.to_path_buf(),
            source,
        })
}

/// The 16 bytes of a UUID in its text form.
fn uuid_bytes(text: &str) -> Result<[u8; 16], uuid::Error> {
    uuid::Uuid::try_parse(text).map(|u| *u.as_bytes())
}

/// What appending one event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its log sequence.
    pub sequence: u64,
    /// Its record hash.
    pub hash: Hash,
}

/// One accepted event, as `WriteBatch::append` records it.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// The JetStream sequence it was consumed from.
    pub stream_sequence: u64,
    /// JetStream's time for it, Unix ms.
    pub recorded_at_unix_ms: i64,
    /// The envelope without personal details, encoded.
    pub envelope: &'a [u8],
    /// Its event id.
    pub event_id: &'a str,
    /// The personal details it carried, sealed under the subject's key.
    pub sealed_details: Option<&'a SealedDetails>,
}

/// What the log holds under an event id.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    /// The receipt its publisher gets again (status duplicate).
    pub receipt: Receipt,
    /// The envelope as logged (without personal details).
    pub envelope: Vec<u8>,
    /// The sealed personal details logged with it.
    pub sealed_details: Option<SealedDetails>,
}

/// Replaces any plaintext personal details in a view by the sealed form, so that
/// no projection ever stores them in the clear.
pub fn attach_sealed_details(view: &mut CaseView, sealed: Option<&SealedDetails>) {
    view.subject_details = None;
    if let Some(sealed) = sealed {
        view.sealed_subject_details = Some(sealed.clone());
    }
}

/// Writes staged for one atomic commit, readable before they are committed.
pub struct WriteBatch<'a> {
    log: &'a Log,
    head: Head,
    batch: sled::Batch,
    views: HashMap<String, CaseView>,
    events: HashMap<[u8; 16], Logged>,
}

impl WriteBatch<'_> {
    /// The log sequence the next appended event will get.
    pub fn next_sequence(&self) -> u64 {
        self.head.sequence + 1
    }

    /// The last stream sequence consumed, including this batch.
    pub fn stream_position(&self) -> u64 {
        self.head.stream_position
    }

    /// A case as it stands including this batch's writes.
    pub fn case(&self, case_id: &str) -> Result<Option<CaseView>, LogError> {
        match self.views.get(case_id) {
            Some(v) => Ok(Some(v.clone())),
            None => self.log.case(case_id),
        }
    }

    /// If `event_id` is already in the log (or this batch): the receipt its publisher
    /// should get again, and what was logged under it.
    pub fn duplicate_of(&self, event_id: &str) -> Result<Option<Logged>, LogError> {
        let Ok(id) = uuid_bytes(event_id) else {
            return Ok(None);
        };
        if let Some(staged) = self.events.get(&id) {
            return Ok(Some(staged.clone()));
        }
        let Some(index_value) = self.log.tree.get(keys::event(&id))? else {
            return Ok(None);
        };
        let receipt = self.log.duplicate_receipt(event_id, &index_value)?;
        let record = self.log.record(receipt.sequence)?.unwrap_or_default();
        Ok(Some(Logged {
            receipt,
            envelope: record.envelope,
            sealed_details: record.sealed_details,
        }))
    }

    /// Appends an accepted event with the case as it was `before` it (to update the
    /// inbox projection) and the case view it produced (`None` for an event about a
    /// subject rather than a case: an erasure from the exchange itself).
    ///
    /// The view never keeps plaintext personal details: whatever the fold put in
    /// `subject_details` is replaced by the record's sealed details.
    pub fn append(
        &mut self,
        record: NewRecord<'_>,
        before: Option<&CaseView>,
        view: Option<CaseView>,
    ) -> Result<Appended, LogError> {
        let NewRecord {
            stream_sequence,
            recorded_at_unix_ms,
            envelope,
            event_id,
            sealed_details,
        } = record;
        let id = uuid_bytes(event_id)
            .map_err(|e| corrupt(format!("event {event_id}"), e.to_string()))?;
        let sequence = self.next_sequence();
        let hash = record_hash(
            &self.head.hash,
            sequence,
            stream_sequence,
            recorded_at_unix_ms,
            envelope,
        );
        let record = LogRecord {
            sequence,
            stream_sequence,
            recorded_at_unix_ms,
            envelope: envelope.to_vec(),
            prev_hash: self.head.hash.to_vec(),
            hash: hash.to_vec(),
            sealed_details: sealed_details.cloned(),
        };
        self.batch
            .insert(&keys::record(sequence), record.encode_to_vec());
        let version = view.as_ref().map_or(0, |v| v.version);
        let case_id = view.as_ref().map(|v| v.case_id.clone()).unwrap_or_default();
        self.batch
            .insert(&keys::event(&id), keys::event_value(sequence, version));
        let staged = Receipt {
            event_id: event_id.to_string(),
            status: Status::Duplicate as i32,
            sequence,
            hash: hash.to_vec(),
            stream_sequence,
            case_id,
            case_version: version,
            ..Receipt::default()
        };
        self.events.insert(
            id,
            Logged {
                receipt: staged,
                envelope: envelope.to_vec(),
                sealed_details: sealed_details.cloned(),
            },
        );

        if let Some(mut view) = view {
            attach_sealed_details(&mut view, sealed_details);
            self.batch
                .insert(keys::case_record(&view.case_id, sequence), &[] as &[u8]);
            for item in before.into_iter().flat_map(handoff_domain::inbox::items) {
                self.batch
                    .remove(keys::inbox(&item.to_agency, &item.case_id, &item.item_id));
            }
            for item in handoff_domain::inbox::items(&view) {
                self.batch.insert(
                    keys::inbox(&item.to_agency, &item.case_id, &item.item_id),
                    item.encode_to_vec(),
                );
            }
            self.batch
                .insert(keys::view(&view.case_id), view.encode_to_vec());
            self.views.insert(view.case_id.clone(), view);
        }

        self.head.sequence = sequence;
        self.head.hash = hash;
        self.advance(stream_sequence);
        tracing::debug!(sequence, stream_sequence, event_id, hash = %hex(&hash), "appended");
        Ok(Appended { sequence, hash })
    }

    /// Keeps a refused message in the quarantine, with the receipt its publisher got.
    /// `agency` is the publisher as NATS identified it (the subject's agency).
    pub fn quarantine(&mut self, entry: QuarantineEntry, receipt: &Receipt, agency: &str) {
        let stream_sequence = entry.stream_sequence;
        if !receipt.event_id.is_empty() && !agency.is_empty() {
            self.batch.insert(
                keys::rejected_event(agency, &receipt.event_id),
                receipt.encode_to_vec(),
            );
        }
        self.batch
            .insert(&keys::quarantine(stream_sequence), entry.encode_to_vec());
        self.head.quarantined += 1;
        self.advance(stream_sequence);
    }

    /// Moves the consumer position past a message that needed no write (a duplicate).
    pub fn advance(&mut self, stream_sequence: u64) {
        self.head.stream_position = self.head.stream_position.max(stream_sequence);
    }
}

/// Whether this process (by its effective identity) may write in `dir`: checked
/// before a commit so a read-only or locked-down data dir pauses ingest instead
/// of failing a write half-way.
pub fn check_writable(dir: &Path) -> Result<(), std::io::Error> {
    rustix::fs::accessat(
        rustix::fs::CWD,
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )
    .map_err(std::io::Error::from)
}

/// Records handed from the reading thread to the folding one at a time.
const REBUILD_CHUNK: usize = 1024;

/// A record read, checked and decoded for the fold.
struct Decoded {
    record: LogRecord,
    envelope: handoff_contract::v1::Envelope,
    id: [u8; 16],
}

/// Which folding thread takes a case (stable within one rebuild).
fn folder_of(case_id: &str, folders: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    (BuildHasherDefault::<DefaultHasher>::default().hash_one(case_id) % folders as u64) as usize
}

/// What [`Log::rebuild_projections`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Records folded.
    pub records: u64,
    /// Case views it derived.
    pub cases: u64,
    /// Inbox items it derived.
    pub inbox_items: u64,
    /// Stored entries it had to write or remove because they differed from the log.
    pub corrected: u64,
}

impl Log {
    /// Derives every projection and index from the records alone (case views,
    /// inboxes, the case-record and event-id indexes), checking each record's hash
    /// and the chain as it goes, and makes the store hold exactly that: entries
    /// that differ are rewritten, missing ones written, extra ones removed. On an
    /// intact store nothing is written; a dropped or damaged projection comes back
    /// byte-identical. Run with the exchange stopped (sled's lock makes sure); a
    /// marker makes [`Log::open`] refuse a store whose rebuild was cut off.
    pub fn rebuild_projections(&self, registry: &Registry) -> Result<Rebuilt, LogError> {
        self.tree.insert(keys::META_REBUILDING, &[] as &[u8])?;
        self.db.flush()?;

        // One thread reads, hash-checks and decodes the records in order; two fold
        // them, each taking the cases whose id hashes to it (a case's events stay in
        // order, cases are independent).
        let (records, prev, parts) = std::thread::scope(|scope| {
            let mut senders = Vec::new();
            let mut folders = Vec::new();
            for _ in 0..FOLDERS {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(8);
                senders.push(tx);
                folders.push(scope.spawn(move || fold_part(rx, registry)));
            }
            let read = self.read_for_rebuild(&senders);
            drop(senders);
            let mut parts = Vec::new();
            for folder in folders {
                // A panic in a folder is a bug, not bad data: say so rather than hide it.
                parts.push(
                    folder
                        .join()
                        .unwrap_or_else(|_| Err(corrupt("records", "a folding thread failed"))),
                );
            }
            read.map(|(records, prev)| (records, prev, parts))
        })?;
        let mut views: HashMap<String, CaseView> = HashMap::new();
        let mut events: Entries = Vec::new();
        let mut case_records: Entries = Vec::new();
        for part in parts {
            let part = part?;
            views.extend(part.views);
            events.extend(part.events);
            case_records.extend(part.case_records);
        }
        let head = self.head();
        if records != head.sequence || (records > 0 && prev != head.hash) {
            return Err(corrupt("head", "the records do not end at the stored head"));
        }
        // Each keyspace is reconciled on its own; two at a time.
        let mut corrected =
            self.reconcile_both((keys::EVENT, events), (keys::CASE_RECORDS, case_records))?;
        let mut inbox = Vec::new();
        let mut view_entries = Vec::with_capacity(views.len());
        for view in views.values() {
            for item in handoff_domain::inbox::items(view) {
                inbox.push((
                    keys::inbox(&item.to_agency, &item.case_id, &item.item_id),
                    item.encode_to_vec(),
                ));
            }
            view_entries.push((keys::view(&view.case_id), view.encode_to_vec()));
        }
        let inbox_items = inbox.len() as u64;
        corrected += self.reconcile_both((keys::VIEW, view_entries), (keys::INBOX, inbox))?;
        self.tree.remove(keys::META_REBUILDING)?;
        self.db.flush()?;
        Ok(Rebuilt {
            records,
            cases: views.len() as u64,
            inbox_items,
            corrected,
        })
    }

    /// Reads every record in order, checks its hash and link, decodes it and hands it
    /// to the folder of its case; returns the last sequence and its hash.
    fn read_for_rebuild(
        &self,
        folders: &[std::sync::mpsc::SyncSender<Vec<Decoded>>],
    ) -> Result<(u64, Hash), LogError> {
        let mut chunks: Vec<Vec<Decoded>> = folders.iter().map(|_| Vec::new()).collect();
        let mut last = 0u64;
        let mut prev = GENESIS;
        let hand_over = |to: usize, chunk: Vec<Decoded>| {
            folders[to]
                .send(chunk)
                .map_err(|_| corrupt("records", "a folding thread stopped"))
        };
        // `records` checks each record against its hash; the links are checked here.
        for rec in self.records(1, 0) {
            let rec = rec?;
            let seq = rec.sequence;
            if seq != last + 1 || rec.prev_hash != prev {
                return Err(corrupt(
                    format!("record {seq}"),
                    "does not link to the record before it (removed or reordered?)",
                ));
            }
            prev.copy_from_slice(&rec.hash);
            last = seq;
            let envelope = handoff_contract::v1::Envelope::decode(rec.envelope.as_slice())
                .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
            let id = uuid_bytes(&envelope.event_id)
                .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
            let to = folder_of(&envelope.case_id, folders.len());
            chunks[to].push(Decoded {
                record: rec,
                envelope,
                id,
            });
            if chunks[to].len() == REBUILD_CHUNK {
                hand_over(to, std::mem::take(&mut chunks[to]))?;
            }
        }
        for (to, chunk) in chunks.into_iter().enumerate() {
            hand_over(to, chunk)?;
        }
        Ok((last, prev))
    }

    /// [`Log::reconcile`] of two keyspaces at once.
    fn reconcile_both(
        &self,
        (a, a_entries): (u8, Entries),
        (b, b_entries): (u8, Entries),
    ) -> Result<u64, LogError> {
        std::thread::scope(|scope| {
            let second = scope.spawn(|| self.reconcile(b, b_entries));
            let first = self.reconcile(a, a_entries);
            // A panic there is a bug, not bad data: say so rather than hide it.
            let second = second
                .join()
                .unwrap_or_else(|_| Err(corrupt("projections", "a rebuilding thread failed")));
            Ok(first? + second?)
        })
    }

    /// Makes the entries under `prefix` exactly `expected`, writing only differences;
    /// returns how many entries it wrote or removed.
    fn reconcile(&self, prefix: u8, mut expected: Entries) -> Result<u64, LogError> {
        expected.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut changes = sled::Batch::default();
        let mut corrected = 0u64;
        let mut want = expected.into_iter().peekable();
        let mut change = |batch: &mut sled::Batch, key: Vec<u8>, value: Option<Vec<u8>>| {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
            corrected += 1;
        };
        // One ordered pass over what is stored, merged with what should be.
        let mut stored = self.tree.scan_prefix([prefix]);
        let mut have = stored.next().transpose()?;
        loop {
            match (have.as_ref(), want.peek()) {
                (None, None) => break,
                (Some((k, _)), None) => {
                    change(&mut changes, k.to_vec(), None);
                    have = stored.next().transpose()?;
                }
                (None, Some(_)) => {
                    let (k, v) = want.next().unwrap_or_default();
                    change(&mut changes, k, Some(v));
                }
                (Some((hk, hv)), Some((wk, wv))) => match hk.as_ref().cmp(wk.as_slice()) {
                    std::cmp::Ordering::Less => {
                        change(&mut changes, hk.to_vec(), None);
                        have = stored.next().transpose()?;
                    }
                    std::cmp::Ordering::Greater => {
                        let (k, v) = want.next().unwrap_or_default();
                        change(&mut changes, k, Some(v));
                    }
                    std::cmp::Ordering::Equal => {
                        if hv.as_ref() != wv.as_slice() {
                            let (k, v) = want.next().unwrap_or_default();
                            change(&mut changes, k, Some(v));
                        } else {
                            want.next();
                        }
                        have = stored.next().transpose()?;
                    }
                },
            }
        }
        drop(stored);
        self.tree.apply_batch(changes)?;
        Ok(corrected)
    }
}

/// Keys and values of one keyspace, as a rebuild derives them.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Threads folding cases in a rebuild.
const FOLDERS: usize = 2;

/// What one folding thread derived.
#[derive(Default)]
struct Folded {
    views: HashMap<String, CaseView>,
    events: Entries,
    case_records: Entries,
}

/// Folds the records it is given (all of a case's, in order) into views and indexes.
fn fold_part(
    rx: std::sync::mpsc::Receiver<Vec<Decoded>>,
    registry: &Registry,
) -> Result<Folded, LogError> {
    let mut out = Folded::default();
    for chunk in rx {
        for Decoded {
            record: rec,
            envelope,
            id,
        } in chunk
        {
            let seq = rec.sequence;
            // A subject-wide erasure from the exchange itself belongs to no case.
            let version = if envelope.source_agency == handoff_contract::names::EXCHANGE_SOURCE {
                0
            } else {
                let at = Position {
                    sequence: seq,
                    recorded_at_ms: rec.recorded_at_unix_ms,
                };
                let current = out.views.remove(&envelope.case_id);
                let mut view = handoff_domain::evolve_owned(current, &envelope, registry, at)
                    .map_err(|r| {
                        corrupt(
                            format!("record {seq}"),
                            format!(
                                "the fold no longer accepts it ({r}); was the agency registry changed?"
                            ),
                        )
                    })?;
                attach_sealed_details(&mut view, rec.sealed_details.as_ref());
                let version = view.version;
                out.case_records
                    .push((keys::case_record(&view.case_id, seq), Vec::new()));
                out.views.insert(envelope.case_id, view);
                version
            };
            out.events
                .push((keys::event(&id).to_vec(), keys::event_value(seq, version)));
        }
    }
    Ok(out)
}
