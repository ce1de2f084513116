//! The case state machine: one function decides whether an event may enter
//! the log and, if so, what the case looks like afterwards.
//!
//! Everything here is a pure function of the case before the event, the
//! event, the agency registry and the log position; replicas that feed the
//! same events in the same order reach byte-identical views.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    CaseStatus, CaseView, ConsentState, ContactOutcome, Envelope, Eviction, Incident,
    OutcomeReason, Participation, Party, PendingHandoff, ReferralStep, StepState,
};
use prost_types::Timestamp;
use std::borrow::Cow;

use crate::agency::Registry;
use crate::rejection::Rejection;
use crate::validate::publishable;

/// Where an accepted event lands in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The log sequence the event gets.
    pub sequence: u64,
    /// The exchange's record time (taken from JetStream, so replicas agree), Unix ms.
    pub recorded_at_ms: i64,
}

/// The events that may open a case.
pub fn opens_case(event: &Event) -> bool {
    matches!(
        event,
        Event::IncidentReported(_)
            | Event::EvictionOrdered(_)
            | Event::ReferralMade(_)
            | Event::EndangeredPersonRecorded(_)
    )
}

/// Whether `agency` has a part in `view` that lets it write: it opened, referred,
/// holds or held the case, or it is asked now. An agency whose only part was being
/// asked, and which declined, may still read the case as it was but writes nothing.
pub fn may_write(view: &CaseView, agency: &str) -> bool {
    view.parties
        .iter()
        .any(|p| p.agency == agency && p.visible_until_sequence == 0)
}

/// Lower-case name of a status for messages to people ("referred", "enrolled").
pub fn status_name(status: CaseStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("CASE_STATUS_")
        .to_ascii_lowercase()
}

fn status_of(view: &CaseView) -> CaseStatus {
    CaseStatus::try_from(view.status).unwrap_or(CaseStatus::Unspecified)
}

/// Decides an event against the case it names and returns the case as it is after it.
///
/// `current` is the case before the event (`None` if no event has named it yet).
pub fn evolve(
    current: Option<&CaseView>,
    envelope: &Envelope,
    registry: &Registry,
    at: Position,
) -> Result<CaseView, Rejection> {
    evolve_from(current.map(Cow::Borrowed), envelope, registry, at)
}

/// [`evolve`] taking the case by value: no copy of it is made (a rebuild folds this way).
pub fn evolve_owned(
    current: Option<CaseView>,
    envelope: &Envelope,
    registry: &Registry,
    at: Position,
) -> Result<CaseView, Rejection> {
    evolve_from(current.map(Cow::Owned), envelope, registry, at)
}

fn evolve_from(
    current: Option<Cow<'_, CaseView>>,
    envelope: &Envelope,
    registry: &Registry,
    at: Position,
) -> Result<CaseView, Rejection> {
    let (event, kind_name) = publishable(envelope, registry)?;
    fold(current, envelope, event, kind_name, registry, at)
}

/// [`evolve`] of an envelope already found publishable (`event` and `kind_name` are its).
pub(crate) fn fold(
    current: Option<Cow<'_, CaseView>>,
    envelope: &Envelope,
    event: &Event,
    kind_name: &'static str,
    registry: &Registry,
    at: Position,
) -> Result<CaseView, Rejection> {
    if !matches!(
        crate::effect::target(envelope),
        Some(crate::effect::Target::Case(_))
    ) {
        // Listings, subject-wide erasures and registry changes belong to no case.
        return Err(Rejection::Invalid(format!(
            "{kind_name} is not about a case"
        )));
    }
    let source = envelope.source_agency.as_str();
    let actual_version = current.as_ref().map_or(0, |v| v.version);
    if let Some(expected) = envelope.expected_version
        && expected != actual_version
    {
        return Err(Rejection::WrongExpectedVersion {
            case_id: envelope.case_id.clone(),
            expected,
            actual: actual_version,
        });
    }
    let occurred = envelope.occurred_at.unwrap_or_default();
    let mut view = match current {
        Some(v) => {
            if v.subject_pseudonym != envelope.subject_pseudonym {
                return Err(Rejection::Invalid(format!(
                    "case {} is about subject {}, not {}",
                    v.case_id, v.subject_pseudonym, envelope.subject_pseudonym
                )));
            }
            v.into_owned()
        }
        None => {
            if !opens_case(event) {
                return Err(Rejection::NoSuchCase {
                    case_id: envelope.case_id.clone(),
                    agency: source.to_string(),
                });
            }
            CaseView {
                case_id: envelope.case_id.clone(),
                subject_pseudonym: envelope.subject_pseudonym.clone(),
                status: CaseStatus::Open as i32,
                holder: source.to_string(),
                opened_by: source.to_string(),
                opened_at: Some(occurred),
                parties: vec![Party {
                    agency: source.to_string(),
                    visible_until_sequence: 0,
                    only_asked: false,
                }],
                ..CaseView::default()
            }
        }
    };
    let rule = Rule {
        view: &view,
        source,
        event_type: kind_name,
    };
    // Erasure must stay possible after closure: that is when retention applies.
    if !matches!(event, Event::SubjectErasureRequested(_)) {
        rule.not_closed()?;
    }

    match event {
        Event::IncidentReported(e) => {
            rule.party()?;
            rule.ordinary()?;
            view.incidents.push(Incident {
                incident_ref: e.incident_ref.clone(),
                reported_at: Some(occurred),
                narrative: e.narrative.clone(),
                area: e.area.clone(),
                linked_persons: e.linked_persons.clone(),
            });
            if e.subject_details.is_some() {
                view.subject_details = e.subject_details.clone();
            }
        }
        Event::EvictionOrdered(e) => {
            rule.party()?;
            let ordered_at = e.ordered_at.unwrap_or(occurred);
            let ends_at = Timestamp {
                seconds: ordered_at
                    .seconds
                    .saturating_add(i64::from(e.duration_days) * 86_400),
                nanos: ordered_at.nanos,
            };
            rule.ordinary()?;
            view.evictions.push(Eviction {
                incident_ref: e.incident_ref.clone(),
                ordered_at: Some(ordered_at),
                ends_at: Some(ends_at),
                protected_area: e.protected_area.clone(),
                ordered_by: source.to_string(),
                minor_in_home: e.minor_in_home,
                ..Eviction::default()
            });
        }
        Event::ReferralMade(e) => {
            rule.holder()?;
            rule.status_in(&[
                CaseStatus::Open,
                CaseStatus::Accepted,
                CaseStatus::InContact,
                CaseStatus::Intake,
                CaseStatus::Enrolled,
                CaseStatus::Completed,
                CaseStatus::DroppedOut,
            ])?;
            rule.addressable(registry, &e.to_agency)?;
            let reports_to = crate::eviction_path::reports_to(&rule, registry, e)?;
            if reports_to.is_some() {
                // Compliance reports are about the violent person's programme.
                rule.ordinary()?;
            }
            if view
                .referrals
                .iter()
                .any(|r| r.referral_id == e.referral_id)
            {
                return Err(rule.not_allowed(format!(
                    "referral id {} is already used in this case",
                    e.referral_id
                )));
            }
            view.referrals.push(ReferralStep {
                referral_id: e.referral_id.clone(),
                from_agency: source.to_string(),
                to_agency: e.to_agency.clone(),
                state: StepState::Pending as i32,
                made_at: Some(occurred),
                reason: e.reason.clone(),
                court_ordered: e.court_ordered
                    || e.participation == Participation::CourtOrdered as i32,
                participation: e.participation,
                report_to_agency: e.report_to_agency.clone(),
                ..ReferralStep::default()
            });
            if e.participation != Participation::Unspecified as i32 {
                view.participation = e.participation;
            }
            if let Some(agency) = reports_to {
                view.reports_to = agency.to_string();
                joined(&mut view.parties, agency);
            }
            view.status_before_referral = view.status;
            view.status = CaseStatus::Referred as i32;
            asked(&mut view.parties, &e.to_agency);
            if e.subject_details.is_some() {
                view.subject_details = e.subject_details.clone();
            }
        }
        Event::ReferralAcknowledged(e) => {
            let step = rule.open_referral(&e.referral_id, &[StepState::Pending])?;
            let step = &mut view.referrals[step];
            step.state = StepState::Acknowledged as i32;
            step.acknowledged_at = Some(occurred);
        }
        Event::ReferralAccepted(e) => {
            let step = rule.open_referral(
                &e.referral_id,
                &[StepState::Pending, StepState::Acknowledged],
            )?;
            let step = &mut view.referrals[step];
            step.state = StepState::Accepted as i32;
            step.acknowledged_at.get_or_insert(occurred);
            step.answered_at = Some(occurred);
            view.holder = source.to_string();
            took_part(&mut view.parties, source);
            view.status = CaseStatus::Accepted as i32;
            view.status_before_referral = CaseStatus::Unspecified as i32;
        }
        Event::ReferralDeclined(e) => {
            let step = rule.open_referral(
                &e.referral_id,
                &[StepState::Pending, StepState::Acknowledged],
            )?;
            let step = &mut view.referrals[step];
            step.state = StepState::Declined as i32;
            step.answered_at = Some(occurred);
            step.decline_reason = e.reason.clone();
            step.decline_reason_code = e.reason_code;
            declined(&mut view.parties, source, at.sequence);
            view.status = view.status_before_referral;
            view.status_before_referral = CaseStatus::Unspecified as i32;
        }
        Event::ContactAttempted(e) => {
            rule.holder()?;
            rule.status_in(&[
                CaseStatus::Open,
                CaseStatus::Accepted,
                CaseStatus::InContact,
                CaseStatus::Intake,
                CaseStatus::Enrolled,
            ])?;
            view.contact_attempts += 1;
            if e.outcome == ContactOutcome::Reached as i32 {
                view.first_contact_at.get_or_insert(occurred);
                if matches!(status_of(&view), CaseStatus::Open | CaseStatus::Accepted) {
                    view.status = CaseStatus::InContact as i32;
                }
            }
        }
        Event::IntakeCompleted(_) => {
            rule.holder()?;
            rule.status_in(&[CaseStatus::Accepted, CaseStatus::InContact])?;
            view.first_contact_at.get_or_insert(occurred);
            view.intake_at = Some(occurred);
            view.status = CaseStatus::Intake as i32;
        }
        Event::Enrolled(e) => {
            rule.holder()?;
            rule.status_in(&[CaseStatus::Intake])?;
            view.programme = e.programme.clone();
            view.planned_sessions = e.planned_sessions;
            view.status = CaseStatus::Enrolled as i32;
        }
        Event::SessionAttended(_) => {
            rule.holder()?;
            rule.status_in(&[CaseStatus::Enrolled])?;
            view.sessions_attended += 1;
            view.missed_in_a_row = 0;
        }
        Event::SessionMissed(e) => {
            rule.holder()?;
            rule.status_in(&[CaseStatus::Enrolled])?;
            view.sessions_missed += 1;
            // An excused absence neither counts towards a run nor breaks one.
            if !e.excused {
                view.missed_in_a_row += 1;
            }
        }
        Event::RiskAssessed(e) => {
            rule.party()?;
            view.risk_level = e.level;
            view.risk_instrument = e.instrument.clone();
        }
        Event::HandoffRequested(e) => {
            rule.holder()?;
            if status_of(&view) == CaseStatus::Referred {
                return Err(rule.not_allowed("a referral is waiting for an answer".into()));
            }
            if let Some(p) = &view.pending_handoff {
                return Err(rule.not_allowed(format!(
                    "handoff {} to {} is still waiting for an answer",
                    p.handoff_id, p.to_agency
                )));
            }
            rule.addressable(registry, &e.to_agency)?;
            view.pending_handoff = Some(PendingHandoff {
                handoff_id: e.handoff_id.clone(),
                from_agency: source.to_string(),
                to_agency: e.to_agency.clone(),
                requested_at: Some(occurred),
                reason: e.reason.clone(),
            });
            asked(&mut view.parties, &e.to_agency);
        }
        Event::HandoffAccepted(e) => {
            rule.open_handoff(&e.handoff_id)?;
            view.pending_handoff = None;
            view.holder = source.to_string();
            took_part(&mut view.parties, source);
        }
        Event::HandoffDeclined(e) => {
            rule.open_handoff(&e.handoff_id)?;
            view.pending_handoff = None;
            declined(&mut view.parties, source, at.sequence);
        }
        Event::ConsentGiven(_) => {
            rule.holder()?;
            view.consent = ConsentState::Given as i32;
        }
        Event::ConsentWithdrawn(_) => {
            rule.holder()?;
            view.consent = ConsentState::Withdrawn as i32;
        }
        Event::ProgrammeCompleted(e) => {
            rule.holder()?;
            rule.status_in(&[CaseStatus::Enrolled])?;
            view.status = CaseStatus::Completed as i32;
            view.outcome_note = e.note.clone();
            view.outcome_reason = OutcomeReason::Unspecified as i32;
        }
        Event::ProgrammeDroppedOut(e) => {
            rule.holder()?;
            rule.status_in(&[
                CaseStatus::Accepted,
                CaseStatus::InContact,
                CaseStatus::Intake,
                CaseStatus::Enrolled,
            ])?;
            view.status = CaseStatus::DroppedOut as i32;
            view.outcome_note = e.reason.clone();
            view.outcome_reason = e.reason_code;
        }
        Event::CaseClosed(e) => {
            rule.holder()?;
            view.status = CaseStatus::Closed as i32;
            view.pending_handoff = None;
            for step in &mut view.referrals {
                if matches!(
                    StepState::try_from(step.state),
                    Ok(StepState::Pending | StepState::Acknowledged)
                ) {
                    step.state = StepState::Declined as i32;
                    step.answered_at = Some(occurred);
                    step.decline_reason = "case closed".into();
                }
            }
            view.outcome_note = e.reason.clone();
            // A closure without a code keeps the code of the drop-out before it.
            if e.reason_code != OutcomeReason::Unspecified as i32 {
                view.outcome_reason = e.reason_code;
            }
        }
        Event::SubjectErasureRequested(_) => {
            // What it erases (the source's own contributions) is carried out on the
            // keys; the case only records that it was asked.
            rule.party()?;
        }
        Event::EvictionCopySent(_)
        | Event::EvictionCopyReceived(_)
        | Event::VictimHelpOffered(_)
        | Event::EvictionComplianceChecked(_)
        | Event::EvictionBreached(_)
        | Event::EvictionObjection(_)
        | Event::EvictionEndedEarly(_)
        | Event::PreliminaryMeasure(_) => {
            crate::eviction_path::fold(&mut view, event, source, kind_name, registry, occurred)?;
        }
        Event::ComplianceReported(_)
        | Event::RiskAlertRaised(_)
        | Event::EndangeredPersonRecorded(_)
        | Event::EndangeredPersonLinked(_)
        | Event::NoticeAcknowledged(_) => {
            crate::safety::fold(&mut view, event, source, kind_name, registry, occurred, at)?;
        }
        Event::ServiceOffered(_)
        | Event::ServiceWithdrawn(_)
        | Event::AgencyRevoked(_)
        | Event::AgencyReinstated(_) => {
            // Returned above already; kept so the match stays exhaustive.
            return Err(Rejection::Invalid(format!(
                "{kind_name} is not about a case"
            )));
        }
    }

    crate::safety::record_fact(&mut view, event, source, at, occurred);
    view.version = actual_version + 1;
    view.last_sequence = at.sequence;
    view.updated_at = Some(handoff_contract::time::from_unix_ms(at.recorded_at_ms));
    Ok(view)
}

/// An agency is asked to take the case: it becomes a party (again, if it had declined before).
fn asked(parties: &mut Vec<Party>, agency: &str) {
    match parties.binary_search_by(|p| p.agency.as_str().cmp(agency)) {
        Ok(i) => parties[i].visible_until_sequence = 0,
        Err(i) => parties.insert(
            i,
            Party {
                agency: agency.to_string(),
                visible_until_sequence: 0,
                only_asked: true,
            },
        ),
    }
}

/// An agency joins the case with a part of its own (a copy of the record sent to it,
/// compliance reports owed to it, an alert addressed to it); an earlier decline no
/// longer ends its view.
pub(crate) fn joined(parties: &mut Vec<Party>, agency: &str) {
    match parties.binary_search_by(|p| p.agency.as_str().cmp(agency)) {
        Ok(i) => {
            parties[i].visible_until_sequence = 0;
            parties[i].only_asked = false;
        }
        Err(i) => parties.insert(
            i,
            Party {
                agency: agency.to_string(),
                visible_until_sequence: 0,
                only_asked: false,
            },
        ),
    }
}

/// An agency took the case on: its part no longer ends with a decline.
fn took_part(parties: &mut [Party], agency: &str) {
    if let Some(p) = parties.iter_mut().find(|p| p.agency == agency) {
        p.only_asked = false;
        p.visible_until_sequence = 0;
    }
}

/// An agency declined: if being asked was its only part, its view ends here.
fn declined(parties: &mut [Party], agency: &str, sequence: u64) {
    if let Some(p) = parties
        .iter_mut()
        .find(|p| p.agency == agency && p.only_asked)
    {
        p.visible_until_sequence = sequence;
    }
}

/// The checks an event must pass against the case, phrased for people.
pub(crate) struct Rule<'a> {
    pub(crate) view: &'a CaseView,
    pub(crate) source: &'a str,
    pub(crate) event_type: &'static str,
}

impl Rule<'_> {
    pub(crate) fn not_allowed(&self, why: String) -> Rejection {
        Rejection::TransitionNotAllowed {
            case_id: self.view.case_id.clone(),
            event_type: self.event_type,
            status: status_name(status_of(self.view)),
            why,
        }
    }

    pub(crate) fn not_a_party(&self, role: &str) -> Rejection {
        Rejection::AgencyNotAParty {
            agency: self.source.to_string(),
            case_id: self.view.case_id.clone(),
            event_type: self.event_type,
            role: role.to_string(),
        }
    }

    fn not_closed(&self) -> Result<(), Rejection> {
        if status_of(self.view) == CaseStatus::Closed {
            return Err(self.not_allowed("the case is closed".into()));
        }
        Ok(())
    }

    pub(crate) fn party(&self) -> Result<(), Rejection> {
        if may_write(self.view, self.source) {
            Ok(())
        } else {
            Err(self.not_a_party("a party to the case"))
        }
    }

    pub(crate) fn holder(&self) -> Result<(), Rejection> {
        if self.view.holder == self.source {
            Ok(())
        } else {
            Err(self.not_a_party(&format!(
                "the holder of the case (held by {})",
                self.view.holder
            )))
        }
    }

    fn status_in(&self, allowed: &[CaseStatus]) -> Result<(), Rejection> {
        if allowed.contains(&status_of(self.view)) {
            return Ok(());
        }
        let names: Vec<String> = allowed.iter().map(|s| status_name(*s)).collect();
        Err(self.not_allowed(format!("it needs the case to be {}", names.join(" or "))))
    }

    /// The case is the violent person's, not a protection case.
    pub(crate) fn ordinary(&self) -> Result<(), Rejection> {
        if self.view.protected_person.is_some() {
            return Err(self.not_allowed(
                "this is a protection case (the endangered person's); record it on the violent person's case".into(),
            ));
        }
        Ok(())
    }

    fn addressable(&self, registry: &Registry, to: &str) -> Result<(), Rejection> {
        let target = registry
            .get(to)
            .ok_or_else(|| Rejection::UnknownAgency(to.to_string()))?;
        // Location secrecy: a protection case never goes to an agency that works with
        // the violent person.
        if self.view.protected_person.is_some() && !crate::safety::acts_for_endangered(target.kind)
        {
            return Err(self.not_allowed(format!(
                "agency {to} is a {} and works with violent persons; a protection case goes only to the police, child protection, an intervention centre or victim support",
                target.kind
            )));
        }
        if !target.kind.may_take_cases() {
            return Err(self.not_allowed(format!(
                "agency {to} is a {} and cannot take up cases",
                target.kind
            )));
        }
        if to == self.view.holder {
            return Err(self.not_allowed(format!("agency {to} already holds the case")));
        }
        Ok(())
    }

    /// The index of referral `id` if it is open in one of `states` and addressed to the source.
    fn open_referral(&self, id: &str, states: &[StepState]) -> Result<usize, Rejection> {
        let Some(index) = self.view.referrals.iter().position(|r| r.referral_id == id) else {
            return Err(self.not_allowed(format!("no referral {id} was made in this case")));
        };
        let step = &self.view.referrals[index];
        if step.to_agency != self.source {
            return Err(self.not_a_party(&format!(
                "the agency referral {id} is addressed to ({})",
                step.to_agency
            )));
        }
        let state = StepState::try_from(step.state).unwrap_or(StepState::Unspecified);
        if !states.contains(&state) {
            return Err(self.not_allowed(format!(
                "referral {id} is already {}",
                state
                    .as_str_name()
                    .trim_start_matches("STEP_STATE_")
                    .to_ascii_lowercase()
            )));
        }
        Ok(index)
    }

    fn open_handoff(&self, id: &str) -> Result<(), Rejection> {
        match &self.view.pending_handoff {
            Some(p) if p.handoff_id == id => {
                if p.to_agency == self.source {
                    Ok(())
                } else {
                    Err(self.not_a_party(&format!(
                        "the agency handoff {id} is addressed to ({})",
                        p.to_agency
                    )))
                }
            }
            _ => Err(self.not_allowed(format!("no handoff {id} is waiting for an answer"))),
        }
    }
}
