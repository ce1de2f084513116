//! Who an id belongs to: the one rule for case ids and subject pseudonyms.
//!
//! Both are written `<agency>/<local part>`. Only that agency may open a case
//! under such an id or introduce such a subject (others may name it once they
//! have a part in one of its cases), so no agency can occupy another's ids, and
//! a refusal depends only on the id as written, never on whether it exists.

use handoff_contract::names::is_valid_agency_id;

/// Separates the owning agency from the local part of an id.
pub const SEPARATOR: char = '/';

/// The agency an id belongs to, if it is written `<agency>/<local part>`.
pub fn owner(id: &str) -> Option<&str> {
    let (agency, local) = id.split_once(SEPARATOR)?;
    (is_valid_agency_id(agency) && !local.is_empty()).then_some(agency)
}

/// Whether `id` belongs to `agency`.
pub fn owned_by(id: &str, agency: &str) -> bool {
    owner(id) == Some(agency)
}

/// The id `local` gets under `agency` (for adapters and tests).
pub fn owned(agency: &str, local: &str) -> String {
    format!("{agency}{SEPARATOR}{local}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_the_agency_before_the_separator() {
        assert_eq!(owner("police-north/case-1"), Some("police-north"));
        assert_eq!(owner("police-north/a/b"), Some("police-north"));
        assert_eq!(owner("case-1"), None);
        assert_eq!(owner("police-north/"), None);
        assert_eq!(owner("Police/x"), None);
        assert_eq!(owner("/x"), None);
        assert!(owned_by(&owned("ic-north", "k"), "ic-north"));
        assert!(!owned_by("ic-north/k", "ic"));
    }
}
