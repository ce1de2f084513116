//! Reading input files into documents, one per record, each with a label a
//! person can find it by ("record 3", "row 7", "line 12").

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::AdapterError;

/// Most nesting accepted in an input document; deeper ones are refused, not parsed.
pub const MAX_DEPTH: usize = 32;

/// One record of an input file.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it is in the file.
    pub label: String,
    /// The record, or why it could not be read.
    pub value: Result<Value, String>,
}

impl Document {
    /// A readable record.
    pub fn new(label: String, value: Value) -> Self {
        Document {
            label,
            value: Ok(value),
        }
    }

    /// A record that could not be read.
    pub fn unreadable(label: String, why: String) -> Self {
        Document {
            label,
            value: Err(why),
        }
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn checked(label: String, value: Value) -> Document {
    if depth(&value) > MAX_DEPTH {
        Document::unreadable(label, format!("nested deeper than {MAX_DEPTH} levels"))
    } else {
        Document::new(label, value)
    }
}

/// Parses JSON text: one object, an array of objects, or JSON Lines.
pub fn json_documents(text: &str) -> Vec<Document> {
    // serde_json refuses nesting beyond 128 levels itself, so hostile input cannot overflow the stack.
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| checked(format!("record {}", i + 1), v))
            .collect(),
        Ok(v) => vec![checked("record 1".into(), v)],
        Err(whole) => {
            let lines: Vec<_> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .collect();
            if lines.len() < 2 {
                return vec![Document::unreadable(
                    "record 1".into(),
                    format!("not valid JSON: {whole}"),
                )];
            }
            lines
                .into_iter()
                .map(|(i, l)| {
                    let label = format!("line {}", i + 1);
                    match serde_json::from_str(l) {
                        Ok(v) => checked(label, v),
                        Err(e) => Document::unreadable(label, format!("not valid JSON: {e}")),
                    }
                })
                .collect()
        }
    }
}

/// Parses CSV text into documents (each adapter that takes CSV has its own columns).
pub type CsvParser = fn(&str) -> Result<Vec<Document>, AdapterError>;

/// CSV text from a file's bytes: UTF-8 when they are, else Windows-1250, the code page
/// of Czech spreadsheet exports (JSON is always UTF-8).
pub fn csv_text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(not_utf8) => {
            let (text, _, _) = encoding_rs::WINDOWS_1250.decode(not_utf8.as_bytes());
            text.into_owned()
        }
    }
}

/// Reads a file; `.csv` files go through `csv`, everything else is JSON.
pub fn read_file(path: &Path, csv: Option<CsvParser>) -> Result<Vec<Document>, AdapterError> {
    let cannot =
        |e: std::io::Error| AdapterError::Input(format!("cannot read {}: {e}", path.display()));
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let text = if is_csv {
        csv_text(std::fs::read(path).map_err(cannot)?)
    } else {
        std::fs::read_to_string(path).map_err(cannot)?
    };
    match (is_csv, csv) {
        (true, Some(parse)) => parse(&text),
        (true, None) => Err(AdapterError::Input(format!(
            "{}: this adapter reads JSON, not CSV",
            path.display()
        ))),
        (false, _) => Ok(json_documents(&text)),
    }
}

/// Deserializes a validated document into its typed form.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, AdapterError> {
    T::deserialize(value).map_err(|e| AdapterError::Invalid(vec![e.to_string()]))
}

/// A schema's lower-case enum value as the contract's enum value: `court` with prefix
/// `COPY_RECIPIENT_` is `COPY_RECIPIENT_COURT`. The schema has checked the name; none
/// (or one the contract lacks) is 0, unspecified, which the exchange refuses in words.
pub fn named<T: Into<i32>>(
    prefix: &str,
    value: Option<&str>,
    from_str_name: fn(&str) -> Option<T>,
) -> i32 {
    value
        .and_then(|v| from_str_name(&format!("{prefix}{}", v.to_ascii_uppercase())))
        .map_or(0, Into::into)
}

/// Parses an RFC 3339 field.
pub fn parse_time(field: &str, text: &str) -> Result<prost_types::Timestamp, AdapterError> {
    handoff_contract::time::parse_rfc3339(text).ok_or_else(|| {
        AdapterError::Invalid(vec![format!(
            "{field}: {text:?} is not an RFC 3339 time such as 2026-11-20T21:40:00Z"
        )])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_read_as_utf8_or_as_the_windows_1250_of_czech_exports() {
        assert_eq!(csv_text("Novák,Dvořák".as_bytes().to_vec()), "Novák,Dvořák");
        // "Nov\xe1k,Dvo\xf8\xe1k" in Windows-1250.
        assert_eq!(csv_text(b"Nov\xe1k,Dvo\xf8\xe1k".to_vec()), "Novák,Dvořák");
    }

    #[test]
    fn schema_names_become_the_contracts_enum_values() {
        use handoff_contract::v1::{CopyRecipient, preliminary_measure::Stage};
        let recipient = |v| named("COPY_RECIPIENT_", v, CopyRecipient::from_str_name);
        assert_eq!(
            recipient(Some("child_protection")),
            CopyRecipient::ChildProtection as i32
        );
        assert_eq!(recipient(None), 0);
        assert_eq!(recipient(Some("nobody")), 0);
        assert_eq!(
            named("STAGE_", Some("extension_petitioned"), Stage::from_str_name),
            Stage::ExtensionPetitioned as i32
        );
    }

    #[test]
    fn reads_objects_arrays_and_lines() {
        assert_eq!(json_documents(r#"{"a":1}"#).len(), 1);
        assert_eq!(json_documents(r#"[{"a":1},{"a":2}]"#).len(), 2);
        let lines = json_documents("{\"a\":1}\nnot json\n{\"a\":3}\n");
        assert_eq!(lines.len(), 3);
        assert!(lines[1].value.is_err());
        assert_eq!(lines[1].label, "line 2");
    }

    #[test]
    fn refuses_deep_nesting_without_crashing() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(json_documents(&deep).iter().all(|d| d.value.is_err()));
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(json_documents(&very_deep)[0].value.is_err());
    }
}
