//! The JSON Schemas (draft 2020-12) of the documents agencies hand to adapters.

use std::sync::OnceLock;

use serde_json::Value;

/// A document kind with a schema in `schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `police-record.schema.json`
    PoliceRecord,
    /// `referral-form.schema.json`
    ReferralForm,
    /// `programme-activity.schema.json`
    ProgrammeActivity,
    /// `event.schema.json`
    Event,
    /// `service-listing.schema.json`
    ServiceListing,
}

impl Schema {
    /// The schema text, as shipped in `schemas/`.
    pub fn text(self) -> &'static str {
        match self {
            Schema::PoliceRecord => include_str!("../../../schemas/police-record.schema.json"),
            Schema::ReferralForm => include_str!("../../../schemas/referral-form.schema.json"),
            Schema::ProgrammeActivity => {
                include_str!("../../../schemas/programme-activity.schema.json")
            }
            Schema::Event => include_str!("../../../schemas/event.schema.json"),
            Schema::ServiceListing => {
                include_str!("../../../schemas/service-listing.schema.json")
            }
        }
    }

    fn slot(self) -> &'static OnceLock<jsonschema::Validator> {
        static SLOTS: [OnceLock<jsonschema::Validator>; 5] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        &SLOTS[self as usize]
    }

    fn validator(self) -> &'static jsonschema::Validator {
        self.slot().get_or_init(|| {
            let schema: Value =
                serde_json::from_str(self.text()).expect("shipped schemas are valid JSON");
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .expect("shipped schemas compile")
        })
    }

    /// Checks a document; on failure, every problem with the path where it is.
    pub fn validate(self, document: &Value) -> Result<(), Vec<String>> {
        let errors: Vec<String> = self
            .validator()
            .iter_errors(document)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                format!("{at}: {e}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
