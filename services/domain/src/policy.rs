//! Field-level need to know: which groups of fields each kind of agency may
//! see, written as data (`ops/policy.toml`) and enforced here, in one place,
//! for case views and for events alike.
//!
//! The core of a case (ids, status, holder, parties, referral chain states,
//! versions) is always shown to whoever may see the case at all: without it
//! the case means nothing. Everything else belongs to one group.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{CaseView, ConsentState, Envelope, PersonalDetails};

use crate::agency::AgencyKind;

/// A group of fields that is granted or withheld as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldGroup {
    /// Why referrals and handoffs were made or declined, and the reason codes of
    /// declines, drop-outs (exclusions) and closures.
    Reasons,
    /// Police incidents: narrative, area, linked persons.
    Incidents,
    /// Eviction orders.
    Evictions,
    /// Contact attempts, first contact, intake, programme, outcome.
    Engagement,
    /// Sessions attended and missed.
    Attendance,
    /// Risk level and instrument.
    Risk,
    /// The subject's name and date of birth.
    PersonalDetails,
    /// The subject's phone and address.
    ContactDetails,
    /// Free-text notes of caseworkers (sessions, contacts, intake, risk).
    Notes,
    /// What bears on the endangered person's safety: the links to protection cases,
    /// the safety facts and risk alerts, the several-endangered flag.
    Safety,
    /// Where an endangered person is: a protection case's address, shelter and school,
    /// and an eviction's protected home. Never for an agency working with the violent person.
    Location,
}

impl FieldGroup {
    /// Every group.
    pub const ALL: [FieldGroup; 11] = [
        FieldGroup::Reasons,
        FieldGroup::Incidents,
        FieldGroup::Evictions,
        FieldGroup::Engagement,
        FieldGroup::Attendance,
        FieldGroup::Risk,
        FieldGroup::PersonalDetails,
        FieldGroup::ContactDetails,
        FieldGroup::Notes,
        FieldGroup::Safety,
        FieldGroup::Location,
    ];

    /// The name used in `policy.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldGroup::Reasons => "reasons",
            FieldGroup::Incidents => "incidents",
            FieldGroup::Evictions => "evictions",
            FieldGroup::Engagement => "engagement",
            FieldGroup::Attendance => "attendance",
            FieldGroup::Risk => "risk",
            FieldGroup::PersonalDetails => "personal_details",
            FieldGroup::ContactDetails => "contact_details",
            FieldGroup::Notes => "notes",
            FieldGroup::Safety => "safety",
            FieldGroup::Location => "location",
        }
    }
}

/// A name that is no field group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown field group {0:?}; expected one of reasons, incidents, evictions, engagement, attendance, risk, personal_details, contact_details, notes, safety, location"
)]
pub struct UnknownFieldGroup(pub String);

impl FromStr for FieldGroup {
    type Err = UnknownFieldGroup;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldGroup::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| UnknownFieldGroup(s.to_string()))
    }
}

/// Which side of an episode a case is on: the violent person's case, or an endangered
/// person's own protection case (opened by `endangered_person_recorded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The violent person's case: referrals, the programme, evictions.
    ViolentPerson,
    /// The endangered person's protection case, worked by those who act for them.
    Protection,
}

impl Side {
    /// The side `view` is on.
    pub fn of(view: &CaseView) -> Side {
        if view.protected_person.is_some() {
            Side::Protection
        } else {
            Side::ViolentPerson
        }
    }
}

/// What each kind of agency may see, and what remains shared after consent is withdrawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPolicy {
    by_kind: BTreeMap<AgencyKind, BTreeSet<FieldGroup>>,
    /// On protection cases, when set: kinds not named see only the core there.
    on_protection: Option<BTreeMap<AgencyKind, BTreeSet<FieldGroup>>>,
    without_consent: BTreeSet<FieldGroup>,
}

impl FieldPolicy {
    /// A policy granting `by_kind` (kinds not named see only the core) and keeping
    /// `without_consent` for subjects who withdrew consent.
    pub fn new(
        by_kind: impl IntoIterator<Item = (AgencyKind, Vec<FieldGroup>)>,
        without_consent: impl IntoIterator<Item = FieldGroup>,
    ) -> Self {
        FieldPolicy {
            by_kind: collect(by_kind),
            on_protection: None,
            without_consent: without_consent.into_iter().collect(),
        }
    }

    /// The same policy with its own grants on protection cases (`[protection_fields]`):
    /// the endangered person's support sees their name and phone there, which it is
    /// not granted of the violent person.
    pub fn with_protection(
        mut self,
        by_kind: impl IntoIterator<Item = (AgencyKind, Vec<FieldGroup>)>,
    ) -> Self {
        self.on_protection = Some(collect(by_kind));
        self
    }

    /// What an agency of `kind` may see of a case on `side` whose subject's consent is
    /// `consent` (the subject of a protection case is the endangered person).
    pub fn grant(&self, kind: AgencyKind, consent: ConsentState, side: Side) -> Grant {
        let table = match (side, &self.on_protection) {
            (Side::Protection, Some(table)) => table,
            _ => &self.by_kind,
        };
        let mut groups = table.get(&kind).cloned().unwrap_or_default();
        // Auditors look at the record of what was done; consent does not narrow the audit.
        if consent == ConsentState::Withdrawn && kind != AgencyKind::Auditor {
            groups.retain(|g| self.without_consent.contains(g));
        }
        Grant(groups)
    }
}

fn collect(
    by_kind: impl IntoIterator<Item = (AgencyKind, Vec<FieldGroup>)>,
) -> BTreeMap<AgencyKind, BTreeSet<FieldGroup>> {
    by_kind
        .into_iter()
        .map(|(k, groups)| (k, groups.into_iter().collect()))
        .collect()
}

/// The groups granted to one caller for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant(BTreeSet<FieldGroup>);

impl Grant {
    /// Whether a group is granted.
    pub fn allows(&self, group: FieldGroup) -> bool {
        self.0.contains(&group)
    }

    /// The names of the granted groups (for the access log).
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|g| g.as_str().to_string()).collect()
    }

    fn details(&self, details: &mut Option<PersonalDetails>) {
        if let Some(d) = details {
            if !self.allows(FieldGroup::PersonalDetails) {
                d.full_name.clear();
                d.date_of_birth.clear();
            }
            if !self.allows(FieldGroup::ContactDetails) {
                d.phone.clear();
                d.address.clear();
            }
            if *d == PersonalDetails::default() {
                *details = None;
            }
        }
    }

    /// Removes from a case view every field this grant does not cover.
    pub fn redact_case(&self, view: &mut CaseView) {
        use FieldGroup as G;
        if !self.allows(G::Reasons) {
            for r in &mut view.referrals {
                r.reason.clear();
                r.decline_reason.clear();
                r.decline_reason_code = 0;
            }
            view.outcome_reason = 0;
            if let Some(h) = &mut view.pending_handoff {
                h.reason.clear();
            }
        }
        if !self.allows(G::Incidents) {
            view.incidents.clear();
            for eviction in &mut view.evictions {
                eviction.breaches.iter_mut().for_each(|b| {
                    b.offence_ref.clear();
                    b.narrative.clear();
                });
            }
        }
        if !self.allows(G::Evictions) {
            view.evictions.clear();
        }
        if !self.allows(G::Location) {
            for eviction in &mut view.evictions {
                eviction.protected_area.clear();
            }
            if let Some(person) = &mut view.protected_person {
                person.shelter.clear();
                person.school.clear();
                // On a protection case the subject's address and phone are where the
                // endangered person can be found.
                if let Some(d) = &mut view.subject_details {
                    d.address.clear();
                    d.phone.clear();
                }
            }
        }
        if !self.allows(G::Safety) {
            view.safety_facts.clear();
            view.endangered.clear();
            view.several_endangered = false;
            if let Some(person) = &mut view.protected_person {
                person.role = 0;
                person.age_band.clear();
            }
        }
        if !self.allows(G::Engagement) {
            view.contact_attempts = 0;
            view.first_contact_at = None;
            view.intake_at = None;
            view.programme.clear();
            view.participation = 0;
            view.reports_to.clear();
            view.compliance_reports.clear();
            for r in &mut view.referrals {
                r.participation = 0;
                r.report_to_agency.clear();
            }
        }
        if !self.allows(G::Attendance) {
            view.planned_sessions = 0;
            view.sessions_attended = 0;
            view.sessions_missed = 0;
        }
        if !self.allows(G::Risk) {
            view.risk_level = 0;
            view.risk_instrument.clear();
            view.reported_again = false;
            view.evicted_again = false;
        }
        if !self.allows(G::Notes) {
            view.outcome_note.clear();
            for report in &mut view.compliance_reports {
                report.note.clear();
            }
        }
        if !self.allows(G::Attendance) {
            for report in &mut view.compliance_reports {
                report.sessions_attended = 0;
                report.sessions_missed = 0;
            }
        }
        self.details(&mut view.subject_details);
    }

    /// Removes from an event every field this grant does not cover (the event's type,
    /// ids and times stay: that something happened is part of the case's core).
    pub fn redact_event(&self, envelope: &mut Envelope) {
        use FieldGroup as G;
        let Some(event) = &mut envelope.event else {
            return;
        };
        let notes = self.allows(G::Notes);
        let reasons = self.allows(G::Reasons);
        match event {
            Event::IncidentReported(e) => {
                if !self.allows(G::Incidents) {
                    e.narrative.clear();
                    e.area.clear();
                    e.linked_persons.clear();
                }
                self.details(&mut e.subject_details);
            }
            Event::EvictionOrdered(e) => {
                if !self.allows(G::Evictions) {
                    e.protected_area.clear();
                    e.duration_days = 0;
                    e.ordered_at = None;
                    e.minor_in_home = false;
                }
                if !self.allows(G::Location) {
                    e.protected_area.clear();
                }
            }
            Event::VictimHelpOffered(e) => {
                if !self.allows(G::Engagement) {
                    e.outcome = 0;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::EvictionComplianceChecked(e) => {
                if !self.allows(G::Evictions) {
                    e.kept = false;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::EvictionBreached(e) if !self.allows(G::Incidents) => {
                e.offence_ref.clear();
                e.narrative.clear();
            }
            Event::EvictionObjection(e) if !notes => e.note.clear(),
            Event::EvictionEndedEarly(e) if !notes => e.reason.clear(),
            Event::PreliminaryMeasure(e) => {
                if !self.allows(G::Evictions) {
                    e.effective_at = None;
                    e.until = None;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::ComplianceReported(e) => {
                if !self.allows(G::Attendance) {
                    e.sessions_attended = 0;
                    e.sessions_missed = 0;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::RiskAlertRaised(e) => {
                if !self.allows(G::Safety) {
                    e.concern = 0;
                    e.notify.clear();
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::EndangeredPersonRecorded(e) => {
                if !self.allows(G::Safety) {
                    e.role = 0;
                    e.age_band.clear();
                }
                if !self.allows(G::Location) {
                    e.shelter.clear();
                    e.school.clear();
                    if let Some(d) = &mut e.subject_details {
                        d.address.clear();
                        d.phone.clear();
                    }
                }
                self.details(&mut e.subject_details);
            }
            Event::EndangeredPersonLinked(e) if !self.allows(G::Safety) => {
                e.protection_case_id.clear();
                e.endangered_pseudonym.clear();
                e.role = 0;
                e.support_agency.clear();
            }
            Event::ReferralMade(e) => {
                if !reasons {
                    e.reason.clear();
                }
                if !self.allows(G::Engagement) {
                    e.participation = 0;
                    e.report_to_agency.clear();
                }
                self.details(&mut e.subject_details);
            }
            Event::ReferralDeclined(e) if !reasons => {
                e.reason.clear();
                e.reason_code = 0;
            }
            Event::HandoffRequested(e) if !reasons => e.reason.clear(),
            Event::HandoffDeclined(e) if !reasons => {
                e.reason.clear();
                e.reason_code = 0;
            }
            Event::ContactAttempted(e) => {
                if !self.allows(G::Engagement) {
                    e.channel = 0;
                    e.outcome = 0;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::IntakeCompleted(e) if !notes => e.note.clear(),
            Event::Enrolled(e) => {
                if !self.allows(G::Engagement) {
                    e.programme.clear();
                }
                if !self.allows(G::Attendance) {
                    e.planned_sessions = 0;
                }
            }
            Event::SessionAttended(e) => {
                if !self.allows(G::Attendance) {
                    e.session_number = 0;
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::SessionMissed(e) => {
                if !self.allows(G::Attendance) {
                    e.session_number = 0;
                    e.excused = false;
                }
                if !notes {
                    e.reason.clear();
                }
            }
            Event::RiskAssessed(e) => {
                if !self.allows(G::Risk) {
                    e.level = 0;
                    e.instrument.clear();
                }
                if !notes {
                    e.note.clear();
                }
            }
            Event::ProgrammeCompleted(e) if !notes => e.note.clear(),
            // The free text of a drop-out or closure is a note; its code is a reason.
            Event::ProgrammeDroppedOut(e) => {
                if !notes {
                    e.reason.clear();
                }
                if !reasons {
                    e.reason_code = 0;
                }
            }
            Event::CaseClosed(e) => {
                if !notes {
                    e.reason.clear();
                }
                if !reasons {
                    e.reason_code = 0;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FieldPolicy {
        FieldPolicy::new(
            [
                (
                    AgencyKind::Police,
                    vec![
                        FieldGroup::Incidents,
                        FieldGroup::Engagement,
                        FieldGroup::Attendance,
                    ],
                ),
                (
                    AgencyKind::ProgrammeProvider,
                    vec![
                        FieldGroup::ContactDetails,
                        FieldGroup::PersonalDetails,
                        FieldGroup::Notes,
                        FieldGroup::Attendance,
                    ],
                ),
            ],
            [FieldGroup::Attendance],
        )
    }

    fn view() -> CaseView {
        CaseView {
            case_id: "c".into(),
            sessions_attended: 3,
            outcome_note: "note".into(),
            subject_details: Some(PersonalDetails {
                full_name: "Name".into(),
                date_of_birth: "1980-01-01".into(),
                phone: "123".into(),
                address: "Street".into(),
            }),
            incidents: vec![Default::default()],
            reported_again: true,
            evicted_again: true,
            ..CaseView::default()
        }
    }

    #[test]
    fn repeat_flags_go_only_to_kinds_granted_risk() {
        let mut programme = view();
        policy()
            .grant(
                AgencyKind::ProgrammeProvider,
                ConsentState::Given,
                Side::ViolentPerson,
            )
            .redact_case(&mut programme);
        assert!(!programme.reported_again && !programme.evicted_again);
    }

    #[test]
    fn the_programme_sees_contact_details_but_not_the_incident() {
        let mut v = view();
        policy()
            .grant(
                AgencyKind::ProgrammeProvider,
                ConsentState::Given,
                Side::ViolentPerson,
            )
            .redact_case(&mut v);
        assert!(v.incidents.is_empty());
        assert_eq!(
            v.subject_details.as_ref().map(|d| d.phone.as_str()),
            Some("123")
        );
        assert_eq!(v.sessions_attended, 3);
    }

    #[test]
    fn the_police_see_engagement_but_not_notes_or_personal_details() {
        let mut v = view();
        policy()
            .grant(AgencyKind::Police, ConsentState::Given, Side::ViolentPerson)
            .redact_case(&mut v);
        assert_eq!(v.sessions_attended, 3);
        assert!(v.outcome_note.is_empty());
        assert!(v.subject_details.is_none());
        assert_eq!(v.incidents.len(), 1);
    }

    #[test]
    fn withdrawn_consent_narrows_to_what_is_still_required() {
        let mut v = view();
        policy()
            .grant(
                AgencyKind::ProgrammeProvider,
                ConsentState::Withdrawn,
                Side::ViolentPerson,
            )
            .redact_case(&mut v);
        assert!(v.subject_details.is_none());
        assert!(v.outcome_note.is_empty());
        assert_eq!(v.sessions_attended, 3, "attendance is still shared");
    }

    #[test]
    fn a_protection_case_is_granted_from_its_own_table() {
        use handoff_contract::v1::ProtectedPerson;
        let support = FieldPolicy::new([(AgencyKind::VictimSupport, vec![FieldGroup::Safety])], [])
            .with_protection([(
                AgencyKind::VictimSupport,
                vec![
                    FieldGroup::PersonalDetails,
                    FieldGroup::ContactDetails,
                    FieldGroup::Location,
                ],
            )]);
        let protection = CaseView {
            protected_person: Some(ProtectedPerson::default()),
            ..view()
        };
        assert_eq!(Side::of(&protection), Side::Protection);
        assert_eq!(Side::of(&view()), Side::ViolentPerson);
        let mut theirs = protection.clone();
        support
            .grant(
                AgencyKind::VictimSupport,
                ConsentState::Given,
                Side::of(&theirs),
            )
            .redact_case(&mut theirs);
        let details = theirs
            .subject_details
            .expect("the endangered person's details");
        assert_eq!(details.full_name, "Name");
        assert_eq!(details.phone, "123");
        let mut his = view();
        support
            .grant(
                AgencyKind::VictimSupport,
                ConsentState::Given,
                Side::of(&his),
            )
            .redact_case(&mut his);
        assert_eq!(
            his.subject_details, None,
            "not the violent person's details"
        );
        // Kinds the protection table does not name see only the core there.
        let mut police = protection;
        support
            .grant(AgencyKind::Police, ConsentState::Given, Side::Protection)
            .redact_case(&mut police);
        assert_eq!(police.subject_details, None);
    }

    #[test]
    fn reason_codes_go_only_to_kinds_granted_reasons() {
        use handoff_contract::v1::{
            CaseClosed, HandoffDeclined, OutcomeReason, ProgrammeDroppedOut, ReferralDeclined,
            ReferralStep,
        };
        let code = OutcomeReason::ExcludedViolenceOrThreats as i32;
        let coded = CaseView {
            outcome_reason: code,
            referrals: vec![ReferralStep {
                decline_reason_code: OutcomeReason::NoCapacity as i32,
                ..ReferralStep::default()
            }],
            ..view()
        };
        let granted = FieldPolicy::new([(AgencyKind::Probation, vec![FieldGroup::Reasons])], []);
        let mut v = coded.clone();
        granted
            .grant(
                AgencyKind::Probation,
                ConsentState::Given,
                Side::ViolentPerson,
            )
            .redact_case(&mut v);
        assert_eq!(v.outcome_reason, code);
        assert_eq!(
            v.referrals[0].decline_reason_code,
            OutcomeReason::NoCapacity as i32
        );
        // The programme has notes but not reasons: the text stays, the code goes.
        let mut v = coded;
        let programme = policy().grant(
            AgencyKind::ProgrammeProvider,
            ConsentState::Given,
            Side::ViolentPerson,
        );
        programme.redact_case(&mut v);
        assert_eq!(v.outcome_reason, 0);
        assert_eq!(v.referrals[0].decline_reason_code, 0);
        assert_eq!(v.outcome_note, "note");
        let events = [
            Event::ReferralDeclined(ReferralDeclined {
                reason_code: code,
                ..Default::default()
            }),
            Event::HandoffDeclined(HandoffDeclined {
                reason_code: code,
                ..Default::default()
            }),
            Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "said".into(),
                reason_code: code,
            }),
            Event::CaseClosed(CaseClosed {
                reason: "said".into(),
                reason_code: code,
            }),
        ];
        let code_of = |e: &Envelope| match &e.event {
            Some(Event::ReferralDeclined(e)) => e.reason_code,
            Some(Event::HandoffDeclined(e)) => e.reason_code,
            Some(Event::ProgrammeDroppedOut(e)) => e.reason_code,
            Some(Event::CaseClosed(e)) => e.reason_code,
            _ => -1,
        };
        for event in events {
            let envelope = Envelope {
                event: Some(event),
                ..Envelope::default()
            };
            let mut e = envelope.clone();
            programme.redact_event(&mut e);
            assert_eq!(code_of(&e), 0, "{e:?}");
            if let Some(Event::ProgrammeDroppedOut(d)) = &e.event {
                assert_eq!(d.reason, "said", "the text is a note, granted");
            }
            let mut e = envelope;
            granted
                .grant(
                    AgencyKind::Probation,
                    ConsentState::Given,
                    Side::ViolentPerson,
                )
                .redact_event(&mut e);
            assert_eq!(code_of(&e), code, "{e:?}");
        }
    }

    #[test]
    fn kinds_without_an_entry_see_only_the_core() {
        let mut v = view();
        policy()
            .grant(AgencyKind::Court, ConsentState::Given, Side::ViolentPerson)
            .redact_case(&mut v);
        assert_eq!(v.case_id, "c");
        assert_eq!(v.sessions_attended, 0);
        assert!(v.subject_details.is_none() && v.incidents.is_empty() && v.outcome_note.is_empty());
    }
}
