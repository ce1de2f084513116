//! The `handoff serve` process under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff_contract::v1::cases_service_client::CasesServiceClient;
use handoff_contract::v1::*;
use prost::Message;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::nats::Broker;
use crate::{
    AUDITOR, free_port, handoff_binary, issue_certificates, registry_config, repo_root,
    run_handoff, wait_for_port,
};

/// The `handoff serve` process under test, with its own data dir and gRPC port.
pub struct Exchange {
    child: Option<Child>,
    dir: tempfile::TempDir,
    grpc_port: u16,
    metrics_port: u16,
    nats_url: String,
    nats_auth_dir: PathBuf,
    starts: u32,
    options: ExchangeOptions,
}

/// How an exchange under test differs from the shipped configuration.
#[derive(Debug, Clone, Default)]
pub struct ExchangeOptions {
    /// Text replacements in a copy of ops/policy.toml, e.g. a shorter retention check.
    pub policy_replace: Vec<(String, String)>,
    /// Run with a controllable clock (`HANDOFF_CLOCK_FILE`), set with [`Exchange::set_clock`].
    pub clock: Option<String>,
    /// Stream replicas (3 on a cluster); 0 = the default (1).
    pub replicas: usize,
    /// Start from this backup (`handoff admin restore`) instead of an empty data dir.
    pub restore_from: Option<PathBuf>,
    /// Use this key-encryption key (another node's: one KEK per deployment) instead of a new one.
    pub kek_from: Option<PathBuf>,
    /// Keep the store here (an absolute path, e.g. on a small file system) instead of the temp dir.
    pub data_dir: Option<PathBuf>,
    /// `[store] min_free_mb`, if not the default.
    pub min_free_mb: Option<u64>,
    /// Run the exchange as an unprivileged user (`nobody` when the tests run as root),
    /// so file permissions bind it as they would in production.
    pub unprivileged: bool,
    /// `HANDOFF_LOG` (tracing filter), if not the tests' chatty default.
    pub log_filter: Option<String>,
    /// `[ingest] batch_max`, if not the tests' 256.
    pub batch_max: Option<usize>,
    /// `[ingest] stuck_after_secs`, if not the default (30).
    pub stuck_after_secs: Option<u64>,
    /// Lines added to the config's sections, e.g. `("[nats]", "agency_quota_messages = 40")`.
    pub config_lines: Vec<(String, String)>,
    /// Do not wait for SERVING after a start (a node meant to refuse reads for now).
    pub unready: bool,
}

/// The uid and gid an unprivileged exchange runs as, if the tests run as root.
fn unprivileged_identity() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").expect("/proc/self");
    (me.uid() == 0).then_some((65534, 65534))
}

/// Hands `path` and everything under it to `owner`.
fn chown_tree(path: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            chown_tree(&entry.expect("entry").path(), (uid, gid));
        }
    }
}

impl Exchange {
    /// Starts `handoff serve` against `nats` and waits until its overall gRPC health
    /// says SERVING (the query service is up and ingest is consuming the stream).
    pub async fn start(nats: &impl Broker) -> Exchange {
        Exchange::start_with(nats, ExchangeOptions::default()).await
    }

    /// Like [`Exchange::start`], with a changed policy or a controllable clock.
    pub async fn start_with(nats: &impl Broker, options: ExchangeOptions) -> Exchange {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut exchange = Exchange {
            child: None,
            dir,
            grpc_port: free_port(),
            metrics_port: free_port(),
            nats_url: nats.url(),
            nats_auth_dir: nats.auth_dir(),
            starts: 0,
            options,
        };
        if let Some(now) = exchange.options.clock.clone() {
            exchange.set_clock(&now);
        }
        exchange.write_config();
        if let Some(backup) = exchange.options.restore_from.clone() {
            let (code, out) = run_handoff(
                &["admin", "restore", "--config"],
                &[&exchange.config_path(), Path::new("--from"), &backup],
            );
            assert_eq!(code, 0, "handoff admin restore: {out}");
        }
        exchange.spawn().await;
        exchange
    }

    /// Sets the time the exchange's retention rule sees (RFC 3339); needs `clock` in the options.
    pub fn set_clock(&self, rfc3339: &str) {
        std::fs::write(self.dir.path().join("clock"), rfc3339).expect("write clock");
    }

    /// What `GET /metrics` answers now (Prometheus text format).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)) else {
            return String::new();
        };
        let _ = stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }

    /// The value of one metric line (exact name and labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// The file holding the key-encryption key (outside the data dir).
    pub fn kek_path(&self) -> PathBuf {
        self.dir.path().join("secrets/kek")
    }

    /// The gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The config file the exchange runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("handoff.toml")
    }

    /// The exchange's signing public key, as `handoff key show` prints it (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        let out = Command::new(handoff_binary())
            .args(["key", "show", "--config"])
            .arg(self.config_path())
            .output()
            .expect("key show runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(text.len(), 64, "{text}");
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
            .collect()
    }

    /// The sled data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.options
            .data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn write_config(&self) {
        let mut text = registry_config(&self.nats_url, self.grpc_port, "data");
        text = text.replacen(
            "[policy]",
            &format!(
                "[metrics]\nlisten = \"127.0.0.1:{}\"\n\n[policy]",
                self.metrics_port
            ),
            1,
        );
        if let Some(n) = self.options.batch_max {
            text = text.replacen("batch_max = 256", &format!("batch_max = {n}"), 1);
        }
        if let Some(secs) = self.options.stuck_after_secs {
            text = text.replacen(
                "[ingest]\n",
                &format!("[ingest]\nstuck_after_secs = {secs}\n"),
                1,
            );
        }
        let mut store = format!("data_dir = {:?}", self.data_dir().display().to_string());
        if let Some(mb) = self.options.min_free_mb {
            store.push_str(&format!("\nmin_free_mb = {mb}"));
        }
        text = text.replacen("data_dir = \"data\"", &store, 1);
        if self.options.replicas > 0 {
            text = text.replacen(
                "duplicate_window_secs = 120",
                &format!(
                    "duplicate_window_secs = 120\nreplicas = {}",
                    self.options.replicas
                ),
                1,
            );
        }
        for (section, line) in &self.options.config_lines {
            assert!(
                text.contains(section.as_str()),
                "the config has no {section}"
            );
            text = text.replacen(section.as_str(), &format!("{section}\n{line}"), 1);
        }
        text.push_str(
            "\n[query.tls]\nca = \"certs/ca.pem\"\ncert = \"certs/server.pem\"\nkey = \"certs/server.key\"\n",
        );
        if !self.options.policy_replace.is_empty() {
            let shipped = repo_root().join("ops/policy.toml");
            let mut policy = std::fs::read_to_string(&shipped).expect("ops/policy.toml");
            for (from, to) in &self.options.policy_replace {
                assert!(
                    policy.contains(from.as_str()),
                    "ops/policy.toml has no {from:?}"
                );
                policy = policy.replace(from.as_str(), to);
            }
            let path = self.dir.path().join("policy.toml");
            std::fs::write(&path, policy).expect("write policy");
            text = text.replacen(
                &format!("file = {:?}", shipped.display().to_string()),
                "file = \"policy.toml\"",
                1,
            );
        }
        let seed = self.nats_auth_dir.join("handoff-exchange.nk");
        text = text.replacen(
            "[store]",
            &format!("nkey_file = {:?}\n\n[store]", seed.display().to_string()),
            1,
        );
        if self.options.unprivileged {
            // The broker's secrets dir is root's; give the exchange its own copy.
            let own = self.dir.path().join("secrets/handoff-exchange.nk");
            std::fs::create_dir_all(self.dir.path().join("secrets")).expect("secrets dir");
            std::fs::copy(&seed, &own).expect("copy nkey seed");
            text = text.replacen(
                &format!("{:?}", seed.display().to_string()),
                &format!("{:?}", own.display().to_string()),
                1,
            );
        }
        std::fs::write(self.config_path(), text).expect("write handoff.toml");
        if let Some(kek) = &self.options.kek_from {
            std::fs::create_dir_all(self.dir.path().join("secrets")).expect("secrets dir");
            std::fs::copy(kek, self.kek_path()).expect("copy kek");
        } else {
            let status = Command::new(handoff_binary())
                .args(["kek", "--out"])
                .arg(self.kek_path())
                .stdout(Stdio::null())
                .status()
                .expect("handoff kek runs");
            assert!(status.success(), "handoff kek failed");
        }
        crate::write_transport_files(
            &self.dir.path().join("secrets/transport.keys"),
            &self.transport_public_path(),
        );
        issue_certificates(&self.config_path(), &self.certs_dir());
    }

    /// The arguments of `handoff adapter <kind>` run as `agency` against this exchange on
    /// `nats`: its NATS seed, its secret (`secret`), the transport public key. Callers add
    /// the rest (`--refer-to`, `--rejects`, the input).
    pub fn adapter_args(
        &self,
        kind: &str,
        agency: &str,
        nats: &crate::NatsServer,
        secret: &Path,
    ) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "adapter".into(),
            kind.into(),
            "--agency".into(),
            agency.into(),
            "--nats".into(),
            nats.url(),
            "--nats-nkey-file".into(),
            path(&nats.auth_dir().join(format!("{agency}.nk"))),
            "--agency-secret".into(),
            path(secret),
            "--transport-key".into(),
            path(&self.transport_public_path()),
        ]
    }

    /// The transport public key file publishers seal to (`--transport-key`).
    pub fn transport_public_path(&self) -> PathBuf {
        self.dir.path().join("secrets/transport.pub")
    }

    /// Where the CA, the server's and every agency's certificate are.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Issues a certificate from the exchange's own CA to an agency it does not know.
    pub fn issue_unregistered_certificate(&self, agency: &str) {
        let config = self.dir.path().join("stranger.toml");
        let text = std::fs::read_to_string(self.config_path()).expect("config");
        std::fs::write(
            &config,
            format!("{text}\n[[agency]]\nid = {agency:?}\nname = \"x\"\nkind = \"police\"\n"),
        )
        .expect("write");
        issue_certificates(&config, &self.certs_dir());
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.path().join(format!("handoff-{}.log", self.starts)))
                .expect("exchange log");
        let mut command = Command::new(handoff_binary());
        if let Some(identity) = unprivileged_identity().filter(|_| self.options.unprivileged) {
            use std::os::unix::process::CommandExt;
            chown_tree(self.dir.path(), identity);
            if self.options.data_dir.is_some() && self.data_dir().exists() {
                chown_tree(&self.data_dir(), identity);
            }
            command.uid(identity.0).gid(identity.1);
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env(
                "HANDOFF_LOG",
                self.options
                    .log_filter
                    .as_deref()
                    .unwrap_or("info,handoff_ingest=debug"),
            )
            .envs(
                self.options
                    .clock
                    .as_ref()
                    .map(|_| ("HANDOFF_CLOCK_FILE", self.dir.path().join("clock"))),
            )
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("handoff serve starts");
        let log_path = self.dir.path().join(format!("handoff-{}.log", self.starts));
        wait_for_port(self.grpc_port, "handoff serve", &mut child, &log_path);
        self.child = Some(child);
        if !self.options.unready {
            self.wait_until_serving(Duration::from_secs(20)).await;
        }
    }

    /// The overall gRPC health (`""`) now, or why it could not be asked.
    pub async fn health(&self) -> Result<ServingStatus, tonic::Status> {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.channel_as(AUDITOR).await);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner()
            .status;
        Ok(ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown))
    }

    /// Waits until the overall gRPC health says SERVING; fails after `within` with the log.
    pub async fn wait_until_serving(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let status = self.health().await;
            if status.as_ref().ok() == Some(&ServingStatus::Serving) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "exchange not SERVING within {within:?}: {status:?}\n{}",
                self.last_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The directory the exchange runs in: its config, secrets, certificates, logs
    /// (`handoff-<n>.log`) and, unless given another, its data dir.
    pub fn home(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// What the exchange logged in its latest run (for failure messages).
    pub fn last_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("handoff-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Kills the process with SIGKILL: no shutdown, no flush beyond what it already did.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process as an operator does (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !sent {
            let _ = child.kill();
        }
        child.wait().ok()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Starts it again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A gRPC channel over TCP with mTLS, presenting `certificate` (files `<name>.pem`/`.key`
    /// in `certs`), or none; trusting `certs/ca.pem`.
    pub async fn try_channel(
        &self,
        certs: &Path,
        certificate: Option<&str>,
    ) -> Result<Channel, tonic::transport::Error> {
        let read = |name: String| {
            std::fs::read(certs.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let server_ca = std::fs::read(self.certs_dir().join("ca.pem")).expect("server CA");
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(server_ca))
            .domain_name("localhost");
        if let Some(name) = certificate {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(format!("{name}.pem")),
                read(format!("{name}.key")),
            ));
        }
        Channel::from_shared(format!("https://127.0.0.1:{}", self.grpc_port))
            .expect("uri")
            .tls_config(tls)?
            .connect()
            .await
    }

    /// A channel as `agency`, with the certificate the exchange's CA issued to it.
    pub async fn channel_as(&self, agency: &str) -> Channel {
        self.try_channel(&self.certs_dir(), Some(agency))
            .await
            .expect("gRPC connect")
    }

    /// A `Cases` client calling as `agency`.
    pub async fn client_as(&self, agency: &str) -> CasesServiceClient<Channel> {
        CasesServiceClient::new(self.channel_as(agency).await)
    }

    /// Waits until the exchange has decided every message in `sent` (each agency's
    /// ingress stream up to the latest sequence sent there) and returns the head.
    pub async fn wait_for<'a>(
        &self,
        sent: impl IntoIterator<Item = &'a crate::events::Sent>,
        within: Duration,
    ) -> LogHead {
        let mut want: std::collections::BTreeMap<&str, u64> = Default::default();
        for s in sent {
            let top = want.entry(s.agency.as_str()).or_default();
            *top = (*top).max(s.sequence);
        }
        self.head_when(within, |head| {
            let behind: Vec<String> = want
                .iter()
                .filter(|(agency, sequence)| {
                    !head
                        .ingress
                        .iter()
                        .any(|p| p.agency == **agency && p.sequence >= **sequence)
                })
                .map(|(agency, sequence)| format!("{agency} {sequence}"))
                .collect();
            (!behind.is_empty())
                .then(|| format!("has not decided {behind:?}; ingress at {:?}", head.ingress))
        })
        .await
    }

    /// Waits until the exchange has consumed the events stream up to `stream_sequence`.
    pub async fn wait_for_position(&self, stream_sequence: u64, within: Duration) -> LogHead {
        self.head_when(within, |head| {
            (head.stream_position < stream_sequence).then(|| {
                format!(
                    "at stream position {} of {stream_sequence}",
                    head.stream_position
                )
            })
        })
        .await
    }

    /// Polls the head (as the auditor) until `waiting` says nothing is missing, and
    /// returns it; fails after `within` with what was missing and the exchange's log.
    async fn head_when(
        &self,
        within: Duration,
        waiting: impl Fn(&LogHead) -> Option<String>,
    ) -> LogHead {
        let mut client = self.client_as(AUDITOR).await;
        let deadline = Instant::now() + within;
        loop {
            let head = client
                .get_log_head(GetLogHeadRequest {})
                .await
                .expect("head")
                .into_inner()
                .head
                .expect("a head");
            let Some(missing) = waiting(&head) else {
                return head;
            };
            assert!(
                Instant::now() < deadline,
                "exchange {missing} after {within:?}\n{}",
                self.last_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The event ids of the whole log, in log order.
    pub async fn logged_event_ids(&self) -> Vec<String> {
        self.read_log()
            .await
            .iter()
            .map(|r| {
                Envelope::decode(r.envelope.as_slice())
                    .expect("logged envelope")
                    .event_id
            })
            .collect()
    }

    /// The whole log, via ReadLog (as the auditor).
    pub async fn read_log(&self) -> Vec<LogRecord> {
        let mut stream = self
            .client_as(AUDITOR)
            .await
            .read_log(ReadLogRequest::default())
            .await
            .expect("read log")
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.message().await.expect("log record") {
            out.push(item.record.expect("a record"));
        }
        out
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.kill();
    }
}
