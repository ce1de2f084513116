//! Offline verification of an export: every line checked on its own in parallel
//! (its hash), then in order (dense sequences, the chain's links), then the
//! signed checkpoint of the head.

use std::io::BufRead;

use base64::Engine;
use handoff_contract::hex::decode as unhex;
use handoff_contract::v1::Checkpoint;

use super::{
    CheckpointJson, CheckpointLine, FORMAT, Finding, Header, Line, LineRef, Verified, record_hash,
};
use crate::key::verify_checkpoint;

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
pub(super) struct RecordText<'a> {
    pub(super) sequence: u64,
    pub(super) stream_sequence: u64,
    pub(super) recorded_at_unix_ms: i64,
    pub(super) envelope: &'a [u8],
    pub(super) prev_hash: &'a [u8],
    pub(super) hash: &'a [u8],
}

/// Reads a record line laid out exactly as [`ExportWriter`] writes it, without a
/// general JSON parser (which costs more than hashing the line). Anything else
/// (other key order, spacing, leading zeros) gives `None`; a field with escapes or
/// other bytes does not decode in `check_record`. Either way the line then goes to
/// serde_json, so both read every line the same way.
pub(super) fn record_as_written(line: &[u8]) -> Option<RecordText<'_>> {
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
