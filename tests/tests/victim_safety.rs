//! Issue 16 end to end: one eviction through its statutory path, a protection case for
//! the endangered person, the programme, and what each agency sees: the duties in the
//! police's, the centre's and the court's inboxes (overdue, then cleared by the event
//! that meets them), safety notices to the victim's support whatever the violent
//! person's consent, a compliance report to the court, a risk alert, and the victim's
//! location kept from the programme. Real nats-server, the real binary, gRPC over mTLS.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::inbox_item::Kind;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, incident, publish_in_order, subject_of};
use handoff_e2e::{CENTRE, COURT, Exchange, NatsServer, POLICE, PROGRAMME, SUPPORT};

const VIOLENT: &str = "violent";
const PROTECTION: &str = "protection";

fn rules(items: &[InboxItem], kind: Kind) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = items
        .iter()
        .filter(|i| i.kind == kind as i32)
        .map(|i| (i.rule.clone(), i.overdue))
        .collect();
    out.sort();
    out
}

fn copy(n: u64, recipient: CopyRecipient, to: &str) -> Envelope {
    envelope(
        n,
        POLICE,
        VIOLENT,
        Event::EvictionCopySent(EvictionCopySent {
            incident_ref: String::new(),
            recipient: recipient as i32,
            to_agency: to.into(),
        }),
    )
}

fn on(n: u64, agency: &str, case: &str, event: Event) -> Envelope {
    envelope(n, agency, case, event)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_eviction_through_every_statutory_step_as_each_agency_sees_it() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // The police: an incident and an eviction of September 2026 (long past: every
    // deadline is overdue by now), a minor in the home.
    let opening = [
        incident(1, VIOLENT),
        envelope(
            2,
            POLICE,
            VIOLENT,
            Event::EvictionOrdered(EvictionOrdered {
                incident_ref: format!("I-{VIOLENT}"),
                duration_days: 10,
                protected_area: "Lannova tř. 12, České Budějovice".into(),
                minor_in_home: true,
                ..EvictionOrdered::default()
            }),
        ),
    ];
    let sent = publish_in_order(&js, &exchange, &opening).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    let police = rules(&exchange.inbox(POLICE).await, Kind::Statutory);
    for rule in [
        "copy_to_child_protection",
        "copy_to_court",
        "copy_to_intervention_centre",
        "police_compliance_check",
    ] {
        assert!(
            police.contains(&(rule.to_string(), true)),
            "{rule} overdue in {police:?}"
        );
    }

    // The copies (late), the centre's receipt and offer of help, the compliance check,
    // a protection case for her, linked, and the court's petition and decision.
    let protection_case = case_id(PROTECTION);
    let steps = [
        copy(3, CopyRecipient::InterventionCentre, CENTRE),
        copy(4, CopyRecipient::Court, COURT),
        on(
            5,
            POLICE,
            VIOLENT,
            Event::EvictionComplianceChecked(EvictionComplianceChecked {
                kept: true,
                note: "nebyl zastižen v bytě".into(),
                ..EvictionComplianceChecked::default()
            }),
        ),
        on(
            6,
            POLICE,
            PROTECTION,
            Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
                role: linked_person::Role::Victim as i32,
                age_band: "30-39".into(),
                subject_details: Some(PersonalDetails {
                    full_name: "Jana Nováková".into(),
                    phone: "+420 777 123 456".into(),
                    address: "Lannova tř. 12, České Budějovice".into(),
                    ..PersonalDetails::default()
                }),
                shelter: "azylový dům, Český Krumlov".into(),
                school: String::new(),
            }),
        ),
        on(
            7,
            POLICE,
            VIOLENT,
            Event::EndangeredPersonLinked(EndangeredPersonLinked {
                protection_case_id: protection_case.clone(),
                endangered_pseudonym: subject_of(PROTECTION),
                role: linked_person::Role::Victim as i32,
                support_agency: SUPPORT.into(),
            }),
        ),
        on(
            8,
            POLICE,
            VIOLENT,
            Event::ReferralMade(ReferralMade {
                referral_id: "r-programme".into(),
                to_agency: PROGRAMME.into(),
                reason: "soudem nařízený program".into(),
                participation: Participation::CourtOrdered as i32,
                report_to_agency: COURT.into(),
                ..ReferralMade::default()
            }),
        ),
        on(
            9,
            CENTRE,
            VIOLENT,
            Event::EvictionCopyReceived(EvictionCopyReceived::default()),
        ),
    ];
    let sent = publish_in_order(&js, &exchange, &steps).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert!(
        exchange.quarantine().await.is_empty(),
        "{:?}",
        exchange.quarantine().await
    );
    let police = rules(&exchange.inbox(POLICE).await, Kind::Statutory);
    assert_eq!(
        police,
        vec![("copy_to_child_protection".to_string(), true)],
        "the met duties cleared"
    );
    let centre = rules(&exchange.inbox(CENTRE).await, Kind::Statutory);
    assert_eq!(centre, vec![("centre_offers_help".to_string(), true)]);

    let more = [
        on(
            10,
            CENTRE,
            VIOLENT,
            Event::VictimHelpOffered(VictimHelpOffered {
                outcome: ContactOutcome::Reached as i32,
                note: "nabídnuta pomoc".into(),
                ..VictimHelpOffered::default()
            }),
        ),
        on(
            11,
            COURT,
            VIOLENT,
            Event::PreliminaryMeasure(PreliminaryMeasure {
                stage: preliminary_measure::Stage::Petitioned as i32,
                ..PreliminaryMeasure::default()
            }),
        ),
        on(
            12,
            PROGRAMME,
            VIOLENT,
            Event::ReferralAccepted(ReferralAccepted {
                referral_id: "r-programme".into(),
            }),
        ),
        on(
            13,
            PROGRAMME,
            VIOLENT,
            Event::IntakeCompleted(IntakeCompleted::default()),
        ),
        on(
            14,
            PROGRAMME,
            VIOLENT,
            Event::ConsentWithdrawn(ConsentWithdrawn::default()),
        ),
        on(
            15,
            PROGRAMME,
            VIOLENT,
            Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "přestal docházet".into(),
                reason_code: OutcomeReason::NoShow as i32,
            }),
        ),
        on(
            16,
            PROGRAMME,
            VIOLENT,
            Event::ComplianceReported(ComplianceReported {
                to_agency: COURT.into(),
                report: ComplianceReportKind::DropOut as i32,
                sessions_attended: 0,
                sessions_missed: 3,
                note: "ukončil účast".into(),
            }),
        ),
    ];
    let sent = publish_in_order(&js, &exchange, &more).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert!(exchange.quarantine().await.is_empty());
    assert!(rules(&exchange.inbox(CENTRE).await, Kind::Statutory).is_empty());
    let court = exchange.inbox(COURT).await;
    assert_eq!(
        rules(&court, Kind::Statutory),
        vec![("court_decides_preliminary_measure".to_string(), true)]
    );
    assert_eq!(
        rules(&court, Kind::ComplianceReport),
        vec![("drop_out".to_string(), false)]
    );

    // Intake and drop-out reached her support, consent withdrawn or not, with the basis.
    let support = exchange.inbox(SUPPORT).await;
    let notices: Vec<&InboxItem> = support
        .iter()
        .filter(|i| i.kind == Kind::SafetyNotice as i32)
        .collect();
    let kinds: Vec<&str> = notices.iter().map(|i| i.rule.as_str()).collect();
    assert_eq!(kinds, ["intake", "dropped_out"], "{support:?}");
    assert!(notices.iter().all(|i| i.basis.contains("2016/679")));
    assert!(
        notices.iter().all(|i| i.from_agency == PROGRAMME),
        "{notices:?}"
    );

    // The programme sees the drop-out it recorded, never where she is.
    let seen = exchange
        .case_as(PROGRAMME, &case_id(VIOLENT))
        .await
        .expect("its own case");
    assert!(seen.evictions.iter().all(|e| e.protected_area.is_empty()));
    assert!(seen.endangered.is_empty() && seen.safety_facts.is_empty());
    let hidden = exchange
        .case_as(PROGRAMME, &protection_case)
        .await
        .expect_err("the protection case is not the programme's");
    assert_eq!(hidden.code(), tonic::Code::NotFound);

    // Nobody can send the protection case to the programme; the refusal is quarantined.
    let attempt = on(
        17,
        POLICE,
        PROTECTION,
        Event::ReferralMade(ReferralMade {
            referral_id: "r-wrong".into(),
            to_agency: PROGRAMME.into(),
            reason: "omyl".into(),
            ..ReferralMade::default()
        }),
    );
    let sent = publish_in_order(&js, &exchange, &[attempt]).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    let quarantined = exchange.quarantine().await;
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].detail.contains("protection case"),
        "{:?}",
        quarantined[0].detail
    );

    // The police see where she is; the court decides; her support acknowledges.
    let theirs = exchange
        .case_as(POLICE, &protection_case)
        .await
        .expect("the police's protection case");
    let person = theirs.protected_person.expect("a protected person");
    assert_eq!(person.shelter, "azylový dům, Český Krumlov");
    let intake_notice = notices[0].item_id.clone();
    let last = [
        on(
            18,
            COURT,
            VIOLENT,
            Event::PreliminaryMeasure(PreliminaryMeasure {
                stage: preliminary_measure::Stage::Granted as i32,
                ..PreliminaryMeasure::default()
            }),
        ),
        on(
            19,
            SUPPORT,
            VIOLENT,
            Event::NoticeAcknowledged(NoticeAcknowledged {
                notice_id: intake_notice.clone(),
            }),
        ),
        on(
            20,
            SUPPORT,
            VIOLENT,
            Event::RiskAlertRaised(RiskAlertRaised {
                concern: RiskConcern::ImminentDanger as i32,
                basis: "§ 10 zákona č. 359/1999 Sb.; čl. 6 odst. 1 písm. d) GDPR".into(),
                note: "vyhrožoval po ukončení programu".into(),
                ..RiskAlertRaised::default()
            }),
        ),
    ];
    let sent = publish_in_order(&js, &exchange, &last).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    assert_eq!(exchange.quarantine().await.len(), 1, "nothing else refused");
    let court = exchange.inbox(COURT).await;
    assert!(rules(&court, Kind::Statutory).is_empty(), "{court:?}");
    let support = exchange.inbox(SUPPORT).await;
    assert!(
        support.iter().all(|i| i.item_id != intake_notice),
        "acknowledged"
    );
    for agency in [POLICE, CENTRE] {
        let alerts: Vec<InboxItem> = exchange
            .inbox(agency)
            .await
            .into_iter()
            .filter(|i| i.kind == Kind::RiskAlert as i32)
            .collect();
        assert_eq!(alerts.len(), 1, "{agency}: {alerts:?}");
        assert!(alerts[0].basis.contains("359/1999"));
        assert_eq!(alerts[0].from_agency, SUPPORT, "from whoever raised it");
    }

    // Her support is asked to take her protection case: there it sees how to reach her
    // (`[protection_fields]`), and on his case still nothing of who he is.
    let to_support = on(
        21,
        POLICE,
        PROTECTION,
        Event::ReferralMade(ReferralMade {
            referral_id: "r-support".into(),
            to_agency: SUPPORT.into(),
            reason: "nabídka pomoci ohrožené osobě".into(),
            ..ReferralMade::default()
        }),
    );
    let sent = publish_in_order(&js, &exchange, &[to_support]).await;
    exchange.wait_for(&sent, Duration::from_secs(30)).await;
    let hers = exchange
        .case_as(SUPPORT, &protection_case)
        .await
        .expect("her case, referred to her support");
    let details = hers.subject_details.expect("her details on her case");
    assert_eq!(details.full_name, "Jana Nováková");
    assert_eq!(details.phone, "+420 777 123 456");
    let his = exchange
        .case_as(SUPPORT, &case_id(VIOLENT))
        .await
        .expect("his case, linked to hers");
    assert_eq!(his.subject_details, None, "not his name or phone");
    assert!(!his.safety_facts.is_empty(), "what bears on her safety");
}
