//! Private by default: under a umask that keeps nothing private (000), every file
//! and directory the `handoff` binary writes — the data dir and key store of a
//! running exchange with a quarantine, a backup, an export, a rejects file, a KEK,
//! certificates and NATS nkeys — is its owner's only, and the NATS authorization
//! holds public keys, never a seed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff_e2e::events::{incident, publish, publish_raw};
use handoff_e2e::{
    AGENCIES, AUDITOR, CENTRE, Exchange, ExchangeOptions, NatsServer, POLICE, run_handoff,
};
use prost::Message;

/// Every path under `root` (itself included) that group or others may use, with its mode.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            found.push(format!("{} {mode:04o}", path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    found
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/examples")
        .join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_the_binary_writes_is_private_whatever_the_umask() {
    // The one place the umask is made permissive: every child process (nats-auth,
    // kek, certs, serve, the adapter, backup, export) inherits it. This file holds
    // one test, so nothing else in the process is affected.
    rustix::process::umask(rustix::fs::Mode::empty());
    let tmp = tempfile::tempdir().expect("tmp");
    // An existing data dir open to everyone: the exchange tightens it at start.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            data_dir: Some(data.clone()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        exchange.last_log().contains("tightened to 0700"),
        "the exchange says it tightened the data dir:\n{}",
        exchange.last_log()
    );

    // A few events, one of them refused (cut short: undecodable), so the quarantine is written.
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut sent = Vec::new();
    for n in 1..=3u64 {
        sent.push(publish(&js, &incident(n, &format!("modes-{n}"))).await);
    }
    let whole = incident(4, "modes-4").encode_to_vec();
    sent.push(
        publish_raw(
            &js,
            "handoff.events.police-north.incident_reported",
            Some("modes-cut"),
            whole[..whole.len() / 2].to_vec(),
        )
        .await,
    );
    let head = exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert_eq!((head.sequence, head.quarantined), (3, 1));

    let config = exchange.config_path();
    let backup = tmp.path().join("backup");
    let (code, out) = run_handoff(
        &["admin", "backup", "--config"],
        &[&config, Path::new("--out"), &backup],
    );
    assert_eq!(code, 0, "handoff admin backup: {out}");

    let export = tmp.path().join("log.jsonl");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let (code, out) = run_handoff(
        &[
            "audit", "export", "--server", &server, "--as", AUDITOR, "--certs", &certs, "--out",
        ],
        &[&export],
    );
    assert_eq!(code, 0, "handoff audit export: {out}");

    // The police adapter on an export with a row the schema refuses: a rejects file beside it.
    let input = tmp.path().join("police.csv");
    let text = std::fs::read_to_string(example("police-records.csv")).expect("csv");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = lines[2].replace("2026-11-21T18:05:00Z", "yesterday evening");
    std::fs::write(&input, lines.join("\n")).expect("write input");
    let agency_secret = tmp.path().join("agency/police.secret");
    let (code, out) = run_handoff(
        &["agency-secret", "--agency", POLICE, "--out"],
        &[&agency_secret],
    );
    assert_eq!(code, 0, "handoff agency-secret: {out}");
    let mut args = exchange.adapter_args("police", POLICE, &nats, &agency_secret);
    args.extend(["--refer-to".into(), CENTRE.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run_handoff(&args, &[&input]);
    assert_eq!(code, 2, "one row refused: {out}");
    let rejects = tmp.path().join("police.csv.rejects.jsonl");
    assert!(rejects.is_file(), "no rejects file: {out}");

    // The file-writing commands on their own, into directories they create.
    let kek_dir = tmp.path().join("kek");
    let (code, out) = run_handoff(&["kek", "--out"], &[&kek_dir.join("kek")]);
    assert_eq!(code, 0, "handoff kek: {out}");
    let (code, out) = run_handoff(
        &["transport-key", "new", "--out"],
        &[&kek_dir.join("transport.keys")],
    );
    assert_eq!(code, 0, "handoff transport-key new: {out}");
    let certs_dir = tmp.path().join("certs");
    let (code, out) = run_handoff(
        &["certs", "--config"],
        &[&config, Path::new("--out"), &certs_dir],
    );
    assert_eq!(code, 0, "handoff certs: {out}");
    let auth_dir = tmp.path().join("nats-auth");
    let (code, out) = run_handoff(
        &["nats-auth", "--config"],
        &[&config, Path::new("--out"), &auth_dir],
    );
    assert_eq!(code, 0, "handoff nats-auth: {out}");

    let mut offending = Vec::new();
    for root in [
        data.clone(),
        data.join(handoff_keyring::KEYS_DIR),
        exchange
            .kek_path()
            .parent()
            .expect("secrets dir")
            .to_path_buf(),
        exchange.certs_dir(),
        nats.auth_dir(),
        backup.clone(),
        export.clone(),
        rejects.clone(),
        kek_dir,
        agency_secret.parent().expect("agency dir").to_path_buf(),
        certs_dir,
        auth_dir.clone(),
    ] {
        assert!(root.exists(), "{} was not written", root.display());
        offending.extend(open_to_others(&root));
    }
    offending.sort();
    offending.dedup();
    assert!(
        offending.is_empty(),
        "open to group or others:\n{}",
        offending.join("\n")
    );

    // The server's authorization holds every user's public nkey and no seed.
    for dir in [nats.auth_dir(), auth_dir] {
        let conf = std::fs::read_to_string(dir.join("auth.conf")).expect("auth.conf");
        // Seeds of users start "SU", public keys "U": no word of the file may be a seed.
        assert!(
            !conf
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word.starts_with("SU")),
            "a seed in {}:\n{conf}",
            dir.display()
        );
        for user in AGENCIES
            .iter()
            .map(|(id, _)| *id)
            .chain(["handoff-exchange"])
        {
            let seed = std::fs::read_to_string(dir.join(format!("{user}.nk"))).expect("seed");
            assert!(seed.starts_with("SU"), "{user}.nk holds a user seed");
            assert!(!conf.contains(seed.trim()), "{user}'s seed in auth.conf");
            let public = nkeys::KeyPair::from_seed(seed.trim())
                .expect("seed")
                .public_key();
            assert!(
                conf.contains(&format!("nkey: {public:?}")),
                "{user}'s public key is in {}",
                dir.display()
            );
        }
    }
}
