//! The write path is an authorisation path: attacks by a partner agency on
//! what is not its own, each played against a real nats-server and the real
//! exchange, each of which must fail to harm (issue 13, findings 1, 2 and 4).

use handoff_adapters::Outcome;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, id, publish_as, subject_of};
use handoff_e2e::{AUDITOR, Exchange, NatsServer, POLICE, PROGRAMME};
use tonic::Code;

const SOCIAL: &str = "social-north";

fn details(name: &str) -> PersonalDetails {
    PersonalDetails {
        full_name: name.into(),
        date_of_birth: "1979-04-12".into(),
        phone: "+420 601 123 456".into(),
        address: "Lannova 12, České Budějovice".into(),
    }
}

/// Child protection opens `social-north/<name>` with a referral to the programme,
/// carrying the subject's personal details.
fn social_case(n: u64, name: &str) -> Envelope {
    envelope(
        n,
        SOCIAL,
        &format!("{SOCIAL}/{name}"),
        Event::ReferralMade(ReferralMade {
            referral_id: "r1".into(),
            to_agency: PROGRAMME.into(),
            reason: "father of two, violent at home".into(),
            subject_details: Some(details("Petr Dvořák")),
            ..Default::default()
        }),
    )
}

/// Child protection's case `c1`, as child protection reads it.
async fn read_c1(
    social: &mut handoff_contract::v1::cases_service_client::CasesServiceClient<
        tonic::transport::Channel,
    >,
) -> CaseView {
    social
        .get_case(GetCaseRequest {
            case_id: case_id("social-north/c1"),
            purpose: "casework".into(),
        })
        .await
        .expect("child protection reads its case")
        .into_inner()
        .case
        .expect("a case")
}

/// `agency` asks for the erasure of what it contributed about `case`'s subject.
fn erasure(n: u64, agency: &str, case: &str) -> Envelope {
    envelope(
        n,
        agency,
        case,
        Event::SubjectErasureRequested(SubjectErasureRequested {
            reason: "asked under GDPR art. 17".into(),
            requested_by: "caseworker".into(),
        }),
    )
}

fn rejected(outcome: &Outcome) -> (RejectionReason, String) {
    match outcome {
        Outcome::Rejected { reason, detail } => (*reason, detail.clone()),
        other => panic!("expected a rejection, got {other}"),
    }
}

fn accepted(outcome: &Outcome) {
    assert!(
        matches!(outcome, Outcome::Accepted { .. }),
        "expected acceptance, got {outcome}"
    );
}

/// Finding 1: the police could erase child protection's subject by opening a case
/// of their own naming that subject, then asking for its erasure.
#[tokio::test(flavor = "multi_thread")]
async fn no_agency_can_erase_what_it_has_no_part_in() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    accepted(&publish_as(&nats, SOCIAL, &[social_case(1, "c1")]).await[0]);
    let theirs = subject_of("social-north/c1");

    // The attack as found: a police case naming child protection's subject.
    let mut squat = envelope(
        2,
        POLICE,
        "p1",
        Event::IncidentReported(IncidentReported {
            incident_ref: "I-1".into(),
            narrative: "n".into(),
            ..Default::default()
        }),
    );
    squat.subject_pseudonym = theirs.clone();
    // The same, naming a subject nobody has: the answer must not tell the two apart.
    let mut nobody = squat.clone();
    nobody.event_id = id(3);
    nobody.case_id = case_id("p2");
    nobody.subject_pseudonym = subject_of("social-north/nobody");
    let outcomes = publish_as(&nats, POLICE, &[squat, nobody]).await;
    let (reason, detail) = rejected(&outcomes[0]);
    let (reason_nobody, detail_nobody) = rejected(&outcomes[1]);
    assert_eq!(reason, RejectionReason::UnknownSubject);
    assert_eq!(reason, reason_nobody);
    assert_eq!(
        detail.replace(&theirs, "S"),
        detail_nobody.replace(&subject_of("social-north/nobody"), "S"),
        "an existing subject is refused in the same words as a missing one"
    );

    // An erasure on child protection's case itself: refused like a missing case.
    let outcomes = publish_as(&nats, POLICE, &[erasure(4, POLICE, "social-north/c1")]).await;
    assert_eq!(rejected(&outcomes[0]).0, RejectionReason::UnknownCase);
    assert!(
        !exchange
            .case(&case_id("social-north/c1"))
            .await
            .subject_details_erased,
        "child protection's subject is not erased"
    );
    let mut social = exchange.client_as(SOCIAL).await;
    let view = read_c1(&mut social).await;
    assert_eq!(
        view.subject_details.map(|d| d.full_name).as_deref(),
        Some("Petr Dvořák"),
        "the details child protection contributed are still there"
    );

    // A party's erasure reaches only what it contributed: the programme (asked by the
    // referral) erases its own details; child protection's stay.
    accepted(
        &publish_as(
            &nats,
            PROGRAMME,
            &[erasure(5, PROGRAMME, "social-north/c1")],
        )
        .await[0],
    );
    let view = read_c1(&mut social).await;
    assert!(!view.subject_details_erased);
    assert_eq!(
        view.subject_details.map(|d| d.full_name).as_deref(),
        Some("Petr Dvořák")
    );
    let report = exchange
        .client_as(AUDITOR)
        .await
        .subject_report(SubjectReportRequest {
            subject_pseudonym: theirs.clone(),
            purpose: "audit".into(),
        })
        .await
        .expect("report")
        .into_inner()
        .report
        .expect("a report");
    assert!(!report.erased, "no agency's request erases everyone's");
    assert_eq!(
        report
            .agency_erasures
            .iter()
            .map(|e| e.agency.as_str())
            .collect::<Vec<_>>(),
        vec![PROGRAMME]
    );
    // Child protection's own request does erase what it contributed.
    accepted(&publish_as(&nats, SOCIAL, &[erasure(6, SOCIAL, "social-north/c1")]).await[0]);
    let view = read_c1(&mut social).await;
    assert!(view.subject_details_erased && view.subject_details.is_none());
}

/// Finding 2: a refusal on a case the publisher cannot see named the subject and
/// the version, and a look-up told whether another agency used an event id.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_look_ups_tell_no_more_than_not_found() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let theirs = social_case(1, "c1");
    accepted(&publish_as(&nats, SOCIAL, std::slice::from_ref(&theirs)).await[0]);

    let risk = |n: u64, case: &str, expected: Option<u64>| {
        let mut e = envelope(
            n,
            POLICE,
            case,
            Event::RiskAssessed(RiskAssessed {
                instrument: "ODARA".into(),
                level: RiskLevel::High as i32,
                ..Default::default()
            }),
        );
        e.expected_version = expected;
        e
    };
    let opener = |n: u64, case: &str| {
        envelope(
            n,
            POLICE,
            case,
            Event::IncidentReported(IncidentReported {
                incident_ref: "I-9".into(),
                ..Default::default()
            }),
        )
    };
    let existing = "social-north/c1";
    let missing = "social-north/c-missing";
    let outcomes = publish_as(
        &nats,
        POLICE,
        &[
            risk(2, existing, None),
            risk(3, missing, None),
            risk(4, existing, Some(7)),
            risk(5, missing, Some(7)),
            opener(6, existing),
            opener(7, missing),
        ],
    )
    .await;
    for pair in outcomes.chunks(2) {
        let (reason_a, detail_a) = rejected(&pair[0]);
        let (reason_b, detail_b) = rejected(&pair[1]);
        assert_eq!(reason_a, RejectionReason::UnknownCase);
        assert_eq!(reason_a, reason_b);
        let words = detail_a.replace(&case_id(existing), "C");
        assert_eq!(
            words,
            detail_b.replace(&case_id(missing), "C"),
            "the same words for a case that exists and one that does not"
        );
        assert!(
            !words.contains("subj")
                && !words.contains("version")
                && !words.chars().any(|c| c.is_ascii_digit()),
            "no subject, version or other fact of the case: {detail_a}"
        );
    }
    // gRPC answers the same: NOT_FOUND with the same message shape.
    let mut police = exchange.client_as(POLICE).await;
    for case in [existing, missing] {
        let status = police
            .get_case(GetCaseRequest {
                case_id: case_id(case),
                purpose: "probe".into(),
            })
            .await
            .expect_err("not the police's case");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), format!("no case {}", case_id(case)));
    }

    // Look-ups: another agency's event id answers exactly like one never used.
    let client = nats.connect_as(POLICE).await.expect("police connect");
    let lookups = handoff_adapters::Publisher::new(client, POLICE)
        .with_transport(&handoff_e2e::transport_public())
        .expect("transport key");
    let used_by_them = lookups.lookup(&theirs.event_id).await.expect("look-up");
    let never_used = lookups.lookup(&id(999)).await.expect("look-up");
    assert_eq!(used_by_them, None);
    assert_eq!(never_used, None);
    // Their own rejected event is theirs to look up.
    let own = lookups.lookup(&id(2)).await.expect("look-up");
    assert_eq!(
        own.map(|r| r.reason()),
        Some(RejectionReason::UnknownCase),
        "an agency looks up its own receipts"
    );
}

/// Finding 4: case and event ids were deterministic and global, so another agency
/// could take them first and have the real events refused or dropped.
#[tokio::test(flavor = "multi_thread")]
async fn no_agency_can_occupy_another_agencys_ids() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    // The police take child protection's next case id first...
    let mut squat = social_case(1, "c2");
    squat.source_agency = POLICE.into();
    squat.event = Some(Event::IncidentReported(IncidentReported {
        incident_ref: "I-1".into(),
        ..Default::default()
    }));
    squat.expected_version = Some(0);
    assert_eq!(
        rejected(&publish_as(&nats, POLICE, &[squat]).await[0]).0,
        RejectionReason::UnknownCase
    );
    // ... and child protection's real referral, expecting a new case, goes in.
    let mut real = social_case(2, "c2");
    real.expected_version = Some(0);
    accepted(&publish_as(&nats, SOCIAL, &[real]).await[0]);

    // The programme will record a session under event id X; the police publish first
    // with X as event id and Nats-Msg-Id, on a case of their own.
    let session_id = id(100);
    let mut decoy = envelope(
        3,
        POLICE,
        "p1",
        Event::IncidentReported(IncidentReported {
            incident_ref: "I-2".into(),
            ..Default::default()
        }),
    );
    decoy.event_id = session_id.clone();
    accepted(&publish_as(&nats, POLICE, &[decoy]).await[0]);
    // The programme takes the referral, enrols him and records the session under X.
    let step = |n: u64, event: Event| envelope(n, PROGRAMME, "social-north/c2", event);
    let mut session = step(
        0,
        Event::SessionAttended(SessionAttended {
            session_number: 1,
            note: "attended".into(),
        }),
    );
    session.event_id = session_id;
    let outcomes = publish_as(
        &nats,
        PROGRAMME,
        &[
            step(
                4,
                Event::ReferralAccepted(ReferralAccepted {
                    referral_id: "r1".into(),
                }),
            ),
            step(5, Event::IntakeCompleted(IntakeCompleted::default())),
            step(
                6,
                Event::Enrolled(Enrolled {
                    programme: "group".into(),
                    planned_sessions: 12,
                }),
            ),
            session,
        ],
    )
    .await;
    for outcome in &outcomes {
        accepted(outcome);
    }
    let view = exchange.case(&case_id("social-north/c2")).await;
    assert_eq!(view.sessions_attended, 1, "the session is on the record");
    assert_eq!(view.holder, PROGRAMME);
}

/// A reference to another record's sealed text (child protection's referral reason),
/// written by the police into a label of their own incident, would have the query
/// service put that text back under the label's rights. The exchange refuses it; the
/// police's incident without it goes in, and holds none of the text.
#[tokio::test(flavor = "multi_thread")]
async fn no_agency_can_point_a_field_at_another_records_sealed_text() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    accepted(&publish_as(&nats, SOCIAL, &[social_case(1, "c1")]).await[0]);
    let incident = |n: u64, case: &str, area: String| {
        envelope(
            n,
            POLICE,
            case,
            Event::IncidentReported(IncidentReported {
                incident_ref: format!("I-{n}"),
                area,
                ..Default::default()
            }),
        )
    };
    // Guesses at the referral's record, each on a case of the police's own.
    let forged: Vec<Envelope> = (1..=3u64)
        .map(|seq| incident(1 + seq, &format!("p{seq}"), format!("\u{1}sealed/{seq}/0")))
        .collect();
    for outcome in publish_as(&nats, POLICE, &forged).await {
        let (reason, detail) = rejected(&outcome);
        assert_eq!(reason, RejectionReason::Invalid);
        assert!(detail.contains("reference mark"), "{detail}");
    }
    accepted(&publish_as(&nats, POLICE, &[incident(9, "p9", "Tábor".into())]).await[0]);

    let mut police = exchange.client_as(POLICE).await;
    for seq in 1..=3u64 {
        let refused = police
            .get_case(GetCaseRequest {
                case_id: case_id(&format!("p{seq}")),
                purpose: "casework".into(),
            })
            .await
            .expect_err("a refused incident opens no case");
        assert_eq!(refused.code(), Code::NotFound);
    }
    let own = police
        .get_case(GetCaseRequest {
            case_id: case_id("p9"),
            purpose: "casework".into(),
        })
        .await
        .expect("the police read their own case")
        .into_inner()
        .case
        .expect("a case");
    let text = format!("{own:?}");
    assert!(!text.contains("violent at home"), "{text}");
    assert_eq!(own.incidents[0].area, "Tábor");
}
