//! What one agency can make the exchange keep is bounded (issue 13, finding 5):
//! a flood fills only the flooder's own ingress stream and quarantine share,
//! every request field is limited before anything is stored, and calls beyond
//! an agency's share are refused.

use std::time::{Duration, Instant};

use handoff_adapters::Outcome;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{Sent, case_id, incident, publish_as};
use handoff_e2e::{AUDITOR, Exchange, ExchangeOptions, NatsServer, POLICE, PROGRAMME};
use tonic::Code;

const SOCIAL: &str = "social-north";

fn lines(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(s, l)| (s.to_string(), l.to_string()))
        .collect()
}

/// Waits until a metric line reads `value`, or fails with what /metrics says.
async fn wait_for_metric(exchange: &Exchange, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while exchange.metric(series) != Some(value) {
        assert!(
            Instant::now() < deadline,
            "{series} is not {value}:\n{}",
            exchange
                .metrics()
                .lines()
                .filter(|l| l.starts_with("handoff_agency"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_agency_fills_only_its_own_share() {
    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            config_lines: lines(&[
                ("[nats]", "agency_quota_messages = 40"),
                ("[ingest]", "quarantine_quota_mb = 1"),
            ]),
            ..Default::default()
        },
    )
    .await;
    // The police flood: 60 kB of garbage at a time, on their own subject, until the
    // broker refuses them.
    let police = async_nats::jetstream::new(nats.connect_as(POLICE).await.expect("connect"));
    let garbage: Vec<u8> = (0..60_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut taken = 0u64;
    let refusal = loop {
        let ack = police
            .publish(
                format!("handoff.events.{POLICE}.incident_reported"),
                garbage.clone().into(),
            )
            .await
            .expect("publish sent");
        match ack.await {
            Ok(ack) => taken = ack.sequence,
            Err(e) => break e.to_string(),
        }
        assert!(taken <= 40, "the broker kept taking the flood");
    };
    assert_eq!(taken, 40, "the quota: 40 messages in the window");
    assert!(refusal.contains("maximum messages"), "{refusal}");

    // Meanwhile every other agency's events flow.
    let mut listing = incident(1, "unused");
    listing.source_agency = PROGRAMME.into();
    listing.case_id.clear();
    listing.subject_pseudonym.clear();
    listing.event = Some(Event::ServiceOffered(ServiceOffered {
        service_id: "men".into(),
        name: "Programme".into(),
        email: "info@example.org".into(),
        ..Default::default()
    }));
    assert!(matches!(
        publish_as(&nats, PROGRAMME, &[listing]).await[0],
        Outcome::Accepted { .. }
    ));
    let mut theirs = incident(2, &format!("{SOCIAL}/c1"));
    theirs.source_agency = SOCIAL.into();
    theirs.event = Some(Event::ReferralMade(ReferralMade {
        referral_id: "r".into(),
        to_agency: PROGRAMME.into(),
        ..Default::default()
    }));
    assert!(matches!(
        publish_as(&nats, SOCIAL, &[theirs]).await[0],
        Outcome::Accepted { .. }
    ));

    // The exchange kept the flood's first megabyte whole, the rest as summaries.
    exchange
        .wait_for(
            [&Sent {
                agency: POLICE.into(),
                sequence: 40,
            }],
            Duration::from_secs(30),
        )
        .await;
    let entries = exchange.quarantine().await;
    assert_eq!(entries.len(), 40);
    let whole = entries.iter().filter(|e| !e.summarized).count();
    assert!(
        (10..=18).contains(&whole),
        "{whole} kept whole within 1 MiB"
    );
    for e in entries.iter().filter(|e| e.summarized) {
        assert!(e.raw.is_empty() && e.sealed_details.is_none());
        assert_eq!(e.raw_size, 60_000);
        assert_eq!(e.raw_sha256.len(), 32);
        assert_eq!(e.reason(), RejectionReason::Malformed);
        assert_eq!(e.agency, POLICE);
    }
    // A metric names the agency over its quota, for the alert.
    wait_for_metric(
        &exchange,
        r#"handoff_agency_over_quota{agency="police-north",quota="ingress"}"#,
        1.0,
    )
    .await;
    wait_for_metric(
        &exchange,
        r#"handoff_agency_over_quota{agency="police-north",quota="quarantine"}"#,
        1.0,
    )
    .await;
    wait_for_metric(
        &exchange,
        r#"handoff_agency_over_quota{agency="ngo-men-north",quota="ingress"}"#,
        0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_fields_are_bounded_before_anything_is_kept() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let mut police = exchange.client_as(POLICE).await;
    let long = |n: usize| "x".repeat(n);
    let refused = [
        police
            .get_case(GetCaseRequest {
                case_id: case_id("k"),
                purpose: long(600),
            })
            .await,
        police
            .get_case(GetCaseRequest {
                case_id: long(300),
                purpose: "p".into(),
            })
            .await,
    ];
    for r in &refused {
        let status = r.as_ref().expect_err("over a limit");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let listed = police
        .list_cases(ListCasesRequest {
            page_token: long(10_000),
            ..Default::default()
        })
        .await
        .expect_err("over a limit");
    assert_eq!(listed.code(), Code::InvalidArgument);
    // A request over the server's size limit is refused before it is decoded.
    let huge = police
        .get_case(GetCaseRequest {
            case_id: case_id("k"),
            purpose: long(100_000),
        })
        .await
        .expect_err("too large");
    assert_ne!(huge.code(), Code::Ok);

    // What was recorded of the refused reads is bounded, whatever was sent; the
    // oversized request left no record at all.
    let records = exchange
        .client_as(AUDITOR)
        .await
        .access_report(AccessReportRequest {
            agency: POLICE.into(),
            ..Default::default()
        })
        .await
        .expect("report")
        .into_inner()
        .records;
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert_eq!(r.outcome, "invalid_argument");
        assert!(
            r.purpose.len() <= 512 + 32,
            "purpose kept: {} bytes",
            r.purpose.len()
        );
        assert!(
            r.query.len() <= 1024 + 32,
            "query kept: {} bytes",
            r.query.len()
        );
        assert!(r.case_ids.iter().all(|c| c.len() <= 128 + 32));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_an_agencys_share_are_refused_and_counted() {
    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            config_lines: lines(&[("[query]", "calls_per_second = 0.5\ncall_burst = 5")]),
            ..Default::default()
        },
    )
    .await;
    let mut social = exchange.client_as(SOCIAL).await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let code = match social.inbox(InboxRequest::default()).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        codes.push(code);
    }
    assert_eq!(&codes[..5], &[Code::Ok; 5], "within the burst");
    assert!(
        codes[5..].iter().all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    // Another agency's share is its own.
    exchange
        .client_as(POLICE)
        .await
        .inbox(InboxRequest::default())
        .await
        .expect("the police are not held up");
    wait_for_metric(
        &exchange,
        r#"handoff_rpc_throttled_total{agency="social-north"}"#,
        3.0,
    )
    .await;
}
