//! Killing the exchange (SIGKILL) while a publisher pushes events loses and
//! duplicates nothing: the log ends with every published event exactly once,
//! in stream order, with an intact hash chain.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use handoff_contract::v1::*;
use handoff_e2e::events::{incident, publish, referral};
use handoff_e2e::{CENTRE, Exchange, ExchangeOptions, NatsServer, run_handoff};

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_exchange_mid_stream_loses_and_duplicates_nothing() {
    // Two events per case. HANDOFF_SOAK=N runs N times as many (and as many more kills).
    let cases: u64 = 1500 * handoff_e2e::soak();
    const MIN_KILLS_WHILE_PUBLISHING: usize = 4;
    const MIN_KILLS: usize = 10;
    let nats = NatsServer::start();
    let mut exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            config_lines: handoff_e2e::agency_quota_for(2 * cases),
            ..Default::default()
        },
    )
    .await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let publishing = Arc::new(AtomicBool::new(true));

    let still = publishing.clone();
    let publisher = tokio::spawn(async move {
        let mut published = Vec::new();
        let mut sent = Vec::new();
        for c in 0..cases {
            let case = format!("crash-{c}");
            for e in [
                incident(c * 2 + 1, &case),
                referral(c * 2 + 2, &case, "r1", CENTRE),
            ] {
                sent.push(publish(&js, &e).await);
                published.push(e.event_id);
            }
            // Paced so that the kills below land while events are still arriving.
            if c % 25 == 0 {
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
        still.store(false, Ordering::SeqCst);
        (published, sent)
    });

    let mut kills_while_publishing = 0;
    let mut positions_at_kill = Vec::new();
    while publishing.load(Ordering::SeqCst)
        || kills_while_publishing < MIN_KILLS_WHILE_PUBLISHING
        || positions_at_kill.len() < MIN_KILLS
    {
        // Uneven intervals, so kills fall at different points of a batch.
        tokio::time::sleep(Duration::from_millis(
            90 + 53 * (positions_at_kill.len() as u64 % 5),
        ))
        .await;
        let head = exchange
            .client_as(handoff_e2e::AUDITOR)
            .await
            .get_log_head(GetLogHeadRequest {})
            .await
            .expect("head")
            .into_inner()
            .head
            .expect("a head");
        let mid_stream = publishing.load(Ordering::SeqCst);
        exchange.kill();
        positions_at_kill.push(head.stream_position);
        if mid_stream {
            kills_while_publishing += 1;
        }
        exchange.restart().await;
    }
    let (published, sent) = publisher.await.expect("publisher");
    // One more kill once everything is published, during catch-up.
    exchange.kill();
    exchange.restart().await;

    let head = exchange.wait_for(&sent, Duration::from_secs(120)).await;
    assert!(
        kills_while_publishing >= MIN_KILLS_WHILE_PUBLISHING,
        "only {kills_while_publishing} kills landed mid-stream"
    );
    assert_eq!(
        head.sequence,
        published.len() as u64,
        "every event exactly once"
    );
    assert_eq!(head.quarantined, 0);

    let log = exchange.read_log().await;
    let ids = exchange.logged_event_ids().await;
    assert_eq!(ids.len(), published.len());
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no duplicates"
    );
    assert_eq!(ids, published, "in stream order");
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r.sequence, i as u64 + 1, "dense sequences");
    }
    for pair in log.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "chain links at {}",
            pair[1].sequence
        );
        assert!(pair[1].stream_sequence > pair[0].stream_sequence);
    }
    assert_eq!(head.hash, log.last().expect("records").hash);
    // And the auditors' tool agrees: the live log verifies against the signed checkpoint.
    let (code, key) = run_handoff(&["key", "show", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{key}");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let (code, out) = run_handoff(
        &[
            "audit",
            "verify",
            "--public-key",
            key.trim(),
            "--server",
            &server,
            "--as",
            handoff_e2e::AUDITOR,
            "--certs",
            &certs,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    eprintln!(
        "{} events; {} SIGKILLs of the exchange ({kills_while_publishing} while publishing, at stream positions {positions_at_kill:?}); none lost or duplicated",
        published.len(),
        positions_at_kill.len() + 1
    );
}
