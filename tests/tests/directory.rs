//! The service directory end to end: agencies publish, update and withdraw
//! service offers; `ListServices` serves the current set over mTLS gRPC;
//! `handoff directory export` writes an escaped HTML page and HSDS JSON; a
//! non-helping kind is quarantined; a rebuild leaves the projection unchanged.

use std::time::Duration;

use handoff_contract::v1::directory_service_client::DirectoryServiceClient;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    Envelope, GetProjectionDigestRequest, ListServicesRequest, RejectionReason, ServiceOffered,
    ServiceWithdrawn,
};
use handoff_e2e::events::{envelope, publish};
use handoff_e2e::{
    AUDITOR, CENTRE, Exchange, NatsServer, POLICE, PROGRAMME, repo_root, run_handoff,
};

const SCRIPT_NAME: &str = "Men's programme <script>alert(1)</script>";

/// A directory event from `agency`: no case, no subject.
fn listing(n: u64, agency: &str, event: Event) -> Envelope {
    Envelope {
        case_id: String::new(),
        subject_pseudonym: String::new(),
        ..envelope(n, agency, "", event)
    }
}

fn offer(n: u64, agency: &str, service_id: &str, name: &str, areas: &[&str]) -> Envelope {
    listing(
        n,
        agency,
        Event::ServiceOffered(ServiceOffered {
            service_id: service_id.into(),
            name: name.into(),
            description: format!("{name} (version {n})"),
            eligibility: "Adults who use violence in close relationships".into(),
            areas: areas.iter().map(|a| a.to_string()).collect(),
            languages: vec!["cs".into(), "en".into()],
            how_to_refer: "Call us, or refer through the exchange".into(),
            phone: "+420 387 000 000".into(),
            email: "help@example.org".into(),
            url: "https://example.org/help".into(),
            opening_hours: "Mon-Fri 9-17".into(),
        }),
    )
}

async fn services(exchange: &Exchange, req: ListServicesRequest) -> Vec<(String, String, String)> {
    DirectoryServiceClient::new(exchange.channel_as(POLICE).await)
        .list_services(req)
        .await
        .expect("any registered agency may read the directory")
        .into_inner()
        .services
        .into_iter()
        .map(|l| {
            let o = l.offer.unwrap_or_default();
            (l.agency, o.service_id, o.description)
        })
        .collect()
}

async fn digest(exchange: &Exchange) -> Vec<u8> {
    exchange
        .client_as(AUDITOR)
        .await
        .get_projection_digest(GetProjectionDigestRequest {})
        .await
        .expect("digest")
        .into_inner()
        .digest
        .expect("a digest")
        .digest
}

#[tokio::test(flavor = "multi_thread")]
async fn agencies_publish_their_services_and_the_directory_serves_and_exports_them() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    let mut sent = vec![
        publish(
            &js,
            &offer(1, PROGRAMME, "men-programme", SCRIPT_NAME, &["North"]),
        )
        .await,
        publish(
            &js,
            &offer(2, PROGRAMME, "counselling", "Counselling", &["North"]),
        )
        .await,
        publish(&js, &offer(3, CENTRE, "ic-advice", "Advice line", &[])).await,
        publish(&js, &offer(4, CENTRE, "ic-hotline", "Hotline", &["South"])).await,
        // An update: same service id, same agency.
        publish(
            &js,
            &offer(
                5,
                PROGRAMME,
                "men-programme",
                SCRIPT_NAME,
                &["North", "South"],
            ),
        )
        .await,
    ];
    let withdraw = |n, id: &str| {
        listing(
            n,
            CENTRE,
            Event::ServiceWithdrawn(ServiceWithdrawn {
                service_id: id.into(),
                reason: "funding ended".into(),
            }),
        )
    };
    sent.push(publish(&js, &withdraw(6, "ic-hotline")).await);
    // Refused: an auditor offers help, a bad email, a withdrawal of nothing.
    sent.push(publish(&js, &offer(7, AUDITOR, "audit-help", "Audit", &["North"])).await);
    let mut bad = offer(8, PROGRAMME, "bad", "Bad", &["North"]);
    if let Some(Event::ServiceOffered(o)) = &mut bad.event {
        o.email = "not-an-address".into();
    }
    sent.push(publish(&js, &bad).await);
    sent.push(publish(&js, &withdraw(9, "ic-hotline")).await);
    let head = exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert_eq!(head.sequence, 6, "six directory events are logged");

    let all = services(&exchange, ListServicesRequest::default()).await;
    let ids: Vec<(&str, &str)> = all
        .iter()
        .map(|(a, s, _)| (a.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (CENTRE, "ic-advice"),
            (PROGRAMME, "counselling"),
            (PROGRAMME, "men-programme"),
        ]
    );
    assert!(
        all[2].2.ends_with("(version 5)"),
        "the update replaced the offer: {all:?}"
    );
    let south = services(
        &exchange,
        ListServicesRequest {
            area: "south".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(south.len(), 1, "{south:?}");
    let text = services(
        &exchange,
        ListServicesRequest {
            text: "COUNSEL".into(),
            language: "EN".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(text.len(), 1, "{text:?}");

    let quarantine = exchange.quarantine().await;
    // Each agency publishes into its own ingress stream, so refusals of different
    // agencies reach the quarantine in no fixed order: each is found by its agency.
    assert_eq!(quarantine.len(), 3, "{quarantine:?}");
    let refusal = |agency: &str| -> (RejectionReason, String) {
        let entries: Vec<_> = quarantine.iter().filter(|e| e.agency == agency).collect();
        assert_eq!(entries.len(), 1, "{agency}: {quarantine:?}");
        (entries[0].reason(), entries[0].detail.clone())
    };
    let auditor = refusal(AUDITOR);
    assert_eq!(auditor.0, RejectionReason::KindMayNotPublish, "{auditor:?}");
    assert!(
        auditor
            .1
            .contains("auditor may not publish service_offered"),
        "{auditor:?}"
    );
    let programme = refusal(PROGRAMME);
    assert_eq!(programme.0, RejectionReason::Invalid, "{programme:?}");
    assert!(
        programme.1.contains("email \"not-an-address\""),
        "{programme:?}"
    );
    let centre = refusal(CENTRE);
    assert!(
        centre.1.contains("offers no service \"ic-hotline\""),
        "{centre:?}"
    );

    // The export, through the CLI over gRPC; left in target/ for a look in a browser.
    let out_dir = repo_root().join("target/directory-export");
    let _ = std::fs::remove_dir_all(&out_dir);
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir().display().to_string();
    let (code, out) = run_handoff(
        &[
            "directory",
            "export",
            "--server",
            &server,
            "--as",
            POLICE,
            "--certs",
            &certs,
            "--out",
        ],
        &[&out_dir],
    );
    assert_eq!(code, 0, "{out}");
    let page = std::fs::read_to_string(out_dir.join("index.html")).expect("index.html");
    assert!(page.contains("<html lang=\"en\">"));
    assert!(page.contains("Men&#39;s programme &lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert"), "the name is escaped");
    assert!(
        !page.contains("src=") && !page.contains("<link"),
        "no external resources"
    );
    assert!(
        !page.contains("Hotline"),
        "withdrawn services are not shown"
    );
    // The page as a browser shows it: headless Chromium renders it, the screenshot is
    // kept in target/screenshots/ for a person to look at.
    let rendered = handoff_e2e::screenshot(&out_dir.join("index.html"), "directory", (1100, 900));
    assert!(
        rendered
            .dom
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
            && !rendered.dom.contains("<script>alert"),
        "the name is shown as text, never run: {}",
        rendered.dom
    );
    assert!(
        rendered.dom.contains("+420 387 000 000"),
        "{}",
        rendered.dom
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("hsds.json")).expect("hsds.json"))
            .expect("hsds.json is JSON");
    assert_eq!(doc["organizations"].as_array().map(Vec::len), Some(2));
    let services_json = doc["services"].as_array().expect("services");
    assert_eq!(services_json.len(), 3);
    let men = services_json
        .iter()
        .find(|s| s["name"] == SCRIPT_NAME)
        .expect("the programme");
    assert_eq!(men["status"], "active");
    assert_eq!(men["service_areas"][1]["name"], "South");
    assert_eq!(men["languages"][0]["code"], "cs");
    assert_eq!(men["phones"][0]["number"], "+420 387 000 000");
    assert_eq!(men["email"], "help@example.org");
    let org = men["organization_id"].as_str().expect("organization_id");
    assert!(
        doc["organizations"]
            .as_array()
            .is_some_and(|o| o.iter().any(|o| o["id"] == org))
    );

    // A rebuild derives the same directory from the log.
    let before = digest(&exchange).await;
    exchange.kill();
    let (code, out) = run_handoff(
        &["admin", "rebuild", "--config"],
        &[&exchange.config_path()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already exact"), "{out}");
    exchange.restart().await;
    assert_eq!(digest(&exchange).await, before);
    assert_eq!(
        services(&exchange, ListServicesRequest::default()).await,
        all
    );
}
