//! `handoff.toml`: where NATS is, where the data lives, where to listen, and
//! the registry of agencies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff_domain::{Agency, AgencyKind, Registry};
use serde::Deserialize;

mod located;
mod policy_file;

pub use located::ConfigError;
use located::{find_key, located};
pub use policy_file::Policy;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// NATS connection and stream.
    pub nats: NatsSection,
    /// The log store.
    pub store: StoreSection,
    /// The gRPC query service.
    pub query: QuerySection,
    /// The ingest loop.
    #[serde(default)]
    pub ingest: IngestSection,
    /// Where the need-to-know policy is.
    pub policy: PolicySection,
    /// Where the key-encryption key comes from.
    pub keys: KeysSection,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Registered agencies.
    #[serde(rename = "agency", default)]
    pub agencies: Vec<AgencyEntry>,
    /// The directory the file was read from; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[nats]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// e.g. `nats://127.0.0.1:4222`; a cluster's nodes comma-separated.
    pub url: String,
    /// JetStream stream name.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// JetStream duplicate window, seconds.
    #[serde(default = "default_window")]
    pub duplicate_window_secs: u64,
    /// Stream replicas (3 on a cluster).
    #[serde(default = "one")]
    pub replicas: usize,
    /// Largest event message accepted, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Each agency's ingress quota: the most bytes of messages it may have the broker
    /// hold within the window (its ingress stream refuses more).
    #[serde(default = "default_agency_quota_mb")]
    pub agency_quota_mb: u64,
    /// ... and the most messages.
    #[serde(default = "default_agency_quota_messages")]
    pub agency_quota_messages: u64,
    /// The quota's window: how long a message stays in its ingress stream, seconds.
    #[serde(default = "default_agency_quota_window")]
    pub agency_quota_window_secs: u64,
    /// How long the streams keep a message, days: the broker's copy of what agencies
    /// published is gone after it, and a node catches up only from a backup younger than it.
    #[serde(default = "default_max_age_days")]
    pub max_age_days: u64,
    /// For tests only: the max age in seconds, instead of `max_age_days`.
    pub max_age_secs: Option<u64>,
    /// The exchange's NATS user's nkey seed (`handoff-exchange.nk`, see `handoff nats-auth`);
    /// agencies' seeds lie beside it (`<agency>.nk`). None: no authentication.
    pub nkey_file: Option<PathBuf>,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// The sled data directory.
    pub data_dir: PathBuf,
    /// Below this many MiB free on its file system, ingest stores and receipts nothing
    /// until space returns (sled cannot recover from a failed write without a restart).
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
    /// sled's page cache in MiB: the larger part of the exchange's memory.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
}

/// `[query]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// mTLS. Without it no caller has an identity, so every case read is refused.
    pub tls: Option<TlsSection>,
    /// Calls each agency may make per second, sustained (more are RESOURCE_EXHAUSTED).
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: f64,
    /// Calls each agency may make at once after a quiet spell.
    #[serde(default = "default_call_burst")]
    pub call_burst: f64,
    /// Streams (WatchCases, ReadLog) each agency may have open at once.
    #[serde(default = "default_streams")]
    pub streams_per_agency: usize,
}

/// `[query.tls]`: PEM files, relative to the config file (`handoff certs` writes them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The CA that signs agency client certificates.
    pub ca: PathBuf,
    /// The exchange's server certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// `[keys]`: the key-encryption key that wraps every subject's data key. Keep it
/// outside the data dir (and out of backups of it): whoever holds both can read
/// every subject not yet erased.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// A file holding the KEK as 64 hex digits (`handoff kek --out FILE` makes one), relative to this config.
    pub kek_file: Option<PathBuf>,
    /// Or the name of an environment variable holding it.
    pub kek_env: Option<String>,
    /// The transport key epochs publishers seal to (`handoff transport-key new --out
    /// FILE` makes it), relative to this config. Secret like the KEK, the same file on
    /// every node; publishers get only its public key (`handoff transport-key public`).
    pub transport_file: PathBuf,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `GET /metrics` answers in the Prometheus text format; none: no metrics.
    pub listen: Option<SocketAddr>,
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Most messages per committed (flushed) batch.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Messages waiting and the stored position unmoved this long: ingest is stuck
    /// (health NOT_SERVING, `handoff_ingest_stuck` 1).
    #[serde(default = "default_stuck_after")]
    pub stuck_after_secs: u64,
    /// Bytes of quarantine each agency's refused messages may take; past it they are
    /// kept as summaries (reason, size, digest, ids) only.
    #[serde(default = "default_quarantine_quota_mb")]
    pub quarantine_quota_mb: u64,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            batch_max: default_batch(),
            stuck_after_secs: default_stuck_after(),
            quarantine_quota_mb: default_quarantine_quota_mb(),
        }
    }
}

fn default_quarantine_quota_mb() -> u64 {
    16
}
fn default_agency_quota_mb() -> u64 {
    16
}
fn default_agency_quota_messages() -> u64 {
    20_000
}
fn default_agency_quota_window() -> u64 {
    3600
}
fn default_calls_per_second() -> f64 {
    50.0
}
fn default_call_burst() -> f64 {
    200.0
}
fn default_streams() -> usize {
    4
}

fn default_stuck_after() -> u64 {
    30
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file (see ops/policy.toml), relative to this config.
    pub file: PathBuf,
}

/// `[[agency]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyEntry {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Kind, e.g. `police`.
    pub kind: String,
    /// A revoked agency's certificates are refused (UNAUTHENTICATED) and `handoff
    /// nats-auth` leaves out its NATS user; `handoff admin revoke` records it in the log.
    #[serde(default)]
    pub revoked: bool,
    /// This agency's ingress quota in MiB, instead of `[nats] agency_quota_mb`.
    pub quota_mb: Option<u64>,
    /// ... and in messages, instead of `[nats] agency_quota_messages`.
    pub quota_messages: Option<u64>,
}

fn default_max_age_days() -> u64 {
    30
}
fn default_stream() -> String {
    "HANDOFF_EVENTS".into()
}
fn default_window() -> u64 {
    120
}
fn one() -> usize {
    1
}
fn default_max_message() -> usize {
    64 << 10
}
fn default_cache_mb() -> u64 {
    handoff_log::DEFAULT_CACHE_BYTES >> 20
}

/// Whether `dir` exists as a writable directory or could be created (its nearest
/// existing ancestor is a writable directory); nothing is created.
fn creatable(dir: &Path) -> Result<(), String> {
    let mut probe = dir;
    loop {
        if probe.exists() {
            if !probe.is_dir() {
                return Err(format!("{} is not a directory", probe.display()));
            }
            return handoff_log::check_writable(probe)
                .map_err(|e| format!("cannot write in {}: {e}", probe.display()));
        }
        match probe.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe = p,
            _ => return Ok(()), // relative to the working directory
        }
    }
}

fn default_min_free_mb() -> u64 {
    64
}
fn default_batch() -> usize {
    512
}

impl Config {
    /// Reads and checks a config file; errors name the file, line and column, and the fix.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| located(path, &text, &e))?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.check(path, &text)?;
        Ok(config)
    }

    /// The checks serde cannot make, each located in `text`.
    fn check(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let at = |(line, col): (usize, usize), what: String, fix: &str| ConfigError::At {
            path: path.to_path_buf(),
            line,
            col,
            what,
            fix: fix.to_string(),
        };
        let mut ids = std::collections::HashSet::new();
        for (i, a) in self.agencies.iter().enumerate() {
            if let Err(e) = a.kind.parse::<AgencyKind>() {
                return Err(at(
                    find_key(text, "agency", Some(i), "kind"),
                    format!("[[agency]] {}: {e}", a.id),
                    "use one of the agency kinds the message lists",
                ));
            }
            if !ids.insert(a.id.as_str()) {
                return Err(at(
                    find_key(text, "agency", Some(i), "id"),
                    format!("agency id {:?} is registered twice", a.id),
                    "give each [[agency]] its own id, or remove the repeated entry",
                ));
            }
        }
        if let Err(message) = self.registry() {
            let place = if self.agencies.is_empty() {
                (text.lines().count().max(1), 1)
            } else {
                find_key(text, "agency", Some(0), "")
            };
            return Err(at(
                place,
                message,
                "register each agency once, as in ops/handoff.toml",
            ));
        }
        for u in self.nats.url.split(',') {
            if let Err(e) = u.trim().parse::<async_nats::ServerAddr>() {
                return Err(at(
                    find_key(text, "nats", None, "url"),
                    format!("[nats] url {u:?}: {e}"),
                    "write nats://HOST:PORT, several comma-separated for a cluster",
                ));
            }
        }
        let policy_at = find_key(text, "policy", None, "file");
        let policy_path = self.resolve(&self.policy.file);
        if !policy_path.is_file() {
            return Err(at(
                policy_at,
                format!("policy file {} does not exist", policy_path.display()),
                "point [policy] file at a policy (ops/policy.toml is an example), relative to this config",
            ));
        }
        if let Err(e) = Policy::load(&policy_path) {
            return Err(at(
                policy_at,
                format!("the policy it names is not usable: {e}"),
                "fix the policy file at the place named",
            ));
        }
        if self.keys.kek_file.is_some() == self.keys.kek_env.is_some() {
            return Err(at(
                find_key(text, "keys", None, ""),
                "[keys] needs exactly one of kek_file or kek_env".into(),
                "set kek_file (make one with `handoff kek --out FILE`) or kek_env, not both",
            ));
        }
        if self.nats.max_age_days == 0 || self.nats.max_age_secs == Some(0) {
            return Err(at(
                find_key(text, "nats", None, "max_age_days"),
                "[nats] max_age_days must be at least 1".into(),
                "set it to e.g. 30 (backups must be younger than it), or leave it out",
            ));
        }
        if self.ingest.batch_max == 0 {
            return Err(at(
                find_key(text, "ingest", None, "batch_max"),
                "[ingest] batch_max must be at least 1".into(),
                "set it to e.g. 512, or leave it out",
            ));
        }
        if self.ingest.stuck_after_secs == 0 {
            return Err(at(
                find_key(text, "ingest", None, "stuck_after_secs"),
                "[ingest] stuck_after_secs must be at least 1".into(),
                "set it to e.g. 30, or leave it out",
            ));
        }
        if let Some(metrics) = self.metrics.listen {
            let q = self.query.listen;
            let overlap =
                metrics.ip() == q.ip() || metrics.ip().is_unspecified() || q.ip().is_unspecified();
            if metrics.port() == q.port() && overlap {
                return Err(at(
                    find_key(text, "metrics", None, "listen"),
                    format!("[metrics] listen {metrics} takes the port of [query] listen {q}"),
                    "give metrics a port of its own, e.g. 9464",
                ));
            }
        }
        let data_dir = self.data_dir();
        if let Err(why) = creatable(&data_dir) {
            return Err(at(
                find_key(text, "store", None, "data_dir"),
                format!("data dir {}: {why}", data_dir.display()),
                "point data_dir at a directory the exchange's user may create and write",
            ));
        }
        Ok(())
    }

    /// Files other commands create (`handoff kek`, `handoff certs`, `handoff nats-auth`)
    /// that `serve` needs: the KEK, the TLS files and the NATS nkey seed, each located.
    pub fn missing_files(&self, path: &Path) -> Vec<ConfigError> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut wanted: Vec<(&str, &str, &Path, &str)> = Vec::new();
        if let Some(kek) = &self.keys.kek_file {
            wanted.push((
                "keys",
                "kek_file",
                kek,
                "create it with `handoff kek --out FILE`",
            ));
        }
        wanted.push((
            "keys",
            "transport_file",
            &self.keys.transport_file,
            "create it with `handoff transport-key new --out FILE`",
        ));
        if let Some(tls) = &self.query.tls {
            let fix = "create development certificates with `handoff certs`, or point at your own";
            wanted.push(("query.tls", "ca", &tls.ca, fix));
            wanted.push(("query.tls", "cert", &tls.cert, fix));
            wanted.push(("query.tls", "key", &tls.key, fix));
        }
        if let Some(file) = &self.nats.nkey_file {
            wanted.push((
                "nats",
                "nkey_file",
                file,
                "write it with `handoff nats-auth`",
            ));
        }
        wanted
            .into_iter()
            .filter(|(_, _, file, _)| !self.resolve(file).is_file())
            .map(|(table, key, file, fix)| {
                let (line, col) = find_key(&text, table, None, key);
                ConfigError::At {
                    path: path.to_path_buf(),
                    line,
                    col,
                    what: format!("{} does not exist", self.resolve(file).display()),
                    fix: fix.to_string(),
                }
            })
            .collect()
    }

    /// The agency registry from the `[[agency]]` entries.
    pub fn registry(&self) -> Result<Registry, String> {
        let mut agencies = Vec::with_capacity(self.agencies.len());
        for a in &self.agencies {
            let kind: AgencyKind = a
                .kind
                .parse()
                .map_err(|e| format!("[[agency]] {}: {e}", a.id))?;
            agencies.push(Agency {
                id: a.id.clone(),
                name: a.name.clone(),
                kind,
            });
        }
        if agencies.is_empty() {
            return Err(
                "no [[agency]] entries: register at least the agencies that publish".into(),
            );
        }
        Registry::new(agencies).map_err(|e| format!("[[agency]]: {e}"))
    }

    /// The data dir, resolved against the config file's directory.
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir.join(&self.store.data_dir)
    }

    /// A path from the config, resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The directory holding the CA and the agency certificates, if TLS is configured.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        let tls = self.query.tls.as_ref()?;
        self.resolve(&tls.ca).parent().map(Path::to_path_buf)
    }

    /// The need-to-know policy the config names.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        Policy::load(&self.resolve(&self.policy.file))
    }

    /// NATS connect options for `user` (the exchange's own, or an agency's for the demo),
    /// with its nkey seed from the seeds' directory, if authentication is configured.
    pub fn nats_options(
        &self,
        user: Option<&str>,
    ) -> Result<async_nats::ConnectOptions, ConfigError> {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(file) = &self.nats.nkey_file {
            let file = self.resolve(file);
            let path = match user {
                None => file,
                Some(agency) => file.with_file_name(format!("{agency}.nk")),
            };
            let seed = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { path, source })?;
            options = options.nkey(seed.trim().to_string());
        }
        Ok(options)
    }

    /// The key-encryption key, from the file or environment variable `[keys]` names.
    pub fn kek(&self) -> Result<handoff_keyring::Kek, handoff_keyring::KeyringError> {
        match (&self.keys.kek_file, &self.keys.kek_env) {
            (Some(file), _) => handoff_keyring::Kek::from_file(&self.resolve(file)),
            (None, Some(var)) => handoff_keyring::Kek::from_env(var),
            (None, None) => Err(handoff_keyring::KeyringError::KekUnavailable {
                source_name: "[keys]".into(),
                detail: "neither kek_file nor kek_env is set".into(),
            }),
        }
    }

    /// The transport key epochs, from the file `[keys] transport_file` names.
    pub fn transport_keys(
        &self,
    ) -> Result<handoff_transport::TransportKeys, handoff_transport::TransportError> {
        handoff_transport::TransportKeys::load(&self.resolve(&self.keys.transport_file))
    }

    /// The NATS servers `[nats] url` lists (comma-separated for a cluster).
    pub fn nats_servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        self.nats
            .url
            .split(',')
            .map(|u| {
                u.trim().parse().map_err(|e| ConfigError::Invalid {
                    path: self.base_dir.join("(config)"),
                    message: format!("[nats] url {u:?}: {e}"),
                })
            })
            .collect()
    }

    /// Ids of revoked agencies.
    pub fn revoked(&self) -> Vec<String> {
        self.agencies
            .iter()
            .filter(|a| a.revoked)
            .map(|a| a.id.clone())
            .collect()
    }

    /// How long the streams keep a message (`[nats] max_age_days`, or `max_age_secs` in tests).
    pub fn max_age(&self) -> Duration {
        match self.nats.max_age_secs {
            Some(secs) => Duration::from_secs(secs),
            None => Duration::from_secs(self.nats.max_age_days.saturating_mul(86_400)),
        }
    }

    /// Stream settings for ingest: an ingress stream with its quota for every agency
    /// and for the exchange itself.
    pub fn stream(&self) -> handoff_ingest::StreamSettings {
        let as_limit = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let window = Duration::from_secs(self.nats.agency_quota_window_secs.max(1));
        let quota =
            |mb: Option<u64>, messages: Option<u64>, agency: &str| handoff_ingest::Ingress {
                agency: agency.to_string(),
                max_bytes: as_limit(
                    mb.unwrap_or(self.nats.agency_quota_mb)
                        .saturating_mul(1 << 20),
                ),
                max_messages: as_limit(messages.unwrap_or(self.nats.agency_quota_messages)),
                window,
            };
        let mut ingress: Vec<_> = self
            .agencies
            .iter()
            .map(|a| quota(a.quota_mb, a.quota_messages, &a.id))
            .collect();
        ingress.push(quota(None, None, handoff_contract::names::EXCHANGE_SOURCE));
        handoff_ingest::StreamSettings {
            name: self.nats.stream.clone(),
            duplicate_window: Duration::from_secs(self.nats.duplicate_window_secs),
            max_message_bytes: self.nats.max_message_bytes,
            replicas: self.nats.replicas,
            max_age: self.max_age(),
            ingress,
        }
    }

    /// Each agency's share of calls and streams on the query service.
    pub fn call_quota(&self) -> handoff_query::CallQuota {
        handoff_query::CallQuota {
            per_second: self.query.calls_per_second.max(0.001),
            burst: self.query.call_burst.max(1.0),
            streams: self.query.streams_per_agency.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("handoff.toml");
        std::fs::write(&path, text).expect("write");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/policy.toml");
        std::fs::copy(shipped, dir.path().join("policy.toml")).expect("policy");
        Config::load(&path)
    }

    #[test]
    fn a_policy_naming_an_unknown_group_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[fields]\npolice = [\"gossip\"]\n[consent_withdrawn]\nkeep = []\n",
        )
        .expect("write");
        let e = Policy::load(&path).expect_err("unknown group").to_string();
        assert!(e.contains("policy.toml") && e.contains("gossip"), "{e}");
    }

    const MINIMAL: &str = r#"
[nats]
url = "nats://127.0.0.1:4222"
[store]
data_dir = "data"
[query]
listen = "127.0.0.1:50051"
[policy]
file = "policy.toml"
[keys]
kek_env = "HANDOFF_TEST_KEK"
transport_file = "transport.keys"
[[agency]]
id = "police-north"
name = "Police"
kind = "police"
"#;

    #[test]
    fn the_shipped_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/handoff.toml");
        let config = Config::load(&path).expect("ops/handoff.toml is valid");
        assert!(config.registry().expect("registry").iter().count() >= 5);
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        assert!(load(MINIMAL).is_ok());
        let bad_kind = MINIMAL.replace("kind = \"police\"", "kind = \"polizei\"");
        let e = load(&bad_kind).expect_err("bad kind").to_string();
        assert!(e.contains("handoff.toml") && e.contains("polizei"), "{e}");
        let typo = MINIMAL.replace("listen =", "lisen =");
        let e = load(&typo).expect_err("typo").to_string();
        assert!(
            e.contains("lisen") && e.contains("handoff.toml:7:1:"),
            "{e}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let broken = MINIMAL.replace("[store]", "[store");
        let e = load(&broken).expect_err("syntax").to_string();
        assert!(e.contains("handoff.toml:4:"), "{e}");
        assert!(e.contains(" — "), "a fix follows the problem: {e}");
    }

    #[test]
    fn an_unknown_field_names_its_line_and_the_allowed_fields() {
        let typo = MINIMAL.replace("data_dir =", "datadir =");
        let e = load(&typo).expect_err("unknown field").to_string();
        let (problem, fix) = e.split_once(" — ").expect("problem — fix");
        assert!(
            problem.contains("handoff.toml:5:1:") && problem.contains("datadir"),
            "{e}"
        );
        assert!(
            fix.contains("data_dir") && fix.contains("min_free_mb") && fix.contains("cache_mb"),
            "{e}"
        );
    }

    #[test]
    fn a_password_from_before_nkeys_names_the_new_field() {
        let old = MINIMAL.replace(
            "url = \"nats://127.0.0.1:4222\"",
            "url = \"nats://127.0.0.1:4222\"\npassword_file = \"nats-auth/handoff-exchange.password\"",
        );
        let e = load(&old).expect_err("password_file").to_string();
        assert!(
            e.contains("handoff.toml:4:1:") && e.contains("nkey_file"),
            "{e}"
        );
    }

    #[test]
    fn a_duplicate_agency_names_the_second_entry() {
        let twice = format!(
            "{MINIMAL}\n[[agency]]\nid = \"ic\"\nname = \"IC\"\nkind = \"intervention_centre\"\n\n[[agency]]\nid = \"police-north\"\nname = \"Again\"\nkind = \"police\"\n"
        );
        let line = twice
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("id = \"police-north\""))
            .nth(1)
            .map(|(n, _)| n + 1)
            .expect("second entry");
        let e = load(&twice).expect_err("duplicate").to_string();
        assert!(e.contains(&format!("handoff.toml:{line}:1:")), "{e}");
        assert!(e.contains("police-north") && e.contains("twice"), "{e}");
    }

    #[test]
    fn semantic_errors_are_located_too() {
        let same_port = format!("{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:50051\"\n");
        let e = load(&same_port).expect_err("same port").to_string();
        let line = same_port.lines().count();
        assert!(
            e.contains(&format!("handoff.toml:{line}:1:")) && e.contains("port"),
            "{e}"
        );
        let no_policy = MINIMAL.replace("file = \"policy.toml\"", "file = \"nowhere.toml\"");
        let e = load(&no_policy).expect_err("missing policy").to_string();
        assert!(
            e.contains("handoff.toml:9:1:") && e.contains("nowhere.toml"),
            "{e}"
        );
        let bad_addr = MINIMAL.replace("127.0.0.1:50051", "localhost");
        let e = load(&bad_addr).expect_err("bad address").to_string();
        assert!(
            e.contains("handoff.toml:7:") && e.contains("IP:PORT"),
            "{e}"
        );
    }
}
