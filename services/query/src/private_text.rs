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
use prost_reflect::{Kind, MessageDescriptor};
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
    let resolved = rewrite(&bytes, &descriptor, &mut |r| source.text(r))
        .map_err(|e| Status::internal(format!("re-reading a {full_name}: {e}")))?;
    *message = M::decode(resolved.as_slice())
        .map_err(|e| Status::internal(format!("re-reading a {full_name}: {e}")))?;
    Ok(())
}

/// Why an encoded message could not be walked.
#[derive(Debug, thiserror::Error)]
enum Rewrite {
    #[error("it is not valid protobuf")]
    Malformed,
    #[error("{0}")]
    Text(Status),
}

/// The encoded message `bytes` of type `descriptor` with every string field that
/// holds a reference replaced by `text` of it, at any depth; all else is copied as
/// it is, unknown fields too. Works on the wire format, guided by the descriptor,
/// instead of decoding into a dynamic message and back.
fn rewrite(
    mut bytes: &[u8],
    descriptor: &MessageDescriptor,
    text: &mut dyn FnMut(TextRef) -> Result<String, Status>,
) -> Result<Vec<u8>, Rewrite> {
    use prost::encoding::{decode_varint, encode_varint};
    let mut out = Vec::with_capacity(bytes.len());
    while !bytes.is_empty() {
        let field_start = bytes;
        let key = decode_varint(&mut bytes).map_err(|_| Rewrite::Malformed)?;
        let skip = match key & 7 {
            0 => {
                decode_varint(&mut bytes).map_err(|_| Rewrite::Malformed)?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len =
                    usize::try_from(decode_varint(&mut bytes).map_err(|_| Rewrite::Malformed)?)
                        .map_err(|_| Rewrite::Malformed)?;
                let payload = bytes.get(..len).ok_or(Rewrite::Malformed)?;
                bytes = &bytes[len..];
                let field = u32::try_from(key >> 3)
                    .ok()
                    .and_then(|n| descriptor.get_field(n));
                let replaced = match field.as_ref().map(|f| f.kind()) {
                    Some(Kind::String) => {
                        match std::str::from_utf8(payload).ok().and_then(TextRef::parse) {
                            Some(r) => Some(text(r).map_err(Rewrite::Text)?.into_bytes()),
                            None => None,
                        }
                    }
                    Some(Kind::Message(inner))
                        if memchr::memmem::find(payload, PREFIX).is_some() =>
                    {
                        Some(rewrite(payload, &inner, text)?)
                    }
                    _ => None,
                };
                match replaced {
                    Some(value) => {
                        encode_varint(key, &mut out);
                        encode_varint(value.len() as u64, &mut out);
                        out.extend_from_slice(&value);
                    }
                    None => out.extend_from_slice(&field_start[..field_start.len() - bytes.len()]),
                }
                continue;
            }
            _ => return Err(Rewrite::Malformed), // groups: not in these messages
        };
        bytes = bytes.get(skip..).ok_or(Rewrite::Malformed)?;
        out.extend_from_slice(&field_start[..field_start.len() - bytes.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use handoff_contract::v1::{CaseView, Incident, ReferralStep};

    use super::*;

    fn reference(sequence: u64, index: usize) -> String {
        TextRef { sequence, index }.token()
    }

    /// References at the top, in repeated nested messages and beside plain strings
    /// are replaced; everything else, unknown fields too, is kept as it was.
    #[test]
    fn references_at_any_depth_are_replaced_and_the_rest_is_kept() {
        let view = CaseView {
            case_id: "police/case-1".into(),
            outcome_note: reference(9, 0),
            referrals: vec![
                ReferralStep {
                    referral_id: "r1".into(),
                    reason: reference(3, 1),
                    ..ReferralStep::default()
                },
                ReferralStep {
                    referral_id: "r2".into(),
                    reason: "not a reference".into(),
                    ..ReferralStep::default()
                },
            ],
            incidents: vec![Incident {
                incident_ref: "i1".into(),
                narrative: reference(5, 0),
                area: "Tábor".into(),
                ..Incident::default()
            }],
            version: 7,
            ..CaseView::default()
        };
        let mut bytes = view.encode_to_vec();
        // An unknown field (number 999, a string) rides along untouched.
        prost::encoding::string::encode(999, &reference(1, 0), &mut bytes);
        let descriptor = pool()
            .get_message_by_name("handoff.v1.CaseView")
            .expect("descriptor");
        let mut asked = Vec::new();
        let out = rewrite(&bytes, &descriptor, &mut |r| {
            asked.push((r.sequence, r.index));
            Ok(format!("text of {}/{}", r.sequence, r.index))
        })
        .expect("rewrite");
        let mut expected = view.clone();
        expected.outcome_note = "text of 9/0".into();
        expected.referrals[0].reason = "text of 3/1".into();
        expected.incidents[0].narrative = "text of 5/0".into();
        let mut expected_bytes = expected.encode_to_vec();
        prost::encoding::string::encode(999, &reference(1, 0), &mut expected_bytes);
        assert_eq!(out, expected_bytes);
        asked.sort_unstable();
        assert_eq!(asked, [(3, 1), (5, 0), (9, 0)]);
    }

    #[test]
    fn a_cut_message_is_refused_not_guessed() {
        let view = CaseView {
            outcome_note: reference(9, 0),
            ..CaseView::default()
        };
        let bytes = view.encode_to_vec();
        let descriptor = pool()
            .get_message_by_name("handoff.v1.CaseView")
            .expect("descriptor");
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            rewrite(cut, &descriptor, &mut |_| Ok(String::new())),
            Err(Rewrite::Malformed)
        ));
    }
}
