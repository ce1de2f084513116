//! `handoff`: the exchange's one binary. Serves ingest and queries, runs the
//! agency adapters, queries cases, and plays the demo scenario.

mod admin;
mod admin_socket;
mod agency_secret;
mod audit_cli;
mod certs;
mod config;
mod demo;
mod directory_cli;
mod erasure;
mod gauges;
mod metrics;
mod nats_auth;
mod private;
mod query_cli;
mod report;
mod restore_gate;
mod revocation;
mod serve;
mod transport_key;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use handoff_adapters::{AdapterKind, AgencySecret, Outcome, Publisher};

#[derive(Parser)]
#[command(
    name = "handoff",
    version,
    about = "Inter-agency information exchange for work with perpetrators of domestic violence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the exchange: ingest from NATS JetStream into the log, and serve gRPC queries.
    Serve {
        /// The TOML config (see ops/handoff.toml).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
    },
    /// Publish an agency's records into the exchange and report what it answered.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Read cases from the exchange over gRPC.
    #[command(subcommand)]
    Case(query_cli::CaseCommand),
    /// The referral funnel per month for the coordinator (small numbers suppressed).
    Report(report::ReportArgs),
    /// The public service directory: list it, or export it as HTML and HSDS JSON.
    #[command(subcommand)]
    Directory(directory_cli::DirectoryCommand),
    /// List messages the exchange refused, with their reasons.
    Quarantine {
        #[command(flatten)]
        server: query_cli::ServerArgs,
        /// Only entries after this stream sequence.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Create a development CA, the exchange's server certificate and one client certificate per agency.
    Certs {
        /// The config whose [[agency]] entries get certificates.
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// Output directory (default: the directory of [query.tls] ca in the config).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The exchange's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check a config file before starting with it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create a key-encryption key (KEK) for [keys] kek_file: 32 random bytes as hex, mode 0600.
    Kek {
        /// Where to write it (kept if it exists). Keep it outside the data dir and its backups.
        #[arg(long)]
        out: PathBuf,
    },
    /// The transport key epochs publishers seal personal details and free text to.
    #[command(subcommand)]
    TransportKey(transport_key::TransportKeyCommand),
    /// Create an agency's secret for its adapters' --agency-secret: 32 random bytes as hex, mode 0600.
    AgencySecret {
        /// The agency it is for (its id in the registry).
        #[arg(long)]
        agency: String,
        /// Where to write it (refused if it exists). Keep it with the agency's adapter, never at the exchange.
        #[arg(long)]
        out: PathBuf,
    },
    /// Operations and data protection: backup, restore, erase a subject, report on one.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Export and verify the log (auditors).
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Write nats-server's authorization for the registry: one user per agency, publishing only as itself.
    NatsAuth {
        /// The config whose [[agency]] entries get NATS users.
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// Output directory for auth.conf (public keys only) and the users' nkey seeds.
        #[arg(long)]
        out: PathBuf,
    },
    /// Play a realistic multi-agency scenario against a running exchange and print the results.
    Demo {
        /// The exchange's config (for the NATS URL, the gRPC address and the agencies).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate a config: prints "ok", or the error with file:line:col and the fix (exit 1).
    Check {
        /// The config to check.
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print the public key that verifies receipts and checkpoints (hex).
    Show {
        /// The exchange's config (for its data dir).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// Print instead the transport public key publishers seal to (one line).
        #[arg(long)]
        transport: bool,
    },
}

#[derive(Args)]
struct AdapterArgs {
    /// NATS server URL.
    #[arg(
        long,
        env = "HANDOFF_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats: String,
    /// This agency's id in the exchange's registry (also its NATS user).
    #[arg(long, env = "HANDOFF_AGENCY")]
    agency: String,
    /// File holding this agency's NATS nkey seed (`<agency>.nk`, see `handoff nats-auth`); none: no authentication.
    #[arg(long, env = "HANDOFF_NATS_NKEY_FILE")]
    nats_nkey_file: Option<PathBuf>,
    /// The exchange's transport public key (`handoff transport-key public`): personal
    /// details and free text are sealed to it before they leave.
    #[arg(long, env = "HANDOFF_TRANSPORT_KEY")]
    transport_key: Option<PathBuf>,
    /// File holding this agency's secret, which keys its case ids and pseudonyms (see `handoff agency-secret`).
    #[arg(long, env = "HANDOFF_AGENCY_SECRET_FILE")]
    agency_secret: PathBuf,
    /// Where refused records are kept, with reasons (JSON Lines; appended). Default: beside each input.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Seconds to wait for the exchange's receipts.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Input files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Police incident and eviction records (JSON or CSV, schemas/police-record.schema.json).
    Police {
        #[command(flatten)]
        args: AdapterArgs,
        /// The intervention centre evictions are referred to (unless a record names another).
        #[arg(long, env = "HANDOFF_REFER_TO")]
        refer_to: Option<String>,
    },
    /// Casework of the programme provider and others (schemas/programme-activity.schema.json).
    Programme {
        #[command(flatten)]
        args: AdapterArgs,
    },
    /// Referral forms (schemas/referral-form.schema.json).
    Referral {
        #[command(flatten)]
        args: AdapterArgs,
    },
    /// Any event as JSON (schemas/event.schema.json).
    Generic {
        #[command(flatten)]
        args: AdapterArgs,
    },
    /// Service listings for the public directory (schemas/service-listing.schema.json).
    Directory {
        #[command(flatten)]
        args: AdapterArgs,
    },
}

/// Logs to stderr; `HANDOFF_LOG` overrides (e.g. `info,handoff_ingest=debug` for one line per message).
fn init_tracing(default: &str, serving: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("HANDOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    if serving && let Ok(directive) = "tonic::transport::server::io_stream=debug".parse() {
        // Refused TLS handshakes (no or foreign client certificate) are attempts worth a log line.
        filter = filter.add_directive(directive);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc's allocator serialises threads on its arena locks and returns memory
/// slowly; ingest, the rebuild and verify allocate on several threads at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Everything this binary creates (sled's files, backups, exports, rejects files,
    // keys, seeds) is its owner's only, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::RWXG | rustix::fs::Mode::RWXO);
    let cli = Cli::parse();
    // The server logs its work; client commands print results and log only problems.
    let serving = matches!(cli.command, Command::Serve { .. });
    init_tracing(if serving { "info" } else { "warn" }, serving);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config: path } => {
            let config = config::Config::load(&path)?;
            if let Some(missing) = config.missing_files(&path).into_iter().next() {
                return Err(missing.into());
            }
            serve::serve(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { config: path }) => {
            Ok(match config::Config::load(&path) {
                Ok(config) => {
                    // Files other commands create are reported, but do not fail the check:
                    // a config is checked before `handoff kek` or `handoff certs` run.
                    for missing in config.missing_files(&path) {
                        println!("warning: {missing}");
                    }
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("{e}");
                    ExitCode::FAILURE
                }
            })
        }
        Command::Adapter(cmd) => run_adapter(cmd).await,
        Command::Case(cmd) => query_cli::run(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Report(args) => report::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Directory(cmd) => directory_cli::run(cmd).await.map(|()| ExitCode::SUCCESS),
        Command::Quarantine { server, after } => query_cli::quarantine(&server, after)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Certs { config, out } => {
            let config = config::Config::load(&config)?;
            let out = out
                .or_else(|| config.certs_dir())
                .context("give --out, or set [query.tls] ca in the config")?;
            let written = certs::issue(&config, &out)?;
            println!("{} file(s) written to {}", written.len(), out.display());
            for path in written {
                println!("  {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(cmd) => Ok(if audit_cli::run(cmd).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        }),
        Command::Key(KeyCommand::Show { config, transport }) => {
            let config = config::Config::load(&config)?;
            if transport {
                println!("{}", config.transport_keys()?.current_public().to_line());
                return Ok(ExitCode::SUCCESS);
            }
            let dir = config.data_dir();
            if !dir.join(handoff_audit::key_file_name()).exists() {
                anyhow::bail!(
                    "no signing key in {} yet: it is created when the exchange first starts",
                    dir.display()
                );
            }
            println!(
                "{}",
                handoff_audit::ExchangeKey::load_or_create(&dir)?.public_hex()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Kek { out } => {
            if out.exists() {
                handoff_keyring::Kek::from_file(&out)?;
                println!("{} already holds a KEK; kept", out.display());
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let kek = handoff_keyring::Kek::generate()?;
            certs::write_private(&out, &format!("{}\n", kek.to_hex()))?;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::TransportKey(cmd) => transport_key::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::AgencySecret { agency, out } => {
            agency_secret::create(&agency, &out)?;
            println!("{}", out.display());
            println!(
                "the secret of {agency} (0600): keep it beside its adapter's config and in the agency's own backups; never send it to the exchange or another agency"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => Ok(if admin::run(cmd).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }),
        Command::NatsAuth { config, out } => {
            let config = config::Config::load(&config)?;
            let revoked = revocation::revoked(&config).await?;
            let path = nats_auth::write(&config, &out, &revoked)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { config } => {
            let config = config::Config::load(&config)?;
            demo::run(&config).await.map(|()| ExitCode::SUCCESS)
        }
    }
}

async fn run_adapter(cmd: AdapterCommand) -> anyhow::Result<ExitCode> {
    let (kind, args) = match cmd {
        AdapterCommand::Police { args, refer_to } => (AdapterKind::Police { refer_to }, args),
        AdapterCommand::Programme { args } => (AdapterKind::Programme, args),
        AdapterCommand::Referral { args } => (AdapterKind::Referral, args),
        AdapterCommand::Generic { args } => (AdapterKind::Generic, args),
        AdapterCommand::Directory { args } => (AdapterKind::Directory, args),
    };
    // Before connecting: without its secret the adapter would derive other ids.
    let secret = AgencySecret::from_file(&args.agency_secret)?;
    let seed = match &args.nats_nkey_file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_string(),
        ),
    };
    let mut publisher = Publisher::connect(&args.nats, &args.agency, seed)
        .await?
        .with_timeout(Duration::from_secs(args.timeout));
    if let Some(path) = &args.transport_key {
        publisher =
            publisher.with_transport(&handoff_transport::TransportPublic::from_file(path)?)?;
    }
    let mut refused_any = false;
    for file in &args.files {
        let documents = kind.read(file)?;
        let reports = handoff_adapters::process(&kind, &publisher, &secret, documents)
            .await
            .with_context(|| format!("publishing {}", file.display()))?;
        let mut counts = [0usize; 5]; // accepted, duplicate, rejected, invalid, unconfirmed
        for r in &reports {
            match &r.result {
                Err(errors) => {
                    counts[3] += 1;
                    println!(
                        "{} {}: invalid, not published: {}",
                        file.display(),
                        r.label,
                        errors.join("; ")
                    );
                }
                Ok(events) => {
                    for e in events {
                        let slot = match e.outcome {
                            Outcome::Accepted { .. } => 0,
                            Outcome::Duplicate { .. } => 1,
                            Outcome::Rejected { .. } => 2,
                            Outcome::Unconfirmed => 4,
                        };
                        counts[slot] += 1;
                        println!(
                            "{} {}: {} {} case {}: {}",
                            file.display(),
                            r.label,
                            e.event_type,
                            e.event_id,
                            e.case_id,
                            e.outcome
                        );
                    }
                }
            }
        }
        let rejects = args.rejects.clone().unwrap_or_else(|| {
            let mut p = file.clone().into_os_string();
            p.push(".rejects.jsonl");
            PathBuf::from(p)
        });
        let kept = handoff_adapters::write_rejects(&rejects, &kind, &reports)?;
        if kept > 0 {
            println!(
                "{kept} refused record(s) kept with reasons in {}",
                rejects.display()
            );
        }
        println!(
            "{}: {} accepted, {} duplicate, {} rejected by the exchange, {} invalid, {} unconfirmed",
            file.display(),
            counts[0],
            counts[1],
            counts[2],
            counts[3],
            counts[4]
        );
        refused_any |= counts[2] + counts[3] + counts[4] > 0;
    }
    Ok(if refused_any {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
