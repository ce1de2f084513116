//! `handoff audit export` from a live exchange and `handoff audit verify`
//! offline: an untouched export verifies; a tampered one fails, naming the record.

use std::path::Path;
use std::time::Duration;

use handoff_e2e::events::{incident, publish, referral};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, run_handoff};

#[tokio::test(flavor = "multi_thread")]
async fn an_export_verifies_offline_and_tampering_is_reported_with_its_sequence() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut sent = Vec::new();
    for c in 0..5u64 {
        let case = format!("x{c}");
        sent.push(publish(&js, &incident(c * 2 + 1, &case)).await);
        sent.push(publish(&js, &referral(c * 2 + 2, &case, "r", CENTRE)).await);
    }
    exchange.wait_for(&sent, Duration::from_secs(30)).await;

    let config = exchange.config_path();
    let (code, key) = run_handoff(&["key", "show", "--config"], &[&config]);
    assert_eq!(code, 0, "{key}");
    let key = key.trim().to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("log.jsonl");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir();
    let (code, out) = run_handoff(
        &[
            "audit",
            "export",
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &certs.display().to_string(),
            "--out",
        ],
        &[&file],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 records exported"), "{out}");

    let (code, out) = run_handoff(&["audit", "verify", "--public-key", &key], &[&file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: records 1..=10"), "{out}");

    // The same against the live exchange.
    let (code, out) = run_handoff(
        &[
            "audit",
            "verify",
            "--public-key",
            &key,
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &certs.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");

    // Replay: every projection rebuilt from the export equals the live ones.
    let replayed = dir.path().join("replayed");
    let (code, out) = run_handoff(
        &[
            "audit",
            "replay",
            "--public-key",
            &key,
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &certs.display().to_string(),
            "--config",
        ],
        &[&config, Path::new("--data-dir"), &replayed, &file],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("EQUAL: the live projections equal the replayed ones at sequence 10"),
        "{out}"
    );
    // As of sequence 3: case x0 referred (2 events), x1 just opened.
    let (code, out) = run_handoff(
        &[
            "audit",
            "replay",
            "--public-key",
            &key,
            "--as-of",
            "3",
            "--config",
        ],
        &[
            &config,
            Path::new("--data-dir"),
            &dir.path().join("as-of"),
            &file,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 cases as of log sequence 3"), "{out}");
    assert!(
        out.contains("\"version\":2") && out.contains("CASE_STATUS_REFERRED"),
        "{out}"
    );

    // Alter one byte of record 4's envelope.
    let text = std::fs::read_to_string(&file).expect("export");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut record: serde_json::Value = serde_json::from_str(&lines[4]).expect("record 4 line");
    let envelope = record["envelope"].as_str().expect("envelope").to_string();
    let flipped = if envelope.starts_with('C') {
        envelope.replacen('C', "D", 1)
    } else {
        format!("C{}", &envelope[1..])
    };
    record["envelope"] = serde_json::Value::from(flipped);
    lines[4] = record.to_string();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n")).expect("write");
    let (code, out) = run_handoff(&["audit", "verify", "--public-key", &key], &[&tampered]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("record 4 was altered"), "{out}");

    // Remove record 7.
    let mut removed: Vec<String> = text.lines().map(String::from).collect();
    removed.remove(7);
    let cut = dir.path().join("removed.jsonl");
    std::fs::write(&cut, removed.join("\n")).expect("write");
    let (code, out) = run_handoff(&["audit", "verify", "--public-key", &key], &[&cut]);
    assert_ne!(code, 0);
    assert!(out.contains("record 7 is missing"), "{out}");
}
