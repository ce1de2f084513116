//! `policy.toml`: field groups per agency kind, what consent withdrawal keeps, SLA
//! deadlines, retention and statistics suppression, checked into a [`Policy`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use handoff_domain::AgencyKind;

use super::ConfigError;
use super::located::located;

/// The policy file: field groups per agency kind, and what consent withdrawal keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    fields: std::collections::BTreeMap<String, Vec<String>>,
    /// Grants on protection cases; without it they are granted as `[fields]`.
    #[serde(default)]
    protection_fields: Option<std::collections::BTreeMap<String, Vec<String>>>,
    consent_withdrawn: ConsentWithdrawn,
    #[serde(default)]
    sla: SlaSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    statistics: StatisticsSection,
    #[serde(default)]
    statutory: Vec<StatutoryRow>,
    #[serde(default)]
    safety: SafetySection,
}

/// When the endangered person's support is notified, and on what legal basis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SafetySection {
    missed_sessions_in_a_row: Option<u32>,
    basis: Option<String>,
}

/// One row of the dated statutory rule table: a rule's figure from a date on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatutoryRow {
    rule: String,
    valid_from: String,
    hours: Option<u32>,
    days: Option<u32>,
    months: Option<u32>,
    source: String,
    /// How the figure was checked, kept beside it for whoever reviews the table.
    #[serde(default, rename = "checked")]
    _checked: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatisticsSection {
    suppress_below: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    years_after_closure: Option<u32>,
    check_every_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaSection {
    eviction_notice_hours: Option<u32>,
    first_contact_working_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentWithdrawn {
    keep: Vec<String>,
}

/// The checked need-to-know policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Field groups per agency kind.
    pub fields: handoff_domain::policy::FieldPolicy,
    /// Deadlines shown in inboxes.
    pub sla: handoff_domain::sla::SlaRules,
    /// When subjects are erased after their cases close, and how often that is checked.
    pub retention: Option<(handoff_domain::retention::RetentionRule, Duration)>,
    /// Statistics withhold counts (and medians over fewer cases) below this.
    pub suppress_below: u32,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: PolicyFile = toml::from_str(&text).map_err(|e| located(path, &text, &e))?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let groups = |names: &[String], at: &str| {
            names
                .iter()
                .map(|n| n.parse().map_err(|e| invalid(format!("{at}: {e}"))))
                .collect::<Result<Vec<handoff_domain::policy::FieldGroup>, _>>()
        };
        let table = |rows: &std::collections::BTreeMap<String, Vec<String>>, at: &str| {
            let mut by_kind = Vec::new();
            for (kind, names) in rows {
                let kind: AgencyKind = kind.parse().map_err(|e| invalid(format!("[{at}]: {e}")))?;
                let granted = groups(names, &format!("[{at}] {kind}"))?;
                // Location secrecy is not a setting: an agency working with the violent
                // person never sees where the endangered person is.
                if granted.contains(&handoff_domain::policy::FieldGroup::Location)
                    && !handoff_domain::safety::acts_for_endangered(kind)
                {
                    return Err(invalid(format!(
                        "[{at}] {kind}: `location` (where an endangered person is) is only for the police, social services, intervention centres and victim support, never for an agency working with the violent person"
                    )));
                }
                by_kind.push((kind, granted));
            }
            Ok(by_kind)
        };
        let mut fields = handoff_domain::policy::FieldPolicy::new(
            table(&file.fields, "fields")?,
            groups(&file.consent_withdrawn.keep, "[consent_withdrawn] keep")?,
        );
        if let Some(rows) = &file.protection_fields {
            fields = fields.with_protection(table(rows, "protection_fields")?);
        }
        let suppress_below = file
            .statistics
            .suppress_below
            .unwrap_or(handoff_domain::stats::DEFAULT_SUPPRESS_BELOW);
        if suppress_below == 0 {
            return Err(invalid(
                "[statistics] suppress_below must be at least 1 (5 or more protects small groups)"
                    .into(),
            ));
        }
        let statutory = statutory_rules(&file.statutory).map_err(invalid)?;
        Ok(Policy {
            suppress_below,
            fields,
            sla: handoff_domain::sla::SlaRules {
                eviction_notice_hours: file.sla.eviction_notice_hours,
                first_contact_working_days: file.sla.first_contact_working_days,
                statutory: std::sync::Arc::new(statutory),
                safety: handoff_domain::safety::SafetyRules {
                    missed_in_a_row: match file.safety.missed_sessions_in_a_row {
                        Some(0) => {
                            return Err(invalid(
                                "[safety] missed_sessions_in_a_row must be at least 1".into(),
                            ));
                        }
                        Some(n) => n,
                        None => handoff_domain::safety::SafetyRules::default().missed_in_a_row,
                    },
                    basis: file.safety.basis.unwrap_or_default(),
                },
            },
            retention: match file.retention.years_after_closure {
                None => None,
                Some(0) => {
                    return Err(invalid(
                        "[retention] years_after_closure must be at least 1 (leave it out to keep details until erased on request)".into(),
                    ));
                }
                Some(years) => Some((
                    handoff_domain::retention::RetentionRule {
                        years_after_closure: years,
                    },
                    Duration::from_secs(file.retention.check_every_secs.unwrap_or(3600).max(1)),
                )),
            },
        })
    }
}

/// Checks the `[[statutory]]` rows: a known rule, a real date, its figure under the
/// key of the rule's unit (and no other), the law it comes from.
fn statutory_rules(
    rows: &[StatutoryRow],
) -> Result<handoff_domain::statutory::StatutoryRules, String> {
    use handoff_domain::statutory::{DatedRule, Rule, StatutoryRules, Unit};
    let mut checked = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = format!("[[statutory]] row {} ({})", i + 1, row.rule);
        let rule: Rule = row.rule.parse().map_err(|e| format!("{at}: {e}"))?;
        let valid_from_day =
            handoff_domain::calendar::parse_date(&row.valid_from).ok_or_else(|| {
                format!(
                    "{at}: valid_from {:?} is not a date YYYY-MM-DD",
                    row.valid_from
                )
            })?;
        let given = [
            (Unit::Hours, row.hours),
            (Unit::Days, row.days),
            (Unit::Months, row.months),
        ];
        let unit = rule.unit();
        if let Some((other, _)) = given.iter().find(|(u, v)| *u != unit && v.is_some()) {
            return Err(format!(
                "{at}: {rule} is counted in {}, not {}; write `{} = N`",
                unit.key(),
                other.key(),
                unit.key()
            ));
        }
        let amount = given
            .iter()
            .find(|(u, _)| *u == unit)
            .and_then(|(_, v)| *v)
            .ok_or_else(|| format!("{at}: give the figure as `{} = N`", unit.key()))?;
        checked.push(DatedRule {
            rule,
            valid_from_day,
            amount,
            source: row.source.clone(),
        });
    }
    StatutoryRules::new(checked).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(toml_rows: &str) -> Result<handoff_domain::statutory::StatutoryRules, String> {
        #[derive(Deserialize)]
        struct Table {
            statutory: Vec<StatutoryRow>,
        }
        let table: Table = toml::from_str(toml_rows).map_err(|e| e.to_string())?;
        statutory_rules(&table.statutory)
    }

    #[test]
    fn the_shipped_statutory_table_loads_with_a_source_for_every_row() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/policy.toml");
        let policy = Policy::load(&path).expect("ops/policy.toml");
        let rules = &policy.sla.statutory;
        for rule in handoff_domain::statutory::Rule::ALL {
            let row = rules
                .in_force(rule, 1_790_000_000_000)
                .unwrap_or_else(|| panic!("{rule} has a row in force in 2026"));
            assert!(
                row.source.contains("Sb."),
                "{rule} cites a statute: {}",
                row.source
            );
        }
    }

    /// The shipped policy with one edit, loaded from a file of its own.
    fn shipped_with(name: &str, edit: impl Fn(String) -> String) -> Result<Policy, ConfigError> {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/policy.toml");
        let text = std::fs::read_to_string(shipped).expect("ops/policy.toml");
        let path =
            std::env::temp_dir().join(format!("handoff-policy-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, edit(text)).expect("write the edited policy");
        let loaded = Policy::load(&path);
        let _ = std::fs::remove_file(&path);
        loaded
    }

    #[test]
    fn support_sees_how_to_reach_the_endangered_person_and_nothing_of_him() {
        use handoff_contract::v1::{CaseView, ConsentState, PersonalDetails, ProtectedPerson};
        use handoff_domain::policy::{FieldGroup, Side};
        let policy = shipped_with("shipped", |t| t).expect("ops/policy.toml");
        let support = |side| {
            policy
                .fields
                .grant(AgencyKind::VictimSupport, ConsentState::Given, side)
        };
        assert!(support(Side::Protection).allows(FieldGroup::PersonalDetails));
        assert!(support(Side::Protection).allows(FieldGroup::ContactDetails));
        assert!(!support(Side::ViolentPerson).allows(FieldGroup::PersonalDetails));
        assert!(!support(Side::ViolentPerson).allows(FieldGroup::ContactDetails));
        let mut her = CaseView {
            protected_person: Some(ProtectedPerson::default()),
            subject_details: Some(PersonalDetails {
                full_name: "Jana Nováková".into(),
                phone: "+420 603 111 222".into(),
                ..PersonalDetails::default()
            }),
            ..CaseView::default()
        };
        support(Side::of(&her)).redact_case(&mut her);
        assert_eq!(
            her.subject_details.map(|d| d.phone).as_deref(),
            Some("+420 603 111 222")
        );
    }

    #[test]
    fn location_for_an_agency_working_with_the_violent_person_is_refused() {
        let in_fields = shipped_with("fields", |t| {
            t.replacen(
                "probation = [\"reasons\"",
                "probation = [\"location\", \"reasons\"",
                1,
            )
        });
        let on_protection = shipped_with("protection", |t| {
            t.replacen(
                "[protection_fields]\n",
                "[protection_fields]\nprobation = [\"location\"]\n",
                1,
            )
        });
        for (table, loaded) in [("fields", in_fields), ("protection_fields", on_protection)] {
            let refused = loaded.expect_err("location for probation").to_string();
            assert!(
                refused.contains(&format!("[{table}] probation: `location`")),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_bad_statutory_row_is_refused_with_what_to_write() {
        let unit = rows(
            "[[statutory]]\nrule = \"eviction_duration\"\nvalid_from = \"2025-07-01\"\nhours = 336\nsource = \"x Sb.\"",
        )
        .expect_err("days, not hours");
        assert!(
            unit.contains("counted in days") && unit.contains("`days = N`"),
            "{unit}"
        );
        let rule = rows("[[statutory]]\nrule = \"eviction\"\nvalid_from = \"2025-07-01\"\ndays = 14\nsource = \"x\"")
            .expect_err("unknown rule");
        assert!(rule.contains("unknown statutory rule"), "{rule}");
        let date = rows("[[statutory]]\nrule = \"eviction_duration\"\nvalid_from = \"2025-02-30\"\ndays = 14\nsource = \"x\"")
            .expect_err("no such date");
        assert!(date.contains("not a date"), "{date}");
        let source = rows("[[statutory]]\nrule = \"eviction_duration\"\nvalid_from = \"2025-07-01\"\ndays = 14\nsource = \"\"")
            .expect_err("no source");
        assert!(source.contains("source"), "{source}");
    }
}
