//! WatchCases: catch-up from a log sequence, then live updates, only for cases
//! the caller may see, with no gap or duplicate across a reconnect.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish, publish_in_order, referral};
use handoff_e2e::{CENTRE, Exchange, NatsServer};
use tonic::Streaming;

async fn next(stream: &mut Streaming<WatchCasesResponse>) -> WatchCasesResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("an update in time")
        .expect("stream ok")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partner_catches_up_then_follows_live_and_resumes_without_gaps() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut sent = Vec::new();
    for e in [
        incident(1, "w1"),
        incident(2, "w2"),
        referral(3, "w1", "r", CENTRE),
    ] {
        sent.push(publish(&js, &e).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;

    let mut centre = exchange.client_as(CENTRE).await;
    let mut stream = centre
        .watch_cases(WatchCasesRequest {
            after_sequence: 0,
            purpose: "inbox".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    // Catch-up: rights are the current ones, so the centre, a party to w1 now, gets
    // w1's whole history (its incident too); w2 is not its business.
    let opened = next(&mut stream).await;
    assert_eq!(
        (opened.sequence, opened.event_type.as_str()),
        (1, "incident_reported")
    );
    let first = next(&mut stream).await;
    assert_eq!(
        (first.sequence, first.event_type.as_str()),
        (3, "referral_made")
    );
    for update in [&opened, &first] {
        assert_eq!(
            update.case.as_ref().map(|c| c.case_id.clone()),
            Some(case_id("w1"))
        );
    }

    // Live.
    let ack = envelope(
        4,
        CENTRE,
        "w1",
        Event::ReferralAcknowledged(ReferralAcknowledged {
            referral_id: "r".into(),
        }),
    );
    publish(&js, &ack).await;
    let live = next(&mut stream).await;
    assert_eq!(
        (live.sequence, live.event_type.as_str()),
        (4, "referral_acknowledged")
    );
    drop(stream);

    // Meanwhile: more events, one of them invisible to the centre (published in this
    // order across the two agencies' ingress streams).
    let accept = envelope(
        6,
        CENTRE,
        "w1",
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r".into(),
        }),
    );
    publish_in_order(&js, &exchange, &[incident(5, "w3"), accept]).await;

    // Reconnect after the last update received: exactly what came after it.
    let mut resumed = centre
        .watch_cases(WatchCasesRequest {
            after_sequence: live.sequence,
            purpose: "inbox".into(),
        })
        .await
        .expect("watch again")
        .into_inner();
    let after = next(&mut resumed).await;
    assert_eq!(
        (after.sequence, after.event_type.as_str()),
        (6, "referral_accepted")
    );
    assert_eq!(after.case.map(|c| c.holder), Some(CENTRE.to_string()));

    // An agency with no part in any case hears nothing.
    let mut social = exchange.client_as("social-north").await;
    let mut nothing = social
        .watch_cases(WatchCasesRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), nothing.message())
            .await
            .is_err(),
        "no updates for a stranger"
    );
}
