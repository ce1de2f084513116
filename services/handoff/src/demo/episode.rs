//! The demo's episode: one eviction in České Budějovice through every statutory step,
//! the endangered person's own protection case and support, the violent person's
//! court-ordered programme, a drop-out that reaches her support worker whatever his
//! consent says, a compliance report to the court and a risk alert. Every step goes
//! through the agency's own adapter, as it would from its casework system.

use anyhow::Context;
use handoff_adapters::AdapterKind;
use handoff_contract::v1::inbox_item::Kind;
use serde_json::{Value, json};

use super::{CENTRE, COURT, Demo, On, POLICE, PROGRAMME, SOCIAL, SUPPORT, activity, print};

/// The agency's own references of her protection case and of her.
const PROTECTION_REF: &str = "OCHR-2026-0042";
const HER_REF: &str = "855612/1234";
/// The referral of him to the programme (the centre's own id).
pub const TO_PROGRAMME: &str = "ref-ic-ngo-1";

/// The cases the episode made: his, and her protection case.
pub struct Episode {
    /// The violent person's case (opened by the police's eviction record).
    pub case: On,
    /// The endangered person's protection case.
    pub protection: On,
}

/// Plays the episode, printing each step and what it changed.
pub async fn play(demo: &Demo<'_>) -> anyhow::Result<Episode> {
    println!(
        "\n== 1. Night of 20 October 2026, České Budějovice: the police evict him from the flat (vykázání) and refer him to the intervention centre =="
    );
    let mut record: Value = serde_json::from_str(include_str!(
        "../../../../schemas/examples/police-eviction.json"
    ))?;
    record["reported_at"] = "2026-10-20T21:40:00Z".into();
    record["eviction"]["ordered_at"] = "2026-10-20T22:15:00Z".into();
    let reports = demo
        .publish(
            POLICE,
            AdapterKind::Police {
                refer_to: Some(CENTRE.into()),
            },
            vec![record],
        )
        .await?;
    let case = demo.on(POLICE, super::first_case(&reports)).await?;

    println!(
        "\n== 2. The same night: the police open her own protection case and link it to his, naming her support worker =="
    );
    let her = json!({
        "activity": "endangered_person_recorded", "activity_ref": "KRPC-OCHR-1",
        "protection_ref": PROTECTION_REF, "occurred_at": "2026-10-20T23:30:00Z",
        "worker": "npor. Dvořák", "role": "victim", "age_band": "30-39",
        "person": {
            "person_ref": HER_REF, "full_name": "Jana Nováková",
            "phone": "+420 777 123 456", "address": "Lidická 12, 370 01 České Budějovice"
        },
        "shelter": "azylový dům pro matky s dětmi, Český Krumlov"
    });
    let reports = demo
        .publish(POLICE, AdapterKind::Programme, vec![her])
        .await?;
    let protection = demo.on(POLICE, super::first_case(&reports)).await?;
    let police = |on: &On, kind: &str, reference: &str, at: &str, extra: Value| {
        activity(on, kind, reference, at, "npor. Dvořák", extra)
    };
    demo.publish(
        POLICE,
        AdapterKind::Programme,
        vec![police(
            &case,
            "endangered_person_linked",
            "KRPC-LINK-1",
            "2026-10-20T23:35:00Z",
            json!({"protection_ref": PROTECTION_REF, "endangered_person_ref": HER_REF, "role": "victim", "support_agency": SUPPORT}),
        )],
    )
    .await?;

    println!(
        "\n== 3. Within 24 hours the police send copies of the record to the centre, to OSPOD (children live in the flat) and to the district court =="
    );
    let copy = |reference: &str, at: &str, recipient: &str, to: &str| {
        police(
            &case,
            "eviction_copy_sent",
            reference,
            at,
            json!({"recipient": recipient, "to_agency": to}),
        )
    };
    demo.publish(
        POLICE,
        AdapterKind::Programme,
        vec![
            copy(
                "KRPC-COPY-IC",
                "2026-10-21T06:00:00Z",
                "intervention_centre",
                CENTRE,
            ),
            copy(
                "KRPC-COPY-OSPOD",
                "2026-10-21T06:10:00Z",
                "child_protection",
                SOCIAL,
            ),
            copy("KRPC-COPY-SOUD", "2026-10-21T06:20:00Z", "court", COURT),
        ],
    )
    .await?;

    println!(
        "\n== 4. Each recipient confirms the copy; the centre offers her help within 48 hours and takes up his referral =="
    );
    let received = |reference: &str, at: &str, worker: &str| {
        activity(
            &case,
            "eviction_copy_received",
            reference,
            at,
            worker,
            json!({}),
        )
    };
    let from_police = demo
        .case_as(CENTRE, &case.case_id)
        .await?
        .and_then(|v| v.referrals.first().map(|r| r.referral_id.clone()))
        .context("the centre sees no referral from the police")?;
    let counsellor = |kind: &str, reference: &str, at: &str, extra: Value| {
        activity(&case, kind, reference, at, "poradkyně 4", extra)
    };
    demo.publish(CENTRE, AdapterKind::Programme, vec![
        received("IC-RCV-1", "2026-10-21T07:10:00Z", "služba IC"),
        counsellor("referral_acknowledged", "IC-1", "2026-10-21T07:30:00Z", json!({"referral_id": from_police})),
        counsellor("referral_accepted", "IC-2", "2026-10-21T07:31:00Z", json!({"referral_id": from_police})),
        counsellor("contact_attempted", "IC-3", "2026-10-21T09:10:00Z", json!({"channel": "phone", "outcome": "reached", "note": "Vysvětlila vykázání a program."})),
        counsellor("risk_assessed", "IC-4", "2026-10-21T10:00:00Z", json!({"risk_instrument": "SARA", "risk_level": "high"})),
        counsellor("victim_help_offered", "IC-5", "2026-10-21T11:00:00Z", json!({"outcome": "reached", "note": "Bezpečnostní plán, doprovod k soudu."})),
    ]).await?;
    demo.publish(
        SOCIAL,
        AdapterKind::Programme,
        vec![received(
            "OSPOD-RCV-1",
            "2026-10-21T08:00:00Z",
            "OSPOD, sociální pracovnice 2",
        )],
    )
    .await?;
    demo.publish(
        COURT,
        AdapterKind::Programme,
        vec![received("OS-RCV-1", "2026-10-21T08:30:00Z", "podatelna")],
    )
    .await?;

    println!("\n== 5. The police check within 3 days that he keeps away ==");
    demo.publish(
        POLICE,
        AdapterKind::Programme,
        vec![police(
            &case,
            "eviction_compliance_checked",
            "KRPC-CHK-1",
            "2026-10-22T20:00:00Z",
            json!({"kept": true, "note": "Nezastižen v bytě ani v okolí."}),
        )],
    )
    .await?;

    println!(
        "\n== 6. The police refer her protection case to her support worker, who takes it up =="
    );
    demo.publish(
        POLICE,
        AdapterKind::Programme,
        vec![police(
            &protection,
            "referral_made",
            "KRPC-REF-OCHR",
            "2026-10-21T08:00:00Z",
            json!({"referral_id": "ref-ochr-1", "to_agency": SUPPORT, "reason": "Nabídka podpory ohrožené osobě."}),
        )],
    )
    .await?;
    let worker = |on: &On, kind: &str, reference: &str, at: &str, extra: Value| {
        activity(on, kind, reference, at, "pracovnice podpory 2", extra)
    };
    demo.publish(
        SUPPORT,
        AdapterKind::Programme,
        vec![
            worker(
                &protection,
                "referral_acknowledged",
                "POD-1",
                "2026-10-21T09:00:00Z",
                json!({"referral_id": "ref-ochr-1"}),
            ),
            worker(
                &protection,
                "referral_accepted",
                "POD-2",
                "2026-10-21T09:01:00Z",
                json!({"referral_id": "ref-ochr-1"}),
            ),
            worker(
                &protection,
                "contact_attempted",
                "POD-2b",
                "2026-10-21T10:30:00Z",
                json!({"channel": "in_person", "outcome": "reached", "note": "Schůzka v azylovém domě, bezpečnostní plán."}),
            ),
        ],
    )
    .await?;

    println!(
        "\n== 7. She petitions for a preliminary measure; the court decides within 48 hours, the eviction running on meanwhile =="
    );
    let judge = |reference: &str, at: &str, extra: Value| {
        activity(
            &case,
            "preliminary_measure",
            reference,
            at,
            "soudkyně 3",
            extra,
        )
    };
    demo.publish(
        COURT,
        AdapterKind::Programme,
        vec![
            judge(
                "OS-PO-1",
                "2026-10-26T09:00:00Z",
                json!({"stage": "petitioned"}),
            ),
            judge(
                "OS-PO-2",
                "2026-10-27T14:00:00Z",
                json!({"stage": "granted", "effective_at": "2026-10-27T16:00:00Z"}),
            ),
        ],
    )
    .await?;

    println!(
        "\n== 8. The centre refers him to the programme; the court ordered his participation and receives the compliance reports =="
    );
    demo.publish(
        CENTRE,
        AdapterKind::Programme,
        vec![counsellor(
            "referral_made",
            "IC-6",
            "2026-10-28T10:00:00Z",
            json!({"referral_id": TO_PROGRAMME, "to_agency": PROGRAMME, "participation": "court_ordered", "report_to_agency": COURT, "reason": "Soud uložil účast v programu pro osoby ohrožující blízké."}),
        )],
    )
    .await?;

    println!(
        "\n== 9. The programme: intake, two sessions, two missed in a row; he withdraws consent and drops out; a compliance report to the court =="
    );
    let lead = |kind: &str, reference: &str, at: &str, extra: Value| {
        activity(&case, kind, reference, at, "lektor skupiny 1", extra)
    };
    demo.publish(PROGRAMME, AdapterKind::Programme, vec![
        lead("referral_acknowledged", "NGO-1", "2026-10-28T13:00:00Z", json!({"referral_id": TO_PROGRAMME})),
        lead("referral_accepted", "NGO-2", "2026-10-28T13:05:00Z", json!({"referral_id": TO_PROGRAMME})),
        lead("contact_attempted", "NGO-3", "2026-10-29T09:00:00Z", json!({"channel": "phone", "outcome": "no_answer"})),
        lead("contact_attempted", "NGO-4", "2026-10-29T15:30:00Z", json!({"channel": "phone", "outcome": "reached"})),
        lead("intake_completed", "NGO-5", "2026-11-02T10:00:00Z", json!({})),
        lead("consent_given", "NGO-6", "2026-11-02T10:30:00Z", json!({"scope": "sdílení docházky s odesílateli"})),
        lead("enrolled", "NGO-7", "2026-11-02T10:45:00Z", json!({"programme": "Skupinový program (24 setkání)", "planned_sessions": 24})),
        lead("session_attended", "NGO-8", "2026-11-04T17:00:00Z", json!({"session_number": 1})),
        lead("session_attended", "NGO-9", "2026-11-11T17:00:00Z", json!({"session_number": 2})),
        lead("session_missed", "NGO-10", "2026-11-18T17:00:00Z", json!({"session_number": 3})),
        lead("session_missed", "NGO-11", "2026-11-25T17:00:00Z", json!({"session_number": 4})),
        lead("consent_withdrawn", "NGO-12", "2026-11-26T09:00:00Z", json!({"scope": "vše"})),
        lead("programme_dropped_out", "NGO-13", "2026-11-27T09:00:00Z", json!({"reason_code": "no_show", "reason": "Po dvou neomluvených absencích přestal docházet."})),
        lead("compliance_reported", "NGO-14", "2026-11-27T10:00:00Z", json!({"to_agency": COURT, "report": "drop_out", "sessions_attended": 2, "sessions_missed": 2, "note": "Program nedokončil."})),
    ]).await?;

    println!(
        "\n== 10. Her support worker's inbox: what bears on her safety, whatever his consent says, with the legal basis =="
    );
    let notices = demo.items(SUPPORT, Kind::SafetyNotice).await?;
    print::inbox(&notices);
    let mut answers: Vec<Value> = notices
        .iter()
        .filter(|i| i.rule == "dropped_out")
        .map(|i| {
            worker(
                &case,
                "notice_acknowledged",
                "POD-3",
                "2026-11-27T12:00:00Z",
                json!({"notice_id": i.item_id}),
            )
        })
        .collect();
    answers.push(worker(
        &case,
        "risk_alert_raised",
        "POD-4",
        "2026-11-28T08:00:00Z",
        json!({
            "concern": "imminent_danger",
            "basis": "§ 10 zákona č. 359/1999 Sb.; čl. 6 odst. 1 písm. d) GDPR",
            "note": "Výhružné zprávy od ukončení programu."
        }),
    ));
    println!("  {SUPPORT} acknowledges the drop-out and raises a risk alert:");
    demo.publish(SUPPORT, AdapterKind::Programme, answers)
        .await?;

    println!(
        "\n== 11. The alert reaches the police, OSPOD and the centre at once; the court finds the compliance report =="
    );
    for agency in [POLICE, SOCIAL, CENTRE] {
        let alerts = demo.items(agency, Kind::RiskAlert).await?;
        println!("  -- {agency} --");
        print::inbox(&alerts);
    }
    let reports = demo.items(COURT, Kind::ComplianceReport).await?;
    println!("  -- {COURT} --");
    print::inbox(&reports);
    let seen: Vec<Value> = reports
        .iter()
        .map(|i| {
            activity(
                &case,
                "notice_acknowledged",
                "OS-ACK-1",
                "2026-11-30T08:00:00Z",
                "soudkyně 3",
                json!({"notice_id": i.item_id}),
            )
        })
        .collect();
    if !seen.is_empty() {
        demo.publish(COURT, AdapterKind::Programme, seen).await?;
    }
    Ok(Episode { case, protection })
}
