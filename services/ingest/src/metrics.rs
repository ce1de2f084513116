//! What ingest reports to Prometheus (served by the binary on `[metrics] listen`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Ingest's metrics; clones share the same values.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// 1 while a consumer reads the stream and batches are being committed.
    pub consuming: Gauge,
    /// 1 while ingest holds a batch back because the disk is short of space.
    pub paused_low_disk: Gauge,
    /// 1 while ingest holds a batch back because it may not write in the data dir.
    pub paused_unwritable: Gauge,
    /// Free bytes on the store's file system, at the last check.
    pub store_free_bytes: Gauge,
    /// The log's head sequence.
    pub head_sequence: Gauge,
    /// The last stream sequence consumed.
    pub stream_position: Gauge,
    /// Messages in the quarantine.
    pub quarantined: Gauge,
    /// Messages decided, by outcome (accepted, duplicate, rejected).
    pub messages: Family<Vec<(String, String)>, Counter>,
}

impl IngestMetrics {
    /// Registers every metric under `handoff_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("handoff");
        r.register(
            "ingest_consuming",
            "1 while ingest consumes the stream and commits",
            self.consuming.clone(),
        );
        r.register(
            "ingest_paused_low_disk",
            "1 while ingest stores and receipts nothing because the disk is short of space",
            self.paused_low_disk.clone(),
        );
        r.register(
            "ingest_paused_store_unwritable",
            "1 while ingest stores and receipts nothing because it may not write in the data dir",
            self.paused_unwritable.clone(),
        );
        r.register(
            "store_free_bytes",
            "Free bytes on the store's file system",
            self.store_free_bytes.clone(),
        );
        r.register(
            "log_head_sequence",
            "Sequence of the last record in the log",
            self.head_sequence.clone(),
        );
        r.register(
            "ingest_stream_position",
            "Last JetStream sequence consumed",
            self.stream_position.clone(),
        );
        r.register(
            "quarantined",
            "Messages kept in the quarantine",
            self.quarantined.clone(),
        );
        r.register(
            "ingest_messages",
            "Messages decided, by outcome",
            self.messages.clone(),
        );
    }

    pub(crate) fn count(&self, outcome: &str, n: usize) {
        self.messages
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc_by(n as u64);
    }
}
