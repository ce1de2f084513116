//! The fold every rebuild and replay shares: records, in order per case, to views
//! and indexes, on a few threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use handoff_contract::v1::{CaseView, Envelope, LogRecord, ServiceListing};
use handoff_domain::directory::DirectoryChange;
use handoff_domain::{Position, Registry, RegistryChange, Target};
use prost::Message;

use crate::batch::attach_sealed_details;
use crate::keys;
use crate::store::{LogError, Revocation, corrupt, uuid_bytes};

/// Threads folding cases.
const FOLDERS: usize = 2;

/// A record checked and decoded for the fold.
pub(super) struct Decoded {
    record: LogRecord,
    envelope: Envelope,
    id: [u8; 16],
}

impl Decoded {
    /// Decodes a record whose hash and place in the chain were checked.
    pub(super) fn of(record: LogRecord) -> Result<Decoded, LogError> {
        let seq = record.sequence;
        let envelope = Envelope::decode(record.envelope.as_slice())
            .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
        let id = uuid_bytes(&envelope.event_id)
            .map_err(|e| corrupt(format!("record {seq}"), e.to_string()))?;
        Ok(Decoded {
            record,
            envelope,
            id,
        })
    }
}

/// The folders' inputs from one producer: a chunk of records goes to every folder
/// (each gets the records of its cases, see [`Decoded::folder`]), empty or not, so
/// the folders can take the chunks from the producers in turn.
pub(super) type ToFolders = Vec<SyncSender<Vec<Decoded>>>;

/// Splits a chunk's records by the folder of their case.
pub(super) fn by_folder(
    to: &ToFolders,
    records: impl IntoIterator<Item = Decoded>,
) -> Vec<Vec<Decoded>> {
    let mut parts: Vec<Vec<Decoded>> = to.iter().map(|_| Vec::new()).collect();
    for d in records {
        parts[folder_of(&d.envelope.case_id, to.len())].push(d);
    }
    parts
}

/// Which folding thread takes a case (stable within one fold).
fn folder_of(case_id: &str, folders: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    (BuildHasherDefault::<DefaultHasher>::default().hash_one(case_id) % folders as u64) as usize
}

/// Hands a chunk's parts to the folders; `Err` if a folder stopped.
pub(super) fn send(to: &ToFolders, parts: Vec<Vec<Decoded>>) -> Result<(), LogError> {
    for (folder, part) in to.iter().zip(parts) {
        folder.send(part).map_err(|_| stopped())?;
    }
    Ok(())
}

/// What a thread reports when another ended before its work was done (that one's
/// own error, if it had one, is reported instead).
const STOPPED: &str = "a rebuilding thread stopped";

pub(super) fn stopped() -> LogError {
    corrupt("records", STOPPED)
}

/// Folds what `feed` sends on [`FOLDERS`] threads: `feed` gets the folders' inputs
/// from `producers` producers, whose chunks the folders take in turn (chunk 0 from
/// the first, 1 from the second, ...); returns what `feed` returned and the fold.
pub(super) fn fold<T>(
    registry: &Registry,
    producers: usize,
    feed: impl FnOnce(Vec<ToFolders>) -> Result<T, LogError>,
) -> Result<(T, Derived), LogError> {
    std::thread::scope(|scope| {
        let mut to_folders: Vec<ToFolders> = (0..producers).map(|_| Vec::new()).collect();
        let mut folders = Vec::new();
        for _ in 0..FOLDERS {
            let mut from_producers = Vec::new();
            for senders in &mut to_folders {
                let (tx, rx) = sync_channel::<Vec<Decoded>>(4);
                senders.push(tx);
                from_producers.push(rx);
            }
            folders.push(scope.spawn(move || fold_part(from_producers, registry)));
        }
        // `feed` drops the senders as it returns, which ends the folders.
        let fed = feed(to_folders);
        let mut derived = Derived::default();
        let mut folded = Ok(());
        for folder in folders {
            // A panic in a thread is a bug, not bad data: say so rather than hide it.
            match folder
                .join()
                .unwrap_or_else(|_| Err(corrupt("records", "a rebuilding thread failed")))
            {
                Ok(part) => derived.add(part),
                Err(e) => folded = folded.and(Err(e)),
            }
        }
        match (fed, folded) {
            // A folder that refused a record stopped its producer: its reason is the one.
            (Err(LogError::Corrupt { detail, .. }), Err(e)) if detail == STOPPED => Err(e),
            (fed, folded) => fed.and_then(|t| folded.map(|()| (t, derived))),
        }
    })
}

/// What a fold derived, from all its threads.
#[derive(Default)]
pub(super) struct Derived {
    pub(super) cases: Vec<(String, FoldedCase)>,
    pub(super) events: Vec<EventEntry>,
    pub(super) listings: BTreeMap<Vec<u8>, ServiceListing>,
    pub(super) revocations: BTreeMap<String, Revocation>,
}

impl Derived {
    fn add(&mut self, part: Folded) {
        self.cases.extend(part.cases);
        self.events.extend(part.events);
        self.listings.extend(part.listings);
        self.revocations.extend(part.revocations);
    }
}

/// An event-index entry a fold derives.
pub(super) struct EventEntry {
    pub(super) agency: String,
    pub(super) id: [u8; 16],
    pub(super) sequence: u64,
    pub(super) version: u64,
}

/// A case as a fold derives it: its view and its records' sequences, ascending.
pub(super) struct FoldedCase {
    pub(super) view: CaseView,
    pub(super) sequences: Vec<u64>,
}

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
    from_producers: Vec<Receiver<Vec<Decoded>>>,
    registry: &Registry,
) -> Result<Folded, LogError> {
    let mut out = Folded::default();
    // Chunks come from the producers in turn; a closed channel is the end (or a
    // producer's error, which the fold reports).
    let chunks = (0..).map_while(|n: usize| from_producers[n % from_producers.len()].recv().ok());
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

/// What a registry change is decided against in a fold: the revocations folded so far.
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
