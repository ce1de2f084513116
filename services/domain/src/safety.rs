//! The endangered person's side of a case: protection cases, the links to them, the
//! facts of the violent person's case that bear on safety, risk alerts, and the
//! programme's compliance reports to a court or probation. Facts are folded here; the
//! notices made from them (and who they are for) are [`notices`], at read time.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::inbox_item::Kind;
use handoff_contract::v1::{
    CaseStatus, CaseView, ComplianceReport, EndangeredLink, InboxItem, NoticeAck, OutcomeReason,
    ProtectedPerson, RiskLevel, SafetyFact, SafetyFactKind,
};
use prost_types::Timestamp;

use crate::agency::{AgencyKind, Registry};
use crate::case::{Position, Rule, joined};
use crate::limits::PER_CASE;
use crate::rejection::Rejection;

/// Kinds that may work a protection case: they act for the endangered person, not
/// with the violent person.
pub fn acts_for_endangered(kind: AgencyKind) -> bool {
    matches!(
        kind,
        AgencyKind::Police
            | AgencyKind::SocialServices
            | AgencyKind::InterventionCentre
            | AgencyKind::VictimSupport
    )
}

/// Kinds a risk alert always reaches (police, child protection, the intervention centre).
fn alerted(kind: AgencyKind) -> bool {
    matches!(
        kind,
        AgencyKind::Police | AgencyKind::SocialServices | AgencyKind::InterventionCentre
    )
}

/// What the read side needs to make notices: the policy's threshold and legal basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyRules {
    /// Unexcused sessions missed in a row that make a notice.
    pub missed_in_a_row: u32,
    /// The legal basis recorded with every safety notice (they go out whatever the
    /// violent person's consent says).
    pub basis: String,
}

impl Default for SafetyRules {
    fn default() -> Self {
        SafetyRules {
            missed_in_a_row: 2,
            basis: String::new(),
        }
    }
}

/// The id of the notice a fact, alert or report makes.
pub fn notice_id(prefix: &str, sequence: u64) -> String {
    format!("{prefix}/{sequence}")
}

/// Folds a safety event (protection case, link, alert, report, acknowledgement).
pub(crate) fn fold(
    view: &mut CaseView,
    event: &Event,
    source: &str,
    event_type: &'static str,
    registry: &Registry,
    occurred: Timestamp,
    at: Position,
) -> Result<(), Rejection> {
    let rule = Rule {
        view,
        source,
        event_type,
    };
    rule.party()?;
    let cap = |len: usize, what: &str| {
        if len >= PER_CASE {
            Err(rule.not_allowed(format!(
                "this case has {len} {what}; at most {PER_CASE} are kept"
            )))
        } else {
            Ok(())
        }
    };
    match event {
        Event::ComplianceReported(e) => {
            rule.holder()?;
            rule.ordinary()?;
            let to = registry
                .get(&e.to_agency)
                .ok_or_else(|| Rejection::UnknownAgency(e.to_agency.clone()))?;
            let owed = rule.view.reports_to == e.to_agency
                || (matches!(to.kind, AgencyKind::Court | AgencyKind::Probation)
                    && rule.view.parties.iter().any(|p| p.agency == e.to_agency));
            if !owed {
                return Err(rule.not_allowed(format!(
                    "compliance reports go to the court or probation the participation names ({}), not {}",
                    if rule.view.reports_to.is_empty() { "none named" } else { &rule.view.reports_to },
                    e.to_agency
                )));
            }
            cap(rule.view.compliance_reports.len(), "compliance reports")?;
            view.compliance_reports.push(ComplianceReport {
                sequence: at.sequence,
                from_agency: source.to_string(),
                to_agency: e.to_agency.clone(),
                report: e.report,
                sessions_attended: e.sessions_attended,
                sessions_missed: e.sessions_missed,
                note: e.note.clone(),
                at: Some(occurred),
            });
        }
        Event::RiskAlertRaised(e) => {
            let mut recipients: Vec<String> = rule
                .view
                .parties
                .iter()
                .filter(|p| p.visible_until_sequence == 0 && p.agency != source)
                .filter(|p| registry.get(&p.agency).is_some_and(|a| alerted(a.kind)))
                .map(|p| p.agency.clone())
                .collect();
            // Whoever acts for a linked endangered person is told too.
            recipients.extend(
                rule.view
                    .endangered
                    .iter()
                    .map(|l| l.support_agency.clone()),
            );
            for agency in &e.notify {
                let a = registry
                    .get(agency)
                    .ok_or_else(|| Rejection::UnknownAgency(agency.clone()))?;
                if !alerted(a.kind) {
                    return Err(rule.not_allowed(format!(
                        "agency {agency} is a {}; a risk alert goes to the police, child protection and intervention centres",
                        a.kind
                    )));
                }
                recipients.push(agency.clone());
            }
            recipients.sort();
            recipients.dedup();
            recipients.retain(|a| a != source);
            cap(rule.view.safety_facts.len(), "safety facts")?;
            for agency in &e.notify {
                joined(&mut view.parties, agency);
            }
            view.safety_facts.push(SafetyFact {
                kind: SafetyFactKind::RiskAlert as i32,
                sequence: at.sequence,
                at: Some(occurred),
                concern: e.concern,
                basis: e.basis.clone(),
                recipients,
                from_agency: source.to_string(),
                ..SafetyFact::default()
            });
        }
        Event::EndangeredPersonRecorded(e) => {
            // A case that exists must already be a protection case (a new one was opened
            // by this event: `fold` made it with the opener as its one party).
            let opened_now = rule.view.version == 0;
            if !opened_now && rule.view.protected_person.is_none() {
                return Err(rule.not_allowed(
                    "this is the violent person's case; record the endangered person in a protection case of their own and link it".into(),
                ));
            }
            view.protected_person = Some(ProtectedPerson {
                role: e.role,
                age_band: e.age_band.clone(),
                shelter: e.shelter.clone(),
                school: e.school.clone(),
            });
            if e.subject_details.is_some() {
                view.subject_details = e.subject_details.clone();
            }
        }
        Event::EndangeredPersonLinked(e) => {
            rule.ordinary()?;
            let support = registry
                .get(&e.support_agency)
                .ok_or_else(|| Rejection::UnknownAgency(e.support_agency.clone()))?;
            if !matches!(
                support.kind,
                AgencyKind::VictimSupport | AgencyKind::InterventionCentre
            ) {
                return Err(rule.not_allowed(format!(
                    "agency {} is a {}; an endangered person's support is victim support or an intervention centre",
                    support.id, support.kind
                )));
            }
            if rule
                .view
                .endangered
                .iter()
                .any(|l| l.protection_case_id == e.protection_case_id)
            {
                return Err(rule.not_allowed(format!(
                    "protection case {} is already linked",
                    e.protection_case_id
                )));
            }
            cap(rule.view.endangered.len(), "linked protection cases")?;
            view.endangered.push(EndangeredLink {
                protection_case_id: e.protection_case_id.clone(),
                endangered_pseudonym: e.endangered_pseudonym.clone(),
                role: e.role,
                support_agency: e.support_agency.clone(),
                linked_at: Some(occurred),
                linked_sequence: at.sequence,
            });
            joined(&mut view.parties, &e.support_agency);
        }
        Event::NoticeAcknowledged(e) => {
            if !addressees(rule.view, &e.notice_id)
                .iter()
                .any(|a| a == source)
            {
                return Err(rule.not_allowed(format!(
                    "no notice {} is addressed to {source} in this case",
                    e.notice_id
                )));
            }
            if acknowledged(rule.view, source, &e.notice_id) {
                return Err(
                    rule.not_allowed(format!("notice {} is already acknowledged", e.notice_id))
                );
            }
            view.acknowledged.push(NoticeAck {
                agency: source.to_string(),
                notice_id: e.notice_id.clone(),
            });
        }
        _ => {
            return Err(Rejection::Invalid(format!(
                "{event_type} is no safety event"
            )));
        }
    }
    Ok(())
}

/// Records the safety fact an accepted event of the violent person's programme is, if
/// it is one and an endangered person is linked (the notices go to their support).
pub(crate) fn record_fact(
    view: &mut CaseView,
    event: &Event,
    source: &str,
    at: Position,
    occurred: Timestamp,
) {
    if view.endangered.is_empty() || view.safety_facts.len() >= PER_CASE {
        return;
    }
    let in_programme = matches!(
        view.status(),
        CaseStatus::Accepted | CaseStatus::InContact | CaseStatus::Intake | CaseStatus::Enrolled
    );
    let mut fact = SafetyFact {
        sequence: at.sequence,
        at: Some(occurred),
        from_agency: source.to_string(),
        ..SafetyFact::default()
    };
    let kind = match event {
        Event::IntakeCompleted(_) => SafetyFactKind::Intake,
        Event::SessionMissed(e) if !e.excused => {
            fact.missed_in_a_row = view.missed_in_a_row;
            SafetyFactKind::SessionMissed
        }
        Event::ProgrammeDroppedOut(e)
            if e.reason_code == OutcomeReason::ExcludedViolenceOrThreats as i32 =>
        {
            SafetyFactKind::Excluded
        }
        Event::ProgrammeDroppedOut(_) => SafetyFactKind::DroppedOut,
        Event::ProgrammeCompleted(_) => SafetyFactKind::Completed,
        Event::RiskAssessed(e)
            if e.level >= RiskLevel::High as i32 && e.level <= RiskLevel::VeryHigh as i32 =>
        {
            fact.level = e.level;
            SafetyFactKind::HighRisk
        }
        Event::IncidentReported(_) if in_programme => SafetyFactKind::NewIncident,
        Event::EvictionBreached(_) => SafetyFactKind::EvictionBreached,
        _ => return,
    };
    fact.kind = kind as i32;
    view.safety_facts.push(fact);
}

fn acknowledged(view: &CaseView, agency: &str, notice_id: &str) -> bool {
    view.acknowledged
        .iter()
        .any(|a| a.agency == agency && a.notice_id == notice_id)
}

/// Who a notice of this case is for, by its id (`safety/<seq>`, `alert/<seq>`,
/// `report/<seq>`); the one rule the inbox and an acknowledgement both ask.
pub fn addressees(view: &CaseView, notice_id: &str) -> Vec<String> {
    let Some((prefix, sequence)) = notice_id
        .split_once('/')
        .and_then(|(p, s)| Some((p, s.parse::<u64>().ok()?)))
    else {
        return Vec::new();
    };
    match prefix {
        "safety" => view
            .safety_facts
            .iter()
            .filter(|f| f.sequence == sequence && f.kind != SafetyFactKind::RiskAlert as i32)
            .flat_map(|_| support_for(view, sequence))
            .collect(),
        "alert" => view
            .safety_facts
            .iter()
            .filter(|f| f.sequence == sequence && f.kind == SafetyFactKind::RiskAlert as i32)
            .flat_map(|f| f.recipients.clone())
            .collect(),
        "report" => view
            .compliance_reports
            .iter()
            .filter(|r| r.sequence == sequence)
            .map(|r| r.to_agency.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// The support agencies of the endangered persons linked before the fact at `sequence`.
fn support_for(view: &CaseView, sequence: u64) -> Vec<String> {
    let mut out: Vec<String> = view
        .endangered
        .iter()
        .filter(|l| l.linked_sequence < sequence)
        .map(|l| l.support_agency.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The lower-case name of a fact's kind ("dropped_out"), the `rule` of its notice.
pub fn fact_name(kind: i32) -> String {
    SafetyFactKind::try_from(kind)
        .unwrap_or(SafetyFactKind::Unspecified)
        .as_str_name()
        .trim_start_matches("SAFETY_FACT_KIND_")
        .to_ascii_lowercase()
}

/// The notices a case has waiting, unacknowledged, for each addressee: safety notices
/// for the endangered person's support (whatever the violent person's consent says),
/// risk alerts, and compliance reports. Only facts, never the case's details.
pub fn notices(view: &CaseView, rules: &SafetyRules) -> Vec<InboxItem> {
    let mut items = Vec::new();
    // Each notice is from the agency whose fact it is, not the case's holder.
    let mut push = |kind: Kind,
                    id: String,
                    from: &str,
                    to: &str,
                    fact_at: Option<Timestamp>,
                    rule: String,
                    basis: &str| {
        if !acknowledged(view, to, &id) {
            items.push(InboxItem {
                kind: kind as i32,
                case_id: view.case_id.clone(),
                item_id: id,
                from_agency: from.to_string(),
                to_agency: to.to_string(),
                since: fact_at,
                subject_pseudonym: view.subject_pseudonym.clone(),
                rule,
                basis: basis.to_string(),
                ..InboxItem::default()
            });
        }
    };
    for fact in &view.safety_facts {
        let name = fact_name(fact.kind);
        if fact.kind == SafetyFactKind::RiskAlert as i32 {
            let id = notice_id("alert", fact.sequence);
            for to in &fact.recipients {
                push(
                    Kind::RiskAlert,
                    id.clone(),
                    &fact.from_agency,
                    to,
                    fact.at,
                    name.clone(),
                    &fact.basis,
                );
            }
            continue;
        }
        // A run of missed sessions makes one notice, when it reaches the threshold.
        if fact.kind == SafetyFactKind::SessionMissed as i32
            && fact.missed_in_a_row != rules.missed_in_a_row
        {
            continue;
        }
        let id = notice_id("safety", fact.sequence);
        for to in support_for(view, fact.sequence) {
            push(
                Kind::SafetyNotice,
                id.clone(),
                &fact.from_agency,
                &to,
                fact.at,
                name.clone(),
                &rules.basis,
            );
        }
    }
    for report in &view.compliance_reports {
        let name = report
            .report()
            .as_str_name()
            .trim_start_matches("COMPLIANCE_REPORT_KIND_")
            .to_ascii_lowercase();
        push(
            Kind::ComplianceReport,
            notice_id("report", report.sequence),
            &report.from_agency,
            &report.to_agency,
            report.at,
            name,
            "",
        );
    }
    items
}
