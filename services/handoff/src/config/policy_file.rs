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
    consent_withdrawn: ConsentWithdrawn,
    #[serde(default)]
    sla: SlaSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    statistics: StatisticsSection,
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
        let mut by_kind = Vec::new();
        for (kind, names) in &file.fields {
            let kind: AgencyKind = kind
                .parse()
                .map_err(|e| invalid(format!("[fields]: {e}")))?;
            by_kind.push((kind, groups(names, &format!("[fields] {kind}"))?));
        }
        let keep = groups(&file.consent_withdrawn.keep, "[consent_withdrawn] keep")?;
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
        Ok(Policy {
            suppress_below,
            fields: handoff_domain::policy::FieldPolicy::new(by_kind, keep),
            sla: handoff_domain::sla::SlaRules {
                eviction_notice_hours: file.sla.eviction_notice_hours,
                first_contact_working_days: file.sla.first_contact_working_days,
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
