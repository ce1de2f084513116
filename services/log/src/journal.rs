//! The access journal: an append-only file that makes each access record durable
//! with one write and one fdatasync, the disk's own floor. A sled flush of the same
//! record costs about four times as much (a batch, then sled's writer threads;
//! docs/BENCHMARKS.md), and every read pays it before it is answered.
//!
//! The sled `access` tree stays the copy that is read; the journal holds what sled
//! may not have on disk yet. Opening the log replays the journal's records that the
//! tree lacks, flushes sled and empties the journal; a long-running exchange empties
//! it the same way each time it grows past [`ROTATE_BYTES`].
//!
//! The file is kept [`FILE_BYTES`] long, written with zeros ahead of the frames: a
//! write that grows a file makes its fdatasync also commit the new size, which
//! costs a second disk write, so frames only ever overwrite zeros.
//!
//! Frames: 4 bytes big-endian length, then the `AccessRecord`. A frame is taken only
//! if it is whole and its record carries its own hash and links to the one before;
//! the first that is not ends the journal. Frames are appended in order by one
//! writer and each read is answered only after its frame's fdatasync, which also
//! covers every frame before it, so what is cut was never answered.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use handoff_contract::v1::AccessRecord;
use prost::Message;

use crate::access::access_hash;
use crate::chain::Hash;
use crate::store::LogError;

/// The journal's file name in the store's directory.
pub(crate) const FILE: &str = "access.journal";
/// Past this size the journal is emptied (after a sled flush) at the next read:
/// every few thousand reads, a few milliseconds once.
pub(crate) const ROTATE_BYTES: u64 = 1 << 20;
/// No access record is near this large (each field is bounded before it is stored).
const MAX_FRAME: u32 = 1 << 20;
/// The file's length: room for a full journal and its largest last frame.
const FILE_BYTES: u64 = ROTATE_BYTES + 2 * MAX_FRAME as u64;

/// The open journal.
pub(crate) struct Journal {
    file: Arc<File>,
    path: Arc<Path>,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and returns, with it, the records it
    /// holds after `head` (sequence and hash of the last record sled has), in order.
    pub(crate) fn open(
        dir: &Path,
        head: (u64, Hash),
    ) -> Result<(Journal, Vec<AccessRecord>), LogError> {
        let path: Arc<Path> = dir.join(FILE).into();
        let error = |source| LogError::Journal {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(error)?;
        let (records, whole) = frames_after(&bytes, head);
        if bytes[whole..].iter().any(|b| *b != 0) {
            tracing::warn!(
                journal = %path.display(),
                from_byte = whole,
                "the access journal ends in an incomplete or unlinked frame (a crash mid-write); \
                 it is cut there: those reads were never answered"
            );
        }
        if (bytes.len() as u64) < FILE_BYTES {
            // Once per data dir: the zeros every frame will overwrite.
            let zeros = vec![0u8; FILE_BYTES as usize - bytes.len()];
            file.write_all_at(&zeros, bytes.len() as u64)
                .and_then(|()| file.sync_all())
                .map_err(error)?;
        }
        let journal = Journal {
            file: Arc::new(file),
            path,
            // What the next clear must zero: up to the last byte that is not zero.
            len: bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1) as u64,
        };
        Ok((journal, records))
    }

    /// Appends `record`'s frame (not yet durable: see [`Journal::file`]).
    pub(crate) fn append(&mut self, record: &AccessRecord) -> Result<(), LogError> {
        let body = record.encode_to_vec();
        if body.len() > MAX_FRAME as usize {
            // Never stored where recovery would not read it back.
            return Err(self.error(std::io::Error::other(format!(
                "an access record of {} bytes is over the journal's {MAX_FRAME}",
                body.len()
            ))));
        }
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.file
            .write_all_at(&frame, self.len)
            .map_err(|e| self.error(e))?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// The file and its path, to fdatasync outside the lock that orders the appends.
    pub(crate) fn file(&self) -> (Arc<File>, Arc<Path>) {
        (self.file.clone(), self.path.clone())
    }

    /// Whether the journal is past [`ROTATE_BYTES`].
    pub(crate) fn is_full(&self) -> bool {
        self.len > ROTATE_BYTES
    }

    /// Empties the journal (zeros over its frames). Call only once sled holds every
    /// record in it durably.
    pub(crate) fn clear(&mut self) -> Result<(), LogError> {
        let zeros = vec![0u8; self.len as usize];
        self.file
            .write_all_at(&zeros, 0)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.error(e))?;
        self.len = 0;
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> LogError {
        LogError::Journal {
            path: self.path.to_path_buf(),
            source,
        }
    }
}

/// The records of `bytes`' frames after `head`, and how many bytes of whole, linked
/// frames there are. Frames at or before `head` are sled's already and are skipped.
fn frames_after(bytes: &[u8], head: (u64, Hash)) -> (Vec<AccessRecord>, usize) {
    let (mut seq, mut hash) = head;
    let (mut records, mut at) = (Vec::new(), 0);
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len > MAX_FRAME {
            break;
        }
        let Some(body) = bytes.get(at + 4..at + 4 + len as usize) else {
            break;
        };
        let Ok(record) = AccessRecord::decode(body) else {
            break;
        };
        let own = access_hash(&record);
        if record.hash != own.as_slice() {
            break;
        }
        if record.sequence > seq {
            if record.sequence != seq + 1 || record.prev_hash != hash.as_slice() {
                break;
            }
            (seq, hash) = (record.sequence, own);
            records.push(record);
        }
        at += 4 + len as usize;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::GENESIS;

    /// `n` chained records from the start.
    fn chain(n: u64) -> Vec<AccessRecord> {
        let (mut prev, mut out) = (GENESIS, Vec::new());
        for sequence in 1..=n {
            let mut r = AccessRecord {
                sequence,
                agency: "policie-jc".into(),
                rpc: "GetCase".into(),
                case_ids: vec![format!("case-{sequence}")],
                prev_hash: prev.to_vec(),
                ..AccessRecord::default()
            };
            prev = access_hash(&r);
            r.hash = prev.to_vec();
            out.push(r);
        }
        out
    }

    fn frames(records: &[AccessRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            let body = r.encode_to_vec();
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    #[test]
    fn the_records_after_the_head_are_taken_in_order() {
        let records = chain(5);
        let bytes = frames(&records);
        let head = (2, access_hash(&records[1]));
        let (after, whole) = frames_after(&bytes, head);
        assert_eq!(after, records[2..].to_vec());
        assert_eq!(whole, bytes.len());
    }

    #[test]
    fn a_torn_or_zeroed_tail_ends_the_journal_and_keeps_what_is_whole() {
        let records = chain(3);
        let whole = frames(&records);
        for tail in [
            frames(&chain(4)[3..])[..9].to_vec(), // a frame cut mid-write
            vec![0u8; 4096],                      // a page the crash left zeroed
            vec![0xff; 3],                        // a length cut short
        ] {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&tail);
            let (after, kept) = frames_after(&bytes, (0, GENESIS));
            assert_eq!(after, records);
            assert_eq!(kept, whole.len());
        }
    }

    #[test]
    fn an_altered_or_unlinked_frame_is_not_taken_nor_anything_after_it() {
        let records = chain(4);
        // Altered: the case id changed, the hash kept.
        let mut altered = records.clone();
        altered[2].case_ids = vec!["case-other".into()];
        let (after, _) = frames_after(&frames(&altered), (0, GENESIS));
        assert_eq!(after, records[..2].to_vec());
        // Unlinked: a record of another chain (its own hash is right) in place of the third.
        let mut foreign = records.clone();
        foreign[2].prev_hash = vec![7; 32];
        foreign[2].hash = access_hash(&foreign[2]).to_vec();
        let (after, kept) = frames_after(&frames(&foreign), (0, GENESIS));
        assert_eq!(after, records[..2].to_vec());
        assert_eq!(kept, frames(&records[..2]).len());
    }
}
