//! The quick start's episode end to end through the agencies' own adapters: `handoff
//! demo` plays one eviction in České Budějovice against a real exchange (real
//! nats-server, the real binary), and each agency then reads its part over gRPC with
//! its own certificate, as the law and `ops/policy.toml` say it should see it.

use handoff_contract::v1::inbox_item::Kind;
use handoff_contract::v1::*;
use handoff_e2e::{
    AUDITOR, CENTRE, COURT, Exchange, NatsServer, POLICE, PROGRAMME, SUPPORT, run_handoff,
};

const SOCIAL: &str = "social-north";

/// `agency`'s inbox items of one kind.
async fn inbox(exchange: &Exchange, agency: &str, kind: Kind) -> Vec<InboxItem> {
    let mut items = exchange.inbox(agency).await;
    items.retain(|i| i.kind == kind as i32);
    items
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_episode_reaches_each_agency_as_the_law_and_the_policy_say() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let (code, out) = run_handoff(&["demo", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{out}");

    let cases = exchange
        .client_as(AUDITOR)
        .await
        .list_cases(ListCasesRequest {
            page_size: 500,
            purpose: "audit of the episode".into(),
            ..ListCasesRequest::default()
        })
        .await
        .expect("ListCases")
        .into_inner()
        .cases;
    let his = cases
        .iter()
        .find(|c| !c.evictions.is_empty() && !c.endangered.is_empty())
        .expect("his case, evicted and linked")
        .case_id
        .clone();
    let hers = cases
        .iter()
        .find(|c| c.protected_person.is_some())
        .expect("her protection case")
        .case_id
        .clone();

    // The police: every statutory duty of the eviction met in time, the eviction's end
    // by the rule in force on the order's date.
    let police = exchange
        .case_as(POLICE, &his)
        .await
        .expect("the police's case");
    let eviction = &police.evictions[0];
    assert!(eviction.duration_source.contains("78/2025"), "{eviction:?}");
    let duties: Vec<&StatutoryClock> = eviction
        .clocks
        .iter()
        .filter(|c| !c.duty_of.is_empty())
        .collect();
    assert_eq!(duties.len(), 6, "{duties:?}");
    assert!(
        duties.iter().all(|c| c.state == ClockState::Met as i32),
        "{duties:?}"
    );
    assert!(inbox(&exchange, POLICE, Kind::Statutory).await.is_empty());

    // Her support worker: what bears on her safety (the drop-out acknowledged), whatever
    // his consent, which he withdrew; on her own case, how to reach her.
    assert_eq!(police.consent, ConsentState::Withdrawn as i32);
    let notices: Vec<String> = inbox(&exchange, SUPPORT, Kind::SafetyNotice)
        .await
        .into_iter()
        .map(|i| i.rule)
        .collect();
    assert_eq!(notices, ["high_risk", "intake", "session_missed"], "{out}");
    let her = exchange
        .case_as(SUPPORT, &hers)
        .await
        .expect("her case, taken up");
    let details = her.subject_details.expect("her details");
    assert_eq!(details.phone, "+420 777 123 456");
    assert!(
        her.protected_person
            .is_some_and(|p| p.shelter.contains("Český Krumlov"))
    );

    // Her risk alert reached the police, OSPOD and the centre, with its basis.
    for agency in [POLICE, SOCIAL, CENTRE] {
        let alerts = inbox(&exchange, agency, Kind::RiskAlert).await;
        assert_eq!(alerts.len(), 1, "{agency}");
        assert_eq!(alerts[0].from_agency, SUPPORT);
        assert!(alerts[0].basis.contains("359/1999"));
    }

    // The court: the programme's drop-out report, seen and acknowledged.
    let court = exchange
        .case_as(COURT, &his)
        .await
        .expect("the court's case");
    assert_eq!(court.compliance_reports.len(), 1);
    assert_eq!(
        court.compliance_reports[0].report,
        ComplianceReportKind::DropOut as i32
    );
    assert!(
        inbox(&exchange, COURT, Kind::ComplianceReport)
            .await
            .is_empty()
    );

    // The programme: its case without where she is; her case does not exist for it.
    let programme = exchange.case_as(PROGRAMME, &his).await.expect("its case");
    assert!(
        programme
            .evictions
            .iter()
            .all(|e| e.protected_area.is_empty())
    );
    assert!(programme.endangered.is_empty() && programme.safety_facts.is_empty());
    let hidden = exchange
        .case_as(PROGRAMME, &hers)
        .await
        .expect_err("not its case");
    assert_eq!(hidden.code(), tonic::Code::NotFound);

    // The refusals were kept, and a second run adds nothing.
    assert_eq!(exchange.quarantine().await.len(), 3, "{out}");
    let before = exchange.head().await.sequence;
    let (code, again) = run_handoff(&["demo", "--config"], &[&exchange.config_path()]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(exchange.head().await.sequence, before, "{again}");
}
