//! What ingest reports to Prometheus (served by the binary on `[metrics] listen`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label sets of the labelled metrics: `[(name, value)]`.
type Labels = Vec<(String, String)>;

/// Ingest's metrics; clones share the same values.
#[derive(Debug, Clone)]
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
    pub messages: Family<Labels, Counter>,
    /// Messages refused into the quarantine, by `reason` (snake_case rejection reason).
    pub rejected: Family<Labels, Counter>,
    /// Stream messages not yet consumed (stream's last sequence minus the stored position).
    pub consumer_lag: Gauge,
    /// 1 while messages wait but the stored position has not moved for `stuck_after`.
    pub stuck: Gauge,
    /// 1 once ingest has stopped because messages aged out before it consumed them.
    pub aged_out: Gauge,
    /// Bytes the data dir takes on disk (walked in the background every few seconds).
    pub store_bytes: Gauge,
    /// Seconds to make one batch durable (key store flush + log commit).
    pub commit_duration: Histogram,
    /// Messages per committed batch.
    pub batch_messages: Histogram,
    /// Inbox items past their SLA deadline, by `rule` (computed in the background).
    pub sla_overdue: Family<Labels, Gauge>,
    /// Bytes of messages each agency's ingress stream holds now, by `agency`.
    pub agency_ingress_bytes: Family<Labels, Gauge>,
    /// Messages each agency's ingress stream holds now, by `agency`.
    pub agency_ingress_messages: Family<Labels, Gauge>,
    /// Bytes each agency's refused messages take in the quarantine, by `agency`.
    pub agency_quarantine_bytes: Family<Labels, Gauge>,
    /// Refused messages kept only as summaries (the agency's quota was used up), by `agency`.
    pub agency_quarantine_summarized: Family<Labels, Gauge>,
    /// 1 while an agency is over a quota, by `agency` and `quota` (`ingress`: its
    /// ingress stream is 95 % full and the broker refuses or soon refuses its
    /// publishes; `quarantine`: its refused messages are kept as summaries only).
    pub agency_over_quota: Family<Labels, Gauge>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            consuming: Gauge::default(),
            paused_low_disk: Gauge::default(),
            paused_unwritable: Gauge::default(),
            store_free_bytes: Gauge::default(),
            head_sequence: Gauge::default(),
            stream_position: Gauge::default(),
            quarantined: Gauge::default(),
            messages: Family::default(),
            rejected: Family::default(),
            consumer_lag: Gauge::default(),
            stuck: Gauge::default(),
            aged_out: Gauge::default(),
            store_bytes: Gauge::default(),
            // 0.5 ms .. ~4 s: a flush on a fast SSD up to a struggling disk.
            commit_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            // 1 .. 4096 messages.
            batch_messages: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            sla_overdue: Family::default(),
            agency_ingress_bytes: Family::default(),
            agency_ingress_messages: Family::default(),
            agency_quarantine_bytes: Family::default(),
            agency_quarantine_summarized: Family::default(),
            agency_over_quota: Family::default(),
        }
    }
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
        r.register(
            "ingest_rejected",
            "Messages refused into the quarantine, by reason",
            self.rejected.clone(),
        );
        r.register(
            "ingest_consumer_lag",
            "Stream messages not yet consumed",
            self.consumer_lag.clone(),
        );
        r.register(
            "ingest_stuck",
            "1 while messages wait but the stored position has not advanced for [ingest] stuck_after_secs",
            self.stuck.clone(),
        );
        r.register(
            "ingest_aged_out",
            "1 once ingest has stopped because messages aged out of the stream before it consumed them (restore the node from a backup younger than [nats] max_age_days)",
            self.aged_out.clone(),
        );
        r.register(
            "store_bytes",
            "Bytes the data dir takes on disk",
            self.store_bytes.clone(),
        );
        r.register(
            "ingest_commit_duration_seconds",
            "Seconds to make one batch durable (key store flush and log commit)",
            self.commit_duration.clone(),
        );
        r.register(
            "ingest_batch_messages",
            "Messages per committed batch",
            self.batch_messages.clone(),
        );
        r.register(
            "sla_overdue",
            "Inbox items past their SLA deadline, by rule",
            self.sla_overdue.clone(),
        );
        r.register(
            "agency_ingress_bytes",
            "Bytes of messages an agency's ingress stream holds (its quota's window)",
            self.agency_ingress_bytes.clone(),
        );
        r.register(
            "agency_ingress_messages",
            "Messages an agency's ingress stream holds (its quota's window)",
            self.agency_ingress_messages.clone(),
        );
        r.register(
            "agency_quarantine_bytes",
            "Bytes an agency's refused messages take in the quarantine",
            self.agency_quarantine_bytes.clone(),
        );
        r.register(
            "agency_quarantine_summarized",
            "An agency's refused messages kept only as summaries, its quarantine quota used up",
            self.agency_quarantine_summarized.clone(),
        );
        r.register(
            "agency_over_quota",
            "1 while an agency is over its ingress or quarantine quota, by agency and quota",
            self.agency_over_quota.clone(),
        );
    }

    /// Sets a gauge of `family` for one agency (and, if given, one quota).
    pub fn set_for(family: &Family<Labels, Gauge>, agency: &str, quota: Option<&str>, value: i64) {
        let mut labels = vec![("agency".to_string(), agency.to_string())];
        if let Some(q) = quota {
            labels.push(("quota".to_string(), q.to_string()));
        }
        family.get_or_create(&labels).set(value);
    }

    /// Counts one refusal under its reason's snake_case name (e.g. `too_large`).
    pub(crate) fn count_rejected(&self, reason: handoff_contract::v1::RejectionReason) {
        self.rejected
            .get_or_create(&vec![("reason".to_string(), reason_label(reason))])
            .inc();
    }

    pub(crate) fn count(&self, outcome: &str, n: usize) {
        self.messages
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc_by(n as u64);
    }
}

/// A rejection reason as a stable snake_case label: the proto name without its prefix.
pub fn reason_label(reason: handoff_contract::v1::RejectionReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("REJECTION_REASON_")
        .to_ascii_lowercase()
}
