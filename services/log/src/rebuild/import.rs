//! A fresh store from exported records: written as they are and folded on the way,
//! never read back.

use std::sync::mpsc::{SyncSender, sync_channel};

use handoff_contract::v1::LogRecord;
use handoff_domain::Registry;
use prost::Message;

use super::REBUILD_CHUNK;
use super::Rebuilt;
use super::fold::{self, Decoded, ToFolders, by_folder, send, stopped};
use crate::keys;
use crate::runs::RunBuilder;
use crate::store::{Head, Log, LogError, corrupt};

impl Log {
    /// Writes exported records into an empty store as they are, checking that each
    /// matches its hash and follows the one before, and derives every projection and
    /// index from them by the fold of [`Log::rebuild_projections`], so the two cannot
    /// disagree. The records are folded as they are written rather than read back;
    /// until the projections are written, [`Log::open`] refuses the store. An item
    /// that is an error (the export could not be read) stops the import with it.
    pub fn import_records<E: std::fmt::Display>(
        &self,
        records: impl IntoIterator<Item = Result<LogRecord, E>>,
        registry: &Registry,
    ) -> Result<Rebuilt, LogError> {
        if self.head().sequence != 0 {
            return Err(corrupt(
                "import",
                "the store is not empty: import into a fresh data dir",
            ));
        }
        self.mark_rebuilding()?;
        // This thread checks and writes the records in chunks and hands each chunk to
        // the folders; sled's writes, the larger cost, overlap with the fold.
        let (head, derived) = fold::fold(registry, 1, |mut to_folders| {
            let to_folders = to_folders.pop().unwrap_or_default();
            self.write_records(records, &to_folders)
        })?;
        let rebuilt = self.write_projections(derived, head.sequence)?;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(rebuilt)
    }

    /// The records of [`Log::import_records`], checked here and handed to the folders
    /// and to a thread writing them (sled's writes are the larger cost), then the
    /// head; returns the head.
    fn write_records<E: std::fmt::Display>(
        &self,
        records: impl IntoIterator<Item = Result<LogRecord, E>>,
        to_folders: &ToFolders,
    ) -> Result<Head, LogError> {
        let (to_writer, chunks) = sync_channel::<Vec<([u8; 9], Vec<u8>)>>(4);
        let head = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                for chunk in chunks {
                    // Written one by one, as a rebuild writes (see `reconcile`).
                    for (key, record) in chunk {
                        self.tree.insert(key, record)?;
                    }
                }
                Ok::<_, LogError>(())
            });
            let checked = self.check_records(records, to_folders, &to_writer);
            drop(to_writer);
            // A panic there is a bug, not bad data: say so rather than hide it.
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(corrupt("records", "a rebuilding thread failed")));
            match (checked, written) {
                (Err(_), Err(e)) => Err(e),
                (checked, written) => written.and(checked),
            }
        })?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::META_HEAD, &head.encode()[..]);
        batch.insert(keys::META_POSITION, &head.stream_position.to_be_bytes()[..]);
        self.tree.apply_batch(batch)?;
        Ok(head)
    }

    /// Checks each record against its hash and the one before, and hands them on in
    /// chunks, encoded to the writer and decoded to the folders; returns the head.
    fn check_records<E: std::fmt::Display>(
        &self,
        records: impl IntoIterator<Item = Result<LogRecord, E>>,
        to_folders: &ToFolders,
        to_writer: &SyncSender<Vec<([u8; 9], Vec<u8>)>>,
    ) -> Result<Head, LogError> {
        let mut head = self.head();
        let mut runs = RunBuilder::default();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let mut encoded = Vec::new();
            let mut decoded = Vec::with_capacity(REBUILD_CHUNK as usize);
            for record in records.by_ref().take(REBUILD_CHUNK as usize) {
                let record = record.map_err(|e| {
                    corrupt(
                        format!("record {}", head.sequence + 1),
                        format!("the export cannot be read: {e}"),
                    )
                })?;
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
                encoded.extend(runs.push(seq, &record.encode_to_vec()));
                decoded.push(Decoded::of(record)?);
            }
            if records.peek().is_none() {
                encoded.extend(runs.finish());
            }
            to_writer.send(encoded).map_err(|_| stopped())?;
            send(to_folders, by_folder(to_folders, decoded))?;
        }
        Ok(head)
    }
}
