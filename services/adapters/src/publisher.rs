//! Publishing events to the exchange and waiting for its receipts.
//!
//! JetStream's PubAck only says the broker has the message; the exchange's
//! receipt, sent after its log is flushed, is what counts as delivered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use handoff_contract::names::{
    RECEIPTS_STREAM, event_subject, receipt_lookup_subject, receipt_subject,
};
use handoff_contract::trace::{TRACEPARENT, TraceParent};
use handoff_contract::v1::{Envelope, Receipt, Receipts, RejectionReason, receipt::Status};
use prost::Message;

use crate::AdapterError;

/// What happened to one published event, according to the exchange's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Appended to the log.
    Accepted {
        /// Log sequence.
        sequence: u64,
        /// Case version after the event.
        case_version: u64,
    },
    /// Already in the log; nothing new was written.
    Duplicate {
        /// The original's log sequence.
        sequence: u64,
    },
    /// Refused and kept in the exchange's quarantine.
    Rejected {
        /// Why, as a code.
        reason: RejectionReason,
        /// Why, in words.
        detail: String,
    },
    /// No receipt arrived in time; publishing again is safe (ids are idempotency keys).
    Unconfirmed,
}

impl Outcome {
    fn from_receipt(r: &Receipt) -> Outcome {
        match r.status() {
            Status::Accepted => Outcome::Accepted {
                sequence: r.sequence,
                case_version: r.case_version,
            },
            Status::Duplicate => Outcome::Duplicate {
                sequence: r.sequence,
            },
            _ => Outcome::Rejected {
                reason: r.reason(),
                detail: r.detail.clone(),
            },
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Accepted {
                sequence,
                case_version,
            } => write!(
                f,
                "accepted at log sequence {sequence} (case version {case_version})"
            ),
            Outcome::Duplicate { sequence } => {
                write!(
                    f,
                    "duplicate of log sequence {sequence}, nothing new written"
                )
            }
            Outcome::Rejected { reason, detail } => write!(
                f,
                "rejected ({}): {detail}",
                reason
                    .as_str_name()
                    .trim_start_matches("REJECTION_REASON_")
                    .to_ascii_lowercase()
            ),
            Outcome::Unconfirmed => f.write_str("no receipt in time; publish again to retry"),
        }
    }
}

/// Publishes one agency's events and collects the exchange's receipts.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    agency: String,
    timeout: Duration,
    /// Seals private parts to the exchange's transport key before anything leaves.
    sealer: Option<std::sync::Arc<handoff_transport::Sealer>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("agency", &self.agency)
            .finish()
    }
}

/// The reply-inbox prefix of an agency's NATS connections (its NATS permissions allow only this).
pub fn inbox_prefix(agency: &str) -> String {
    format!("_INBOX_{agency}")
}

/// How often a missing receipt is looked up.
const LOOKUP_EVERY: Duration = Duration::from_millis(500);
/// Longest wait for the broker to take a publish and acknowledge it, before publishing again.
const ACK_WAIT: Duration = Duration::from_secs(5);

impl Publisher {
    /// A publisher for `agency` over an existing NATS connection.
    pub fn new(client: async_nats::Client, agency: impl Into<String>) -> Self {
        let js = jetstream::new(client.clone());
        Publisher {
            client,
            js,
            agency: agency.into(),
            timeout: Duration::from_secs(30),
            sealer: None,
        }
    }

    /// Seals every envelope's personal details and free text to `transport` (the
    /// exchange's transport public key) before publishing: one key agreement for the
    /// publisher's life. Without it, an envelope carrying either is not published.
    pub fn with_transport(
        mut self,
        transport: &handoff_transport::TransportPublic,
    ) -> Result<Self, AdapterError> {
        let sealer = handoff_transport::Sealer::new(transport)
            .map_err(|e| AdapterError::Invalid(vec![e.to_string()]))?;
        self.sealer = Some(std::sync::Arc::new(sealer));
        Ok(self)
    }

    /// Connects to NATS at `url` as `agency` (its NATS user, authenticated by its nkey
    /// `seed` if the server requires one) and publishes as that agency.
    pub async fn connect(
        url: &str,
        agency: impl Into<String>,
        seed: Option<String>,
    ) -> Result<Self, AdapterError> {
        let agency = agency.into();
        let mut options = async_nats::ConnectOptions::new()
            .name("handoff-adapter")
            // The agency's NATS user may subscribe only to replies under its own prefix.
            .custom_inbox_prefix(inbox_prefix(&agency));
        if let Some(seed) = seed {
            options = options.nkey(seed);
        }
        let client = options
            .connect(url)
            .await
            .map_err(|e| AdapterError::Nats(format!("cannot connect to {url}: {e}")))?;
        Ok(Publisher::new(client, agency))
    }

    /// How long to wait for receipts before reporting `Unconfirmed`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The agency this publisher speaks for.
    pub fn agency(&self) -> &str {
        &self.agency
    }

    /// Publishes events in order (Nats-Msg-Id = event id) and returns each one's outcome,
    /// in the same order. Each gets a fresh W3C trace context (`traceparent` header).
    pub async fn publish_all(&self, envelopes: &[Envelope]) -> Result<Vec<Outcome>, AdapterError> {
        self.publish_all_traced(envelopes, &[]).await
    }

    /// As [`Publisher::publish_all`], keeping the trace context a source record carried:
    /// `traces[i]` for `envelopes[i]` where given, a fresh one otherwise.
    pub async fn publish_all_traced(
        &self,
        envelopes: &[Envelope],
        traces: &[Option<TraceParent>],
    ) -> Result<Vec<Outcome>, AdapterError> {
        // One trace per record, kept across retries so every attempt is the same trace.
        let traces: Vec<TraceParent> = (0..envelopes.len())
            .map(|i| traces.get(i).copied().flatten().unwrap_or_else(new_trace))
            .collect();
        let nats =
            |what: &str, e: &dyn std::fmt::Display| AdapterError::Nats(format!("{what}: {e}"));
        let mut receipts = Some(
            tokio::time::timeout(self.timeout, self.receipts())
                .await
                .map_err(|_| nats("cannot reach NATS", &"timed out"))??,
        );
        tokio::time::timeout(self.timeout, self.client.flush())
            .await
            .map_err(|_| nats("cannot reach NATS", &"timed out"))?
            .map_err(|e| nats("cannot reach NATS", &e))?;

        // Publish everything first (pipelined), then collect PubAcks; whatever the broker
        // did not acknowledge (NATS restarting, a timeout) is published again with the
        // same Nats-Msg-Id until it is, or until the timeout. Repeats are absorbed by the
        // broker's duplicate window and the exchange's event-id index.
        let mut acks: Vec<Option<async_nats::jetstream::publish::PublishAck>> =
            vec![None; envelopes.len()];
        let mut pending = Vec::with_capacity(envelopes.len());
        for (i, envelope) in envelopes.iter().enumerate() {
            let (subject, headers, body) = self.message(envelope, &traces[i])?;
            tracing::info!(
                trace_id = %traces[i].trace_id_hex(),
                event_id = %envelope.event_id,
                agency = %self.agency,
                "publishing"
            );
            match tokio::time::timeout(
                ACK_WAIT,
                self.js.publish_with_headers(subject, headers, body),
            )
            .await
            {
                Ok(Ok(ack)) => pending.push((i, ack)),
                Ok(Err(e)) => tracing::debug!(error = %e, "publish failed; will retry"),
                Err(_) => tracing::debug!("publish stalled; will retry"),
            }
        }
        // Awaited together: when the broker goes away, every pending ack fails at once.
        let results = futures::future::join_all(
            pending
                .into_iter()
                .map(|(i, ack)| async move { (i, tokio::time::timeout(ACK_WAIT, ack).await) }),
        )
        .await;
        for (i, result) in results {
            match result {
                Ok(Ok(ack)) => acks[i] = Some(ack),
                Ok(Err(e)) => tracing::debug!(error = %e, "no PubAck; will retry"),
                Err(_) => tracing::debug!("no PubAck in time; will retry"),
            }
        }
        let deadline = Instant::now() + self.timeout;
        for (i, envelope) in envelopes.iter().enumerate() {
            let mut pause = Duration::from_millis(100);
            while acks[i].is_none() {
                if Instant::now() >= deadline {
                    return Err(nats(
                        "the broker did not acknowledge a publish in time",
                        &envelope.event_id,
                    ));
                }
                let (subject, headers, body) = self.message(envelope, &traces[i])?;
                let attempt = async {
                    let ack = self
                        .js
                        .publish_with_headers(subject, headers, body)
                        .await
                        .map_err(|e| e.to_string())?;
                    ack.await.map_err(|e| e.to_string())
                };
                let result = tokio::time::timeout(ACK_WAIT, attempt)
                    .await
                    .unwrap_or_else(|_| Err("no PubAck in time".into()));
                match result {
                    Ok(ack) => acks[i] = Some(ack),
                    Err(e) => {
                        tracing::warn!(event_id = %envelope.event_id, error = %e, "publish not acknowledged; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
        // event id -> (index, stream sequence, broker said duplicate)
        let mut waiting: HashMap<String, (usize, u64, bool)> = HashMap::new();
        for (i, ack) in acks.into_iter().enumerate() {
            let Some(ack) = ack else { continue };
            waiting.insert(
                envelopes[i].event_id.clone(),
                (i, ack.sequence, ack.duplicate),
            );
        }

        let mut outcomes = vec![Outcome::Unconfirmed; envelopes.len()];
        let started = Instant::now();
        let mut last_lookup = Instant::now();
        while !waiting.is_empty() && started.elapsed() < self.timeout {
            let mut ended = false;
            let received = match receipts.as_mut() {
                Some(stream) => match tokio::time::timeout(LOOKUP_EVERY, stream.next()).await {
                    Ok(Some(Ok(msg))) => Some(msg),
                    Ok(Some(Err(e))) => {
                        // The consumer recovers by itself; look-ups cover what it missed.
                        tracing::debug!(error = %e, "receipt consumer interrupted");
                        None
                    }
                    Ok(None) => {
                        ended = true;
                        None
                    }
                    Err(_) => None,
                },
                None => {
                    tokio::time::sleep(LOOKUP_EVERY).await;
                    None
                }
            };
            if ended {
                receipts = None;
            }
            if let Some(msg) = received
                && let Ok(batch) = Receipts::decode(msg.payload.as_ref())
            {
                for r in &batch.receipts {
                    accept(&mut waiting, &mut outcomes, &traces, r);
                }
            }
            if last_lookup.elapsed() >= LOOKUP_EVERY {
                last_lookup = Instant::now();
                // Broker-level duplicates get no live receipt; others may have lost theirs.
                let ask: Vec<String> = waiting
                    .iter()
                    .filter(|(_, (_, _, dup))| *dup || started.elapsed() > 4 * LOOKUP_EVERY)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ask {
                    if let Some(r) = self.lookup(&id).await? {
                        accept(&mut waiting, &mut outcomes, &traces, &r);
                    }
                }
            }
        }
        Ok(outcomes)
    }

    /// Receipts for this agency from now on, read from the receipts stream, where each
    /// message holds the agency's receipts of one committed batch. The consumer may
    /// only filter on the agency's own subject (see `handoff nats-auth`) and goes away
    /// by itself a minute after its last use.
    async fn receipts(&self) -> Result<pull::Stream, AdapterError> {
        let nats =
            |what: &str, e: &dyn std::fmt::Display| AdapterError::Nats(format!("{what}: {e}"));
        // The exchange creates the stream when it starts; wait for it a little.
        let started = Instant::now();
        loop {
            let attempt = async {
                let stream = self
                    .js
                    .get_stream_no_info(RECEIPTS_STREAM)
                    .await
                    .map_err(|e| e.to_string())?;
                let consumer: jetstream::consumer::PullConsumer = stream
                    .create_consumer(pull::Config {
                        name: Some(uuid::Uuid::now_v7().simple().to_string()),
                        filter_subject: receipt_subject(&self.agency),
                        deliver_policy: DeliverPolicy::New,
                        ack_policy: AckPolicy::None,
                        inactive_threshold: Duration::from_secs(60),
                        memory_storage: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                consumer.messages().await.map_err(|e| e.to_string())
            };
            match attempt.await {
                Ok(messages) => return Ok(messages),
                Err(e) if started.elapsed() >= self.timeout => {
                    return Err(nats("cannot read receipts (is the exchange running?)", &e));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The subject, headers (Nats-Msg-Id = event id) and body an envelope is published with.
    fn message(
        &self,
        envelope: &Envelope,
        trace: &TraceParent,
    ) -> Result<(String, async_nats::HeaderMap, bytes::Bytes), AdapterError> {
        let event = envelope.event.as_ref().ok_or_else(|| {
            AdapterError::Invalid(vec![format!(
                "event {} carries no event",
                envelope.event_id
            )])
        })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.event_id.as_str());
        headers.insert(TRACEPARENT, trace.to_string().as_str());
        let subject = event_subject(&self.agency, event);
        let mut sealed = envelope.clone();
        match &self.sealer {
            Some(sealer) => sealer
                .seal(&mut sealed)
                .map_err(|e| AdapterError::Invalid(vec![e.to_string()]))?,
            None if handoff_domain::private::has_clear_private(&mut sealed) => {
                return Err(AdapterError::Invalid(vec![format!(
                    "event {} carries personal details or free text, and this publisher has no transport key to seal them to (--transport-key, from `handoff transport-key public`)",
                    envelope.event_id
                )]));
            }
            None => {}
        }
        Ok((subject, headers, sealed.encode_to_vec().into()))
    }

    /// Asks the exchange for the receipt of an event this agency published earlier.
    pub async fn lookup(&self, event_id: &str) -> Result<Option<Receipt>, AdapterError> {
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            self.client.request(
                receipt_lookup_subject(&self.agency),
                event_id.to_string().into(),
            ),
        )
        .await;
        let Ok(Ok(answer)) = answer else {
            return Ok(None); // the exchange is not answering right now; the caller retries
        };
        if answer.payload.is_empty() {
            return Ok(None);
        }
        Receipt::decode(answer.payload.as_ref())
            .map(Some)
            .map_err(|e| AdapterError::Nats(format!("unreadable receipt: {e}")))
    }
}

/// Records a receipt if it answers a publish we are waiting for (not an earlier attempt's).
fn accept(
    waiting: &mut HashMap<String, (usize, u64, bool)>,
    outcomes: &mut [Outcome],
    traces: &[TraceParent],
    r: &Receipt,
) {
    let Some(&(index, stream_seq, broker_dup)) = waiting.get(&r.event_id) else {
        return;
    };
    let current = r.stream_sequence >= stream_seq
        || broker_dup
        || matches!(r.status(), Status::Accepted | Status::Duplicate);
    if current {
        outcomes[index] = match Outcome::from_receipt(r) {
            // A looked-up receipt for our own publish (its live receipt was lost).
            Outcome::Duplicate { sequence } if r.stream_sequence == stream_seq && !broker_dup => {
                Outcome::Accepted {
                    sequence,
                    case_version: r.case_version,
                }
            }
            other => other,
        };
        tracing::info!(
            trace_id = %traces.get(index).map(TraceParent::trace_id_hex).unwrap_or_default(),
            event_id = %r.event_id,
            outcome = %outcomes[index],
            "receipt"
        );
        waiting.remove(&r.event_id);
    }
}

/// A fresh sampled trace context; from getrandom, or (should the OS refuse randomness)
/// from a UUIDv7's random bits, so a publish never fails for want of a trace id.
fn new_trace() -> TraceParent {
    let mut bytes = [0u8; 24];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..16].copy_from_slice(uuid::Uuid::now_v7().as_bytes());
        bytes[16..].copy_from_slice(&uuid::Uuid::now_v7().as_bytes()[8..]);
    }
    TraceParent::from_random(bytes)
}
