//! Receipts and checkpoints are signed by the exchange's key; anyone with the
//! public key that `handoff key show` prints can verify them, and any change
//! to them fails verification.

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use handoff_contract::v1::*;
use handoff_e2e::events::{incident, publish};
use handoff_e2e::{AUDITOR, Exchange, NatsServer, POLICE, handoff_binary};
use prost::Message;

fn public_key(exchange: &Exchange) -> Vec<u8> {
    let out = Command::new(handoff_binary())
        .args(["key", "show", "--config"])
        .arg(exchange.config_path())
        .output()
        .expect("key show runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(text.len(), 64, "{text}");
    (0..32)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_and_checkpoints_verify_with_the_exchange_public_key() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let key = public_key(&exchange);
    let nc = nats.connect().await;
    let mut receipts = nc
        .subscribe(handoff_contract::names::receipt_subject(POLICE))
        .await
        .expect("sub");
    nc.flush().await.expect("flush");
    let js = async_nats::jetstream::new(nc);
    let last = publish(&js, &incident(1, "s")).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;

    let msg = tokio::time::timeout(Duration::from_secs(20), receipts.next())
        .await
        .expect("in time")
        .expect("receipt");
    let receipt = Receipt::decode(msg.payload.as_ref()).expect("receipt");
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
