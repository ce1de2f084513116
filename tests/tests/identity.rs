//! mTLS identity: every caller is an agency named by a certificate from the
//! agencies' CA; everyone else is refused, and so is reaching beyond one's role.

use handoff_contract::v1::cases_service_client::CasesServiceClient;
use handoff_contract::v1::*;
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, REVOKED, issue_certificates};
use tonic::Code;

async fn head_as(
    client: &mut CasesServiceClient<tonic::transport::Channel>,
) -> Result<LogHead, tonic::Status> {
    client
        .get_log_head(GetLogHeadRequest {})
        .await
        .map(|r| r.into_inner().head.expect("a head"))
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_without_a_valid_registered_certificate_are_refused() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;

    // A registered agency with its own certificate is let in.
    assert!(head_as(&mut exchange.client_as(POLICE).await).await.is_ok());

    // No certificate at all: UNAUTHENTICATED.
    let channel = exchange
        .try_channel(&exchange.certs_dir(), None)
        .await
        .expect("TLS without a client certificate");
    let refused = head_as(&mut CasesServiceClient::new(channel))
        .await
        .expect_err("anonymous caller");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");

    // A certificate from the right CA for an agency the registry does not know: UNAUTHENTICATED.
    exchange.issue_unregistered_certificate("stranger");
    let refused = head_as(&mut exchange.client_as("stranger").await)
        .await
        .expect_err("unknown agency");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("not registered"), "{refused}");

    // A revoked agency: UNAUTHENTICATED.
    let refused = head_as(&mut exchange.client_as(REVOKED).await)
        .await
        .expect_err("revoked agency");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("revoked"), "{refused}");

    // A certificate from another CA: the TLS handshake itself fails.
    let other = tempfile::tempdir().expect("tmp");
    issue_certificates(&exchange.config_path(), other.path());
    let foreign = match exchange.try_channel(other.path(), Some(POLICE)).await {
        Err(_) => None,
        Ok(channel) => Some(head_as(&mut CasesServiceClient::new(channel)).await),
    };
    assert!(
        !matches!(foreign, Some(Ok(_))),
        "a certificate from a foreign CA was accepted"
    );

    // The refusals are logged by the exchange.
    let log = exchange.last_log();
    assert!(log.contains("refused an unauthenticated call"), "{log}");
    assert!(
        log.contains("tls accept error"),
        "the foreign-CA handshake is logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agencies_reach_only_their_own_inbox_and_only_auditors_read_the_log() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let mut police = exchange.client_as(POLICE).await;

    let other_inbox = police
        .inbox(InboxRequest {
            agency: CENTRE.into(),
            purpose: String::new(),
        })
        .await
        .expect_err("another agency's inbox");
    assert_eq!(other_inbox.code(), Code::PermissionDenied);
    assert!(
        police.inbox(InboxRequest::default()).await.is_ok(),
        "own inbox"
    );

    let log = police
        .read_log(ReadLogRequest::default())
        .await
        .expect_err("police reading the log");
    assert_eq!(log.code(), Code::PermissionDenied);
    let quarantine = police
        .list_quarantine(ListQuarantineRequest::default())
        .await
        .expect_err("police reading the quarantine");
    assert_eq!(quarantine.code(), Code::PermissionDenied);

    let mut auditor = exchange.client_as(AUDITOR).await;
    assert!(auditor.read_log(ReadLogRequest::default()).await.is_ok());
    assert!(
        auditor
            .list_quarantine(ListQuarantineRequest::default())
            .await
            .is_ok()
    );
}
