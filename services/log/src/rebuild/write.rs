//! Making the store's projections and indexes exactly what a fold derived.

use prost::Message;

use super::Rebuilt;
use super::fold::{Derived, EventEntry};
use crate::keys;
use crate::store::{Log, LogError, corrupt};

impl Log {
    /// Makes the store hold exactly the entries `derived` implies (writing only what
    /// differs), then clears the rebuilding marker; `records` is how many were folded.
    pub(super) fn write_projections(
        &self,
        derived: Derived,
        records: u64,
    ) -> Result<Rebuilt, LogError> {
        let Derived {
            mut cases,
            mut events,
            listings,
            revocations,
        } = derived;
        // Entries are produced in key order as they are compared, not built and sorted
        // as byte strings: a case's sequences are already ascending, a case id's order
        // is its keys' order, and event ids sort by agency, then as integers.
        cases.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        events.sort_unstable_by(|a, b| {
            a.agency
                .cmp(&b.agency)
                .then_with(|| u128::from_be_bytes(a.id).cmp(&u128::from_be_bytes(b.id)))
        });
        let case_record_entries = cases.iter().flat_map(|(id, case)| {
            case.sequences
                .chunks(keys::CASE_INDEX_CHUNK)
                .zip(0u32..)
                .map(move |(sequences, chunk)| {
                    (
                        keys::case_index(id, chunk),
                        keys::case_index_value(sequences),
                    )
                })
        });
        let mut inbox = Vec::new();
        for (_, case) in &cases {
            for item in handoff_domain::inbox::items(&case.view) {
                inbox.push((
                    keys::inbox(&item.to_agency, &item.case_id, &item.item_id),
                    item.encode_to_vec(),
                ));
            }
        }
        inbox.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let inbox_items = inbox.len() as u64;
        let view_entries = cases
            .iter()
            .map(|(id, case)| (keys::view(id), case.view.encode_to_vec()));
        let mut subjects: Vec<Vec<u8>> = cases
            .iter()
            .map(|(id, case)| keys::subject_case(&case.view.subject_pseudonym, id))
            .collect();
        subjects.sort_unstable();
        // The event index, an entry per record, is most of the writing: each thread
        // takes half of it by key, then about half of the rest.
        let (low, high) = events.split_at(events.len() / 2);
        let split = high
            .first()
            .map_or_else(|| vec![keys::EVENT + 1], |e| keys::event(&e.agency, &e.id));
        let mut corrected = std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                Ok::<_, LogError>(
                    self.reconcile_range(&split, &[keys::EVENT + 1], event_entries(high))?
                        + self.reconcile(keys::VIEW, view_entries)?
                        + self.reconcile(keys::INBOX, inbox.into_iter())?,
                )
            });
            let first = self.reconcile_range(&[keys::EVENT], &split, event_entries(low))?
                + self.reconcile(keys::CASE_RECORDS, case_record_entries)?
                + self.reconcile(keys::SUBJECT_CASES, subjects.iter().map(|k| (k, [0u8; 0])))?;
            // A panic there is a bug, not bad data: say so rather than hide it.
            let second = second
                .join()
                .unwrap_or_else(|_| Err(corrupt("projections", "a rebuilding thread failed")));
            Ok::<_, LogError>(first + second?)
        })?;
        // Few entries (a listing per service, a revocation per agency): on this thread.
        corrected += self.reconcile(
            keys::DIRECTORY,
            listings.iter().map(|(k, l)| (k, l.encode_to_vec())),
        )?;
        corrected += self.reconcile(
            keys::AGENCY_STATUS,
            revocations
                .iter()
                .map(|(agency, r)| (keys::per_agency(keys::AGENCY_STATUS, agency), r.encode())),
        )?;
        self.tree.remove(keys::META_REBUILDING)?;
        self.db.flush()?;
        Ok(Rebuilt {
            records,
            cases: cases.len() as u64,
            inbox_items,
            listings: listings.len() as u64,
            revocations: revocations.len() as u64,
            corrected,
        })
    }

    /// Makes the entries under `prefix` exactly `expected` (given in key order),
    /// writing only differences; returns how many entries it wrote or removed.
    fn reconcile<K: Entry, V: Entry>(
        &self,
        prefix: u8,
        expected: impl Iterator<Item = (K, V)>,
    ) -> Result<u64, LogError> {
        self.reconcile_range(&[prefix], &[prefix + 1], expected)
    }

    /// [`Log::reconcile`] of the keys from `start` up to (not including) `end`.
    fn reconcile_range<K: Entry, V: Entry>(
        &self,
        start: &[u8],
        end: &[u8],
        expected: impl Iterator<Item = (K, V)>,
    ) -> Result<u64, LogError> {
        let mut corrected = 0u64;
        let mut want = expected.peekable();
        let mut last_wanted: Option<Vec<u8>> = None;
        // Each change is written at once, not batched: the rebuilding marker already
        // keeps a store whose rebuild was cut off from being served, and sled's single
        // writes are cheaper than a batch's, run in parallel (a batch locks the whole
        // store) and free what they replace as they go (a batch holds it to its end).
        // A change is always at or before the key the scan returned last, and sled's
        // scan goes on strictly after it: writing midway cannot disturb it.
        let mut change = |key: &[u8], value: Option<&[u8]>| -> Result<(), LogError> {
            match value {
                Some(v) => self.tree.insert(key, v)?,
                None => self.tree.remove(key)?,
            };
            corrected += 1;
            Ok(())
        };
        // One ordered pass over what is stored, merged with what should be.
        let mut stored = self.tree.range(start..end);
        let mut have = stored.next().transpose()?;
        loop {
            match (have.as_ref(), want.peek()) {
                (None, None) => break,
                (Some((k, _)), None) => {
                    change(k, None)?;
                    have = stored.next().transpose()?;
                }
                (None, Some((wk, wv))) => {
                    change(wk.as_ref(), Some(wv.as_ref()))?;
                    ordered(&mut last_wanted, wk.as_ref())?;
                    want.next();
                }
                (Some((hk, hv)), Some((wk, wv))) => match hk.as_ref().cmp(wk.as_ref()) {
                    std::cmp::Ordering::Less => {
                        change(hk, None)?;
                        have = stored.next().transpose()?;
                    }
                    std::cmp::Ordering::Greater => {
                        change(wk.as_ref(), Some(wv.as_ref()))?;
                        ordered(&mut last_wanted, wk.as_ref())?;
                        want.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if hv.as_ref() != wv.as_ref() {
                            change(wk.as_ref(), Some(wv.as_ref()))?;
                        }
                        want.next();
                        have = stored.next().transpose()?;
                    }
                },
            }
        }
        Ok(corrected)
    }
}

/// The event index's entries of `part`, in its order.
fn event_entries(part: &[EventEntry]) -> impl Iterator<Item = (Vec<u8>, [u8; 16])> + '_ {
    part.iter().map(|e| {
        (
            keys::event(&e.agency, &e.id),
            keys::event_value(e.sequence, e.version),
        )
    })
}

/// A key or value of an entry a rebuild derives.
trait Entry: AsRef<[u8]> {}
impl<T: AsRef<[u8]>> Entry for T {}

/// An expected entry written must come after the one written before it; stored keys
/// come in order from sled, so only entries the store lacks need this check (an
/// out-of-order expectation is a bug that would otherwise pass silently).
fn ordered(last: &mut Option<Vec<u8>>, key: &[u8]) -> Result<(), LogError> {
    if last.as_deref().is_some_and(|l| l >= key) {
        return Err(corrupt(
            "projections",
            "a rebuild derived entries out of order",
        ));
    }
    *last = Some(key.to_vec());
    Ok(())
}
