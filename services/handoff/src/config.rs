//! `handoff.toml`: where NATS is, where the data lives, where to listen, and
//! the registry of agencies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff_domain::{Agency, AgencyKind, Registry};
use serde::Deserialize;

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
    /// The exchange's NATS user (see `handoff nats-auth`); none: no authentication.
    pub user: Option<String>,
    /// File with that user's password. Agencies' passwords lie beside it (`<agency>.password`).
    pub password_file: Option<PathBuf>,
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
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            batch_max: default_batch(),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The policy file (see ops/policy.toml), relative to this config.
    pub file: PathBuf,
}

/// The policy file: field groups per agency kind, and what consent withdrawal keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    fields: std::collections::BTreeMap<String, Vec<String>>,
    consent_withdrawn: ConsentWithdrawn,
    #[serde(default)]
    sla: SlaSection,
    #[serde(default)]
    retention: RetentionSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    years_after_closure: Option<u32>,
    check_every_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaSection {
    eviction_notice_hours: Option<u32>,
    first_contact_working_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentWithdrawn {
    keep: Vec<String>,
}

/// The checked need-to-know policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Field groups per agency kind.
    pub fields: handoff_domain::policy::FieldPolicy,
    /// Deadlines shown in inboxes.
    pub sla: handoff_domain::sla::SlaRules,
    /// When subjects are erased after their cases close, and how often that is checked.
    pub retention: Option<(handoff_domain::retention::RetentionRule, Duration)>,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: PolicyFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let groups = |names: &[String], at: &str| {
            names
                .iter()
                .map(|n| n.parse().map_err(|e| invalid(format!("{at}: {e}"))))
                .collect::<Result<Vec<handoff_domain::policy::FieldGroup>, _>>()
        };
        let mut by_kind = Vec::new();
        for (kind, names) in &file.fields {
            let kind: AgencyKind = kind
                .parse()
                .map_err(|e| invalid(format!("[fields]: {e}")))?;
            by_kind.push((kind, groups(names, &format!("[fields] {kind}"))?));
        }
        let keep = groups(&file.consent_withdrawn.keep, "[consent_withdrawn] keep")?;
        Ok(Policy {
            fields: handoff_domain::policy::FieldPolicy::new(by_kind, keep),
            sla: handoff_domain::sla::SlaRules {
                eviction_notice_hours: file.sla.eviction_notice_hours,
                first_contact_working_days: file.sla.first_contact_working_days,
            },
            retention: match file.retention.years_after_closure {
                None => None,
                Some(0) => {
                    return Err(invalid(
                        "[retention] years_after_closure must be at least 1 (leave it out to keep details until erased on request)".into(),
                    ));
                }
                Some(years) => Some((
                    handoff_domain::retention::RetentionRule {
                        years_after_closure: years,
                    },
                    Duration::from_secs(file.retention.check_every_secs.unwrap_or(3600).max(1)),
                )),
            },
        })
    }
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
    /// A revoked agency's certificates are refused (UNAUTHENTICATED).
    #[serde(default)]
    pub revoked: bool,
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
    1 << 20
}
fn default_cache_mb() -> u64 {
    handoff_log::DEFAULT_CACHE_BYTES >> 20
}

fn default_min_free_mb() -> u64 {
    64
}
fn default_batch() -> usize {
    512
}

/// A configuration that cannot be used, naming the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not the expected shape.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// Valid TOML with a value that cannot work.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What to fix.
        message: String,
    },
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.registry().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Policy::load(&config.resolve(&config.policy.file))?;
        if config.keys.kek_file.is_some() == config.keys.kek_env.is_some() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "[keys] needs exactly one of kek_file or kek_env".into(),
            });
        }
        if config.ingest.batch_max == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "[ingest] batch_max must be at least 1".into(),
            });
        }
        Ok(config)
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
    /// with its password from the password directory, if authentication is configured.
    pub fn nats_options(
        &self,
        user: Option<&str>,
    ) -> Result<async_nats::ConnectOptions, ConfigError> {
        let mut options = async_nats::ConnectOptions::new();
        if let (Some(own), Some(file)) = (&self.nats.user, &self.nats.password_file) {
            let file = self.resolve(file);
            let (user, path) = match user {
                None => (own.clone(), file),
                Some(agency) => (
                    agency.to_string(),
                    file.with_file_name(format!("{agency}.password")),
                ),
            };
            let password = std::fs::read_to_string(&path)
                .map_err(|source| ConfigError::Read { path, source })?;
            options = options.user_and_password(user, password.trim().to_string());
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

    /// Stream settings for ingest.
    pub fn stream(&self) -> handoff_ingest::StreamSettings {
        handoff_ingest::StreamSettings {
            name: self.nats.stream.clone(),
            duplicate_window: Duration::from_secs(self.nats.duplicate_window_secs),
            max_message_bytes: self.nats.max_message_bytes,
            replicas: self.nats.replicas,
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
        assert!(e.contains("lisen") && e.contains("line"), "{e}");
    }
}
