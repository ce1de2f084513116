//! Keyed ids end to end: an agency's adapter derives its case ids, pseudonyms
//! and event ids under the agency's own secret (`handoff agency-secret`). The
//! same secret derives the same ids again (a re-run is all duplicates), another
//! secret derives others, and the unkeyed formula of the person id, which
//! anyone could compute, is not what the exchange logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handoff_contract::v1::Envelope;
use handoff_e2e::{CENTRE, Exchange, NatsServer, POLICE, run_handoff};
use prost::Message;
use sha2::{Digest, Sha256};

fn example(name: &str) -> PathBuf {
    handoff_e2e::repo_root().join("schemas/examples").join(name)
}

/// `handoff agency-secret` for the police into `path`: exit code and output.
fn agency_secret(path: &Path) -> (i32, String) {
    let out = path.display().to_string();
    run_handoff(&["agency-secret", "--agency", POLICE, "--out", &out], &[])
}

/// The police adapter on `input` with the secret in `secret`.
fn run_police(
    nats: &NatsServer,
    exchange: &Exchange,
    secret: &Path,
    input: &Path,
) -> (i32, String) {
    let rejects = secret.with_extension("rejects.jsonl");
    let mut args = exchange.adapter_args("police", POLICE, nats, secret);
    args.extend(["--refer-to".into(), CENTRE.into(), "--rejects".into()]);
    args.push(rejects.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_handoff(&args, &[input])
}

/// The case each input record's events went to, from the adapter's report lines
/// (`<file> <label>: <type> <event id> case <case id>: <outcome>`).
fn cases_by_record(report: &str) -> BTreeMap<String, String> {
    let mut cases = BTreeMap::new();
    for line in report.lines() {
        let Some((head, rest)) = line.split_once(": ") else {
            continue;
        };
        let Some(label) = head.rsplit_once(' ').map(|(_, l)| l) else {
            continue;
        };
        let Some(case) = rest
            .split_once(" case ")
            .and_then(|(_, c)| c.split_once(':'))
            .map(|(c, _)| c)
        else {
            continue;
        };
        cases.insert(label.to_string(), case.to_string());
    }
    cases
}

/// What an id was before agencies had secrets: SHA-256 over length-prefixed parts,
/// which anyone who knows (or guesses) the person id can compute.
fn unkeyed(kind: &str, label: &str, local: &str) -> String {
    let mut h = Sha256::new();
    for p in [label, POLICE, local] {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let hex = handoff_contract::hex::encode(&h.finalize());
    format!("{POLICE}/{kind}-{}", &hex[..20])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_secret_derives_the_same_ids_and_another_secret_others() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let dir = tempfile::tempdir().expect("tmp");
    let input = example("police-records.csv");

    // The agency creates its secret: 64 hex digits, readable by its owner only, never replaced.
    let secret_a = dir.path().join("a/police-north.secret");
    let (code, out) = agency_secret(&secret_a);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&secret_a).expect("secret written");
    assert!(
        text.trim().len() == 64 && text.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{text:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_a)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret is private");
    }
    let (code, out) = agency_secret(&secret_a);
    assert_ne!(code, 0, "an existing secret is kept: {out}");
    assert!(out.contains("refusing to overwrite"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&secret_a).expect("secret"),
        text,
        "and left as it was"
    );

    // Same file, same secret: the second run publishes nothing new.
    let (code, first) = run_police(&nats, &exchange, &secret_a, &input);
    assert_eq!(code, 0, "{first}");
    assert!(first.contains("4 accepted, 0 duplicate"), "{first}");
    let (code, again) = run_police(&nats, &exchange, &secret_a, &input);
    assert_eq!(code, 0, "{again}");
    assert!(
        again.contains("0 accepted, 4 duplicate"),
        "re-running with the same secret publishes nothing new:\n{again}"
    );
    let cases_a = cases_by_record(&first);
    assert_eq!(cases_a.len(), 2, "two records, two cases: {first}");
    assert_eq!(cases_by_record(&again), cases_a, "the same case ids");

    // Another secret: other case ids, other pseudonyms, so new cases.
    let secret_b = dir.path().join("b/police-north.secret");
    let (code, out) = agency_secret(&secret_b);
    assert_eq!(code, 0, "{out}");
    let (code, other) = run_police(&nats, &exchange, &secret_b, &input);
    assert_eq!(code, 0, "{other}");
    assert!(
        other.contains("4 accepted, 0 duplicate"),
        "another secret derives other event ids:\n{other}"
    );
    let cases_b = cases_by_record(&other);
    assert_eq!(cases_b.len(), 2, "{other}");
    for (record, case) in &cases_b {
        assert_ne!(
            Some(case),
            cases_a.get(record),
            "{record}: the same case id"
        );
        assert!(case.starts_with(&format!("{POLICE}/case-")), "{case}");
    }
    assert_eq!(exchange.head().await.sequence, 8, "4 events per secret");

    // The row-2 eviction is about 790714/0456, incident NP-2026-004712.
    let view_a = exchange.case(&cases_a["2"]).await;
    let view_b = exchange.case(&cases_b["2"]).await;
    assert!(
        view_a
            .subject_pseudonym
            .starts_with(&format!("{POLICE}/subj-")),
        "{}",
        view_a.subject_pseudonym
    );
    assert_ne!(
        view_a.subject_pseudonym, view_b.subject_pseudonym,
        "another secret, another pseudonym"
    );
    // What the exchange logged is not what anyone could compute from the person ids.
    let persons = [
        ("790714/0456", "NP-2026-004712"),
        ("900130/0789", "NP-2026-004713"),
    ];
    let logged: Vec<Envelope> = exchange
        .read_log()
        .await
        .iter()
        .map(|r| Envelope::decode(r.envelope.as_slice()).expect("logged envelope"))
        .collect();
    assert_eq!(logged.len(), 8);
    let pseudonyms: BTreeSet<&str> = logged
        .iter()
        .map(|e| e.subject_pseudonym.as_str())
        .collect();
    let case_ids: BTreeSet<&str> = logged.iter().map(|e| e.case_id.as_str()).collect();
    assert_eq!(
        (pseudonyms.len(), case_ids.len()),
        (4, 4),
        "two persons and two cases per secret"
    );
    for (person, incident) in persons {
        let guessable = unkeyed("subj", "handoff-subject", person);
        assert!(!pseudonyms.contains(guessable.as_str()), "{guessable}");
        let guessable = unkeyed("case", "handoff-case", incident);
        assert!(!case_ids.contains(guessable.as_str()), "{guessable}");
    }
}

#[test]
fn an_adapter_without_its_secret_publishes_nothing_and_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("police-north.secret");
    let input = example("police-records.csv");
    // Nothing listens on this port: the adapter must stop before it connects.
    let nats_url = format!("nats://127.0.0.1:{}", handoff_e2e::free_port());
    let (code, out) = run_handoff(
        &[
            "adapter",
            "police",
            "--agency",
            POLICE,
            "--refer-to",
            CENTRE,
            "--nats",
            &nats_url,
            "--agency-secret",
            &missing.display().to_string(),
        ],
        &[&input],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&missing.display().to_string()) && out.contains("handoff agency-secret"),
        "the error names the file and the fix: {out}"
    );
    let (code, out) = run_handoff(
        &["adapter", "police", "--agency", POLICE, "--nats", &nats_url],
        &[&input],
    );
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--agency-secret"), "{out}");
}
