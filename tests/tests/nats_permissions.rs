//! NATS permissions from `handoff nats-auth`: an agency's NATS user publishes
//! only as itself and reads only its own receipts.

use std::time::Duration;

use futures::StreamExt;
use handoff_adapters::{Outcome, Publisher};
use handoff_contract::v1::RejectionReason;
use handoff_e2e::events::{case_id, incident, subject};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE};
use prost::Message;

#[tokio::test(flavor = "multi_thread")]
async fn an_agency_cannot_publish_as_another_or_read_its_receipts() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;

    // The centre's NATS user tries to publish a police incident on the police's subject.
    let centre_nats = nats.connect_as(CENTRE).await.expect("centre connects");
    let forged = incident(1, "forged");
    let js = async_nats::jetstream::new(centre_nats.clone());
    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
        js.publish(subject(&forged), forged.encode_to_vec().into())
            .await?
            .await
    })
    .await;
    assert!(
        !matches!(attempt, Ok(Ok(_))),
        "the broker took a publish on another agency's subject: {attempt:?}"
    );

    // The police listen on the centre's receipts: the server refuses the subscription.
    let police_nats = nats.connect_as(POLICE).await.expect("police connects");
    let mut snooping = police_nats
        .subscribe("handoff.receipts.ic-north")
        .await
        .expect("subscribe call");

    // Nor may they read the centre's receipts from the receipts stream: a consumer
    // filtered on another agency's subject, on all of them, or unnamed, is refused.
    let police_js = async_nats::jetstream::new(police_nats.clone());
    let receipts = police_js
        .get_stream_no_info(handoff_contract::names::RECEIPTS_STREAM)
        .await
        .expect("stream handle");
    for (name, filter) in [
        (Some("snoop1"), "handoff.receipts.ic-north"),
        (Some("snoop2"), "handoff.receipts.>"),
        (None, "handoff.receipts.ic-north"),
    ] {
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            receipts.create_consumer(async_nats::jetstream::consumer::pull::Config {
                name: name.map(str::to_string),
                filter_subject: filter.to_string(),
                ..Default::default()
            }),
        )
        .await;
        assert!(
            !matches!(attempt, Ok(Ok(_))),
            "the police opened a consumer on {filter}"
        );
    }

    // The centre's own events work as usual, through its own user.
    let own = Publisher::new(centre_nats, CENTRE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key");
    let mut opened = incident(2, &format!("{CENTRE}/own"));
    opened.source_agency = CENTRE.into();
    let outcomes = own.publish_all(&[opened]).await.expect("publish");
    // The centre may not report an incident (kind), even on a case under its own id, but
    // it is answered: the message came from the centre.
    assert!(
        matches!(
            outcomes[0],
            Outcome::Rejected {
                reason: RejectionReason::KindMayNotPublish,
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), snooping.next())
            .await
            .is_err(),
        "the police received the centre's receipt"
    );

    // The police publish as themselves, through the adapter library with the police user.
    let police = Publisher::new(police_nats, POLICE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key");
    let outcomes = police
        .publish_all(&[incident(3, "real")])
        .await
        .expect("publish");
    assert!(
        matches!(outcomes[0], Outcome::Accepted { .. }),
        "{outcomes:?}"
    );

    // Nothing forged reached the log.
    let mut auditor = exchange.client_as(AUDITOR).await;
    let head = auditor
        .get_log_head(handoff_contract::v1::GetLogHeadRequest {})
        .await
        .expect("head")
        .into_inner()
        .head
        .expect("a head");
    assert_eq!(head.sequence, 1, "only the police's own incident is logged");
    let forged_case = auditor
        .get_case(handoff_contract::v1::GetCaseRequest {
            case_id: case_id("forged"),
            purpose: String::new(),
        })
        .await
        .expect_err("no forged case");
    assert_eq!(forged_case.code(), tonic::Code::NotFound);
}
