//! The JetStream streams: one ingress stream per publisher, sourced into the
//! one ordered events stream the exchange consumes.
//!
//! Each agency publishes on `handoff.events.<agency>.>`, which only its own
//! ingress stream (`HANDOFF_IN_<agency>`) captures: its own duplicate window,
//! so no agency can occupy another's message ids, and its own quota (bytes and
//! messages within a window, discard new), so an agency that floods is refused
//! by the broker while every other agency's events flow. The events stream
//! sources all ingress streams into one total order and keeps each message for
//! `max_age` (`[nats] max_age_days`): what agencies published must not stay in the
//! broker forever, so a node that falls further behind joins again from a backup.
//! It deduplicates nothing itself (`duplicate_window` 0, nats-server 2.14 and
//! later), as its sources already did.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use handoff_contract::names::{event_subjects, ingress_agency, ingress_stream};

use crate::IngestError;

/// One publisher's ingress stream and its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// The agency (or the exchange itself) that publishes into it.
    pub agency: String,
    /// Most bytes it holds; once full, the broker refuses the agency's publishes.
    pub max_bytes: i64,
    /// Most messages it holds.
    pub max_messages: i64,
    /// How long a message stays in it (long after it was sourced): the quota's window.
    pub window: Duration,
}

/// How the streams are set up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The ordered events stream's name.
    pub name: String,
    /// Window within which an ingress stream drops a repeated Nats-Msg-Id.
    pub duplicate_window: Duration,
    /// Largest message the streams take, in bytes.
    pub max_message_bytes: usize,
    /// Replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// How long every stream keeps a message before it ages out (zero: forever).
    pub max_age: Duration,
    /// Every publisher's ingress stream.
    pub ingress: Vec<Ingress>,
}

/// How long receipts are kept and deduplicated: a node that catches up within this
/// time sends nothing a publisher sees twice.
pub const RECEIPTS_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Most receipts kept per agency: receipts are a cache, and one agency's flood of
/// refused messages pushes out only its own (discard old, per subject).
pub const RECEIPTS_PER_AGENCY: i64 = 100_000;

fn stream_error(name: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Stream {
        stream: name.to_string(),
        detail: e.to_string(),
    }
}

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
        max_messages_per_subject: RECEIPTS_PER_AGENCY,
        duplicate_window: RECEIPTS_KEPT,
        num_replicas: settings.replicas.max(1),
        ..Default::default()
    };
    ensure(js, config).await
}

/// Creates or updates a stream to `config` (only when it differs in what this file sets).
async fn ensure(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, IngestError> {
    let name = config.name.clone();
    match js.get_stream(&name).await {
        Ok(mut existing) => {
            let current = existing
                .info()
                .await
                .map_err(|e| stream_error(&name, e))?
                .config
                .clone();
            // The server stores 0 ("none") as -1.
            let limit = |v: i64| if v == 0 { -1 } else { v };
            let differs = current.subjects != config.subjects
                || limit(current.max_bytes) != limit(config.max_bytes)
                || limit(current.max_messages) != limit(config.max_messages)
                || limit(current.max_messages_per_subject)
                    != limit(config.max_messages_per_subject)
                || limit(i64::from(current.max_message_size))
                    != limit(i64::from(config.max_message_size))
                || current.max_age != config.max_age
                || current.duplicate_window != config.duplicate_window
                || sources(&current) != sources(&config);
            if differs {
                tracing::info!(stream = %name, "updating the stream's configuration");
                js.update_stream(&config)
                    .await
                    .map_err(|e| stream_error(&name, e))?;
            }
            Ok(existing)
        }
        Err(_) => js
            .get_or_create_stream(config)
            .await
            .map_err(|e| stream_error(&name, e)),
    }
}

fn sources(config: &stream::Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .sources
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names
}

/// Sets up every ingress stream and the ordered events stream sourcing them; a
/// stream that exists is updated where its configuration differs (a new agency,
/// a changed quota, an events stream from before ingress streams).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Stream, IngestError> {
    let max_message_size = i32::try_from(settings.max_message_bytes).unwrap_or(i32::MAX);
    let replicas = settings.replicas.max(1);
    let events = |sources: Vec<stream::Source>| stream::Config {
        name: settings.name.clone(),
        storage: stream::StorageType::File,
        // The log is the truth; the stream is what nodes catch up from (new replicas,
        // restores from a backup younger than max_age): messages age out after
        // max_age, and it refuses new messages rather than drop old ones early.
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_age: settings.max_age,
        // Zero: no deduplication here; each ingress stream deduplicates its own ids.
        duplicate_window: Duration::ZERO,
        max_message_size,
        num_replicas: replicas,
        sources: (!sources.is_empty()).then_some(sources),
        ..Default::default()
    };
    // An events stream from before ingress streams captures every agency's subjects
    // itself; it lets go of them before the ingress streams take them.
    if let Ok(mut existing) = js.get_stream(&settings.name).await
        && let Ok(info) = existing.info().await
        && !info.config.subjects.is_empty()
    {
        tracing::info!(stream = %settings.name, "moving agencies' subjects to their ingress streams");
        let mut config = info.config.clone();
        config.subjects.clear();
        js.update_stream(&config)
            .await
            .map_err(|e| stream_error(&settings.name, e))?;
    }
    let mut sources = Vec::with_capacity(settings.ingress.len());
    for ingress in &settings.ingress {
        let name = ingress_stream(&ingress.agency);
        // An ingress stream holds what the agency published too: never longer than max_age.
        let max_age = if settings.max_age.is_zero() {
            ingress.window
        } else {
            ingress.window.min(settings.max_age)
        };
        ensure(
            js,
            stream::Config {
                name: name.clone(),
                subjects: vec![event_subjects(&ingress.agency)],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                discard: stream::DiscardPolicy::New,
                max_bytes: ingress.max_bytes,
                max_messages: ingress.max_messages,
                max_age,
                duplicate_window: settings.duplicate_window.min(max_age),
                max_message_size,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        sources.push(stream::Source {
            name,
            ..Default::default()
        });
    }
    ensure(js, events(sources)).await
}

/// The stream sequences that aged out before a node at `position` consumed them
/// (first and last), if the stream's `first_sequence` is past `position + 1`.
pub fn aged_out(position: u64, first_sequence: u64) -> Option<(u64, u64)> {
    let next = position.saturating_add(1);
    (first_sequence > next).then(|| (next, first_sequence - 1))
}

/// A duration as an operator reads it: days, hours or seconds.
pub fn describe_age(age: Duration) -> String {
    let secs = age.as_secs_f64();
    let trim = |v: f64, unit: &str| {
        let text = format!("{v:.1}");
        format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
    };
    if secs >= 86_400.0 {
        trim(secs / 86_400.0, "days")
    } else if secs >= 3_600.0 {
        trim(secs / 3_600.0, "hours")
    } else {
        trim(secs, "s")
    }
}

/// The agency and ingress sequence a sourced message came from, from its
/// `Nats-Stream-Source` header (`<stream> <sequence> ...`).
pub fn ingress_source(header: &str) -> Option<(&str, u64)> {
    let mut fields = header.split(' ');
    let agency = ingress_agency(fields.next()?)?;
    let sequence = fields.next()?.parse().ok()?;
    Some((agency, sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_header_names_the_agency_and_its_sequence() {
        assert_eq!(
            ingress_source("HANDOFF_IN_police-north 42 > > handoff.events.police-north.x"),
            Some(("police-north", 42))
        );
        assert_eq!(ingress_source("OTHER 42"), None);
        assert_eq!(ingress_source("HANDOFF_IN_police-north x"), None);
    }

    #[test]
    fn only_messages_past_the_position_that_are_gone_count_as_aged_out() {
        // A new stream (first 0 or 1), a node caught up with an emptied stream, one behind.
        assert_eq!(aged_out(0, 0), None);
        assert_eq!(aged_out(0, 1), None);
        assert_eq!(aged_out(41, 42), None);
        assert_eq!(aged_out(90, 42), None);
        assert_eq!(aged_out(0, 2), Some((1, 1)));
        assert_eq!(aged_out(10, 42), Some((11, 41)));
    }

    #[test]
    fn ages_read_in_days_hours_or_seconds() {
        assert_eq!(describe_age(Duration::from_secs(30 * 86_400)), "30 days");
        assert_eq!(
            describe_age(Duration::from_secs(31 * 86_400 + 7200)),
            "31.1 days"
        );
        assert_eq!(describe_age(Duration::from_secs(5400)), "1.5 hours");
        assert_eq!(describe_age(Duration::from_secs(3)), "3 s");
    }
}
