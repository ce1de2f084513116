//! A case's referral chain as FHIR R4 resources, for systems outside the platform
//! (another region, a health system): one `ServiceRequest` and one `Task` per
//! referral in a `Bundle` of type `collection`. It maps a view that need to know
//! and the field policy have already redacted, so it shows nothing GetCase would not.

use handoff_contract::v1::{CaseStatus, CaseView, ReferralStep, StepState};
use prost_types::Timestamp;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Identifier systems: Handoff's own ids, so a receiving system can match them up.
const CASE_SYSTEM: &str = "urn:handoff:case";
const REFERRAL_SYSTEM: &str = "urn:handoff:referral";
const SUBJECT_SYSTEM: &str = "urn:handoff:subject-pseudonym";
const AGENCY_SYSTEM: &str = "urn:handoff:agency";
/// SNOMED CT 3457005 "Patient referral (procedure)": what every referral is.
const REFERRAL_CODE: (&str, &str, &str) = ("http://snomed.info/sct", "3457005", "Patient referral");

/// The FHIR R4 Bundle of a (redacted) case view, as JSON.
pub fn case_bundle(view: &CaseView) -> Value {
    let mut entries = Vec::new();
    let subject = subject_reference(view);
    if let Some(patient) = patient(view) {
        entries.push(patient);
    }
    for (index, step) in view.referrals.iter().enumerate() {
        let request_id = resource_id("ServiceRequest", &step.referral_id);
        let task_id = resource_id("Task", &step.referral_id);
        entries.push(entry(
            &request_id,
            service_request(view, step, &request_id, &subject),
        ));
        let status = task_status(view, index);
        entries.push(entry(
            &task_id,
            task(step, &task_id, &request_id, &subject, status),
        ));
    }
    json!({
        "resourceType": "Bundle",
        "id": resource_id("Bundle", &view.case_id),
        "type": "collection",
        "timestamp": view.updated_at.as_ref().map(instant),
        "identifier": { "system": CASE_SYSTEM, "value": view.case_id },
        "entry": entries,
    })
}

/// What a referral's Task says: FHIR's task status, and why where FHIR asks for a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// A code of FHIR's `task-status` value set.
    pub code: &'static str,
    /// `Task.statusReason`: why it was rejected, failed or cancelled.
    pub reason: Option<String>,
}

/// The Task status of the referral at `index`: its own answer while it is open; once
/// accepted, the case's progress if the case is still with its receiver, else
/// completed (the receiver passed the case on).
pub fn task_status(view: &CaseView, index: usize) -> TaskStatus {
    let step = &view.referrals[index];
    let plain = |code| TaskStatus { code, reason: None };
    let why = |code, reason: &str| TaskStatus {
        code,
        reason: Some(reason.to_string()).filter(|r| !r.is_empty()),
    };
    match StepState::try_from(step.state).unwrap_or(StepState::Unspecified) {
        StepState::Unspecified | StepState::Pending => plain("requested"),
        StepState::Acknowledged => plain("received"),
        StepState::Declined => why("rejected", &step.decline_reason),
        StepState::Accepted => {
            let passed_on = view.referrals[index + 1..]
                .iter()
                .any(|later| later.from_agency == step.to_agency);
            if passed_on {
                return plain("completed");
            }
            match CaseStatus::try_from(view.status).unwrap_or(CaseStatus::Unspecified) {
                CaseStatus::InContact | CaseStatus::Intake | CaseStatus::Enrolled => {
                    plain("in-progress")
                }
                CaseStatus::Completed => plain("completed"),
                CaseStatus::DroppedOut => why("failed", &view.outcome_note),
                CaseStatus::Closed => why("cancelled", &view.outcome_note),
                _ => plain("accepted"),
            }
        }
    }
}

fn service_request(view: &CaseView, step: &ReferralStep, id: &str, subject: &Value) -> Value {
    let accepted_and_done = matches!(
        CaseStatus::try_from(view.status),
        Ok(CaseStatus::Completed | CaseStatus::DroppedOut | CaseStatus::Closed)
    );
    // The request stays active while it is open or being carried out.
    let status = match StepState::try_from(step.state).unwrap_or(StepState::Unspecified) {
        StepState::Declined => "revoked",
        StepState::Accepted if accepted_and_done => "completed",
        _ => "active",
    };
    let mut resource = object(json!({
        "resourceType": "ServiceRequest",
        "id": id,
        "identifier": [{ "system": REFERRAL_SYSTEM, "value": step.referral_id }],
        "status": status,
        // A court-ordered referral is an order; any other is a proposal the receiver may decline.
        "intent": if step.court_ordered { "order" } else { "proposal" },
        "code": { "coding": [{
            "system": REFERRAL_CODE.0, "code": REFERRAL_CODE.1, "display": REFERRAL_CODE.2,
        }] },
        "subject": subject,
        "requester": agency(&step.from_agency),
        "performer": [agency(&step.to_agency)],
    }));
    if let Some(made) = &step.made_at {
        resource.insert("authoredOn".into(), instant(made));
    }
    if !step.reason.is_empty() {
        resource.insert("reasonCode".into(), json!([{ "text": step.reason }]));
    }
    Value::Object(resource)
}

fn task(
    step: &ReferralStep,
    id: &str,
    request_id: &str,
    subject: &Value,
    status: TaskStatus,
) -> Value {
    let mut resource = object(json!({
        "resourceType": "Task",
        "id": id,
        "identifier": [{ "system": REFERRAL_SYSTEM, "value": step.referral_id }],
        "basedOn": [{ "reference": format!("urn:uuid:{request_id}") }],
        "status": status.code,
        "intent": "order",
        "code": { "coding": [{
            "system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill",
        }] },
        "focus": { "reference": format!("urn:uuid:{request_id}") },
        "for": subject,
        "requester": agency(&step.from_agency),
        "owner": agency(&step.to_agency),
    }));
    if let Some(reason) = status.reason {
        resource.insert("statusReason".into(), json!({ "text": reason }));
    }
    if let Some(made) = &step.made_at {
        resource.insert("authoredOn".into(), instant(made));
    }
    let modified = step
        .answered_at
        .as_ref()
        .or(step.acknowledged_at.as_ref())
        .or(step.made_at.as_ref());
    if let Some(modified) = modified {
        resource.insert("lastModified".into(), instant(modified));
    }
    Value::Object(resource)
}

/// A Patient only where the caller may see the subject's details; otherwise the
/// subject is known by pseudonym alone.
fn patient(view: &CaseView) -> Option<Value> {
    let details = view.subject_details.as_ref()?;
    let id = resource_id("Patient", &view.subject_pseudonym);
    let mut resource = object(json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": SUBJECT_SYSTEM, "value": view.subject_pseudonym }],
    }));
    if !details.full_name.is_empty() {
        resource.insert("name".into(), json!([{ "text": details.full_name }]));
    }
    if is_fhir_date(&details.date_of_birth) {
        resource.insert("birthDate".into(), json!(details.date_of_birth));
    }
    if !details.phone.is_empty() {
        resource.insert(
            "telecom".into(),
            json!([{ "system": "phone", "value": details.phone }]),
        );
    }
    if !details.address.is_empty() {
        resource.insert("address".into(), json!([{ "text": details.address }]));
    }
    Some(entry(&id, Value::Object(resource)))
}

fn subject_reference(view: &CaseView) -> Value {
    match view.subject_details {
        Some(_) => json!({
            "reference": format!("urn:uuid:{}", resource_id("Patient", &view.subject_pseudonym)),
        }),
        None => json!({
            "identifier": { "system": SUBJECT_SYSTEM, "value": view.subject_pseudonym },
        }),
    }
}

fn agency(id: &str) -> Value {
    json!({
        "type": "Organization",
        "identifier": { "system": AGENCY_SYSTEM, "value": id },
        "display": id,
    })
}

fn entry(id: &str, resource: Value) -> Value {
    json!({ "fullUrl": format!("urn:uuid:{id}"), "resource": resource })
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The same resource always gets the same id (a UUID derived from what it is about),
/// so a receiving system can update rather than duplicate on a second export.
fn resource_id(kind: &str, about: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"handoff-fhir-v1\0")
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(about.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // RFC 9562 version 8 (custom), variant 10.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn instant(t: &Timestamp) -> Value {
    Value::String(t.to_string())
}

/// FHIR's `date`: YYYY, YYYY-MM or YYYY-MM-DD; anything else is left out rather than sent invalid.
fn is_fhir_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |s: &str, n: usize, max: u32| {
        s.len() == n
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<u32>().is_ok_and(|v| (1..=max).contains(&v))
    };
    match parts.as_slice() {
        [y] => number(y, 4, 9999),
        [y, m] => number(y, 4, 9999) && number(m, 2, 12),
        [y, m, d] => number(y, 4, 9999) && number(m, 2, 12) && number(d, 2, 31),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::PersonalDetails;

    fn step(id: &str, from: &str, to: &str, state: StepState) -> ReferralStep {
        ReferralStep {
            referral_id: id.into(),
            from_agency: from.into(),
            to_agency: to.into(),
            state: state as i32,
            made_at: Some(Timestamp {
                seconds: 1_780_000_000,
                nanos: 0,
            }),
            reason: "eviction; programme offered".into(),
            ..ReferralStep::default()
        }
    }

    fn view(status: CaseStatus, referrals: Vec<ReferralStep>) -> CaseView {
        CaseView {
            case_id: "police/case-1".into(),
            subject_pseudonym: "police/subj-1".into(),
            status: status as i32,
            referrals,
            outcome_note: "moved out of the region".into(),
            ..CaseView::default()
        }
    }

    #[test]
    fn each_referral_state_maps_to_a_task_status() {
        let one = |state, status| task_status(&view(status, vec![step("r", "p", "n", state)]), 0);
        for (state, status, code) in [
            (StepState::Pending, CaseStatus::Referred, "requested"),
            (StepState::Acknowledged, CaseStatus::Referred, "received"),
            (StepState::Accepted, CaseStatus::Accepted, "accepted"),
            (StepState::Accepted, CaseStatus::InContact, "in-progress"),
            (StepState::Accepted, CaseStatus::Enrolled, "in-progress"),
            (StepState::Accepted, CaseStatus::Completed, "completed"),
            (StepState::Accepted, CaseStatus::Closed, "cancelled"),
        ] {
            assert_eq!(
                one(state, status).code,
                code,
                "{state:?} in a {status:?} case"
            );
        }
        let failed = one(StepState::Accepted, CaseStatus::DroppedOut);
        assert_eq!(failed.code, "failed");
        assert_eq!(failed.reason.as_deref(), Some("moved out of the region"));
        let mut declined = step("r", "p", "n", StepState::Declined);
        declined.decline_reason = "no capacity".into();
        let rejected = task_status(&view(CaseStatus::Open, vec![declined]), 0);
        assert_eq!(
            rejected,
            TaskStatus {
                code: "rejected",
                reason: Some("no capacity".into())
            }
        );
    }

    #[test]
    fn a_referral_passed_on_is_completed_and_the_next_carries_the_progress() {
        let case = view(
            CaseStatus::Enrolled,
            vec![
                step("r1", "police", "ic", StepState::Accepted),
                step("r2", "ic", "ngo", StepState::Accepted),
            ],
        );
        assert_eq!(task_status(&case, 0).code, "completed");
        assert_eq!(task_status(&case, 1).code, "in-progress");
    }

    #[test]
    fn the_bundle_holds_a_request_and_a_task_per_referral_with_stable_ids() {
        let case = view(
            CaseStatus::Referred,
            vec![step("r1", "police", "ngo", StepState::Pending)],
        );
        let bundle = case_bundle(&case);
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "collection");
        let entries = bundle["entry"].as_array().expect("entries");
        let kinds: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(kinds, ["ServiceRequest", "Task"]);
        let task = &entries[1]["resource"];
        assert_eq!(task["status"], "requested");
        assert_eq!(task["focus"]["reference"], entries[0]["fullUrl"]);
        assert_eq!(task["owner"]["identifier"]["value"], "ngo");
        assert_eq!(entries[0]["resource"]["intent"], "proposal");
        // Without details the subject is a pseudonym, and no Patient is made.
        assert_eq!(task["for"]["identifier"]["value"], "police/subj-1");
        assert_eq!(case_bundle(&case), bundle, "the same case, the same ids");
    }

    #[test]
    fn a_patient_appears_only_with_details_and_only_valid_dates() {
        let mut case = view(
            CaseStatus::Referred,
            vec![step("r1", "police", "ngo", StepState::Pending)],
        );
        case.subject_details = Some(PersonalDetails {
            full_name: "Jan Novák".into(),
            date_of_birth: "1984-13".into(),
            ..PersonalDetails::default()
        });
        let bundle = case_bundle(&case);
        let patient = &bundle["entry"][0]["resource"];
        assert_eq!(patient["resourceType"], "Patient");
        assert_eq!(patient["name"][0]["text"], "Jan Novák");
        assert!(patient.get("birthDate").is_none(), "month 13 is not a date");
        assert!(!is_fhir_date("1984-1-02") && is_fhir_date("1984-01-02"));
        assert_eq!(
            bundle["entry"][2]["resource"]["for"]["reference"],
            bundle["entry"][0]["fullUrl"]
        );
    }
}
