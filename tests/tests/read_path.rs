//! Reads under current rights, attributable, and replays that survive every kind
//! of event (issue 13, findings 3, 7 and 8), against a real nats-server and the
//! real exchange over mTLS.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, id, incident, publish_as, subject_of};
use handoff_e2e::{AUDITOR, Exchange, NatsServer, POLICE, PROGRAMME, run_handoff};
use tonic::Streaming;

fn accepted_all(outcomes: &[handoff_adapters::Outcome]) {
    for o in outcomes {
        assert!(
            matches!(o, handoff_adapters::Outcome::Accepted { .. }),
            "expected acceptance, got {o}"
        );
    }
}

/// The police open case `name` with the subject's details and refer it to the programme,
/// which accepts it: police and programme both have a part in it.
async fn shared_case(nats: &NatsServer, n: u64, name: &str) {
    let mut open = incident(n, name);
    if let Some(Event::IncidentReported(e)) = open.event.as_mut() {
        e.subject_details = Some(PersonalDetails {
            full_name: "Tomáš Král".into(),
            date_of_birth: "1985-01-30".into(),
            ..Default::default()
        });
    }
    let refer = envelope(
        n + 1,
        POLICE,
        name,
        Event::ReferralMade(ReferralMade {
            referral_id: "r".into(),
            to_agency: PROGRAMME.into(),
            reason: "eviction, wants help".into(),
            ..Default::default()
        }),
    );
    accepted_all(&publish_as(nats, POLICE, &[open, refer]).await);
    let take = envelope(
        n + 2,
        PROGRAMME,
        name,
        Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r".into(),
        }),
    );
    accepted_all(&publish_as(nats, PROGRAMME, &[take]).await);
}

async fn updates(
    stream: &mut Streaming<WatchCasesResponse>,
    until: u64,
) -> Vec<WatchCasesResponse> {
    let mut out = Vec::new();
    while out
        .last()
        .is_none_or(|u: &WatchCasesResponse| u.sequence < until)
    {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("an update in time")
            .expect("the stream stays healthy")
            .expect("the stream stays open");
        out.push(next);
    }
    out
}

/// Case `k` as it stood after sequence 2, as the police read it now.
async fn as_of_two(
    police: &mut handoff_contract::v1::cases_service_client::CasesServiceClient<
        tonic::transport::Channel,
    >,
) -> CaseView {
    police
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("k"),
            as_of_sequence: 2,
            purpose: "follow-up".into(),
            ..Default::default()
        })
        .await
        .expect("as of")
        .into_inner()
        .case
        .expect("a case")
}

/// Finding 3: after consent was withdrawn, GetCaseAsOf at an earlier sequence and a
/// WatchCases replay from 0 still returned the withheld fields.
#[tokio::test(flavor = "multi_thread")]
async fn withdrawn_consent_narrows_every_read_of_the_past_too() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    shared_case(&nats, 1, "k").await;
    let mut police = exchange.client_as(POLICE).await;
    let before = as_of_two(&mut police).await;
    assert!(
        before.subject_details.is_some(),
        "granted while consent stands"
    );
    assert_eq!(before.referrals[0].reason, "eviction, wants help");

    let withdraw = envelope(
        4,
        PROGRAMME,
        "k",
        Event::ConsentWithdrawn(ConsentWithdrawn {
            scope: "all sharing".into(),
        }),
    );
    accepted_all(&publish_as(&nats, PROGRAMME, &[withdraw]).await);

    let as_of = as_of_two(&mut police).await;
    assert!(
        as_of.subject_details.is_none(),
        "current consent governs the past"
    );
    assert!(as_of.referrals[0].reason.is_empty());
    assert_eq!(
        as_of.incidents.len(),
        1,
        "what the law still requires stays"
    );
    let history = police
        .case_history(CaseHistoryRequest {
            case_id: case_id("k"),
            purpose: "follow-up".into(),
        })
        .await
        .expect("history")
        .into_inner();
    for event in &history.events {
        if let Some(Event::IncidentReported(e)) =
            event.envelope.as_ref().and_then(|e| e.event.as_ref())
        {
            assert!(e.subject_details.is_none());
        }
    }
    let mut watch = police
        .watch_cases(WatchCasesRequest {
            after_sequence: 0,
            purpose: "follow-up".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let replayed = updates(&mut watch, 4).await;
    assert_eq!(replayed.len(), 4);
    for u in &replayed {
        let case = u.case.as_ref().expect("a case");
        assert!(case.subject_details.is_none(), "update {}", u.sequence);
        assert!(
            case.referrals.iter().all(|r| r.reason.is_empty()),
            "update {}",
            u.sequence
        );
    }
}

/// Finding 7: ReadLog, the export and ListQuarantine were recorded without the cases
/// and subjects they returned, so they never showed in the access reports.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_reads_show_in_the_access_reports() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    shared_case(&nats, 1, "k").await;
    // A refused message naming the subject: the police may not record sessions.
    let refused = envelope(
        4,
        POLICE,
        "k",
        Event::SessionAttended(SessionAttended {
            session_number: 1,
            ..Default::default()
        }),
    );
    publish_as(&nats, POLICE, &[refused]).await;

    let mut auditor = exchange.client_as(AUDITOR).await;
    let mut log = auditor
        .read_log(ReadLogRequest::default())
        .await
        .expect("read log")
        .into_inner();
    let mut records = 0;
    while log.message().await.expect("record").is_some() {
        records += 1;
    }
    assert_eq!(records, 3);
    let quarantine = auditor
        .list_quarantine(ListQuarantineRequest::default())
        .await
        .expect("quarantine")
        .into_inner();
    assert_eq!(quarantine.entries.len(), 1);
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out) = run_handoff(
        &[
            "audit",
            "export",
            "--server",
            &format!("https://localhost:{}", exchange.grpc_port()),
            "--as",
            AUDITOR,
            "--certs",
            &exchange.certs_dir().display().to_string(),
            "--out",
        ],
        &[&dir.path().join("log.jsonl")],
    );
    assert_eq!(code, 0, "{out}");

    for (by_case, key) in [(true, case_id("k")), (false, subject_of("k"))] {
        let request = if by_case {
            AccessReportRequest {
                case_id: key.clone(),
                ..Default::default()
            }
        } else {
            AccessReportRequest {
                subject_pseudonym: key.clone(),
                ..Default::default()
            }
        };
        let rpcs: Vec<String> = auditor
            .access_report(request)
            .await
            .expect("report")
            .into_inner()
            .records
            .iter()
            .filter(|r| r.agency == AUDITOR)
            .map(|r| r.rpc.clone())
            .collect();
        assert_eq!(
            rpcs.iter().filter(|r| *r == "ReadLog").count(),
            2,
            "ReadLog and the export, by {key}: {rpcs:?}"
        );
        assert!(
            rpcs.iter().any(|r| r == "ListQuarantine"),
            "the quarantine read, by {key}: {rpcs:?}"
        );
    }
    let report = auditor
        .subject_report(SubjectReportRequest {
            subject_pseudonym: subject_of("k"),
            purpose: "subject access request".into(),
        })
        .await
        .expect("subject report")
        .into_inner()
        .report
        .expect("a report");
    assert!(
        report.accesses.iter().any(|a| a.rpc == "ReadLog"),
        "the person is told the auditor read the log"
    );
}

/// Finding 8: with a directory event in the log every WatchCases stream ended with
/// "replay of record N diverged"; the log here holds listings, erasures (an
/// agency's and the exchange's) and a revocation among case events.
#[tokio::test(flavor = "multi_thread")]
async fn watch_replays_through_every_kind_of_event_and_resumes() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let listing = |n: u64| Envelope {
        event_id: id(n),
        source_agency: PROGRAMME.into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(1_790_000_000_000)),
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(Event::ServiceOffered(ServiceOffered {
            service_id: "men-programme".into(),
            name: "Programme for violent men".into(),
            email: "info@example.org".into(),
            ..Default::default()
        })),
        ..Envelope::default()
    };
    accepted_all(&publish_as(&nats, PROGRAMME, &[listing(1)]).await);
    shared_case(&nats, 2, "k").await; // sequences 2, 3, 4
    let own_erasure = envelope(
        5,
        PROGRAMME,
        "k",
        Event::SubjectErasureRequested(SubjectErasureRequested {
            reason: "asked".into(),
            requested_by: "counsellor".into(),
        }),
    );
    accepted_all(&publish_as(&nats, PROGRAMME, &[own_erasure]).await); // 5
    let config = exchange.config_path();
    let (code, out) = run_handoff(
        &[
            "admin",
            "erase",
            &subject_of("other"),
            "--reason",
            "retention drill",
            "--config",
        ],
        &[&config],
    );
    assert_eq!(code, 0, "{out}"); // 6
    let (code, out) = run_handoff(
        &[
            "admin",
            "revoke",
            "probation-north",
            "--reason",
            "drill",
            "--config",
        ],
        &[&config],
    );
    assert_eq!(code, 0, "{out}"); // 7
    accepted_all(&publish_as(&nats, PROGRAMME, &[listing(8)]).await); // 8
    let contact = envelope(
        9,
        PROGRAMME,
        "k",
        Event::ContactAttempted(ContactAttempted {
            outcome: ContactOutcome::Reached as i32,
            ..Default::default()
        }),
    );
    accepted_all(&publish_as(&nats, PROGRAMME, &[contact]).await); // 9

    let mut programme = exchange.client_as(PROGRAMME).await;
    let mut stream = programme
        .watch_cases(WatchCasesRequest {
            after_sequence: 0,
            purpose: "caseload".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = updates(&mut stream, 4).await;
    assert_eq!(
        first.iter().map(|u| u.sequence).collect::<Vec<_>>(),
        vec![2, 3, 4],
        "only the case's events, the listing passed by"
    );
    drop(stream);
    let mut resumed = programme
        .watch_cases(WatchCasesRequest {
            after_sequence: 4,
            purpose: "caseload".into(),
        })
        .await
        .expect("watch again")
        .into_inner();
    let rest = updates(&mut resumed, 9).await;
    assert_eq!(
        rest.iter()
            .map(|u| (u.sequence, u.event_type.as_str()))
            .collect::<Vec<_>>(),
        vec![(5, "subject_erasure_requested"), (9, "contact_attempted")],
        "no gap, no repeat, through erasures, a revocation and a listing"
    );
    let last = rest.last().and_then(|u| u.case.as_ref()).expect("a case");
    assert_eq!(last.status, CaseStatus::InContact as i32);
    assert!(
        !last.subject_details_erased
            && last.subject_details.as_ref().map(|d| d.full_name.as_str()) == Some("Tomáš Král"),
        "the programme erased only its own contributions: the police's details stay"
    );
}
