//! An agency's receipts as the exchange sends them (one message per committed batch),
//! read one receipt at a time.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use handoff_contract::v1::{Receipt, Receipts};
use prost::Message;

/// A core-NATS subscription on one agency's receipts subject.
pub struct ReceiptFeed {
    messages: async_nats::Subscriber,
    pending: VecDeque<Receipt>,
}

impl ReceiptFeed {
    /// Subscribes to `agency`'s receipts (and flushes, so none sent after this is missed).
    pub async fn subscribe(client: &async_nats::Client, agency: &str) -> ReceiptFeed {
        let messages = client
            .subscribe(handoff_contract::names::receipt_subject(agency))
            .await
            .expect("subscribe to receipts");
        client.flush().await.expect("flush");
        ReceiptFeed {
            messages,
            pending: VecDeque::new(),
        }
    }

    /// The next receipt, or `None` if none comes within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Receipt> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Some(r);
            }
            let msg = tokio::time::timeout(within, self.messages.next())
                .await
                .ok()??;
            self.pending.extend(receipts_in(&msg.payload));
        }
    }

    /// The next receipt; panics if none comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Receipt {
        self.next_within(within)
            .await
            .unwrap_or_else(|| panic!("no receipt within {within:?}"))
    }
}

/// The receipts of one message on a receipts subject; panics if it is not one.
pub fn receipts_in(payload: &[u8]) -> Vec<Receipt> {
    Receipts::decode(payload)
        .expect("a message of receipts")
        .receipts
}
