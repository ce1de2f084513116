//! What the store holds, keyspace by keyspace: keys and the bytes of their keys and
//! values, for the benchmarks' bytes-per-event table (live data, before sled's own
//! log and page overhead, which `du` of the data dir adds).

use crate::keys;
use crate::store::{Log, LogError};

/// The live size of one keyspace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyspaceSize {
    /// What the keyspace holds.
    pub name: &'static str,
    /// How many keys.
    pub keys: u64,
    /// The bytes of those keys.
    pub key_bytes: u64,
    /// The bytes of their values.
    pub value_bytes: u64,
}

/// Every keyspace of the log's tree, then the access log, in a fixed order.
const NAMES: [(u8, &str); 13] = [
    (keys::RECORD, "record runs"),
    (keys::EVENT, "event-id index"),
    (keys::CASE_RECORDS, "case index"),
    (keys::VIEW, "case views"),
    (keys::INBOX, "inboxes"),
    (keys::SUBJECT_CASES, "subject index"),
    (keys::QUARANTINE, "quarantine"),
    (keys::REJECTED_EVENT, "rejected-event index"),
    (keys::DIRECTORY, "directory"),
    (keys::AGENCY_STATUS, "revocations"),
    (keys::INGRESS, "ingress positions"),
    (keys::QUARANTINE_USAGE, "quarantine usage"),
    (b'm', "meta"),
];

impl Log {
    /// The live size of each keyspace, and of the access log last; reads the whole store.
    pub fn keyspace_sizes(&self) -> Result<Vec<KeyspaceSize>, LogError> {
        let mut out: Vec<KeyspaceSize> = NAMES
            .iter()
            .map(|(_, name)| KeyspaceSize {
                name,
                ..KeyspaceSize::default()
            })
            .chain(std::iter::once(KeyspaceSize {
                name: "other",
                ..KeyspaceSize::default()
            }))
            .collect();
        for entry in self.tree.iter() {
            let (key, value) = entry?;
            let at = key
                .first()
                .and_then(|p| NAMES.iter().position(|(prefix, _)| prefix == p))
                .unwrap_or(NAMES.len());
            add(&mut out[at], key.len(), value.len());
        }
        let mut access = KeyspaceSize {
            name: "access log",
            ..KeyspaceSize::default()
        };
        for entry in self.db.open_tree("access")?.iter() {
            let (key, value) = entry?;
            add(&mut access, key.len(), value.len());
        }
        out.push(access);
        out.retain(|k| k.keys > 0);
        Ok(out)
    }
}

fn add(size: &mut KeyspaceSize, key: usize, value: usize) {
    size.keys += 1;
    size.key_bytes += key as u64;
    size.value_bytes += value as u64;
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_prefix_has_one_name() {
        let mut prefixes: Vec<u8> = super::NAMES.iter().map(|(p, _)| *p).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        assert_eq!(prefixes.len(), super::NAMES.len());
    }
}
