//! The statutory path of a police eviction as the case records it: the copies of the
//! record, the centre's offer of help, the compliance check, breaches, the objection,
//! an early end, and the court's preliminary measure. Each step names its eviction by
//! `incident_ref` (empty: the case's latest) and is folded here, in one place; the
//! clocks they meet are `statutory::clocks`, read from these facts.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{
    CaseView, CopyRecipient, EvictionBreach, EvictionCopy, MeasureState, Participation,
    ReferralMade, eviction_objection, preliminary_measure,
};
use prost_types::Timestamp;

use crate::agency::{AgencyKind, Registry};
use crate::case::{Rule, joined};
use crate::limits::PER_CASE;
use crate::rejection::Rejection;

/// The kind of agency a copy to `recipient` goes to.
pub fn recipient_kind(recipient: CopyRecipient) -> Option<AgencyKind> {
    match recipient {
        CopyRecipient::InterventionCentre => Some(AgencyKind::InterventionCentre),
        CopyRecipient::ChildProtection => Some(AgencyKind::SocialServices),
        CopyRecipient::Court => Some(AgencyKind::Court),
        CopyRecipient::Unspecified => None,
    }
}

/// The court or probation a referral's compliance reports go to, checked against the
/// participation it names (`validate` has checked that one goes with the other).
pub(crate) fn reports_to<'e>(
    rule: &Rule<'_>,
    registry: &Registry,
    e: &'e ReferralMade,
) -> Result<Option<&'e str>, Rejection> {
    if e.report_to_agency.is_empty() {
        return Ok(None);
    }
    let want = match Participation::try_from(e.participation) {
        Ok(Participation::CourtOrdered) => AgencyKind::Court,
        _ => AgencyKind::Probation,
    };
    let agency = registry
        .get(&e.report_to_agency)
        .ok_or_else(|| Rejection::UnknownAgency(e.report_to_agency.clone()))?;
    if agency.kind != want {
        return Err(rule.not_allowed(format!(
            "report_to_agency {} is a {}; this participation reports to a {want}",
            agency.id, agency.kind
        )));
    }
    Ok(Some(&e.report_to_agency))
}

/// Folds one step of an eviction's statutory path into the case.
pub(crate) fn fold(
    view: &mut CaseView,
    event: &Event,
    source: &str,
    event_type: &'static str,
    registry: &Registry,
    occurred: Timestamp,
) -> Result<(), Rejection> {
    let rule = Rule {
        view,
        source,
        event_type,
    };
    rule.party()?;
    let incident_ref = match event {
        Event::EvictionCopySent(e) => &e.incident_ref,
        Event::EvictionCopyReceived(e) => &e.incident_ref,
        Event::VictimHelpOffered(e) => &e.incident_ref,
        Event::EvictionComplianceChecked(e) => &e.incident_ref,
        Event::EvictionBreached(e) => &e.incident_ref,
        Event::EvictionObjection(e) => &e.incident_ref,
        Event::EvictionEndedEarly(e) => &e.incident_ref,
        Event::PreliminaryMeasure(e) => &e.incident_ref,
        _ => {
            return Err(Rejection::Invalid(format!(
                "{event_type} is no eviction step"
            )));
        }
    };
    let index = eviction_index(&rule, incident_ref)?;
    let eviction = &rule.view.evictions[index];
    let police_duty = || {
        // Evictions recorded before the statutory path kept no `ordered_by`.
        if eviction.ordered_by.is_empty() || eviction.ordered_by == source {
            Ok(())
        } else {
            Err(rule.not_a_party(&format!(
                "the police agency that ordered the eviction ({})",
                eviction.ordered_by
            )))
        }
    };
    let once = |done: bool, what: &str| {
        if done {
            Err(rule.not_allowed(format!("{what} is already recorded for this eviction")))
        } else {
            Ok(())
        }
    };
    // Checks first, against the case as it is; the change after.
    let mut new_party = None;
    match event {
        Event::EvictionCopySent(e) => {
            police_duty()?;
            let recipient = CopyRecipient::try_from(e.recipient).unwrap_or_default();
            let to = registry
                .get(&e.to_agency)
                .ok_or_else(|| Rejection::UnknownAgency(e.to_agency.clone()))?;
            let want = recipient_kind(recipient);
            if want != Some(to.kind) {
                return Err(rule.not_allowed(format!(
                    "agency {} is a {}; a copy to the {} goes to a {}",
                    to.id,
                    to.kind,
                    recipient_name(recipient),
                    want.map_or("-", AgencyKind::as_str)
                )));
            }
            if eviction.copies.iter().any(|c| c.to_agency == e.to_agency) {
                return Err(rule.not_allowed(format!(
                    "the copy to {} is already recorded for this eviction",
                    e.to_agency
                )));
            }
            capped(&rule, eviction.copies.len(), "copies")?;
            new_party = Some(e.to_agency.as_str());
        }
        Event::EvictionCopyReceived(_) => {
            match eviction.copies.iter().find(|c| c.to_agency == source) {
                None => {
                    return Err(
                        rule.not_a_party("an agency the police sent a copy of the record to")
                    );
                }
                Some(c) => once(c.received_at.is_some(), "the receipt of this copy")?,
            }
        }
        Event::VictimHelpOffered(_) => {}
        Event::EvictionComplianceChecked(_) => {
            police_duty()?;
            once(
                eviction.compliance_checked_at.is_some(),
                "a compliance check",
            )?;
        }
        Event::EvictionBreached(_) => {
            police_duty()?;
            capped(&rule, eviction.breaches.len(), "breaches")?;
        }
        Event::EvictionObjection(e) => {
            police_duty()?;
            match eviction_objection::Stage::try_from(e.stage) {
                Ok(eviction_objection::Stage::Filed) => {
                    once(eviction.objection_filed_at.is_some(), "an objection")?;
                }
                _ => {
                    if eviction.objection_filed_at.is_none() {
                        return Err(rule.not_allowed("no objection was filed against it".into()));
                    }
                    once(
                        eviction.objection_decided_at.is_some(),
                        "the objection's decision",
                    )?;
                }
            }
        }
        Event::EvictionEndedEarly(_) => {
            police_duty()?;
            once(eviction.ended_early_at.is_some(), "an early end")?;
        }
        Event::PreliminaryMeasure(e) => {
            use preliminary_measure::Stage;
            let stage = Stage::try_from(e.stage).unwrap_or(Stage::Unspecified);
            let measure = eviction.measure.as_ref();
            if let Some(m) = measure
                && m.court != source
            {
                return Err(rule.not_a_party(&format!(
                    "the court that recorded the petition ({})",
                    m.court
                )));
            }
            let granted = measure.is_some_and(|m| m.granted && m.ended_at.is_none());
            let why = match stage {
                Stage::Petitioned if measure.is_some() => {
                    Some("a petition is already recorded for this eviction")
                }
                Stage::Granted | Stage::Refused
                    if measure.is_none_or(|m| m.decided_at.is_some() && !m.extension_pending) =>
                {
                    Some("no petition is waiting for a decision")
                }
                Stage::ExtensionPetitioned | Stage::Extended | Stage::Ended if !granted => {
                    Some("no granted measure is in force")
                }
                Stage::ExtensionPetitioned if measure.is_some_and(|m| m.extension_pending) => {
                    Some("an extension is already waiting for a decision")
                }
                _ => None,
            };
            if let Some(why) = why {
                return Err(rule.not_allowed(why.into()));
            }
            if measure.is_some_and(|m| m.extended_until.len() >= PER_CASE) {
                return Err(rule.not_allowed("too many extensions for one measure".into()));
            }
        }
        _ => {}
    }

    let eviction = &mut view.evictions[index];
    match event {
        Event::EvictionCopySent(e) => eviction.copies.push(EvictionCopy {
            recipient: e.recipient,
            to_agency: e.to_agency.clone(),
            sent_at: Some(occurred),
            received_at: None,
        }),
        Event::EvictionCopyReceived(_) => {
            if let Some(c) = eviction.copies.iter_mut().find(|c| c.to_agency == source) {
                c.received_at = Some(occurred);
            }
        }
        // The first offer meets the centre's duty; later ones are casework.
        Event::VictimHelpOffered(_) if eviction.help_offered_at.is_none() => {
            eviction.help_offered_at = Some(occurred);
            eviction.help_offered_by = source.to_string();
        }
        Event::EvictionComplianceChecked(e) => {
            eviction.compliance_checked_at = Some(occurred);
            eviction.compliance_kept = e.kept;
        }
        Event::EvictionBreached(e) => eviction.breaches.push(EvictionBreach {
            at: Some(occurred),
            offence_ref: e.offence_ref.clone(),
            narrative: e.narrative.clone(),
        }),
        Event::EvictionObjection(e) => match eviction_objection::Stage::try_from(e.stage) {
            Ok(eviction_objection::Stage::Filed) => eviction.objection_filed_at = Some(occurred),
            stage => {
                let upheld = stage == Ok(eviction_objection::Stage::Upheld);
                eviction.objection_decided_at = Some(occurred);
                eviction.objection_upheld = upheld;
                if upheld {
                    eviction.ended_early_at.get_or_insert(occurred);
                }
            }
        },
        Event::EvictionEndedEarly(_) => eviction.ended_early_at = Some(occurred),
        Event::PreliminaryMeasure(e) => {
            use preliminary_measure::Stage;
            let effective = e.effective_at.unwrap_or(occurred);
            let m = eviction.measure.get_or_insert_with(|| MeasureState {
                court: source.to_string(),
                ..MeasureState::default()
            });
            match Stage::try_from(e.stage).unwrap_or(Stage::Unspecified) {
                Stage::Petitioned => m.petitioned_at = Some(occurred),
                Stage::Granted | Stage::Refused if m.extension_pending => {
                    // The decision on an extension: granted extensions come as EXTENDED.
                    m.extension_pending = false;
                }
                Stage::Granted | Stage::Refused => {
                    m.decided_at = Some(occurred);
                    m.granted = e.stage == Stage::Granted as i32;
                    m.effective_at = Some(effective);
                }
                Stage::ExtensionPetitioned => m.extension_pending = true,
                Stage::Extended => {
                    m.extension_pending = false;
                    m.extended_until.extend(e.until);
                }
                Stage::Ended => m.ended_at = Some(occurred),
                Stage::Unspecified => {}
            }
        }
        _ => {}
    }
    if let Some(agency) = new_party {
        joined(&mut view.parties, agency);
    }
    Ok(())
}

fn recipient_name(recipient: CopyRecipient) -> &'static str {
    match recipient {
        CopyRecipient::InterventionCentre => "intervention centre",
        CopyRecipient::ChildProtection => "child protection",
        CopyRecipient::Court => "court",
        CopyRecipient::Unspecified => "unspecified recipient",
    }
}

fn capped(rule: &Rule<'_>, len: usize, what: &str) -> Result<(), Rejection> {
    if len >= PER_CASE {
        return Err(rule.not_allowed(format!(
            "this eviction has {len} {what}; at most {PER_CASE} are kept"
        )));
    }
    Ok(())
}

/// The eviction a step names: by `incident_ref`, or the latest when it is empty.
fn eviction_index(rule: &Rule<'_>, incident_ref: &str) -> Result<usize, Rejection> {
    let evictions = &rule.view.evictions;
    let found = if incident_ref.is_empty() {
        evictions.len().checked_sub(1)
    } else {
        evictions
            .iter()
            .rposition(|e| e.incident_ref == incident_ref)
    };
    found.ok_or_else(|| {
        rule.not_allowed(if incident_ref.is_empty() {
            "no eviction is recorded in this case".into()
        } else {
            format!("no eviction with incident_ref {incident_ref} is recorded in this case")
        })
    })
}
