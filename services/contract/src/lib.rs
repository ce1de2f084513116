//! The wire contract of Handoff, generated from `proto/handoff/v1`.
//!
//! Messages are plain data (prost); the gRPC client and server for the
//! `CasesService` (and the other services) exist only with the `grpc` feature, so the pure domain
//! crate does not pull in tonic.

/// Generated types of package `handoff.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/handoff.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every proto file, for gRPC reflection and JSON mapping.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/handoff_descriptor.bin"));

/// Contract version this build writes and understands (`Envelope.schema_version`).
pub const SCHEMA_VERSION: u32 = 1;

pub mod chain;
pub mod hex;
pub mod json;
pub mod names;
pub mod time;
pub mod trace;
