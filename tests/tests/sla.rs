//! SLA deadlines in the inbox, from the rules in ops/policy.toml: an eviction
//! notice is due at the intervention centre within 24 hours; first contact
//! with the subject within 5 working days of acceptance.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handoff_contract::time::{from_unix_ms, to_unix_ms};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish, referral};
use handoff_e2e::{CENTRE, Exchange, NatsServer, POLICE};

fn eviction(n: u64, case: &str) -> Envelope {
    envelope(
        n,
        POLICE,
        case,
        Event::EvictionOrdered(EvictionOrdered {
            incident_ref: "I".into(),
            duration_days: 10,
            ..Default::default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inbox_shows_what_is_due_and_what_is_overdue() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // "late": an eviction referred long ago and never acknowledged.
    // "fresh": an eviction referred an hour from now (so not yet due).
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let mut fresh = vec![
        incident(10, "fresh"),
        eviction(11, "fresh"),
        referral(12, "fresh", "r", CENTRE),
    ];
    for e in &mut fresh {
        e.occurred_at = Some(from_unix_ms(now_ms + 3_600_000));
    }
    let mut sent = Vec::new();
    for e in [
        incident(1, "late"),
        eviction(2, "late"),
        referral(3, "late", "r", CENTRE),
    ]
    .iter()
    .chain(&fresh)
    {
        sent.push(publish(&js, e).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;

    let mut centre = exchange.client_as(CENTRE).await;
    let inbox = |c: &mut handoff_contract::v1::cases_service_client::CasesServiceClient<
        tonic::transport::Channel,
    >| {
        let mut c = c.clone();
        async move {
            c.inbox(InboxRequest::default())
                .await
                .expect("inbox")
                .into_inner()
                .items
        }
    };
    let items = inbox(&mut centre).await;
    let late = items
        .iter()
        .find(|i| i.case_id == case_id("late"))
        .expect("late item");
    let fresh_item = items
        .iter()
        .find(|i| i.case_id == case_id("fresh"))
        .expect("fresh item");
    assert_eq!(late.rule, "eviction_notice");
    assert!(late.overdue, "a day-old eviction notice is overdue");
    assert_eq!(
        to_unix_ms(&late.due_at.expect("due")) - to_unix_ms(&late.since.expect("since")),
        24 * 3_600_000
    );
    assert!(!fresh_item.overdue, "not due yet");
    // Operators see it too: the overdue gauge (sampled every 30 s) counts it by rule.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while exchange.metric("handoff_sla_overdue{rule=\"eviction_notice\"}") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "handoff_sla_overdue not 1:\n{}",
            exchange.metrics()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Accepting it (long ago) moves it to a first-contact deadline, overdue as well.
    let accept = envelope(
        4,
        CENTRE,
        "late",
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r".into(),
        }),
    );
    let last = publish(&js, &accept).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;
    let items = inbox(&mut centre).await;
    let contact = items
        .iter()
        .find(|i| i.case_id == case_id("late"))
        .expect("first-contact item");
    assert_eq!(contact.kind(), inbox_item::Kind::FirstContact);
    assert_eq!(contact.rule, "first_contact");
    assert!(contact.overdue);

    // Reaching him clears it.
    let reached = envelope(
        5,
        CENTRE,
        "late",
        Event::ContactAttempted(ContactAttempted {
            outcome: ContactOutcome::Reached as i32,
            ..Default::default()
        }),
    );
    let last = publish(&js, &reached).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;
    assert!(
        inbox(&mut centre)
            .await
            .iter()
            .all(|i| i.case_id != case_id("late"))
    );
}
