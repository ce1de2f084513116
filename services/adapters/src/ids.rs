//! Deterministic ids, so that re-sending the same record produces the same
//! events (and the exchange answers "duplicate" instead of logging twice).

use handoff_contract::hex::encode as hex;
use sha2::{Digest, Sha256};

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// A UUIDv7 whose time is `unix_ms` and whose random bits are a hash of `key`.
pub fn event_id(unix_ms: i64, key: &[&str]) -> String {
    let h = digest(key);
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&h[..10]);
    uuid::Builder::from_unix_timestamp_millis(unix_ms.max(0) as u64, &rand)
        .into_uuid()
        .to_string()
}

/// The case id an agency's own reference maps to, under the agency's own id
/// (`<agency>/case-…`): only that agency may open a case under it.
pub fn case_id(agency: &str, local_ref: &str) -> String {
    format!(
        "{agency}/case-{}",
        &hex(&digest(&["handoff-case", agency, local_ref]))[..20]
    )
}

/// The pseudonym of a person an agency knows by its own id, under the agency's own
/// id (`<agency>/subj-…`). The person's name never enters the id, so the pseudonym
/// reveals nothing by itself.
pub fn pseudonym(agency: &str, person_ref: &str) -> String {
    format!(
        "{agency}/subj-{}",
        &hex(&digest(&["handoff-subject", agency, person_ref]))[..20]
    )
}

/// A short id, unique within a case, for a referral or handoff.
pub fn step_id(prefix: &str, key: &[&str]) -> String {
    format!("{prefix}-{}", &hex(&digest(key))[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = event_id(1_700_000_000_000, &["police", "I-1", "incident"]);
        assert_eq!(
            a,
            event_id(1_700_000_000_000, &["police", "I-1", "incident"])
        );
        assert_ne!(
            a,
            event_id(1_700_000_000_000, &["police", "I-1", "eviction"])
        );
        let u = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(u.get_version_num(), 7);
        // length-prefixed parts: ("ab","c") and ("a","bc") differ
        assert_ne!(case_id("ab", "c"), case_id("a", "bc"));
        assert!(pseudonym("police", "P-1").starts_with("police/subj-"));
        assert!(case_id("police", "I-1").starts_with("police/case-"));
    }
}
