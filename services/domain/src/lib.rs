//! The case model of Handoff. Pure: no I/O, no async, no clock.
//!
//! [`evolve`] is the one place that decides whether an event may enter the
//! log and what the case looks like after it; ingest calls it in stream
//! order, and replays call it again to rebuild projections.

pub mod agency;
pub mod case;
pub mod directory;
pub mod inbox;
pub mod policy;
pub mod rejection;
pub mod retention;
pub mod sla;
pub mod stats;
pub mod validate;
pub mod visibility;

pub use agency::{Agency, AgencyKind, Registry};
pub use case::{Position, evolve, evolve_owned, status_name};
pub use rejection::Rejection;
pub use visibility::{Visibility, visibility};
