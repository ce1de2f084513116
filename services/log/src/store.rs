//! The sled-backed store: reading the log and its projections, and writing
//! batches atomically and durably.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use handoff_contract::v1::{
    CaseStatus, CaseView, InboxItem, LogRecord, QuarantineEntry, Receipt, SealedDetails,
    ServiceListing, receipt::Status,
};
use handoff_domain::directory::DirectoryChange;
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

    /// Every current listing of the service directory, by agency then service id.
    pub fn directory(&self) -> Result<Vec<ServiceListing>, LogError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([keys::DIRECTORY]) {
            let (k, v) = item?;
            out.push(decode(
                || format!("listing {}", String::from_utf8_lossy(&k[1..])),
                &v,
            )?);
        }
        Ok(out)
    }

    /// The current listing of one agency's service, if it is offered.
    pub fn listing(
        &self,
        agency: &str,
        service_id: &str,
    ) -> Result<Option<ServiceListing>, LogError> {
        self.tree
            .get(keys::listing(agency, service_id))?
            .map(|b| decode(|| format!("listing {agency}/{service_id}"), &b))
            .transpose()
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
            listings: HashMap::new(),
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

    /// A digest of every projection (case views, inboxes, indexes and the service
    /// directory), to compare two stores.
    pub fn projection_digest(&self) -> Result<Hash, LogError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let prefixes = [
            keys::VIEW,
            keys::INBOX,
            keys::CASE_RECORDS,
            keys::EVENT,
            keys::DIRECTORY,
        ];
        for prefix in prefixes {
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

/// Opens a stopped store once and closes it, so that the next start is quick.
///
/// sled 0.34 records where its pages stand (its snapshot) only while opening a store;
/// a start otherwise reads back every segment written since the previous start,
/// seconds per million events. Called after a clean stop, it moves that read to the
/// stop. Fails if the store is still open in this process.
pub fn settle(dir: &Path) -> Result<(), LogError> {
    open_sled(dir, 64 << 20).map(drop)
}

fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, LogError> {
    // sled releases its file lock only when its epoch-deferred cleanup runs, a moment
    // after the last handle is dropped: reopening in the same process (a settle after
    // serving, a tool after a test) can meet its own lock. Wait a little for that; a
    // store another process holds is still refused, two seconds later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(source) => {
                return Err(LogError::Open {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
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
    /// Directory listings written by this batch (`None`: withdrawn), by key.
    listings: HashMap<Vec<u8>, Option<ServiceListing>>,
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

    /// A directory listing as it stands including this batch's writes.
    pub fn listing(
        &self,
        agency: &str,
        service_id: &str,
    ) -> Result<Option<ServiceListing>, LogError> {
        match self.listings.get(&keys::listing(agency, service_id)) {
            Some(staged) => Ok(staged.clone()),
            None => self.log.listing(agency, service_id),
        }
    }

    /// Writes what an appended directory event does to the directory projection
    /// (call right after [`WriteBatch::append`] of that event: same atomic batch).
    pub fn directory(&mut self, change: DirectoryChange) {
        match change {
            DirectoryChange::Offered(listing) => {
                let service_id = listing.offer.as_ref().map_or("", |o| o.service_id.as_str());
                let key = keys::listing(&listing.agency, service_id);
                self.batch.insert(key.as_slice(), listing.encode_to_vec());
                self.listings.insert(key, Some(*listing));
            }
            DirectoryChange::Withdrawn { agency, service_id } => {
                let key = keys::listing(&agency, &service_id);
                self.batch.remove(key.as_slice());
                self.listings.insert(key, None);
            }
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
            .insert(&keys::event(&id), &keys::event_value(sequence, version));
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

/// Records a rebuild's reader takes at a time.
const REBUILD_CHUNK: u64 = 1024;

/// Threads reading records in a rebuild.
const READERS: usize = 2;

/// How a chunk of records begins and ends, for checking that the chunks join up.
struct Link {
    /// Its first sequence.
    from: u64,
    /// Its first record's previous hash (none: the chunk is empty).
    first_prev: Option<Hash>,
    /// Its last sequence (`from - 1` if empty).
    last: u64,
    last_hash: Hash,
}

/// Takes the chunks' links in order from the readers in turn and checks they form
/// one chain from the genesis; returns the last sequence and its hash.
fn check_links(
    links: &[std::sync::mpsc::Receiver<Link>],
    chunks: u64,
) -> Result<(u64, Hash), LogError> {
    let mut last = 0u64;
    let mut prev = GENESIS;
    for chunk in 0..chunks {
        // A reader that stopped early has an error of its own, reported before this.
        let Ok(link) = links[chunk as usize % links.len()].recv() else {
            return Err(corrupt("records", "a rebuilding thread stopped"));
        };
        match link.first_prev {
            Some(first_prev) if link.from == last + 1 && first_prev == prev => {
                last = link.last;
                prev = link.last_hash;
            }
            _ => {
                return Err(corrupt(
                    format!("record {}", last + 1),
                    "missing, or the records around it do not link up (removed or reordered?)",
                ));
            }
        }
    }
    Ok((last, prev))
}

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
    /// Directory listings it derived.
    pub listings: u64,
    /// Stored entries it had to write or remove because they differed from the log.
    pub corrected: u64,
}

impl Log {
    /// Derives every projection and index from the records alone (case views,
    /// inboxes, the service directory, the case-record and event-id indexes),
    /// checking each record's hash and the chain as it goes, and makes the store hold exactly that: entries
    /// that differ are rewritten, missing ones written, extra ones removed. On an
    /// intact store nothing is written; a dropped or damaged projection comes back
    /// byte-identical. Run with the exchange stopped (sled's lock makes sure); a
    /// marker makes [`Log::open`] refuse a store whose rebuild was cut off.
    pub fn rebuild_projections(&self, registry: &Registry) -> Result<Rebuilt, LogError> {
        self.tree.insert(keys::META_REBUILDING, &[] as &[u8])?;
        self.db.flush()?;

        // Two threads read, hash-check and decode the records, chunk by chunk in turn
        // (sled's reads are the larger cost); two fold them, each taking the cases
        // whose id hashes to it and reading the chunks in order, so a case's events
        // stay in order (cases are independent). This thread checks that the chunks
        // join up into one chain.
        let last_stored = self
            .tree
            .scan_prefix([keys::RECORD])
            .next_back()
            .transpose()?
            .and_then(|(k, _)| u64_at(&k, 1))
            .unwrap_or(0);
        let chunks = last_stored.div_ceil(REBUILD_CHUNK);
        let (chain, parts) =
            std::thread::scope(|scope| {
                let mut to_folders: Vec<Vec<_>> = (0..READERS).map(|_| Vec::new()).collect();
                let mut folders = Vec::new();
                for _ in 0..FOLDERS {
                    let mut from_readers = Vec::new();
                    for senders in &mut to_folders {
                        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(4);
                        senders.push(tx);
                        from_readers.push(rx);
                    }
                    folders.push(scope.spawn(move || fold_part(from_readers, registry)));
                }
                let mut links = Vec::new();
                let mut readers = Vec::new();
                for (reader, to_folders) in to_folders.into_iter().enumerate() {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Link>(16);
                    links.push(rx);
                    readers.push(scope.spawn(move || {
                        self.read_for_rebuild(reader as u64, chunks, &to_folders, &tx)
                    }));
                }
                let chain = check_links(&links, chunks);
                drop(links);
                // A panic in a thread is a bug, not bad data: say so rather than hide it.
                fn failed<T>() -> Result<T, LogError> {
                    Err(corrupt("records", "a rebuilding thread failed"))
                }
                // Of the readers' errors, the one in the earliest chunk is the first damage.
                let read = readers
                    .into_iter()
                    .filter_map(|reader| {
                        reader
                            .join()
                            .unwrap_or_else(|_| failed().map_err(|e| (u64::MAX, e)))
                            .err()
                    })
                    .min_by_key(|(chunk, _)| *chunk)
                    .map_or(Ok(()), |(_, e)| Err(e));
                let mut parts = Vec::new();
                for folder in folders {
                    parts.push(folder.join().unwrap_or_else(|_| failed()));
                }
                read.and(chain).map(|chain| (chain, parts))
            })?;
        let (records, prev) = chain;
        let mut cases: Vec<(String, FoldedCase)> = Vec::new();
        let mut events: Vec<EventEntry> = Vec::new();
        let mut listings = std::collections::BTreeMap::new();
        for part in parts {
            let part = part?;
            cases.extend(part.cases);
            events.extend(part.events);
            listings.extend(part.listings);
        }
        let head = self.head();
        if records != head.sequence || (records > 0 && prev != head.hash) {
            return Err(corrupt("head", "the records do not end at the stored head"));
        }
        // Entries are produced in key order as they are compared, not built and sorted
        // as byte strings: a case's sequences are already ascending, a case id's order
        // is its keys' order, and event ids sort as integers.
        cases.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        events.sort_unstable_by_key(|e| u128::from_be_bytes(e.id));
        let event_entries = events
            .iter()
            .map(|e| (keys::event(&e.id), keys::event_value(e.sequence, e.version)));
        let case_record_entries = cases.iter().flat_map(|(id, case)| {
            case.sequences
                .iter()
                .map(move |&seq| (keys::case_record(id, seq), [0u8; 0]))
        });
        // Each keyspace is reconciled on its own; two at a time.
        let mut corrected = self.reconcile_both(
            (keys::EVENT, event_entries),
            (keys::CASE_RECORDS, case_record_entries),
        )?;
        let mut inbox = Vec::new();
        for (_, case) in &cases {
            for item in handoff_domain::inbox::items(&case.view) {
                inbox.push((
                    keys::inbox(&item.to_agency, &item.case_id, &item.item_id),
                    item.encode_to_vec(),
                ));
            }
        }
        inbox.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let inbox_items = inbox.len() as u64;
        let view_entries = cases
            .iter()
            .map(|(id, case)| (keys::view(id), case.view.encode_to_vec()));
        corrected +=
            self.reconcile_both((keys::VIEW, view_entries), (keys::INBOX, inbox.into_iter()))?;
        // Few entries (a listing per service): reconciled on this thread.
        corrected += self.reconcile(
            keys::DIRECTORY,
            listings.iter().map(|(k, l)| (k, l.encode_to_vec())),
        )?;
        self.tree.remove(keys::META_REBUILDING)?;
        self.db.flush()?;
        Ok(Rebuilt {
            records,
            cases: cases.len() as u64,
            inbox_items,
            listings: listings.len() as u64,
            corrected,
        })
    }

    /// Reads the chunks `reader`, `reader + READERS`, ... of the records: checks each
    /// record's hash and its link to the one before it within the chunk, decodes it
    /// and hands it to the folder of its case; tells the checker how the chunk begins
    /// and ends. Every folder gets every chunk, empty or not, so they can take the
    /// chunks from the readers in turn.
    fn read_for_rebuild(
        &self,
        reader: u64,
        chunks: u64,
        folders: &[std::sync::mpsc::SyncSender<Vec<Decoded>>],
        links: &std::sync::mpsc::SyncSender<Link>,
    ) -> Result<(), (u64, LogError)> {
        for chunk in (reader..chunks).step_by(READERS) {
            self.read_chunk(chunk, folders, links)
                .map_err(|e| (chunk, e))?;
        }
        Ok(())
    }

    /// One chunk of [`Log::read_for_rebuild`].
    fn read_chunk(
        &self,
        chunk: u64,
        folders: &[std::sync::mpsc::SyncSender<Vec<Decoded>>],
        links: &std::sync::mpsc::SyncSender<Link>,
    ) -> Result<(), LogError> {
        let stopped = || corrupt("records", "a rebuilding thread stopped");
        let from = chunk * REBUILD_CHUNK + 1;
        let mut parts: Vec<Vec<Decoded>> = folders.iter().map(|_| Vec::new()).collect();
        let mut link = Link {
            from,
            first_prev: None,
            last: from - 1,
            last_hash: GENESIS,
        };
        // `records` checks each record against its hash; the links are checked here.
        for rec in self.records(from, from + REBUILD_CHUNK - 1) {
            let rec = rec?;
            let seq = rec.sequence;
            let linked = link.first_prev.is_none() || rec.prev_hash == link.last_hash;
            if seq != link.last + 1 || !linked {
                return Err(corrupt(
                    format!("record {}", link.last + 1),
                    "missing, or the records around it do not link up (removed or reordered?)",
                ));
            }
            if link.first_prev.is_none() {
                link.first_prev = Some(rec.prev_hash.as_slice().try_into().map_err(|_| {
                    corrupt(format!("record {seq}"), "its previous hash is not 32 bytes")
                })?);
            }
            link.last_hash.copy_from_slice(&rec.hash);
            link.last = seq;
            let envelope = handoff_contract::v1::Envelope::decode(rec.envelope.as_slice())
                .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
            let id = uuid_bytes(&envelope.event_id)
                .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
            parts[folder_of(&envelope.case_id, folders.len())].push(Decoded {
                record: rec,
                envelope,
                id,
            });
        }
        for (folder, part) in folders.iter().zip(parts) {
            folder.send(part).map_err(|_| stopped())?;
        }
        links.send(link).map_err(|_| stopped())?;
        Ok(())
    }

    /// [`Log::reconcile`] of two keyspaces at once.
    fn reconcile_both(
        &self,
        (a, a_entries): (u8, impl Iterator<Item = (impl Entry, impl Entry)>),
        (b, b_entries): (u8, impl Iterator<Item = (impl Entry, impl Entry)> + Send),
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

    /// Makes the entries under `prefix` exactly `expected` (given in key order),
    /// writing only differences; returns how many entries it wrote or removed.
    fn reconcile<K: Entry, V: Entry>(
        &self,
        prefix: u8,
        expected: impl Iterator<Item = (K, V)>,
    ) -> Result<u64, LogError> {
        let mut changes = sled::Batch::default();
        let mut corrected = 0u64;
        let mut want = expected.peekable();
        let mut last_wanted: Option<Vec<u8>> = None;
        let mut change = |batch: &mut sled::Batch, key: &[u8], value: Option<&[u8]>| {
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
                    change(&mut changes, k, None);
                    have = stored.next().transpose()?;
                }
                (None, Some((wk, wv))) => {
                    change(&mut changes, wk.as_ref(), Some(wv.as_ref()));
                    ordered(&mut last_wanted, wk.as_ref())?;
                    want.next();
                }
                (Some((hk, hv)), Some((wk, wv))) => match hk.as_ref().cmp(wk.as_ref()) {
                    std::cmp::Ordering::Less => {
                        change(&mut changes, hk, None);
                        have = stored.next().transpose()?;
                    }
                    std::cmp::Ordering::Greater => {
                        change(&mut changes, wk.as_ref(), Some(wv.as_ref()));
                        ordered(&mut last_wanted, wk.as_ref())?;
                        want.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if hv.as_ref() != wv.as_ref() {
                            change(&mut changes, wk.as_ref(), Some(wv.as_ref()));
                        }
                        want.next();
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

/// A key or value of an entry a rebuild derives.
trait Entry: AsRef<[u8]> {}
impl<T: AsRef<[u8]>> Entry for T {}

/// An expected entry written must come after the one written before it; stored keys
/// come in order from sled, so only entries the store lacks need this check (an
/// out-of-order expectation is a bug that would otherwise pass silently).
fn ordered(last: &mut Option<Vec<u8>>, key: &[u8]) -> Result<(), LogError> {
    if last.as_deref().is_some_and(|l| l >= key) {
        return Err(corrupt(
            "projections",
            "a rebuild derived entries out of order",
        ));
    }
    *last = Some(key.to_vec());
    Ok(())
}

/// An event-index entry a rebuild derives.
struct EventEntry {
    id: [u8; 16],
    sequence: u64,
    version: u64,
}

/// A case as a rebuild folds it: its view and its records' sequences, ascending.
struct FoldedCase {
    view: CaseView,
    sequences: Vec<u64>,
}

/// Threads folding cases in a rebuild.
const FOLDERS: usize = 2;

/// What one folding thread derived.
#[derive(Default)]
struct Folded {
    cases: HashMap<String, FoldedCase>,
    events: Vec<EventEntry>,
    /// The service directory, by key (directory events all have the empty case id,
    /// so one folder sees them all, in order).
    listings: std::collections::BTreeMap<Vec<u8>, ServiceListing>,
}

/// Folds the records it is given (all of a case's, in order) into views and indexes.
fn fold_part(
    from_readers: Vec<std::sync::mpsc::Receiver<Vec<Decoded>>>,
    registry: &Registry,
) -> Result<Folded, LogError> {
    let mut out = Folded::default();
    // Chunks come from the readers in turn; a closed channel is the end (or a reader's
    // error, which the rebuild reports).
    let chunks = (0..).map_while(|n: usize| from_readers[n % from_readers.len()].recv().ok());
    for chunk in chunks {
        for Decoded {
            record: rec,
            envelope,
            id,
        } in chunk
        {
            let seq = rec.sequence;
            let at = Position {
                sequence: seq,
                recorded_at_ms: rec.recorded_at_unix_ms,
            };
            // A subject-wide erasure from the exchange itself belongs to no case.
            let version = if envelope.source_agency == handoff_contract::names::EXCHANGE_SOURCE {
                0
            } else if handoff_domain::directory::is_directory_event(envelope.event.as_ref()) {
                fold_listing(&mut out.listings, &envelope, registry, at)?;
                0
            } else {
                let (current, mut sequences) = match out.cases.remove(&envelope.case_id) {
                    Some(c) => (Some(c.view), c.sequences),
                    None => (None, Vec::new()),
                };
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
                sequences.push(seq);
                out.cases
                    .insert(envelope.case_id, FoldedCase { view, sequences });
                version
            };
            out.events.push(EventEntry {
                id,
                sequence: seq,
                version,
            });
        }
    }
    Ok(out)
}

/// Folds one directory event into the listings, deciding it as ingest did.
fn fold_listing(
    listings: &mut std::collections::BTreeMap<Vec<u8>, ServiceListing>,
    envelope: &handoff_contract::v1::Envelope,
    registry: &Registry,
    at: Position,
) -> Result<(), LogError> {
    let service_id = handoff_domain::directory::service_id(envelope).unwrap_or_default();
    let key = keys::listing(&envelope.source_agency, service_id);
    let change = handoff_domain::directory::decide(listings.get(&key), envelope, registry, at)
        .map_err(|r| {
            corrupt(
                format!("record {}", at.sequence),
                format!("the fold no longer accepts it ({r}); was the agency registry changed?"),
            )
        })?;
    match change {
        DirectoryChange::Offered(listing) => {
            listings.insert(key, *listing);
        }
        DirectoryChange::Withdrawn { .. } => {
            listings.remove(&key);
        }
    }
    Ok(())
}
