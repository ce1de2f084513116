//! The append-only log of Handoff, kept in sled, with the projections that
//! are written in the same atomic batch as the records they derive from.
//!
//! One sled tree, keyspaces by first byte (all integers big-endian):
//!
//! | prefix | key                                  | value                                   |
//! |--------|--------------------------------------|-----------------------------------------|
//! | `r`    | first sequence of a run              | the run's `LogRecord`s, length-delimited (`runs`) |
//! | `e`    | agency, 0, event id (16 bytes)       | sequence, case version after it         |
//! | `c`    | case id, 0, chunk (u32)              | the case's sequences, 256 a chunk, in order |
//! | `v`    | case id                              | `CaseView` (projection)                 |
//! | `i`    | agency, 0, case id, 0, item id       | `InboxItem` (projection)                |
//! | `q`    | stream sequence                      | `QuarantineEntry`                       |
//! | `x`    | agency, 0, event id (text)           | latest rejection `Receipt` for it       |
//! | `d`    | agency, 0, service id                | current `ServiceListing` (projection)   |
//! | `s`    | subject, 0, case id                  | (empty): the subject's cases            |
//! | `a`    | agency                               | its revocation: sequence, reason        |
//! | `p`    | agency                               | last ingress sequence decided           |
//! | `u`    | agency                               | quarantine usage: entries, bytes, summarized |
//! | `m`    | name                                 | head, stream position, counters, format |
//!
//! Because everything lives in one tree, one `sled::Batch` applies records,
//! indexes, projections and the consumer position atomically; `commit`
//! flushes it to disk before it returns, and only then may anything be
//! acknowledged or receipted.

pub mod access;
mod batch;
pub mod chain;
mod error;
mod journal;
mod keys;
mod rebuild;
pub mod runs;
mod sizes;
mod store;
mod values;

pub use access::{AccessLog, access_hash};
pub use batch::{Appended, Logged, NewRecord, WriteBatch, attach_sealed_details};
pub use chain::{GENESIS, Hash, hex, is_intact, record_hash};
pub use rebuild::Rebuilt;
pub use sizes::KeyspaceSize;
pub use store::{
    CaseFilter, CommitPause, DEFAULT_CACHE_BYTES, Head, Log, LogError, QuarantineUsage, Revocation,
    StoreOptions, check_writable, settle,
};
