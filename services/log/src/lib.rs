//! The append-only log of Handoff, kept in sled, with the projections that
//! are written in the same atomic batch as the records they derive from.
//!
//! One sled tree, keyspaces by first byte (all integers big-endian):
//!
//! | prefix | key                                  | value                                   |
//! |--------|--------------------------------------|-----------------------------------------|
//! | `r`    | sequence                             | `LogRecord`                             |
//! | `e`    | event id (16 bytes)                  | sequence, case version after it         |
//! | `c`    | case id, 0, sequence                 | (empty): the case's records in order    |
//! | `v`    | case id                              | `CaseView` (projection)                 |
//! | `i`    | agency, 0, case id, 0, item id       | `InboxItem` (projection)                |
//! | `q`    | stream sequence                      | `QuarantineEntry`                       |
//! | `x`    | agency, 0, event id (text)           | latest rejection `Receipt` for it       |
//! | `d`    | agency, 0, service id                | current `ServiceListing` (projection)   |
//! | `m`    | name                                 | head, stream position, counters, format |
//!
//! Because everything lives in one tree, one `sled::Batch` applies records,
//! indexes, projections and the consumer position atomically; `commit`
//! flushes it to disk before it returns, and only then may anything be
//! acknowledged or receipted.

pub mod access;
pub mod chain;
mod keys;
mod store;

pub use access::{AccessLog, access_hash};
pub use chain::{GENESIS, Hash, hex, is_intact, record_hash};
pub use store::{
    Appended, CaseFilter, CommitPause, DEFAULT_CACHE_BYTES, Head, Log, LogError, Logged, NewRecord,
    Rebuilt, StoreOptions, WriteBatch, attach_sealed_details, check_writable, settle,
};
