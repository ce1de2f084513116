//! `handoff admin …`: data-protection work. Erasing a subject (through the
//! stream, as the exchange) and the subject access report (over gRPC, as an
//! auditor, itself recorded in the access log).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use handoff_adapters::Outcome;
use handoff_contract::json::to_json;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{SubjectReport, SubjectReportRequest};

use crate::query_cli::{ServerArgs, connect};

/// Data-protection commands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Erase a subject's personal details everywhere by destroying their data key (irreversible).
    Erase {
        /// The exchange's config (its NATS connection and credentials).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// The subject's pseudonym.
        subject: String,
        /// Why, for the record (e.g. "request under GDPR art. 17, ref DP-2026-114").
        #[arg(long)]
        reason: String,
        /// Who asked or decided (role or name), for the record.
        #[arg(long, default_value = "data protection officer")]
        requested_by: String,
    },
    /// Revoke an agency: the exchange refuses its later events (at one log position, on
    /// every node) and its calls, and the NATS authorization is written without its user.
    Revoke(RegistryChangeArgs),
    /// Reinstate a revoked agency (its events are taken and its calls answered again).
    Reinstate(RegistryChangeArgs),
    /// Write a consistent backup of the running exchange's store and keyring to a new directory.
    Backup {
        /// The running exchange's config (its data dir holds the admin socket).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// A directory that does not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Put a backup younger than `[nats] max_age_days` into the (empty) data dir of a stopped
    /// or new exchange; `serve` then catches up before it answers any read.
    Restore {
        /// The config of the exchange to restore (its data dir and KEK).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
    },
    /// Drop every projection (case views, inboxes, indexes) of a stopped exchange and
    /// rebuild them from the log, checking the hash chain as it goes.
    Rebuild {
        /// The stopped exchange's config (its data dir and agency registry).
        #[arg(long, env = "HANDOFF_CONFIG")]
        config: PathBuf,
    },
    /// Print everything held about a subject and who accessed it, as a DPO hands it out.
    SubjectReport {
        #[command(flatten)]
        server: ServerArgs,
        /// The subject's pseudonym.
        subject: String,
        /// Why the report is made; recorded with the access.
        #[arg(long, default_value = "subject access request")]
        purpose: String,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `admin revoke` and `admin reinstate` take.
#[derive(clap::Args)]
pub struct RegistryChangeArgs {
    /// The exchange's config (its NATS connection and credentials).
    #[arg(long, env = "HANDOFF_CONFIG")]
    config: PathBuf,
    /// The agency's registry id.
    agency: String,
    /// Why, for the record (e.g. "contract ended 2026-12-01").
    #[arg(long)]
    reason: String,
    /// Who decided (role or name), for the record.
    #[arg(long, default_value = "exchange operator")]
    requested_by: String,
    /// Rewrite nats-server's authorization in this directory (as `handoff nats-auth
    /// --out`); then reload nats-server so the agency's NATS user follows.
    #[arg(long)]
    nats_auth_out: Option<PathBuf>,
}

/// Runs an admin command; false when the exchange refused it.
pub async fn run(cmd: AdminCommand) -> anyhow::Result<bool> {
    match cmd {
        AdminCommand::Erase {
            config,
            subject,
            reason,
            requested_by,
        } => {
            let config = crate::config::Config::load(&config)?;
            let client = config
                .nats_options(None)?
                .name("handoff-admin")
                .connect(config.nats_servers()?)
                .await
                .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
            let envelope = crate::erasure::request(
                &subject,
                &reason,
                &requested_by,
                uuid::Uuid::now_v7().to_string(),
            );
            let outcome = crate::erasure::publish(client, envelope).await?;
            println!("erasure of subject {subject}: {outcome}");
            Ok(match outcome {
                Outcome::Accepted { .. } | Outcome::Duplicate { .. } => {
                    println!(
                        "the subject's data key is destroyed: their personal details read as erased on every path, the log still verifies"
                    );
                    true
                }
                _ => false,
            })
        }
        AdminCommand::Revoke(args) => registry_change(args, false).await,
        AdminCommand::Reinstate(args) => registry_change(args, true).await,
        AdminCommand::Backup { config, out } => {
            let config = crate::config::Config::load(&config)?;
            let out = std::path::absolute(&out)
                .with_context(|| format!("bad backup path {}", out.display()))?;
            let answer = crate::admin_socket::request(
                &config.data_dir(),
                &format!("backup {}", out.display()),
            )
            .await?;
            println!("{answer}");
            Ok(answer.starts_with("ok"))
        }
        AdminCommand::Restore { config, from } => {
            let config = crate::config::Config::load(&config)?;
            println!(
                "{}",
                crate::admin_socket::restore(
                    &from,
                    &config.data_dir(),
                    config.kek()?,
                    config.max_age()
                )?
            );
            Ok(true)
        }
        AdminCommand::Rebuild { config } => {
            let config = crate::config::Config::load(&config)?;
            let registry = config.registry().map_err(anyhow::Error::msg)?;
            let data_dir = config.data_dir();
            let started = std::time::Instant::now();
            let log = handoff_log::Log::open_with(
                &data_dir,
                &handoff_log::StoreOptions {
                    cache_bytes: config.store.cache_mb << 20,
                    rebuilding: true,
                },
            )
            .context("cannot open the log store (is the exchange still running? stop it first)")?;
            let rebuilt = log.rebuild_projections(&registry)?;
            println!(
                "rebuilt {} case views and {} inbox items from {} records in {:.2} s: {}",
                rebuilt.cases,
                rebuilt.inbox_items,
                rebuilt.records,
                started.elapsed().as_secs_f64(),
                match rebuilt.corrected {
                    0 => "the stored projections were already exact".to_string(),
                    n => format!("{n} stored entries differed from the log and were corrected"),
                }
            );
            Ok(true)
        }
        AdminCommand::SubjectReport {
            server,
            subject,
            purpose,
            json,
        } => {
            let mut client = connect(&server).await?;
            let report = client
                .subject_report(SubjectReportRequest {
                    subject_pseudonym: subject,
                    purpose,
                })
                .await
                .context("the exchange refused the report")?
                .into_inner()
                .report
                .context("the exchange answered without a report")?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&report, "handoff.v1.SubjectReport"))?
                );
            } else {
                print!("{}", render(&report));
            }
            Ok(true)
        }
    }
}

/// Publishes a revocation or reinstatement as the exchange, waits for its receipt and
/// rewrites the NATS authorization if asked.
async fn registry_change(args: RegistryChangeArgs, reinstate: bool) -> anyhow::Result<bool> {
    let RegistryChangeArgs {
        config,
        agency,
        reason,
        requested_by,
        nats_auth_out,
    } = args;
    let agency = agency.as_str();
    let config = crate::config::Config::load(&config)?;
    let what = if reinstate {
        "reinstatement"
    } else {
        "revocation"
    };
    let client = config
        .nats_options(None)?
        .name("handoff-admin")
        .connect(config.nats_servers()?)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
    let envelope = crate::revocation::request(agency, &reason, &requested_by, reinstate);
    let outcome = crate::erasure::publish(client, envelope).await?;
    println!("{what} of agency {agency}: {outcome}");
    if !matches!(
        outcome,
        Outcome::Accepted { .. } | Outcome::Duplicate { .. }
    ) {
        return Ok(false);
    }
    let configured_revoked = config.revoked().iter().any(|a| a == agency);
    if reinstate && configured_revoked {
        println!(
            "note: the config still says revoked = true for {agency}: its certificate stays refused and nats-auth leaves out its user until you remove that line"
        );
    }
    match nats_auth_out {
        Some(out) => {
            let revoked = crate::revocation::revoked(&config).await?;
            let path = crate::nats_auth::write(&config, &out, &revoked)?;
            println!(
                "wrote {}; reload nats-server now (nats-server --signal reload, or systemctl reload nats-server)",
                path.display()
            );
        }
        None => println!(
            "run `handoff nats-auth --config … --out …` and reload nats-server so the NATS users follow"
        ),
    }
    Ok(true)
}

fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map(|t| t.to_string()).unwrap_or_default()
}

/// The report in words, section by section.
pub fn render(r: &SubjectReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "SUBJECT ACCESS REPORT");
    let _ = writeln!(out, "subject:  {}", r.subject_pseudonym);
    let _ = writeln!(out, "produced: {}", time(&r.produced_at));
    if r.erased {
        let _ = writeln!(
            out,
            "status:   ERASED at {}: {}",
            time(&r.erased_at),
            r.erasure_reason
        );
    } else {
        let _ = writeln!(
            out,
            "status:   personal details held (encrypted under the subject's own key)"
        );
    }
    let _ = writeln!(out, "\n1. Cases ({})", r.cases.len());
    for c in &r.cases {
        let status = handoff_contract::v1::CaseStatus::try_from(c.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("CASE_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "   case {}: {status}, held by {}, opened by {} at {}",
            c.case_id,
            c.holder,
            c.opened_by,
            time(&c.opened_at)
        );
        let parties: Vec<&str> = c.parties.iter().map(|p| p.agency.as_str()).collect();
        let _ = writeln!(out, "     agencies with a part: {}", parties.join(", "));
        match (&c.subject_details, c.subject_details_erased) {
            (_, true) => {
                let _ = writeln!(out, "     personal details: ERASED");
            }
            (Some(d), false) => {
                let _ = writeln!(
                    out,
                    "     personal details: name {:?}, born {:?}, phone {:?}, address {:?}",
                    d.full_name, d.date_of_birth, d.phone, d.address
                );
            }
            (None, false) => {
                let _ = writeln!(out, "     personal details: none recorded");
            }
        }
    }
    let _ = writeln!(out, "\n2. Recorded events ({})", r.events.len());
    for e in &r.events {
        let Some(env) = &e.envelope else { continue };
        let kind = env
            .event
            .as_ref()
            .map(handoff_contract::names::event_type)
            .unwrap_or_default();
        let details = match &env.event {
            _ if e.subject_details_erased => " [personal details erased]",
            Some(Event::IncidentReported(i)) if i.subject_details.is_some() => {
                " [with personal details]"
            }
            Some(Event::ReferralMade(i)) if i.subject_details.is_some() => {
                " [with personal details]"
            }
            _ => "",
        };
        let _ = writeln!(
            out,
            "   #{} {} {} by {} (case {}){details}",
            e.sequence,
            time(&e.recorded_at),
            kind,
            env.source_agency,
            env.case_id
        );
    }
    let _ = writeln!(
        out,
        "\n3. Refused messages naming the subject ({})",
        r.quarantined.len()
    );
    for q in &r.quarantined {
        let _ = writeln!(
            out,
            "   stream #{} on {}: {}",
            q.stream_sequence, q.subject, q.detail
        );
    }
    let _ = writeln!(
        out,
        "\n4. Who accessed the subject's data ({})",
        r.accesses.len()
    );
    for a in &r.accesses {
        let at = handoff_contract::time::from_unix_ms(a.at_unix_ms);
        let _ = writeln!(
            out,
            "   {at} {} {} cases [{}] fields [{}] purpose {:?}: {}",
            a.agency,
            a.rpc,
            a.case_ids.join(", "),
            a.fields.join(", "),
            a.purpose,
            a.outcome
        );
    }
    out
}
