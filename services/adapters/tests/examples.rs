//! Every example document in schemas/examples validates and converts; every
//! one in schemas/examples/invalid is refused with a reason.

use std::path::PathBuf;

use handoff_adapters::{AdapterKind, AgencySecret, document, schema::Schema};
use handoff_contract::v1::envelope::Event;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/examples")
}

fn kind_of(name: &str) -> (Schema, AdapterKind) {
    if name.starts_with("police") {
        (
            Schema::PoliceRecord,
            AdapterKind::Police {
                refer_to: Some("ic-north".into()),
            },
        )
    } else if name.starts_with("referral") {
        (Schema::ReferralForm, AdapterKind::Referral)
    } else if name.starts_with("programme") {
        (Schema::ProgrammeActivity, AdapterKind::Programme)
    } else if name.starts_with("service-listing") {
        (Schema::ServiceListing, AdapterKind::Directory)
    } else {
        (Schema::Event, AdapterKind::Generic)
    }
}

/// A fixed secret per test: ids are keyed, but these tests only need them stable.
fn secret() -> AgencySecret {
    AgencySecret::from_bytes([42; 32])
}

fn agency_for(kind: &AdapterKind) -> &'static str {
    match kind {
        AdapterKind::Police { .. } => "police-north",
        AdapterKind::Referral => "social-north",
        _ => "ngo-men-north",
    }
}

#[test]
fn valid_examples_validate_and_become_events() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let (schema, kind) = kind_of(&name);
        let docs = kind.read(&path).expect("readable");
        assert!(!docs.is_empty(), "{name} has no records");
        for doc in docs {
            let value = doc
                .value
                .unwrap_or_else(|e| panic!("{name} {}: {e}", doc.label));
            schema
                .validate(&value)
                .unwrap_or_else(|e| panic!("{name} {}: {e:?}", doc.label));
            let events = kind
                .events(agency_for(&kind), &secret(), &value)
                .unwrap_or_else(|e| panic!("{name} {}: {e}", doc.label));
            assert!(!events.is_empty());
            seen += 1;
        }
    }
    assert!(seen >= 8, "only {seen} example records");
}

#[test]
fn invalid_examples_are_refused_with_a_reason() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples().join("invalid")).expect("invalid dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let (schema, kind) = kind_of(&name);
        for doc in kind.read(&path).expect("readable") {
            let value = doc.value.expect("parses as JSON");
            let errors = schema.validate(&value).expect_err(&name);
            assert!(errors.iter().all(|e| !e.is_empty()));
            assert!(
                kind.events(agency_for(&kind), &secret(), &value).is_err(),
                "{name} converted"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6);
}

#[test]
fn an_eviction_becomes_incident_eviction_and_referral_with_stable_ids() {
    let path = examples().join("police-eviction.json");
    let kind = AdapterKind::Police {
        refer_to: Some("ic-north".into()),
    };
    let value = kind.read(&path).expect("read")[0]
        .value
        .clone()
        .expect("json");
    let first = kind
        .events("police-north", &secret(), &value)
        .expect("events");
    let again = kind
        .events("police-north", &secret(), &value)
        .expect("events");
    assert_eq!(
        first, again,
        "re-reading the same record gives the same events"
    );
    assert!(matches!(first[0].event, Some(Event::IncidentReported(_))));
    assert!(matches!(first[1].event, Some(Event::EvictionOrdered(_))));
    match &first[2].event {
        Some(Event::ReferralMade(r)) => assert_eq!(r.to_agency, "ic-north"),
        other => panic!("expected a referral, got {other:?}"),
    }
    assert_eq!(first[0].expected_version, Some(0));
    // ids are written under the publishing agency's own id, so only it may open the case
    for e in &first {
        assert!(e.case_id.starts_with("police-north/case-"), "{}", e.case_id);
        assert!(
            e.subject_pseudonym.starts_with("police-north/subj-"),
            "{}",
            e.subject_pseudonym
        );
    }
    // the name travels only inside personal details, never in ids
    let json = serde_json::to_string(
        &first
            .iter()
            .map(|e| (&e.case_id, &e.subject_pseudonym))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    assert!(!json.contains("Novák"));
}

#[test]
fn csv_rows_with_missing_columns_are_refused_by_the_schema() {
    let csv = "record_type,incident_ref,reported_at,officer,person_ref,full_name,narrative,area\n\
               incident,NP-1,2026-11-21T18:05:00Z,PC 1,P-1,Name,,Tábor\n";
    let docs = handoff_adapters::police::csv_documents(csv).expect("csv");
    let errors = Schema::PoliceRecord
        .validate(docs[0].value.as_ref().expect("row"))
        .expect_err("narrative missing");
    assert!(errors.iter().any(|e| e.contains("narrative")), "{errors:?}");
}

#[test]
fn hostile_json_is_refused_not_crashed_on() {
    for text in ["", "{", "\u{0}", "[1,2,", &"[".repeat(1_000_000)] {
        let docs = document::json_documents(text);
        assert!(
            docs.iter().all(|d| d.value.is_err()),
            "{:?}",
            &text[..text.len().min(10)]
        );
    }
}

/// A rejects file keeps where a record is and why, never its private values: names,
/// birth dates, the agency's own person references, free text.
#[test]
fn rejects_withhold_every_private_value() {
    for name in [
        "police-eviction.json",
        "referral-form.json",
        "event-risk-assessed.json",
    ] {
        let text = std::fs::read_to_string(examples().join(name)).expect("example");
        let document: serde_json::Value = serde_json::from_str(&text).expect("json");
        let (_, kind) = kind_of(name);
        let kept = kind.withhold_private(&document).to_string();
        for secret in [
            "Marek Novák",
            "1984-03-02",
            "840302/1234",
            "Lidická",
            "Called by neighbour",
            "Jan Dvořák",
            "870509/0321",
        ] {
            assert!(!kept.contains(secret), "{name}: {secret} kept in {kept}");
        }
        assert!(
            kept.contains("[withheld]") || name.starts_with("event"),
            "{kept}"
        );
    }
    // The endangered person's name, phone, id and shelter never stay in a refused
    // statutory activity either.
    let text = std::fs::read_to_string(examples().join("programme-activity-statutory.json"))
        .expect("example");
    let documents: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    for document in &documents {
        let kept = AdapterKind::Programme
            .withhold_private(document)
            .to_string();
        for secret in [
            "Nováková",
            "+420 777",
            "855612/1234",
            "Lidická",
            "azylový",
            "Stopped attending",
        ] {
            assert!(!kept.contains(secret), "{secret} kept in {kept}");
        }
    }
    let text = std::fs::read_to_string(examples().join("police-eviction.json")).expect("example");
    let document: serde_json::Value = serde_json::from_str(&text).expect("json");
    let kept = AdapterKind::Police { refer_to: None }.withhold_private(&document);
    assert_eq!(
        kept["incident_ref"], "NP-2026-004711",
        "what finds the record stays"
    );
    assert_eq!(kept["person"]["full_name"], "[withheld]");
    // A schema error at a private field does not quote the value either.
    let mut bad = document.clone();
    bad["person"]["date_of_birth"] = "2. března 1984".into();
    let errors = Schema::PoliceRecord.validate(&bad).expect_err("invalid");
    assert!(errors.iter().all(|e| !e.contains("března")), "{errors:?}");
}

/// A text the schema allows (it counts characters) but the exchange would refuse (it
/// counts bytes, and a Czech letter can take two) is refused by the adapter, with the
/// exchange's own words, and never quotes the text.
#[test]
fn a_text_within_the_schema_but_over_the_exchanges_limit_is_refused_before_publishing() {
    let text = std::fs::read_to_string(examples().join("referral-form.json")).expect("example");
    let mut form: serde_json::Value = serde_json::from_str(&text).expect("json");
    let reason = "ř".repeat(3_000); // 3,000 characters, 6,000 bytes
    form["reason"] = reason.clone().into();
    Schema::ReferralForm
        .validate(&form)
        .expect("within the schema's character limit");
    let refused = AdapterKind::Referral
        .events("social-north", &secret(), &form)
        .expect_err("over the byte limit")
        .to_string();
    assert!(refused.contains("reason is 6000 bytes"), "{refused}");
    assert!(!refused.contains("řř"), "{refused}");
}

/// The police's CSV as a Czech spreadsheet exports it (Windows-1250, `;` between
/// fields) becomes the same events as the UTF-8, comma-separated example.
#[test]
fn a_czech_spreadsheet_export_reads_like_the_utf8_example() {
    let kind = AdapterKind::Police {
        refer_to: Some("ic-north".into()),
    };
    let original = examples().join("police-records.csv");
    let mut reader = csv::Reader::from_path(&original).expect("the example");
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    writer
        .write_record(reader.headers().expect("a header"))
        .expect("header");
    for row in reader.records() {
        writer.write_record(&row.expect("a row")).expect("row");
    }
    let semicolons = String::from_utf8(writer.into_inner().expect("flushed")).expect("utf-8");
    let (cp1250, _, lossy) = encoding_rs::WINDOWS_1250.encode(&semicolons);
    assert!(!lossy, "every letter of the example exists in Windows-1250");
    assert!(
        std::str::from_utf8(&cp1250).is_err(),
        "the export is not UTF-8"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let export = dir.path().join("export.csv");
    std::fs::write(&export, &cp1250).expect("written");
    let events = |path: &std::path::Path| -> Vec<_> {
        kind.read(path)
            .expect("readable")
            .into_iter()
            .flat_map(|d| {
                kind.events("police-north", &secret(), &d.value.expect("a record"))
                    .expect("events")
            })
            .collect()
    };
    assert_eq!(events(&export), events(&original));
}
