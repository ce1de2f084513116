//! What can go wrong with the log store, in words an operator can act on.

use std::path::PathBuf;

use prost::Message;

/// What can go wrong with the log store. Messages say what an operator should do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// sled could not open the data dir.
    #[error(
        "cannot open the log store at {path}: {source}. If another handoff process uses this data dir, stop it; if the store is damaged, restore from a backup (the exchange never repairs a store silently)"
    )]
    Open {
        /// The data dir.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// sled failed while reading or writing.
    #[error("the log store failed: {0}. Check free disk space and permissions of the data dir")]
    Store(#[from] sled::Error),
    /// A stored value does not decode or does not match its hash.
    #[error(
        "the log store is damaged at {what}: {detail}. Stop the exchange and restore from a backup; do not edit the data dir"
    )]
    Corrupt {
        /// Where (e.g. "record 42").
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A rebuild of the projections was cut off: they are incomplete.
    #[error(
        "the projections in {path} are incomplete: a rebuild was cut off. Run `handoff admin rebuild` again before serving"
    )]
    RebuildUnfinished {
        /// The data dir.
        path: PathBuf,
    },
    /// The access journal could not be read or written.
    #[error(
        "cannot write the access journal {path}: {source}. Check free disk space and permissions of the data dir; reads are refused until it can be written"
    )]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The store was written by an incompatible version of Handoff.
    #[error(
        "the log store at {path} has format {found}, this build reads format {expected}. Export it with the build that wrote it (`handoff audit export`) and replay the export into a fresh data dir with this one (`handoff audit replay`)"
    )]
    Format {
        /// The data dir.
        path: PathBuf,
        /// The format found.
        found: u64,
        /// The format this build writes.
        expected: u64,
    },
}

pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> LogError {
    LogError::Corrupt {
        what: what.into(),
        detail: detail.into(),
    }
}

pub(crate) fn decode<M: Message + Default>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<M, LogError> {
    M::decode(bytes).map_err(|e| corrupt(what(), e.to_string()))
}
