//! The sled-backed store: reading the log and its projections, and writing
//! batches atomically and durably.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use handoff_contract::v1::{
    CaseView, InboxItem, LogRecord, QuarantineEntry, Receipt, ServiceListing, receipt::Status,
};
use prost::Message;

use handoff_domain::{Position, Registry, evolve};

use crate::batch::{WriteBatch, attach_sealed_details};
use crate::chain::{GENESIS, Hash, is_intact};
use crate::keys::{self, u64_at};
use crate::runs::{self, RUN_RECORDS, records_of};

pub use crate::error::LogError;
pub(crate) use crate::error::{corrupt, decode};
pub use crate::values::{CaseFilter, Head, QuarantineUsage, Revocation};

/// How many records at the tail are re-hashed when the store opens.
const TAIL_CHECK: u64 = 1024;

/// The append-only log and its projections.
#[derive(Clone)]
pub struct Log {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    pub(crate) head: Arc<Mutex<Head>>,
    /// How far each agency's ingress stream is decided, as of the last commit (kept
    /// here, not read from the tree, which shows a batch before its flush ends: a
    /// position read here is never ahead of the head read after it).
    ingress: Arc<Mutex<BTreeMap<String, u64>>>,
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
        let access = crate::access::AccessLog::open(&db, dir)?;
        let log = Log {
            db,
            tree,
            head: Arc::new(Mutex::new(head)),
            ingress: Arc::default(),
            path: dir.to_path_buf(),
            access,
            committed: Arc::new(tokio::sync::watch::channel(head.sequence).0),
            gate: Arc::new(tokio::sync::Mutex::new(())),
        };
        log.verify_tail(head)?;
        let positions = log.per_agency(keys::INGRESS, |v| u64_at(v, 0).unwrap_or(0))?;
        *log.ingress.lock().unwrap_or_else(|p| p.into_inner()) = positions.into_iter().collect();
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
        let last = self.last_record_sequence()?;
        if last != head.sequence {
            return Err(corrupt(
                "head",
                format!(
                    "the head says sequence {} but the last record is {last}",
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

    /// The sequence of the last stored record (0: none).
    pub(crate) fn last_record_sequence(&self) -> Result<u64, LogError> {
        let Some((key, run)) = self
            .tree
            .scan_prefix([keys::RECORD])
            .next_back()
            .transpose()?
        else {
            return Ok(0);
        };
        let first = runs::first_of(&key)?;
        Ok(first + records_of(first, &run)?.len() as u64 - 1)
    }

    /// The stored run that holds `seq` if any (or the last one before it): its first
    /// sequence and its value. It begins at most `RUN_RECORDS - 1` before `seq`, so
    /// it is read forward (sled 0.34's reverse iteration costs more).
    fn run_holding(&self, seq: u64) -> Result<Option<(u64, sled::IVec)>, LogError> {
        let from = seq.saturating_sub(RUN_RECORDS as u64 - 1);
        let Some((key, run)) = self
            .tree
            .range(keys::record(from)..=keys::record(seq))
            .last()
            .transpose()?
        else {
            return Ok(None);
        };
        Ok(Some((runs::first_of(&key)?, run)))
    }

    /// The record at `seq`, checked against its hash.
    pub fn record(&self, seq: u64) -> Result<Option<LogRecord>, LogError> {
        let Some((first, run)) = self.run_holding(seq)? else {
            return Ok(None);
        };
        records_in(first, &run, seq..=seq).pop().transpose()
    }

    /// Records from `from` to `to` inclusive (`to` = 0: to the head), in order.
    pub fn records(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<LogRecord, LogError>> + '_ {
        let from = from.max(1);
        let to = if to == 0 { u64::MAX } else { to };
        // The run holding `from` may begin before it. Should reading it fail, the
        // range read below meets the same failure and yields it.
        let start = match self.run_holding(from) {
            Ok(Some((first, _))) => first,
            _ => from,
        };
        self.tree
            .range(keys::record(start)..=keys::record(to))
            .flat_map(move |item| {
                match item
                    .map_err(LogError::from)
                    .and_then(|(key, run)| Ok((runs::first_of(&key)?, run)))
                {
                    Ok((first, run)) => records_in(first, &run, from..=to),
                    Err(e) => vec![Err(e)],
                }
            })
    }

    /// The last chunk of a case's index and its sequences (chunk 0, none: a new case).
    pub(crate) fn case_index_tail(&self, case_id: &str) -> Result<(u32, Vec<u64>), LogError> {
        let prefix = keys::case_records_prefix(case_id);
        // Forward: sled 0.34's reverse iteration costs more than reading a case's few chunks.
        let Some((key, value)) = self.tree.scan_prefix(&prefix).last().transpose()? else {
            return Ok((0, Vec::new()));
        };
        Ok((
            case_index_chunk(&key, prefix.len())?,
            case_index_sequences(&value)?,
        ))
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
            let (key, value) = item?;
            let chunk = case_index_chunk(&key, prefix.len())?;
            if chunk as usize * keys::CASE_INDEX_CHUNK != out.len() {
                return Err(corrupt(
                    format!("case index of {case_id}"),
                    format!("chunk {chunk} does not follow the one before it"),
                ));
            }
            for seq in case_index_sequences(&value)? {
                let rec = self.record(seq)?.ok_or_else(|| {
                    corrupt(
                        format!("record {seq}"),
                        format!("indexed for case {case_id} but missing"),
                    )
                })?;
                out.push(rec);
            }
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

    /// The receipt `agency` should get for an event it published: from the log if it
    /// logged it, else its latest rejection, else `None`. Only the agency's own ids are
    /// looked at: whether another agency used the same id is not this answer's to tell.
    pub fn receipt_for(&self, agency: &str, event_id: &str) -> Result<Option<Receipt>, LogError> {
        if let Ok(id) = uuid_bytes(event_id)
            && let Some(v) = self.tree.get(keys::event(agency, &id))?
        {
            return self.duplicate_receipt(event_id, &v).map(Some);
        }
        self.tree
            .get(keys::rejected_event(agency, event_id))?
            .map(|b| decode(|| format!("rejection of {event_id}"), &b))
            .transpose()
    }

    /// The cases about a subject, by case id.
    pub fn subject_cases(&self, subject: &str) -> Result<Vec<String>, LogError> {
        let prefix = keys::subject_cases_prefix(subject);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// The agency's revocation, if the log records one in force.
    pub fn revocation(&self, agency: &str) -> Result<Option<Revocation>, LogError> {
        Ok(self
            .tree
            .get(keys::per_agency(keys::AGENCY_STATUS, agency))?
            .map(|v| Revocation::decode(&v)))
    }

    /// Every revocation in force, by agency.
    pub fn revocations(&self) -> Result<Vec<(String, Revocation)>, LogError> {
        self.per_agency(keys::AGENCY_STATUS, Revocation::decode)
    }

    /// How much an agency's refused messages take in the quarantine.
    pub fn quarantine_usage_of(&self, agency: &str) -> Result<QuarantineUsage, LogError> {
        Ok(self
            .tree
            .get(keys::per_agency(keys::QUARANTINE_USAGE, agency))?
            .map(|v| QuarantineUsage::decode(&v))
            .unwrap_or_default())
    }

    /// Quarantine usage of every agency that has had a message refused.
    pub fn quarantine_usage(&self) -> Result<Vec<(String, QuarantineUsage)>, LogError> {
        self.per_agency(keys::QUARANTINE_USAGE, QuarantineUsage::decode)
    }

    /// How far the exchange has decided each agency's ingress stream, as of the last
    /// commit. The head is updated first: read these before the head, and the head
    /// includes everything decided up to them.
    pub fn ingress_positions(&self) -> Result<Vec<(String, u64)>, LogError> {
        let positions = self.ingress.lock().unwrap_or_else(|p| p.into_inner());
        Ok(positions.iter().map(|(a, s)| (a.clone(), *s)).collect())
    }

    fn per_agency<T>(
        &self,
        prefix: u8,
        value: impl Fn(&[u8]) -> T,
    ) -> Result<Vec<(String, T)>, LogError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([prefix]) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k[1..]).into_owned(), value(&v)));
        }
        Ok(out)
    }

    pub(crate) fn duplicate_receipt(
        &self,
        event_id: &str,
        index_value: &[u8],
    ) -> Result<Receipt, LogError> {
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
        WriteBatch::new(self)
    }

    /// Applies a batch atomically and flushes it to disk. Only after this returns
    /// may the batch's messages be acknowledged or receipted.
    pub async fn commit(&self, batch: WriteBatch<'_>) -> Result<Head, LogError> {
        let _gate = self.gate.lock().await;
        let (mut batch, head, ingress) = batch.finish();
        batch.insert(keys::META_HEAD, &head.encode()[..]);
        batch.insert(keys::META_POSITION, &head.stream_position.to_be_bytes()[..]);
        batch.insert(keys::META_QUARANTINED, &head.quarantined.to_be_bytes()[..]);
        self.tree.apply_batch(batch)?;
        self.db.flush_async().await?;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        // After the head: whoever reads a position and then the head finds it included.
        self.ingress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ingress);
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

    /// A digest of every projection (case views, inboxes, indexes, the service
    /// directory and the agencies' status), to compare two stores.
    pub fn projection_digest(&self) -> Result<Hash, LogError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let prefixes = [
            keys::VIEW,
            keys::INBOX,
            keys::CASE_RECORDS,
            keys::EVENT,
            keys::DIRECTORY,
            keys::SUBJECT_CASES,
            keys::AGENCY_STATUS,
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

/// The records of the run stored under `first` whose sequences are in `range`, each
/// decoded and checked against its hash (a run that cannot be read: its error alone).
fn records_in(
    first: u64,
    run: &[u8],
    range: std::ops::RangeInclusive<u64>,
) -> Vec<Result<LogRecord, LogError>> {
    let records = match records_of(first, run) {
        Ok(records) => records,
        Err(e) => return vec![Err(e)],
    };
    records
        .into_iter()
        .filter(|(seq, _)| range.contains(seq))
        .map(|(seq, encoded)| {
            let rec: LogRecord = decode(|| format!("record {seq}"), encoded)?;
            if rec.sequence != seq || !is_intact(&rec) {
                return Err(corrupt(
                    format!("record {seq}"),
                    "its contents do not match its hash",
                ));
            }
            Ok(rec)
        })
        .collect()
}

/// The chunk number of a case index key whose case prefix is `prefix_len` bytes.
fn case_index_chunk(key: &[u8], prefix_len: usize) -> Result<u32, LogError> {
    key.get(prefix_len..)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| corrupt("case index", "a key of the wrong length"))
}

/// The sequences of a chunk of the case index.
fn case_index_sequences(value: &[u8]) -> Result<Vec<u64>, LogError> {
    keys::case_index_sequences(value)
        .map(Iterator::collect)
        .ok_or_else(|| corrupt("case index", "a chunk of the wrong length"))
}

/// The 16 bytes of a UUID in its text form.
pub(crate) fn uuid_bytes(text: &str) -> Result<[u8; 16], uuid::Error> {
    uuid::Uuid::try_parse(text).map(|u| *u.as_bytes())
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
