//! The police adapter: incident and eviction records (JSON per
//! `schemas/police-record.schema.json`, or CSV as police exports come) to
//! `incident_reported`, `eviction_ordered` and `referral_made` events.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::document::{Document, from_value, parse_time};
use crate::schema::Schema;
use crate::{AdapterError, AgencySecret, ids};

/// A police record, as the schema describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct PoliceRecord {
    /// `incident` or `eviction`.
    pub record_type: String,
    /// The police's own reference.
    pub incident_ref: String,
    /// RFC 3339.
    pub reported_at: String,
    /// Recording officer.
    pub officer: String,
    /// The violent person.
    pub person: Person,
    /// What happened.
    pub narrative: String,
    /// District.
    pub area: String,
    /// Victims, children, witnesses (minimised).
    #[serde(default)]
    pub linked_persons: Vec<Linked>,
    /// The eviction order, if any.
    pub eviction: Option<EvictionBlock>,
    /// Agency to refer to.
    pub refer_to: Option<String>,
}

/// The violent person in a police record.
#[derive(Debug, Clone, Deserialize)]
pub struct Person {
    /// Police person id (pseudonymised before it leaves the adapter).
    pub police_person_ref: String,
    /// Name.
    pub full_name: String,
    /// ISO date.
    pub date_of_birth: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Address.
    pub address: Option<String>,
}

/// A linked person: role and age band only.
#[derive(Debug, Clone, Deserialize)]
pub struct Linked {
    /// victim, child or witness.
    pub role: String,
    /// e.g. "0-5".
    pub age_band: Option<String>,
}

/// An eviction order.
#[derive(Debug, Clone, Deserialize)]
pub struct EvictionBlock {
    /// RFC 3339.
    pub ordered_at: String,
    /// Days the order lasts.
    pub duration_days: u32,
    /// Area the subject may not enter.
    pub protected_area: Option<String>,
    /// A minor lives in the home (the copy then goes to child protection); when not
    /// given, whether a child is among the linked persons.
    pub minor_in_home: Option<bool>,
}

/// Reads police CSV (header row as in `schemas/examples/police-records.csv`) into
/// documents in the JSON shape of the schema.
pub fn csv_documents(text: &str) -> Result<Vec<Document>, AdapterError> {
    // Spreadsheets in a Czech locale export with `;` between fields: read the header's.
    let header = text.lines().next().unwrap_or_default();
    let delimiter = if header.matches(';').count() > header.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| AdapterError::Input(format!("CSV header: {e}")))?
        .clone();
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let label = format!("row {}", i + 2);
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.push(Document::unreadable(label, format!("not valid CSV: {e}")));
                continue;
            }
        };
        let get = |name: &str| -> Option<&str> {
            headers
                .iter()
                .position(|h| h == name)
                .and_then(|i| row.get(i))
                .filter(|v| !v.is_empty())
        };
        let count = |name: &str| get(name).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let mut person = json!({
            "police_person_ref": get("person_ref"),
            "full_name": get("full_name"),
        });
        for field in ["date_of_birth", "phone", "address"] {
            if let Some(v) = get(field) {
                person[field] = json!(v);
            }
        }
        let mut linked = Vec::new();
        linked.extend(std::iter::repeat_n(
            json!({"role": "victim"}),
            count("victims"),
        ));
        linked.extend(std::iter::repeat_n(
            json!({"role": "child"}),
            count("children"),
        ));
        let mut doc = json!({
            "record_type": get("record_type"),
            "incident_ref": get("incident_ref"),
            "reported_at": get("reported_at"),
            "officer": get("officer"),
            "person": person,
            "narrative": get("narrative"),
            "area": get("area"),
            "linked_persons": linked,
        });
        if let Some(ordered_at) = get("eviction_ordered_at") {
            let days: Value = get("eviction_days")
                .map(|d| {
                    d.parse::<u64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| json!(d))
                })
                .unwrap_or(Value::Null);
            let mut ev = json!({ "ordered_at": ordered_at, "duration_days": days });
            if let Some(p) = get("protected_area") {
                ev["protected_area"] = json!(p);
            }
            doc["eviction"] = ev;
        }
        if let Some(r) = get("refer_to") {
            doc["refer_to"] = json!(r);
        }
        // CSV has no nulls: drop keys whose column was empty so the schema names them missing.
        strip_nulls(&mut doc);
        out.push(Document::new(label, doc));
    }
    Ok(out)
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

/// Turns one validated police record into events for `agency` (ids keyed by its
/// `secret`), referring evictions (and incidents with `refer_to`) to
/// `default_refer_to` unless the record names another.
pub fn events(
    agency: &str,
    secret: &AgencySecret,
    default_refer_to: Option<&str>,
    document: &Value,
) -> Result<Vec<Envelope>, AdapterError> {
    Schema::PoliceRecord
        .validate(document)
        .map_err(AdapterError::Invalid)?;
    let record: PoliceRecord = from_value(document)?;
    let reported_at = parse_time("reported_at", &record.reported_at)?;
    let case_id = ids::case_id(secret, agency, &record.incident_ref);
    let subject = ids::pseudonym(secret, agency, &record.person.police_person_ref);
    let correlation = ids::event_id(
        secret,
        handoff_contract::time::to_unix_ms(&reported_at),
        &[agency, &record.incident_ref, "record"],
    );
    let base = |n: u32, kind: &str, at: prost_types::Timestamp, event: Event| Envelope {
        event_id: ids::event_id(
            secret,
            handoff_contract::time::to_unix_ms(&at) + i64::from(n),
            &[agency, &record.incident_ref, kind],
        ),
        source_agency: agency.to_string(),
        case_id: case_id.clone(),
        subject_pseudonym: subject.clone(),
        occurred_at: Some(at),
        actor: record.officer.clone(),
        expected_version: None,
        correlation_id: correlation.clone(),
        causation_id: String::new(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        transport_seal: None,
        event: Some(event),
    };
    let details = PersonalDetails {
        full_name: record.person.full_name.clone(),
        date_of_birth: record.person.date_of_birth.clone().unwrap_or_default(),
        phone: record.person.phone.clone().unwrap_or_default(),
        address: record.person.address.clone().unwrap_or_default(),
    };
    let linked = record
        .linked_persons
        .iter()
        .map(|l| LinkedPerson {
            role: match l.role.as_str() {
                "victim" => linked_person::Role::Victim,
                "child" => linked_person::Role::Child,
                "witness" => linked_person::Role::Witness,
                _ => linked_person::Role::Unspecified,
            } as i32,
            age_band: l.age_band.clone().unwrap_or_default(),
        })
        .collect();
    let mut incident = base(
        0,
        "incident",
        reported_at,
        Event::IncidentReported(IncidentReported {
            incident_ref: record.incident_ref.clone(),
            narrative: record.narrative.clone(),
            area: record.area.clone(),
            linked_persons: linked,
            subject_details: Some(details),
        }),
    );
    // The record opens the case: refuse it if the case exists already under this reference.
    incident.expected_version = Some(0);
    let first_id = incident.event_id.clone();
    let mut out = vec![incident];
    let mut last_at = reported_at;
    if let Some(ev) = &record.eviction {
        let ordered_at = parse_time("eviction.ordered_at", &ev.ordered_at)?;
        last_at = ordered_at;
        let mut e = base(
            1,
            "eviction",
            ordered_at,
            Event::EvictionOrdered(EvictionOrdered {
                incident_ref: record.incident_ref.clone(),
                ordered_at: Some(ordered_at),
                duration_days: ev.duration_days,
                protected_area: ev.protected_area.clone().unwrap_or_default(),
                minor_in_home: ev
                    .minor_in_home
                    .unwrap_or_else(|| record.linked_persons.iter().any(|p| p.role == "child")),
            }),
        );
        e.causation_id = first_id.clone();
        out.push(e);
    }
    let refer_to = record.refer_to.as_deref().or(if record.eviction.is_some() {
        default_refer_to
    } else {
        None
    });
    if record.eviction.is_some() && refer_to.is_none() {
        return Err(AdapterError::Invalid(vec![
            "an eviction must be referred to the intervention centre: set refer_to or the adapter's --refer-to".into(),
        ]));
    }
    if let Some(to) = refer_to {
        let reason = if record.eviction.is_some() {
            format!(
                "Eviction order {} ({}): notice to the intervention centre",
                record.incident_ref, record.area
            )
        } else {
            format!("Incident {} ({})", record.incident_ref, record.area)
        };
        let mut e = base(
            2,
            "referral",
            last_at,
            Event::ReferralMade(ReferralMade {
                referral_id: ids::step_id(secret, "ref", &[agency, &record.incident_ref, to]),
                to_agency: to.to_string(),
                reason,
                court_ordered: false,
                subject_details: None,
                ..ReferralMade::default()
            }),
        );
        e.causation_id = first_id;
        out.push(e);
    }
    Ok(out)
}
