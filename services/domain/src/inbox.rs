//! What a case has waiting for which agency: the inbox projection.

use handoff_contract::v1::{CaseView, InboxItem, StepState, inbox_item::Kind};

/// The inbox items a case puts in front of agencies right now, each with the agency it waits for.
pub fn items(view: &CaseView) -> Vec<InboxItem> {
    let mut items = Vec::new();
    for step in &view.referrals {
        let state = StepState::try_from(step.state).unwrap_or(StepState::Unspecified);
        if matches!(state, StepState::Pending | StepState::Acknowledged) {
            items.push(InboxItem {
                kind: Kind::Referral as i32,
                case_id: view.case_id.clone(),
                item_id: step.referral_id.clone(),
                from_agency: step.from_agency.clone(),
                to_agency: step.to_agency.clone(),
                since: step.made_at,
                acknowledged: state == StepState::Acknowledged,
                reason: step.reason.clone(),
                subject_pseudonym: view.subject_pseudonym.clone(),
                ..InboxItem::default()
            });
        }
    }
    if let Some(h) = &view.pending_handoff {
        items.push(InboxItem {
            kind: Kind::Handoff as i32,
            case_id: view.case_id.clone(),
            item_id: h.handoff_id.clone(),
            from_agency: h.from_agency.clone(),
            to_agency: h.to_agency.clone(),
            since: h.requested_at,
            acknowledged: false,
            reason: h.reason.clone(),
            subject_pseudonym: view.subject_pseudonym.clone(),
            ..InboxItem::default()
        });
    }
    items
}
