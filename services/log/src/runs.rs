//! How records are stored: consecutive records in runs, one sled entry per run
//! under the key of its first sequence, each record length-delimited.
//!
//! sled 0.34 copies a tree node for every insert, so an insert per record was most
//! of a commit's cost; a run costs one. A run is written once, whole, and never
//! changed: an append starts a new run. A run stays small (at most
//! [`RUN_RECORDS`] records, closed once past [`RUN_BYTES`]), so that a node of runs
//! stays under the size at which sled writes a node as a separate blob file.

use prost::bytes::Buf;

use crate::error::corrupt;
use crate::keys;
use crate::store::LogError;

/// Most records in one run.
pub const RUN_RECORDS: usize = 16;
/// A run takes no more records once its encoded records take this many bytes.
pub const RUN_BYTES: usize = 4096;

/// Collects encoded records, in sequence order, into runs ready to store.
#[derive(Debug, Default)]
pub struct RunBuilder {
    first: u64,
    records: usize,
    value: Vec<u8>,
}

impl RunBuilder {
    /// Adds the record at `sequence` (one after the last added); returns the run it
    /// closed, as its key and value, once that run is full.
    pub fn push(&mut self, sequence: u64, encoded: &[u8]) -> Option<([u8; 9], Vec<u8>)> {
        if self.records == 0 {
            self.first = sequence;
        }
        prost::encode_length_delimiter(encoded.len(), &mut self.value)
            .unwrap_or_else(|_| unreachable!("a Vec grows"));
        self.value.extend_from_slice(encoded);
        self.records += 1;
        (self.records == RUN_RECORDS || self.value.len() >= RUN_BYTES)
            .then(|| self.take())
            .flatten()
    }

    /// The run still open, if it holds any record.
    pub fn finish(&mut self) -> Option<([u8; 9], Vec<u8>)> {
        self.take()
    }

    fn take(&mut self) -> Option<([u8; 9], Vec<u8>)> {
        if self.records == 0 {
            return None;
        }
        self.records = 0;
        Some((keys::record(self.first), std::mem::take(&mut self.value)))
    }
}

/// The first sequence of a run, from its key.
pub(crate) fn first_of(key: &[u8]) -> Result<u64, LogError> {
    keys::u64_at(key, 1).ok_or_else(|| corrupt("records", "a run's key is too short"))
}

/// The encoded records of the run stored under `first`, each with its sequence.
pub fn records_of(first: u64, mut value: &[u8]) -> Result<Vec<(u64, &[u8])>, LogError> {
    let unreadable = || {
        corrupt(
            format!("record {first}"),
            "its run of records cannot be read",
        )
    };
    let mut out = Vec::with_capacity(RUN_RECORDS);
    while value.has_remaining() {
        let len = prost::decode_length_delimiter(&mut value).map_err(|_| unreadable())?;
        let encoded = value.get(..len).ok_or_else(unreadable)?;
        value = &value[len..];
        out.push((first + out.len() as u64, encoded));
    }
    if out.is_empty() {
        return Err(unreadable());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_close_at_their_count_or_size_and_read_back_in_order() {
        let mut builder = RunBuilder::default();
        let mut runs = Vec::new();
        // Small records close a run at its count; a big one closes it alone.
        let sizes = [[10usize; RUN_RECORDS].as_slice(), &[RUN_BYTES, 3, 3]].concat();
        for (at, size) in sizes.iter().enumerate() {
            runs.extend(builder.push(at as u64 + 1, &vec![at as u8; *size]));
        }
        runs.extend(builder.finish());
        assert!(builder.finish().is_none());
        let mut next = 1u64;
        let mut lengths = Vec::new();
        for (key, value) in &runs {
            let first = keys::u64_at(key, 1).expect("a run key");
            assert_eq!(first, next);
            let records = records_of(first, value).expect("a run");
            lengths.push(records.len());
            for (seq, encoded) in records {
                assert_eq!((seq, encoded.len()), (next, sizes[next as usize - 1]));
                next += 1;
            }
        }
        assert_eq!(lengths, [RUN_RECORDS, 1, 2]);
    }

    #[test]
    fn a_cut_or_empty_run_is_damage() {
        let mut builder = RunBuilder::default();
        builder.push(9, &[1, 2, 3]);
        let (_, value) = builder.finish().expect("a run");
        assert!(records_of(9, &value[..value.len() - 1]).is_err());
        assert!(records_of(9, &[]).is_err());
        assert!(records_of(9, &[0x80]).is_err());
    }
}
