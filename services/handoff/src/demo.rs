//! `handoff demo`: one eviction's way from the police to the perpetrator
//! programme, played through the real adapters against a running exchange.
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
use handoff_domain::status_name;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::config::Config;

const POLICE: &str = "police-north";
const CENTRE: &str = "ic-north";
const PROGRAMME: &str = "ngo-men-north";
const SOCIAL: &str = "social-north";
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
fn first_case(reports: &[RecordReport]) -> Option<String> {
    reports
        .first()
        .and_then(|r| r.result.as_ref().ok())
        .and_then(|events| events.first())
        .map(|e| e.case_id.clone())
}

fn activity(
    case: &InboxItem,
    kind: &str,
    reference: &str,
    at: &str,
    worker: &str,
    extra: Value,
) -> Value {
    let mut v = json!({
        "activity": kind,
        "activity_ref": reference,
        "case_id": case.case_id,
        "subject_pseudonym": case.subject_pseudonym,
        "occurred_at": at,
        "worker": worker,
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}

async fn inbox(client: &mut CasesServiceClient<Channel>) -> anyhow::Result<Vec<InboxItem>> {
    Ok(client
        .inbox(InboxRequest {
            agency: String::new(),
            purpose: "demo".into(),
        })
        .await?
        .into_inner()
        .items)
}

/// The case as the client's agency may see it; `None` when it has no part in it.
async fn get_case(
    client: &mut CasesServiceClient<Channel>,
    case_id: &str,
) -> anyhow::Result<Option<CaseView>> {
    let answer = client
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

fn print_case(view: &CaseView) {
    println!(
        "  status {} | held by {} | version {}",
        status_name(view.status()),
        view.holder,
        view.version
    );
    // Stored sealed under the subject's key; opened per read, then cut to what the caller's kind may see.
    match (&view.subject_details, view.subject_details_erased) {
        (_, true) => println!(
            "  subject {}: personal details ERASED",
            view.subject_pseudonym
        ),
        (Some(d), false) => println!(
            "  subject {}: {:?} born {:?} | phone {:?} | address {:?}",
            view.subject_pseudonym, d.full_name, d.date_of_birth, d.phone, d.address
        ),
        (None, false) => println!(
            "  subject {}: personal details not shown to this agency",
            view.subject_pseudonym
        ),
    }
    println!(
        "  opened {} by {} | first contact {} | intake {}",
        ts(&view.opened_at),
        view.opened_by,
        ts(&view.first_contact_at),
        ts(&view.intake_at)
    );
    println!(
        "  programme {:?}: {} attended, {} missed of {} | risk {} ({})",
        view.programme,
        view.sessions_attended,
        view.sessions_missed,
        view.planned_sessions,
        view.risk_level().as_str_name(),
        view.risk_instrument
    );
    for r in &view.referrals {
        println!(
            "  referral {} {} -> {}: {}",
            r.referral_id,
            r.from_agency,
            r.to_agency,
            r.state().as_str_name()
        );
    }
}

fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

/// Plays the scenario and prints what each agency sees.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    // Each agency reads with its own client certificate, as it would in production.
    let certs = config
        .certs_dir()
        .context("the demo needs [query.tls] in the config (run `handoff certs` first)")?;
    let server = format!("https://localhost:{}", config.query.listen.port());
    let connect = |agency: &'static str| {
        let (server, certs) = (server.clone(), certs.clone());
        async move { crate::query_cli::connect_as(&server, &certs, agency).await }
    };
    let mut centre = connect(CENTRE).await?;
    let auditor = connect(AUDITOR).await?;
    println!(
        "Each agency's adapter keys its ids with the agency's own secret (in {}).",
        secrets_dir(config).display()
    );

    println!("\n== 1. Police: eviction order in the night, notice to the intervention centre ==");
    let eviction: Value = serde_json::from_str(include_str!(
        "../../../schemas/examples/police-eviction.json"
    ))?;
    let reports = publish(
        config,
        POLICE,
        AdapterKind::Police {
            refer_to: Some(CENTRE.into()),
        },
        vec![eviction],
    )
    .await?;
    let case_id = first_case(&reports).context("the police record produced no events")?;

    println!(
        "\n== 2. Intervention centre: reads its inbox, acknowledges within 24 h, reaches the man, refers him on =="
    );
    let items = inbox(&mut centre).await?;
    let item = match items.iter().find(|i| i.case_id == case_id) {
        Some(i) => i.clone(),
        // Re-run: the referral was answered in an earlier run; rebuild the item from the case.
        None => {
            let view = get_case(&mut centre, &case_id)
                .await?
                .context("the centre cannot see the case")?;
            let step = view.referrals.first().context("the case has no referral")?;
            InboxItem {
                case_id: case_id.clone(),
                item_id: step.referral_id.clone(),
                subject_pseudonym: view.subject_pseudonym.clone(),
                ..Default::default()
            }
        }
    };
    println!(
        "  {CENTRE:>14} inbox: referral {} for case {} ({})",
        item.item_id, item.case_id, item.reason
    );
    let to_programme = "ref-ic-ngo-1";
    publish(config, CENTRE, AdapterKind::Programme, vec![
        activity(&item, "referral_acknowledged", "IC-1", "2026-11-21T07:30:00Z", "duty desk", json!({"referral_id": item.item_id})),
        activity(&item, "referral_accepted", "IC-2", "2026-11-21T07:31:00Z", "duty desk", json!({"referral_id": item.item_id})),
        activity(&item, "contact_attempted", "IC-3", "2026-11-21T09:10:00Z", "counsellor 4", json!({"channel": "phone", "outcome": "reached", "note": "Explained the eviction order and the programme."})),
        activity(&item, "risk_assessed", "IC-4", "2026-11-21T10:00:00Z", "counsellor 4", json!({"risk_instrument": "ODARA", "risk_level": "high"})),
        activity(&item, "referral_made", "IC-5", "2026-11-21T10:05:00Z", "counsellor 4", json!({"referral_id": to_programme, "to_agency": PROGRAMME, "reason": "Agreed to attend the perpetrator programme."})),
    ]).await?;

    println!(
        "\n== 3. Programme provider: answers the referral, two calls, intake, enrolment, sessions =="
    );
    let item = InboxItem {
        item_id: to_programme.into(),
        ..item
    };
    publish(
        config,
        PROGRAMME,
        AdapterKind::Programme,
        vec![
            activity(
                &item,
                "referral_acknowledged",
                "NGO-1",
                "2026-11-21T13:00:00Z",
                "intake desk",
                json!({"referral_id": to_programme}),
            ),
            activity(
                &item,
                "referral_accepted",
                "NGO-2",
                "2026-11-21T13:05:00Z",
                "intake desk",
                json!({"referral_id": to_programme}),
            ),
            activity(
                &item,
                "contact_attempted",
                "NGO-3",
                "2026-11-22T09:00:00Z",
                "counsellor 2",
                json!({"channel": "phone", "outcome": "no_answer"}),
            ),
            activity(
                &item,
                "contact_attempted",
                "NGO-4",
                "2026-11-22T15:30:00Z",
                "counsellor 2",
                json!({"channel": "phone", "outcome": "reached"}),
            ),
            activity(
                &item,
                "intake_completed",
                "NGO-5",
                "2026-11-25T10:00:00Z",
                "counsellor 2",
                json!({}),
            ),
            activity(
                &item,
                "consent_given",
                "NGO-6",
                "2026-11-25T10:30:00Z",
                "counsellor 2",
                json!({"scope": "share attendance with referrers"}),
            ),
            activity(
                &item,
                "enrolled",
                "NGO-7",
                "2026-11-25T10:45:00Z",
                "counsellor 2",
                json!({"programme": "Responsibility group (24 sessions)", "planned_sessions": 24}),
            ),
            activity(
                &item,
                "session_attended",
                "NGO-8",
                "2026-12-02T17:00:00Z",
                "group lead 1",
                json!({"session_number": 1}),
            ),
            activity(
                &item,
                "session_attended",
                "NGO-9",
                "2026-12-09T17:00:00Z",
                "group lead 1",
                json!({"session_number": 2}),
            ),
            activity(
                &item,
                "session_missed",
                "NGO-10",
                "2026-12-16T17:00:00Z",
                "group lead 1",
                json!({"session_number": 3, "reason": "ill", "excused": true}),
            ),
            activity(
                &item,
                "session_attended",
                "NGO-11",
                "2026-12-23T17:00:00Z",
                "group lead 1",
                json!({"session_number": 4}),
            ),
        ],
    )
    .await?;

    println!("\n== 4. Child protection refers another father straight to the programme ==");
    let form: Value =
        serde_json::from_str(include_str!("../../../schemas/examples/referral-form.json"))?;
    let social = publish(config, SOCIAL, AdapterKind::Referral, vec![form]).await?;
    let social_case = first_case(&social).context("the referral form produced no events")?;

    println!("\n== 5. Mistakes are refused and kept: the police try to record a session ==");
    let bad = activity(
        &item,
        "session_attended",
        "P-1",
        "2026-12-23T18:00:00Z",
        "PC 4471",
        json!({"session_number": 5}),
    );
    let reports = publish(config, POLICE, AdapterKind::Programme, vec![bad]).await?;
    let refused = reports
        .iter()
        .flat_map(|r| r.result.iter().flatten())
        .any(|e| matches!(e.outcome, Outcome::Rejected { .. }));
    if !refused {
        bail!("the exchange accepted a session recorded by the police");
    }
    println!(
        "\n== 5b. The write path is an authorisation path: the police write on child protection's case =="
    );
    let foreign = InboxItem {
        case_id: social_case.clone(),
        subject_pseudonym: format!("{SOCIAL}/subj-unknown-to-police"),
        ..InboxItem::default()
    };
    let probe = activity(
        &foreign,
        "risk_assessed",
        "P-2",
        "2026-12-23T18:05:00Z",
        "PC 4471",
        json!({"risk_instrument": "ODARA", "risk_level": "low"}),
    );
    let reports = publish(config, POLICE, AdapterKind::Programme, vec![probe]).await?;
    let quiet = reports
        .iter()
        .flat_map(|r| r.result.iter().flatten())
        .any(|e| {
            matches!(&e.outcome, Outcome::Rejected { reason, .. }
                if *reason == handoff_contract::v1::RejectionReason::UnknownCase)
        });
    if !quiet {
        bail!("the police could write on child protection's case");
    }
    println!(
        "  refused exactly as a case that does not exist: nothing about {social_case} was told or changed"
    );

    println!("\n== 6. The programme lists its service in the public directory ==");
    let listing: Value = serde_json::from_str(include_str!(
        "../../../schemas/examples/service-listing.json"
    ))?;
    publish(config, PROGRAMME, AdapterKind::Directory, vec![listing]).await?;
    let channel = crate::query_cli::channel_as(&server, &certs, SOCIAL).await?;
    let directory = DirectoryServiceClient::new(channel)
        .list_services(ListServicesRequest {
            area: "North".into(),
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
        "\n== The case {case_id}, as each agency queries it (each with its own certificate) =="
    );
    for agency in [POLICE, CENTRE, PROGRAMME, SOCIAL] {
        let mut client = connect(agency).await?;
        println!("\n  -- {agency} --");
        match get_case(&mut client, &case_id).await? {
            None => println!("  NOT_FOUND: {agency} has no part in this case"),
            Some(view) => print_case(&view),
        }
        for i in inbox(&mut client).await? {
            println!(
                "  inbox: {} {} from {} (case {})",
                i.kind().as_str_name(),
                i.item_id,
                i.from_agency,
                i.case_id
            );
        }
    }
    let mut client = auditor.clone();
    println!("\n  -- {AUDITOR} (the log and the quarantine are for auditors) --");
    let history = client
        .case_history(CaseHistoryRequest {
            case_id: case_id.clone(),
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
    let q = client
        .list_quarantine(ListQuarantineRequest::default())
        .await?
        .into_inner();
    println!(
        "  quarantine: {} message(s); latest: {}",
        q.entries.len(),
        q.entries.last().map(|e| e.detail.as_str()).unwrap_or("-")
    );
    let head = client
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

    println!("\n== 7. The coordinator's funnel for the grant report (small numbers suppressed) ==");
    let channel = crate::query_cli::channel_as(&server, &certs, COORDINATOR).await?;
    let stats = StatisticsServiceClient::new(channel)
        .get_stats(GetStatsRequest {
            from_month: "2026-12".into(),
            to_month: String::new(),
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
            "  {} referred {}, acknowledged {}, contacted {}, intake {}, enrolled {}",
            row.month,
            cell(&row.referred),
            cell(&row.acknowledged),
            cell(&row.contacted),
            cell(&row.intake),
            cell(&row.enrolled)
        );
    }
    match get_case(&mut connect(COORDINATOR).await?, &case_id).await? {
        None => println!("  and the coordinator sees no case: NOT_FOUND for {case_id}"),
        Some(_) => bail!("the coordinator could read a case"),
    }
    println!("\nRun it again: every event comes back as a duplicate and the log does not grow.");
    Ok(())
}
