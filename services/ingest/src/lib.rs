//! Ingest: consumes agency events from the JetStream stream strictly in
//! stream order, decides each one, writes the batch to the log (flushed),
//! and only then sends receipts.
//!
//! Every message ends in exactly one of: appended, duplicate (answered with
//! the original receipt), or rejected into the quarantine with its reason.
//! The consumer position is stored in the same atomic batch as the records,
//! so a restart resumes exactly after the last committed message.

mod decide;
mod metrics;
mod progress;
mod receipts;
mod stream;

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use handoff_contract::v1::Receipt;
use handoff_domain::Registry;
use handoff_log::{Log, LogError, hex};
use tokio::sync::watch;

pub use decide::{Decision, Incoming, Limits, decide};
pub use metrics::{IngestMetrics, reason_label};
pub use progress::StuckDetector;
pub use receipts::serve_receipt_lookups;
use receipts::{Outbox, send_receipts};
pub use stream::{
    Ingress, RECEIPTS_KEPT, StreamSettings, aged_out, describe_age, ensure_receipts_stream,
    ensure_stream, ingress_source,
};

/// Why ingest stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The log could not be written; nothing of the failed batch was acknowledged or receipted.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The key store could not seal, erase or be written; nothing of the batch was committed.
    #[error(transparent)]
    Keys(#[from] handoff_keyring::KeyringError),
    /// JetStream refused to create or read the stream.
    #[error(
        "JetStream stream {stream}: {detail}. Is nats-server running with JetStream enabled (-js) and is the exchange's NATS user allowed to manage it?"
    )]
    Stream {
        /// The stream name.
        stream: String,
        /// What went wrong.
        detail: String,
    },
    /// Messages after the stored position left the stream before this node consumed them.
    #[error(
        "messages {from}..{to} aged out of the stream before this node consumed them; restore this node from a backup younger than max_age_days (the stream keeps messages {max_age})"
    )]
    AgedOut {
        /// The first message missed.
        from: u64,
        /// The last message missed.
        to: u64,
        /// The stream's max age, as an operator reads it.
        max_age: String,
    },
}

/// What became of a chunk of messages.
enum Applied {
    /// Committed; go on.
    Committed,
    /// Committed up to a gap in the stream's sequences: recreate the consumer and look.
    Gap,
    /// Shut down while waiting for the store; nothing was committed.
    ShutDown,
}

/// Why the store cannot take a batch now.
enum StoreProblem {
    /// Less free space than `min_free_bytes`.
    LowDisk { free: u64 },
    /// This process may not write in `dir`.
    Unwritable {
        dir: std::path::PathBuf,
        error: std::io::Error,
    },
}

/// Settings of the ingest loop.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The stream to consume.
    pub stream: StreamSettings,
    /// Most messages decided and committed in one batch (one flush).
    pub batch_max: usize,
    /// Below this much free disk space ingest commits nothing (and so receipts
    /// nothing) until space returns; health says NOT_SERVING meanwhile.
    pub min_free_bytes: u64,
    /// Messages waiting while the stored position has not moved for this long: ingest
    /// is stuck, health says NOT_SERVING and `handoff_ingest_stuck` is 1.
    pub stuck_after: Duration,
    /// Bytes of quarantine each agency may fill before its refused messages are kept
    /// as summaries only.
    pub quarantine_quota_bytes: u64,
}

/// Consumes the stream into the log until `shutdown` turns true.
pub struct Ingest {
    log: Log,
    registry: Registry,
    client: async_nats::Client,
    settings: IngestSettings,
    key: std::sync::Arc<handoff_audit::ExchangeKey>,
    keyring: std::sync::Arc<handoff_keyring::Keyring>,
    transport: std::sync::Arc<handoff_transport::Opener>,
    reconnects: Option<watch::Receiver<u64>>,
    metrics: IngestMetrics,
    halted: watch::Sender<Option<String>>,
}

impl Ingest {
    /// An ingest loop over this log, registry and NATS connection, signing receipts with
    /// `key`, opening transport seals with `transport` and sealing private parts with
    /// `keyring`.
    pub fn new(
        log: Log,
        registry: Registry,
        client: async_nats::Client,
        settings: IngestSettings,
        key: std::sync::Arc<handoff_audit::ExchangeKey>,
        keyring: std::sync::Arc<handoff_keyring::Keyring>,
        transport: std::sync::Arc<handoff_transport::Opener>,
    ) -> Self {
        Ingest {
            log,
            registry,
            client,
            settings,
            key,
            keyring,
            transport,
            reconnects: None,
            metrics: IngestMetrics::default(),
            halted: watch::Sender::new(None),
        }
    }

    /// Why ingest has stopped consuming for good, once it has (messages aged out of the
    /// stream before it consumed them): the node must not answer reads from then on.
    pub fn halted(&self) -> watch::Receiver<Option<String>> {
        self.halted.subscribe()
    }

    /// Reports into these metrics.
    pub fn with_metrics(mut self, metrics: IngestMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn report_head(&self, head: handoff_log::Head) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics.head_sequence.set(gauge(head.sequence));
        self.metrics
            .stream_position
            .set(gauge(head.stream_position));
        self.metrics.quarantined.set(gauge(head.quarantined));
    }

    /// Health and the `consuming` gauge together.
    fn set_consuming(&self, consuming: &watch::Sender<bool>, on: bool) {
        consuming.send_replace(on);
        self.metrics.consuming.set(i64::from(on));
    }

    /// Recreates the consumer whenever this changes (the NATS client reconnected),
    /// rather than waiting for the old consumer's heartbeat to fail.
    pub fn with_reconnects(mut self, reconnects: watch::Receiver<u64>) -> Self {
        self.reconnects = Some(reconnects);
        self
    }

    /// Runs until shutdown. Returns an error only for faults it must not paper over
    /// (a log write that failed); lost NATS connections are retried. `consuming` is
    /// true while a consumer is reading the stream (the exchange's health).
    pub async fn run(
        mut self,
        shutdown: watch::Receiver<bool>,
        consuming: watch::Sender<bool>,
    ) -> Result<(), IngestError> {
        // Receipts are signed and sent by their own task, so that signing one batch's
        // receipts overlaps deciding the next; they still leave only after the flush.
        let (outbox, receipts) = tokio::sync::mpsc::channel(16);
        let sender = tokio::spawn(send_receipts(
            self.client.clone(),
            self.key.clone(),
            receipts,
        ));
        // Health is "consuming and not stuck": the loop reports the first, a watchdog
        // that compares the stream's last sequence with the stored position the second.
        let (loop_tx, loop_rx) = watch::channel(false);
        let (stuck_tx, stuck_rx) = watch::channel(false);
        let watchdog = tokio::spawn(progress::watch(
            progress::Watched {
                client: self.client.clone(),
                stream: self.settings.stream.name.clone(),
                log: self.log.clone(),
                metrics: self.metrics.clone(),
                stuck_after: self.settings.stuck_after,
                stuck: stuck_tx,
            },
            loop_rx,
            consuming,
            shutdown.clone(),
        ));
        let result = self.consume(shutdown, loop_tx, stuck_rx, &outbox).await;
        watchdog.abort();
        drop(outbox);
        // What was committed is receipted before ingest ends.
        if let Err(e) = sender.await {
            tracing::warn!(error = %e, "the receipt sender failed; publishers can look receipts up");
        }
        result
    }

    async fn consume(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
        consuming: watch::Sender<bool>,
        mut stuck: watch::Receiver<bool>,
        outbox: &Outbox,
    ) -> Result<(), IngestError> {
        self.report_head(self.log.head());
        let js = jetstream::new(self.client.clone());
        let stream = loop {
            let both = async {
                ensure_receipts_stream(&js, &self.settings.stream).await?;
                ensure_stream(&js, &self.settings.stream).await
            };
            match both.await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up the stream yet; retrying in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
            }
        };
        loop {
            self.set_consuming(&consuming, false);
            if *shutdown.borrow() {
                return Ok(());
            }
            let start = self.log.head().stream_position + 1;
            // A consumer asked to start before the stream's first message starts at that
            // message: whatever aged out in between would be skipped without a word.
            if let Some(first) = self.first_sequence().await
                && let Some((from, to)) = aged_out(start - 1, first)
            {
                return self.halt_aged_out(from, to, &consuming, shutdown).await;
            }
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: start,
                    },
                    ..Default::default()
                })
                .await;
            let messages = match consumer {
                Ok(c) => c.messages().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the consumer; retrying in 1s");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
            };
            let mut messages = match messages {
                Ok(m) => m.ready_chunks(self.settings.batch_max.max(1)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stream; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(from_stream_sequence = start, "consuming");
            self.set_consuming(&consuming, true);
            let mut reconnects = self.reconnects.take();
            if let Some(r) = reconnects.as_mut() {
                r.mark_unchanged();
            }
            // While idle, still look at the store now and then, so health and metrics
            // tell of an unwritable or full data dir before the next message arrives.
            let mut store_check = tokio::time::interval(Duration::from_secs(2));
            store_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let chunk = tokio::select! {
                    chunk = messages.next() => chunk,
                    _ = shutdown.changed() => return Ok(()),
                    _ = store_check.tick() => {
                        if !self.wait_until_storable(&consuming, &mut shutdown).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Some(Ok(())) = async {
                        match reconnects.as_mut() {
                            Some(r) => Some(r.changed().await),
                            None => std::future::pending().await,
                        }
                    } => {
                        tracing::info!("NATS reconnected; recreating the consumer from the stored position");
                        None
                    }
                    // Messages wait but none come (a consumer a broker failover left
                    // behind, seen on a cluster): start a fresh one where the log ends.
                    Ok(()) = stuck.changed() => {
                        if !*stuck.borrow_and_update() {
                            continue;
                        }
                        tracing::warn!("ingest stuck; recreating the consumer from the stored position");
                        None
                    }
                };
                let Some(chunk) = chunk else {
                    tracing::warn!(
                        "the stream of messages ended; resuming from the stored position"
                    );
                    self.reconnects = reconnects;
                    break;
                };
                let mut ok = Vec::with_capacity(chunk.len());
                let mut broken = false;
                for item in chunk {
                    match item {
                        Ok(m) => ok.push(m),
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error; resuming from the stored position");
                            broken = true;
                            break;
                        }
                    }
                }
                match self.apply(ok, &consuming, &mut shutdown, outbox).await? {
                    Applied::Committed => {}
                    Applied::ShutDown => return Ok(()), // while waiting for disk space
                    Applied::Gap => broken = true,
                }
                if broken {
                    self.reconnects = reconnects;
                    break;
                }
            }
        }
    }

    /// The events stream's first sequence now, if NATS answers.
    async fn first_sequence(&self) -> Option<u64> {
        let js = jetstream::new(self.client.clone());
        match js.get_stream(&self.settings.stream.name).await {
            Ok(s) => Some(s.cached_info().state.first_sequence),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the stream's first sequence");
                None
            }
        }
    }

    /// Consumes nothing more, because messages `from..=to` aged out before this node
    /// consumed them (erasures may be among them): health stays NOT_SERVING,
    /// `handoff_ingest_aged_out` is 1, reads are refused and the cause is logged every
    /// minute, until shutdown.
    async fn halt_aged_out(
        &self,
        from: u64,
        to: u64,
        consuming: &watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), IngestError> {
        self.set_consuming(consuming, false);
        self.metrics.aged_out.set(1);
        let error = IngestError::AgedOut {
            from,
            to,
            max_age: describe_age(self.settings.stream.max_age),
        };
        self.halted.send_replace(Some(error.to_string()));
        loop {
            tracing::error!(
                stream = %self.settings.stream.name,
                first_missed = from,
                last_missed = to,
                "{error}; not consuming, health NOT_SERVING"
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Why the store cannot take a batch now, if it cannot: too little free space,
    /// or a directory this process may not write (permissions, a read-only mount).
    fn store_problem(&self) -> Option<StoreProblem> {
        for dir in [self.log.dir(), self.keyring.dir()] {
            if let Err(error) = handoff_log::check_writable(dir) {
                return Some(StoreProblem::Unwritable {
                    dir: dir.to_path_buf(),
                    error,
                });
            }
        }
        match self.log.free_bytes() {
            Ok(free) => {
                self.metrics
                    .store_free_bytes
                    .set(i64::try_from(free).unwrap_or(i64::MAX));
                (free < self.settings.min_free_bytes).then_some(StoreProblem::LowDisk { free })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the free disk space; committing anyway");
                None
            }
        }
    }

    /// Waits until the store can take a batch (true), or shutdown (false).
    /// Meanwhile nothing is committed or receipted, health says NOT_SERVING
    /// and the metrics and the log say why.
    async fn wait_until_storable(
        &self,
        consuming: &watch::Sender<bool>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut since: Option<std::time::Instant> = None;
        let mut last_warning: Option<std::time::Instant> = None;
        loop {
            let problem = self.store_problem();
            self.metrics.paused_low_disk.set(i64::from(matches!(
                problem,
                Some(StoreProblem::LowDisk { .. })
            )));
            self.metrics.paused_unwritable.set(i64::from(matches!(
                problem,
                Some(StoreProblem::Unwritable { .. })
            )));
            let Some(problem) = problem else {
                if let Some(since) = since {
                    tracing::info!(
                        waited_secs = since.elapsed().as_secs(),
                        "the store is writable and has space again; committing and consuming again"
                    );
                    self.set_consuming(consuming, true);
                }
                return true;
            };
            since.get_or_insert_with(std::time::Instant::now);
            self.set_consuming(consuming, false);
            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_warning = Some(std::time::Instant::now());
                match problem {
                    StoreProblem::LowDisk { free } => tracing::error!(
                        data_dir = %self.log.dir().display(),
                        free_bytes = free,
                        required_bytes = self.settings.min_free_bytes,
                        "disk space low: not storing or acknowledging anything until space is freed"
                    ),
                    StoreProblem::Unwritable { dir, error } => tracing::error!(
                        dir = %dir.display(),
                        %error,
                        "data dir not writable: not storing or acknowledging anything until the exchange may write there again (check its owner, mode and mount)"
                    ),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return false,
            }
        }
    }

    /// Decides a chunk of messages, commits them in one flushed batch, then sends receipts.
    /// Stops before a message past a gap of aged-out ones (the caller then halts).
    async fn apply(
        &self,
        messages: Vec<jetstream::Message>,
        consuming: &watch::Sender<bool>,
        shutdown: &mut watch::Receiver<bool>,
        outbox: &Outbox,
    ) -> Result<Applied, IngestError> {
        if messages.is_empty() {
            return Ok(Applied::Committed);
        }
        let mut applied = Applied::Committed;
        let mut batch = self.log.batch();
        let mut receipts: Vec<(String, Receipt, Option<String>)> =
            Vec::with_capacity(messages.len());
        let mut last_pending = None;
        let (mut accepted, mut duplicates, mut rejected) = (0usize, 0usize, 0usize);
        let mut erasures = 0usize;
        let mut rejections = Vec::new();
        for msg in &messages {
            let Ok(info) = msg.info() else {
                tracing::warn!(subject = %msg.subject, "message without JetStream metadata skipped");
                continue;
            };
            // Replays after a reconnect can deliver what is already committed.
            last_pending = Some(info.pending);
            if info.stream_sequence <= batch.stream_position() {
                continue;
            }
            // Sequences skip only where messages left the stream: deleted ones are
            // skipped as before, aged-out ones are not decided past.
            if info.stream_sequence > batch.stream_position() + 1
                && let Some(first) = self.first_sequence().await
                && aged_out(batch.stream_position(), first).is_some()
            {
                applied = Applied::Gap;
                break;
            }
            // A valid W3C traceparent from the publisher; anything else is ignored.
            let trace = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(handoff_contract::trace::TRACEPARENT))
                .and_then(|v| handoff_contract::trace::TraceParent::parse(v.as_str()));
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str())
            };
            let incoming = Incoming {
                subject: msg.subject.as_str(),
                payload: &msg.payload,
                msg_id: header("Nats-Msg-Id"),
                stream_sequence: info.stream_sequence,
                recorded_at_unix_ms: (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
                ingress: header("Nats-Stream-Source").and_then(stream::ingress_source),
            };
            let Decision {
                agency,
                receipt,
                erased,
            } = decide(
                &mut batch,
                &self.registry,
                &self.keyring,
                &self.transport,
                Limits {
                    max_message_bytes: self.settings.stream.max_message_bytes,
                    quarantine_quota_bytes: self.settings.quarantine_quota_bytes,
                },
                &incoming,
            )?;
            erasures += usize::from(erased);
            let outcome = match receipt.status() {
                handoff_contract::v1::receipt::Status::Accepted => {
                    accepted += 1;
                    "accepted"
                }
                handoff_contract::v1::receipt::Status::Duplicate => {
                    duplicates += 1;
                    "duplicate"
                }
                _ => {
                    rejected += 1;
                    rejections.push(receipt.reason());
                    "rejected"
                }
            };
            let trace_id = trace.map(|t| t.trace_id_hex());
            let span = tracing::info_span!(
                "decision",
                trace_id = trace_id.as_deref().map(tracing::field::display)
            );
            let _entered = span.enter();
            // Traced and refused messages at info, so one publish can be followed through
            // the log; the bulk of untraced accepted ones at debug, to keep the log small.
            if trace_id.is_some() || outcome == "rejected" {
                tracing::info!(
                    stream_sequence = info.stream_sequence,
                    event_id = %receipt.event_id,
                    case_id = %receipt.case_id,
                    outcome,
                    reason = (outcome == "rejected")
                        .then(|| tracing::field::display(reason_label(receipt.reason()))),
                    "decided"
                );
            } else {
                tracing::debug!(
                    stream_sequence = info.stream_sequence,
                    event_id = %receipt.event_id,
                    case_id = %receipt.case_id,
                    outcome,
                    "decided"
                );
            }
            if !agency.is_empty() {
                receipts.push((agency, receipt, trace.map(|t| t.to_string())));
            }
        }
        if matches!(applied, Applied::Gap)
            && batch.stream_position() == self.log.head().stream_position
        {
            return Ok(Applied::Gap); // nothing before the gap to commit
        }
        if !self.wait_until_storable(consuming, shutdown).await {
            return Ok(Applied::ShutDown);
        }
        // New keys and destroyed ones are durable before any record that relies on them.
        let started = std::time::Instant::now();
        self.keyring.flush().await?;
        let head = self.log.commit(batch).await?;
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_messages.observe(messages.len() as f64);
        if let Some(pending) = last_pending {
            // What the broker still holds after the batch's last message.
            self.metrics
                .consumer_lag
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        for reason in rejections {
            self.metrics.count_rejected(reason);
        }
        if erasures > 0 {
            self.keyring.finish_erasures()?;
        }
        self.metrics.count("accepted", accepted);
        self.metrics.count("duplicate", duplicates);
        self.metrics.count("rejected", rejected);
        self.report_head(head);
        tracing::info!(
            messages = messages.len(),
            accepted,
            duplicates,
            rejected,
            erasures,
            head_sequence = head.sequence,
            head_hash = %hex(&head.hash),
            stream_position = head.stream_position,
            "batch committed"
        );
        // Receipts only after the flush: a receipt is the publisher's proof of delivery.
        if !receipts.is_empty() && outbox.send(receipts).await.is_err() {
            tracing::warn!("the receipt sender has stopped; publishers can look receipts up");
        }
        Ok(applied)
    }
}
