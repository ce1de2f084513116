//! A rebuild's producers: the stored records, read, checked and decoded on a few
//! threads, chunk by chunk in turn, with a check that the chunks join up.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::REBUILD_CHUNK;
use super::fold::{Decoded, ToFolders, by_folder, send, stopped};
use crate::chain::{GENESIS, Hash};
use crate::store::{Log, LogError, corrupt};

/// Threads reading records in a rebuild (sled's reads are its larger cost).
pub(super) const READERS: usize = 2;

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

impl Log {
    /// Reads every stored record on [`READERS`] threads into the folders (one set of
    /// inputs per reader), checking each record's hash and that they form one chain
    /// from the genesis; returns the last sequence and its hash.
    pub(super) fn read_all(&self, to_folders: Vec<ToFolders>) -> Result<(u64, Hash), LogError> {
        let last_stored = self.last_record_sequence()?;
        let chunks = last_stored.div_ceil(REBUILD_CHUNK);
        std::thread::scope(|scope| {
            let mut links = Vec::new();
            let mut readers = Vec::new();
            for (reader, to_folders) in to_folders.into_iter().enumerate() {
                let (tx, rx) = sync_channel::<Link>(16);
                links.push(rx);
                readers.push(
                    scope.spawn(move || {
                        self.read_for_rebuild(reader as u64, chunks, &to_folders, &tx)
                    }),
                );
            }
            let chain = check_links(&links, chunks);
            drop(links);
            // Of the readers' errors, the one in the earliest chunk is the first damage;
            // a panic in a thread is a bug, not bad data: say so rather than hide it.
            let read = readers
                .into_iter()
                .filter_map(|reader| {
                    reader
                        .join()
                        .unwrap_or_else(|_| {
                            Err((u64::MAX, corrupt("records", "a rebuilding thread failed")))
                        })
                        .err()
                })
                .min_by_key(|(chunk, _)| *chunk)
                .map_or(Ok(()), |(_, e)| Err(e));
            read.and(chain)
        })
    }

    /// Reads the chunks `reader`, `reader + READERS`, ... of the records: checks each
    /// record's hash and its link to the one before it within the chunk, decodes it
    /// and hands it to the folder of its case; tells the checker how the chunk begins
    /// and ends.
    fn read_for_rebuild(
        &self,
        reader: u64,
        chunks: u64,
        folders: &ToFolders,
        links: &SyncSender<Link>,
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
        folders: &ToFolders,
        links: &SyncSender<Link>,
    ) -> Result<(), LogError> {
        let from = chunk * REBUILD_CHUNK + 1;
        let mut decoded = Vec::new();
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
            decoded.push(Decoded::of(rec)?);
        }
        send(folders, by_folder(folders, decoded))?;
        links.send(link).map_err(|_| stopped())?;
        Ok(())
    }
}

/// Takes the chunks' links in order from the readers in turn and checks they form
/// one chain from the genesis; returns the last sequence and its hash.
fn check_links(links: &[Receiver<Link>], chunks: u64) -> Result<(u64, Hash), LogError> {
    let mut last = 0u64;
    let mut prev = GENESIS;
    for chunk in 0..chunks {
        // A reader that stopped early has an error of its own, reported before this.
        let Ok(link) = links[chunk as usize % links.len()].recv() else {
            return Err(stopped());
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
