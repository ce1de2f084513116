//! Nothing in the clear, anywhere: personal details and free text leave the agency
//! sealed to the exchange's transport key, so the broker's store holds only
//! ciphertext; the exchange keeps them sealed under the subject's keys (refused
//! and undecodable messages included); and once the subject is erased, no file
//! of the exchange, its key store, the broker, an export, a backup, a rejects file
//! or a log holds any of them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use handoff_e2e::events::{
    case_id, envelope, incident, publish_as, publish_raw, referral, subject,
};
use handoff_e2e::{
    AUDITOR, CENTRE, Exchange, NatsServer, POLICE, files_containing, handoff_binary, run_handoff,
};
use prost::Message;

const NAME: &str = "Jaroslav Nezaměnitelný";
const BIRTH: &str = "1979-04-17";
const PHONE: &str = "+420 777 555 019";
const ADDRESS: &str = "Lannova třída 12, České Budějovice";
const NARRATIVE: &str = "threatened his partner in the stairwell of Lannova 12";
const PROTECTED: &str = "Lannova 12 and 100 m around it";
const REASON: &str = "partner Marie is afraid; he agreed to the programme";
/// Someone else's, who must stay readable after the first subject's erasure.
const OTHER: &str = "Bohumil Zůstávající";
/// Published by a careless publisher in the clear: refused, and kept only sealed.
const UNSEALED: &str = "Vratislav Nezapečetěný";
/// In a body no one can decode, in the clear: kept only sealed.
const GARBLED: &str = "Kvido Nečitelný";

fn details(name: &str) -> PersonalDetails {
    PersonalDetails {
        full_name: name.into(),
        date_of_birth: BIRTH.into(),
        phone: PHONE.into(),
        address: ADDRESS.into(),
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

fn incident_with(n: u64, case: &str, name: &str, narrative: &str) -> Envelope {
    let mut e = with_details(incident(n, case), name);
    if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
        i.narrative = narrative.into();
        if name != NAME {
            // Only the subject to be erased has these; the others are their own.
            i.subject_details = Some(PersonalDetails {
                full_name: name.into(),
                ..PersonalDetails::default()
            });
        }
    }
    e
}

/// A case as the police, who may see personal details, read it.
async fn police_view(exchange: &Exchange, case: &str) -> CaseView {
    exchange
        .client_as(POLICE)
        .await
        .get_case(GetCaseRequest {
            case_id: case_id(case),
            purpose: "test".into(),
        })
        .await
        .expect("GetCase")
        .into_inner()
        .case
        .expect("a case")
}

/// Everything private the scenario sent about the subject to be erased.
const SECRETS: [&str; 7] = [NAME, BIRTH, PHONE, ADDRESS, NARRATIVE, PROTECTED, REASON];

/// Every file under `dirs` holding any of `needles`, as "needle in path".
fn found_in(dirs: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for dir in dirs.iter().filter(|d| d.exists()) {
        for needle in needles {
            for path in files_containing(dir, needle.as_bytes()) {
                found.push(format!("{needle:?} in {path}"));
            }
        }
    }
    found
}

fn run_referral_adapter(
    exchange: &Exchange,
    nats: &NatsServer,
    input: &Path,
    rejects: &Path,
) -> String {
    let secret = handoff_e2e::agency_secret_file(rejects.parent().expect("a dir"), POLICE);
    let out = Command::new(handoff_binary())
        .args(exchange.adapter_args("referral", POLICE, nats, &secret))
        .arg("--rejects")
        .arg(rejects)
        .arg(input)
        .output()
        .expect("adapter runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_private_is_kept_in_the_clear_and_erasure_reaches_every_copy() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // The police open e1 (details, a narrative), order an eviction (the protected area is
    // the victim's home) and refer the case with a reason; e2 is someone else's case.
    let eviction = envelope(
        3,
        POLICE,
        "e1",
        Event::EvictionOrdered(EvictionOrdered {
            incident_ref: "I-e1".into(),
            ordered_at: Some(handoff_contract::time::from_unix_ms(1_790_000_002_000)),
            duration_days: 10,
            protected_area: PROTECTED.into(),
            ..Default::default()
        }),
    );
    let mut referred = with_details(referral(4, "e1", "r1", CENTRE), NAME);
    if let Some(Event::ReferralMade(r)) = referred.event.as_mut() {
        r.reason = REASON.into();
    }
    let outcomes = publish_as(
        &nats,
        POLICE,
        &[
            incident_with(1, "e1", NAME, NARRATIVE),
            incident_with(2, "e2", OTHER, "a quarrel at the bus station"),
            eviction,
            referred,
        ],
    )
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, handoff_adapters::Outcome::Accepted { .. })),
        "{outcomes:?}"
    );

    // A careless publisher sends details in the clear: refused, never kept in the clear.
    let clear = incident_with(5, "e5", UNSEALED, "in the clear");
    let unsealed = publish_raw(
        &js,
        &subject(&clear),
        Some(&clear.event_id),
        clear.encode_to_vec(),
    )
    .await;
    // A sealed envelope with a stray byte, and a garbled body in the clear: undecodable.
    let mut stray = handoff_e2e::seal(&incident_with(6, "e6", NAME, NARRATIVE)).encode_to_vec();
    stray.push(0);
    let stray = publish_raw(&js, &subject(&clear), Some("stray"), stray).await;
    let mut garbled = incident_with(7, "e7", GARBLED, "garbled").encode_to_vec();
    garbled.push(0);
    let garbled = publish_raw(&js, &subject(&clear), Some("garbled"), garbled).await;
    let head = exchange
        .wait_for([&unsealed, &stray, &garbled], Duration::from_secs(30))
        .await;
    assert_eq!((head.sequence, head.quarantined), (4, 3));

    // Partners entitled to them read the details and the text as written.
    let view = police_view(&exchange, "e1").await;
    assert_eq!(
        view.subject_details.as_ref().map(|d| d.full_name.as_str()),
        Some(NAME)
    );
    assert_eq!(view.incidents[0].narrative, NARRATIVE);
    assert_eq!(view.evictions[0].protected_area, PROTECTED);
    let inbox = exchange
        .client_as(CENTRE)
        .await
        .inbox(InboxRequest::default())
        .await
        .expect("inbox")
        .into_inner();
    assert!(
        inbox.items.iter().any(|i| i.reason == REASON),
        "{:?}",
        inbox.items
    );
    let history = exchange
        .client_as(POLICE)
        .await
        .case_history(CaseHistoryRequest {
            case_id: case_id("e1"),
            purpose: "test".into(),
        })
        .await
        .expect("history")
        .into_inner();
    assert!(format!("{history:?}").contains(NARRATIVE));

    // The refusals say why without repeating anything private.
    let quarantine = exchange.quarantine().await;
    assert_eq!(quarantine.len(), 3);
    let reasons: Vec<RejectionReason> = quarantine.iter().map(|q| q.reason()).collect();
    assert_eq!(
        reasons,
        vec![
            RejectionReason::Unsealed,
            RejectionReason::Malformed,
            RejectionReason::Malformed
        ]
    );
    for q in &quarantine[1..] {
        assert!(q.raw.is_empty() && q.sealed_raw.is_some(), "{q:?}");
    }
    let text = format!("{quarantine:?}");
    for secret in SECRETS.iter().chain(&[UNSEALED, GARBLED]) {
        assert!(!text.contains(secret), "the quarantine shows {secret:?}");
    }

    // The broker holds only ciphertext of what the adapters sealed.
    assert_eq!(
        found_in(&[nats.store_dir()], &SECRETS),
        Vec::<String>::new(),
        "the broker's store holds what left an agency sealed in the clear"
    );
    // The exchange holds nothing private in the clear, not even what arrived in the clear.
    let data = exchange.data_dir();
    let mut everything: Vec<&str> = SECRETS.to_vec();
    everything.extend([OTHER, UNSEALED, GARBLED]);
    assert_eq!(
        found_in(std::slice::from_ref(&data), &everything),
        Vec::<String>::new()
    );

    // A record the adapter refuses is kept in its rejects file without its private values.
    let dir = tempfile::tempdir().expect("tmp");
    // The agency's own input stays at the agency, apart from the copies scanned below.
    let input = tempfile::tempdir().expect("tmp");
    let form = input.path().join("referral.json");
    let example = std::fs::read_to_string(
        handoff_e2e::repo_root().join("schemas/examples/referral-form.json"),
    )
    .expect("example");
    let mut value: serde_json::Value = serde_json::from_str(&example).expect("json");
    value["person"]["full_name"] = NAME.into();
    value["person"]["date_of_birth"] = "not a date".into();
    value["reason"] = REASON.into();
    std::fs::write(&form, value.to_string()).expect("write form");
    let rejects = dir.path().join("referral.rejects.jsonl");
    let out = run_referral_adapter(&exchange, &nats, &form, &rejects);
    assert!(out.contains("invalid, not published"), "{out}");
    let kept = std::fs::read_to_string(&rejects).expect("rejects file");
    assert!(
        kept.contains("[withheld]") && kept.contains("date_of_birth"),
        "{kept}"
    );

    // The operator erases the subject; then a backup and an export are taken.
    let subject = handoff_e2e::events::subject_of("e1");
    let (code, out) = run_handoff(
        &[
            "admin",
            "erase",
            &subject,
            "--reason",
            "GDPR art. 17, ref DP-9",
            "--config",
        ],
        &[&exchange.config_path()],
    );
    assert_eq!(code, 0, "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !police_view(&exchange, "e1").await.subject_details_erased {
        assert!(std::time::Instant::now() < deadline, "not erased in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = police_view(&exchange, "e1").await;
    assert!(view.incidents[0].narrative.is_empty() && view.evictions[0].protected_area.is_empty());
    let other = police_view(&exchange, "e2").await;
    assert_eq!(
        other.subject_details.map(|d| d.full_name),
        Some(OTHER.to_string())
    );
    let backup = dir.path().join("backup");
    let (code, out) = run_handoff(
        &["admin", "backup", "--config"],
        &[&exchange.config_path(), Path::new("--out"), &backup],
    );
    assert_eq!(code, 0, "{out}");
    let export = dir.path().join("export.jsonl");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let (code, out) = run_handoff(
        &[
            "audit", "export", "--server", &server, "--as", AUDITOR, "--certs", &certs, "--out",
        ],
        &[&export],
    );
    assert_eq!(code, 0, "{out}");

    // No copy holds anything of the erased subject in the clear: data dir (log, key store,
    // quarantine), broker, export, backup, rejects file, the exchange's logs.
    exchange.stop();
    assert_eq!(
        found_in(
            &[
                data,
                nats.store_dir(),
                dir.path().to_path_buf(),
                exchange.home()
            ],
            &SECRETS
        ),
        Vec::<String>::new()
    );
}

/// The quick start's scenario, as `handoff demo` plays it against a real exchange: the
/// broker's store ends up holding none of its personal details or free text.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_leaves_nothing_private_in_the_brokers_store() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let (code, out) = run_handoff(&["demo", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{out}");
    // His (schemas/examples/police-eviction.json), hers and the casework's free text, as
    // the demo publishes them; and the agencies' own person ids, which only key ids.
    let private = [
        "Marek Novák",
        "1984-03-02",
        "+420 603 123 456",
        "840302/1234",
        "Called by neighbour",
        "Jana Nováková",
        "+420 777 123 456",
        "Lidická 12",
        "azylový dům pro matky",
        "855612/1234",
        "Vysvětlila vykázání",
        "Bezpečnostní plán, doprovod",
        "Soud uložil účast",
        "Po dvou neomluvených",
        "Výhružné zprávy",
    ];
    assert!(
        out.contains("Jana Nováková") && out.contains("azylový dům pro matky"),
        "the demo reads her details back to her support worker:\n{out}"
    );
    assert_eq!(
        found_in(&[nats.store_dir()], &private),
        Vec::<String>::new()
    );
    assert_eq!(
        found_in(&[exchange.data_dir()], &private),
        Vec::<String>::new()
    );
}
