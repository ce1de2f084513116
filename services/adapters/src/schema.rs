//! The JSON Schemas (draft 2020-12) of the documents agencies hand to adapters.

use std::sync::OnceLock;

use serde_json::Value;

/// The schema keyword that marks a property private.
const PRIVATE: &str = "x-handoff-private";
/// What stands in for a private value outside the agency's input.
pub const WITHHELD: &str = "[withheld]";

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

    fn parsed(self) -> &'static Value {
        static PARSED: [OnceLock<Value>; 5] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        PARSED[self as usize].get_or_init(|| {
            serde_json::from_str(self.text()).expect("shipped schemas are valid JSON")
        })
    }

    /// Whether the value at `path` (a JSON pointer into a document) is private: the
    /// schema marks it, or something around it, `"x-handoff-private": true` (personal
    /// details, the agency's own person references, free text).
    pub fn is_private(self, path: &str) -> bool {
        let mut node = self.parsed();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            if node.get(PRIVATE) == Some(&Value::Bool(true)) {
                return true;
            }
            let next = node
                .get("properties")
                .and_then(|p| p.get(segment))
                .or_else(|| node.get("items"));
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.get(PRIVATE) == Some(&Value::Bool(true))
    }

    /// `document` with every private value (see [`Schema::is_private`]) withheld, for
    /// what is kept outside the agency's own input: a rejects file is not erased with
    /// the subject.
    pub fn withhold_private(self, document: &Value) -> Value {
        fn walk(schema: Schema, value: &Value, path: &str) -> Value {
            if !path.is_empty() && schema.is_private(path) {
                return Value::String(WITHHELD.into());
            }
            match value {
                Value::Object(map) => Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), walk(schema, v, &format!("{path}/{k}"))))
                        .collect(),
                ),
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| walk(schema, v, &format!("{path}/{i}")))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        walk(self, document, "")
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
                if !path.is_empty() && self.is_private(&path) {
                    // The message would quote the value: a name or a birth date.
                    return format!("{path}: invalid (the value is withheld here; see the input)");
                }
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
