//! The small values the store keeps beside the log: its head, revocations,
//! quarantine usage, and the filter of a case listing.

use handoff_contract::v1::{CaseStatus, CaseView};

use crate::chain::Hash;
use crate::keys::u64_at;

/// The state of the log's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Sequence of the last record (0 when empty).
    pub sequence: u64,
    /// Hash of the last record (`GENESIS` when empty).
    pub hash: Hash,
    /// The last JetStream stream sequence consumed (appended or quarantined).
    pub stream_position: u64,
    /// How many messages the quarantine holds.
    pub quarantined: u64,
}

impl Head {
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..8].copy_from_slice(&self.sequence.to_be_bytes());
        b[8..].copy_from_slice(&self.hash);
        b
    }
}

/// An agency's revocation, as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The log sequence of the revocation.
    pub sequence: u64,
    /// Why, with who decided.
    pub reason: String,
}

impl Revocation {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = self.sequence.to_be_bytes().to_vec();
        v.extend_from_slice(self.reason.as_bytes());
        v
    }

    pub(crate) fn decode(bytes: &[u8]) -> Revocation {
        Revocation {
            sequence: u64_at(bytes, 0).unwrap_or(0),
            reason: String::from_utf8_lossy(bytes.get(8..).unwrap_or_default()).into_owned(),
        }
    }
}

/// How much an agency's refused messages take in the quarantine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuarantineUsage {
    /// Entries kept (whole or summarized).
    pub entries: u64,
    /// Bytes of the entries as stored.
    pub bytes: u64,
    /// Entries kept only as a summary because the quota was used up.
    pub summarized: u64,
}

impl QuarantineUsage {
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.entries.to_be_bytes());
        v[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        v[16..].copy_from_slice(&self.summarized.to_be_bytes());
        v
    }

    pub(crate) fn decode(bytes: &[u8]) -> QuarantineUsage {
        QuarantineUsage {
            entries: u64_at(bytes, 0).unwrap_or(0),
            bytes: u64_at(bytes, 8).unwrap_or(0),
            summarized: u64_at(bytes, 16).unwrap_or(0),
        }
    }
}

/// Which cases `Log::list_cases` returns.
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only cases in this status.
    pub status: Option<CaseStatus>,
    /// Only cases held by this agency.
    pub holder: Option<String>,
}

impl CaseFilter {
    /// Whether a case view passes the filter.
    pub fn matches(&self, v: &CaseView) -> bool {
        self.status.is_none_or(|s| v.status == s as i32)
            && self.holder.as_ref().is_none_or(|h| &v.holder == h)
    }
}
