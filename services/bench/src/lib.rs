//! Benchmarks of Handoff: a deterministic workload and the load tool's measurements.

pub mod measure;
pub mod workload;
