//! The reason codes of declines, drop-outs (exclusions among them) and closures
//! (`handoff.v1.OutcomeReason`): their names in documents and reports, and the
//! check that a published code is one this contract knows.

use handoff_contract::v1::OutcomeReason;

/// Every code, in the order reports list them (`unspecified` last: no code given).
pub const ALL: [OutcomeReason; 10] = [
    OutcomeReason::NoCapacity,
    OutcomeReason::NotEligible,
    OutcomeReason::Unreachable,
    OutcomeReason::Refused,
    OutcomeReason::ExcludedViolenceOrThreats,
    OutcomeReason::MovedOutOfRegion,
    OutcomeReason::NoShow,
    OutcomeReason::CompletedElsewhere,
    OutcomeReason::Other,
    OutcomeReason::Unspecified,
];

/// The code's name in documents and reports: `no_capacity`, `excluded_violence_or_threats`.
pub fn name(reason: OutcomeReason) -> &'static str {
    match reason {
        OutcomeReason::Unspecified => "unspecified",
        OutcomeReason::NoCapacity => "no_capacity",
        OutcomeReason::NotEligible => "not_eligible",
        OutcomeReason::Unreachable => "unreachable",
        OutcomeReason::Refused => "refused",
        OutcomeReason::ExcludedViolenceOrThreats => "excluded_violence_or_threats",
        OutcomeReason::MovedOutOfRegion => "moved_out_of_region",
        OutcomeReason::NoShow => "no_show",
        OutcomeReason::CompletedElsewhere => "completed_elsewhere",
        OutcomeReason::Other => "other",
    }
}

/// The code named `text` (as [`name`] writes it), if there is one.
pub fn parse(text: &str) -> Option<OutcomeReason> {
    ALL.into_iter().find(|r| name(*r) == text)
}

/// The names of the codes a publisher may give, for messages to people.
pub fn names() -> String {
    ALL.iter()
        .filter(|r| **r != OutcomeReason::Unspecified)
        .map(|r| name(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a published `reason_code` is refused: a value this contract does not know.
pub fn check(field: &str, value: i32) -> Result<(), String> {
    match OutcomeReason::try_from(value) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "{field} {value} is not a reason code this exchange knows; use one of {} (or leave it unset)",
            names()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_values_are_refused_in_words() {
        for r in ALL {
            assert_eq!(parse(name(r)), Some(r));
            assert_eq!(
                name(r),
                r.as_str_name()
                    .trim_start_matches("OUTCOME_REASON_")
                    .to_ascii_lowercase()
            );
        }
        assert_eq!(parse("vyloučení"), None);
        assert!(check("reason_code", 5).is_ok());
        let why = check("reason_code", 42).expect_err("unknown");
        assert!(why.contains("42") && why.contains("no_capacity"), "{why}");
        assert!(check("reason_code", -1).is_err());
    }
}
