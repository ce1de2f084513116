//! The adapters as agencies run them: `handoff adapter …` against a real exchange.

use std::path::PathBuf;
use std::process::Command;

use handoff_e2e::{CENTRE, Exchange, NatsServer, POLICE, agency_secret_file, handoff_binary};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/examples")
        .join(name)
}

fn run_police(
    nats: &NatsServer,
    exchange: &Exchange,
    input: &PathBuf,
    rejects: &PathBuf,
) -> (i32, String) {
    let secrets = rejects.parent().expect("rejects in a dir");
    let secret = agency_secret_file(secrets, POLICE);
    let out = Command::new(handoff_binary())
        .args(exchange.adapter_args("police", POLICE, nats, &secret))
        .args(["--refer-to", CENTRE, "--rejects"])
        .arg(rejects)
        .arg(input)
        .output()
        .expect("adapter runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_police_adapter_publishes_a_csv_export_once_and_keeps_bad_rows() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let dir = tempfile::tempdir().expect("tmp");
    let rejects = dir.path().join("rejects.jsonl");

    let (code, out) = run_police(&nats, &exchange, &example("police-records.csv"), &rejects);
    assert_eq!(code, 0, "{out}");
    // an eviction (incident, eviction, referral) and an incident without referral
    assert!(
        out.contains(
            "4 accepted, 0 duplicate, 0 rejected by the exchange, 0 invalid, 0 unconfirmed"
        ),
        "{out}"
    );

    let (code, out) = run_police(&nats, &exchange, &example("police-records.csv"), &rejects);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 accepted, 4 duplicate"),
        "re-running publishes nothing new:\n{out}"
    );
    let head = exchange
        .client_as(handoff_e2e::AUDITOR)
        .await
        .get_log_head(handoff_contract::v1::GetLogHeadRequest {})
        .await
        .expect("head")
        .into_inner()
        .head
        .expect("a head");
    assert_eq!(head.sequence, 4);

    // A row the schema refuses is reported, not published, and kept with its reason.
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(example("police-records.csv")).expect("csv");
    let mut lines: Vec<&str> = text.lines().collect();
    let broken = lines[2].replace("2026-11-21T18:05:00Z", "yesterday evening");
    lines[2] = &broken;
    std::fs::write(&bad, lines.join("\n")).expect("write");
    let (code, out) = run_police(&nats, &exchange, &bad, &rejects);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("row 3: invalid, not published") && out.contains("reported_at"),
        "{out}"
    );
    let kept = std::fs::read_to_string(&rejects).expect("rejects file");
    assert_eq!(kept.lines().count(), 1);
    assert!(
        kept.contains("yesterday evening") && kept.contains("reported_at"),
        "{kept}"
    );
}
