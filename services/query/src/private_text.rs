//! Putting sealed free text back for a reader. Views, inbox items and histories
//! hold references (`handoff_domain::private`) where the text was; each points at
//! the record whose seal holds it. The reader gets the text opened with the key of
//! the subject and the agency that wrote it, or nothing once that key is erased.
//! The walk is generic over the message (prost-reflect), so whatever the fold
//! copies a reference into is resolved too.

use std::collections::HashMap;

use handoff_contract::json::pool;
use handoff_domain::private::TextRef;
use handoff_keyring::{Keyring, Opened};
use handoff_log::Log;
use prost::Message;
use prost_reflect::{DynamicMessage, Value};
use tonic::Status;

/// Opens the seals references point at, each record once per read.
pub(crate) struct TextSource<'a> {
    log: &'a Log,
    keyring: &'a Keyring,
    opened: HashMap<u64, Vec<String>>,
}

impl<'a> TextSource<'a> {
    /// Reads records from `log` and opens their seals with `keyring`.
    pub(crate) fn new(log: &'a Log, keyring: &'a Keyring) -> Self {
        TextSource {
            log,
            keyring,
            opened: HashMap::new(),
        }
    }

    fn text(&mut self, r: TextRef) -> Result<String, Status> {
        if !self.opened.contains_key(&r.sequence) {
            let text = match self
                .log
                .record(r.sequence)
                .map_err(|e| Status::internal(e.to_string()))?
                .and_then(|record| record.sealed_details)
            {
                None => Vec::new(),
                Some(sealed) => match self
                    .keyring
                    .open(&sealed)
                    .map_err(|e| Status::internal(e.to_string()))?
                {
                    Opened::Private(parts) => parts.text,
                    Opened::Erased => Vec::new(),
                },
            };
            self.opened.insert(r.sequence, text);
        }
        Ok(self
            .opened
            .get(&r.sequence)
            .and_then(|t| t.get(r.index))
            .cloned()
            .unwrap_or_default())
    }
}

const PREFIX: &[u8] = b"\x01sealed/";

fn walk(message: &mut DynamicMessage, source: &mut TextSource<'_>) -> Result<(), Status> {
    for (_, value) in message.fields_mut() {
        walk_value(value, source)?;
    }
    Ok(())
}

fn walk_value(value: &mut Value, source: &mut TextSource<'_>) -> Result<(), Status> {
    match value {
        Value::String(s) => {
            if let Some(r) = TextRef::parse(s) {
                *s = source.text(r)?;
            }
        }
        Value::Message(m) => walk(m, source)?,
        Value::List(items) => {
            for item in items {
                walk_value(item, source)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every reference in `message` (of proto type `full_name`) by the text it
/// points at, or by nothing once erased. Messages without references are left as
/// they are, untouched.
pub(crate) fn resolve<M: Message + Default>(
    message: &mut M,
    full_name: &str,
    source: &mut TextSource<'_>,
) -> Result<(), Status> {
    let bytes = message.encode_to_vec();
    if memchr::memmem::find(&bytes, PREFIX).is_none() {
        return Ok(());
    }
    let descriptor = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| Status::internal(format!("no descriptor for {full_name}")))?;
    let mut dynamic = DynamicMessage::decode(descriptor, bytes.as_slice())
        .map_err(|e| Status::internal(format!("re-reading a {full_name}: {e}")))?;
    walk(&mut dynamic, source)?;
    *message = M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("re-reading a {full_name}: {e}")))?;
    Ok(())
}
