//! Deadlines that rules attach to what waits in an inbox (SLA), e.g. a police
//! eviction notice acknowledged by the intervention centre within 24 hours,
//! first contact with a referred person within N working days.
//! Pure: the current time is an argument.

use handoff_contract::time::{from_unix_ms, to_unix_ms};
use handoff_contract::v1::{CaseStatus, CaseView, InboxItem, StepState, inbox_item::Kind};

use crate::agency::{AgencyKind, Registry};

/// The deadline rules (from `ops/policy.toml`: `[sla]`, the partnership's own, and
/// `[[statutory]]`, the law's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaRules {
    /// Hours within which an eviction referral must be acknowledged by an intervention centre.
    pub eviction_notice_hours: Option<u32>,
    /// Working days (Monday to Friday) from acceptance to first contact with the subject.
    pub first_contact_working_days: Option<u32>,
    /// The dated statutory rules.
    pub statutory: std::sync::Arc<crate::statutory::StatutoryRules>,
    /// When a safety notice goes out, and the legal basis it is recorded with.
    pub safety: crate::safety::SafetyRules,
}

/// Every item a case has waiting at `now_ms` that is worked out at read time rather
/// than stored (it depends on the clock or on policy): a due first contact, statutory
/// duties, safety notices, risk alerts, compliance reports. The one list the inbox and
/// the overdue gauge both read.
pub fn due_items(view: &CaseView, rules: &SlaRules, now_ms: i64) -> Vec<InboxItem> {
    let mut items: Vec<InboxItem> = first_contact_item(view).into_iter().collect();
    items.extend(crate::statutory::duties(view, &rules.statutory, now_ms));
    items.extend(crate::safety::notices(view, &rules.safety));
    items
}

pub use crate::calendar::add_working_days;

fn set_due(item: &mut InboxItem, rule: &str, due_ms: i64, now_ms: i64) {
    item.due_at = Some(from_unix_ms(due_ms));
    item.overdue = now_ms > due_ms;
    item.rule = rule.to_string();
}

/// Adds the deadline that applies to an inbox item of `view`, if any.
pub fn apply(
    item: &mut InboxItem,
    view: &CaseView,
    registry: &Registry,
    rules: &SlaRules,
    now_ms: i64,
) {
    let addressee_kind = registry.get(&item.to_agency).map(|a| a.kind);
    match Kind::try_from(item.kind) {
        Ok(Kind::Referral) => {
            if let (Some(hours), Some(since)) = (rules.eviction_notice_hours, item.since)
                && !view.evictions.is_empty()
                && addressee_kind == Some(AgencyKind::InterventionCentre)
                && !item.acknowledged
            {
                let due = to_unix_ms(&since) + i64::from(hours) * 3_600_000;
                set_due(item, "eviction_notice", due, now_ms);
            }
        }
        Ok(Kind::FirstContact) => {
            if let (Some(days), Some(since)) = (rules.first_contact_working_days, item.since) {
                set_due(
                    item,
                    "first_contact",
                    add_working_days(to_unix_ms(&since), days),
                    now_ms,
                );
            }
        }
        _ => {}
    }
}

/// The first-contact item a case puts in its holder's inbox: accepted, subject not reached yet.
pub fn first_contact_item(view: &CaseView) -> Option<InboxItem> {
    if view.status() != CaseStatus::Accepted || view.first_contact_at.is_some() {
        return None;
    }
    let accepted = view
        .referrals
        .iter()
        .rev()
        .find(|r| r.state() == StepState::Accepted && r.to_agency == view.holder)?;
    Some(InboxItem {
        kind: Kind::FirstContact as i32,
        case_id: view.case_id.clone(),
        item_id: accepted.referral_id.clone(),
        from_agency: accepted.from_agency.clone(),
        to_agency: view.holder.clone(),
        since: accepted.answered_at,
        acknowledged: true,
        reason: accepted.reason.clone(),
        subject_pseudonym: view.subject_pseudonym.clone(),
        ..InboxItem::default()
    })
}
