//! nats-server killed (SIGKILL) and restarted while an agency publishes: the
//! adapter's publisher retries what the broker did not acknowledge, the
//! exchange reconnects by itself and resumes from its stored position, and the
//! log ends with every event exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handoff_adapters::{Outcome, Publisher};
use handoff_e2e::events::incident;
use handoff_e2e::{Exchange, ExchangeOptions, NatsServer, POLICE};

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let events: u64 = 1000 * handoff_e2e::soak(); // HANDOFF_SOAK=N: N times as many
    const BATCH: u64 = 50;
    const RESTARTS: usize = 3;
    let mut nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            // Unconfirmed batches are published again: room for every event twice.
            config_lines: handoff_e2e::agency_quota_for(2 * events),
            ..Default::default()
        },
    )
    .await;
    let client = nats.connect_as(POLICE).await.expect("police connects");
    let publisher = Publisher::new(client, POLICE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key")
        .with_timeout(Duration::from_secs(60));
    let batches_done = Arc::new(AtomicUsize::new(0));

    let done = batches_done.clone();
    let publishing = tokio::spawn(async move {
        let mut published = Vec::new();
        let mut retried = 0usize;
        for b in 0..events / BATCH {
            let batch: Vec<_> = (b * BATCH..(b + 1) * BATCH)
                .map(|n| incident(n + 1, &format!("nr-{n}")))
                .collect();
            // The adapter's contract: anything unconfirmed is published again, same ids.
            let mut todo = batch.clone();
            while !todo.is_empty() {
                let outcomes = match publisher.publish_all(&todo).await {
                    Ok(o) => o,
                    Err(e) => {
                        eprintln!("batch {b}: {e}; publishing again");
                        retried += todo.len();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let mut again = Vec::new();
                for (e, o) in todo.iter().zip(outcomes) {
                    match o {
                        Outcome::Accepted { .. } | Outcome::Duplicate { .. } => {}
                        Outcome::Unconfirmed => again.push(e.clone()),
                        Outcome::Rejected { detail, .. } => {
                            panic!("{} rejected: {detail}", e.event_id)
                        }
                    }
                }
                retried += again.len();
                todo = again;
            }
            published.extend(batch.into_iter().map(|e| e.event_id));
            done.fetch_add(1, Ordering::SeqCst);
        }
        (published, retried)
    });

    let total_batches = (events / BATCH) as usize;
    for r in 0..RESTARTS {
        let at = (r + 1) * total_batches / (RESTARTS + 1);
        while batches_done.load(Ordering::SeqCst) < at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nats.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.restart();
    }
    let (published, retried) = tokio::time::timeout(Duration::from_secs(300), publishing)
        .await
        .expect("publishing finishes")
        .expect("publisher");

    // The exchange came back by itself: it consumes to the end of the stream.
    let js = async_nats::jetstream::new(nats.connect().await);
    let last = js
        .get_stream("HANDOFF_EVENTS")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .last_sequence;
    let head = exchange
        .wait_for_position(last, Duration::from_secs(120))
        .await;
    let ids = exchange.logged_event_ids().await;
    assert_eq!(head.sequence, events, "every event exactly once");
    assert_eq!(head.quarantined, 0);
    assert_eq!(ids.len() as u64, events);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>(),
        published.iter().collect::<HashSet<_>>()
    );
    let log = exchange.read_log().await;
    for pair in log.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert!(
            pair[1].stream_sequence > pair[0].stream_sequence,
            "stream order"
        );
    }
    eprintln!(
        "{events} events; {RESTARTS} SIGKILLs and restarts of nats-server; {retried} events published again after an unconfirmed batch; stream holds {last} messages; the log holds each event once"
    );
}
