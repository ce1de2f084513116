//! Key layout of the log tree (see the table in lib.rs).

pub const RECORD: u8 = b'r';
pub const EVENT: u8 = b'e';
pub const CASE_RECORDS: u8 = b'c';
pub const VIEW: u8 = b'v';
pub const INBOX: u8 = b'i';
pub const QUARANTINE: u8 = b'q';
pub const REJECTED_EVENT: u8 = b'x';
pub const DIRECTORY: u8 = b'd';
pub const SUBJECT_CASES: u8 = b's';
pub const AGENCY_STATUS: u8 = b'a';
pub const INGRESS: u8 = b'p';
pub const QUARANTINE_USAGE: u8 = b'u';

pub const META_HEAD: &[u8] = b"mhead";
pub const META_POSITION: &[u8] = b"mposition";
pub const META_QUARANTINED: &[u8] = b"mquarantined";
pub const META_FORMAT: &[u8] = b"mformat";
/// Present while projections are being rebuilt; the store is not served meanwhile.
pub const META_REBUILDING: &[u8] = b"mrebuilding";

/// Format of this key layout; a store written by another format is refused, not repaired.
/// 3: records in runs (`runs.rs`), the case index in chunks of sequences.
pub const FORMAT: u64 = 3;

/// A run of records, keyed by its first sequence.
pub fn record(seq: u64) -> [u8; 9] {
    let mut k = [RECORD; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// An event id, scoped to the agency that published it: agency, 0, the id's 16 bytes.
pub fn event(agency: &str, id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + 18);
    k.push(EVENT);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k.extend_from_slice(id);
    k
}

/// The event index's value: the event's log sequence and its case's version after it.
pub fn event_value(sequence: u64, case_version: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&sequence.to_be_bytes());
    v[8..].copy_from_slice(&case_version.to_be_bytes());
    v
}

pub fn case_records_prefix(case_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(case_id.len() + 2);
    k.push(CASE_RECORDS);
    k.extend_from_slice(case_id.as_bytes());
    k.push(0);
    k
}

/// Sequences in one entry of the case index: chunk `n` of a case holds its records
/// `n * 256` to `n * 256 + 255`, whatever the batches were, so that a rebuild derives
/// the same entries as the commits wrote.
pub const CASE_INDEX_CHUNK: usize = 256;

/// Chunk `chunk` of a case's index.
pub fn case_index(case_id: &str, chunk: u32) -> Vec<u8> {
    let mut k = case_records_prefix(case_id);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// A chunk of the case index's value: its sequences, 8 bytes each.
pub fn case_index_value(sequences: &[u64]) -> Vec<u8> {
    sequences.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// The sequences a chunk of the case index holds (`None`: not a whole number of them).
pub fn case_index_sequences(value: &[u8]) -> Option<impl Iterator<Item = u64> + '_> {
    value.len().is_multiple_of(8).then(|| {
        value
            .chunks_exact(8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
    })
}

pub fn view(case_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(case_id.len() + 1);
    k.push(VIEW);
    k.extend_from_slice(case_id.as_bytes());
    k
}

pub fn inbox_prefix(agency: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + 2);
    k.push(INBOX);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k
}

pub fn inbox(agency: &str, case_id: &str, item_id: &str) -> Vec<u8> {
    let mut k = inbox_prefix(agency);
    k.extend_from_slice(case_id.as_bytes());
    k.push(0);
    k.extend_from_slice(item_id.as_bytes());
    k
}

pub fn quarantine(stream_seq: u64) -> [u8; 9] {
    let mut k = [QUARANTINE; 9];
    k[1..].copy_from_slice(&stream_seq.to_be_bytes());
    k
}

pub fn rejected_event(agency: &str, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + event_id.len() + 2);
    k.push(REJECTED_EVENT);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// A directory listing: agency, 0, service id.
pub fn listing(agency: &str, service_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + service_id.len() + 2);
    k.push(DIRECTORY);
    k.extend_from_slice(agency.as_bytes());
    k.push(0);
    k.extend_from_slice(service_id.as_bytes());
    k
}

/// The subject index: subject, 0, case id.
pub fn subject_case(subject: &str, case_id: &str) -> Vec<u8> {
    let mut k = subject_cases_prefix(subject);
    k.extend_from_slice(case_id.as_bytes());
    k
}

pub fn subject_cases_prefix(subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subject.len() + 2);
    k.push(SUBJECT_CASES);
    k.extend_from_slice(subject.as_bytes());
    k.push(0);
    k
}

/// One key per agency: `prefix` + agency.
pub fn per_agency(prefix: u8, agency: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(agency.len() + 1);
    k.push(prefix);
    k.extend_from_slice(agency.as_bytes());
    k
}

/// Reads a big-endian u64 at `at`, if the slice is long enough.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}
