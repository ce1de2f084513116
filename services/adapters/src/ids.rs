//! Deterministic ids, so that re-sending the same record produces the same
//! events (and the exchange answers "duplicate" instead of logging twice).
//!
//! Every id is an HMAC-SHA-256 under the agency's own secret over a domain label
//! and the agency's own identifiers: stable for the agency, but without the
//! secret nobody (the exchange included) can recompute one from a person id or
//! a reference, or tell which person or record an id stands for.

use handoff_contract::hex::encode as hex;

use crate::secret::AgencySecret;

/// A UUIDv7 whose time is `unix_ms` and whose random bits are a MAC of `key`.
pub fn event_id(secret: &AgencySecret, unix_ms: i64, key: &[&str]) -> String {
    let mut parts = vec!["handoff-event"];
    parts.extend_from_slice(key);
    let h = secret.mac(&parts);
    let mut rand = [0u8; 10];
    rand.copy_from_slice(&h[..10]);
    uuid::Builder::from_unix_timestamp_millis(unix_ms.max(0) as u64, &rand)
        .into_uuid()
        .to_string()
}

/// The case id an agency's own reference maps to, under the agency's own id
/// (`<agency>/case-…`): only that agency may open a case under it.
pub fn case_id(secret: &AgencySecret, agency: &str, local_ref: &str) -> String {
    format!(
        "{agency}/case-{}",
        &hex(&secret.mac(&["handoff-case", agency, local_ref]))[..20]
    )
}

/// The pseudonym of a person an agency knows by its own id, under the agency's own
/// id (`<agency>/subj-…`). Neither the name nor (without the secret) the person id
/// can be recovered from it.
pub fn pseudonym(secret: &AgencySecret, agency: &str, person_ref: &str) -> String {
    format!(
        "{agency}/subj-{}",
        &hex(&secret.mac(&["handoff-subject", agency, person_ref]))[..20]
    )
}

/// A short id, unique within a case, for a referral or handoff.
pub fn step_id(secret: &AgencySecret, prefix: &str, key: &[&str]) -> String {
    let mut parts = vec!["handoff-step", prefix];
    parts.extend_from_slice(key);
    format!("{prefix}-{}", &hex(&secret.mac(&parts))[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn secret(b: u8) -> AgencySecret {
        AgencySecret::from_bytes([b; 32])
    }

    /// The unkeyed formula used before agencies had secrets: SHA-256 over the
    /// length-prefixed parts.
    fn unkeyed(parts: &[&str]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        h.finalize().into()
    }

    #[test]
    fn ids_are_stable_with_the_same_secret_and_distinct() {
        let s = secret(1);
        let a = event_id(&s, 1_700_000_000_000, &["police", "I-1", "incident"]);
        assert_eq!(
            a,
            event_id(&s, 1_700_000_000_000, &["police", "I-1", "incident"])
        );
        assert_ne!(
            a,
            event_id(&s, 1_700_000_000_000, &["police", "I-1", "eviction"])
        );
        let u = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(
            u.get_timestamp().map(|t| t.to_unix()),
            Some((1_700_000_000, 0)),
            "the record's time stays in the id"
        );
        assert_eq!(case_id(&s, "police", "I-1"), case_id(&s, "police", "I-1"));
        assert_eq!(
            pseudonym(&s, "police", "P-1"),
            pseudonym(&s, "police", "P-1")
        );
        assert_eq!(
            step_id(&s, "ref", &["police", "I-1"]),
            step_id(&s, "ref", &["police", "I-1"])
        );
        assert!(pseudonym(&s, "police", "P-1").starts_with("police/subj-"));
        assert!(case_id(&s, "police", "I-1").starts_with("police/case-"));
        assert!(step_id(&s, "ref", &["police", "I-1"]).starts_with("ref-"));
    }

    #[test]
    fn another_secret_gives_other_ids() {
        let (a, b) = (secret(1), secret(2));
        assert_ne!(case_id(&a, "police", "I-1"), case_id(&b, "police", "I-1"));
        assert_ne!(
            pseudonym(&a, "police", "P-1"),
            pseudonym(&b, "police", "P-1")
        );
        assert_ne!(
            event_id(&a, 1_700_000_000_000, &["police", "I-1", "incident"]),
            event_id(&b, 1_700_000_000_000, &["police", "I-1", "incident"])
        );
        assert_ne!(
            step_id(&a, "ref", &["police", "I-1"]),
            step_id(&b, "ref", &["police", "I-1"])
        );
    }

    #[test]
    fn ids_are_not_the_unkeyed_formula() {
        let s = secret(1);
        let old_subject = format!(
            "police/subj-{}",
            &hex(&unkeyed(&["handoff-subject", "police", "P-1"]))[..20]
        );
        assert_ne!(pseudonym(&s, "police", "P-1"), old_subject);
        let old_case = format!(
            "police/case-{}",
            &hex(&unkeyed(&["handoff-case", "police", "I-1"]))[..20]
        );
        assert_ne!(case_id(&s, "police", "I-1"), old_case);
        let old_step = format!("ref-{}", &hex(&unkeyed(&["police", "I-1"]))[..12]);
        assert_ne!(step_id(&s, "ref", &["police", "I-1"]), old_step);
        let mut rand = [0u8; 10];
        rand.copy_from_slice(&unkeyed(&["police", "I-1", "incident"])[..10]);
        let old_event = uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000, &rand)
            .into_uuid()
            .to_string();
        assert_ne!(
            event_id(&s, 1_700_000_000_000, &["police", "I-1", "incident"]),
            old_event
        );
    }

    #[test]
    fn length_prefixes_keep_parts_apart() {
        let s = secret(1);
        // ("ab","c") and ("a","bc") feed the MAC different bytes
        assert_ne!(case_id(&s, "ab", "c")[3..], case_id(&s, "a", "bc")[2..]);
        assert_ne!(pseudonym(&s, "ab", "c")[3..], pseudonym(&s, "a", "bc")[2..]);
        assert_ne!(event_id(&s, 0, &["ab", "c"]), event_id(&s, 0, &["a", "bc"]));
        assert_ne!(
            step_id(&s, "ref", &["ab", "c"]),
            step_id(&s, "ref", &["a", "bc"])
        );
        // and the domain labels keep kinds of ids apart
        assert_ne!(
            case_id(&s, "police", "X")["police/case-".len()..],
            pseudonym(&s, "police", "X")["police/subj-".len()..]
        );
    }
}
