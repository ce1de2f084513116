//! The case model of Handoff. Pure: no I/O, no async, no clock.
//!
//! [`admit`] decides whether an event may enter the log and what it changes
//! ([`Effects`]); [`target`] says what an event is about, for every path that
//! routes events; [`evolve`] folds a case's events into its view, called by
//! admission and again by every replay that rebuilds a projection.

pub mod admit;
pub mod agency;
pub mod calendar;
pub mod case;
pub mod directory;
pub mod effect;
pub mod eviction_path;
pub mod ids;
pub mod inbox;
pub mod limits;
pub mod policy;
pub mod private;
pub mod reason;
pub mod rejection;
pub mod repeat;
pub mod retention;
pub mod safety;
pub mod sla;
pub mod stats;
pub mod statutory;
pub mod statutory_stats;
pub mod validate;
pub mod visibility;

pub use admit::{Known, admit};
pub use agency::{Agency, AgencyKind, Registry};
pub use case::{Position, evolve, evolve_owned, may_write, opens_case, status_name};
pub use effect::{CaseChange, Effects, Erasure, ErasureScope, RegistryChange, Target, target};
pub use rejection::Rejection;
pub use visibility::{Visibility, visibility};
