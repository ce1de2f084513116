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

use std::io::{BufRead, Write};

use base64::Engine;
use handoff_contract::hex::{decode as unhex, encode as hex};
use handoff_contract::v1::{Checkpoint, LogRecord, SealedDetails};
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::key::verify_checkpoint;

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
    #[serde(borrow)]
    envelope: &'a str,
    #[serde(borrow)]
    prev_hash: &'a str,
    #[serde(borrow)]
    hash: &'a str,
}

#[derive(Serialize, Deserialize)]
struct CheckpointLine {
    checkpoint: CheckpointJson,
}

#[derive(Serialize, Deserialize)]
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
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate().skip(1) {
        let line = line.map_err(|e| Finding::NotAnExport(e.to_string()))?;
        let Ok(r) = serde_json::from_str::<Line>(&line) else {
            continue; // blank lines and the checkpoint
        };
        let bytes = |t: &str| unhex(t).ok_or(Finding::Altered(r.sequence));
        out.push(LogRecord {
            sequence: r.sequence,
            stream_sequence: r.stream_sequence,
            recorded_at_unix_ms: r.recorded_at_unix_ms,
            envelope: base64::engine::general_purpose::STANDARD
                .decode(&r.envelope)
                .map_err(|_| {
                    Finding::NotAnExport(format!("line {}: envelope is not base64", i + 1))
                })?,
            prev_hash: bytes(&r.prev_hash)?,
            hash: bytes(&r.hash)?,
            sealed_details: match &r.sealed_details {
                None => None,
                Some(text) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .and_then(|b| SealedDetails::decode(b.as_slice()).ok())
                        .ok_or_else(|| {
                            Finding::NotAnExport(format!(
                                "line {}: sealed_details is not a base64 SealedDetails",
                                i + 1
                            ))
                        })?,
                ),
            },
        });
    }
    Ok(out)
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

fn record_hash(prev: &[u8], seq: u64, stream_seq: u64, at: i64, envelope: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(stream_seq.to_be_bytes());
    h.update(at.to_be_bytes());
    h.update((envelope.len() as u64).to_be_bytes());
    h.update(envelope);
    h.finalize().into()
}

/// Verifies an export offline against the exchange's public key: every record's hash,
/// dense sequences, the chain's links, and the signed checkpoint of the head.
pub fn verify(input: impl BufRead, public_key: &[u8]) -> Result<Verified, Finding> {
    let mut lines = input.lines();
    let bad = |what: String| Finding::NotAnExport(what);
    let header: Header = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .map_err(|e| bad(e.to_string()))
        .and_then(|l| serde_json::from_str(&l).map_err(|e| bad(format!("header: {e}"))))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(bad(format!(
            "format {} version {}",
            header.format, header.version
        )));
    }
    let mut expected = header.from.max(1);
    let mut prev_hash: Option<Vec<u8>> = if expected == 1 {
        Some(vec![0u8; 32])
    } else {
        None
    };
    let mut checkpoint: Option<CheckpointJson> = None;
    let mut records = 0u64;
    let mut index = 1usize;
    let mut envelope = Vec::new();
    while let Some(line) = lines.next() {
        index += 1;
        let i = index - 2;
        let line = line.map_err(|e| bad(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if checkpoint.is_some() {
            return Err(bad(format!("line {} follows the checkpoint", i + 2)));
        }
        // Records first: all lines but one are records.
        let r: LineRef = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => match serde_json::from_str::<CheckpointLine>(&line) {
                Ok(c) => {
                    checkpoint = Some(c.checkpoint);
                    continue;
                }
                Err(_) => return Err(bad(format!("line {}: {e}", i + 2))),
            },
        };
        envelope.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(r.envelope, &mut envelope)
            .map_err(|_| Finding::Altered(r.sequence))?;
        let (stored_prev, stored_hash) = match (unhex(r.prev_hash), unhex(r.hash)) {
            (Some(p), Some(h)) => (p, h),
            _ => return Err(Finding::Altered(r.sequence)),
        };
        // Order and density first: they name what happened most precisely.
        if r.sequence < expected {
            return Err(if r.sequence + 1 == expected {
                Finding::Inserted(r.sequence)
            } else {
                Finding::Reordered(r.sequence)
            });
        }
        if r.sequence > expected {
            // Missing here: later in the file means reordered, nowhere means removed.
            let later = lines
                .by_ref()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<Line>(&l).ok())
                .any(|l| l.sequence == expected);
            return Err(if later {
                Finding::Reordered(expected)
            } else {
                Finding::Removed(expected)
            });
        }
        if record_hash(
            &stored_prev,
            r.sequence,
            r.stream_sequence,
            r.recorded_at_unix_ms,
            &envelope,
        )
        .as_slice()
            != stored_hash.as_slice()
        {
            return Err(Finding::Altered(r.sequence));
        }
        if let Some(prev) = &prev_hash
            && prev != &stored_prev
        {
            return Err(Finding::Unlinked(r.sequence));
        }
        prev_hash = Some(stored_hash);
        expected += 1;
        records += 1;
    }
    let c = checkpoint
        .ok_or_else(|| Finding::Checkpoint("the export has no checkpoint (truncated?)".into()))?;
    let last = expected - 1;
    if c.sequence != last {
        return Err(if c.sequence > last {
            Finding::Removed(last + 1)
        } else {
            Finding::Checkpoint(format!(
                "names sequence {} but records go to {last}",
                c.sequence
            ))
        });
    }
    let cp = Checkpoint {
        sequence: c.sequence,
        head_hash: unhex(&c.head_hash).unwrap_or_default(),
        recorded_at_unix_ms: c.recorded_at_unix_ms,
        public_key: unhex(&c.public_key).unwrap_or_default(),
        signature: unhex(&c.signature).unwrap_or_default(),
    };
    if Some(&cp.head_hash) != prev_hash.as_ref() {
        return Err(Finding::Checkpoint(format!(
            "head hash differs from record {last}'s hash"
        )));
    }
    verify_checkpoint(&cp, public_key).map_err(|e| Finding::Checkpoint(e.to_string()))?;
    Ok(Verified {
        from: header.from.max(1),
        to: last,
        records,
    })
}

#[cfg(test)]
mod tests {
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

    fn key() -> (tempfile::TempDir, ExchangeKey) {
        let dir = tempfile::tempdir().expect("tmp");
        let key = ExchangeKey::load_or_create(dir.path()).expect("key");
        (dir, key)
    }

    #[test]
    fn an_untouched_export_verifies() {
        let (_d, key) = key();
        let text = export(&chain(10), &key);
        let ok = verify(text.as_bytes(), &key.public_key()).expect("verifies");
        assert_eq!((ok.from, ok.to, ok.records), (1, 10, 10));
        let read = read_records(text.as_bytes()).expect("parses");
        assert_eq!(read, chain(10), "records and sealed details round-trip");
    }

    #[test]
    fn each_kind_of_tampering_is_named_with_its_sequence() {
        let (_d, key) = key();
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
        let (_d2, other) = self::key();
        assert!(matches!(
            verify(export(&good, &other).as_bytes(), &key.public_key()),
            Err(Finding::Checkpoint(_))
        ));
    }
}
