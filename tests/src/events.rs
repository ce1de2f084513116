//! Builders for valid events, and publishing them as agencies do.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use prost::Message;

use crate::POLICE;

/// A deterministic UUIDv7 for test event `n`.
pub fn id(n: u64) -> String {
    let mut rand = [0u8; 10];
    rand[2..].copy_from_slice(&n.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(1_790_000_000_000 + n, &rand)
        .into_uuid()
        .to_string()
}

/// The id of test case `name`: under the police's id (they open most test cases),
/// unless `name` already names its owner (`<agency>/<local>`).
pub fn case_id(name: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{POLICE}/{name}")
    }
}

/// The pseudonym of test case `name`'s subject, under the case's owner:
/// `<owner>/subj-<local>`.
pub fn subject_of(name: &str) -> String {
    let id = case_id(name);
    let (owner, local) = id.split_once('/').unwrap_or((POLICE, &id));
    format!("{owner}/subj-{local}")
}

/// The fixed test secret of `agency` that keys the ids its adapter derives
/// (different per agency, the same in every test run).
pub fn agency_secret(agency: &str) -> handoff_adapters::AgencySecret {
    let mut bytes = [0x5a_u8; 32];
    for (i, b) in agency.bytes().enumerate() {
        bytes[i % 32] ^= b;
    }
    handoff_adapters::AgencySecret::from_bytes(bytes)
}

/// An envelope from `agency` about test case `case` (see [`case_id`], [`subject_of`]).
pub fn envelope(n: u64, agency: &str, case: &str, event: Event) -> Envelope {
    Envelope {
        event_id: id(n),
        source_agency: agency.into(),
        case_id: case_id(case),
        subject_pseudonym: subject_of(case),
        occurred_at: Some(handoff_contract::time::from_unix_ms(
            1_790_000_000_000 + n as i64 * 1000,
        )),
        actor: "test".into(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(event),
        ..Envelope::default()
    }
}

/// The police open a case with an incident.
pub fn incident(n: u64, case: &str) -> Envelope {
    envelope(
        n,
        POLICE,
        case,
        Event::IncidentReported(IncidentReported {
            incident_ref: format!("I-{case}"),
            narrative: "test narrative".into(),
            area: "North".into(),
            ..Default::default()
        }),
    )
}

/// The police refer the case to `to`.
pub fn referral(n: u64, case: &str, referral_id: &str, to: &str) -> Envelope {
    envelope(
        n,
        POLICE,
        case,
        Event::ReferralMade(ReferralMade {
            referral_id: referral_id.into(),
            to_agency: to.into(),
            reason: "test".into(),
            ..Default::default()
        }),
    )
}

/// The NATS subject an envelope is published on by its own agency.
pub fn subject(e: &Envelope) -> String {
    handoff_contract::names::event_subject(&e.source_agency, e.event.as_ref().expect("event"))
}

/// A message the broker took: into which agency's ingress stream, at which sequence
/// there (wait for the exchange to decide it with `Exchange::wait_for`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The agency whose ingress stream took it.
    pub agency: String,
    /// Its sequence in that stream (the PubAck's).
    pub sequence: u64,
}

/// The agency a `handoff.events.<agency>.…` subject names.
pub fn agency_of(subject: &str) -> String {
    subject
        .strip_prefix("handoff.events.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_default()
        .to_string()
}

/// Publishes raw bytes on a subject with an optional Nats-Msg-Id; the broker must take it.
pub async fn publish_raw(
    js: &async_nats::jetstream::Context,
    subject: &str,
    msg_id: Option<&str>,
    body: Vec<u8>,
) -> Sent {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg_id {
        headers.insert("Nats-Msg-Id", id);
    }
    let sequence = js
        .publish_with_headers(subject.to_string(), headers, body.into())
        .await
        .expect("publish")
        .await
        .expect("PubAck")
        .sequence;
    Sent {
        agency: agency_of(subject),
        sequence,
    }
}

/// Publishes an envelope on its agency's subject with Nats-Msg-Id = event id, its
/// private parts sealed to the exchange's transport key as an adapter seals them.
pub async fn publish(js: &async_nats::jetstream::Context, e: &Envelope) -> Sent {
    publish_raw(
        js,
        &subject(e),
        Some(&e.event_id),
        crate::seal(e).encode_to_vec(),
    )
    .await
}

/// Publishes `envelopes` as `agency` does: over its own NATS user (with the permissions
/// operators give it) through the adapters' `Publisher`, and returns the exchange's
/// receipts as outcomes, in order.
pub async fn publish_as(
    nats: &crate::NatsServer,
    agency: &str,
    envelopes: &[Envelope],
) -> Vec<handoff_adapters::Outcome> {
    let client = nats.connect_as(agency).await.expect("the agency connects");
    handoff_adapters::Publisher::new(client, agency)
        .with_transport(&crate::transport_public())
        .expect("transport key")
        .with_timeout(std::time::Duration::from_secs(30))
        .publish_all(envelopes)
        .await
        .expect("published and answered")
}

/// Publishes `envelopes` in order, waiting until `exchange` has decided each agency's
/// run of them before the next agency's: every agency publishes into its own ingress
/// stream, sourced into the events stream independently, so the order across agencies
/// is only what each agency had seen decided when it published (as an adapter waits
/// for its receipts). Returns what the broker took, in order.
pub async fn publish_in_order(
    js: &async_nats::jetstream::Context,
    exchange: &crate::Exchange,
    envelopes: &[Envelope],
) -> Vec<Sent> {
    let mut sent: Vec<Sent> = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        if sent.last().is_some_and(|s| s.agency != e.source_agency) {
            exchange
                .wait_for(&sent, std::time::Duration::from_secs(30))
                .await;
        }
        sent.push(publish(js, e).await);
    }
    sent
}
