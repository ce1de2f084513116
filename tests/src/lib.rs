//! Shared support for the end-to-end tests: a real `nats-server` (JetStream,
//! free port, temp dir), the real `handoff` binary as a child process, gRPC
//! clients over TCP, and builders for valid events. Split by job: `nats`
//! (brokers), `exchange` (the process under test), `events` (what agencies
//! publish), `receipts` (what they get back), `browser` (headless Chromium).
//!
//! Every test file uses this one place; none starts processes on its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod browser;
pub mod events;
mod exchange;
mod nats;
pub mod python;
mod reads;
mod receipts;
mod transport;

pub use browser::{Rendered, chromium, render_in_browser, screenshot};
pub use exchange::{Exchange, ExchangeOptions};
pub use nats::{Broker, NatsCluster, NatsServer};
pub use receipts::{ReceiptFeed, receipts_in};
pub use transport::{seal, transport_keys, transport_public, write_transport_files};

/// The agencies every test exchange registers: `(id, kind)`.
pub const AGENCIES: &[(&str, &str)] = &[
    ("police-north", "police"),
    ("ic-north", "intervention_centre"),
    ("ngo-men-north", "programme_provider"),
    ("social-north", "social_services"),
    ("probation-north", "probation"),
    ("court-north", "court"),
    ("support-north", "victim_support"),
    ("audit", "auditor"),
    ("coord-north", "coordinator"),
];

/// Police agency id.
pub const POLICE: &str = "police-north";
/// Intervention centre id.
pub const CENTRE: &str = "ic-north";
/// Programme provider id.
pub const PROGRAMME: &str = "ngo-men-north";
/// The district court.
pub const COURT: &str = "court-north";
/// Victim support, acting for the endangered person.
pub const SUPPORT: &str = "support-north";
/// Auditor id.
pub const AUDITOR: &str = "audit";
/// A registered agency whose certificate is revoked.
pub const REVOKED: &str = "ngo-revoked";

/// The partnership's coordinator: reads suppressed statistics, never a case.
pub const COORDINATOR: &str = "coord-north";

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// Path of a `nats-server` binary: `$HANDOFF_NATS_SERVER`, else found or installed by `ops/bin/find-nats-server`.
pub fn nats_server_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("HANDOFF_NATS_SERVER") {
            return PathBuf::from(p);
        }
        let out = Command::new(repo_root().join("ops/bin/find-nats-server"))
            .stderr(Stdio::inherit())
            .output()
            .expect("ops/bin/find-nats-server runs");
        assert!(
            out.status.success(),
            "no nats-server could be found or installed"
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let modified = if path.is_dir() {
                newest_source(&path)
            } else {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH)
            };
            newest = newest.max(modified);
        }
    }
    newest
}

/// Path of the `handoff` binary of this build. `cargo test --workspace` builds it
/// (the `handoff` package has integration tests); it is rebuilt here only when
/// missing or older than the sources, e.g. under `cargo test -p handoff-e2e`.
pub fn handoff_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (a test) or target/<profile>/<tool> (the load tool)
        // -> target/<profile>/handoff
        let profile_dir = exe
            .parent()
            .map(|dir| match dir.file_name() {
                Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
                _ => dir,
            })
            .expect("the executable lives in target/<profile>");
        let binary = profile_dir.join("handoff");
        let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
        let root = repo_root();
        let sources = newest_source(&root.join("services"))
            .max(newest_source(&root.join("proto")))
            .max(newest_source(&root.join("schemas")));
        if built.is_none_or(|b| b < sources) {
            let cargo = option_env!("CARGO").unwrap_or("cargo");
            let mut build = Command::new(cargo);
            build
                .args(["build", "--quiet", "-p", "handoff", "--bin", "handoff"])
                .current_dir(&root);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "building the handoff binary failed");
        }
        binary
    })
    .clone()
}

/// Waits until `child` listens on `port`; if it dies first, fails with the end of its `log`.
pub(crate) fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            panic!(
                "{what} exited with {status} before listening; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A handoff.toml for the test registry (AGENCIES plus a revoked one), without TLS.
pub fn registry_config(nats_url: &str, grpc_port: u16, data_dir: &str) -> String {
    let policy = repo_root().join("ops/policy.toml");
    let mut text = format!(
        "[nats]\nurl = {nats_url:?}\nstream = \"HANDOFF_EVENTS\"\nduplicate_window_secs = 120\n\n[store]\ndata_dir = {data_dir:?}\n\n[query]\nlisten = \"127.0.0.1:{grpc_port}\"\n\n[ingest]\nbatch_max = 256\n\n[policy]\nfile = {:?}\n\n[keys]\nkek_file = \"secrets/kek\"\ntransport_file = \"secrets/transport.keys\"\n",
        policy.display().to_string()
    );
    for (id, kind) in AGENCIES {
        text.push_str(&format!(
            "\n[[agency]]\nid = {id:?}\nname = {id:?}\nkind = {kind:?}\n"
        ));
    }
    text.push_str(&format!(
        "\n[[agency]]\nid = {REVOKED:?}\nname = \"revoked\"\nkind = \"programme_provider\"\nrevoked = true\n"
    ));
    text
}

/// `HANDOFF_SOAK` (default 1): how many times more events and faults the fault
/// tests run when asked for a longer soak.
pub fn soak() -> u64 {
    std::env::var("HANDOFF_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// `ExchangeOptions::config_lines` giving every agency an ingress quota of at least
/// `messages` (the default, 20 000 an hour, is sized for one agency's normal hour; a
/// longer soak publishes more).
pub fn agency_quota_for(messages: u64) -> Vec<(String, String)> {
    let messages = messages.max(20_000);
    let mb = (messages * 4096).div_ceil(1 << 20).max(16);
    vec![(
        "[nats]".to_string(),
        format!("agency_quota_messages = {messages}\nagency_quota_mb = {mb}"),
    )]
}

/// Runs the `handoff` binary with `args` then `extra` paths; returns its exit code
/// and what it printed (stdout, then stderr).
pub fn run_handoff(args: &[&str], extra: &[&Path]) -> (i32, String) {
    let out = Command::new(handoff_binary())
        .args(args)
        .args(extra)
        .output()
        .expect("handoff runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Writes the fixed test secret of `agency` ([`events::agency_secret`]) into `dir`
/// as `handoff agency-secret` does (64 hex digits, 0600), for `--agency-secret`.
pub fn agency_secret_file(dir: &Path, agency: &str) -> PathBuf {
    let path = dir.join(format!("{agency}.secret"));
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).expect("create the agency secret");
        let hex = events::agency_secret(agency).to_hex();
        std::io::Write::write_all(&mut file, format!("{hex}\n").as_bytes())
            .expect("write the agency secret");
    }
    path
}

/// Runs `handoff certs` for a config into `out` (a CA, the server, one per agency).
pub fn issue_certificates(config: &Path, out: &Path) {
    let status = Command::new(handoff_binary())
        .args(["certs", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("handoff certs runs");
    assert!(status.success(), "handoff certs failed");
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}
