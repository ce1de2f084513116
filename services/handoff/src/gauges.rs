//! Gauges too costly for the hot path, computed in the background:
//! `handoff_store_bytes` (walking the data dir every 10 s),
//! `handoff_sla_overdue{rule}` (every agency's inbox against the SLA rules, every 30 s),
//! and each agency's share of what the exchange keeps (every 10 s): its ingress
//! stream's bytes and messages against its quota, its quarantine usage, and
//! `handoff_agency_over_quota{agency,quota}`, which the alerts name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff_domain::Registry;
use handoff_domain::sla::SlaRules;
use handoff_ingest::IngestMetrics;
use handoff_log::Log;
use tokio::sync::watch;

/// What the background gauges look at.
pub struct Watched {
    /// The exchange's data dir.
    pub data_dir: PathBuf,
    /// The log whose inboxes are read.
    pub log: Log,
    /// The registered agencies (whose inboxes are counted).
    pub registry: Registry,
    /// The SLA rules of the policy.
    pub sla: SlaRules,
    /// Where the values go.
    pub metrics: IngestMetrics,
    /// The exchange's NATS connection, to read the ingress streams' state.
    pub client: async_nats::Client,
    /// The ingress streams and their quotas.
    pub ingress: Vec<handoff_ingest::Ingress>,
    /// Bytes of quarantine each agency may fill before its entries are summarized.
    pub quarantine_quota_bytes: u64,
}

const STORE_EVERY: Duration = Duration::from_secs(10);
const SLA_EVERY: Duration = Duration::from_secs(30);

/// Updates the gauges until shutdown.
pub async fn run(w: Watched, mut shutdown: watch::Receiver<bool>) {
    let w = std::sync::Arc::new(w);
    let mut store = tokio::time::interval(STORE_EVERY);
    let mut sla = tokio::time::interval(SLA_EVERY);
    store.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sla.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = store.tick() => {
                quotas(&w).await;
                let dir = w.data_dir.clone();
                // Walking a large store touches many inodes: off the async workers.
                match tokio::task::spawn_blocking(move || dir_bytes(&dir)).await {
                    Ok(bytes) => {
                        w.metrics.store_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
                    }
                    Err(e) => tracing::debug!(error = %e, "store size not measured"),
                }
            }
            _ = sla.tick() => {
                let watched = w.clone();
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                match tokio::task::spawn_blocking(move || overdue(&watched, now_ms)).await {
                    Ok(Ok(by_rule)) => {
                        // Rules with none overdue read 0 rather than vanish.
                        for rule in ["eviction_notice", "first_contact"] {
                            let n = by_rule.get(rule).copied().unwrap_or(0);
                            w.metrics
                                .sla_overdue
                                .get_or_create(&vec![("rule".to_string(), rule.to_string())])
                                .set(n);
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "SLA gauge not computed: cannot read inboxes"),
                    Err(e) => tracing::debug!(error = %e, "SLA gauge not computed"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Ingress stream fill and quarantine usage per agency, and who is over a quota.
async fn quotas(w: &Watched) {
    let js = async_nats::jetstream::new(w.client.clone());
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for ingress in &w.ingress {
        let name = handoff_contract::names::ingress_stream(&ingress.agency);
        let Ok(mut stream) = js.get_stream(&name).await else {
            continue;
        };
        let Ok(info) = stream.info().await else {
            continue;
        };
        let (bytes, messages) = (info.state.bytes, info.state.messages);
        let m = &w.metrics;
        IngestMetrics::set_for(&m.agency_ingress_bytes, &ingress.agency, None, gauge(bytes));
        IngestMetrics::set_for(
            &m.agency_ingress_messages,
            &ingress.agency,
            None,
            gauge(messages),
        );
        let full = |used: u64, limit: i64| limit > 0 && used as f64 >= 0.95 * limit as f64;
        let over = full(bytes, ingress.max_bytes) || full(messages, ingress.max_messages);
        IngestMetrics::set_for(
            &m.agency_over_quota,
            &ingress.agency,
            Some("ingress"),
            i64::from(over),
        );
        if over {
            tracing::warn!(
                agency = %ingress.agency,
                bytes,
                messages,
                "agency over its ingress quota: the broker refuses its further publishes until its window passes"
            );
        }
    }
    let log = w.log.clone();
    let Ok(Ok(usage)) = tokio::task::spawn_blocking(move || log.quarantine_usage()).await else {
        return;
    };
    for (agency, u) in usage {
        let m = &w.metrics;
        IngestMetrics::set_for(&m.agency_quarantine_bytes, &agency, None, gauge(u.bytes));
        IngestMetrics::set_for(
            &m.agency_quarantine_summarized,
            &agency,
            None,
            gauge(u.summarized),
        );
        let over = u.bytes >= w.quarantine_quota_bytes || u.summarized > 0;
        IngestMetrics::set_for(
            &m.agency_over_quota,
            &agency,
            Some("quarantine"),
            i64::from(over),
        );
    }
}

/// Bytes of the regular files under `dir`, following no symlinks; unreadable parts count 0.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// Overdue inbox items by rule, as each agency's inbox (with due first contacts) shows them at `now_ms`.
fn overdue(w: &Watched, now_ms: i64) -> Result<BTreeMap<String, i64>, handoff_log::LogError> {
    let mut items = Vec::new();
    for agency in w.registry.iter() {
        items.extend(w.log.inbox(&agency.id)?);
    }
    // What is worked out at read time: first contacts due, statutory duties, notices.
    w.log.list_cases("", usize::MAX, |v| {
        items.extend(handoff_domain::sla::due_items(&v, &w.sla, now_ms));
        Ok(None)
    })?;
    let mut by_rule = BTreeMap::new();
    for mut item in items {
        let view = w.log.case(&item.case_id)?.unwrap_or_default();
        handoff_domain::sla::apply(&mut item, &view, &w.registry, &w.sla, now_ms);
        if item.overdue {
            *by_rule.entry(item.rule.clone()).or_insert(0) += 1;
        }
    }
    Ok(by_rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_bytes_counts_nested_files() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("a"), [0u8; 100]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).expect("write");
        assert_eq!(dir_bytes(dir.path()), 123);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
