//! Shared support for the end-to-end tests: a real `nats-server` (JetStream,
//! free port, temp dir), the real `handoff` binary as a child process, gRPC
//! clients over TCP, and builders for valid events.
//!
//! Every test file uses this one place; none starts processes on its own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use handoff_contract::v1::cases_client::CasesClient;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use prost::Message;
use tonic::transport::Channel;

/// The agencies every test exchange registers: `(id, kind)`.
pub const AGENCIES: &[(&str, &str)] = &[
    ("police-north", "police"),
    ("ic-north", "intervention_centre"),
    ("ngo-men-north", "programme_provider"),
    ("social-north", "social_services"),
    ("probation-north", "probation"),
    ("audit", "auditor"),
    ("coord-north", "coordinator"),
];

/// Police agency id.
pub const POLICE: &str = "police-north";
/// Intervention centre id.
pub const CENTRE: &str = "ic-north";
/// Programme provider id.
pub const PROGRAMME: &str = "ngo-men-north";
/// Auditor id.
pub const AUDITOR: &str = "audit";
/// A registered agency whose certificate is revoked.
pub const REVOKED: &str = "ngo-revoked";

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
fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
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

/// A real nats-server with JetStream, on a free port, storing in a temp dir.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// Where the authorization is (shared by the nodes of a cluster).
    auth: PathBuf,
    /// Extra config: the cluster block of a cluster node.
    extra: String,
    /// `sync_interval: always` (fsync every message), as ops/nats/single.conf; else
    /// JetStream's default (fsync every 2 minutes, durability from replicas).
    sync_always: bool,
}

impl NatsServer {
    /// Starts one, configured as ops/nats/single.conf (sync_interval: always).
    pub fn start() -> NatsServer {
        NatsServer::start_syncing(true)
    }

    /// Starts one that fsyncs every message (`sync_always`) or at JetStream's default interval.
    pub fn start_syncing(sync_always: bool) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = dir.path().join("auth");
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            dir,
            auth,
            extra: String::new(),
            sync_always,
        };
        server.spawn();
        server
    }

    /// The nats-server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where `handoff nats-auth` wrote auth.conf and the users' passwords.
    pub fn auth_dir(&self) -> PathBuf {
        self.auth.clone()
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("jetstream");
        if !self.auth_dir().join("auth.conf").exists() {
            // The same generator operators use: one user per agency, publishing only as itself.
            let registry = self.dir.path().join("registry.toml");
            std::fs::write(&registry, registry_config("nats://unused", 0, "data"))
                .expect("registry config");
            let status = Command::new(handoff_binary())
                .args(["nats-auth", "--config"])
                .arg(&registry)
                .arg("--out")
                .arg(self.auth_dir())
                .stdout(Stdio::null())
                .status()
                .expect("handoff nats-auth runs");
            assert!(status.success(), "handoff nats-auth failed");
        }
        // nats-server resolves includes relative to the including file: keep a copy beside it.
        std::fs::copy(
            self.auth_dir().join("auth.conf"),
            self.dir.path().join("auth.conf"),
        )
        .expect("copy auth.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{}\nmax_payload: 2MB\njetstream {{\n  store_dir: {:?}\n{}}}\n{}\ninclude {:?}\n",
                self.port,
                store.display().to_string(),
                if self.sync_always { "  sync_interval: always\n" } else { "" },
                self.extra,
                "auth.conf"
            ),
        )
        .expect("write nats.conf");
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let mut child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        wait_for_port(
            self.port,
            "nats-server",
            &mut child,
            &self.dir.path().join("nats.log"),
        );
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.auth_dir().join(format!("{user}.password")))
            .expect("password")
            .trim()
            .to_string()
    }

    /// A connection as the exchange's NATS user, which may publish on any agency's subject
    /// (tests use it to play many agencies, and to forge what NATS itself would refuse).
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .user_and_password("handoff-exchange".into(), self.password("handoff-exchange"))
            .connect(self.url())
            .await
            .expect("connect to nats-server")
    }

    /// A connection as an agency's own NATS user, with the permissions operators give it.
    pub async fn connect_as(
        &self,
        agency: &str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::new()
            .user_and_password(agency.into(), self.password(agency))
            .custom_inbox_prefix(handoff_adapters::publisher::inbox_prefix(agency))
            .connect(self.url())
            .await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS cluster of real nats-servers with JetStream on loopback (free client and
/// route ports), sharing one authorization, as ops/nats/cluster configures it.
pub struct NatsCluster {
    /// The nodes, in order.
    pub nodes: Vec<NatsServer>,
    _auth: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other and waits until they answer.
    pub fn start(size: usize) -> NatsCluster {
        let shared = tempfile::tempdir().expect("temp dir");
        let auth = shared.path().join("auth");
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("    nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut nodes = Vec::with_capacity(size);
        for (i, route_port) in route_ports.iter().enumerate() {
            let mut node = NatsServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                auth: auth.clone(),
                extra: String::new(),
                sync_always: true,
            };
            node.extra = format!(
                "server_name: handoff-nats-{}\ncluster {{\n  name: handoff\n  listen: 127.0.0.1:{route_port}\n  routes: [\n{routes}\n  ]\n}}\n",
                i + 1
            );
            node.spawn();
            nodes.push(node);
        }
        NatsCluster {
            nodes,
            _auth: shared,
        }
    }

    /// Every node's client URL, comma-separated (as `[nats] url` takes them).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A connection as an agency's own NATS user, to any node.
    pub async fn connect_as(&self, agency: &str) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|n| n.url().parse().expect("server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .user_and_password(agency.into(), self.nodes[0].password(agency))
            .custom_inbox_prefix(handoff_adapters::publisher::inbox_prefix(agency))
            .connect(urls)
            .await
            .expect("connect to the cluster")
    }

    /// A connection as the exchange's NATS user, to any node.
    pub async fn connect(&self) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|n| n.url().parse().expect("server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .user_and_password(
                "handoff-exchange".into(),
                self.nodes[0].password("handoff-exchange"),
            )
            .connect(urls)
            .await
            .expect("connect to the cluster")
    }
}

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

/// What an exchange under test connects to: one nats-server or a cluster.
pub trait Broker {
    /// Client URL(s), comma-separated.
    fn url(&self) -> String;
    /// Where the authorization and passwords are.
    fn auth_dir(&self) -> PathBuf;
}

impl Broker for NatsServer {
    fn url(&self) -> String {
        NatsServer::url(self)
    }
    fn auth_dir(&self) -> PathBuf {
        NatsServer::auth_dir(self)
    }
}

impl Broker for NatsCluster {
    fn url(&self) -> String {
        NatsCluster::url(self)
    }
    fn auth_dir(&self) -> PathBuf {
        self.nodes[0].auth_dir()
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
        let password = self.nats_auth_dir.join("handoff-exchange.password");
        text = text.replacen(
            "[store]",
            &format!(
                "user = \"handoff-exchange\"\npassword_file = {:?}\n\n[store]",
                password.display().to_string()
            ),
            1,
        );
        if self.options.unprivileged {
            // The broker's secrets dir is root's; give the exchange its own copy.
            let own = self.dir.path().join("secrets/nats.password");
            std::fs::create_dir_all(self.dir.path().join("secrets")).expect("secrets dir");
            std::fs::copy(&password, &own).expect("copy password");
            text = text.replacen(
                &format!("{:?}", password.display().to_string()),
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
        issue_certificates(&self.config_path(), &self.certs_dir());
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
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(self.channel_as(AUDITOR).await);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status);
            if status.as_ref().ok()
                == Some(&(tonic_health::pb::health_check_response::ServingStatus::Serving as i32))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "exchange not SERVING within 20 s: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    pub async fn client_as(&self, agency: &str) -> CasesClient<Channel> {
        CasesClient::new(self.channel_as(agency).await)
    }

    /// Waits until the exchange has consumed the stream up to `stream_sequence`.
    pub async fn wait_for_position(&self, stream_sequence: u64, within: Duration) -> LogHead {
        let mut client = self.client_as(AUDITOR).await;
        let deadline = Instant::now() + within;
        loop {
            let head = client
                .get_log_head(LogHeadRequest {})
                .await
                .expect("head")
                .into_inner();
            if head.stream_position >= stream_sequence {
                return head;
            }
            assert!(
                Instant::now() < deadline,
                "exchange at stream position {} of {stream_sequence} after {within:?}\n{}",
                head.stream_position,
                self.last_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A case's current view, via GetCase, as the auditor sees it.
    pub async fn case(&self, case_id: &str) -> CaseView {
        self.client_as(AUDITOR)
            .await
            .get_case(GetCaseRequest {
                case_id: case_id.into(),
                purpose: "test".into(),
            })
            .await
            .expect("GetCase")
            .into_inner()
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
        while let Some(r) = stream.message().await.expect("log record") {
            out.push(r);
        }
        out
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A handoff.toml for the test registry (AGENCIES plus a revoked one), without TLS.
pub fn registry_config(nats_url: &str, grpc_port: u16, data_dir: &str) -> String {
    let policy = repo_root().join("ops/policy.toml");
    let mut text = format!(
        "[nats]\nurl = {nats_url:?}\nstream = \"HANDOFF_EVENTS\"\nduplicate_window_secs = 120\n\n[store]\ndata_dir = {data_dir:?}\n\n[query]\nlisten = \"127.0.0.1:{grpc_port}\"\n\n[ingest]\nbatch_max = 256\n\n[policy]\nfile = {:?}\n\n[keys]\nkek_file = \"secrets/kek\"\n",
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

/// Builders for valid events.
pub mod events {
    use super::*;

    /// A deterministic UUIDv7 for test event `n`.
    pub fn id(n: u64) -> String {
        let mut rand = [0u8; 10];
        rand[2..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(1_790_000_000_000 + n, &rand)
            .into_uuid()
            .to_string()
    }

    /// An envelope from `agency` about `case` (subject `subj-<case>`).
    pub fn envelope(n: u64, agency: &str, case: &str, event: Event) -> Envelope {
        Envelope {
            event_id: id(n),
            source_agency: agency.into(),
            case_id: case.into(),
            subject_pseudonym: format!("subj-{case}"),
            occurred_at: Some(handoff_contract::time::from_unix_ms(
                1_790_000_000_000 + n as i64 * 1000,
            )),
            actor: "test".into(),
            schema_version: handoff_contract::SCHEMA_VERSION,
            event: Some(event),
            ..Envelope::default()
        }
    }

    /// The police open a case with an incident.
    pub fn incident(n: u64, case: &str) -> Envelope {
        envelope(
            n,
            POLICE,
            case,
            Event::IncidentReported(IncidentReported {
                incident_ref: format!("I-{case}"),
                narrative: "test narrative".into(),
                area: "North".into(),
                ..Default::default()
            }),
        )
    }

    /// The police refer the case to `to`.
    pub fn referral(n: u64, case: &str, referral_id: &str, to: &str) -> Envelope {
        envelope(
            n,
            POLICE,
            case,
            Event::ReferralMade(ReferralMade {
                referral_id: referral_id.into(),
                to_agency: to.into(),
                reason: "test".into(),
                ..Default::default()
            }),
        )
    }

    /// The NATS subject an envelope is published on by its own agency.
    pub fn subject(e: &Envelope) -> String {
        handoff_contract::names::event_subject(&e.source_agency, e.event.as_ref().expect("event"))
    }

    /// Publishes raw bytes on a subject with an optional Nats-Msg-Id and returns the stream sequence.
    pub async fn publish_raw(
        js: &async_nats::jetstream::Context,
        subject: &str,
        msg_id: Option<&str>,
        body: Vec<u8>,
    ) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert("Nats-Msg-Id", id);
        }
        js.publish_with_headers(subject.to_string(), headers, body.into())
            .await
            .expect("publish")
            .await
            .expect("PubAck")
            .sequence
    }

    /// Publishes an envelope on its agency's subject with Nats-Msg-Id = event id.
    pub async fn publish(js: &async_nats::jetstream::Context, e: &Envelope) -> u64 {
        publish_raw(js, &subject(e), Some(&e.event_id), e.encode_to_vec()).await
    }
}

/// The partnership's coordinator: reads suppressed statistics, never a case.
pub const COORDINATOR: &str = "coord-north";

/// Path of a headless Chromium: `$HANDOFF_CHROMIUM`, else found or installed by
/// `ops/bin/find-chromium` (Debian's package).
pub fn chromium() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("HANDOFF_CHROMIUM").map(PathBuf::from)
            && p.exists()
        {
            return p;
        }
        let out = Command::new(repo_root().join("ops/bin/find-chromium"))
            .stderr(Stdio::inherit())
            .output()
            .expect("ops/bin/find-chromium runs");
        assert!(out.status.success(), "no chromium for the browser tests");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
    .clone()
}

/// A page as headless Chromium rendered it.
pub struct Rendered {
    /// The DOM after the page's scripts ran (`--dump-dom`).
    pub dom: String,
    /// Width and height of the screenshot, from its PNG header.
    pub size: (u32, u32),
    /// Bytes of the screenshot's PNG.
    pub png_bytes: u64,
    /// Bytes of a screenshot of an empty page of the same size, taken the same way:
    /// a rendered page with content compresses far worse than a blank one.
    pub blank_png_bytes: u64,
}

/// Renders `page` in headless Chromium into `target/screenshots/<name>.png` (kept for a
/// person to look at) and checks the screenshot has the asked size and is not blank;
/// returns what was rendered, to check its DOM.
pub fn screenshot(page: &Path, name: &str, size: (u32, u32)) -> Rendered {
    let dir = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    let rendered = render_in_browser(page, &dir.join(format!("{name}.png")), size);
    assert_eq!(rendered.size, size, "{name}: screenshot size");
    assert!(
        rendered.png_bytes > 2 * rendered.blank_png_bytes,
        "{name}: the screenshot looks blank: {} bytes, an empty page {} bytes",
        rendered.png_bytes,
        rendered.blank_png_bytes
    );
    rendered
}

/// Opens `page` (a local file: HTML, SVG) in headless Chromium, writes a screenshot
/// of `size` to `png` and returns what was rendered.
pub fn render_in_browser(page: &Path, png: &Path, size: (u32, u32)) -> Rendered {
    let profile = tempfile::tempdir().expect("browser profile dir");
    let run = |url: String, extra: &[String]| {
        let out = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--allow-file-access-from-files",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            .args(extra)
            .arg(url)
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!(
        "file://{}",
        page.canonicalize().expect("page path").display()
    );
    let dom = run(url.clone(), &["--dump-dom".to_string()]);
    run(url, &[format!("--screenshot={}", png.display())]);
    let blank = png.with_extension("blank.png");
    run(
        "about:blank".to_string(),
        &[format!("--screenshot={}", blank.display())],
    );
    let bytes = std::fs::read(png).expect("screenshot written");
    // PNG: 8-byte signature, then the IHDR chunk: length, "IHDR", width, height.
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG: {}",
        png.display()
    );
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Rendered {
        dom,
        size: (be(16), be(20)),
        png_bytes: bytes.len() as u64,
        blank_png_bytes: std::fs::metadata(&blank).map(|m| m.len()).unwrap_or(0),
    }
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
