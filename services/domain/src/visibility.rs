//! Need to know, at the level of whole cases: which agency may see which case,
//! and up to which point of its history.

use handoff_contract::v1::CaseView;

use crate::agency::AgencyKind;

/// How much of a case an agency may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Nothing: the case does not exist for this agency (NOT_FOUND, like a missing case).
    Hidden,
    /// The case as it stands now.
    Whole,
    /// The case as it stood after this log sequence (an agency that was asked and declined).
    UpTo(u64),
}

/// What `agency` (of `kind`) may see of `view`.
///
/// A partner sees a case while it has a part in it: it opened or referred it,
/// it is or was asked to take it, it holds or held it. A partner whose only
/// part was being asked, and which declined, keeps what it saw up to its
/// decline. Auditors see every case (their field-level limits are policy);
/// coordinators see none.
pub fn visibility(view: &CaseView, agency: &str, kind: AgencyKind) -> Visibility {
    if kind == AgencyKind::Auditor {
        return Visibility::Whole;
    }
    // A coordinator reads statistics only, never a case, even one naming it.
    if kind == AgencyKind::Coordinator {
        return Visibility::Hidden;
    }
    match view.parties.iter().find(|p| p.agency == agency) {
        None => Visibility::Hidden,
        Some(p) if p.visible_until_sequence == 0 => Visibility::Whole,
        Some(p) => Visibility::UpTo(p.visible_until_sequence),
    }
}
