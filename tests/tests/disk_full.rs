//! Disk full or unwritable: when the store's file system runs low, or the
//! exchange may no longer write in its data dir, it stores and receipts
//! nothing, says NOT_SERVING, logs the cause and reports it in the metrics;
//! when space or permission returns it resumes and loses nothing. The full-disk
//! tests store on a small tmpfs they mount (they need root, as CI's container
//! has); the unwritable test runs the exchange as an unprivileged user.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use handoff_contract::v1::*;
use handoff_domain::limits::{LABEL, LINKED_PERSONS, TEXT};
use handoff_e2e::events::{Sent, incident, publish};
use handoff_e2e::{AUDITOR, Exchange, ExchangeOptions, NatsServer, POLICE, ReceiptFeed};
use tonic_health::pb::health_check_response::ServingStatus;

/// A tmpfs mounted for the test, unmounted (lazily: the exchange may still hold files) on drop.
struct SmallDisk(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tmp");
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a {megabytes} MiB tmpfs to fill it and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at, dir)
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn overall_health(exchange: &Exchange) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(exchange.channel_as(AUDITOR).await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_for(what: &str, exchange: &Exchange, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: {}", exchange.last_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fill(disk: &SmallDisk, leave: u64) -> PathBuf {
    let filler = disk.0.join("filler");
    let size = disk.free_bytes().saturating_sub(leave);
    let file = std::fs::File::create(&filler).expect("filler");
    file.set_len(size).expect("size");
    // set_len makes a sparse file; write it so tmpfs really holds the pages.
    let mut f = std::io::BufWriter::new(file);
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = size;
    use std::io::Write;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("fill");
        left -= n as u64;
    }
    f.flush().expect("flush");
    filler
}

/// An exchange storing on `disk` with `min_free_mb` in reserve, a subscription to the
/// police's receipts, and `first` events already stored and receipted.
struct OnSmallDisk {
    disk: SmallDisk,
    _nats: NatsServer,
    exchange: Exchange,
    receipts: ReceiptFeed,
    js: async_nats::jetstream::Context,
}

async fn on_small_disk(min_free_mb: u64, first: u64, case: &str) -> OnSmallDisk {
    let disk = SmallDisk::mount(64);
    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            data_dir: Some(disk.0.join("data")),
            min_free_mb: Some(min_free_mb),
            ..Default::default()
        },
    )
    .await;
    let client = nats.connect().await;
    let mut receipts = ReceiptFeed::subscribe(&client, POLICE).await;
    let js = async_nats::jetstream::new(client);
    let mut sent = Vec::new();
    for n in 1..=first {
        sent.push(publish(&js, &incident(n, &format!("{case}{n}"))).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    for _ in 0..first {
        receipts.next(Duration::from_secs(30)).await;
    }
    OnSmallDisk {
        disk,
        _nats: nats,
        exchange,
        receipts,
        js,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_pauses_ingest_and_nothing_is_lost_when_space_returns() {
    let OnSmallDisk {
        disk,
        _nats,
        exchange,
        mut receipts,
        js,
    } = on_small_disk(16, 20, "d").await;
    let mut sent: Vec<Sent> = Vec::new();

    // The disk fills up (to 8 MiB free, under the 16 MiB the exchange needs).
    let filler = fill(&disk, 8 << 20);
    for n in 21..=70u64 {
        sent.push(publish(&js, &incident(n, &format!("d{n}"))).await);
    }
    wait_for(
        "NOT_SERVING while the disk is full",
        &exchange,
        async || overall_health(&exchange).await == ServingStatus::NotServing as i32,
    )
    .await;
    wait_for("the cause in the log", &exchange, async || {
        exchange.last_log().contains("disk space low")
    })
    .await;
    assert_eq!(
        exchange.head().await.sequence,
        20,
        "nothing stored while full"
    );
    assert_eq!(exchange.metric("handoff_ingest_paused_low_disk"), Some(1.0));
    assert_eq!(exchange.metric("handoff_ingest_consuming"), Some(0.0));
    assert!(
        exchange
            .metric("handoff_store_free_bytes")
            .is_some_and(|b| b < (16 << 20) as f64)
    );
    assert!(
        receipts
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing receipted while full"
    );

    // Space returns: everything held back is stored, receipted, and ingest serves again.
    std::fs::remove_file(&filler).expect("free space");
    let head_after = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(head_after.sequence, 70);
    let mut accepted = 0;
    while accepted < 50 {
        let r = receipts.next(Duration::from_secs(10)).await;
        assert_eq!(r.status, receipt::Status::Accepted as i32);
        accepted += 1;
    }
    wait_for("SERVING again", &exchange, async || {
        overall_health(&exchange).await == ServingStatus::Serving as i32
    })
    .await;
    assert!(
        exchange
            .last_log()
            .contains("committing and consuming again")
    );
    assert_eq!(exchange.metric("handoff_ingest_paused_low_disk"), Some(0.0));
    assert_eq!(exchange.metric("handoff_log_head_sequence"), Some(70.0));
    assert_eq!(
        exchange.metric("handoff_ingest_messages_total{outcome=\"accepted\"}"),
        Some(70.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_acknowledges_nothing_and_a_restart_resumes() {
    // No reserve: the store's own writes hit the full disk.
    let OnSmallDisk {
        disk,
        _nats,
        mut exchange,
        mut receipts,
        js,
    } = on_small_disk(0, 10, "w").await;
    let mut sent = Vec::new();

    let filler = fill(&disk, 0);
    for n in 11..=40u64 {
        // Big enough that the store must write more than the disk has: every field the
        // incident has at its limit (domain::limits), about 12 KiB each.
        let mut e = incident(n, &format!("w{n}"));
        if let Some(envelope::Event::IncidentReported(i)) = e.event.as_mut() {
            i.narrative = "x".repeat(TEXT);
            i.linked_persons = (0..LINKED_PERSONS)
                .map(|_| LinkedPerson {
                    role: linked_person::Role::Witness as i32,
                    age_band: "y".repeat(LABEL),
                })
                .collect();
        }
        sent.push(publish(&js, &e).await);
    }
    // sled cannot go on after a failed write: the exchange stops, saying why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = exchange.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the exchange kept running on a full disk: {}",
            exchange.last_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    let log = exchange.last_log();
    assert!(log.contains("No space left on device"), "{log}");
    // Nothing it could not store was receipted.
    while let Some(r) = receipts.next_within(Duration::from_millis(300)).await {
        assert!(r.sequence <= 10, "receipted what it could not store: {r:?}");
    }

    // Space back, restarted (as a supervisor would): it resumes from what it stored.
    std::fs::remove_file(&filler).expect("free space");
    exchange.restart().await;
    let head = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(
        (head.sequence, head.quarantined),
        (40, 0),
        "every event once, nothing lost"
    );
    let ids = exchange.logged_event_ids().await;
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        40
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unwritable_data_dir_pauses_ingest_and_it_resumes_when_writable_again() {
    use std::os::unix::fs::PermissionsExt;
    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            unprivileged: true,
            // Messages wait while the store cannot take them: reported as stuck soon.
            stuck_after_secs: Some(2),
            ..Default::default()
        },
    )
    .await;
    let client = nats.connect().await;
    let mut receipts = ReceiptFeed::subscribe(&client, POLICE).await;
    let js = async_nats::jetstream::new(client);
    let mut sent = Vec::new();
    for n in 1..=10u64 {
        sent.push(publish(&js, &incident(n, &format!("u{n}"))).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    for _ in 0..10 {
        receipts.next(Duration::from_secs(30)).await;
    }

    // An operator's mistake: the data dir becomes read-only for the exchange.
    let data = exchange.data_dir();
    let mode = |m: u32| {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    mode(0o555);
    wait_for(
        "NOT_SERVING while the data dir is unwritable",
        &exchange,
        async || overall_health(&exchange).await == ServingStatus::NotServing as i32,
    )
    .await;
    for n in 11..=30u64 {
        sent.push(publish(&js, &incident(n, &format!("u{n}"))).await);
    }
    wait_for("the cause in the log", &exchange, async || {
        exchange.last_log().contains("data dir not writable")
    })
    .await;
    assert_eq!(
        exchange.metric("handoff_ingest_paused_store_unwritable"),
        Some(1.0)
    );
    assert_eq!(exchange.metric("handoff_ingest_consuming"), Some(0.0));
    // Messages wait and the position does not move: the watchdog calls it stuck.
    wait_for("stuck reported", &exchange, async || {
        exchange.metric("handoff_ingest_stuck") == Some(1.0)
    })
    .await;
    assert!(
        receipts
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "nothing receipted while unwritable"
    );
    assert_eq!(exchange.head().await.sequence, 10, "nothing stored");

    // Fixed: everything held back is stored once and receipted, without a restart.
    mode(0o755);
    let head_after = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!((head_after.sequence, head_after.quarantined), (30, 0));
    for _ in 0..20 {
        let r = receipts.next(Duration::from_secs(10)).await;
        assert_eq!(r.status, receipt::Status::Accepted as i32);
    }
    wait_for("SERVING again", &exchange, async || {
        overall_health(&exchange).await == ServingStatus::Serving as i32
    })
    .await;
    assert_eq!(
        exchange.metric("handoff_ingest_paused_store_unwritable"),
        Some(0.0)
    );
    wait_for("no longer stuck", &exchange, async || {
        exchange.metric("handoff_ingest_stuck") == Some(0.0)
    })
    .await;
    assert!(
        exchange
            .last_log()
            .contains("committing and consuming again")
    );
    let ids = exchange.logged_event_ids().await;
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        30
    );
}
