//! The FHIR R4 view of a case (`GetCaseFhir`, `handoff case fhir`): each referral's
//! Task follows the referral through its states, the bundle is redacted exactly as
//! GetCase is, an agency without a part learns nothing, and every export is a read
//! on the access log. (The Python client's test validates the same bundles with a
//! FHIR library.)

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish, referral};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, PROGRAMME};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(30);

async fn fhir(exchange: &Exchange, agency: &str, case: &str) -> Result<Value, tonic::Status> {
    let answer = exchange
        .client_as(agency)
        .await
        .get_case_fhir(GetCaseFhirRequest {
            case_id: case_id(case),
            purpose: "handed to the health system".into(),
        })
        .await?
        .into_inner();
    Ok(serde_json::from_str(&answer.bundle_json).expect("the bundle is JSON"))
}

fn resources<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

/// Task statuses in referral order.
fn task_statuses(bundle: &Value) -> Vec<String> {
    resources(bundle, "Task")
        .iter()
        .map(|t| t["status"].as_str().expect("status").to_string())
        .collect()
}

async fn step(exchange: &Exchange, js: &async_nats::jetstream::Context, e: Envelope) {
    let sent = publish(js, &e).await;
    exchange.wait_for([&sent], WITHIN).await;
}

fn with_details(mut e: Envelope) -> Envelope {
    if let Some(Event::IncidentReported(i)) = &mut e.event {
        i.subject_details = Some(PersonalDetails {
            full_name: "Marek Dvořák".into(),
            date_of_birth: "1986-04-12".into(),
            phone: "+420 601 234 567".into(),
            address: "Lannova 12, České Budějovice".into(),
        });
    }
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn the_task_follows_the_referral_from_requested_to_failed() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    step(&exchange, &js, with_details(incident(1, "f"))).await;
    step(&exchange, &js, referral(2, "f", "r1", PROGRAMME)).await;
    let bundle = fhir(&exchange, PROGRAMME, "f").await.expect("bundle");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(resources(&bundle, "ServiceRequest").len(), 1);
    assert_eq!(task_statuses(&bundle), ["requested"]);
    let request = resources(&bundle, "ServiceRequest")[0];
    assert_eq!(request["requester"]["identifier"]["value"], POLICE);
    assert_eq!(request["performer"][0]["identifier"]["value"], PROGRAMME);
    assert_eq!(request["identifier"][0]["value"], "r1");

    // Each step the programme publishes, and the Task status it leads to.
    let steps = [
        (
            Event::ReferralAcknowledged(ReferralAcknowledged {
                referral_id: "r1".into(),
            }),
            "received",
        ),
        (
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r1".into(),
            }),
            "accepted",
        ),
        (
            Event::ContactAttempted(ContactAttempted {
                outcome: ContactOutcome::Reached as i32,
                ..Default::default()
            }),
            "in-progress",
        ),
        (
            Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "moved out of the region".into(),
                reason_code: OutcomeReason::MovedOutOfRegion as i32,
            }),
            "failed",
        ),
    ];
    for (n, (event, status)) in (3..).zip(steps) {
        step(&exchange, &js, envelope(n, PROGRAMME, "f", event)).await;
        let bundle = fhir(&exchange, PROGRAMME, "f").await.expect("bundle");
        assert_eq!(task_statuses(&bundle), [status]);
    }
    let bundle = fhir(&exchange, PROGRAMME, "f").await.expect("bundle");
    let refused = exchange.quarantine().await;
    assert!(refused.is_empty(), "every step is accepted: {refused:?}");
    assert_eq!(task_statuses(&bundle), ["failed"]);
    let task = resources(&bundle, "Task")[0];
    assert_eq!(task["statusReason"]["text"], "moved out of the region");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_referral_is_a_rejected_task_with_its_reason() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    step(&exchange, &js, incident(1, "d")).await;
    step(&exchange, &js, referral(2, "d", "r1", PROGRAMME)).await;
    step(
        &exchange,
        &js,
        envelope(
            3,
            PROGRAMME,
            "d",
            Event::ReferralDeclined(ReferralDeclined {
                referral_id: "r1".into(),
                reason: "no capacity this quarter".into(),
                reason_code: OutcomeReason::NoCapacity as i32,
            }),
        ),
    )
    .await;
    let bundle = fhir(&exchange, POLICE, "d").await.expect("bundle");
    assert_eq!(task_statuses(&bundle), ["rejected"]);
    assert_eq!(
        resources(&bundle, "Task")[0]["statusReason"]["text"],
        "no capacity this quarter"
    );
    assert_eq!(resources(&bundle, "ServiceRequest")[0]["status"], "revoked");
}

/// The bundle shows what GetCase shows the same caller and nothing more: personal
/// details only to those the field policy grants them, none to the auditor (whose
/// kind is not granted them), nothing at all to an agency without a part, and
/// every export is on the access log with its purpose.
#[tokio::test(flavor = "multi_thread")]
async fn the_bundle_is_redacted_like_get_case_and_recorded_as_a_read() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    step(&exchange, &js, with_details(incident(1, "r"))).await;
    step(&exchange, &js, referral(2, "r", "r1", CENTRE)).await;

    for agency in [POLICE, CENTRE, AUDITOR] {
        let view = exchange
            .client_as(agency)
            .await
            .get_case(GetCaseRequest {
                case_id: case_id("r"),
                purpose: "compare".into(),
            })
            .await
            .expect("GetCase")
            .into_inner()
            .case
            .expect("a case");
        let bundle = fhir(&exchange, agency, "r").await.expect("bundle");
        let text = bundle.to_string();
        let patients = resources(&bundle, "Patient");
        match &view.subject_details {
            Some(details) => {
                assert_eq!(patients.len(), 1, "{agency} may see details");
                assert_eq!(patients[0]["name"][0]["text"], details.full_name.as_str());
                assert_eq!(
                    patients[0]["telecom"].is_array(),
                    !details.phone.is_empty(),
                    "{agency}: contact details exactly as GetCase"
                );
            }
            None => {
                assert!(patients.is_empty(), "{agency} may not see details");
                assert!(!text.contains("Dvořák"), "{agency} sees no name: {text}");
            }
        }
        if view
            .subject_details
            .as_ref()
            .is_none_or(|d| d.phone.is_empty())
        {
            assert!(!text.contains("601 234"), "{agency} sees no phone: {text}");
            assert!(
                !text.contains("Lannova"),
                "{agency} sees no address: {text}"
            );
        }
    }
    // The auditor's kind is not granted personal details.
    assert!(
        resources(
            &fhir(&exchange, AUDITOR, "r").await.expect("bundle"),
            "Patient"
        )
        .is_empty()
    );

    // No part in the case: the same NOT_FOUND as a case that does not exist.
    let refused = fhir(&exchange, PROGRAMME, "r").await.expect_err("no part");
    let missing = fhir(&exchange, PROGRAMME, "no-such-case")
        .await
        .expect_err("no case");
    assert_eq!(refused.code(), tonic::Code::NotFound);
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(
        refused.message().replace(&case_id("r"), "<case>"),
        missing
            .message()
            .replace(&case_id("no-such-case"), "<case>"),
        "a refusal reveals nothing a missing case would not"
    );

    let reads = exchange
        .client_as(AUDITOR)
        .await
        .access_report(AccessReportRequest {
            case_id: case_id("r"),
            purpose: "check the exports".into(),
            ..Default::default()
        })
        .await
        .expect("access report")
        .into_inner()
        .records;
    let exports: Vec<&AccessRecord> = reads.iter().filter(|r| r.rpc == "GetCaseFhir").collect();
    for agency in [POLICE, CENTRE, AUDITOR, PROGRAMME] {
        assert!(
            exports
                .iter()
                .any(|r| r.agency == agency && r.purpose == "handed to the health system"),
            "{agency}'s export is recorded: {exports:?}"
        );
    }
    assert!(
        exports
            .iter()
            .any(|r| r.agency == PROGRAMME && r.outcome == "not_found"),
        "the refused export is recorded as refused"
    );
}

/// The CLI prints the same bundle.
#[tokio::test(flavor = "multi_thread")]
async fn handoff_case_fhir_prints_the_bundle() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    step(&exchange, &js, incident(1, "c")).await;
    step(&exchange, &js, referral(2, "c", "r1", CENTRE)).await;
    let out = std::process::Command::new(handoff_e2e::handoff_binary())
        .args(["case", "fhir", &case_id("c"), "--as", CENTRE])
        .args([
            "--server",
            &format!("https://localhost:{}", exchange.grpc_port()),
        ])
        .arg("--certs")
        .arg(exchange.certs_dir())
        .output()
        .expect("handoff case fhir");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed, fhir(&exchange, CENTRE, "c").await.expect("bundle"));
}
