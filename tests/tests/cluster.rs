//! Scale-out on a NATS cluster: a 3-node cluster (stream at 3 replicas) and
//! two Handoff nodes consuming the same stream into their own sled logs. One
//! NATS node and one Handoff node are killed mid-stream and brought back;
//! both logs end with the same head hash at the same signed checkpoint
//! sequence, and the publisher gets one outcome per event.

use std::collections::HashMap;

use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handoff_adapters::{Outcome, Publisher};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{GetCheckpointRequest, PersonalDetails};
use handoff_e2e::events::incident;
use handoff_e2e::{AUDITOR, Exchange, ExchangeOptions, NatsCluster, POLICE};

#[tokio::test(flavor = "multi_thread")]
async fn two_exchanges_on_a_cluster_end_with_the_same_log_through_node_failures() {
    let events: u64 = 600 * handoff_e2e::soak(); // HANDOFF_SOAK=N: N times as many
    const BATCH: u64 = 50;
    let mut cluster = NatsCluster::start(3);
    let options = ExchangeOptions {
        replicas: 3,
        // Unconfirmed batches are published again: room for every event twice.
        config_lines: handoff_e2e::agency_quota_for(2 * events),
        ..Default::default()
    };
    let a = Exchange::start_with(&cluster, options.clone()).await;
    let mut b = Exchange::start_with(&cluster, options).await;
    let publisher = Publisher::new(cluster.connect_as(POLICE).await, POLICE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key")
        .with_timeout(Duration::from_secs(60));
    let done = Arc::new(AtomicUsize::new(0));

    let progress = done.clone();
    let publishing = tokio::spawn(async move {
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        for n in 0..events / BATCH {
            let mut todo: Vec<_> = (n * BATCH..(n + 1) * BATCH)
                .map(|i| {
                    let mut e = incident(i + 1, &format!("cl-{i}"));
                    // Personal details are sealed under each node's own keys: outside the hash.
                    if let Some(Event::IncidentReported(r)) = e.event.as_mut() {
                        r.subject_details = Some(PersonalDetails {
                            full_name: format!("Person {i}"),
                            ..Default::default()
                        });
                    }
                    e
                })
                .collect();
            while !todo.is_empty() {
                let Ok(results) = publisher.publish_all(&todo).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let mut again = Vec::new();
                for (e, o) in todo.into_iter().zip(results) {
                    match o {
                        Outcome::Unconfirmed => again.push(e),
                        Outcome::Rejected { detail, .. } => panic!("{}: {detail}", e.event_id),
                        o => {
                            outcomes.insert(e.event_id, o);
                        }
                    }
                }
                todo = again;
            }
            progress.fetch_add(1, Ordering::SeqCst);
        }
        outcomes
    });

    // A third of the way in: one NATS node and exchange B die; two thirds: both come back.
    let batches = (events / BATCH) as usize;
    while done.load(Ordering::SeqCst) < batches / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes[1].kill();
    b.kill();
    while done.load(Ordering::SeqCst) < 2 * batches / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes[1].restart();
    b.restart().await;
    let outcomes = tokio::time::timeout(Duration::from_secs(300), publishing)
        .await
        .expect("publishing finishes")
        .expect("publisher");
    assert_eq!(outcomes.len() as u64, events, "one outcome per event");

    let js = async_nats::jetstream::new(cluster.connect().await);
    let last = js
        .get_stream("HANDOFF_EVENTS")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .last_sequence;
    let head_a = a.wait_for_position(last, Duration::from_secs(120)).await;
    let head_b = b.wait_for_position(last, Duration::from_secs(120)).await;
    // Both nodes sent receipts, a message per agency and committed batch; the stream
    // kept one of each batch both nodes committed alike. A publisher may read an
    // event's receipt twice (from batches cut differently), and then both agree.
    let mut stream = js
        .get_stream(handoff_contract::names::RECEIPTS_STREAM)
        .await
        .expect("receipts stream");
    let kept = stream.info().await.expect("info").state.messages;
    let mut all = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("messages");
    let keys = [a.public_key(), b.public_key()];
    let mut seen: std::collections::HashMap<String, (i32, u64, Vec<u8>)> =
        std::collections::HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..kept {
        let msg = all.next().await.expect("receipts").expect("readable");
        let id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .expect("a message id");
        assert!(ids.insert(id.clone()), "the stream kept {id} twice");
        for r in handoff_e2e::receipts_in(&msg.payload) {
            assert!(
                keys.iter()
                    .any(|k| handoff_audit::verify_receipt(&r, k).is_ok()),
                "a receipt for {} that no node signed",
                r.event_id
            );
            let said = (r.status, r.sequence, r.hash.clone());
            if let Some(before) = seen.insert(r.event_id.clone(), said.clone()) {
                assert_eq!(before, said, "the nodes disagree on {}", r.event_id);
            }
        }
    }
    assert!(
        seen.len() as u64 <= events && kept > 0,
        "{kept} messages of receipts for {} of {events} events",
        seen.len()
    );
    assert_eq!(head_a.sequence, events, "every event once on A");
    assert_eq!(head_b.sequence, events, "every event once on B");
    assert_eq!(head_a.hash, head_b.hash, "the same head hash on both nodes");
    let mut ca_client = a.client_as(AUDITOR).await;
    let mut cb_client = b.client_as(AUDITOR).await;
    let ca = ca_client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("checkpoint A")
        .into_inner()
        .checkpoint
        .expect("a checkpoint");
    let cb = cb_client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .expect("checkpoint B")
        .into_inner()
        .checkpoint
        .expect("a checkpoint");
    assert_eq!((ca.sequence, &ca.head_hash), (cb.sequence, &cb.head_hash));
    assert_ne!(
        ca.public_key, cb.public_key,
        "each node signs with its own key"
    );
    eprintln!(
        "{events} events over a 3-node cluster; NATS node 2 and exchange B killed at batch {} of {batches} and restarted at {}; both logs at sequence {} with head {}; {kept} receipts kept, none twice",
        batches / 3,
        2 * batches / 3,
        ca.sequence,
        handoff_contract::hex::encode(&ca.head_hash)
    );
}
