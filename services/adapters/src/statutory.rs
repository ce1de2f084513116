//! The casework activities of an eviction's statutory path and of the endangered
//! person's side (`schemas/programme-activity.schema.json`): copies of the record,
//! the centre's offer of help, the compliance check, objections, breaches, the
//! preliminary measure, compliance reports, risk alerts, protection cases and their
//! links, acknowledged notices. A protection case is the agency's own: its case id
//! and the endangered person's pseudonym are keyed from the agency's references.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::*;
use serde::Deserialize;

use crate::document::{named, parse_time};
use crate::{AdapterError, AgencySecret, ids};

/// The fields of the statutory path's and the endangered person's activities.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatutoryFields {
    /// Which eviction (the police's reference); none: the case's latest.
    pub incident_ref: Option<String>,
    /// Whom an eviction record's copy goes to.
    pub recipient: Option<String>,
    /// The evicted person kept away.
    pub kept: Option<bool>,
    /// The police's reference of a breach.
    pub offence_ref: Option<String>,
    /// Objection or preliminary-measure stage.
    pub stage: Option<String>,
    /// When a measure's decision takes effect (RFC 3339).
    pub effective_at: Option<String>,
    /// A measure's new end (RFC 3339).
    pub until: Option<String>,
    /// What a compliance report reports.
    pub report: Option<String>,
    /// Sessions attended, for a compliance report.
    pub sessions_attended: Option<u32>,
    /// Sessions missed, for a compliance report.
    pub sessions_missed: Option<u32>,
    /// A risk alert's concern.
    pub concern: Option<String>,
    /// A risk alert's legal basis.
    pub basis: Option<String>,
    /// Agencies a risk alert names.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The agency's own reference of a protection case.
    pub protection_ref: Option<String>,
    /// The endangered person.
    pub person: Option<crate::generic::FormPerson>,
    /// The agency's own id of the endangered person, for a link.
    pub endangered_person_ref: Option<String>,
    /// The endangered person's role.
    pub role: Option<String>,
    /// The endangered person's age band.
    pub age_band: Option<String>,
    /// Where the endangered person stays.
    pub shelter: Option<String>,
    /// A child's school.
    pub school: Option<String>,
    /// A protection case another agency opened.
    pub protection_case_id: Option<String>,
    /// That case's subject.
    pub endangered_pseudonym: Option<String>,
    /// Who acts for the endangered person.
    pub support_agency: Option<String>,
    /// The inbox item acknowledged.
    pub notice_id: Option<String>,
}

/// The protection case and endangered person an agency's own references key.
pub(crate) fn protection_ids(
    agency: &str,
    secret: &AgencySecret,
    f: &StatutoryFields,
) -> Result<(String, String), AdapterError> {
    let person = f
        .person
        .as_ref()
        .map(|p| &p.person_ref)
        .or(f.endangered_person_ref.as_ref());
    match (&f.protection_ref, person) {
        (Some(case), Some(person)) => Ok((
            ids::case_id(secret, agency, case),
            ids::pseudonym(secret, agency, person),
        )),
        _ => Err(AdapterError::Invalid(vec![
            "/protection_ref: a protection case is keyed by the agency's own references of it and of the endangered person".into(),
        ])),
    }
}

/// The event of a statutory-path or endangered-person activity; `None` for a name
/// that is neither.
pub(crate) fn event(
    agency: &str,
    secret: &AgencySecret,
    activity: &str,
    a: &crate::casework::Activity,
) -> Result<Option<Event>, AdapterError> {
    let f = &a.statutory;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    let incident_ref = s(&f.incident_ref);
    let note = s(&a.note);
    let time = |name: &str, value: &Option<String>| {
        value.as_deref().map(|v| parse_time(name, v)).transpose()
    };
    let role = named(
        "ROLE_",
        f.role.as_deref(),
        linked_person::Role::from_str_name,
    );
    let event = match activity {
        "eviction_copy_sent" => Event::EvictionCopySent(EvictionCopySent {
            incident_ref,
            recipient: named(
                "COPY_RECIPIENT_",
                f.recipient.as_deref(),
                CopyRecipient::from_str_name,
            ),
            to_agency: s(&a.to_agency),
        }),
        "eviction_copy_received" => {
            Event::EvictionCopyReceived(EvictionCopyReceived { incident_ref })
        }
        "victim_help_offered" => Event::VictimHelpOffered(VictimHelpOffered {
            incident_ref,
            outcome: named(
                "CONTACT_OUTCOME_",
                a.outcome.as_deref(),
                ContactOutcome::from_str_name,
            ),
            note,
        }),
        "eviction_compliance_checked" => {
            Event::EvictionComplianceChecked(EvictionComplianceChecked {
                incident_ref,
                kept: f.kept.unwrap_or(false),
                note,
            })
        }
        "eviction_breached" => Event::EvictionBreached(EvictionBreached {
            incident_ref,
            offence_ref: s(&f.offence_ref),
            narrative: note,
        }),
        "eviction_objection" => Event::EvictionObjection(EvictionObjection {
            incident_ref,
            stage: named(
                "STAGE_",
                f.stage.as_deref(),
                eviction_objection::Stage::from_str_name,
            ),
            note,
        }),
        "eviction_ended_early" => Event::EvictionEndedEarly(EvictionEndedEarly {
            incident_ref,
            reason: s(&a.reason),
        }),
        "preliminary_measure" => Event::PreliminaryMeasure(PreliminaryMeasure {
            incident_ref,
            stage: named(
                "STAGE_",
                f.stage.as_deref(),
                preliminary_measure::Stage::from_str_name,
            ),
            effective_at: time("effective_at", &f.effective_at)?,
            until: time("until", &f.until)?,
            note,
        }),
        "compliance_reported" => Event::ComplianceReported(ComplianceReported {
            to_agency: s(&a.to_agency),
            report: named(
                "COMPLIANCE_REPORT_KIND_",
                f.report.as_deref(),
                ComplianceReportKind::from_str_name,
            ),
            sessions_attended: f.sessions_attended.unwrap_or(0),
            sessions_missed: f.sessions_missed.unwrap_or(0),
            note,
        }),
        "risk_alert_raised" => Event::RiskAlertRaised(RiskAlertRaised {
            concern: named(
                "RISK_CONCERN_",
                f.concern.as_deref(),
                RiskConcern::from_str_name,
            ),
            basis: s(&f.basis),
            notify: f.notify.clone(),
            note,
        }),
        "endangered_person_recorded" => Event::EndangeredPersonRecorded(EndangeredPersonRecorded {
            role,
            age_band: s(&f.age_band),
            subject_details: f.person.as_ref().map(crate::generic::FormPerson::details),
            shelter: s(&f.shelter),
            school: s(&f.school),
        }),
        "endangered_person_linked" => {
            let (protection_case_id, endangered_pseudonym) =
                match (&f.protection_case_id, &f.endangered_pseudonym) {
                    (Some(case), Some(subject)) => (case.clone(), subject.clone()),
                    _ => protection_ids(agency, secret, f)?,
                };
            Event::EndangeredPersonLinked(EndangeredPersonLinked {
                protection_case_id,
                endangered_pseudonym,
                role,
                support_agency: s(&f.support_agency),
            })
        }
        "notice_acknowledged" => Event::NoticeAcknowledged(NoticeAcknowledged {
            notice_id: s(&f.notice_id),
        }),
        _ => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every value the schema allows names a value of the contract's enum, so no
    /// allowed value reaches the exchange as unspecified.
    #[test]
    fn every_enum_value_of_the_schema_is_one_of_the_contracts() {
        use crate::document::named;
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../../schemas/programme-activity.schema.json"
        ))
        .expect("the schema");
        let values = |field: &str| -> Vec<String> {
            schema["properties"][field]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{field} is an enum"))
                .iter()
                .map(|v| v.as_str().expect("a name").to_string())
                .collect()
        };
        let each = |field: &str, parse: &dyn Fn(&str) -> i32| {
            for v in values(field) {
                assert_ne!(parse(&v), 0, "{field} {v:?}");
            }
        };
        each("recipient", &|v| {
            named("COPY_RECIPIENT_", Some(v), CopyRecipient::from_str_name)
        });
        each("report", &|v| {
            named(
                "COMPLIANCE_REPORT_KIND_",
                Some(v),
                ComplianceReportKind::from_str_name,
            )
        });
        each("concern", &|v| {
            named("RISK_CONCERN_", Some(v), RiskConcern::from_str_name)
        });
        each("role", &|v| {
            named("ROLE_", Some(v), linked_person::Role::from_str_name)
        });
        each("outcome", &|v| {
            named("CONTACT_OUTCOME_", Some(v), ContactOutcome::from_str_name)
        });
        each("participation", &|v| {
            named("PARTICIPATION_", Some(v), Participation::from_str_name)
        });
        each("stage", &|v| {
            named("STAGE_", Some(v), eviction_objection::Stage::from_str_name).max(named(
                "STAGE_",
                Some(v),
                preliminary_measure::Stage::from_str_name,
            ))
        });
    }

    #[test]
    fn a_link_names_the_protection_case_its_record_opened() {
        let secret = AgencySecret::from_bytes([7; 32]);
        let record = json!({
            "activity": "endangered_person_recorded", "activity_ref": "EP-1",
            "protection_ref": "OCHR-1", "occurred_at": "2026-11-21T06:05:00Z", "worker": "w",
            "role": "victim", "person": { "person_ref": "P-1", "full_name": "Jana Nováková" }
        });
        let link = json!({
            "activity": "endangered_person_linked", "activity_ref": "L-1",
            "case_id": "police-north/case-x", "subject_pseudonym": "police-north/subj-x",
            "occurred_at": "2026-11-21T06:06:00Z", "worker": "w", "role": "victim",
            "protection_ref": "OCHR-1", "endangered_person_ref": "P-1",
            "support_agency": "support-north"
        });
        let opened = crate::casework::event("police-north", &secret, &record).expect("record");
        let linked = crate::casework::event("police-north", &secret, &link).expect("link");
        assert!(opened.case_id.starts_with("police-north/case-"));
        assert!(!opened.case_id.contains("OCHR") && !opened.subject_pseudonym.contains("P-1"));
        let Some(Event::EndangeredPersonLinked(l)) = linked.event else {
            panic!("a link: {linked:?}");
        };
        assert_eq!(l.protection_case_id, opened.case_id);
        assert_eq!(l.endangered_pseudonym, opened.subject_pseudonym);
        assert_eq!(linked.case_id, "police-north/case-x");
    }
}
