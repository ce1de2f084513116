//! Bulk reads: following case changes (WatchCases), the log itself and the
//! quarantine (auditors). Each answer is recorded before it leaves, a chunk at a
//! time, naming every case and subject it carries, so a bulk read shows in the
//! access reports like any other.
//!
//! Events are routed by the domain's one rule of what an event is about
//! ([`handoff_domain::target`]): only case events change a case; listings,
//! subject-wide erasures and registry changes pass by.

use std::collections::HashMap;

use handoff_contract::v1::*;
use handoff_domain::{Target, target};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::cases::{Cases, Seen, within_limits};
use crate::identity::Caller;
use crate::internal;

/// Updates (or records) sent after one access record, at most.
const CHUNK: usize = 256;

/// The cases and subjects a log record is about, for the access log.
fn about(envelope: &Envelope) -> (String, String) {
    match target(envelope) {
        Some(Target::Case(case_id)) => (case_id.to_string(), envelope.subject_pseudonym.clone()),
        Some(Target::Subject(subject)) => (String::new(), subject.to_string()),
        _ => (String::new(), String::new()),
    }
}

impl Cases {
    pub(crate) async fn watch_cases_stream(
        &self,
        request: Request<WatchCasesRequest>,
    ) -> Result<Response<ReceiverStream<Result<WatchCasesResponse, Status>>>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        within_limits(&req, "handoff.v1.WatchCasesRequest")?;
        let slot = self.access.stream_slot(&caller.agency)?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNK);
        let cases = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(status) = cases.watch(caller, req, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Streams what `caller` may see of each case change after `req.after_sequence`:
    /// first the log so far, then live as batches commit. What it may see, and which
    /// fields, is decided by the case as it stands now (a withdrawn consent narrows
    /// the replay too). Ends when the client goes away or the caller is revoked.
    async fn watch(
        &self,
        caller: Caller,
        req: WatchCasesRequest,
        tx: &tokio::sync::mpsc::Sender<Result<WatchCasesResponse, Status>>,
    ) -> Result<(), Status> {
        let registry = self.access.registry();
        let mut head = self.log.watch_head();
        // Each case as it stood after the last event replayed here.
        let mut views: HashMap<String, CaseView> = HashMap::new();
        let mut next = req.after_sequence + 1;
        loop {
            let upto = *head.borrow_and_update();
            while next <= upto {
                let mut updates = Vec::new();
                let mut seen = Seen::default();
                let first = next;
                while next <= upto && updates.len() < CHUNK {
                    let record = self
                        .log
                        .record(next)
                        .map_err(internal)?
                        .ok_or_else(|| Status::internal(format!("record {next} is missing")))?;
                    let envelope = Envelope::decode(record.envelope.as_slice())
                        .map_err(|e| Status::internal(e.to_string()))?;
                    let Some(Target::Case(case_id)) = target(&envelope) else {
                        next += 1;
                        continue;
                    };
                    let case_id = case_id.to_string();
                    let before = match views.remove(&case_id) {
                        Some(v) => Some(v),
                        None => self
                            .log
                            .case_as_of(&case_id, next - 1, registry)
                            .map_err(internal)?,
                    };
                    let at = handoff_domain::Position {
                        sequence: next,
                        recorded_at_ms: record.recorded_at_unix_ms,
                    };
                    let mut after =
                        handoff_domain::evolve(before.as_ref(), &envelope, registry, at).map_err(
                            |r| Status::internal(format!("replay of record {next} diverged: {r}")),
                        )?;
                    handoff_log::attach_sealed_details(&mut after, record.sealed_details.as_ref());
                    // Current rights: the case as it stands now says who sees it, and what.
                    let current = self.log.case(&case_id).map_err(internal)?;
                    let shown = current.as_ref().and_then(|c| {
                        Self::limit_of(c, &caller)
                            .filter(|limit| limit.is_none_or(|l| next <= l))
                            .map(|_| c.consent())
                    });
                    if let Some(consent) = shown {
                        let mut case = after.clone();
                        self.open_view(&mut case)?;
                        let grant = self.grant(&caller, consent, &case);
                        grant.redact_case(&mut case);
                        seen.case(&case, &grant);
                        updates.push(WatchCasesResponse {
                            sequence: next,
                            event_type: envelope
                                .event
                                .as_ref()
                                .map(handoff_contract::names::event_type)
                                .unwrap_or_default()
                                .into(),
                            case: Some(case),
                        });
                    }
                    views.insert(case_id, after);
                    next += 1;
                }
                if updates.is_empty() {
                    continue;
                }
                if self.access.is_revoked(&caller.agency)? {
                    return Err(Status::unauthenticated(format!(
                        "agency {} is revoked",
                        caller.agency
                    )));
                }
                let query = format!(
                    "after_sequence={} updates={first}..{}",
                    req.after_sequence,
                    next - 1
                );
                let answered = self
                    .answer(
                        &caller,
                        "WatchCases",
                        &req.purpose,
                        query,
                        &[],
                        Ok((updates, seen)),
                    )
                    .await?;
                for update in answered.into_inner() {
                    if tx.send(Ok(update)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Ok(()) },
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    pub(crate) async fn read_log_stream(
        &self,
        request: Request<ReadLogRequest>,
    ) -> Result<Response<ReceiverStream<Result<ReadLogResponse, Status>>>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let query = format!("from={} to={}", req.from_sequence, req.to_sequence);
        if let Err(refused) = self.auditor(&caller) {
            let recorded = self
                .answer(
                    &caller,
                    "ReadLog",
                    "",
                    query,
                    &[],
                    Err::<((), Seen), _>(refused),
                )
                .await;
            return Err(recorded
                .err()
                .unwrap_or_else(|| Status::permission_denied("only auditors may read the log")));
        }
        let slot = self.access.stream_slot(&caller.agency)?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNK);
        let cases = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(status) = cases.read_log(&caller, req, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Sends the records from `req.from_sequence`, a chunk at a time, each chunk
    /// recorded first with the cases and subjects its records are about.
    async fn read_log(
        &self,
        caller: &Caller,
        req: ReadLogRequest,
        tx: &tokio::sync::mpsc::Sender<Result<ReadLogResponse, Status>>,
    ) -> Result<(), Status> {
        let to = match req.to_sequence {
            0 => self.log.head().sequence,
            to => to.min(self.log.head().sequence),
        };
        let mut from = req.from_sequence.max(1);
        while from <= to {
            let last = to.min(from + CHUNK as u64 - 1);
            let log = self.log.clone();
            // sled iteration blocks; keep it off the async workers.
            let records = tokio::task::spawn_blocking(move || {
                log.records(from, last).collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(internal)?;
            let mut seen = Seen::default();
            for record in &records {
                if let Ok(envelope) = Envelope::decode(record.envelope.as_slice()) {
                    seen.cases.push(about(&envelope));
                }
            }
            seen.fields.insert("log_records".into());
            let query = format!(
                "from={} to={} records={from}..{last}",
                req.from_sequence, req.to_sequence
            );
            let records = self
                .answer(caller, "ReadLog", "", query, &[], Ok((records, seen)))
                .await?
                .into_inner();
            for record in records {
                let item = ReadLogResponse {
                    record: Some(record),
                };
                if tx.send(Ok(item)).await.is_err() {
                    return Ok(()); // the client went away
                }
            }
            from = last + 1;
        }
        Ok(())
    }

    pub(crate) async fn list_quarantine_page(
        &self,
        request: Request<ListQuarantineRequest>,
    ) -> Result<Response<ListQuarantineResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => 100,
            n => n.min(1000),
        };
        let result = self.auditor(&caller).and_then(|()| {
            let entries = self
                .log
                .quarantine(req.after_stream_sequence, limit)
                .map_err(internal)?;
            let mut seen = Seen::default();
            for entry in &entries {
                let named = Envelope::decode(entry.raw.as_slice())
                    .map(|e| about(&e))
                    .unwrap_or_default();
                let subject = entry
                    .sealed_details
                    .as_ref()
                    .map(|d| d.subject_pseudonym.clone())
                    .filter(|s| !s.is_empty())
                    .unwrap_or(named.1);
                seen.cases.push((named.0, subject));
            }
            seen.fields.insert("quarantine".into());
            Ok((ListQuarantineResponse { entries }, seen))
        });
        let query = format!("after={} limit={limit}", req.after_stream_sequence);
        self.answer(&caller, "ListQuarantine", "", query, &[], result)
            .await
    }
}
