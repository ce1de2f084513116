//! Need to know over real gRPC: an agency sees a case only while it has a part
//! in it; a decliner keeps only what it saw up to its decline; everyone else
//! gets NOT_FOUND, indistinguishable from a case that does not exist.

use std::time::Duration;

use handoff_contract::v1::cases_service_client::CasesServiceClient;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish, publish_in_order, referral};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, PROGRAMME};
use tonic::Code;
use tonic::transport::Channel;

/// Test case `name` (see `events::case_id`), via GetCase.
async fn get(
    client: &mut CasesServiceClient<Channel>,
    name: &str,
) -> Result<CaseView, tonic::Status> {
    client
        .get_case(GetCaseRequest {
            case_id: case_id(name),
            purpose: "test".into(),
        })
        .await
        .map(|r| r.into_inner().case.expect("a case"))
}

async fn history(
    client: &mut CasesServiceClient<Channel>,
    name: &str,
) -> Result<Vec<u64>, tonic::Status> {
    client
        .case_history(CaseHistoryRequest {
            case_id: case_id(name),
            purpose: "test".into(),
        })
        .await
        .map(|r| r.into_inner().events.iter().map(|e| e.sequence).collect())
}

async fn listed(client: &mut CasesServiceClient<Channel>) -> Vec<(String, u64)> {
    client
        .list_cases(ListCasesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .cases
        .into_iter()
        .map(|c| (c.case_id, c.version))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_agency_sees_only_the_cases_and_the_part_of_history_it_is_entitled_to() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // Case "a": police open and refer to the centre (seq 1-2), the centre declines (3),
    // the police refer to the programme (4), which accepts (5) and records a session... after intake.
    let decline = Event::ReferralDeclined(ReferralDeclined {
        referral_id: "r1".into(),
        reason: "no capacity".into(),
        reason_code: OutcomeReason::NoCapacity as i32,
    });
    let events = vec![
        incident(1, "a"),
        referral(2, "a", "r1", CENTRE),
        envelope(3, CENTRE, "a", decline),
        referral(4, "a", "r2", PROGRAMME),
        envelope(
            5,
            PROGRAMME,
            "a",
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r2".into(),
            }),
        ),
        envelope(
            6,
            PROGRAMME,
            "a",
            Event::IntakeCompleted(IntakeCompleted {
                note: "intake".into(),
            }),
        ),
        // Case "b" is the police's alone.
        incident(7, "b"),
    ];
    let sent = publish_in_order(&js, &exchange, &events).await;
    let head = exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert_eq!(head.sequence, 7);

    let mut police = exchange.client_as(POLICE).await;
    let mut centre = exchange.client_as(CENTRE).await;
    let mut programme = exchange.client_as(PROGRAMME).await;
    let mut social = exchange.client_as("social-north").await;
    let mut probation = exchange.client_as("probation-north").await;
    let mut auditor = exchange.client_as(AUDITOR).await;

    // The police opened both cases and see all of them.
    assert_eq!(
        get(&mut police, "a").await.expect("police sees a").version,
        6
    );
    assert_eq!(
        listed(&mut police).await,
        vec![(case_id("a"), 6), (case_id("b"), 1)]
    );

    // The programme holds "a" and sees it whole, but not "b".
    assert_eq!(
        get(&mut programme, "a")
            .await
            .expect("holder sees a")
            .holder,
        PROGRAMME
    );
    assert_eq!(listed(&mut programme).await, vec![(case_id("a"), 6)]);

    // The centre declined at sequence 3: it keeps its view up to the decline, nothing after.
    let seen = get(&mut centre, "a")
        .await
        .expect("the decliner keeps its view");
    assert_eq!(seen.version, 3);
    assert_eq!(seen.last_sequence, 3);
    assert!(
        seen.referrals.iter().all(|r| r.referral_id != "r2"),
        "the later referral is not shown"
    );
    assert!(seen.intake_at.is_none());
    assert_eq!(
        history(&mut centre, "a").await.expect("history"),
        vec![1, 2, 3]
    );
    assert_eq!(listed(&mut centre).await, vec![(case_id("a"), 3)]);
    let past = centre
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("a"),
            as_of_sequence: 6,
            ..Default::default()
        })
        .await
        .expect("as of")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(
        past.version, 3,
        "asking for a later point does not reach past the decline"
    );

    // Agencies with no part: NOT_FOUND, exactly as for a case that does not exist.
    let missing = get(&mut social, "no-such-case").await.expect_err("missing");
    for client in [&mut social, &mut probation] {
        for case in ["a", "b"] {
            let refused = get(client, case).await.expect_err("no part, no case");
            assert_eq!(refused.code(), Code::NotFound);
            assert_eq!(refused.message(), format!("no case {}", case_id(case)));
            assert_eq!(
                missing.message(),
                format!("no case {}", case_id("no-such-case")),
                "same words as for a missing case"
            );
            assert_eq!(
                history(client, case).await.expect_err("no history").code(),
                Code::NotFound
            );
            let as_of = client
                .get_case_as_of(GetCaseAsOfRequest {
                    case_id: case_id(case),
                    as_of_sequence: 1,
                    ..Default::default()
                })
                .await
                .expect_err("no past either");
            assert_eq!(as_of.code(), Code::NotFound);
        }
        assert!(listed(client).await.is_empty());
    }
    // The programme may not see "b" either.
    assert_eq!(
        get(&mut programme, "b").await.expect_err("b").code(),
        Code::NotFound
    );

    // The past, for those entitled to it.
    let at_one = police
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("a"),
            as_of_sequence: 1,
            ..Default::default()
        })
        .await
        .expect("as of 1")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!((at_one.version, at_one.status()), (1, CaseStatus::Open));

    // ... or at a time: now is the latest state, long before the first event is no case at all.
    let now = police
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("a"),
            as_of_time: Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("as of a late time")
        .into_inner()
        .case
        .expect("a case");
    assert_eq!(now.version, 6);
    let before = police
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("a"),
            as_of_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect_err("before the case existed");
    assert_eq!(before.code(), Code::NotFound);

    // Auditors see every case whole.
    assert_eq!(
        listed(&mut auditor).await,
        vec![(case_id("a"), 6), (case_id("b"), 1)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_agency_sees_only_the_fields_the_policy_grants_it() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    let mut opened = incident(1, "f");
    if let Some(Event::IncidentReported(e)) = &mut opened.event {
        e.narrative = "strangled partner".into();
        e.subject_details = Some(PersonalDetails {
            full_name: "Josef Novotný".into(),
            date_of_birth: "1980-01-01".into(),
            phone: "+420 387 000 000".into(),
            address: "Lidická 12".into(),
        });
    }
    let accept = Event::ReferralAccepted(ReferralAccepted {
        referral_id: "r".into(),
    });
    let intake = Event::IntakeCompleted(IntakeCompleted {
        note: "intake".into(),
    });
    let enrol = Event::Enrolled(Enrolled {
        programme: "group".into(),
        planned_sessions: 20,
    });
    let session = Event::SessionAttended(SessionAttended {
        session_number: 1,
        note: "talked about his anger".into(),
    });
    let events = [
        opened,
        referral(2, "f", "r", PROGRAMME),
        envelope(3, PROGRAMME, "f", accept),
        envelope(4, PROGRAMME, "f", intake),
        envelope(5, PROGRAMME, "f", enrol),
        envelope(6, PROGRAMME, "f", session),
    ];
    let sent = publish_in_order(&js, &exchange, &events).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    let mut police = exchange.client_as(POLICE).await;
    let mut programme = exchange.client_as(PROGRAMME).await;
    let mut auditor = exchange.client_as(AUDITOR).await;

    let note_of = |events: &[LoggedEvent]| {
        events.iter().find_map(
            |e| match e.envelope.as_ref().and_then(|e| e.event.as_ref()) {
                Some(Event::SessionAttended(s)) => Some(s.note.clone()),
                _ => None,
            },
        )
    };
    let narrative_of = |events: &[LoggedEvent]| {
        events.iter().find_map(
            |e| match e.envelope.as_ref().and_then(|e| e.event.as_ref()) {
                Some(Event::IncidentReported(i)) => Some(i.narrative.clone()),
                _ => None,
            },
        )
    };
    let full_history = |client: &mut CasesServiceClient<Channel>| {
        let mut client = client.clone();
        async move {
            client
                .case_history(CaseHistoryRequest {
                    case_id: case_id("f"),
                    purpose: "test".into(),
                })
                .await
                .expect("history")
                .into_inner()
                .events
        }
    };

    // The programme: contact details and attendance and notes, not the police narrative.
    let seen = get(&mut programme, "f").await.expect("programme");
    assert!(
        seen.incidents.is_empty(),
        "the programme must not see the incident"
    );
    assert_eq!(
        seen.subject_details.as_ref().map(|d| d.phone.as_str()),
        Some("+420 387 000 000")
    );
    assert_eq!(seen.sessions_attended, 1);
    let events = full_history(&mut programme).await;
    assert_eq!(narrative_of(&events).as_deref(), Some(""));
    assert_eq!(note_of(&events).as_deref(), Some("talked about his anger"));

    // The police: whether he engages, and their own incident; not session notes, not his phone.
    let seen = get(&mut police, "f").await.expect("police");
    assert_eq!(seen.incidents[0].narrative, "strangled partner");
    assert_eq!(
        (seen.status(), seen.sessions_attended),
        (CaseStatus::Enrolled, 1)
    );
    let details = seen.subject_details.clone().unwrap_or_default();
    assert_eq!(
        (details.full_name.as_str(), details.phone.as_str()),
        ("Josef Novotný", "")
    );
    assert_eq!(
        note_of(&full_history(&mut police).await).as_deref(),
        Some("")
    );

    // Auditors: everything that was done, but no personal details (not granted).
    let seen = get(&mut auditor, "f").await.expect("auditor");
    assert!(seen.subject_details.is_none());
    assert_eq!(seen.incidents.len(), 1);

    // Consent withdrawn: partners see only what the law still requires.
    let withdraw = envelope(
        7,
        PROGRAMME,
        "f",
        Event::ConsentWithdrawn(ConsentWithdrawn {
            scope: "all".into(),
        }),
    );
    let last = publish(&js, &withdraw).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;
    let seen = get(&mut programme, "f").await.expect("programme");
    assert!(
        seen.subject_details.is_none(),
        "no personal details after withdrawal"
    );
    assert_eq!(seen.sessions_attended, 1, "attendance is still shared");
    assert_eq!(
        note_of(&full_history(&mut programme).await).as_deref(),
        Some("")
    );
    let seen = get(&mut police, "f").await.expect("police");
    assert!(seen.subject_details.is_none());
}
