//! The exchange end to end: real nats-server, real `handoff serve`, real gRPC over TCP.

use std::time::Duration;

use handoff_adapters::{AdapterKind, Document, Outcome, Publisher};
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{self, case_id, envelope, incident, publish, publish_raw, referral};
use handoff_e2e::{CENTRE, Exchange, NatsServer, POLICE, PROGRAMME, ReceiptFeed};
use prost::Message;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

fn police_record() -> serde_json::Value {
    serde_json::from_str(include_str!("../../schemas/examples/police-eviction.json"))
        .expect("example")
}

async fn publish_docs(
    nats: &async_nats::Client,
    agency: &str,
    kind: AdapterKind,
    docs: Vec<serde_json::Value>,
) -> Vec<Outcome> {
    let publisher = Publisher::new(nats.clone(), agency)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key");
    let docs = docs
        .into_iter()
        .enumerate()
        .map(|(i, v)| Document::new(format!("record {i}"), v))
        .collect();
    handoff_adapters::process(&kind, &publisher, &events::agency_secret(agency), docs)
        .await
        .expect("published")
        .into_iter()
        .flat_map(|r| r.result.expect("valid record"))
        .map(|e| e.outcome)
        .collect()
}

fn casework(
    case: &CaseView,
    activity: &str,
    reference: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = json!({
        "activity": activity, "activity_ref": reference, "case_id": case.case_id,
        "subject_pseudonym": case.subject_pseudonym, "occurred_at": "2026-11-21T09:00:00Z", "worker": "w1",
    });
    v.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_police_eviction_reaches_the_programme_and_is_visible_over_grpc() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let client_nats = nats.connect().await;

    let outcomes = publish_docs(
        &client_nats,
        POLICE,
        AdapterKind::Police {
            refer_to: Some(CENTRE.into()),
        },
        vec![police_record()],
    )
    .await;
    assert_eq!(outcomes.len(), 3, "incident, eviction, referral");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Accepted { .. })),
        "{outcomes:?}"
    );

    let mut client = exchange.client_as(handoff_e2e::AUDITOR).await;
    let mut centre_reader = exchange.client_as(CENTRE).await;
    let inbox = centre_reader
        .inbox(InboxRequest {
            agency: CENTRE.into(),
            purpose: String::new(),
        })
        .await
        .expect("inbox")
        .into_inner();
    assert_eq!(inbox.items.len(), 1);
    let item = &inbox.items[0];
    // The centre reads the case it was asked to take, personal details included (policy).
    let case = centre_reader
        .get_case(GetCaseRequest {
            case_id: item.case_id.clone(),
            purpose: String::new(),
        })
        .await
        .expect("case")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(case.status(), CaseStatus::Referred);
    assert_eq!(case.holder, POLICE);
    assert_eq!(case.evictions.len(), 1);
    assert_eq!(
        case.subject_details.as_ref().map(|d| d.full_name.as_str()),
        Some("Marek Novák")
    );

    let rid = &item.item_id;
    let centre = publish_docs(
        &client_nats,
        CENTRE,
        AdapterKind::Programme,
        vec![
            casework(
                &case,
                "referral_acknowledged",
                "1",
                json!({"referral_id": rid}),
            ),
            casework(&case, "referral_accepted", "2", json!({"referral_id": rid})),
            casework(
                &case,
                "contact_attempted",
                "3",
                json!({"channel": "phone", "outcome": "reached"}),
            ),
            casework(
                &case,
                "referral_made",
                "4",
                json!({"referral_id": "r-ngo", "to_agency": PROGRAMME, "reason": "programme"}),
            ),
        ],
    )
    .await;
    assert!(
        centre.iter().all(|o| matches!(o, Outcome::Accepted { .. })),
        "{centre:?}"
    );
    let programme = publish_docs(
        &client_nats,
        PROGRAMME,
        AdapterKind::Programme,
        vec![
            casework(
                &case,
                "referral_accepted",
                "1",
                json!({"referral_id": "r-ngo"}),
            ),
            casework(&case, "intake_completed", "2", json!({})),
            casework(
                &case,
                "enrolled",
                "3",
                json!({"programme": "group", "planned_sessions": 20}),
            ),
            casework(&case, "session_attended", "4", json!({"session_number": 1})),
            casework(&case, "session_missed", "5", json!({"session_number": 2})),
        ],
    )
    .await;
    assert!(
        programme
            .iter()
            .all(|o| matches!(o, Outcome::Accepted { .. })),
        "{programme:?}"
    );

    let case = exchange.case(&item.case_id).await;
    assert_eq!(case.status(), CaseStatus::Enrolled);
    assert_eq!(case.holder, PROGRAMME);
    assert_eq!(case.version, 12);
    assert_eq!((case.sessions_attended, case.sessions_missed), (1, 1));
    assert!(case.first_contact_at.is_some());
    let parties: Vec<&str> = case.parties.iter().map(|p| p.agency.as_str()).collect();
    assert_eq!(parties, vec![CENTRE, PROGRAMME, POLICE]);

    let history = client
        .case_history(CaseHistoryRequest {
            case_id: case.case_id.clone(),
            purpose: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    let seqs: Vec<u64> = history.events.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert!(matches!(
        history.events[0]
            .envelope
            .as_ref()
            .and_then(|e| e.event.as_ref()),
        Some(Event::IncidentReported(_))
    ));

    let enrolled = client
        .list_cases(ListCasesRequest {
            status: CaseStatus::Enrolled as i32,
            holder: PROGRAMME.into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(enrolled.cases.len(), 1);
    let none = client
        .list_cases(ListCasesRequest {
            status: CaseStatus::Closed as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert!(none.cases.is_empty());
    assert!(
        centre_reader
            .inbox(InboxRequest {
                agency: CENTRE.into(),
                purpose: String::new()
            })
            .await
            .expect("inbox")
            .into_inner()
            .items
            .is_empty()
    );

    let missing = client
        .get_case(GetCaseRequest {
            case_id: "no-such-case".into(),
            purpose: String::new(),
        })
        .await
        .expect_err("unknown case");
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_every_event_twice_logs_each_once() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let mut published = Vec::new();
    for c in 0..20u64 {
        let case = format!("dup-{c}");
        published.push(incident(c * 10 + 1, &case));
        published.push(referral(c * 10 + 2, &case, "r1", CENTRE));
    }
    for e in &published {
        publish(&js, e).await;
    }
    // Again with the same Nats-Msg-Id (JetStream drops these within its window) ...
    for e in &published {
        publish(&js, e).await;
    }
    // ... and again without it, as after the window, each sealed afresh (another nonce,
    // other bytes): the log's event-id index absorbs them.
    let mut sent = Vec::new();
    for e in &published {
        let again = handoff_e2e::seal(e).encode_to_vec();
        sent.push(publish_raw(&js, &events::subject(e), None, again).await);
    }
    let head = exchange.wait_for(&sent, WITHIN).await;
    assert_eq!(
        head.sequence,
        published.len() as u64,
        "each event exactly once"
    );
    assert_eq!(
        head.quarantined, 0,
        "duplicates are answered, not quarantined"
    );
    let logged = exchange.logged_event_ids().await;
    assert_eq!(
        logged,
        published
            .iter()
            .map(|e| e.event_id.clone())
            .collect::<Vec<_>>()
    );

    // The adapter library sees them as duplicates too.
    let publisher = Publisher::new(nats.connect().await, POLICE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key");
    let outcomes = publisher
        .publish_all(&published[..4])
        .await
        .expect("publish");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Duplicate { .. })),
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_are_quarantined_with_a_reason_and_the_next_event_still_applies() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let nc = nats.connect().await;
    let js = async_nats::jetstream::new(nc.clone());
    let mut police_receipts = ReceiptFeed::subscribe(&nc, POLICE).await;
    let mut programme_receipts = ReceiptFeed::subscribe(&nc, PROGRAMME).await;

    publish(&js, &incident(1, "q")).await;
    // 1. garbage bytes
    publish_raw(
        &js,
        "handoff.events.police-north.incident_reported",
        Some("garbage-1"),
        b"\xff\xfe not protobuf \x00".to_vec(),
    )
    .await;
    // 2. forged source: the programme provider publishes as the police
    let forged = envelope(
        3,
        POLICE,
        "q",
        Event::CaseClosed(CaseClosed {
            reason: "forged".into(),
            ..Default::default()
        }),
    );
    let forged_sent = publish_raw(
        &js,
        "handoff.events.ngo-men-north.case_closed",
        Some(&forged.event_id),
        handoff_e2e::seal(&forged).encode_to_vec(),
    )
    .await;
    // 3. wrong expected version
    let mut stale = referral(4, "q", "r1", CENTRE);
    stale.expected_version = Some(0);
    publish(&js, &stale).await;
    // 4. the next valid event
    let mut good = referral(5, "q", "r1", CENTRE);
    good.expected_version = Some(1);
    let last = publish(&js, &good).await;

    let head = exchange.wait_for([&last, &forged_sent], WITHIN).await;
    assert_eq!(head.sequence, 2, "incident and the good referral");
    assert_eq!(head.quarantined, 3);

    let mut client = exchange.client_as(handoff_e2e::AUDITOR).await;
    let q = client
        .list_quarantine(ListQuarantineRequest::default())
        .await
        .expect("quarantine")
        .into_inner()
        .entries;
    // The police's refusals in the order they published them; the forger's came through
    // its own ingress stream, so where it falls among them is not fixed.
    let of = |agency: &str| -> Vec<&QuarantineEntry> {
        q.iter().filter(|e| e.agency == agency).collect()
    };
    let (police_q, forger_q) = (of(POLICE), of(PROGRAMME));
    assert_eq!(q.len(), 3, "{q:?}");
    let reasons: Vec<RejectionReason> = police_q.iter().map(|e| e.reason()).collect();
    assert_eq!(
        reasons,
        vec![
            RejectionReason::Malformed,
            RejectionReason::WrongExpectedVersion
        ]
    );
    // Kept whole, but sealed (an unreadable body may hold anything): its size and digest
    // say what it was.
    let garbage = b"\xff\xfe not protobuf \x00";
    assert!(police_q[0].raw.is_empty(), "never in the clear");
    assert!(police_q[0].sealed_raw.is_some(), "kept sealed");
    assert_eq!(police_q[0].raw_size, garbage.len() as u64);
    assert_eq!(
        police_q[0].raw_sha256,
        <sha2::Sha256 as sha2::Digest>::digest(garbage).to_vec()
    );
    assert_eq!(police_q[0].msg_id, "garbage-1");
    assert!(
        police_q[1].detail.contains("expected version 0"),
        "{}",
        police_q[1].detail
    );
    assert_eq!(forger_q.len(), 1, "{q:?}");
    assert_eq!(forger_q[0].reason(), RejectionReason::SourceMismatch);
    assert!(
        forger_q[0].detail.contains("may publish only as itself"),
        "{}",
        forger_q[0].detail
    );

    let case = client
        .get_case(GetCaseRequest {
            case_id: case_id("q"),
            purpose: String::new(),
        })
        .await
        .expect("case")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(case.status(), CaseStatus::Referred);

    // Receipts: the police get incident accepted, garbage rejected, stale rejected, good accepted.
    let mut police = Vec::new();
    while police.len() < 4 {
        police.push(police_receipts.next(WITHIN).await);
    }
    let statuses: Vec<_> = police.iter().map(|r| (r.status(), r.reason())).collect();
    assert_eq!(
        statuses,
        vec![
            (receipt::Status::Accepted, RejectionReason::Unspecified),
            (receipt::Status::Rejected, RejectionReason::Malformed),
            (
                receipt::Status::Rejected,
                RejectionReason::WrongExpectedVersion
            ),
            (receipt::Status::Accepted, RejectionReason::Unspecified),
        ]
    );
    assert_eq!(
        police[1].event_id, "garbage-1",
        "an unreadable body is answered by its Nats-Msg-Id"
    );
    assert_eq!(police[3].sequence, 2);
    // The forger (identified by its subject) gets the rejection, not the police.
    let forged_receipt = programme_receipts.next(WITHIN).await;
    assert_eq!(forged_receipt.reason(), RejectionReason::SourceMismatch);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_says_serving_and_the_log_head_matches_the_records() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let last = publish(&js, &incident(1, "h")).await;
    let head = exchange.wait_for([&last], WITHIN).await;
    let log = exchange.read_log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(head.hash, log[0].hash);
    assert!(handoff_log_is_intact(&log[0]));
}

fn handoff_log_is_intact(r: &LogRecord) -> bool {
    use sha2::{Digest, Sha256};
    // Recomputed here from the documented formula, independently of the log crate.
    let mut h = Sha256::new();
    h.update(&r.prev_hash);
    h.update(r.sequence.to_be_bytes());
    h.update(r.stream_sequence.to_be_bytes());
    h.update(r.recorded_at_unix_ms.to_be_bytes());
    h.update((r.envelope.len() as u64).to_be_bytes());
    h.update(&r.envelope);
    h.finalize().as_slice() == r.hash.as_slice()
}

/// The services a reflection version (`v1`, or `v1alpha`, which grpcio-reflection and
/// older tools speak) lists: the same calls on each version's own generated types.
macro_rules! listed {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .expect("reflection")
            .into_inner();
        let answer = answers
            .message()
            .await
            .expect("answer")
            .expect("one answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("unexpected reflection answer {answer:?}");
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_the_services_standard_tools_call() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let v1 = listed!(v1, exchange.channel_as(handoff_e2e::AUDITOR).await);
    let v1alpha = listed!(v1alpha, exchange.channel_as(handoff_e2e::AUDITOR).await);
    for names in [&v1, &v1alpha] {
        for service in [
            "handoff.v1.CasesService",
            "handoff.v1.DirectoryService",
            "handoff.v1.StatisticsService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.iter().any(|n| n == service),
                "{service} not in {names:?}"
            );
        }
    }
}

/// A client that has nothing but the server's reflection (no .proto files) reads a
/// case, over either reflection version, with mTLS: what grpcurl does. grpcurl is
/// in none of the registries CI installs from, so `buf curl` (npm's @bufbuild/buf,
/// found by `ops/bin/find-buf`) plays it; docs/integrating.md gives both commands.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_only_reflection_reads_a_case() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let sent = [
        publish(&js, &incident(1, "reflected")).await,
        publish(&js, &referral(2, "reflected", "r1", CENTRE)).await,
    ];
    exchange.wait_for(&sent, WITHIN).await;
    let buf = std::env::var_os("HANDOFF_BUF").unwrap_or_else(|| "buf".into());
    let certs = exchange.certs_dir();
    let url = |method: &str| {
        format!(
            "https://localhost:{}/handoff.v1.CasesService/{method}",
            exchange.grpc_port()
        )
    };
    for protocol in ["grpc-v1", "grpc-v1alpha"] {
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&buf)
                .arg("curl")
                .args([
                    "--protocol",
                    "grpc",
                    "--reflect",
                    "--reflect-protocol",
                    protocol,
                ])
                .arg("--cacert")
                .arg(certs.join("ca.pem"))
                .arg("--cert")
                .arg(certs.join(format!("{CENTRE}.pem")))
                .arg("--key")
                .arg(certs.join(format!("{CENTRE}.key")))
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run buf ({e}): run ops/bin/find-buf"));
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "buf curl {args:?} over {protocol}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        };
        let base = format!("https://localhost:{}", exchange.grpc_port());
        let services = run(&["--list-services", &base]);
        assert!(services.contains("handoff.v1.CasesService"), "{services}");
        let body = format!(
            r#"{{"caseId": "{}", "purpose": "reflection client"}}"#,
            case_id("reflected")
        );
        let answer: serde_json::Value =
            serde_json::from_str(&run(&["--data", &body, &url("GetCase")])).expect("JSON");
        assert_eq!(answer["case"]["caseId"], case_id("reflected"));
        assert_eq!(answer["case"]["status"], "CASE_STATUS_REFERRED");
    }
}
