//! Principle 1: projections can be dropped and rebuilt from the log, and the
//! rebuild gives byte-identical results. `handoff admin rebuild` refuses to run
//! beside a serving exchange, and after it the exchange serves the same state.

use std::time::Duration;

use handoff_contract::v1::{GetProjectionDigestRequest, InboxRequest};
use handoff_e2e::events::{incident, publish, referral};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, run_handoff};

async fn digest(exchange: &Exchange) -> (u64, Vec<u8>) {
    let d = exchange
        .client_as(AUDITOR)
        .await
        .get_projection_digest(GetProjectionDigestRequest {})
        .await
        .expect("the auditor may read the projection digest")
        .into_inner()
        .digest
        .expect("a digest");
    (d.sequence, d.digest)
}

async fn centre_inbox(exchange: &Exchange) -> Vec<String> {
    exchange
        .client_as(CENTRE)
        .await
        .inbox(InboxRequest::default())
        .await
        .expect("inbox")
        .into_inner()
        .items
        .into_iter()
        .map(|i| format!("{} {}", i.case_id, i.item_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilding_the_projections_from_the_log_gives_identical_projections() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut sent = Vec::new();
    for n in 1..=30u64 {
        let case = format!("rebuild-{n}");
        sent.push(publish(&js, &incident(2 * n, &case)).await);
        if n % 3 != 0 {
            sent.push(
                publish(
                    &js,
                    &referral(2 * n + 1, &case, &format!("ref-{n}"), CENTRE),
                )
                .await,
            );
        }
    }
    let head = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(head.sequence, 50);
    let before = digest(&exchange).await;
    let inbox = centre_inbox(&exchange).await;
    assert!(inbox.len() >= 20, "{inbox:?}");

    // Beside a serving exchange the store is locked: refused, with what to do.
    let (code, out) = run_handoff(
        &["admin", "rebuild", "--config"],
        &[&exchange.config_path()],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("stop it first"), "{out}");

    exchange.kill();
    let (code, out) = run_handoff(
        &["admin", "rebuild", "--config"],
        &[&exchange.config_path()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("rebuilt 30 case views and 20 inbox items from 50 records"),
        "{out}"
    );
    assert!(out.contains("already exact"), "{out}");

    exchange.restart().await;
    assert_eq!(digest(&exchange).await, before);
    assert_eq!(centre_inbox(&exchange).await, inbox);
}
