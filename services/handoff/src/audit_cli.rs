//! `handoff audit export|verify`: the log as a portable file, and its offline check.

use std::io::{BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use handoff_audit::export::{ExportWriter, verify};
use handoff_contract::v1::{CheckpointRequest, ReadLogRequest};

use crate::query_cli::{ServerArgs, connect};

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
    /// Check an export (or a live server) offline: hashes, dense sequences, chain, checkpoint signature.
    Verify {
        /// The export to check; omit and give --server to check a live exchange.
        file: Option<PathBuf>,
        /// The exchange's public key (hex, from `handoff key show`), obtained out of band.
        #[arg(long)]
        public_key: String,
        /// Check a live exchange instead of a file (needs an auditor certificate).
        #[arg(long, requires = "agency")]
        server: Option<String>,
        /// The agency to call as (an auditor).
        #[arg(long = "as", env = "HANDOFF_AGENCY")]
        agency: Option<String>,
        /// Certificates directory.
        #[arg(long, env = "HANDOFF_CERTS", default_value = "data/certs")]
        certs: PathBuf,
    },
}

async fn export(server: &ServerArgs, out: &Path, from: u64) -> anyhow::Result<u64> {
    let mut client = connect(server).await?;
    // The checkpoint first: the export ends exactly at a signed head.
    let checkpoint = client
        .get_checkpoint(CheckpointRequest {})
        .await?
        .into_inner();
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
    while let Some(record) = stream.message().await? {
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
    let text = text.trim();
    anyhow::ensure!(
        text.len() == 64,
        "the public key is 64 hex digits (as `handoff key show` prints it)"
    );
    (0..32)
        .map(|i| {
            u8::from_str_radix(&text[2 * i..2 * i + 2], 16).context("the public key is not hex")
        })
        .collect()
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
        AuditCommand::Verify {
            file,
            public_key,
            server,
            agency,
            certs,
        } => {
            let key = parse_hex(&public_key)?;
            let (path, _tmp) = match (file, server) {
                (Some(file), None) => (file, None),
                (None, Some(server)) => {
                    let tmp = tempfile::tempdir()?;
                    let path = tmp.path().join("live.jsonl");
                    let args = ServerArgs {
                        server,
                        agency: agency.unwrap_or_default(),
                        certs,
                    };
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
