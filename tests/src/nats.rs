//! Real nats-servers: one, or a cluster, with JetStream and the authorization
//! `handoff nats-auth` generates.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{free_port, handoff_binary, nats_server_binary, registry_config, wait_for_port};

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

    /// Where `handoff nats-auth` wrote auth.conf and the users' nkey seeds.
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

    /// Where this server's JetStream keeps its streams (`store_dir`).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
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

    /// Reloads its configuration as an operator does after `handoff nats-auth`
    /// rewrote the authorization (`nats-server --signal reload`, i.e. SIGHUP).
    pub fn reload(&self) {
        std::fs::copy(
            self.auth_dir().join("auth.conf"),
            self.dir.path().join("auth.conf"),
        )
        .expect("copy auth.conf");
        let pid = self.pid().expect("nats-server runs");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGHUP to nats-server");
        // nats-server applies a reload within milliseconds; give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    /// The nkey seed `handoff nats-auth` made for `user` (an agency or `handoff-exchange`).
    pub fn seed(&self, user: &str) -> String {
        std::fs::read_to_string(self.auth_dir().join(format!("{user}.nk")))
            .expect("nkey seed")
            .trim()
            .to_string()
    }

    /// A connection as the exchange's NATS user, which may publish on any agency's subject
    /// (tests use it to play many agencies, and to forge what NATS itself would refuse).
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .nkey(self.seed("handoff-exchange"))
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
            .nkey(self.seed(agency))
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

    fn addresses(&self) -> Vec<async_nats::ServerAddr> {
        self.nodes
            .iter()
            .map(|n| n.url().parse().expect("server address"))
            .collect()
    }

    /// A connection as an agency's own NATS user, to any node.
    pub async fn connect_as(&self, agency: &str) -> async_nats::Client {
        let urls = self.addresses();
        async_nats::ConnectOptions::new()
            .nkey(self.nodes[0].seed(agency))
            .custom_inbox_prefix(handoff_adapters::publisher::inbox_prefix(agency))
            .connect(urls)
            .await
            .expect("connect to the cluster")
    }

    /// A connection as the exchange's NATS user, to any node.
    pub async fn connect(&self) -> async_nats::Client {
        let urls = self.addresses();
        async_nats::ConnectOptions::new()
            .nkey(self.nodes[0].seed("handoff-exchange"))
            .connect(urls)
            .await
            .expect("connect to the cluster")
    }
}

/// What an exchange under test connects to: one nats-server or a cluster.
pub trait Broker {
    /// Client URL(s), comma-separated.
    fn url(&self) -> String;
    /// Where the authorization and the users' nkey seeds are.
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
