//! Erasure requests from the exchange itself: `handoff admin erase` and the
//! retention rule. Both publish a `subject_erasure_requested` event as source
//! "exchange" into the stream, so that every node erases at the same log
//! position and the request is on the record.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use handoff_adapters::{Outcome, Publisher};
use handoff_contract::names::EXCHANGE_SOURCE;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{Envelope, SubjectErasureRequested};
use handoff_domain::retention::{Due, RetentionRule, due};
use handoff_keyring::Keyring;
use handoff_log::Log;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The envelope that asks the exchange to erase `subject`.
pub fn request(subject: &str, reason: &str, requested_by: &str, event_id: String) -> Envelope {
    Envelope {
        event_id,
        source_agency: EXCHANGE_SOURCE.into(),
        case_id: String::new(),
        subject_pseudonym: subject.into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(now_ms())),
        actor: requested_by.into(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(Event::SubjectErasureRequested(SubjectErasureRequested {
            reason: reason.into(),
            requested_by: requested_by.into(),
        })),
        ..Envelope::default()
    }
}

/// Publishes an event as the exchange itself (an erasure, a revocation) and waits
/// for its receipt.
pub async fn publish(client: async_nats::Client, envelope: Envelope) -> anyhow::Result<Outcome> {
    let publisher = Publisher::new(client, EXCHANGE_SOURCE).with_timeout(Duration::from_secs(30));
    let outcomes = publisher.publish_all(&[envelope]).await?;
    outcomes
        .into_iter()
        .next()
        .context("the exchange answered nothing")
}

/// The system clock, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The time the retention rule sees: the system clock, or, for tests and drills,
/// the RFC 3339 time in the file `HANDOFF_CLOCK_FILE` names (read at every check).
#[derive(Debug, Clone)]
pub struct Clock {
    file: Option<PathBuf>,
}

impl Clock {
    /// The system clock unless `HANDOFF_CLOCK_FILE` is set.
    pub fn from_env() -> Clock {
        Clock {
            file: std::env::var_os("HANDOFF_CLOCK_FILE").map(PathBuf::from),
        }
    }

    /// Now, Unix ms.
    pub fn now_ms(&self) -> anyhow::Result<i64> {
        let Some(file) = &self.file else {
            return Ok(now_ms());
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the clock file {}", file.display()))?;
        let ts = handoff_contract::time::parse_rfc3339(text.trim()).with_context(|| {
            format!(
                "the clock file {} does not hold an RFC 3339 time",
                file.display()
            )
        })?;
        Ok(handoff_contract::time::to_unix_ms(&ts))
    }
}

/// The retention job's parts.
pub struct Retention {
    /// The log, for the case views.
    pub log: Log,
    /// Who is erased already.
    pub keyring: Arc<Keyring>,
    /// The exchange's NATS connection, to publish the erasures.
    pub client: async_nats::Client,
    /// The rule.
    pub rule: RetentionRule,
    /// How often to check.
    pub every: Duration,
    /// What time it is.
    pub clock: Clock,
}

/// An erasure's event id derived from the subject and the due date, so that every
/// node (and every re-check) asks with the same id and the exchange logs it once.
fn retention_event_id(d: &Due) -> String {
    let digest = Sha256::digest(format!("retention\0{}\0{}", d.subject, d.due_at_ms));
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(d.due_at_ms.max(0) as u64, &random)
        .into_uuid()
        .to_string()
}

fn date(ms: i64) -> String {
    let ts = handoff_contract::time::from_unix_ms(ms);
    ts.to_string().get(..10).unwrap_or_default().to_string()
}

impl Retention {
    async fn check(&self) -> anyhow::Result<usize> {
        let now = self.clock.now_ms()?;
        let (views, _) = self.log.list_cases("", usize::MAX, |v| Ok(Some(v)))?;
        let mut erased = 0;
        for d in due(&views, self.rule, now) {
            if self.keyring.erasure(&d.subject)?.is_some() {
                continue;
            }
            let reason = format!(
                "retention: {} years after the last case closed on {}",
                self.rule.years_after_closure,
                date(d.closed_at_ms)
            );
            let envelope = request(
                &d.subject,
                &reason,
                "retention rule",
                retention_event_id(&d),
            );
            match publish(self.client.clone(), envelope).await? {
                Outcome::Accepted { .. } | Outcome::Duplicate { .. } => erased += 1,
                other => {
                    tracing::warn!(subject = %d.subject, outcome = %other, "retention erasure not taken")
                }
            }
        }
        tracing::info!(
            now = %handoff_contract::time::from_unix_ms(now),
            cases = views.len(),
            erased,
            "retention checked"
        );
        Ok(erased)
    }
}

/// Checks the rule now and then every `every` until shutdown. A failed check is
/// logged and retried at the next tick; it never stops the exchange.
pub async fn run(retention: Retention, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = retention.check().await {
            tracing::warn!(error = %format!("{e:#}"), "retention check failed; trying again later");
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
