//! Poison input at the exchange: each message is refused with a clear reason
//! (in the quarantine, or by the broker at the door) and the exchange keeps
//! going. Random bytes, forged sources and stale versions are in exchange.rs;
//! the fuzz targets cover the rest of the input space.

use std::time::Duration;

use handoff_contract::v1::*;
use handoff_e2e::events::{incident, publish, publish_raw, subject};
use handoff_e2e::{Exchange, NatsServer};
use prost::Message;

#[tokio::test(flavor = "multi_thread")]
async fn truncated_future_unknown_and_oversized_messages_are_refused_and_ingest_goes_on() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // 1. A valid envelope cut in half.
    let whole = incident(1, "p1").encode_to_vec();
    publish_raw(
        &js,
        "handoff.events.police-north.incident_reported",
        Some("cut-1"),
        whole[..whole.len() / 2].to_vec(),
    )
    .await;
    // 2. Written for a contract version this exchange does not know.
    let mut future = incident(2, "p2");
    future.schema_version = 2;
    publish(&js, &future).await;
    // 3. An event type from a newer contract (oneof field 99, unknown here).
    let mut unknown = incident(3, "p3");
    unknown.event = None;
    let mut bytes = unknown.encode_to_vec();
    bytes.extend_from_slice(&[(99 << 3 | 2) as u8 & 0x7f | 0x80, 0x06, 0x02, b'h', b'i']);
    publish_raw(
        &js,
        "handoff.events.police-north.offender_relocated",
        Some(&unknown.event_id),
        bytes,
    )
    .await;
    // 4. Bigger than the exchange takes (`[nats] max_message_bytes`, 64 KiB by default):
    // the broker refuses it at the door, with a reason.
    let mut huge = incident(4, "p4");
    if let Some(envelope::Event::IncidentReported(i)) = huge.event.as_mut() {
        i.narrative = "x".repeat(64 * 1024 + 1);
    }
    let refused = js
        .publish(subject(&huge), huge.encode_to_vec().into())
        .await;
    let refused = match refused {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let why = refused.expect_err("an oversized event is refused");
    assert!(why.to_lowercase().contains("size"), "{why}");
    // 5. And the next valid event is taken as usual.
    let last = publish(&js, &incident(5, "p5")).await;

    let head = exchange.wait_for([&last], Duration::from_secs(30)).await;
    assert_eq!((head.sequence, head.quarantined), (1, 3));
    let q = exchange.quarantine().await;
    let found: Vec<(RejectionReason, &str)> =
        q.iter().map(|e| (e.reason(), e.detail.as_str())).collect();
    assert!(
        matches!(
            found[0].0,
            RejectionReason::Malformed | RejectionReason::Invalid
        ),
        "{found:?}"
    );
    assert_eq!(
        found[1].0,
        RejectionReason::UnsupportedSchemaVersion,
        "{found:?}"
    );
    assert!(found[1].1.contains('2'), "{found:?}");
    assert_eq!(found[2].0, RejectionReason::Invalid, "{found:?}");
    assert!(found[2].1.contains("unknown event type"), "{found:?}");
}
