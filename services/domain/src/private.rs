//! What only the parties to a case may read, and how it is taken out of an
//! envelope: the subject's personal details and every free-text field of a case
//! event. One list, here, for the publisher that seals them to the transport key,
//! the exchange that opens them and re-seals them under the subject's key, and the
//! query service that puts them back for a reader.
//!
//! In the envelope a free-text field that was taken out holds a reference,
//! `"\u{1}sealed/<sequence>/<index>"`: the index into [`PrivateParts::text`] of the
//! seal that holds it, and the log sequence of the record that seal belongs to (0 in
//! transit, where the publisher cannot know it). Because the fold copies references
//! like any text, a case view's text points at the records it came from, and a
//! rebuild from the records derives the same views. Directory and registry events and
//! erasure requests are not about what a person said or did and stay readable.

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{Envelope, PersonalDetails, PrivateParts};

use crate::rejection::Rejection;

/// The character that starts a reference; refused in free text so no publisher can
/// write one.
pub const MARK: char = '\u{1}';
const PREFIX: &str = "\u{1}sealed/";

/// Where a reference points: the record's sequence and the index in its seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextRef {
    /// Log sequence of the record whose seal holds the text (0: the envelope's own).
    pub sequence: u64,
    /// Index into [`PrivateParts::text`].
    pub index: usize,
}

impl TextRef {
    /// The reference as it stands in place of the text.
    pub fn token(&self) -> String {
        format!("{PREFIX}{}/{}", self.sequence, self.index)
    }

    /// The reference a string holds, if it is one.
    pub fn parse(text: &str) -> Option<TextRef> {
        let rest = text.strip_prefix(PREFIX)?;
        let (sequence, index) = rest.split_once('/')?;
        Some(TextRef {
            sequence: sequence.parse().ok()?,
            index: index.parse().ok()?,
        })
    }
}

/// The free-text fields of an event, in the order their values go into
/// [`PrivateParts::text`] (docs/publishing.md lists the same).
pub fn free_text_mut(event: &mut Event) -> Vec<&mut String> {
    match event {
        Event::IncidentReported(e) => vec![&mut e.narrative],
        Event::EvictionOrdered(e) => vec![&mut e.protected_area],
        Event::ReferralMade(e) => vec![&mut e.reason],
        Event::ReferralDeclined(e) => vec![&mut e.reason],
        Event::ContactAttempted(e) => vec![&mut e.note],
        Event::IntakeCompleted(e) => vec![&mut e.note],
        Event::SessionAttended(e) => vec![&mut e.note],
        Event::SessionMissed(e) => vec![&mut e.reason],
        Event::RiskAssessed(e) => vec![&mut e.note],
        Event::HandoffRequested(e) => vec![&mut e.reason],
        Event::HandoffDeclined(e) => vec![&mut e.reason],
        Event::ProgrammeCompleted(e) => vec![&mut e.note],
        Event::ProgrammeDroppedOut(e) => vec![&mut e.reason],
        Event::CaseClosed(e) => vec![&mut e.reason],
        Event::VictimHelpOffered(e) => vec![&mut e.note],
        Event::EvictionComplianceChecked(e) => vec![&mut e.note],
        Event::EvictionBreached(e) => vec![&mut e.narrative],
        Event::EvictionObjection(e) => vec![&mut e.note],
        Event::EvictionEndedEarly(e) => vec![&mut e.reason],
        Event::PreliminaryMeasure(e) => vec![&mut e.note],
        Event::ComplianceReported(e) => vec![&mut e.note],
        Event::RiskAlertRaised(e) => vec![&mut e.note],
        // Where an endangered person stays is sealed like their name.
        Event::EndangeredPersonRecorded(e) => vec![&mut e.shelter, &mut e.school],
        Event::EvictionCopySent(_)
        | Event::EvictionCopyReceived(_)
        | Event::EndangeredPersonLinked(_)
        | Event::NoticeAcknowledged(_)
        | Event::ReferralAcknowledged(_)
        | Event::ReferralAccepted(_)
        | Event::Enrolled(_)
        | Event::HandoffAccepted(_)
        | Event::ConsentGiven(_)
        | Event::ConsentWithdrawn(_)
        | Event::SubjectErasureRequested(_)
        | Event::ServiceOffered(_)
        | Event::ServiceWithdrawn(_)
        | Event::AgencyRevoked(_)
        | Event::AgencyReinstated(_) => Vec::new(),
    }
}

fn details_mut(event: &mut Event) -> Option<&mut Option<PersonalDetails>> {
    match event {
        Event::IncidentReported(e) => Some(&mut e.subject_details),
        Event::ReferralMade(e) => Some(&mut e.subject_details),
        Event::EndangeredPersonRecorded(e) => Some(&mut e.subject_details),
        _ => None,
    }
}

/// Takes the personal details and every non-empty free-text field out of `envelope`,
/// leaving references to `sequence` (0 in transit) in their place. `None` when the
/// envelope carries nothing private.
pub fn take_private(envelope: &mut Envelope, sequence: u64) -> Option<PrivateParts> {
    let event = envelope.event.as_mut()?;
    let details = details_mut(event).and_then(Option::take);
    let mut text = Vec::new();
    for field in free_text_mut(event) {
        if !field.is_empty() {
            let token = TextRef {
                sequence,
                index: text.len(),
            }
            .token();
            text.push(std::mem::replace(field, token));
        }
    }
    (details.is_some() || !text.is_empty()).then_some(PrivateParts { details, text })
}

/// True when `envelope` carries personal details or free text in the clear (what a
/// publisher must seal before it publishes).
pub fn has_clear_private(envelope: &mut Envelope) -> bool {
    let Some(event) = envelope.event.as_mut() else {
        return false;
    };
    if details_mut(event).is_some_and(|d| d.is_some()) {
        return true;
    }
    free_text_mut(event)
        .into_iter()
        .any(|f| !f.is_empty() && TextRef::parse(f).is_none())
}

/// Puts opened private parts back into the envelope they were taken from. Every
/// reference must be the one [`take_private`] wrote at its place (any sequence), every
/// part must find its place, and the restored text may hold no reference mark: so a
/// publisher can neither point at another record's text nor smuggle a reference in.
pub fn put_private(envelope: &mut Envelope, parts: PrivateParts) -> Result<(), Rejection> {
    let mismatch = || {
        Rejection::Invalid(
            "the sealed private parts do not match the envelope's free-text fields".into(),
        )
    };
    let Some(event) = envelope.event.as_mut() else {
        return Err(mismatch());
    };
    if let Some(details) = parts.details {
        let Some(slot) = details_mut(event) else {
            return Err(mismatch());
        };
        *slot = Some(details);
    }
    let mut text = parts.text.into_iter();
    let mut next = 0;
    for field in free_text_mut(event) {
        if field.is_empty() {
            continue;
        }
        match TextRef::parse(field) {
            Some(r) if r.index == next => {
                let value = text.next().ok_or_else(mismatch)?;
                if value.contains(MARK) {
                    return Err(Rejection::Invalid(
                        "free text may not contain the control character U+0001".into(),
                    ));
                }
                *field = value;
                next += 1;
            }
            _ => return Err(mismatch()),
        }
    }
    if text.next().is_some() {
        return Err(mismatch());
    }
    Ok(())
}

/// Refuses an envelope where a reference stands anywhere but in a free-text field:
/// the query service puts back the text any reference points at, so a reference in
/// a label or an id would read out another record's sealed text (another agency's,
/// another case's) under that field's rights. A free-text field may hold one whole
/// reference; no other string may carry the reference prefix at all.
pub fn check_references(envelope: &Envelope) -> Result<(), Rejection> {
    use prost::Message;
    let encoded = envelope.encode_to_vec();
    let marked = encoded
        .windows(PREFIX.len())
        .filter(|w| *w == PREFIX.as_bytes())
        .count();
    if marked == 0 {
        return Ok(()); // what nearly every envelope checked before its text is taken out is
    }
    let in_free_text = envelope.event.clone().map_or(0, |mut event| {
        free_text_mut(&mut event)
            .into_iter()
            .filter(|f| TextRef::parse(f).is_some())
            .count()
    });
    if marked > in_free_text {
        return Err(Rejection::Invalid(format!(
            "a field that is not free text holds the reference mark {:?}; only the exchange writes references",
            PREFIX
        )));
    }
    Ok(())
}

/// Empties every reference of `envelope` (its text was erased with its key).
pub fn clear_references(envelope: &mut Envelope) {
    let Some(event) = envelope.event.as_mut() else {
        return;
    };
    for field in free_text_mut(event) {
        if TextRef::parse(field).is_some() {
            field.clear();
        }
    }
}

/// Re-points every reference of `envelope` at `sequence` (the record it is stored in).
pub fn point_at(envelope: &mut Envelope, sequence: u64) {
    let Some(event) = envelope.event.as_mut() else {
        return;
    };
    for field in free_text_mut(event) {
        if let Some(r) = TextRef::parse(field) {
            *field = TextRef { sequence, ..r }.token();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handoff_contract::v1::{EvictionOrdered, IncidentReported};

    fn incident() -> Envelope {
        Envelope {
            event: Some(Event::IncidentReported(IncidentReported {
                narrative: "shouted at Jana in Lidická 12".into(),
                area: "České Budějovice-sever".into(),
                subject_details: Some(PersonalDetails {
                    full_name: "Jan Novák".into(),
                    ..PersonalDetails::default()
                }),
                ..IncidentReported::default()
            })),
            ..Envelope::default()
        }
    }

    /// The attack: a hostile agency writes a reference to another record's sealed text
    /// into a label, an id or the envelope's own fields, for the query service to put
    /// that text back under the label's rights. Every such place is refused; a
    /// reference where the exchange writes one (a free-text field) is not.
    #[test]
    fn a_reference_outside_free_text_is_refused() {
        let forged = TextRef {
            sequence: 42,
            index: 0,
        }
        .token();
        let mut stored = incident();
        take_private(&mut stored, 7);
        assert_eq!(check_references(&stored), Ok(()));
        assert_eq!(check_references(&incident()), Ok(()));

        let in_label = |e: &mut Envelope| {
            if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
                i.area = forged.clone();
            }
        };
        let in_id = |e: &mut Envelope| {
            if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
                i.incident_ref = format!("police/{forged}");
            }
        };
        let in_envelope = |e: &mut Envelope| e.correlation_id = forged.clone();
        let twice_in_free_text = |e: &mut Envelope| {
            if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
                i.narrative = format!("{forged}{forged}");
            }
        };
        type Attack<'a> = &'a dyn Fn(&mut Envelope);
        let attacks: [(&str, Attack<'_>); 4] = [
            ("a label", &in_label),
            ("inside an id", &in_id),
            ("an envelope field", &in_envelope),
            (
                "free text holding more than one reference",
                &twice_in_free_text,
            ),
        ];
        for (what, attack) in attacks {
            for base in [incident(), stored.clone()] {
                let mut e = base;
                attack(&mut e);
                assert!(
                    matches!(check_references(&e), Err(Rejection::Invalid(_))),
                    "a reference in {what} was let through"
                );
            }
        }
    }

    #[test]
    fn takes_and_puts_back_exactly() {
        let original = incident();
        let mut e = original.clone();
        let parts = take_private(&mut e, 0).expect("private");
        assert!(!has_clear_private(&mut e));
        let Some(Event::IncidentReported(i)) = &e.event else {
            panic!("incident")
        };
        assert_eq!(i.narrative, "\u{1}sealed/0/0");
        assert_eq!(i.area, "České Budějovice-sever", "labels stay readable");
        assert!(i.subject_details.is_none());
        point_at(&mut e, 42);
        put_private(&mut e, parts).expect("fits");
        assert_eq!(e, original);
    }

    #[test]
    fn refuses_parts_that_do_not_fit() {
        let mut e = incident();
        let mut parts = take_private(&mut e, 0).expect("private");
        parts.text.push("extra".into());
        assert!(put_private(&mut e.clone(), parts.clone()).is_err());
        parts.text.truncate(1);
        parts.text[0] = "\u{1}sealed/7/0".into();
        assert!(
            put_private(&mut e.clone(), parts).is_err(),
            "no smuggled reference"
        );
        // A reference the publisher did not earn (pointing at another index) is refused.
        let mut forged = Envelope {
            event: Some(Event::EvictionOrdered(EvictionOrdered {
                protected_area: "\u{1}sealed/9/3".into(),
                ..EvictionOrdered::default()
            })),
            ..Envelope::default()
        };
        let parts = PrivateParts {
            details: None,
            text: vec!["x".into()],
        };
        assert!(put_private(&mut forged, parts).is_err());
    }

    #[test]
    fn references_parse_back() {
        let r = TextRef {
            sequence: 18_446_744_073_709_551_615,
            index: 3,
        };
        assert_eq!(TextRef::parse(&r.token()), Some(r));
        assert_eq!(TextRef::parse("sealed/1/2"), None);
        assert!(r.token().len() <= crate::limits::ID);
    }
}
