//! `handoff transport-key`: the deployment's transport key epochs, which
//! publishers seal personal details and free text to before publishing.
//!
//! The keys file is secret like the KEK and the same on every exchange node; the
//! public key of its newest epoch is what agencies get (`public`), beside the
//! exchange's signing key. Rotation adds an epoch; `prune` destroys the private key
//! of every epoch superseded longer ago than the stream keeps messages, so what the
//! broker still holds sealed to it is unreadable from then on.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use handoff_transport::TransportKeys;

/// What `handoff transport-key` does.
#[derive(Subcommand)]
pub enum TransportKeyCommand {
    /// Create the keys file with a first epoch (mode 0600; kept if it exists).
    New {
        /// Where to write it ([keys] transport_file). Keep it like the KEK.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add the next epoch; give publishers its public key, then prune the old one later.
    Rotate {
        /// The keys file.
        #[arg(long)]
        keys: PathBuf,
    },
    /// Print the newest epoch's public key (one line), for publishers' --transport-key.
    Public {
        /// The keys file.
        #[arg(long)]
        keys: PathBuf,
        /// Also write it to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Destroy every epoch superseded at least the stream's max age ago.
    Prune {
        /// The keys file.
        #[arg(long)]
        keys: PathBuf,
        /// How long the stream keeps a message ([nats] max_age_days), days.
        #[arg(long, default_value_t = 30)]
        max_age_days: u64,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Runs one `handoff transport-key` command.
pub fn run(cmd: TransportKeyCommand) -> anyhow::Result<()> {
    match cmd {
        TransportKeyCommand::New { out } => {
            if out.exists() {
                TransportKeys::load(&out)?;
                println!("{} already holds transport keys; kept", out.display());
                return Ok(());
            }
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            TransportKeys::generate(now())?.save(&out)?;
            println!("{}", out.display());
        }
        TransportKeyCommand::Rotate { keys } => {
            let mut held = TransportKeys::load(&keys)?;
            let epoch = held.rotate(now())?;
            held.save(&keys)?;
            println!(
                "epoch {epoch} added to {}: copy it to every node, restart them, then give publishers its public key",
                keys.display()
            );
        }
        TransportKeyCommand::Public { keys, out } => {
            let line = TransportKeys::load(&keys)?.current_public().to_line();
            if let Some(out) = out {
                std::fs::write(&out, format!("{line}\n"))
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            println!("{line}");
        }
        TransportKeyCommand::Prune { keys, max_age_days } => {
            let mut held = TransportKeys::load(&keys)?;
            let max_age = i64::try_from(max_age_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
            let gone = held.prune(now(), max_age);
            held.save(&keys)?;
            if gone.is_empty() {
                println!("no epoch is old enough to destroy");
            } else {
                println!(
                    "destroyed the private keys of epoch(s) {gone:?}: copy {} to every node",
                    keys.display()
                );
            }
        }
    }
    Ok(())
}
