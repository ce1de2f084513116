//! The statutory clocks end to end, from the dated table in `ops/policy.toml`: an
//! eviction's end is the duration in force on the Czech date of its order, with the
//! law that sets it, whatever duration the publisher wrote.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish};
use handoff_e2e::{Exchange, NatsServer, POLICE};

fn eviction(n: u64, case: &str, ordered_rfc3339: &str) -> Envelope {
    envelope(
        n,
        POLICE,
        case,
        Event::EvictionOrdered(EvictionOrdered {
            incident_ref: format!("I-{case}"),
            ordered_at: handoff_contract::time::parse_rfc3339(ordered_rfc3339),
            // What the police's system wrote; the exchange goes by the law in force.
            duration_days: 10,
            protected_area: "Lannova tř. 12, České Budějovice".into(),
            ..Default::default()
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_eviction_of_30_june_2025_ends_after_10_days_and_one_of_1_july_after_14() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut sent = Vec::new();
    for (n, (case, ordered)) in [
        ("june", "2025-06-30T08:00:00Z"),
        ("july", "2025-07-01T08:00:00Z"),
        // 22:30 UTC on 30 June is 00:30 on 1 July in České Budějovice.
        ("midnight", "2025-06-30T22:30:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = n as u64 * 2;
        sent.push(publish(&js, &incident(n + 1, case)).await);
        sent.push(publish(&js, &eviction(n + 2, case, ordered)).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert!(exchange.quarantine().await.is_empty());

    let ends = |view: &CaseView| {
        let e = &view.evictions[0];
        (
            e.ends_at.map(|t| t.to_string()).unwrap_or_default(),
            e.duration_source.clone(),
        )
    };
    let mut police = exchange.client_as(POLICE).await;
    let mut read = async |case: &str| {
        police
            .get_case(GetCaseRequest {
                case_id: case_id(case),
                purpose: "eviction review".into(),
            })
            .await
            .expect("GetCase")
            .into_inner()
            .case
            .expect("a case")
    };
    let (june, june_law) = ends(&read("june").await);
    assert_eq!(june, "2025-07-10T08:00:00Z");
    assert!(june_law.contains("273/2008"), "{june_law}");
    assert!(!june_law.contains("78/2025"), "{june_law}");
    let (july, july_law) = ends(&read("july").await);
    assert_eq!(july, "2025-07-15T08:00:00Z");
    assert!(july_law.contains("78/2025"), "{july_law}");
    let (midnight, _) = ends(&read("midnight").await);
    assert_eq!(
        midnight, "2025-07-14T22:30:00Z",
        "a 1 July order by Czech time"
    );
}

/// A subject reported (and evicted) again within 12 months is flagged on each of
/// their cases for the parties granted `risk`; a subject reported once is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_subject_reported_again_within_twelve_months_is_flagged() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let same_person = |mut e: Envelope| {
        e.subject_pseudonym = handoff_e2e::events::subject_of("first");
        e
    };
    let sent = [
        publish(&js, &incident(1, "first")).await,
        publish(&js, &eviction(2, "first", "2026-01-10T08:00:00Z")).await,
        publish(&js, &same_person(incident(3, "second"))).await,
        publish(
            &js,
            &same_person(eviction(4, "second", "2026-11-02T08:00:00Z")),
        )
        .await,
        publish(&js, &incident(5, "once")).await,
    ];
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert!(exchange.quarantine().await.is_empty());
    for case in ["first", "second"] {
        let view = exchange.case(&case_id(case)).await;
        assert!(view.reported_again, "{case}: reported again");
        assert!(view.evicted_again, "{case}: evicted again within 12 months");
    }
    let once = exchange.case(&case_id("once")).await;
    assert!(!once.reported_again && !once.evicted_again);
}
