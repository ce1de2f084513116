//! Erasure by key destruction, end to end: personal details are stored only
//! sealed, under a key per subject and contributing agency; `handoff admin
//! erase` destroys every key of the subject, an agency's erasure request only
//! the key of what it contributed; afterwards every read path says "erased",
//! the chain still verifies, exports hold only ciphertext, and neither the
//! plaintext nor a destroyed key is anywhere in the data dir. Then the subject
//! access report.

use std::path::Path;
use std::time::{Duration, Instant};

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish, referral, subject_of};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, PROGRAMME, run_handoff};
use handoff_keyring::{Kek, Keyring};

const NAME: &str = "Vojtěch Nezaměnitelný-Zkušební";
const PHONE: &str = "+420 608 555 012";
const OTHER_NAME: &str = "Kvirin Stálečitelný";

fn details(name: &str) -> PersonalDetails {
    PersonalDetails {
        full_name: name.into(),
        date_of_birth: "1979-04-01".into(),
        phone: PHONE.into(),
        address: "Mlýnská stoka 7, 370 01 České Budějovice".into(),
    }
}

fn with_details(mut e: Envelope, name: &str) -> Envelope {
    match e.event.as_mut() {
        Some(Event::IncidentReported(i)) => i.subject_details = Some(details(name)),
        Some(Event::ReferralMade(r)) => r.subject_details = Some(details(name)),
        _ => panic!("no details in this event"),
    }
    e
}

fn erasure(n: u64, agency: &str, case: &str) -> Envelope {
    envelope(
        n,
        agency,
        case,
        Event::SubjectErasureRequested(SubjectErasureRequested {
            reason: "objection under art. 21".into(),
            requested_by: "caseworker 17".into(),
        }),
    )
}

async fn get(exchange: &Exchange, agency: &str, case: &str) -> CaseView {
    exchange
        .client_as(agency)
        .await
        .get_case(GetCaseRequest {
            case_id: case_id(case),
            purpose: "erasure test".into(),
        })
        .await
        .expect("GetCase")
        .into_inner()
        .case
        .expect("a case")
}

async fn wait_until_erased(exchange: &Exchange, case: &str) -> CaseView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = get(exchange, POLICE, case).await;
        if view.subject_details_erased {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "case {case} not erased: {}",
            exchange.last_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_destroys_the_key_everywhere_and_the_chain_still_verifies() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // e1: the subject to erase; e2: someone else, who must stay readable; e3: erased by an agency.
    publish(&js, &with_details(incident(1, "e1"), NAME)).await;
    publish(&js, &with_details(referral(2, "e1", "r1", CENTRE), NAME)).await;
    publish(&js, &with_details(incident(3, "e2"), OTHER_NAME)).await;
    publish(&js, &with_details(incident(4, "e3"), "Third Person")).await;
    // Refused (unknown addressee), carrying the details: kept in the quarantine, sealed.
    let refused = publish(
        &js,
        &with_details(referral(5, "e1", "r2", "nobody-north"), NAME),
    )
    .await;
    // The same event again: a duplicate (the broker's PubAck names the original's sequence).
    publish(&js, &with_details(incident(1, "e1"), NAME)).await;
    let head = exchange.wait_for([&refused], Duration::from_secs(30)).await;
    assert_eq!((head.sequence, head.quarantined), (4, 1));

    // Before: the details open for a partner allowed to see them...
    let view = get(&exchange, POLICE, "e1").await;
    assert_eq!(
        view.subject_details.as_ref().map(|d| d.full_name.as_str()),
        Some(NAME)
    );
    assert!(
        view.sealed_subject_details.is_none(),
        "partners never get ciphertext"
    );
    // ...yet they are nowhere in the clear on disk, while their ciphertext is (the scan sees the store).
    let records = exchange.read_log().await;
    let sealed = records[0].sealed_details.clone().expect("incident sealed");
    assert!(!sealed.ciphertext.is_empty());
    let data = exchange.data_dir();
    assert!(!handoff_e2e::files_containing(&data, &sealed.ciphertext).is_empty());
    assert_eq!(
        handoff_e2e::files_containing(&data, NAME.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(
        handoff_e2e::files_containing(&data, PHONE.as_bytes()),
        Vec::<String>::new()
    );

    // The subject's wrapped key, as stored (read with the exchange stopped: sled locks its
    // files): one, the police's, who contributed every detail about the subject.
    exchange.kill();
    let kek = Kek::from_file(&exchange.kek_path()).expect("kek");
    let wrapped = {
        let ring = Keyring::load(&data, kek.clone()).expect("keyring");
        let keys = ring.wrapped_keys(&subject_of("e1")).expect("read");
        assert_eq!(
            keys.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            vec![POLICE],
            "one key per contributing agency"
        );
        keys.into_iter().next().expect("the police's key").1
    };
    assert!(!handoff_e2e::files_containing(&data, &wrapped).is_empty());
    exchange.restart().await;

    // An agency without a part may not erase (refused like a case that does not exist);
    // the police, a party who contributed e3's details, may erase what it contributed.
    let stranger = publish(&js, &erasure(6, PROGRAMME, "e2")).await;
    let own = publish(&js, &erasure(7, POLICE, "e3")).await;
    let head = exchange
        .wait_for([&stranger, &own], Duration::from_secs(30))
        .await;
    assert_eq!((head.sequence, head.quarantined), (5, 2));
    let quarantine = exchange.quarantine().await;
    let refusal = quarantine
        .iter()
        .find(|q| q.agency == PROGRAMME)
        .expect("the programme's erasure request is quarantined");
    assert_eq!(
        refusal.reason(),
        RejectionReason::UnknownCase,
        "{refusal:?}"
    );
    assert!(!get(&exchange, POLICE, "e2").await.subject_details_erased);
    wait_until_erased(&exchange, "e3").await;

    // The operator erases e1's subject, with a reason, through the stream.
    let (code, out) = run_handoff(
        &[
            "admin",
            "erase",
            &subject_of("e1"),
            "--reason",
            "request under GDPR art. 17, ref DP-7",
            "--config",
        ],
        &[&exchange.config_path()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted"), "{out}");

    // After: every read path says erased; the case's facts remain.
    let view = wait_until_erased(&exchange, "e1").await;
    assert!(view.subject_details.is_none());
    assert_eq!(
        view.incidents.len(),
        1,
        "case facts without personal data remain"
    );
    assert_eq!(view.referrals.len(), 1);
    let mut centre = exchange.client_as(CENTRE).await;
    let history = centre
        .case_history(CaseHistoryRequest {
            case_id: case_id("e1"),
            purpose: "erasure test".into(),
        })
        .await
        .expect("history")
        .into_inner();
    assert_eq!(history.events.len(), 2);
    for e in &history.events {
        assert!(
            e.subject_details_erased,
            "event {} still readable",
            e.sequence
        );
        let json = format!("{:?}", e.envelope);
        assert!(!json.contains(NAME), "{json}");
    }
    let listed = centre
        .list_cases(ListCasesRequest::default())
        .await
        .expect("list")
        .into_inner();
    let e1 = listed
        .cases
        .iter()
        .find(|c| c.case_id == case_id("e1"))
        .expect("e1 listed");
    assert!(e1.subject_details_erased && e1.subject_details.is_none());
    let as_of = centre
        .get_case_as_of(GetCaseAsOfRequest {
            case_id: case_id("e1"),
            as_of_sequence: 1,
            ..Default::default()
        })
        .await
        .expect("as of")
        .into_inner()
        .case
        .expect("a case");
    assert!(as_of.subject_details_erased && as_of.subject_details.is_none());
    // Someone else's details are untouched.
    let other = get(&exchange, POLICE, "e2").await;
    assert_eq!(
        other.subject_details.as_ref().map(|d| d.full_name.as_str()),
        Some(OTHER_NAME)
    );

    // The chain still verifies, live and as an export; the export holds only ciphertext.
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let (code, key) = run_handoff(&["key", "show", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{key}");
    let (code, out) = run_handoff(
        &[
            "audit",
            "verify",
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &certs,
            "--public-key",
            key.trim(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("log.jsonl");
    let (code, out) = run_handoff(
        &[
            "audit", "export", "--server", &server, "--as", AUDITOR, "--certs", &certs, "--out",
        ],
        &[&file],
    );
    assert_eq!(code, 0, "{out}");
    let export = std::fs::read_to_string(&file).expect("export");
    assert!(export.contains("sealed_details"), "details travel sealed");
    assert!(!export.contains(NAME) && !export.contains(OTHER_NAME));
    // Replaying the export rebuilds projections equal to the live ones, erasures included.
    let replayed = dir.path().join("replayed");
    let (code, out) = run_handoff(
        &[
            "audit",
            "replay",
            "--public-key",
            key.trim(),
            "--server",
            &server,
            "--as",
            AUDITOR,
            "--certs",
            &certs,
            "--config",
        ],
        &[
            &exchange.config_path(),
            Path::new("--data-dir"),
            &replayed,
            &file,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("EQUAL"), "{out}");

    // The quarantined copy is sealed too, and says so in the subject report.
    let report = exchange
        .client_as(AUDITOR)
        .await
        .subject_report(SubjectReportRequest {
            subject_pseudonym: subject_of("e1"),
            purpose: "erasure test".into(),
        })
        .await
        .expect("report")
        .into_inner()
        .report
        .expect("a report");
    assert!(report.erased && report.erasure_reason.contains("DP-7"));
    assert_eq!(report.cases.len(), 1);
    assert_eq!(report.quarantined.len(), 1);
    assert!(!format!("{report:?}").contains(NAME));

    // Erasure survives a restart, and no copy of the key or the plaintext is left on disk.
    exchange.kill();
    assert_eq!(
        handoff_e2e::files_containing(&data, &wrapped),
        Vec::<String>::new()
    );
    assert_eq!(
        handoff_e2e::files_containing(&data, NAME.as_bytes()),
        Vec::<String>::new()
    );
    {
        let ring = Keyring::load(&data, kek).expect("keyring");
        let keys = |name: &str| ring.wrapped_keys(&subject_of(name)).expect("read").len();
        assert_eq!(keys("e1"), 0, "the exchange's erasure destroys every key");
        assert_eq!(keys("e2"), 1);
        assert_eq!(keys("e3"), 0, "the police's own erasure destroyed its key");
        assert!(ring.erasure(&subject_of("e1")).expect("read").is_some());
        // e3 was erased by the police for what it contributed, not exchange-wide.
        assert!(ring.erasure(&subject_of("e3")).expect("read").is_none());
        assert!(
            ring.erasure_by(&subject_of("e3"), POLICE)
                .expect("read")
                .is_some_and(|e| e.reason.contains("art. 21"))
        );
    }
    exchange.restart().await;
    assert!(get(&exchange, POLICE, "e1").await.subject_details_erased);
    // Details about an erased subject that arrive later are not stored again.
    let later = publish(&js, &with_details(referral(8, "e1", "r3", PROGRAMME), NAME)).await;
    exchange.wait_for([&later], Duration::from_secs(30)).await;
    let view = get(&exchange, POLICE, "e1").await;
    assert!(view.subject_details_erased && view.subject_details.is_none());
    exchange.kill();
    assert_eq!(
        handoff_e2e::files_containing(&data, NAME.as_bytes()),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_report_lists_what_is_held_and_who_read_it_for_auditors_only() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    publish(&js, &with_details(incident(1, "s1"), NAME)).await;
    let last = publish(&js, &with_details(referral(2, "s1", "r1", CENTRE), NAME)).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;
    get(&exchange, CENTRE, "s1").await; // a read the report must show

    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let report = |agency: &str| {
        run_handoff(
            &[
                "admin",
                "subject-report",
                &subject_of("s1"),
                "--server",
                &server,
                "--as",
                agency,
                "--certs",
                &certs,
            ],
            &[],
        )
    };
    let (code, out) = report(AUDITOR);
    assert_eq!(code, 0, "{out}");
    for expected in [
        "SUBJECT ACCESS REPORT".to_string(),
        format!("case {}", case_id("s1")),
        NAME.to_string(),
        "incident_reported by police-north".to_string(),
        "referral_made by police-north".to_string(),
        format!("ic-north GetCase cases [{}]", case_id("s1")),
        "purpose \"erasure test\"".to_string(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    // Only auditors; the refusal is itself recorded.
    let (code, out) = report(CENTRE);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("only auditors"), "{out}");
    let (_, out) = report(AUDITOR);
    assert!(
        out.contains("audit SubjectReport"),
        "the DPO's own read is on record:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_erases_a_subject_when_the_clock_passes_the_rule() {
    let nats = NatsServer::start();
    let exchange = Exchange::start_with(
        &nats,
        handoff_e2e::ExchangeOptions {
            policy_replace: vec![(
                "check_every_secs = 3600".into(),
                "check_every_secs = 1".into(),
            )],
            clock: Some("2000-01-01T00:00:00Z".into()),
            ..Default::default()
        },
    )
    .await;
    let js = async_nats::jetstream::new(nats.connect().await);
    publish(&js, &with_details(incident(1, "closed"), NAME)).await;
    publish(&js, &with_details(incident(2, "open"), OTHER_NAME)).await;
    let closure = envelope(
        3,
        POLICE,
        "closed",
        Event::CaseClosed(CaseClosed {
            reason: "no further action".into(),
            ..Default::default()
        }),
    );
    let last = publish(&js, &closure).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;
    let closed_at = handoff_contract::time::to_unix_ms(
        &get(&exchange, POLICE, "closed")
            .await
            .updated_at
            .expect("closed at"),
    );
    let due = handoff_domain::retention::add_years(closed_at, 5);

    // A day before the rule's date: a check runs and erases nobody.
    let before = handoff_contract::time::from_unix_ms(due - 86_400_000).to_string();
    exchange.set_clock(&before);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exchange
        .last_log()
        .lines()
        .any(|l| l.contains("retention checked") && l.contains(&before))
    {
        assert!(
            Instant::now() < deadline,
            "no check at {before}: {}",
            exchange.last_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !get(&exchange, POLICE, "closed")
            .await
            .subject_details_erased
    );

    // A day after: the closed case's subject is erased, the open one's is not.
    exchange.set_clock(&handoff_contract::time::from_unix_ms(due + 86_400_000).to_string());
    wait_until_erased(&exchange, "closed").await;
    let open = get(&exchange, POLICE, "open").await;
    assert_eq!(
        open.subject_details.as_ref().map(|d| d.full_name.as_str()),
        Some(OTHER_NAME)
    );
    let report = exchange
        .client_as(AUDITOR)
        .await
        .subject_report(SubjectReportRequest {
            subject_pseudonym: subject_of("closed"),
            purpose: "retention test".into(),
        })
        .await
        .expect("report")
        .into_inner()
        .report
        .expect("a report");
    assert!(
        report
            .erasure_reason
            .starts_with("retention: 5 years after the last case closed on"),
        "{}",
        report.erasure_reason
    );
    // The rule's erasure is on the record, once, even though the check keeps running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let erasures = exchange
        .read_log()
        .await
        .iter()
        .filter(|r| {
            prost::Message::decode(r.envelope.as_slice())
                .is_ok_and(|e: Envelope| e.source_agency == "exchange")
        })
        .count();
    assert_eq!(erasures, 1);
}
