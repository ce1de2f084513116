//! The statutory clocks end to end, from the dated table in `ops/policy.toml`: an
//! eviction's end is the duration in force on the Czech date of its order, with the
//! law that sets it, whatever duration the publisher wrote.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish};
use handoff_e2e::{COORDINATOR, Exchange, NatsServer, POLICE};

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

/// The coordinator's statutory-deadline table: six evictions of March 2026 whose copies
/// to the centre went out in time, five checked late, none copied to the court and no
/// offer of help recorded, counted per kind of agency whose duty each deadline was.
#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_sees_the_share_of_statutory_deadlines_met_per_agency_kind() {
    use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    const ORDERED: i64 = 1_772_438_400_000; // 2026-03-02T08:00:00Z
    let at = |mut e: Envelope, after_hours: i64| {
        e.occurred_at = Some(handoff_contract::time::from_unix_ms(
            ORDERED + after_hours * 3_600_000,
        ));
        e
    };
    let mut sent = Vec::new();
    for i in 0..6u64 {
        let case = format!("march-{i}");
        let n = i * 10;
        sent.push(publish(&js, &incident(n + 1, &case)).await);
        sent.push(publish(&js, &eviction(n + 2, &case, "2026-03-02T08:00:00Z")).await);
        let copy = envelope(
            n + 3,
            POLICE,
            &case,
            Event::EvictionCopySent(EvictionCopySent {
                recipient: CopyRecipient::InterventionCentre as i32,
                to_agency: handoff_e2e::CENTRE.into(),
                ..Default::default()
            }),
        );
        sent.push(publish(&js, &at(copy, 2)).await);
        if i < 5 {
            let check = envelope(
                n + 4,
                POLICE,
                &case,
                Event::EvictionComplianceChecked(EvictionComplianceChecked {
                    kept: true,
                    ..Default::default()
                }),
            );
            sent.push(publish(&js, &at(check, 4 * 24)).await);
        }
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert!(exchange.quarantine().await.is_empty());

    let report = StatisticsServiceClient::new(exchange.channel_as(COORDINATOR).await)
        .get_stats(GetStatsRequest {
            from_month: "2026-03".into(),
            to_month: String::new(),
            purpose: "statutory deadlines, partnership board".into(),
        })
        .await
        .expect("the coordinator reads statistics")
        .into_inner()
        .report
        .expect("a report");
    let value = |c: &Option<StatsCell>| c.as_ref().filter(|c| !c.suppressed).map(|c| c.value);
    let row = |kind: &str| {
        let r = report
            .deadlines
            .iter()
            .find(|r| r.month == "2026-03" && r.duty_kind == kind)
            .unwrap_or_else(|| panic!("a {kind} row in {:?}", report.deadlines));
        [
            value(&r.fell_due),
            value(&r.met_in_time),
            value(&r.met_late),
            value(&r.overdue),
            value(&r.met_in_time_percent),
        ]
    };
    // Police: copies to the centre (6 in time) and the court (6 overdue), compliance
    // checks (5 late, 1 overdue).
    assert_eq!(
        row("police"),
        [Some(18), Some(6), Some(5), Some(7), Some(33)]
    );
    assert_eq!(row("all"), [Some(24), Some(6), Some(5), Some(13), Some(25)]);
    // The centre's 6 overdue offers would be the total minus the police beside the
    // court's withheld 0: withheld too.
    assert_eq!(row("intervention_centre")[0], None);
    assert_eq!(row("intervention_centre")[3], None);
    assert_eq!(row("court")[0], None);
}
