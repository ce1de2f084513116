//! `handoff demo`: one eviction in České Budějovice through its statutory path, the
//! endangered person's side and the violent person's programme, played through the
//! real adapters against a running exchange (the episode is in `episode`).
//!
//! Every step is what an agency would do: publish its own records with its
//! adapter, read its inbox, answer. Re-running it publishes nothing new:
//! every event comes back as a duplicate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use handoff_adapters::{AdapterKind, Document, Outcome, Publisher, RecordReport};
use handoff_contract::v1::cases_service_client::CasesServiceClient;
use handoff_contract::v1::directory_service_client::DirectoryServiceClient;
use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
use handoff_contract::v1::*;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::config::Config;

mod episode;
mod print;

const POLICE: &str = "police-north";
const CENTRE: &str = "ic-north";
const PROGRAMME: &str = "ngo-men-north";
const SOCIAL: &str = "social-north";
const COURT: &str = "court-north";
const SUPPORT: &str = "support-north";
const AUDITOR: &str = "audit";
const COORDINATOR: &str = "coord-north";

/// Where the demo keeps its agencies' secrets: `agency-secrets` beside the
/// exchange's data dir (`data/agency-secrets` in the quick start). In production
/// each agency keeps its own, with its adapter.
fn secrets_dir(config: &Config) -> PathBuf {
    let data = config.data_dir();
    let beside = data.parent().unwrap_or(&data);
    // Printed to the user: `data/agency-secrets`, not `ops/../data/agency-secrets`.
    beside
        .canonicalize()
        .unwrap_or_else(|_| beside.to_path_buf())
        .join("agency-secrets")
}

async fn publish(
    config: &Config,
    agency: &str,
    kind: AdapterKind,
    records: Vec<Value>,
) -> anyhow::Result<Vec<RecordReport>> {
    // Each agency connects as its own NATS user, which may publish only as itself.
    let nats = config
        .nats_options(Some(agency))?
        .custom_inbox_prefix(handoff_adapters::publisher::inbox_prefix(agency))
        .connect(config.nats_servers()?)
        .await
        .with_context(|| format!("{agency} cannot connect to NATS at {}", config.nats.url))?;
    // Personal details and free text leave the agency sealed to the exchange's key.
    let publisher = Publisher::new(nats, agency)
        .with_transport(&config.transport_keys()?.current_public())?
        .with_timeout(Duration::from_secs(20));
    // The same secret on every run, so a re-run derives the same ids (all duplicates).
    let secret_file = secrets_dir(config).join(format!("{agency}.secret"));
    let secret = crate::agency_secret::load_or_create(agency, &secret_file)?;
    let docs = records
        .into_iter()
        .enumerate()
        .map(|(i, v)| Document::new(format!("record {}", i + 1), v))
        .collect();
    let reports = handoff_adapters::process(&kind, &publisher, &secret, docs).await?;
    for r in &reports {
        match &r.result {
            Err(errors) => println!(
                "  {agency:>14} {}: refused by the adapter: {}",
                r.label,
                errors.join("; ")
            ),
            Ok(events) => {
                for e in events {
                    println!("  {agency:>14} {:<22} {}", e.event_type, e.outcome);
                }
            }
        }
    }
    Ok(reports)
}

/// The case the first published event of `reports` belongs to.
pub(crate) fn first_case(reports: &[RecordReport]) -> Option<String> {
    reports
        .first()
        .and_then(|r| r.result.as_ref().ok())
        .and_then(|events| events.first())
        .map(|e| e.case_id.clone())
}

/// A case and its subject, as an agency's casework system knows them.
pub struct On {
    /// The case.
    pub case_id: String,
    /// Its subject's pseudonym.
    pub subject: String,
}

/// One casework activity on `on` (`schemas/programme-activity.schema.json`).
fn activity(on: &On, kind: &str, reference: &str, at: &str, worker: &str, extra: Value) -> Value {
    let mut v = json!({
        "activity": kind,
        "activity_ref": reference,
        "case_id": on.case_id,
        "subject_pseudonym": on.subject,
        "occurred_at": at,
        "worker": worker,
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}

/// The running exchange as the demo's agencies reach it: NATS through their adapters,
/// gRPC each with its own client certificate.
pub struct Demo<'a> {
    config: &'a Config,
    server: String,
    certs: PathBuf,
}

impl Demo<'_> {
    /// Publishes `records` through `agency`'s adapter of `kind`, printing each outcome.
    async fn publish(
        &self,
        agency: &str,
        kind: AdapterKind,
        records: Vec<Value>,
    ) -> anyhow::Result<Vec<RecordReport>> {
        publish(self.config, agency, kind, records).await
    }

    /// A query client as `agency`.
    async fn client(&self, agency: &str) -> anyhow::Result<CasesServiceClient<Channel>> {
        crate::query_cli::connect_as(&self.server, &self.certs, agency).await
    }

    /// A channel as `agency`, for the other services.
    async fn channel(&self, agency: &str) -> anyhow::Result<Channel> {
        crate::query_cli::channel_as(&self.server, &self.certs, agency).await
    }

    /// The case as `agency` may see it; `None` when it has no part in it.
    async fn case_as(&self, agency: &str, case_id: &str) -> anyhow::Result<Option<CaseView>> {
        let answer = self
            .client(agency)
            .await?
            .get_case(GetCaseRequest {
                case_id: case_id.into(),
                purpose: "demo".into(),
            })
            .await;
        match answer {
            Ok(answer) => Ok(answer.into_inner().case),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    /// `agency`'s inbox.
    async fn inbox(&self, agency: &str) -> anyhow::Result<Vec<InboxItem>> {
        Ok(self
            .client(agency)
            .await?
            .inbox(InboxRequest {
                agency: String::new(),
                purpose: "demo".into(),
            })
            .await?
            .into_inner()
            .items)
    }

    /// `agency`'s inbox items of one kind.
    async fn items(&self, agency: &str, kind: inbox_item::Kind) -> anyhow::Result<Vec<InboxItem>> {
        let mut items = self.inbox(agency).await?;
        items.retain(|i| i.kind() == kind);
        Ok(items)
    }

    /// The case a publish opened, with its subject as `agency` (a party) reads it.
    async fn on(&self, agency: &str, case_id: Option<String>) -> anyhow::Result<On> {
        let case_id = case_id.context("the record produced no events")?;
        let view = self
            .case_as(agency, &case_id)
            .await?
            .with_context(|| format!("{agency} cannot see the case {case_id} it opened"))?;
        Ok(On {
            case_id,
            subject: view.subject_pseudonym,
        })
    }
}

/// Plays the scenario and prints what each agency sees.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    // Each agency reads with its own client certificate, as it would in production.
    let certs = config
        .certs_dir()
        .context("the demo needs [query.tls] in the config (run `handoff certs` first)")?;
    let demo = Demo {
        config,
        server: format!("https://localhost:{}", config.query.listen.port()),
        certs,
    };
    println!(
        "Each agency's adapter keys its ids with the agency's own secret (in {}).",
        secrets_dir(config).display()
    );
    let episode::Episode { case, protection } = episode::play(&demo).await?;

    println!("\n== 12. OSPOD refers another father straight to the programme ==");
    let form: Value = serde_json::from_str(include_str!(
        "../../../../schemas/examples/referral-form.json"
    ))?;
    let social = demo
        .publish(SOCIAL, AdapterKind::Referral, vec![form])
        .await?;
    let social_case = first_case(&social).context("the referral form produced no events")?;

    println!("\n== 13. Mistakes are refused and kept: the police try to record a session ==");
    let bad = activity(
        &case,
        "session_attended",
        "P-1",
        "2026-11-04T18:00:00Z",
        "npor. Dvořák",
        json!({"session_number": 5}),
    );
    let reports = demo
        .publish(POLICE, AdapterKind::Programme, vec![bad])
        .await?;
    let refused = reports
        .iter()
        .flat_map(|r| r.result.iter().flatten())
        .any(|e| matches!(e.outcome, Outcome::Rejected { .. }));
    if !refused {
        bail!("the exchange accepted a session recorded by the police");
    }
    println!(
        "\n== 13b. The write path is an authorisation path: the police write on OSPOD's case, the programme on her protection case =="
    );
    let foreign = On {
        case_id: social_case.clone(),
        subject: format!("{SOCIAL}/subj-unknown-to-police"),
    };
    let probe = activity(
        &foreign,
        "risk_assessed",
        "P-2",
        "2026-11-04T18:05:00Z",
        "npor. Dvořák",
        json!({"risk_instrument": "ODARA", "risk_level": "low"}),
    );
    let quiet = |reports: &[RecordReport]| {
        reports
            .iter()
            .flat_map(|r| r.result.iter().flatten())
            .any(|e| {
                matches!(&e.outcome, Outcome::Rejected { reason, .. }
                if *reason == handoff_contract::v1::RejectionReason::UnknownCase)
            })
    };
    if !quiet(
        &demo
            .publish(POLICE, AdapterKind::Programme, vec![probe])
            .await?,
    ) {
        bail!("the police could write on child protection's case");
    }
    let curious = activity(
        &protection,
        "contact_attempted",
        "NGO-X",
        "2026-11-04T18:10:00Z",
        "lektor skupiny 1",
        json!({"channel": "phone", "outcome": "reached"}),
    );
    if !quiet(
        &demo
            .publish(PROGRAMME, AdapterKind::Programme, vec![curious])
            .await?,
    ) {
        bail!("the programme could write on her protection case");
    }
    println!(
        "  refused exactly as cases that do not exist: nothing about {social_case} or her case was told or changed"
    );

    println!("\n== 14. The programme lists its service in the public directory ==");
    let listing: Value = serde_json::from_str(include_str!(
        "../../../../schemas/examples/service-listing.json"
    ))?;
    let area = listing["areas"][0].as_str().unwrap_or_default().to_string();
    demo.publish(PROGRAMME, AdapterKind::Directory, vec![listing])
        .await?;
    let directory = DirectoryServiceClient::new(demo.channel(SOCIAL).await?)
        .list_services(ListServicesRequest {
            area,
            ..Default::default()
        })
        .await?
        .into_inner();
    for s in &directory.services {
        if let Some(offer) = &s.offer {
            println!(
                "  {SOCIAL} finds: {} ({}), areas {}, languages {}, {}",
                offer.name,
                s.agency_name,
                offer.areas.join(", "),
                offer.languages.join(", "),
                offer.phone
            );
        }
    }

    println!(
        "\n== His case {}, as each agency queries it (each with its own certificate) ==",
        case.case_id
    );
    for agency in [POLICE, CENTRE, SOCIAL, COURT, PROGRAMME, SUPPORT] {
        println!("\n  -- {agency} --");
        match demo.case_as(agency, &case.case_id).await? {
            None => println!("  NOT_FOUND: {agency} has no part in this case"),
            Some(view) => print::case(&view),
        }
        print::inbox(&demo.inbox(agency).await?);
    }
    println!(
        "\n== Her protection case {}: her support worker sees how to reach her; the programme does not know it exists ==",
        protection.case_id
    );
    for agency in [SUPPORT, PROGRAMME] {
        println!("\n  -- {agency} --");
        match demo.case_as(agency, &protection.case_id).await? {
            None => println!("  NOT_FOUND: {agency} has no part in this case"),
            Some(view) if agency == PROGRAMME => {
                bail!("the programme could read her protection case: {view:?}")
            }
            Some(view) => print::case(&view),
        }
    }

    let mut auditor = demo.client(AUDITOR).await?;
    println!("\n  -- {AUDITOR} (the log and the quarantine are for auditors) --");
    let history = auditor
        .case_history(CaseHistoryRequest {
            case_id: case.case_id.clone(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner();
    println!(
        "\n  history: {} events, log sequences {:?}",
        history.events.len(),
        history
            .events
            .iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>()
    );
    let q = auditor
        .list_quarantine(ListQuarantineRequest::default())
        .await?
        .into_inner();
    println!(
        "  quarantine: {} message(s); latest: {}",
        q.entries.len(),
        q.entries.last().map(|e| e.detail.as_str()).unwrap_or("-")
    );
    let head = auditor
        .get_log_head(GetLogHeadRequest {})
        .await?
        .into_inner()
        .head
        .context("the exchange answered without a head")?;
    println!(
        "  log head: sequence {} hash {}",
        head.sequence,
        handoff_log::hex(&head.hash)
    );

    println!(
        "\n== 15. The coordinator's funnel and statutory deadlines for the partnership board (small numbers suppressed) =="
    );
    let stats = StatisticsServiceClient::new(demo.channel(COORDINATOR).await?)
        .get_stats(GetStatsRequest {
            from_month: "2026-10".into(),
            to_month: "2026-11".into(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner()
        .report
        .context("the exchange answered without a report")?;
    let cell = |c: &Option<StatsCell>| match c {
        Some(c) if !c.suppressed => c.value.to_string(),
        _ => format!("<{}", stats.suppress_below),
    };
    for row in stats.rows.iter().filter(|r| r.referring_kind == "all") {
        println!(
            "  {} referred {}, acknowledged {}, contacted {}, intake {}, enrolled {}, dropped out {}",
            row.month,
            cell(&row.referred),
            cell(&row.acknowledged),
            cell(&row.contacted),
            cell(&row.intake),
            cell(&row.enrolled),
            cell(&row.dropped_out)
        );
    }
    for row in &stats.deadlines {
        println!(
            "  {} deadlines of {:<20} fell due {}, met in time {}, late {}, overdue {}",
            row.month,
            row.duty_kind,
            cell(&row.fell_due),
            cell(&row.met_in_time),
            cell(&row.met_late),
            cell(&row.overdue)
        );
    }
    match demo.case_as(COORDINATOR, &case.case_id).await? {
        None => println!(
            "  and the coordinator sees no case: NOT_FOUND for {}",
            case.case_id
        ),
        Some(_) => bail!("the coordinator could read a case"),
    }
    println!("\nRun it again: every event comes back as a duplicate and the log does not grow.");
    Ok(())
}
