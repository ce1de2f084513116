//! Revocation is an event (issue 13, finding 6): `handoff admin revoke` records it
//! at one log position, every node refuses the agency's later events from there
//! with a clear reason, its calls are refused, and once nats-server reloads the
//! rewritten authorization its NATS user no longer works.

use std::time::Duration;

use handoff_adapters::Outcome;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{id, publish_as};
use handoff_e2e::{Exchange, NatsServer, PROGRAMME, run_handoff};
use tonic::Code;

fn listing(n: u64) -> Envelope {
    Envelope {
        event_id: id(n),
        source_agency: PROGRAMME.into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(1_790_000_000_000)),
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(Event::ServiceOffered(ServiceOffered {
            service_id: format!("service-{n}"),
            name: "Programme for violent men".into(),
            email: "info@example.org".into(),
            ..Default::default()
        })),
        ..Envelope::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_stops_an_agency_at_one_position_on_every_node() {
    let nats = NatsServer::start();
    let a = Exchange::start(&nats).await;
    let b = Exchange::start(&nats).await;
    assert!(matches!(
        publish_as(&nats, PROGRAMME, &[listing(1)]).await[0],
        Outcome::Accepted { .. }
    ));

    let auth = nats.auth_dir();
    let (code, out) = run_handoff(
        &[
            "admin",
            "revoke",
            PROGRAMME,
            "--reason",
            "contract ended 2026-12-01",
            "--requested-by",
            "regional coordinator",
            "--config",
            &a.config_path().display().to_string(),
            "--nats-auth-out",
        ],
        &[&auth],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted"), "{out}");
    let conf = std::fs::read_to_string(auth.join("auth.conf")).expect("auth.conf");
    let public = nkeys::KeyPair::from_seed(&nats.seed(PROGRAMME))
        .expect("the agency's seed")
        .public_key();
    assert!(
        !conf.contains(&public) && !conf.contains(&format!("# {PROGRAMME}\n")),
        "the rewritten authorization has no user for the revoked agency"
    );

    // Its NATS user still works until nats-server reloads, but the exchange refuses
    // what it publishes, with the reason.
    let outcome = &publish_as(&nats, PROGRAMME, &[listing(2)]).await[0];
    match outcome {
        Outcome::Rejected { reason, detail } => {
            assert_eq!(*reason, RejectionReason::AgencyRevoked);
            assert!(detail.contains("revoked"), "{detail}");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // Both nodes decided it the same, at the same position.
    let (head_a, head_b) = (a.head().await, b.head().await);
    assert_eq!(head_a.sequence, 2, "the listing and the revocation");
    let settle = std::time::Instant::now();
    let mut head_b = head_b;
    while head_b.stream_position < head_a.stream_position
        && settle.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        head_b = b.head().await;
    }
    assert_eq!(
        (head_a.sequence, &head_a.hash, head_a.quarantined),
        (head_b.sequence, &head_b.hash, head_b.quarantined)
    );
    // Its calls are refused on every node.
    for node in [&a, &b] {
        let refused = node
            .client_as(PROGRAMME)
            .await
            .inbox(InboxRequest::default())
            .await
            .expect_err("revoked");
        assert_eq!(refused.code(), Code::Unauthenticated);
    }

    // After the reload the user is gone.
    nats.reload();
    assert!(
        nats.connect_as(PROGRAMME).await.is_err(),
        "the revoked agency's NATS user no longer logs in"
    );

    // A reinstatement undoes it: the user comes back with the same nkey.
    let (code, out) = run_handoff(
        &[
            "admin",
            "reinstate",
            PROGRAMME,
            "--reason",
            "revoked by mistake",
            "--config",
            &a.config_path().display().to_string(),
            "--nats-auth-out",
        ],
        &[&auth],
    );
    assert_eq!(code, 0, "{out}");
    nats.reload();
    assert!(matches!(
        publish_as(&nats, PROGRAMME, &[listing(3)]).await[0],
        Outcome::Accepted { .. }
    ));
    a.client_as(PROGRAMME)
        .await
        .inbox(InboxRequest::default())
        .await
        .expect("reinstated");
}
