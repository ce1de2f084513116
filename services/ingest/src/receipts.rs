//! Receipts: each committed batch's, signed a tree per agency and sent one message a
//! tree, and the look-ups that answer a single receipt from the log.

use futures::StreamExt;
use handoff_contract::names::{receipt_subject, receipts_msg_id};
use handoff_contract::v1::Receipt;
use handoff_log::Log;
use prost::Message as _;
use tokio::sync::watch;

/// Committed batches' receipts, in commit order, to the receipt sender.
/// Each receipt goes with its agency and the publisher's `traceparent`, if it sent one.
pub(crate) type Outbox = tokio::sync::mpsc::Sender<Vec<(String, Receipt, Option<String>)>>;

/// Signs and publishes each committed batch's receipts, in order, until ingest ends:
/// per agency one tree of at most [`handoff_audit::RECEIPTS_PER_TREE`] receipts, one
/// signature and one message (`Receipts`), so neither the signing nor the broker's write
/// is paid per event.
pub(crate) async fn send_receipts(
    client: async_nats::Client,
    key: std::sync::Arc<handoff_audit::ExchangeKey>,
    mut batches: tokio::sync::mpsc::Receiver<Vec<(String, Receipt, Option<String>)>>,
) {
    while let Some(receipts) = batches.recv().await {
        for (agency, mut receipts) in by_agency(receipts) {
            while !receipts.is_empty() {
                // Each tree moves into its message; the rest waits for the next.
                let rest = receipts.split_off(receipts.len().min(handoff_audit::RECEIPTS_PER_TREE));
                let mut tree = std::mem::replace(&mut receipts, rest);
                key.sign_receipts(&mut tree);
                let (Some(first), Some(last)) = (tree.first(), tree.last()) else {
                    continue;
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    "Nats-Msg-Id",
                    receipts_msg_id(&agency, first.stream_sequence, last.stream_sequence).as_str(),
                );
                let body = handoff_contract::v1::Receipts { receipts: tree };
                if let Err(e) = client
                    .publish_with_headers(
                        receipt_subject(&agency),
                        headers,
                        body.encode_to_vec().into(),
                    )
                    .await
                {
                    tracing::warn!(error = %e, %agency, "receipts not sent; the publisher can look them up");
                }
            }
        }
    }
}

/// A batch's receipts per agency, each agency's in commit order, the publisher's trace
/// context written into its receipt.
fn by_agency(receipts: Vec<(String, Receipt, Option<String>)>) -> Vec<(String, Vec<Receipt>)> {
    let mut out: Vec<(String, Vec<Receipt>)> = Vec::new();
    for (agency, mut receipt, trace) in receipts {
        receipt.traceparent = trace.unwrap_or_default();
        match out.iter_mut().find(|(a, _)| *a == agency) {
            Some((_, list)) => list.push(receipt),
            None => out.push((agency, vec![receipt])),
        }
    }
    out
}

/// Answers receipt look-ups (`handoff.lookup.<agency>`, body = event id) from the log,
/// for publishers whose receipt was lost or whose publish the broker deduplicated.
pub async fn serve_receipt_lookups(
    client: async_nats::Client,
    log: Log,
    key: std::sync::Arc<handoff_audit::ExchangeKey>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = client.subscribe("handoff.lookup.*").await?;
    loop {
        let request = tokio::select! {
            r = requests.next() => r,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(request) = request else {
            return Ok(());
        };
        let Some(reply) = request.reply else {
            continue;
        };
        let agency = request
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .unwrap_or_default();
        let event_id = String::from_utf8_lossy(&request.payload);
        let answer = match log.receipt_for(agency, event_id.trim()) {
            Ok(Some(mut r)) => {
                key.sign_receipt(&mut r);
                r.encode_to_vec()
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "receipt look-up failed");
                Vec::new()
            }
        };
        if let Err(e) = client.publish(reply, answer.into()).await {
            tracing::warn!(error = %e, "look-up answer not sent");
        }
    }
}
