//! The JetStream stream agencies publish into.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::IngestError;

/// How the events stream is set up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Stream name.
    pub name: String,
    /// Window within which JetStream drops a repeated Nats-Msg-Id.
    pub duplicate_window: Duration,
    /// Largest message the stream takes, in bytes.
    pub max_message_bytes: usize,
    /// Replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
}

/// Subjects the stream captures: `handoff.events.<agency>.<event type>`.
pub const EVENT_SUBJECTS: &str = "handoff.events.>";

/// How long receipts are kept and deduplicated: a node that catches up within this
/// time sends nothing a publisher sees twice.
pub const RECEIPTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Creates the receipts stream if it does not exist (see `names::RECEIPTS_STREAM`).
pub async fn ensure_receipts_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, IngestError> {
    let name = handoff_contract::names::RECEIPTS_STREAM;
    let config = stream::Config {
        name: name.to_string(),
        subjects: vec!["handoff.receipts.>".to_string()],
        storage: stream::StorageType::File,
        // A cache for publishers (the log answers look-ups): old receipts may go.
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: RECEIPTS_KEPT,
        duplicate_window: RECEIPTS_KEPT,
        num_replicas: settings.replicas.max(1),
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| IngestError::Stream {
            stream: name.to_string(),
            detail: e.to_string(),
        })
}

/// Creates the stream if it does not exist; an existing stream is used as it is.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, IngestError> {
    let config = stream::Config {
        name: settings.name.clone(),
        subjects: vec![EVENT_SUBJECTS.to_string()],
        storage: stream::StorageType::File,
        // The log is the truth and may need the stream again (new replicas, restores):
        // keep everything, refuse new messages rather than drop old ones.
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        duplicate_window: settings.duplicate_window,
        max_message_size: i32::try_from(settings.max_message_bytes).unwrap_or(i32::MAX),
        num_replicas: settings.replicas.max(1),
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| IngestError::Stream {
            stream: settings.name.clone(),
            detail: e.to_string(),
        })
}
