//! Agency adapters: they read the documents an agency already produces,
//! validate them against `schemas/`, turn them into events with
//! deterministic ids, publish them over NATS JetStream and report, per
//! record, what the exchange answered.
//!
//! Usable as a library (this crate) and as `handoff adapter …` subcommands.

pub mod casework;
pub mod directory;
pub mod document;
pub mod generic;
pub mod ids;
pub mod police;
pub mod publisher;
pub mod schema;
pub mod secret;
pub mod statutory;

use std::io::Write;
use std::path::Path;

use handoff_contract::names::event_type;
use handoff_contract::v1::Envelope;
use serde_json::{Value, json};

pub use document::Document;
pub use publisher::{Outcome, Publisher};
pub use secret::{AgencySecret, SecretError};

/// What can go wrong in an adapter, in words the agency's operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The input file could not be read at all.
    #[error("input: {0}")]
    Input(String),
    /// A record does not match its schema or cannot become an event.
    #[error("invalid record: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// NATS refused or is unreachable.
    #[error("NATS: {0}")]
    Nats(String),
    /// The rejects file could not be written.
    #[error("cannot write rejects to {path}: {source}")]
    Rejects {
        /// Where.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which document format an adapter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterKind {
    /// Police incident/eviction records (JSON or CSV).
    Police {
        /// The intervention centre evictions are referred to.
        refer_to: Option<String>,
    },
    /// Casework activities of the programme provider (and others).
    Programme,
    /// Referral forms.
    Referral,
    /// Any event as JSON.
    Generic,
    /// Service listings for the public directory.
    Directory,
}

impl AdapterKind {
    /// The events one document becomes, for `agency`, with ids keyed by its `secret`.
    pub fn events(
        &self,
        agency: &str,
        secret: &AgencySecret,
        document: &Value,
    ) -> Result<Vec<Envelope>, AdapterError> {
        let events = match self {
            AdapterKind::Police { refer_to } => {
                police::events(agency, secret, refer_to.as_deref(), document)
            }
            AdapterKind::Programme => casework::event(agency, secret, document).map(|e| vec![e]),
            AdapterKind::Referral => generic::referral(agency, secret, document).map(|e| vec![e]),
            AdapterKind::Generic => generic::event(agency, document).map(|e| vec![e]),
            AdapterKind::Directory => directory::listing(agency, secret, document).map(|e| vec![e]),
        }?;
        // The exchange's limits count bytes, the schemas characters: a text of Czech
        // letters can pass the schema and still be too long. Refused here, by the same
        // rule the exchange applies, before anything is published.
        let too_long: Vec<String> = events
            .iter()
            .filter_map(|e| handoff_domain::limits::check_fields(e).err())
            .map(|r| r.to_string())
            .collect();
        if too_long.is_empty() {
            Ok(events)
        } else {
            Err(AdapterError::Invalid(too_long))
        }
    }

    /// The schema its documents follow.
    pub fn schema(&self) -> schema::Schema {
        match self {
            AdapterKind::Police { .. } => schema::Schema::PoliceRecord,
            AdapterKind::Programme => schema::Schema::ProgrammeActivity,
            AdapterKind::Referral => schema::Schema::ReferralForm,
            AdapterKind::Generic => schema::Schema::Event,
            AdapterKind::Directory => schema::Schema::ServiceListing,
        }
    }

    /// A document as a rejects file keeps it: its private values withheld (the schema
    /// marks them; for any event as JSON, the domain's list of private parts), since a
    /// rejects file lies outside both the input and the exchange's erasure.
    pub fn withhold_private(&self, document: &Value) -> Value {
        if *self != AdapterKind::Generic {
            return self.schema().withhold_private(document);
        }
        match handoff_contract::json::envelope_from_json(document) {
            Ok(mut envelope) => {
                handoff_domain::private::take_private(&mut envelope, 0);
                handoff_contract::json::to_json(&envelope, "handoff.v1.Envelope")
            }
            Err(_) => Value::String(schema::WITHHELD.into()),
        }
    }

    /// Reads an input file into documents (CSV only for police records).
    pub fn read(&self, path: &Path) -> Result<Vec<Document>, AdapterError> {
        let csv = matches!(self, AdapterKind::Police { .. })
            .then_some(police::csv_documents as document::CsvParser);
        document::read_file(path, csv)
    }
}

/// One published event of a record and what the exchange answered.
#[derive(Debug, Clone)]
pub struct PublishedEvent {
    /// Event type name.
    pub event_type: &'static str,
    /// Event id.
    pub event_id: String,
    /// Case id.
    pub case_id: String,
    /// The exchange's answer.
    pub outcome: Outcome,
}

/// What became of one input record.
#[derive(Debug, Clone)]
pub struct RecordReport {
    /// Where the record is in the input.
    pub label: String,
    /// The record as read (if it could be).
    pub record: Option<Value>,
    /// Refused by the adapter before publishing (with every problem), or published.
    pub result: Result<Vec<PublishedEvent>, Vec<String>>,
}

impl RecordReport {
    /// Whether anything about this record was refused (by the adapter or the exchange).
    pub fn is_refused(&self) -> bool {
        match &self.result {
            Err(_) => true,
            Ok(events) => events
                .iter()
                .any(|e| matches!(e.outcome, Outcome::Rejected { .. })),
        }
    }
}

/// Converts every document (ids keyed by the publishing agency's `secret`) and
/// publishes the events of the valid ones, in input order.
pub async fn process(
    kind: &AdapterKind,
    publisher: &Publisher,
    secret: &AgencySecret,
    documents: Vec<Document>,
) -> Result<Vec<RecordReport>, AdapterError> {
    let mut reports = Vec::with_capacity(documents.len());
    let mut envelopes = Vec::new();
    let mut owners = Vec::new();
    for doc in documents {
        let (record, result) = match doc.value {
            Err(why) => (None, Err(vec![why])),
            Ok(v) => match kind.events(publisher.agency(), secret, &v) {
                Ok(events) => {
                    for e in events {
                        owners.push(reports.len());
                        envelopes.push(e);
                    }
                    (Some(v), Ok(Vec::new()))
                }
                Err(AdapterError::Invalid(errors)) => (Some(v), Err(errors)),
                Err(other) => (Some(v), Err(vec![other.to_string()])),
            },
        };
        reports.push(RecordReport {
            label: doc.label,
            record,
            result,
        });
    }
    let outcomes = publisher.publish_all(&envelopes).await?;
    for ((envelope, owner), outcome) in envelopes.into_iter().zip(owners).zip(outcomes) {
        if let Ok(events) = &mut reports[owner].result {
            events.push(PublishedEvent {
                event_type: envelope.event.as_ref().map(event_type).unwrap_or("none"),
                event_id: envelope.event_id,
                case_id: envelope.case_id,
                outcome,
            });
        }
    }
    Ok(reports)
}

/// Keeps every refused record, with its reasons, as JSON Lines, so nothing is lost:
/// where it is in the input and why, with its private values withheld.
pub fn write_rejects(
    path: &Path,
    kind: &AdapterKind,
    reports: &[RecordReport],
) -> Result<usize, AdapterError> {
    let refused: Vec<&RecordReport> = reports.iter().filter(|r| r.is_refused()).collect();
    if refused.is_empty() {
        return Ok(0);
    }
    let err = |source| AdapterError::Rejects {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    // Refused records carry personal details: the agency's operator's only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    for r in &refused {
        let reasons: Vec<String> = match &r.result {
            Err(errors) => errors.clone(),
            Ok(events) => events
                .iter()
                .filter(|e| matches!(e.outcome, Outcome::Rejected { .. }))
                .map(|e| format!("{} {}: {}", e.event_type, e.event_id, e.outcome))
                .collect(),
        };
        let record = r.record.as_ref().map(|v| kind.withhold_private(v));
        let line = json!({ "label": r.label, "reasons": reasons, "record": record });
        writeln!(file, "{line}").map_err(err)?;
    }
    file.sync_all().map_err(err)?;
    Ok(refused.len())
}
