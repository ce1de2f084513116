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
    // Borrowed unless the text holds JSON escapes.
    #[serde(borrow)]
    envelope: Cow<'a, str>,
    #[serde(borrow)]
    prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    hash: Cow<'a, str>,
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
pub fn records(input: impl BufRead) -> impl Iterator<Item = Result<LogRecord, Finding>> {
    input
        .lines()
        .enumerate()
        .skip(1)
        .filter_map(|(i, line)| match line {
            Err(e) => Some(Err(Finding::NotAnExport(e.to_string()))),
            // Blank lines and the checkpoint are not records.
            Ok(line) => serde_json::from_str::<Line>(&line)
                .ok()
                .map(|r| record_of(&r, i + 1)),
        })
}

/// A record line's record; `line` (1-based) names it in a finding.
fn record_of(r: &Line, line: usize) -> Result<LogRecord, Finding> {
    let bytes = |t: &str| unhex(t).ok_or(Finding::Altered(r.sequence));
    Ok(LogRecord {
        sequence: r.sequence,
        stream_sequence: r.stream_sequence,
        recorded_at_unix_ms: r.recorded_at_unix_ms,
        envelope: base64::engine::general_purpose::STANDARD
            .decode(&r.envelope)
            .map_err(|_| Finding::NotAnExport(format!("line {line}: envelope is not base64")))?,
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

/// Bytes read per round; the lines of a round are checked on two threads.
const VERIFY_BLOCK: usize = 4 << 20;

/// One line of an export, checked on its own: whether a record's contents match its
/// hash needs nothing from other lines, so this part runs in parallel.
enum Checked {
    Blank,
    Record {
        sequence: u64,
        /// Its hashes and envelope decoded (else it was altered, whatever else).
        readable: bool,
        /// Its contents match its stated hash.
        intact: bool,
        prev: [u8; 32],
        hash: [u8; 32],
    },
    Checkpoint(CheckpointJson),
    Unreadable(String),
}

/// A record line's fields, as text still encoded (base64, hex).
struct RecordText<'a> {
    sequence: u64,
    stream_sequence: u64,
    recorded_at_unix_ms: i64,
    envelope: &'a [u8],
    prev_hash: &'a [u8],
    hash: &'a [u8],
}

/// Reads a record line laid out exactly as [`ExportWriter`] writes it, without a
/// general JSON parser (which costs more than hashing the line). Anything else
/// (other key order, spacing, leading zeros) gives `None`; a field with escapes or
/// other bytes does not decode in `check_record`. Either way the line then goes to
/// serde_json, so both read every line the same way.
fn record_as_written(line: &[u8]) -> Option<RecordText<'_>> {
    fn unsigned(s: &[u8]) -> Option<(u64, &[u8])> {
        let end = s
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(s.len());
        let digits = &s[..end];
        if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        Some((n, &s[end..]))
    }
    fn signed(s: &[u8]) -> Option<(i64, &[u8])> {
        let (negative, s) = match s.strip_prefix(b"-") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (n, rest) = unsigned(s)?;
        let n = i64::try_from(n).ok()?;
        Some((if negative { -n } else { n }, rest))
    }
    const HASH: usize = 64;
    let rest = line.strip_prefix(b"{\"sequence\":")?;
    let (sequence, rest) = unsigned(rest)?;
    let (stream_sequence, rest) = unsigned(rest.strip_prefix(b",\"stream_sequence\":")?)?;
    let (recorded_at_unix_ms, rest) = signed(rest.strip_prefix(b",\"recorded_at_unix_ms\":")?)?;
    let rest = rest.strip_prefix(b",\"envelope\":\"")?;
    // From the end: the fixed-width hashes, after the optional sealed details; the
    // envelope is what lies between (not searched through: it is the long part).
    let mut body = rest.strip_suffix(b"\"}")?;
    if let Some(open) = memchr::memrchr(b'"', body)
        && let Some(before) = body[..open].strip_suffix(b"\",\"sealed_details\":")
    {
        let sealed = &body[open + 1..];
        // Not decoded by `verify`: take here only what serde_json reads the same.
        if !sealed
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            return None;
        }
        body = before;
    }
    let hash_at = body.len().checked_sub(HASH)?;
    let (body, hash) = body.split_at(hash_at);
    let body = body.strip_suffix(b"\",\"hash\":\"")?;
    let prev_at = body.len().checked_sub(HASH)?;
    let (body, prev_hash) = body.split_at(prev_at);
    let envelope = body.strip_suffix(b"\",\"prev_hash\":\"")?;
    Some(RecordText {
        sequence,
        stream_sequence,
        recorded_at_unix_ms,
        envelope,
        prev_hash,
        hash,
    })
}

fn hash32(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    handoff_contract::hex::decode_into(text, &mut out).then_some(out)
}

fn check_line(line: &[u8], envelope: &mut Vec<u8>) -> Checked {
    // Records first: all lines but one are records, almost always as written.
    if let Some(r) = record_as_written(line) {
        let checked = check_record(&r, envelope);
        // Unreadable as written (escapes, say): the general parser has the last word.
        if !matches!(
            checked,
            Checked::Record {
                readable: false,
                ..
            }
        ) {
            return checked;
        }
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Checked::Unreadable("stream did not contain valid UTF-8".into());
    };
    if line.trim().is_empty() {
        return Checked::Blank;
    }
    let r = match serde_json::from_str::<LineRef>(line) {
        Ok(r) => r,
        Err(e) => {
            return match serde_json::from_str::<CheckpointLine>(line) {
                Ok(c) => Checked::Checkpoint(c.checkpoint),
                Err(_) => Checked::Unreadable(e.to_string()),
            };
        }
    };
    check_record(
        &RecordText {
            sequence: r.sequence,
            stream_sequence: r.stream_sequence,
            recorded_at_unix_ms: r.recorded_at_unix_ms,
            envelope: r.envelope.as_bytes(),
            prev_hash: r.prev_hash.as_bytes(),
            hash: r.hash.as_bytes(),
        },
        envelope,
    )
}

/// Checks one record line's contents against its stated hash.
fn check_record(r: &RecordText<'_>, envelope: &mut Vec<u8>) -> Checked {
    envelope.clear();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode_vec(r.envelope, envelope)
        .is_ok();
    match (hash32(r.prev_hash), hash32(r.hash)) {
        (Some(prev), Some(hash)) if decoded => Checked::Record {
            sequence: r.sequence,
            readable: true,
            intact: record_hash(
                &prev,
                r.sequence,
                r.stream_sequence,
                r.recorded_at_unix_ms,
                envelope,
            ) == hash,
            prev,
            hash,
        },
        _ => Checked::Record {
            sequence: r.sequence,
            readable: false,
            intact: false,
            prev: [0; 32],
            hash: [0; 32],
        },
    }
}

/// The lines of a block of whole lines (`\n` or `\r\n` ended; the last may lack it).
fn lines_of(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let block = block.strip_suffix(b"\n").unwrap_or(block);
    memchr::memchr_iter(b'\n', block)
        .chain(std::iter::once(block.len()))
        .scan(0usize, move |start, end| {
            let line = &block[*start..end];
            *start = end + 1;
            Some(line.strip_suffix(b"\r").unwrap_or(line))
        })
}

/// Checks a block's lines on two threads, in order.
fn check_block(block: &[u8]) -> Vec<Checked> {
    let check = |part: &[u8]| {
        let mut envelope = Vec::new();
        lines_of(part)
            .map(|l| check_line(l, &mut envelope))
            .collect::<Vec<_>>()
    };
    // Split at the line end nearest the middle.
    let middle = memchr::memchr(b'\n', &block[block.len() / 2..]).map(|i| block.len() / 2 + i);
    match middle {
        Some(m) if m + 1 < block.len() => {
            let (a, b) = block.split_at(m + 1);
            std::thread::scope(|s| {
                let second = s.spawn(|| check(b));
                let mut out = check(a);
                // A panic in the other half is a bug in this function, not in the input.
                out.extend(second.join().unwrap_or_default());
                out
            })
        }
        _ => check(block),
    }
}

/// Reads `input` in blocks of whole lines and hands them over in order; an empty
/// block means the end.
fn read_blocks(
    mut input: impl std::io::Read,
    blocks: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
) {
    use std::io::Read as _;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = std::mem::take(&mut carry);
        let start = block.len();
        block.reserve(VERIFY_BLOCK);
        // read_to_end fills without zeroing the buffer first.
        if let Err(e) = (&mut input)
            .take(VERIFY_BLOCK as u64)
            .read_to_end(&mut block)
        {
            let _ = blocks.send(Err(e));
            return;
        }
        let at_end = block.len() - start < VERIFY_BLOCK;
        if !at_end {
            match memchr::memrchr(b'\n', &block) {
                Some(i) => carry = block.split_off(i + 1),
                None => {
                    // One line longer than a block: keep reading it.
                    carry = block;
                    continue;
                }
            }
        }
        // The verifier stops listening once it has a finding.
        if !block.is_empty() && blocks.send(Ok(block)).is_err() {
            return;
        }
        if at_end {
            let _ = blocks.send(Ok(Vec::new()));
            return;
        }
    }
}

/// Verifies an export offline against the exchange's public key: every record's hash,
/// dense sequences, the chain's links, and the signed checkpoint of the head.
pub fn verify(mut input: impl BufRead + Send, public_key: &[u8]) -> Result<Verified, Finding> {
    let bad = |what: String| Finding::NotAnExport(what);
    let mut first = String::new();
    input
        .read_line(&mut first)
        .map_err(|e| bad(e.to_string()))?;
    if first.is_empty() {
        return Err(bad("empty file".into()));
    }
    let header: Header =
        serde_json::from_str(first.trim_end()).map_err(|e| bad(format!("header: {e}")))?;
    if header.format != FORMAT || header.version != 1 {
        return Err(bad(format!(
            "format {} version {}",
            header.format, header.version
        )));
    }
    let expected = header.from.max(1);
    let prev_hash: Option<[u8; 32]> = (expected == 1).then_some([0u8; 32]);
    // One thread reads blocks ahead while two check the current one.
    let (tx, blocks) = std::sync::mpsc::sync_channel(2);
    std::thread::scope(|scope| {
        scope.spawn(move || read_blocks(input, tx));
        check_rounds(blocks, expected, prev_hash)
    })
    .and_then(|(checkpoint, expected, prev_hash, records)| {
        finish(
            header.from,
            checkpoint,
            expected,
            prev_hash,
            records,
            public_key,
        )
    })
}

/// What the in-order pass over the records ends with: the checkpoint line, the next
/// expected sequence, the last hash and how many records it checked.
type Pass = (Option<CheckpointJson>, u64, Option<[u8; 32]>, u64);

/// The in-order checks of sequence and chain, over rounds of lines checked in parallel.
fn check_rounds(
    rounds: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    mut expected: u64,
    mut prev_hash: Option<[u8; 32]>,
) -> Result<Pass, Finding> {
    let bad = |what: String| Finding::NotAnExport(what);
    let mut checkpoint: Option<CheckpointJson> = None;
    let mut records = 0u64;
    let mut line_no = 1usize;
    loop {
        let round = rounds
            .recv()
            .map_err(|_| bad("the reader stopped".into()))?
            .map_err(|e| bad(e.to_string()))?;
        if round.is_empty() {
            break;
        }
        let checked = check_block(&round);
        for (i, c) in checked.iter().enumerate() {
            line_no += 1;
            if matches!(c, Checked::Blank) {
                continue;
            }
            if checkpoint.is_some() {
                return Err(bad(format!("line {line_no} follows the checkpoint")));
            }
            let (sequence, readable, intact, prev, hash) = match c {
                Checked::Blank => continue,
                Checked::Checkpoint(cp) => {
                    checkpoint = Some(cp.clone());
                    continue;
                }
                Checked::Unreadable(e) => return Err(bad(format!("line {line_no}: {e}"))),
                Checked::Record {
                    sequence,
                    readable,
                    intact,
                    prev,
                    hash,
                } => (*sequence, *readable, *intact, prev, hash),
            };
            if !readable {
                return Err(Finding::Altered(sequence));
            }
            // Order and density first: they name what happened most precisely.
            if sequence < expected {
                return Err(if sequence + 1 == expected {
                    Finding::Inserted(sequence)
                } else {
                    Finding::Reordered(sequence)
                });
            }
            if sequence > expected {
                // Missing here: later in the file means reordered, nowhere means removed.
                let later_here = checked[i + 1..].iter().any(
                    |c| matches!(c, Checked::Record { sequence, .. } if *sequence == expected),
                );
                let later = later_here
                    || rounds
                        .iter()
                        .map_while(Result::ok)
                        .take_while(|r| !r.is_empty())
                        .any(|block| {
                            lines_of(&block)
                                .filter_map(|l| serde_json::from_slice::<Line>(l).ok())
                                .any(|l| l.sequence == expected)
                        });
                return Err(if later {
                    Finding::Reordered(expected)
                } else {
                    Finding::Removed(expected)
                });
            }
            if !intact {
                return Err(Finding::Altered(sequence));
            }
            if let Some(p) = &prev_hash
                && p != prev
            {
                return Err(Finding::Unlinked(sequence));
            }
            prev_hash = Some(*hash);
            expected += 1;
            records += 1;
        }
    }
    Ok((checkpoint, expected, prev_hash, records))
}

/// The checks after the last record: the checkpoint names the head and is signed.
fn finish(
    from: u64,
    checkpoint: Option<CheckpointJson>,
    expected: u64,
    prev_hash: Option<[u8; 32]>,
    records: u64,
    public_key: &[u8],
) -> Result<Verified, Finding> {
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
    if prev_hash.map(|h| h.to_vec()).as_ref() != Some(&cp.head_hash) {
        return Err(Finding::Checkpoint(format!(
            "head hash differs from record {last}'s hash"
        )));
    }
    verify_checkpoint(&cp, public_key).map_err(|e| Finding::Checkpoint(e.to_string()))?;
    Ok(Verified {
        from: from.max(1),
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
