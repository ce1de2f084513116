//! `handoff audit export|verify`: the log as a portable file, and its offline check.

use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use handoff_audit::export::{ExportWriter, verify};
use handoff_contract::v1::{GetCheckpointRequest, ReadLogRequest};

use crate::query_cli::{ServerArgs, connect};

/// An optional live exchange to check against, called as an auditor.
#[derive(clap::Args)]
pub struct LiveArgs {
    /// The live exchange's gRPC address (needs an auditor certificate).
    #[arg(long, requires = "agency")]
    server: Option<String>,
    /// The agency to call as (an auditor).
    #[arg(long = "as", env = "HANDOFF_AGENCY")]
    agency: Option<String>,
    /// Certificates directory.
    #[arg(long, env = "HANDOFF_CERTS", default_value = "data/certs")]
    certs: PathBuf,
}

impl LiveArgs {
    fn server(&self) -> Option<ServerArgs> {
        self.server.as_ref().map(|server| ServerArgs {
            server: server.clone(),
            agency: self.agency.clone().unwrap_or_default(),
            certs: self.certs.clone(),
        })
    }
}

/// Auditor commands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write the log (up to the latest signed checkpoint) to a JSON Lines file.
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// First sequence (1 = from the start).
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Rebuild every projection from an export into a fresh data dir and compare with the live exchange.
    Replay {
        /// The export (verified first).
        file: PathBuf,
        /// The exchange's public key (hex).
        #[arg(long)]
        public_key: String,
        /// The exchange's config (for the agency registry the events were decided with).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// A fresh directory for the rebuilt store.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print every case as it stood at this log sequence or RFC 3339 time, instead of comparing.
        #[arg(long)]
        as_of: Option<String>,
        /// Compare the rebuilt projections with a live exchange.
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Check an export (or a live server) offline: hashes, dense sequences, chain, checkpoint signature.
    Verify {
        /// The export to check; omit and give --server to check a live exchange.
        file: Option<PathBuf>,
        /// The exchange's public key (hex, from `handoff key show`), obtained out of band.
        #[arg(long)]
        public_key: String,
        /// Check a live exchange instead of a file.
        #[command(flatten)]
        live: LiveArgs,
    },
}

async fn export(server: &ServerArgs, out: &Path, from: u64) -> anyhow::Result<u64> {
    let mut client = connect(server).await?;
    // The checkpoint first: the export ends exactly at a signed head.
    let checkpoint = client
        .get_checkpoint(GetCheckpointRequest {})
        .await?
        .into_inner()
        .checkpoint
        .context("the exchange answered without a checkpoint")?;
    let file =
        std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = ExportWriter::new(
        std::io::BufWriter::new(file),
        from.max(1),
        checkpoint.sequence,
    )?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(checkpoint.sequence.saturating_sub(from.max(1)) + 1)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut stream = client
        .read_log(ReadLogRequest {
            from_sequence: from.max(1),
            to_sequence: checkpoint.sequence,
        })
        .await?
        .into_inner();
    let mut written = 0;
    while let Some(item) = stream.message().await? {
        let record = item
            .record
            .context("the exchange streamed an item without a record")?;
        writer.record(&record)?;
        written += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let file = writer.finish(&checkpoint)?;
    file.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .context("cannot sync the export to disk")?;
    Ok(written)
}

fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    handoff_contract::hex::decode(text.trim())
        .filter(|k| k.len() == 32)
        .context("the public key is 64 hex digits, as `handoff key show` prints it")
}

/// Runs an audit command; `Ok(false)` when verification found a problem (exit non-zero).
pub async fn run(cmd: AuditCommand) -> anyhow::Result<bool> {
    match cmd {
        AuditCommand::Export { server, out, from } => {
            let n = export(&server, &out, from).await?;
            println!(
                "{n} records exported to {} (ending with a signed checkpoint)",
                out.display()
            );
            Ok(true)
        }
        AuditCommand::Replay {
            file,
            public_key,
            config,
            data_dir,
            as_of,
            live,
        } => {
            let key = parse_hex(&public_key)?;
            let open = || {
                std::fs::File::open(&file)
                    .with_context(|| format!("cannot open {}", file.display()))
            };
            if let Err(finding) = verify(BufReader::new(open()?), &key) {
                println!("FAILED: {finding}");
                return Ok(false);
            }
            let config = crate::config::Config::load(&config)?;
            let registry = config.registry().map_err(anyhow::Error::msg)?;
            // Records are streamed from the file into the store, never all held.
            let records =
                || Ok::<_, anyhow::Error>(handoff_audit::export::records(BufReader::new(open()?)));
            let until = match as_of.as_deref() {
                None => Until::End,
                Some(text) => match text.parse::<u64>() {
                    Ok(seq) => Until::Sequence(seq),
                    Err(_) => {
                        let t = handoff_contract::time::parse_rfc3339(text).with_context(|| {
                            format!("--as-of {text:?} is neither a sequence nor an RFC 3339 time")
                        })?;
                        Until::Time(handoff_contract::time::to_unix_ms(&t))
                    }
                },
            };
            if as_of.is_some()
                && !records()?
                    .next()
                    .transpose()?
                    .is_some_and(|r| until.includes(&r))
            {
                println!("no records at or before {}", as_of.unwrap_or_default());
                return Ok(true);
            }
            // An unreadable line ends the import with its error.
            let records = records()?.take_while(|r| match r {
                Ok(r) => until.includes(r),
                Err(_) => true,
            });
            let log = replay(records, &registry, &data_dir).await?;
            let head = log.head();
            if as_of.is_some() {
                let (cases, _) = log.list_cases("", usize::MAX, |v| Ok(Some(v)))?;
                println!(
                    "{} cases as of log sequence {}:",
                    cases.len(),
                    head.sequence
                );
                for case in cases {
                    println!(
                        "{}",
                        handoff_contract::json::to_json(&case, "handoff.v1.CaseView")
                    );
                }
                return Ok(true);
            }
            let digest = log.projection_digest()?;
            println!(
                "replayed {} records into {}: head {} hash {}, projection digest {}",
                head.sequence,
                data_dir.display(),
                head.sequence,
                handoff_log::hex(&head.hash),
                handoff_log::hex(&digest)
            );
            let Some(args) = live.server() else {
                return Ok(true);
            };
            let live = connect(&args)
                .await?
                .get_projection_digest(handoff_contract::v1::GetProjectionDigestRequest {})
                .await?
                .into_inner()
                .digest
                .context("the exchange answered without a digest")?;
            if live.sequence != head.sequence {
                println!(
                    "the live exchange is at sequence {}, the export at {}: export again to compare",
                    live.sequence, head.sequence
                );
                return Ok(false);
            }
            if live.digest.as_slice() == digest.as_slice() {
                println!(
                    "EQUAL: the live projections equal the replayed ones at sequence {}",
                    head.sequence
                );
                Ok(true)
            } else {
                println!(
                    "DIFFERENT: the live projections differ from the replayed ones at sequence {}",
                    head.sequence
                );
                Ok(false)
            }
        }
        AuditCommand::Verify {
            file,
            public_key,
            live,
        } => {
            let key = parse_hex(&public_key)?;
            let (path, _tmp) = match (file, live.server()) {
                (Some(file), None) => (file, None),
                (None, Some(args)) => {
                    let tmp = tempfile::tempdir()?;
                    let path = tmp.path().join("live.jsonl");
                    export(&args, &path, 1).await?;
                    (path, Some(tmp))
                }
                _ => anyhow::bail!("give either an export file or --server, not both"),
            };
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            match verify(BufReader::new(file), &key) {
                Ok(v) => {
                    println!(
                        "OK: records {}..={} ({} records): hashes, sequence, chain and signed checkpoint verify",
                        v.from, v.to, v.records
                    );
                    Ok(true)
                }
                Err(finding) => {
                    println!("FAILED: {finding}");
                    Ok(false)
                }
            }
        }
    }
}

/// How far a replay goes.
#[derive(Clone, Copy)]
enum Until {
    /// Every record.
    End,
    /// The records up to this sequence.
    Sequence(u64),
    /// The records recorded at or before this time (unix ms).
    Time(i64),
}

impl Until {
    /// Whether the replay takes this record (and so every record before it).
    fn includes(self, record: &handoff_contract::v1::LogRecord) -> bool {
        match self {
            Until::End => true,
            Until::Sequence(seq) => record.sequence <= seq,
            Until::Time(ms) => record.recorded_at_unix_ms <= ms,
        }
    }
}

/// Rebuilds every projection from an export's records into a fresh log in `data_dir`:
/// the records are imported as they are (each checked against its hash and its
/// predecessor) and folded by the same fold as `handoff admin rebuild`, so a replay
/// and a rebuild cannot disagree.
pub async fn replay(
    records: impl Iterator<
        Item = Result<handoff_contract::v1::LogRecord, handoff_audit::export::Finding>,
    >,
    registry: &handoff_domain::Registry,
    data_dir: &Path,
) -> anyhow::Result<handoff_log::Log> {
    anyhow::ensure!(
        !data_dir.exists() || std::fs::read_dir(data_dir)?.next().is_none(),
        "{} is not empty: replay into a fresh directory",
        data_dir.display()
    );
    let log = handoff_log::Log::open(data_dir)?;
    log.import_records(records, registry).map_err(|e| {
        anyhow::anyhow!("the export does not replay ({e}): was the agency registry changed?")
    })?;
    Ok(log)
}
