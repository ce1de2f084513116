//! Rebuilding every projection and index from the records alone: in place
//! ([`Log::rebuild_projections`]) or from an export into a fresh store
//! ([`Log::import_records`]), by one fold ([`fold`]) and one writer ([`write`]).

use handoff_domain::Registry;

use crate::keys;
use crate::store::{Log, LogError, corrupt};

mod fold;
mod import;
mod read;
mod write;

/// Records a producer takes at a time.
const REBUILD_CHUNK: u64 = 1024;

/// What [`Log::rebuild_projections`] or [`Log::import_records`] did.
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
    /// Derives every projection and index from the records alone (case views,
    /// inboxes, the service directory, the case-record and event-id indexes),
    /// checking each record's hash and the chain as it goes, and makes the store hold exactly that: entries
    /// that differ are rewritten, missing ones written, extra ones removed. On an
    /// intact store nothing is written; a dropped or damaged projection comes back
    /// byte-identical. Run with the exchange stopped (sled's lock makes sure); a
    /// marker makes [`Log::open`] refuse a store whose rebuild was cut off.
    pub fn rebuild_projections(&self, registry: &Registry) -> Result<Rebuilt, LogError> {
        self.mark_rebuilding()?;
        // Two threads read, hash-check and decode the records, chunk by chunk in turn;
        // two fold them, each taking the cases whose id hashes to it and reading the
        // chunks in order, so a case's events stay in order (cases are independent).
        // This thread checks that the chunks join up into one chain.
        let ((records, prev), derived) = fold::fold(registry, read::READERS, |to_folders| {
            self.read_all(to_folders)
        })?;
        let head = self.head();
        if records != head.sequence || (records > 0 && prev != head.hash) {
            return Err(corrupt("head", "the records do not end at the stored head"));
        }
        self.write_projections(derived, records)
    }

    /// Sets the marker that makes [`Log::open`] refuse the store until
    /// [`Log::write_projections`] has made its projections whole and cleared it.
    fn mark_rebuilding(&self) -> Result<(), LogError> {
        self.tree.insert(keys::META_REBUILDING, &[] as &[u8])?;
        self.db.flush()?;
        Ok(())
    }
}
