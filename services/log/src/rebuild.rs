//! Rebuilding every projection and index from the records alone.

use std::collections::{BTreeMap, HashMap};

use handoff_contract::v1::{CaseView, LogRecord, ServiceListing};
use handoff_domain::directory::DirectoryChange;
use handoff_domain::{Position, Registry, RegistryChange, Target};
use prost::Message;

use crate::batch::attach_sealed_details;
use crate::chain::{GENESIS, Hash};
use crate::keys::{self, u64_at};
use crate::store::{Log, LogError, Revocation, corrupt, uuid_bytes};

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
    /// Revocations in force it derived.
    pub revocations: u64,
    /// Stored entries it had to write or remove because they differed from the log.
    pub corrected: u64,
}

impl Log {
    /// Writes exported records into an empty store as they are, checking that each
    /// matches its hash and follows the one before; the projections are then derived
    /// by [`Log::rebuild_projections`], the same fold as every rebuild. Returns the head.
    pub fn import_records(
        &self,
        records: impl IntoIterator<Item = LogRecord>,
    ) -> Result<crate::Head, LogError> {
        let mut head = self.head();
        if head.sequence != 0 {
            return Err(corrupt(
                "import",
                "the store is not empty: import into a fresh data dir",
            ));
        }
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        for record in records {
            let seq = record.sequence;
            if seq != head.sequence + 1
                || record.prev_hash.as_slice() != head.hash
                || !crate::chain::is_intact(&record)
            {
                return Err(corrupt(
                    format!("record {seq}"),
                    "does not follow the record before it, or does not match its hash",
                ));
            }
            head.hash.copy_from_slice(&record.hash);
            head.sequence = seq;
            head.stream_position = head.stream_position.max(record.stream_sequence);
            batch.insert(&keys::record(seq), record.encode_to_vec());
            pending += 1;
            if pending == REBUILD_CHUNK as usize {
                self.tree.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        batch.insert(keys::META_HEAD, &head.encode()[..]);
        batch.insert(keys::META_POSITION, &head.stream_position.to_be_bytes()[..]);
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(head)
    }

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
        let mut listings = BTreeMap::new();
        let mut revocations = BTreeMap::new();
        for part in parts {
            let part = part?;
            cases.extend(part.cases);
            events.extend(part.events);
            listings.extend(part.listings);
            revocations.extend(part.revocations);
        }
        let head = self.head();
        if records != head.sequence || (records > 0 && prev != head.hash) {
            return Err(corrupt("head", "the records do not end at the stored head"));
        }
        // Entries are produced in key order as they are compared, not built and sorted
        // as byte strings: a case's sequences are already ascending, a case id's order
        // is its keys' order, and event ids sort by agency, then as integers.
        cases.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        events.sort_unstable_by(|a, b| {
            a.agency
                .cmp(&b.agency)
                .then_with(|| u128::from_be_bytes(a.id).cmp(&u128::from_be_bytes(b.id)))
        });
        let event_entries = events.iter().map(|e| {
            (
                keys::event(&e.agency, &e.id),
                keys::event_value(e.sequence, e.version),
            )
        });
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
        let mut subjects: Vec<Vec<u8>> = cases
            .iter()
            .map(|(id, case)| keys::subject_case(&case.view.subject_pseudonym, id))
            .collect();
        subjects.sort_unstable();
        corrected += self.reconcile(keys::SUBJECT_CASES, subjects.iter().map(|k| (k, [0u8; 0])))?;
        // Few entries (a listing per service, a revocation per agency): on this thread.
        corrected += self.reconcile(
            keys::DIRECTORY,
            listings.iter().map(|(k, l)| (k, l.encode_to_vec())),
        )?;
        corrected += self.reconcile(
            keys::AGENCY_STATUS,
            revocations
                .iter()
                .map(|(agency, r)| (keys::per_agency(keys::AGENCY_STATUS, agency), r.encode())),
        )?;
        self.tree.remove(keys::META_REBUILDING)?;
        self.db.flush()?;
        Ok(Rebuilt {
            records,
            cases: cases.len() as u64,
            inbox_items,
            listings: listings.len() as u64,
            revocations: revocations.len() as u64,
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
    agency: String,
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
    /// The service directory, by key, and the revocations in force, by agency: their
    /// events have the empty case id, so one folder sees them all, in order.
    listings: BTreeMap<Vec<u8>, ServiceListing>,
    revocations: BTreeMap<String, Revocation>,
}

/// Folds the records it is given (all of a case's, in order) into views and indexes,
/// routing each by what it is about ([`handoff_domain::target`]) as ingest did.
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
            let refused = |r: handoff_domain::Rejection| {
                corrupt(
                    format!("record {seq}"),
                    format!(
                        "the fold no longer accepts it ({r}); was the agency registry changed?"
                    ),
                )
            };
            let version = match handoff_domain::target(&envelope) {
                Some(Target::Case(case_id)) => {
                    let (current, mut sequences) = match out.cases.remove(case_id) {
                        Some(c) => (Some(c.view), c.sequences),
                        None => (None, Vec::new()),
                    };
                    let mut view = handoff_domain::evolve_owned(current, &envelope, registry, at)
                        .map_err(refused)?;
                    attach_sealed_details(&mut view, rec.sealed_details.as_ref());
                    let version = view.version;
                    sequences.push(seq);
                    out.cases
                        .insert(case_id.to_string(), FoldedCase { view, sequences });
                    version
                }
                Some(Target::Listing { agency, service_id }) => {
                    let key = keys::listing(agency, service_id);
                    let change = handoff_domain::directory::decide(
                        out.listings.get(&key),
                        &envelope,
                        registry,
                        at,
                    )
                    .map_err(refused)?;
                    match change {
                        DirectoryChange::Offered(listing) => {
                            out.listings.insert(key, *listing);
                        }
                        DirectoryChange::Withdrawn { .. } => {
                            out.listings.remove(&key);
                        }
                    }
                    0
                }
                Some(Target::Agency(_)) => {
                    let known = Folding(&out.revocations);
                    let effects = handoff_domain::admit(&known, &envelope, registry, at)
                        .unwrap_or_else(|never| match never {})
                        .map_err(refused)?;
                    match effects.registry {
                        Some(RegistryChange::Revoked { agency, reason }) => {
                            out.revocations.insert(
                                agency,
                                Revocation {
                                    sequence: seq,
                                    reason,
                                },
                            );
                        }
                        Some(RegistryChange::Reinstated { agency }) => {
                            out.revocations.remove(&agency);
                        }
                        None => {}
                    }
                    0
                }
                // A subject-wide erasure changes keys, not projections.
                Some(Target::Subject(_)) | None => 0,
            };
            out.events.push(EventEntry {
                agency: envelope.source_agency.clone(),
                id,
                sequence: seq,
                version,
            });
        }
    }
    Ok(out)
}

/// What a registry change is decided against in a rebuild: the revocations folded so far.
struct Folding<'a>(&'a BTreeMap<String, Revocation>);

impl handoff_domain::Known for Folding<'_> {
    type Error = std::convert::Infallible;

    fn case(&self, _: &str) -> Result<Option<CaseView>, Self::Error> {
        Ok(None)
    }

    fn listing(&self, _: &str, _: &str) -> Result<Option<ServiceListing>, Self::Error> {
        Ok(None)
    }

    fn knows_subject(&self, _: &str, _: &str) -> Result<bool, Self::Error> {
        Ok(false)
    }

    fn revoked(&self, agency: &str) -> Result<bool, Self::Error> {
        Ok(self.0.contains_key(agency))
    }
}
