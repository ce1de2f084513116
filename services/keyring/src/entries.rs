//! The key store's layout: the name of each entry (`k<subject>\0<agency>` a wrapped
//! key, `e<subject>[\0<agency>]` an erasure tombstone).

pub(crate) fn entry(prefix: u8, subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subject.len() + 1);
    k.push(prefix);
    k.extend_from_slice(subject.as_bytes());
    k
}

/// The entry of one agency's key or erasure for a subject: prefix, subject, 0, agency.
pub(crate) fn agency_entry(prefix: u8, subject: &str, agency: &str) -> Vec<u8> {
    let mut k = entry(prefix, subject);
    k.push(0);
    k.extend_from_slice(agency.as_bytes());
    k
}

/// The prefix of every agency's entry for a subject.
pub(crate) fn agencies_prefix(prefix: u8, subject: &str) -> Vec<u8> {
    let mut k = entry(prefix, subject);
    k.push(0);
    k
}
