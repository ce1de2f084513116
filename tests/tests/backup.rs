//! A new node joins from a backup: `handoff admin backup` takes a consistent
//! copy of a serving exchange while events arrive, `handoff admin restore`
//! puts it into a new node's data dir, and the new node catches up from the
//! stream to the same head hash, with the subjects' keys restored.

use std::path::Path;
use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, incident, publish};
use handoff_e2e::{Exchange, ExchangeOptions, NatsServer, POLICE, run_handoff};

fn with_name(mut e: Envelope, name: &str) -> Envelope {
    if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
        i.subject_details = Some(PersonalDetails {
            full_name: name.into(),
            ..Default::default()
        });
    }
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restored_from_a_backup_catches_up_to_the_same_log() {
    let nats = NatsServer::start();
    let a = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    for n in 1..=100u64 {
        publish(
            &js,
            &with_name(incident(n, &format!("b{n}")), &format!("Person {n}")),
        )
        .await;
    }

    // The backup is taken while more events keep arriving.
    let dir = tempfile::tempdir().expect("tmp");
    let backup = dir.path().join("backup");
    let more = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut sent = Vec::new();
            for n in 101..=300u64 {
                sent.push(
                    publish(
                        &js,
                        &with_name(incident(n, &format!("b{n}")), &format!("Person {n}")),
                    )
                    .await,
                );
            }
            sent
        })
    };
    let (code, out) = run_handoff(
        &["admin", "backup", "--config"],
        &[&a.config_path(), Path::new("--out"), &backup],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok sequence="), "{out}");
    let at: u64 = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("sequence="))
        .and_then(|n| n.parse().ok())
        .expect("backup sequence");
    let sent = more.await.expect("publisher");
    let head_a = a.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(head_a.sequence, 300);

    // A new node from the backup: its own signing key, the same KEK, catching up from the stream.
    let b = Exchange::start_with(
        &nats,
        ExchangeOptions {
            restore_from: Some(backup.clone()),
            kek_from: Some(a.kek_path()),
            ..Default::default()
        },
    )
    .await;
    let head_b = b.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(head_b.sequence, 300);
    assert_eq!(
        head_b.hash, head_a.hash,
        "the same log as the node it came from"
    );
    // A subject sealed before the backup opens on the new node: the keyring came along.
    let early = b
        .client_as(POLICE)
        .await
        .get_case(GetCaseRequest {
            case_id: case_id("b1"),
            purpose: "backup test".into(),
        })
        .await
        .expect("case b1")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(
        early.subject_details.map(|d| d.full_name).as_deref(),
        Some("Person 1")
    );
    // A backup into an existing directory, or a restore into a used data dir, is refused.
    let (code, out) = run_handoff(
        &["admin", "backup", "--config"],
        &[&a.config_path(), Path::new("--out"), &backup],
    );
    assert_ne!(code, 0, "{out}");
    let (code, out) = run_handoff(
        &["admin", "restore", "--config"],
        &[&a.config_path(), Path::new("--from"), &backup],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not empty"), "{out}");
    eprintln!(
        "backup taken at sequence {at} of 300 while publishing; the restored node caught up to {} with the same head",
        head_b.sequence
    );
}
