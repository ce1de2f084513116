//! Receipts and checkpoints are signed by the exchange's key; anyone with the
//! public key that `handoff key show` prints can verify them, and any change
//! to them fails verification.

use std::time::Duration;

use handoff_contract::v1::*;
use handoff_e2e::events::{incident, publish};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, ReceiptFeed};

#[tokio::test(flavor = "multi_thread")]
async fn receipts_and_checkpoints_verify_with_the_exchange_public_key() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let key = exchange.public_key();
    let nc = nats.connect().await;
    let mut receipts = ReceiptFeed::subscribe(&nc, POLICE).await;
    let js = async_nats::jetstream::new(nc);
    let last = publish(&js, &incident(1, "s")).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;

    let receipt = receipts.next(Duration::from_secs(20)).await;
    handoff_audit::verify_receipt(&receipt, &key).expect("the receipt verifies");
    let mut forged = receipt.clone();
    forged.status = receipt::Status::Rejected as i32;
    assert!(
        handoff_audit::verify_receipt(&forged, &key).is_err(),
        "an altered receipt must not verify"
    );

    let checkpoint = exchange
        .client_as(AUDITOR)
        .await
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
        .expect("a checkpoint");
    assert_eq!(checkpoint.sequence, 1);
    assert_eq!(
        checkpoint.head_hash, receipt.hash,
        "the checkpoint names the head the receipt named"
    );
    handoff_audit::verify_checkpoint(&checkpoint, &key).expect("the checkpoint verifies");
    let mut moved = checkpoint.clone();
    moved.head_hash[0] ^= 1;
    assert!(
        handoff_audit::verify_checkpoint(&moved, &key).is_err(),
        "an altered checkpoint must not verify"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_receipts_is_signed_once_and_each_receipt_verifies_alone() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let key = exchange.public_key();
    let nc = nats.connect().await;
    let mut feed = ReceiptFeed::subscribe(&nc, POLICE).await;
    let mut centre_feed = ReceiptFeed::subscribe(&nc, CENTRE).await;
    let js = async_nats::jetstream::new(nc.clone());
    // Published while the exchange is stopped, so that they are all waiting when it
    // starts again and are committed together: the police's, and among them the
    // centre's (which the centre may not publish, so they are answered as rejections).
    exchange.stop();
    let (mut sent, mut traces) = (Vec::new(), std::collections::HashMap::new());
    for n in 1..=40u64 {
        let mut e = incident(n, &format!("b{n}"));
        if n % 4 == 0 {
            e.source_agency = CENTRE.into();
            e.case_id = format!("{CENTRE}/b{n}");
        }
        let trace = format!("00-{n:032x}-{n:016x}-01");
        traces.insert(e.event_id.clone(), trace.clone());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.event_id.as_str());
        headers.insert(handoff_contract::trace::TRACEPARENT, trace.as_str());
        let ack = js
            .publish_with_headers(
                handoff_e2e::events::subject(&e),
                headers,
                prost::Message::encode_to_vec(&handoff_e2e::seal(&e)).into(),
            )
            .await
            .expect("publish")
            .await
            .expect("PubAck");
        sent.push(handoff_e2e::events::Sent {
            agency: e.source_agency.clone(),
            sequence: ack.sequence,
        });
    }
    exchange.restart().await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    let mut receipts = Vec::new();
    while receipts.len() < 30 {
        receipts.push(feed.next(Duration::from_secs(20)).await);
    }
    let mut centre = Vec::new();
    while centre.len() < 10 {
        centre.push(centre_feed.next(Duration::from_secs(20)).await);
    }
    // Each committed batch's receipts came as one tree per agency with one signature:
    // every tree on the police's feed holds as many police receipts as its size says,
    // so no leaf (nor sibling hash in a proof) is another agency's, and the centre's
    // receipts are in trees of their own.
    let mut trees: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    for r in &receipts {
        *trees.entry(r.signature.clone()).or_default() += 1;
    }
    for r in &receipts {
        assert_eq!(trees[&r.signature], r.tree_size, "a tree is one message");
    }
    assert!(
        trees.len() < receipts.len(),
        "{} signatures for {} receipts",
        trees.len(),
        receipts.len()
    );
    for r in &centre {
        assert!(!trees.contains_key(&r.signature), "a tree mixes agencies");
        handoff_audit::verify_receipt(r, &key).expect("the centre's receipt verifies");
    }
    for r in receipts.iter().chain(&centre) {
        handoff_audit::verify_receipt(r, &key).expect("each receipt verifies on its own");
        assert_eq!(
            r.traceparent, traces[&r.event_id],
            "the publisher's trace comes back with its receipt"
        );
    }
    // A receipt of another agency's batch, or a forged one, cannot borrow a tree.
    let big = receipts
        .iter()
        .find(|r| r.tree_size > 1)
        .expect("a tree of several receipts");
    let mut forged = big.clone();
    forged.event_id = "police-north/forged".into();
    assert!(handoff_audit::verify_receipt(&forged, &key).is_err());
    let mut relabelled = big.clone();
    relabelled.leaf_index = (big.leaf_index + 1) % big.tree_size;
    assert!(handoff_audit::verify_receipt(&relabelled, &key).is_err());

    // A looked-up receipt is a tree of one, signed by the same key.
    let answer = nc
        .request(
            handoff_contract::names::receipt_lookup_subject(POLICE),
            big.event_id.clone().into(),
        )
        .await
        .expect("look-up answered");
    let looked_up =
        <Receipt as prost::Message>::decode(answer.payload.as_ref()).expect("a receipt");
    assert_eq!((looked_up.tree_size, looked_up.sequence), (1, big.sequence));
    handoff_audit::verify_receipt(&looked_up, &key).expect("the looked-up receipt verifies");
}
