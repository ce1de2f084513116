//! Agencies, their kinds, and what each kind may publish.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use handoff_contract::names::{EXCHANGE_SOURCE, is_valid_agency_id};

/// What kind of organisation an agency is; decides what it may publish and see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgencyKind {
    /// Police: incidents, evictions, referrals.
    Police,
    /// Social services / child protection.
    SocialServices,
    /// Intervention centre: receives eviction notices, contacts, refers on.
    InterventionCentre,
    /// The NGO running the perpetrator programme.
    ProgrammeProvider,
    /// Probation service.
    Probation,
    /// Court: court-ordered referrals.
    Court,
    /// Victim support: intervention-centre staff or a women's support service acting
    /// for the endangered person (not for the violent person).
    VictimSupport,
    /// Auditors and data-protection officers: read, never publish.
    Auditor,
    /// The coordinator of the local partnership: reads suppressed statistics only;
    /// publishes nothing and sees no case (every case read is NOT_FOUND).
    Coordinator,
}

impl AgencyKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AgencyKind; 9] = [
        AgencyKind::Police,
        AgencyKind::SocialServices,
        AgencyKind::InterventionCentre,
        AgencyKind::ProgrammeProvider,
        AgencyKind::Probation,
        AgencyKind::Court,
        AgencyKind::VictimSupport,
        AgencyKind::Auditor,
        AgencyKind::Coordinator,
    ];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            AgencyKind::Police => "police",
            AgencyKind::SocialServices => "social_services",
            AgencyKind::InterventionCentre => "intervention_centre",
            AgencyKind::ProgrammeProvider => "programme_provider",
            AgencyKind::Probation => "probation",
            AgencyKind::Court => "court",
            AgencyKind::VictimSupport => "victim_support",
            AgencyKind::Auditor => "auditor",
            AgencyKind::Coordinator => "coordinator",
        }
    }

    /// Whether agencies of this kind may publish events of `event_type` (see `names::EVENT_TYPES`).
    pub fn may_publish(self, event_type: &str) -> bool {
        const ANSWER_REFERRALS: &[&str] = &[
            "referral_acknowledged",
            "referral_accepted",
            "referral_declined",
        ];
        const HANDOFFS: &[&str] = &["handoff_requested", "handoff_accepted", "handoff_declined"];
        const CASEWORK: &[&str] = &[
            "referral_made",
            "contact_attempted",
            "risk_assessed",
            "consent_given",
            "consent_withdrawn",
            "case_closed",
            "subject_erasure_requested",
        ];
        const PROGRAMME: &[&str] = &[
            "intake_completed",
            "enrolled",
            "session_attended",
            "session_missed",
            "programme_completed",
            "programme_dropped_out",
        ];
        // Every kind that works cases acknowledges the notices addressed to it.
        const NOTICES: &[&str] = &["notice_acknowledged", "risk_alert_raised"];
        // The police's side of an eviction's statutory path.
        const EVICTION: &[&str] = &[
            "eviction_copy_sent",
            "eviction_compliance_checked",
            "eviction_breached",
            "eviction_objection",
            "eviction_ended_early",
        ];
        // Who acts for the endangered person: records them, links their case, offers help.
        const PROTECTION: &[&str] = &[
            "endangered_person_recorded",
            "endangered_person_linked",
            "victim_help_offered",
        ];
        let in_any = |lists: &[&[&str]]| lists.iter().any(|l| l.contains(&event_type));
        // Every kind that offers help may list its services in the directory.
        const DIRECTORY: &[&str] = &["service_offered", "service_withdrawn"];
        if DIRECTORY.contains(&event_type) {
            return !matches!(self, AgencyKind::Auditor | AgencyKind::Coordinator);
        }
        match self {
            AgencyKind::Police => in_any(&[
                &["incident_reported", "eviction_ordered", "referral_made"],
                &["risk_assessed", "case_closed", "subject_erasure_requested"],
                &["endangered_person_recorded", "endangered_person_linked"],
                HANDOFFS,
                EVICTION,
                NOTICES,
            ]),
            AgencyKind::InterventionCentre | AgencyKind::VictimSupport => in_any(&[
                ANSWER_REFERRALS,
                HANDOFFS,
                CASEWORK,
                PROTECTION,
                NOTICES,
                &["eviction_copy_received"],
            ]),
            AgencyKind::SocialServices => in_any(&[
                ANSWER_REFERRALS,
                HANDOFFS,
                CASEWORK,
                NOTICES,
                &["eviction_copy_received", "endangered_person_recorded"],
                &["endangered_person_linked"],
            ]),
            AgencyKind::Probation => in_any(&[ANSWER_REFERRALS, HANDOFFS, CASEWORK, NOTICES]),
            AgencyKind::ProgrammeProvider => in_any(&[
                ANSWER_REFERRALS,
                HANDOFFS,
                CASEWORK,
                PROGRAMME,
                NOTICES,
                &["compliance_reported"],
            ]),
            AgencyKind::Court => in_any(&[
                &[
                    "referral_made",
                    "preliminary_measure",
                    "eviction_copy_received",
                ],
                &["notice_acknowledged"],
            ]),
            AgencyKind::Auditor | AgencyKind::Coordinator => false,
        }
    }

    /// Whether a referral or handoff may be addressed to this kind of agency.
    pub fn may_take_cases(self) -> bool {
        self.may_publish("referral_accepted")
    }
}

impl fmt::Display for AgencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no agency kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown agency kind {0:?}; expected one of police, social_services, intervention_centre, programme_provider, probation, court, victim_support, auditor, coordinator"
)]
pub struct UnknownKind(pub String);

impl FromStr for AgencyKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgencyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// A registered organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// Stable id, used in NATS subjects and certificates.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What kind of organisation it is.
    pub kind: AgencyKind,
}

/// A registry entry that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The id cannot be used in a NATS subject.
    #[error("agency id {0:?} is invalid: use 1-64 lowercase letters, digits, '-' or '_'")]
    InvalidId(String),
    /// Two entries share an id.
    /// The id is the exchange's own.
    #[error("agency id {0:?} is reserved for the exchange itself; choose another")]
    Reserved(String),
    #[error("agency id {0:?} is registered twice")]
    DuplicateId(String),
}

/// The agencies the exchange knows, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    agencies: BTreeMap<String, Agency>,
}

impl Registry {
    /// Builds a registry, refusing invalid or duplicate ids.
    pub fn new(agencies: impl IntoIterator<Item = Agency>) -> Result<Self, RegistryError> {
        let mut map = BTreeMap::new();
        for agency in agencies {
            if !is_valid_agency_id(&agency.id) {
                return Err(RegistryError::InvalidId(agency.id));
            }
            if agency.id == EXCHANGE_SOURCE {
                return Err(RegistryError::Reserved(agency.id));
            }
            if map.contains_key(&agency.id) {
                return Err(RegistryError::DuplicateId(agency.id));
            }
            map.insert(agency.id.clone(), agency);
        }
        Ok(Registry { agencies: map })
    }

    /// The agency with this id, if registered.
    pub fn get(&self, id: &str) -> Option<&Agency> {
        self.agencies.get(id)
    }

    /// All agencies, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names() {
        for kind in AgencyKind::ALL {
            assert_eq!(kind.as_str().parse::<AgencyKind>(), Ok(kind));
        }
        assert!("ngo".parse::<AgencyKind>().is_err());
    }

    #[test]
    fn only_the_programme_provider_records_sessions() {
        assert!(AgencyKind::ProgrammeProvider.may_publish("session_attended"));
        assert!(!AgencyKind::Police.may_publish("session_attended"));
        assert!(!AgencyKind::Auditor.may_publish("referral_made"));
        assert!(!AgencyKind::Coordinator.may_publish("referral_made"));
        assert!(!AgencyKind::Coordinator.may_take_cases());
        assert!(AgencyKind::Police.may_publish("eviction_ordered"));
        assert!(!AgencyKind::InterventionCentre.may_publish("eviction_ordered"));
        // Victim support works cases (for the endangered person), never the programme's.
        assert!(AgencyKind::VictimSupport.may_take_cases());
        assert!(AgencyKind::VictimSupport.may_publish("contact_attempted"));
        assert!(!AgencyKind::VictimSupport.may_publish("session_attended"));
        assert!(!AgencyKind::VictimSupport.may_publish("eviction_ordered"));
    }

    #[test]
    fn registry_refuses_duplicates_and_bad_ids() {
        let a = |id: &str| Agency {
            id: id.into(),
            name: id.into(),
            kind: AgencyKind::Police,
        };
        assert!(Registry::new([a("police-north"), a("police-north")]).is_err());
        assert!(Registry::new([a("police.north")]).is_err());
        assert!(Registry::new([a("police-north"), a("police-south")]).is_ok());
    }
}
