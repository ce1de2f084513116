//! A batch of writes: staged for one atomic commit and readable before it, so
//! every message of a batch is decided against the log plus the batch's own
//! earlier messages.

use std::collections::HashMap;

use handoff_contract::v1::{
    CaseView, LogRecord, QuarantineEntry, Receipt, SealedDetails, ServiceListing, receipt::Status,
};
use handoff_domain::directory::DirectoryChange;
use handoff_domain::{CaseChange, Known, RegistryChange};
use prost::Message;

use crate::chain::{Hash, hex, record_hash};
use crate::keys;
use crate::runs::RunBuilder;
use crate::store::{Head, Log, LogError, QuarantineUsage, Revocation, corrupt, uuid_bytes};

/// What appending one event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its log sequence.
    pub sequence: u64,
    /// Its record hash.
    pub hash: Hash,
}

/// One accepted event, as `WriteBatch::append` records it.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// The JetStream sequence it was consumed from.
    pub stream_sequence: u64,
    /// JetStream's time for it, Unix ms.
    pub recorded_at_unix_ms: i64,
    /// The envelope without personal details, encoded.
    pub envelope: &'a [u8],
    /// Its event id.
    pub event_id: &'a str,
    /// The agency that published it: its event ids are its own.
    pub agency: &'a str,
    /// The personal details it carried, sealed under the subject's key.
    pub sealed_details: Option<&'a SealedDetails>,
}

/// What the log holds under an event id.
#[derive(Debug, Clone, Default)]
pub struct Logged {
    /// The receipt its publisher gets again (status duplicate).
    pub receipt: Receipt,
    /// The envelope as logged (without personal details).
    pub envelope: Vec<u8>,
    /// The sealed personal details logged with it.
    pub sealed_details: Option<SealedDetails>,
}

/// Replaces any plaintext personal details in a view by the sealed form of the
/// record's, when its seal holds details (a seal of free text alone leaves the latest
/// details where they are), so that no projection ever stores them in the clear.
pub fn attach_sealed_details(view: &mut CaseView, sealed: Option<&SealedDetails>) {
    view.subject_details = None;
    if let Some(sealed) = sealed.filter(|s| s.has_details) {
        view.sealed_subject_details = Some(sealed.clone());
    }
}

/// Writes staged for one atomic commit, readable before they are committed.
pub struct WriteBatch<'a> {
    pub(crate) log: &'a Log,
    pub(crate) head: Head,
    pub(crate) batch: sled::Batch,
    /// This batch's records, not yet in a run written to `batch`.
    runs: RunBuilder,
    /// The last chunk of each touched case's index, with this batch's sequences.
    case_index: HashMap<String, (u32, Vec<u64>)>,
    views: HashMap<String, CaseView>,
    /// Event-index keys (agency and id) written by this batch.
    events: HashMap<Vec<u8>, Logged>,
    /// Directory listings written by this batch (`None`: withdrawn), by key.
    listings: HashMap<Vec<u8>, Option<ServiceListing>>,
    /// Cases opened by this batch, by subject.
    subjects: HashMap<String, Vec<String>>,
    /// Revocations written by this batch (`None`: reinstated).
    revocations: HashMap<String, Option<Revocation>>,
    /// Quarantine usage per agency, including this batch.
    usage: HashMap<String, QuarantineUsage>,
    /// Ingress positions this batch decides, by agency.
    pub(crate) ingress: HashMap<String, u64>,
}

impl<'a> WriteBatch<'a> {
    pub(crate) fn new(log: &'a Log) -> Self {
        WriteBatch {
            log,
            head: log.head(),
            batch: sled::Batch::default(),
            runs: RunBuilder::default(),
            case_index: HashMap::new(),
            views: HashMap::new(),
            events: HashMap::new(),
            listings: HashMap::new(),
            subjects: HashMap::new(),
            revocations: HashMap::new(),
            usage: HashMap::new(),
            ingress: HashMap::new(),
        }
    }
}

impl WriteBatch<'_> {
    /// The log sequence the next appended event will get.
    pub fn next_sequence(&self) -> u64 {
        self.head.sequence + 1
    }

    /// The last stream sequence consumed, including this batch.
    pub fn stream_position(&self) -> u64 {
        self.head.stream_position
    }

    /// A case as it stands including this batch's writes.
    pub fn case(&self, case_id: &str) -> Result<Option<CaseView>, LogError> {
        match self.views.get(case_id) {
            Some(v) => Ok(Some(v.clone())),
            None => self.log.case(case_id),
        }
    }

    /// A directory listing as it stands including this batch's writes.
    pub fn listing(
        &self,
        agency: &str,
        service_id: &str,
    ) -> Result<Option<ServiceListing>, LogError> {
        match self.listings.get(&keys::listing(agency, service_id)) {
            Some(staged) => Ok(staged.clone()),
            None => self.log.listing(agency, service_id),
        }
    }

    /// An agency's revocation as it stands including this batch's writes.
    pub fn revocation(&self, agency: &str) -> Result<Option<Revocation>, LogError> {
        match self.revocations.get(agency) {
            Some(staged) => Ok(staged.clone()),
            None => self.log.revocation(agency),
        }
    }

    /// How much of its quarantine quota an agency has used, including this batch.
    pub fn quarantine_usage(&self, agency: &str) -> Result<QuarantineUsage, LogError> {
        match self.usage.get(agency) {
            Some(u) => Ok(*u),
            None => self.log.quarantine_usage_of(agency),
        }
    }

    /// Writes what an appended directory event does to the directory projection
    /// (call right after [`WriteBatch::append`] of that event: same atomic batch).
    pub fn directory(&mut self, change: DirectoryChange) {
        match change {
            DirectoryChange::Offered(listing) => {
                let service_id = listing.offer.as_ref().map_or("", |o| o.service_id.as_str());
                let key = keys::listing(&listing.agency, service_id);
                self.batch.insert(key.as_slice(), listing.encode_to_vec());
                self.listings.insert(key, Some(*listing));
            }
            DirectoryChange::Withdrawn { agency, service_id } => {
                let key = keys::listing(&agency, &service_id);
                self.batch.remove(key.as_slice());
                self.listings.insert(key, None);
            }
        }
    }

    /// Writes what an appended registry event does (call right after
    /// [`WriteBatch::append`] of that event, whose sequence is `sequence`).
    pub fn registry(&mut self, change: RegistryChange, sequence: u64) {
        match change {
            RegistryChange::Revoked { agency, reason } => {
                let revocation = Revocation { sequence, reason };
                self.batch.insert(
                    keys::per_agency(keys::AGENCY_STATUS, &agency),
                    revocation.encode(),
                );
                self.revocations.insert(agency, Some(revocation));
            }
            RegistryChange::Reinstated { agency } => {
                self.batch
                    .remove(keys::per_agency(keys::AGENCY_STATUS, &agency));
                self.revocations.insert(agency, None);
            }
        }
    }

    /// If `agency` already logged `event_id` (before or in this batch): the receipt it
    /// should get again, and what was logged under it. Another agency's use of the same
    /// id is invisible here: event ids are scoped to their agency.
    pub fn duplicate_of(&self, agency: &str, event_id: &str) -> Result<Option<Logged>, LogError> {
        let Ok(id) = uuid_bytes(event_id) else {
            return Ok(None);
        };
        let key = keys::event(agency, &id);
        if let Some(staged) = self.events.get(&key) {
            return Ok(Some(staged.clone()));
        }
        let Some(index_value) = self.log.tree.get(&key)? else {
            return Ok(None);
        };
        let receipt = self.log.duplicate_receipt(event_id, &index_value)?;
        let record = self.log.record(receipt.sequence)?.unwrap_or_default();
        Ok(Some(Logged {
            receipt,
            envelope: record.envelope,
            sealed_details: record.sealed_details,
        }))
    }

    /// Appends an accepted event with the case it changed (`None` for an event about
    /// no case: a listing, a subject-wide erasure, a registry change): the case view,
    /// its inbox items, the case and subject indexes.
    ///
    /// The view never keeps plaintext personal details: whatever the fold put in
    /// `subject_details` is replaced by the record's sealed details.
    pub fn append(
        &mut self,
        record: NewRecord<'_>,
        case: Option<CaseChange>,
    ) -> Result<Appended, LogError> {
        let NewRecord {
            stream_sequence,
            recorded_at_unix_ms,
            envelope,
            event_id,
            agency,
            sealed_details,
        } = record;
        let id = uuid_bytes(event_id)
            .map_err(|e| corrupt(format!("event {event_id}"), e.to_string()))?;
        let sequence = self.next_sequence();
        let hash = record_hash(
            &self.head.hash,
            sequence,
            stream_sequence,
            recorded_at_unix_ms,
            envelope,
        );
        let record = LogRecord {
            sequence,
            stream_sequence,
            recorded_at_unix_ms,
            envelope: envelope.to_vec(),
            prev_hash: self.head.hash.to_vec(),
            hash: hash.to_vec(),
            sealed_details: sealed_details.cloned(),
        };
        if let Some((key, run)) = self.runs.push(sequence, &record.encode_to_vec()) {
            self.batch.insert(&key, run);
        }
        let version = case.as_ref().map_or(0, |c| c.after.version);
        let case_id = case
            .as_ref()
            .map(|c| c.after.case_id.clone())
            .unwrap_or_default();
        let event_key = keys::event(agency, &id);
        self.batch
            .insert(event_key.as_slice(), &keys::event_value(sequence, version));
        let staged = Receipt {
            event_id: event_id.to_string(),
            status: Status::Duplicate as i32,
            sequence,
            hash: hash.to_vec(),
            stream_sequence,
            case_id,
            case_version: version,
            ..Receipt::default()
        };
        self.events.insert(
            event_key,
            Logged {
                receipt: staged,
                envelope: envelope.to_vec(),
                sealed_details: sealed_details.cloned(),
            },
        );

        if let Some(CaseChange { before, after }) = case {
            let mut view = after;
            attach_sealed_details(&mut view, sealed_details);
            self.index_case_record(&view.case_id, sequence)?;
            if before.is_none() {
                self.batch.insert(
                    keys::subject_case(&view.subject_pseudonym, &view.case_id),
                    &[] as &[u8],
                );
                self.subjects
                    .entry(view.subject_pseudonym.clone())
                    .or_default()
                    .push(view.case_id.clone());
            }
            for item in before.iter().flat_map(handoff_domain::inbox::items) {
                self.batch
                    .remove(keys::inbox(&item.to_agency, &item.case_id, &item.item_id));
            }
            for item in handoff_domain::inbox::items(&view) {
                self.batch.insert(
                    keys::inbox(&item.to_agency, &item.case_id, &item.item_id),
                    item.encode_to_vec(),
                );
            }
            self.batch
                .insert(keys::view(&view.case_id), view.encode_to_vec());
            self.views.insert(view.case_id.clone(), view);
        }

        self.head.sequence = sequence;
        self.head.hash = hash;
        self.advance(stream_sequence);
        tracing::debug!(sequence, stream_sequence, event_id, hash = %hex(&hash), "appended");
        Ok(Appended { sequence, hash })
    }

    /// Adds `sequence` to its case's index, a chunk at a time: a full chunk is written
    /// at once, the last one when the batch is committed.
    fn index_case_record(&mut self, case_id: &str, sequence: u64) -> Result<(), LogError> {
        if !self.case_index.contains_key(case_id) {
            let tail = self.log.case_index_tail(case_id)?;
            self.case_index.insert(case_id.to_string(), tail);
        }
        let Some((chunk, sequences)) = self.case_index.get_mut(case_id) else {
            return Err(corrupt("case index", "a staged chunk went missing"));
        };
        if sequences.len() == keys::CASE_INDEX_CHUNK {
            *chunk += 1;
            sequences.clear();
        }
        sequences.push(sequence);
        if sequences.len() == keys::CASE_INDEX_CHUNK {
            self.batch.insert(
                keys::case_index(case_id, *chunk),
                keys::case_index_value(sequences),
            );
        }
        Ok(())
    }

    /// What is left to write: the open run of records and the touched chunks of the
    /// case index; then the batch, the head it leads to and the ingress positions.
    pub(crate) fn finish(mut self) -> (sled::Batch, Head, HashMap<String, u64>) {
        if let Some((key, run)) = self.runs.finish() {
            self.batch.insert(&key, run);
        }
        for (case_id, (chunk, sequences)) in &self.case_index {
            if !sequences.is_empty() && sequences.len() < keys::CASE_INDEX_CHUNK {
                self.batch.insert(
                    keys::case_index(case_id, *chunk),
                    keys::case_index_value(sequences),
                );
            }
        }
        (self.batch, self.head, self.ingress)
    }

    /// Keeps a refused message in the quarantine, with the receipt its publisher got, and
    /// counts it against `agency`'s quota (the publisher as NATS identified it). A
    /// summarized entry (over the quota) is kept without its rejection receipt for
    /// look-ups: the publisher had it live, and the exchange keeps no more for it.
    pub fn quarantine(
        &mut self,
        entry: QuarantineEntry,
        receipt: &Receipt,
        agency: &str,
    ) -> Result<(), LogError> {
        let stream_sequence = entry.stream_sequence;
        if !receipt.event_id.is_empty() && !agency.is_empty() && !entry.summarized {
            self.batch.insert(
                keys::rejected_event(agency, &receipt.event_id),
                receipt.encode_to_vec(),
            );
        }
        let encoded = entry.encode_to_vec();
        let mut usage = self.quarantine_usage(agency)?;
        usage.entries += 1;
        usage.bytes += encoded.len() as u64;
        usage.summarized += u64::from(entry.summarized);
        self.batch.insert(
            keys::per_agency(keys::QUARANTINE_USAGE, agency),
            &usage.encode()[..],
        );
        self.usage.insert(agency.to_string(), usage);
        self.batch
            .insert(&keys::quarantine(stream_sequence), encoded);
        self.head.quarantined += 1;
        self.advance(stream_sequence);
        Ok(())
    }

    /// Records that the exchange has decided `agency`'s ingress stream up to `sequence`.
    pub fn ingress(&mut self, agency: &str, sequence: u64) {
        self.batch.insert(
            keys::per_agency(keys::INGRESS, agency),
            &sequence.to_be_bytes()[..],
        );
        self.ingress.insert(agency.to_string(), sequence);
    }

    /// Moves the consumer position past a message that needed no write (a duplicate).
    pub fn advance(&mut self, stream_sequence: u64) {
        self.head.stream_position = self.head.stream_position.max(stream_sequence);
    }
}

/// What admission asks of the log, answered including this batch's writes.
impl Known for WriteBatch<'_> {
    type Error = LogError;

    fn case(&self, case_id: &str) -> Result<Option<CaseView>, LogError> {
        WriteBatch::case(self, case_id)
    }

    fn listing(&self, agency: &str, service_id: &str) -> Result<Option<ServiceListing>, LogError> {
        WriteBatch::listing(self, agency, service_id)
    }

    fn knows_subject(&self, agency: &str, subject: &str) -> Result<bool, LogError> {
        let mut cases = self.log.subject_cases(subject)?;
        if let Some(staged) = self.subjects.get(subject) {
            cases.extend(staged.iter().cloned());
        }
        for case_id in cases {
            if let Some(view) = WriteBatch::case(self, &case_id)?
                && view.parties.iter().any(|p| p.agency == agency)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn revoked(&self, agency: &str) -> Result<bool, LogError> {
        Ok(self.revocation(agency)?.is_some())
    }
}
