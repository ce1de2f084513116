//! The Python client (`clients/python`) end to end, against a real nats-server and the
//! real exchange: its tests (`clients/python/tests`, pytest) publish a case sealed as
//! docs/integrating.md says, verify and look up the receipts, read the case over mTLS
//! as the receiving agency and as one without a part, watch it, and export and verify
//! the log in Python. Then the exchange's own exporter must write the same file, and
//! the Python verifier and `handoff audit verify` must agree on it, also tampered.

use std::path::Path;
use std::time::Duration;

use handoff_adapters::ids;
use handoff_e2e::python::PythonClient;
use handoff_e2e::{
    AUDITOR, Exchange, NatsServer, POLICE, PROGRAMME, agency_secret_file, events, run_handoff,
};

/// The police's record in the Python test (`test_end_to_end.py`: T, INCIDENT_REF, PERSON_REF).
const RECORD_MS: i64 = 1_764_000_000_000;
const INCIDENT_REF: &str = "I-2026-0042";
const PERSON_REF: &str = "P-17";

/// The ids the Rust adapters derive for that record, for the Python ids to match.
fn rust_ids() -> String {
    let secret = events::agency_secret(POLICE);
    serde_json::json!({
        "case_id": ids::case_id(&secret, POLICE, INCIDENT_REF),
        "pseudonym": ids::pseudonym(&secret, POLICE, PERSON_REF),
        "event_id": ids::event_id(&secret, RECORD_MS, &[POLICE, INCIDENT_REF, "incident"]),
        "step_id": ids::step_id(&secret, "ref", &[POLICE, INCIDENT_REF]),
    })
    .to_string()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_publishes_reads_watches_and_verifies_as_the_guide_says() {
    // First, so that a missing Python or package index fails before anything starts.
    let python = PythonClient::ready();
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let dir = tempfile::tempdir().expect("tmp");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    for agency in [POLICE, PROGRAMME] {
        agency_secret_file(&secrets, agency);
    }
    let (code, key) = run_handoff(&["key", "show", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{key}");
    let signing_key = key.trim().to_string();
    let stubs = dir.path().join("stubs");
    python.generate_stubs(&stubs);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("out dir");

    let envs = [
        ("HANDOFF_E2E_NATS_URL", nats.url()),
        (
            "HANDOFF_E2E_GRPC",
            format!("localhost:{}", exchange.grpc_port()),
        ),
        ("HANDOFF_E2E_CERTS", path(&exchange.certs_dir())),
        ("HANDOFF_E2E_NATS_AUTH", path(&nats.auth_dir())),
        ("HANDOFF_E2E_SECRETS", path(&secrets)),
        (
            "HANDOFF_E2E_TRANSPORT_KEY",
            path(&exchange.transport_public_path()),
        ),
        ("HANDOFF_E2E_SIGNING_KEY", signing_key.clone()),
        ("HANDOFF_E2E_OUT", path(&out)),
        ("HANDOFF_E2E_RUST_IDS", rust_ids()),
    ];
    let run = python.run(
        &stubs,
        &["-m", "pytest", "-p", "no:cacheprovider", "-v", "tests"],
        &envs,
        Duration::from_secs(180),
    );
    if !run.success {
        let log = exchange.last_log();
        let tail: Vec<&str> = log.lines().collect();
        panic!(
            "the Python client's tests failed:\n{}\nthe exchange's log ends:\n{}",
            run.output,
            tail[tail.len().saturating_sub(40)..].join("\n")
        );
    }
    let summary = run.output.lines().rev().find(|l| l.contains(" passed"));
    assert!(
        summary.is_some_and(|s| !s.contains("skipped") && !s.contains("deselected")),
        "every Python test must run here, none skipped:\n{}",
        run.output
    );
    // In the test's output, what pytest ran (cargo test -- --nocapture shows it).
    for line in run
        .output
        .lines()
        .filter(|l| l.contains("PASSED") || l.contains(" passed"))
    {
        println!("python: {line}");
    }

    // The exchange's exporter writes, byte for byte, what the Python client exported.
    let export = dir.path().join("log.jsonl");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let (code, said) = run_handoff(
        &[
            "audit",
            "export",
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &path(&exchange.certs_dir()),
            "--out",
        ],
        &[&export],
    );
    assert_eq!(code, 0, "{said}");
    let exported = std::fs::read_to_string(&export).expect("export");
    assert_eq!(
        exported,
        std::fs::read_to_string(out.join("python-export.jsonl")).expect("the Python export"),
        "the Python export differs from `handoff audit export`"
    );

    // The guide's command line and `handoff audit verify` agree, on the export as it is
    // and on one with a record altered.
    let head = exchange.head().await.sequence;
    assert!(head >= 3, "incident, referral and its acceptance: {head}");
    let verify_in_python = |file: &Path| {
        python.run(
            &stubs,
            &["handoff_export.py", &path(file), &signing_key],
            &[],
            Duration::from_secs(60),
        )
    };
    let checked = verify_in_python(&export);
    assert!(checked.success, "{}", checked.output);
    assert_eq!(
        checked.output.trim(),
        format!("verified up to sequence {head}")
    );
    let (code, said) = run_handoff(
        &["audit", "verify", "--public-key", &signing_key],
        &[&export],
    );
    assert_eq!(code, 0, "{said}");
    assert!(said.contains(&format!("OK: records 1..={head}")), "{said}");

    let mut lines: Vec<String> = exported.lines().map(String::from).collect();
    let mut record: serde_json::Value = serde_json::from_str(&lines[2]).expect("record 2");
    let envelope = record["envelope"].as_str().expect("envelope").to_string();
    let middle = envelope.len() / 2;
    let flipped = if &envelope[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    record["envelope"] = format!(
        "{}{flipped}{}",
        &envelope[..middle],
        &envelope[middle + 1..]
    )
    .into();
    lines[2] = record.to_string();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, lines.join("\n") + "\n").expect("write tampered");
    let checked = verify_in_python(&tampered);
    assert!(!checked.success, "{}", checked.output);
    assert!(
        checked.output.contains("record 2: altered"),
        "{}",
        checked.output
    );
    let (code, said) = run_handoff(
        &["audit", "verify", "--public-key", &signing_key],
        &[&tampered],
    );
    assert_ne!(code, 0, "{said}");
    assert!(said.contains("record 2 was altered"), "{said}");
}
