//! The portable export of the log, and its offline verification.
//!
//! Format: JSON Lines, UTF-8.
//! - line 1: `{"format":"handoff-log-export","version":1,"from":F,"to":T}`
//! - then one line per record, in sequence order:
//!   `{"sequence":N,"stream_sequence":S,"recorded_at_unix_ms":R,"envelope":"<base64 protobuf Envelope>","prev_hash":"<hex>","hash":"<hex>"}`
//!   and, when the event carried personal details, `"sealed_details":"<base64 protobuf SealedDetails>"`:
//!   ciphertext under the subject's key, which only the exchange holds and which erasure destroys.
//!   It is not part of the hash (the envelope is, without the details).
//! - last line: the signed checkpoint of the exported head:
//!   `{"checkpoint":{"sequence":T,"head_hash":"<hex>","recorded_at_unix_ms":R,"public_key":"<hex>","signature":"<hex>"}}`
//!
//! `hash = SHA-256(prev_hash ‖ sequence ‖ stream_sequence ‖ recorded_at_unix_ms ‖ len(envelope) ‖ envelope)`
//! with integers as 8-byte big-endian; the first record's `prev_hash` is 32 zero bytes.

use std::borrow::Cow;
use std::io::{BufRead, Write};

use base64::Engine;
use handoff_contract::chain::record_hash;
use handoff_contract::hex::{decode as unhex, encode as hex};
use handoff_contract::v1::{Checkpoint, LogRecord, SealedDetails};
use prost::Message;
use serde::{Deserialize, Serialize};

mod verify;

pub use verify::verify;

const FORMAT: &str = "handoff-log-export";

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    from: u64,
    to: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    sequence: u64,
    stream_sequence: u64,
    recorded_at_unix_ms: i64,
    envelope: String,
    prev_hash: String,
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_details: Option<String>,
}

/// A record line as `verify` reads it: borrowed, so checking a line allocates
/// nothing but the decoded envelope (verification runs at close to hashing speed).
#[derive(Deserialize)]
struct LineRef<'a> {
    sequence: u64,
    stream_sequence: u64,
    recorded_at_unix_ms: i64,
    // Borrowed unless the text holds JSON escapes.
    #[serde(borrow)]
    envelope: Cow<'a, str>,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    /// Read by a replay, not by `verify` (the hash does not cover it).
    #[serde(borrow, default)]
    sealed_details: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointLine {
    checkpoint: CheckpointJson,
}

#[derive(Clone, Serialize, Deserialize)]
struct CheckpointJson {
    sequence: u64,
    head_hash: String,
    recorded_at_unix_ms: i64,
    public_key: String,
    signature: String,
}

/// Writes an export: header, records, checkpoint.
pub struct ExportWriter<W: Write> {
    out: W,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export of sequences `from..=to`.
    pub fn new(mut out: W, from: u64, to: u64) -> std::io::Result<Self> {
        let header = Header {
            format: FORMAT.into(),
            version: 1,
            from,
            to,
        };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        Ok(ExportWriter { out })
    }

    /// Appends one record.
    pub fn record(&mut self, r: &LogRecord) -> std::io::Result<()> {
        let line = Line {
            sequence: r.sequence,
            stream_sequence: r.stream_sequence,
            recorded_at_unix_ms: r.recorded_at_unix_ms,
            envelope: base64::engine::general_purpose::STANDARD.encode(&r.envelope),
            prev_hash: hex(&r.prev_hash),
            hash: hex(&r.hash),
            sealed_details: r
                .sealed_details
                .as_ref()
                .map(|s| base64::engine::general_purpose::STANDARD.encode(s.encode_to_vec())),
        };
        writeln!(self.out, "{}", serde_json::to_string(&line)?)
    }

    /// Ends the export with the signed checkpoint of its head.
    pub fn finish(mut self, c: &Checkpoint) -> std::io::Result<W> {
        let line = CheckpointLine {
            checkpoint: CheckpointJson {
                sequence: c.sequence,
                head_hash: hex(&c.head_hash),
                recorded_at_unix_ms: c.recorded_at_unix_ms,
                public_key: hex(&c.public_key),
                signature: hex(&c.signature),
            },
        };
        writeln!(self.out, "{}", serde_json::to_string(&line)?)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads the records of an export (call `verify` first: this only parses).
pub fn read_records(input: impl BufRead) -> Result<Vec<LogRecord>, Finding> {
    records(input).collect()
}

/// The records of an export one at a time, as [`read_records`] reads them, so a
/// replay need not hold them all.
pub fn records(mut input: impl BufRead) -> impl Iterator<Item = Result<LogRecord, Finding>> {
    // One line buffer for the whole export, and each line read borrowed.
    let mut line = String::new();
    let mut number = 0usize;
    std::iter::from_fn(move || {
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Err(e) => return Some(Err(Finding::NotAnExport(e.to_string()))),
                Ok(0) => return None,
                Ok(_) => number += 1,
            }
            // The header, blank lines and the checkpoint are not records.
            if number == 1 {
                continue;
            }
            if let Ok(r) = serde_json::from_str::<LineRef>(&line) {
                return Some(record_of(&r, number));
            }
        }
    })
}

/// A record line's record; `line` (1-based) names it in a finding.
fn record_of(r: &LineRef<'_>, line: usize) -> Result<LogRecord, Finding> {
    let bytes = |t: &str| unhex(t).ok_or(Finding::Altered(r.sequence));
    Ok(LogRecord {
        sequence: r.sequence,
        stream_sequence: r.stream_sequence,
        recorded_at_unix_ms: r.recorded_at_unix_ms,
        envelope: base64::engine::general_purpose::STANDARD
            .decode(r.envelope.as_bytes())
            .map_err(|_| Finding::NotAnExport(format!("line {line}: envelope is not base64")))?,
        prev_hash: bytes(&r.prev_hash)?,
        hash: bytes(&r.hash)?,
        sealed_details: match &r.sealed_details {
            None => None,
            Some(text) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .ok()
                    .and_then(|b| SealedDetails::decode(b.as_slice()).ok())
                    .ok_or_else(|| {
                        Finding::NotAnExport(format!(
                            "line {line}: sealed_details is not a base64 SealedDetails"
                        ))
                    })?,
            ),
        },
    })
}

/// What a verification found wrong, with the exact sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// The file is not an export this verifier reads.
    #[error("not a handoff log export: {0}")]
    NotAnExport(String),
    /// A record's contents do not match its hash.
    #[error("record {0} was altered: its contents do not match its hash")]
    Altered(u64),
    /// A record that should be there is not.
    #[error("record {0} is missing: it was removed")]
    Removed(u64),
    /// A record appears that does not belong (a repeated or extra sequence).
    #[error(
        "record {0} was inserted: the sequence was already used or the chain does not lead to it"
    )]
    Inserted(u64),
    /// Records are out of order.
    #[error("record {0} is out of order: it comes after a later record")]
    Reordered(u64),
    /// A record does not link to the one before it.
    #[error("record {0} does not link to the record before it (altered or replaced)")]
    Unlinked(u64),
    /// The checkpoint is missing, unsigned by the expected key, or names another head.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// First and last sequence verified.
    pub from: u64,
    /// Last sequence verified (the checkpoint's).
    pub to: u64,
    /// Records checked.
    pub records: u64,
}

#[cfg(test)]
mod tests {
    use super::verify::record_as_written;
    use super::*;
    use crate::ExchangeKey;

    fn chain(n: u64) -> Vec<LogRecord> {
        let mut prev = vec![0u8; 32];
        (1..=n)
            .map(|seq| {
                let envelope = format!("event {seq}").into_bytes();
                let hash = record_hash(&prev, seq, seq + 10, 1000 + seq as i64, &envelope).to_vec();
                let r = LogRecord {
                    sequence: seq,
                    stream_sequence: seq + 10,
                    recorded_at_unix_ms: 1000 + seq as i64,
                    envelope,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                    // Sealed details ride along outside the hash.
                    sealed_details: (seq % 3 == 0).then(|| SealedDetails {
                        subject_pseudonym: "s".into(),
                        nonce: vec![1; 24],
                        ciphertext: vec![seq as u8; 8],
                        ..SealedDetails::default()
                    }),
                };
                prev = hash;
                r
            })
            .collect()
    }

    fn export(records: &[LogRecord], key: &ExchangeKey) -> String {
        let last = records.iter().map(|r| r.sequence).max().unwrap_or(0);
        let head = records
            .iter()
            .find(|r| r.sequence == last)
            .map(|r| r.hash.clone())
            .unwrap_or_default();
        let mut w = ExportWriter::new(Vec::new(), 1, last).expect("header");
        for r in records {
            w.record(r).expect("record");
        }
        let out = w.finish(&key.checkpoint(last, &head, 0)).expect("finish");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn the_fast_reader_reads_written_lines_as_serde_does_and_leaves_the_rest_to_it() {
        let (_dir, key) = crate::key::tests::fresh_key();
        let text = export(&chain(3), &key);
        let line = text.lines().nth(1).expect("a record line");
        let fast = record_as_written(line.as_bytes()).expect("read as written");
        let general: LineRef = serde_json::from_str(line).expect("json");
        assert_eq!(
            (
                fast.sequence,
                fast.stream_sequence,
                fast.recorded_at_unix_ms
            ),
            (
                general.sequence,
                general.stream_sequence,
                general.recorded_at_unix_ms
            )
        );
        assert_eq!(
            (fast.envelope, fast.prev_hash, fast.hash),
            (
                general.envelope.as_bytes(),
                general.prev_hash.as_bytes(),
                general.hash.as_bytes()
            )
        );
        // Same record, other layouts: left to serde_json, and the export still verifies.
        let spaced = line.replacen("\"sequence\":", "\"sequence\": ", 1);
        let reordered = {
            let mut v: serde_json::Value = serde_json::from_str(line).expect("json");
            let hash = v["hash"].take();
            let object = v.as_object_mut().expect("object");
            object.remove("hash");
            let mut out = serde_json::Map::new();
            out.insert("hash".into(), hash);
            out.extend(object.clone());
            serde_json::to_string(&out).expect("json")
        };
        let leading_zero = line.replacen("\"sequence\":1,", "\"sequence\":01,", 1);
        for (other, verifies) in [(spaced, true), (reordered, true), (leading_zero, false)] {
            assert!(record_as_written(other.as_bytes()).is_none(), "{other}");
            let edited = text.replacen(line, &other, 1);
            assert_eq!(
                verify(edited.as_bytes(), &key.public_key()).is_ok(),
                verifies,
                "{other}"
            );
        }
    }

    #[test]
    fn an_escaped_character_is_read_as_json_reads_it() {
        let (_dir, key) = crate::key::tests::fresh_key();
        let text = export(&chain(3), &key);
        assert!(text.contains("\"envelope\":\"ZXZlbnQgMQ=="), "{text}");
        // The same record with one base64 character written as a JSON escape.
        let escaped = text.replacen("\"envelope\":\"Z", "\"envelope\":\"\\u005a", 1);
        assert!(verify(escaped.as_bytes(), &key.public_key()).is_ok());
    }

    #[test]
    fn an_untouched_export_verifies() {
        let (_d, key) = crate::key::tests::fresh_key();
        let text = export(&chain(10), &key);
        let ok = verify(text.as_bytes(), &key.public_key()).expect("verifies");
        assert_eq!((ok.from, ok.to, ok.records), (1, 10, 10));
        let read = read_records(text.as_bytes()).expect("parses");
        assert_eq!(read, chain(10), "records and sealed details round-trip");
    }

    #[test]
    fn each_kind_of_tampering_is_named_with_its_sequence() {
        let (_d, key) = crate::key::tests::fresh_key();
        let good = chain(10);

        // altered: an envelope byte changed
        let mut altered = good.clone();
        altered[4].envelope[0] ^= 1;
        assert_eq!(
            verify(export(&altered, &key).as_bytes(), &key.public_key()),
            Err(Finding::Altered(5))
        );

        // altered and re-hashed: the next record no longer links
        let mut rehashed = good.clone();
        rehashed[4].envelope[0] ^= 1;
        let r = &rehashed[4];
        rehashed[4].hash = record_hash(
            &r.prev_hash,
            r.sequence,
            r.stream_sequence,
            r.recorded_at_unix_ms,
            &r.envelope,
        )
        .to_vec();
        assert_eq!(
            verify(export(&rehashed, &key).as_bytes(), &key.public_key()),
            Err(Finding::Unlinked(6))
        );

        // removed
        let mut removed = good.clone();
        removed.remove(6);
        assert_eq!(
            verify(export(&removed, &key).as_bytes(), &key.public_key()),
            Err(Finding::Removed(7))
        );

        // inserted: a forged copy of record 3 right after it
        let mut inserted = good.clone();
        let mut extra = good[2].clone();
        extra.envelope = b"forged".to_vec();
        inserted.insert(3, extra);
        assert_eq!(
            verify(export(&inserted, &key).as_bytes(), &key.public_key()),
            Err(Finding::Inserted(3))
        );

        // reordered
        let mut reordered = good.clone();
        reordered.swap(7, 8);
        assert_eq!(
            verify(export(&reordered, &key).as_bytes(), &key.public_key()),
            Err(Finding::Reordered(8))
        );
        let mut far = good.clone();
        let moved = far.remove(2);
        far.insert(6, moved);
        assert_eq!(
            verify(export(&far, &key).as_bytes(), &key.public_key()),
            Err(Finding::Reordered(3))
        );

        // removed at the end: the checkpoint names a later head than the records reach
        let text = export(&good, &key);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(10);
        let truncated = lines.join("\n");
        assert_eq!(
            verify(truncated.as_bytes(), &key.public_key()),
            Err(Finding::Removed(10))
        );

        // signed by someone else
        let (_d2, other) = crate::key::tests::fresh_key();
        assert!(matches!(
            verify(export(&good, &other).as_bytes(), &key.public_key()),
            Err(Finding::Checkpoint(_))
        ));
    }
}
