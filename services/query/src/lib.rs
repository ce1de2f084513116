//! The gRPC query service: projections of the log for partners, the log
//! itself for auditors, plus gRPC health and reflection.
//!
//! Every read goes through [`Cases`]; the need-to-know filter and access
//! audit attach here (issue 3), so no other path serves case data.

use std::net::SocketAddr;

use handoff_contract::v1::cases_server::{Cases as CasesApi, CasesServer};
use handoff_contract::v1::*;
use handoff_domain::policy::{FieldPolicy, Grant};
use handoff_domain::{AgencyKind, Registry, Visibility, visibility};
use handoff_keyring::{Keyring, Opened, put_details};
use handoff_log::{CaseFilter, Log, LogError};

pub mod directory;
mod identity;
mod rpc_metrics;
pub mod stats;

pub use identity::{Access, Caller};
use prost::Message;
pub use rpc_metrics::{RpcMetrics, RpcMetricsLayer, code_name};
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// Default and largest page of `ListCases`.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of `ListCases`.
pub const MAX_PAGE: usize = 500;

fn internal(e: LogError) -> Status {
    tracing::error!(error = %e, "log read failed");
    Status::internal(e.to_string())
}

fn keys(e: handoff_keyring::KeyringError) -> Status {
    tracing::error!(error = %e, "personal details could not be opened");
    Status::internal(e.to_string())
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// The `handoff.v1.Cases` service over a log.
#[derive(Debug, Clone)]
pub struct Cases {
    log: Log,
    access: Access,
    fields: std::sync::Arc<FieldPolicy>,
    sla: handoff_domain::sla::SlaRules,
    key: std::sync::Arc<handoff_audit::ExchangeKey>,
    keyring: std::sync::Arc<Keyring>,
}

impl Cases {
    /// A query service reading `log` for the callers `access` recognises, showing each
    /// the fields `fields` grants its kind.
    pub fn new(
        log: Log,
        access: Access,
        fields: FieldPolicy,
        sla: handoff_domain::sla::SlaRules,
        key: std::sync::Arc<handoff_audit::ExchangeKey>,
        keyring: std::sync::Arc<Keyring>,
    ) -> Self {
        Cases {
            log,
            access,
            fields: std::sync::Arc::new(fields),
            sla,
            key,
            keyring,
        }
    }

    /// Opens a view's sealed personal details (or marks them erased). Runs before the
    /// field policy, which then removes them for callers not allowed to see them.
    fn open_view(&self, view: &mut CaseView) -> Result<(), Status> {
        if let Some(sealed) = view.sealed_subject_details.take() {
            match self.keyring.open(&sealed).map_err(keys)? {
                Opened::Details(d) => view.subject_details = Some(d),
                Opened::Erased => view.subject_details_erased = true,
            }
        }
        if !view.subject_details_erased
            && self
                .keyring
                .erasure(&view.subject_pseudonym)
                .map_err(keys)?
                .is_some()
        {
            view.subject_details_erased = true;
        }
        if view.subject_details_erased {
            view.subject_details = None;
        }
        Ok(())
    }

    /// A logged event with its sealed personal details opened (or marked erased).
    fn open_event(&self, record: LogRecord) -> Result<LoggedEvent, Status> {
        let mut envelope = Envelope::decode(record.envelope.as_slice()).map_err(|e| {
            Status::internal(format!(
                "record {} holds an undecodable envelope: {e}",
                record.sequence
            ))
        })?;
        let mut erased = false;
        if let Some(sealed) = &record.sealed_details {
            match self.keyring.open(sealed).map_err(keys)? {
                Opened::Details(d) => put_details(&mut envelope, d),
                Opened::Erased => erased = true,
            }
        }
        Ok(LoggedEvent {
            sequence: record.sequence,
            recorded_at: Some(handoff_contract::time::from_unix_ms(
                record.recorded_at_unix_ms,
            )),
            hash: record.hash,
            envelope: Some(envelope),
            subject_details_erased: erased,
        })
    }

    /// What `caller` may see of the fields of a case (the one place field policy is applied).
    fn grant(&self, caller: &Caller, view: &CaseView) -> Grant {
        self.fields.grant(caller.kind, view.consent())
    }

    /// The case as `caller` may see it, optionally as it stood after sequence `as_of`.
    /// A case the caller may not see is NOT_FOUND with the same message as a missing one.
    fn visible_case(
        &self,
        caller: &Caller,
        case_id: &str,
        as_of: Option<u64>,
    ) -> Result<CaseView, Status> {
        let not_found = || Status::not_found(format!("no case {case_id}"));
        let current = self
            .log
            .case(case_id)
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let limit = match visibility(&current, &caller.agency, caller.kind) {
            Visibility::Hidden => return Err(not_found()),
            Visibility::Whole => None,
            Visibility::UpTo(until) => Some(until),
        };
        let until = match (limit, as_of) {
            (None, None) => return Ok(current),
            (Some(l), None) | (None, Some(l)) => l,
            (Some(l), Some(a)) => l.min(a),
        };
        if until >= current.last_sequence {
            return Ok(current);
        }
        self.log
            .case_as_of(case_id, until, self.access.registry())
            .map_err(internal)?
            .ok_or_else(not_found)
    }

    fn auditor(&self, caller: &Caller) -> Result<(), Status> {
        if caller.kind != AgencyKind::Auditor {
            return Err(Status::permission_denied(format!(
                "only auditors may read the log, the quarantine and access reports; {} is a {}",
                caller.agency, caller.kind
            )));
        }
        Ok(())
    }
}

/// What a read returned, for the access log.
#[derive(Debug, Default)]
struct Seen {
    cases: Vec<(String, String)>,
    fields: std::collections::BTreeSet<String>,
}

impl Seen {
    fn case(&mut self, view: &CaseView, grant: &Grant) {
        self.cases
            .push((view.case_id.clone(), view.subject_pseudonym.clone()));
        self.fields.extend(grant.names());
    }
}

fn outcome_of(status: &Status) -> String {
    match status.code() {
        tonic::Code::NotFound => "not_found".into(),
        tonic::Code::PermissionDenied => "permission_denied".into(),
        tonic::Code::InvalidArgument => "invalid_argument".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Cases {
    /// Records the read in the access log (flushed), then lets the answer go out.
    /// If the read cannot be recorded, nothing is answered.
    async fn answer<T>(
        &self,
        caller: &Caller,
        rpc: &str,
        purpose: &str,
        query: String,
        asked: &[&str],
        result: Result<(T, Seen), Status>,
    ) -> Result<Response<T>, Status> {
        let (outcome, seen) = match &result {
            Ok((_, seen)) => ("ok".to_string(), Some(seen)),
            Err(status) => (outcome_of(status), None),
        };
        let (case_ids, subjects, fields) = match seen {
            Some(seen) => (
                seen.cases.iter().map(|c| c.0.clone()).collect(),
                seen.cases
                    .iter()
                    .map(|c| c.1.clone())
                    .filter(|s| !s.is_empty())
                    .collect(),
                seen.fields.iter().cloned().collect(),
            ),
            // A refused read is recorded against what was asked for.
            None => (
                asked.iter().map(|c| c.to_string()).collect(),
                Vec::new(),
                Vec::new(),
            ),
        };
        let record = AccessRecord {
            at_unix_ms: now_unix_ms(),
            agency: caller.agency.clone(),
            rpc: rpc.into(),
            case_ids,
            subjects,
            fields,
            purpose: purpose.into(),
            outcome,
            query,
            ..AccessRecord::default()
        };
        record_read(&self.log, record).await?;
        result.map(|(value, _)| Response::new(value))
    }

    fn list(
        &self,
        caller: &Caller,
        req: &ListCasesRequest,
    ) -> Result<(ListCasesResponse, Seen), Status> {
        let filter = CaseFilter {
            status: match CaseStatus::try_from(req.status) {
                Ok(CaseStatus::Unspecified) => None,
                Ok(s) => Some(s),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown status {}",
                        req.status
                    )));
                }
            },
            holder: (!req.holder.is_empty()).then(|| req.holder.clone()),
        };
        let limit = match req.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let registry = self.access.registry();
        let mut seen = Seen::default();
        let (cases, more) = self
            .log
            .list_cases(&req.page_token, limit, |view| {
                // The filter applies to what the caller may see, not to what it may not.
                let visible = match visibility(&view, &caller.agency, caller.kind) {
                    Visibility::Hidden => None,
                    Visibility::Whole => Some(view),
                    Visibility::UpTo(until) => {
                        self.log.case_as_of(&view.case_id, until, registry)?
                    }
                };
                Ok(visible.filter(|v| filter.matches(v)))
            })
            .map_err(internal)?;
        let cases = cases
            .into_iter()
            .map(|mut v| {
                self.open_view(&mut v)?;
                let grant = self.grant(caller, &v);
                grant.redact_case(&mut v);
                seen.case(&v, &grant);
                Ok(v)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let next_page_token = match (more, cases.last()) {
            (true, Some(last)) => last.case_id.clone(),
            _ => String::new(),
        };
        Ok((
            ListCasesResponse {
                cases,
                next_page_token,
            },
            seen,
        ))
    }

    fn history(
        &self,
        caller: &Caller,
        case_id: &str,
    ) -> Result<(CaseHistoryResponse, Seen), Status> {
        let visible = self.visible_case(caller, case_id, None)?;
        let grant = self.grant(caller, &visible);
        let mut seen = Seen::default();
        seen.case(&visible, &grant);
        let records = self.log.case_records(case_id).map_err(internal)?;
        let events = records
            .into_iter()
            .take_while(|r| r.sequence <= visible.last_sequence)
            .map(|r| {
                let mut event = self.open_event(r)?;
                if let Some(envelope) = event.envelope.as_mut() {
                    grant.redact_event(envelope);
                }
                Ok(event)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok((CaseHistoryResponse { events }, seen))
    }

    fn one_case(
        &self,
        caller: &Caller,
        case_id: &str,
        as_of: Option<u64>,
    ) -> Result<(CaseView, Seen), Status> {
        let mut view = self.visible_case(caller, case_id, as_of)?;
        self.open_view(&mut view)?;
        let grant = self.grant(caller, &view);
        grant.redact_case(&mut view);
        let mut seen = Seen::default();
        seen.case(&view, &grant);
        Ok((view, seen))
    }

    fn inbox_of(&self, caller: &Caller, asked: &str) -> Result<(InboxResponse, Seen), Status> {
        if !asked.is_empty() && asked != caller.agency {
            return Err(Status::permission_denied(format!(
                "{} may read only its own inbox, not {asked}'s",
                caller.agency
            )));
        }
        let mut seen = Seen::default();
        let mut items = self.log.inbox(&caller.agency).map_err(internal)?;
        // Cases it holds whose subject it has not reached yet: first contact is due.
        let (held, _) = self
            .log
            .list_cases("", usize::MAX, |v| {
                let due = v.holder == caller.agency
                    && handoff_domain::sla::first_contact_item(&v).is_some();
                Ok(due.then_some(v))
            })
            .map_err(internal)?;
        items.extend(
            held.iter()
                .filter_map(handoff_domain::sla::first_contact_item),
        );
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for item in &mut items {
            let view = self
                .log
                .case(&item.case_id)
                .map_err(internal)?
                .unwrap_or_default();
            handoff_domain::sla::apply(item, &view, self.access.registry(), &self.sla, now_ms);
            let grant = self.fields.grant(caller.kind, view.consent());
            if !grant.allows(handoff_domain::policy::FieldGroup::Reasons) {
                item.reason.clear();
            }
            seen.cases
                .push((item.case_id.clone(), item.subject_pseudonym.clone()));
            seen.fields
                .extend(grant.names().into_iter().filter(|n| n == "reasons"));
        }
        Ok((InboxResponse { items }, seen))
    }

    fn access_report(
        &self,
        req: &AccessReportRequest,
    ) -> Result<(AccessReportResponse, Seen), Status> {
        let asked = (
            !req.case_id.is_empty(),
            !req.subject_pseudonym.is_empty(),
            !req.agency.is_empty(),
        );
        let records = match asked {
            (true, false, false) => self.log.access().report(&req.case_id, false),
            (false, true, false) => self.log.access().report(&req.subject_pseudonym, true),
            (false, false, true) => self.log.access().report_by_agency(&req.agency),
            _ => {
                return Err(Status::invalid_argument(
                    "give exactly one of case_id, subject_pseudonym or agency",
                ));
            }
        }
        .map_err(internal)?;
        Ok((AccessReportResponse { records }, Seen::default()))
    }

    /// Everything held about one subject, details opened, and every read of it.
    fn subject_report(&self, subject: &str) -> Result<(SubjectReport, Seen), Status> {
        let (mut cases, _) = self
            .log
            .list_cases("", usize::MAX, |v| {
                Ok((v.subject_pseudonym == subject).then_some(v))
            })
            .map_err(internal)?;
        let mut seen = Seen::default();
        let mut events = Vec::new();
        for case in &mut cases {
            self.open_view(case)?;
            seen.cases
                .push((case.case_id.clone(), case.subject_pseudonym.clone()));
            for record in self.log.case_records(&case.case_id).map_err(internal)? {
                events.push(self.open_event(record)?);
            }
        }
        seen.fields
            .extend(handoff_domain::policy::FieldGroup::ALL.map(|g| g.as_str().to_string()));
        events.sort_by_key(|e| e.sequence);
        let mut quarantined = Vec::new();
        let mut after = 0;
        loop {
            let page = self.log.quarantine(after, 1000).map_err(internal)?;
            let Some(last) = page.last() else { break };
            after = last.stream_sequence;
            for mut entry in page {
                let envelope = Envelope::decode(entry.raw.as_slice()).ok();
                let names_subject = envelope
                    .as_ref()
                    .is_some_and(|e| e.subject_pseudonym == subject)
                    || entry
                        .sealed_details
                        .as_ref()
                        .is_some_and(|d| d.subject_pseudonym == subject);
                if !names_subject {
                    continue;
                }
                if let (Some(mut envelope), Some(sealed)) = (envelope, entry.sealed_details.take())
                {
                    match self.keyring.open(&sealed).map_err(keys)? {
                        Opened::Details(d) => {
                            put_details(&mut envelope, d);
                            entry.raw = envelope.encode_to_vec();
                        }
                        Opened::Erased => entry.sealed_details = Some(sealed),
                    }
                }
                quarantined.push(entry);
            }
        }
        let accesses = self.log.access().report(subject, true).map_err(internal)?;
        let erasure = self.keyring.erasure(subject).map_err(keys)?;
        let report = SubjectReport {
            subject_pseudonym: subject.to_string(),
            produced_at: Some(handoff_contract::time::from_unix_ms(now_unix_ms())),
            cases,
            events,
            quarantined,
            accesses,
            erased: erasure.is_some(),
            erasure_reason: erasure
                .as_ref()
                .map(|e| e.reason.clone())
                .unwrap_or_default(),
            erased_at: erasure.map(|e| handoff_contract::time::from_unix_ms(e.at_unix_ms)),
        };
        if seen.cases.is_empty() {
            seen.cases.push((String::new(), subject.to_string()));
        }
        Ok((report, seen))
    }
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Cases {
    /// Streams what `caller` may see of each case change after `req.after_sequence`:
    /// first the log so far, then live as batches commit. Ends when the client goes away.
    async fn watch(
        &self,
        caller: Caller,
        req: WatchCasesRequest,
        tx: &tokio::sync::mpsc::Sender<Result<CaseUpdate, Status>>,
    ) -> Result<(), Status> {
        let registry = self.access.registry();
        let mut head = self.log.watch_head();
        let mut views: std::collections::HashMap<String, CaseView> = Default::default();
        let mut next = req.after_sequence + 1;
        loop {
            let upto = *head.borrow_and_update();
            while next <= upto {
                let record = self
                    .log
                    .record(next)
                    .map_err(internal)?
                    .ok_or_else(|| Status::internal(format!("record {next} is missing")))?;
                let envelope = Envelope::decode(record.envelope.as_slice())
                    .map_err(|e| Status::internal(e.to_string()))?;
                if envelope.source_agency == handoff_contract::names::EXCHANGE_SOURCE {
                    // A subject-wide erasure changes no case's facts.
                    next += 1;
                    continue;
                }
                let before = match views.remove(&envelope.case_id) {
                    Some(v) => Some(v),
                    None => self
                        .log
                        .case_as_of(&envelope.case_id, next - 1, registry)
                        .map_err(internal)?,
                };
                let at = handoff_domain::Position {
                    sequence: next,
                    recorded_at_ms: record.recorded_at_unix_ms,
                };
                let mut after = handoff_domain::evolve(before.as_ref(), &envelope, registry, at)
                    .map_err(|r| {
                        Status::internal(format!("replay of record {next} diverged: {r}"))
                    })?;
                handoff_log::attach_sealed_details(&mut after, record.sealed_details.as_ref());
                let shown = match visibility(&after, &caller.agency, caller.kind) {
                    Visibility::Whole => true,
                    Visibility::UpTo(limit) => next <= limit,
                    Visibility::Hidden => false,
                };
                if shown {
                    let mut case = after.clone();
                    self.open_view(&mut case)?;
                    let grant = self.grant(&caller, &case);
                    grant.redact_case(&mut case);
                    let mut seen = Seen::default();
                    seen.case(&case, &grant);
                    let update = CaseUpdate {
                        sequence: next,
                        event_type: envelope
                            .event
                            .as_ref()
                            .map(handoff_contract::names::event_type)
                            .unwrap_or_default()
                            .into(),
                        case: Some(case),
                    };
                    let query = format!("after_sequence={} update={next}", req.after_sequence);
                    let answered = self
                        .answer(
                            &caller,
                            "WatchCases",
                            &req.purpose,
                            query,
                            &[],
                            Ok((update, seen)),
                        )
                        .await?;
                    if tx.send(Ok(answered.into_inner())).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
                views.insert(envelope.case_id, after);
                next += 1;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Ok(()) },
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

#[tonic::async_trait]
impl CasesApi for Cases {
    async fn get_case(
        &self,
        request: Request<GetCaseRequest>,
    ) -> Result<Response<CaseView>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result =
            required("case_id", &req.case_id).and_then(|id| self.one_case(&caller, id, None));
        self.answer(
            &caller,
            "GetCase",
            &req.purpose,
            String::new(),
            &[&req.case_id],
            result,
        )
        .await
    }

    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let query = format!(
            "status={} holder={:?} page_token={:?}",
            req.status, req.holder, req.page_token
        );
        let result = self.list(&caller, &req);
        self.answer(&caller, "ListCases", &req.purpose, query, &[], result)
            .await
    }

    async fn inbox(
        &self,
        request: Request<InboxRequest>,
    ) -> Result<Response<InboxResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = self.inbox_of(&caller, &req.agency);
        self.answer(
            &caller,
            "Inbox",
            &req.purpose,
            format!("agency={:?}", req.agency),
            &[],
            result,
        )
        .await
    }

    async fn case_history(
        &self,
        request: Request<CaseHistoryRequest>,
    ) -> Result<Response<CaseHistoryResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = required("case_id", &req.case_id).and_then(|id| self.history(&caller, id));
        self.answer(
            &caller,
            "CaseHistory",
            &req.purpose,
            String::new(),
            &[&req.case_id],
            result,
        )
        .await
    }

    async fn get_case_as_of(
        &self,
        request: Request<GetCaseAsOfRequest>,
    ) -> Result<Response<CaseView>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = required("case_id", &req.case_id).and_then(|case_id| {
            let until = match (req.as_of_sequence, &req.as_of_time) {
                (0, Some(t)) => self
                    .log
                    .case_sequence_at(case_id, handoff_contract::time::to_unix_ms(t))
                    .map_err(internal)?,
                (0, None) => {
                    return Err(Status::invalid_argument(
                        "give as_of_sequence or as_of_time",
                    ));
                }
                (seq, _) => seq,
            };
            self.one_case(&caller, case_id, Some(until))
        });
        let query = format!(
            "as_of_sequence={} as_of_time={:?}",
            req.as_of_sequence,
            req.as_of_time.map(|t| t.to_string())
        );
        self.answer(
            &caller,
            "GetCaseAsOf",
            &req.purpose,
            query,
            &[&req.case_id],
            result,
        )
        .await
    }

    type WatchCasesStream = ReceiverStream<Result<CaseUpdate, Status>>;

    async fn watch_cases(
        &self,
        request: Request<WatchCasesRequest>,
    ) -> Result<Response<Self::WatchCasesStream>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let cases = self.clone();
        tokio::spawn(async move {
            if let Err(status) = cases.watch(caller, req, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ReadLogStream = ReceiverStream<Result<LogRecord, Status>>;

    async fn read_log(
        &self,
        request: Request<ReadLogRequest>,
    ) -> Result<Response<Self::ReadLogStream>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let query = format!("from={} to={}", req.from_sequence, req.to_sequence);
        let allowed = self.auditor(&caller).map(|()| ((), Seen::default()));
        self.answer(&caller, "ReadLog", "", query, &[], allowed)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let log = self.log.clone();
        // sled iteration blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            for item in log.records(req.from_sequence, req.to_sequence) {
                let item = item.map_err(internal);
                let stop = item.is_err();
                if tx.blocking_send(item).is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_quarantine(
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
            Ok((ListQuarantineResponse { entries }, Seen::default()))
        });
        let query = format!("after={} limit={limit}", req.after_stream_sequence);
        self.answer(&caller, "ListQuarantine", "", query, &[], result)
            .await
    }

    async fn get_log_head(
        &self,
        request: Request<LogHeadRequest>,
    ) -> Result<Response<LogHead>, Status> {
        // The head carries no case data; it is not an access to personal data.
        self.access.caller(&request)?;
        let head = self.log.head();
        Ok(Response::new(LogHead {
            sequence: head.sequence,
            hash: head.hash.to_vec(),
            stream_position: head.stream_position,
            quarantined: head.quarantined,
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<Checkpoint>, Status> {
        // A checkpoint carries no case data: any registered agency may compare heads.
        self.access.caller(&request)?;
        let head = self.log.head();
        let recorded_at = match head.sequence {
            0 => 0,
            seq => self
                .log
                .record(seq)
                .map_err(internal)?
                .map_or(0, |r| r.recorded_at_unix_ms),
        };
        Ok(Response::new(self.key.checkpoint(
            head.sequence,
            &head.hash,
            recorded_at,
        )))
    }

    async fn get_projection_digest(
        &self,
        request: Request<ProjectionDigestRequest>,
    ) -> Result<Response<ProjectionDigest>, Status> {
        let caller = self.access.caller(&request)?;
        self.auditor(&caller)?;
        // Ingest may commit meanwhile: take the digest between two equal heads.
        for _ in 0..10 {
            let before = self.log.head().sequence;
            let digest = self.log.projection_digest().map_err(internal)?;
            if self.log.head().sequence == before {
                return Ok(Response::new(ProjectionDigest {
                    sequence: before,
                    digest: digest.to_vec(),
                }));
            }
        }
        Err(Status::unavailable("the log keeps moving; try again"))
    }

    async fn access_report(
        &self,
        request: Request<AccessReportRequest>,
    ) -> Result<Response<AccessReportResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = self
            .auditor(&caller)
            .and_then(|()| self.access_report(&req));
        let query = format!(
            "case_id={:?} subject={:?} agency={:?}",
            req.case_id, req.subject_pseudonym, req.agency
        );
        self.answer(&caller, "AccessReport", &req.purpose, query, &[], result)
            .await
    }

    async fn subject_report(
        &self,
        request: Request<SubjectReportRequest>,
    ) -> Result<Response<SubjectReport>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = self.auditor(&caller).and_then(|()| {
            required("subject_pseudonym", &req.subject_pseudonym)
                .and_then(|s| self.subject_report(s))
        });
        let query = format!("subject={:?}", req.subject_pseudonym);
        self.answer(&caller, "SubjectReport", &req.purpose, query, &[], result)
            .await
    }
}

/// Why the query server stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Binding or serving failed.
    #[error("gRPC server on {addr}: {source}")]
    Transport {
        /// The listen address.
        addr: String,
        /// What tonic said.
        source: tonic::transport::Error,
    },
    /// Reflection could not be set up from the compiled descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// PEM material for mTLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA that signs agency client certificates.
    pub ca: Vec<u8>,
    /// Server certificate chain.
    pub cert: Vec<u8>,
    /// Server private key.
    pub key: Vec<u8>,
}

/// What the query server serves, to whom, and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The registered agencies (callers are mapped to these).
    pub registry: Registry,
    /// Agencies whose certificates are refused.
    pub revoked: Vec<String>,
    /// Field groups each kind of agency may see.
    pub fields: FieldPolicy,
    /// Deadlines shown in inboxes.
    pub sla: handoff_domain::sla::SlaRules,
    /// The exchange's signing key, for checkpoints.
    pub key: std::sync::Arc<handoff_audit::ExchangeKey>,
    /// The subjects' data keys, to open personal details for callers allowed them.
    pub keyring: std::sync::Arc<Keyring>,
    /// mTLS; without it every caller is anonymous and refused.
    pub tls: Option<TlsFiles>,
    /// Per-call metrics (`handoff_rpc_*`); registered by the caller, or `default()`.
    pub rpc_metrics: RpcMetrics,
    /// Statistics withhold counts (and medians over fewer cases) below this.
    pub suppress_below: u32,
}

/// Serves `Cases`, health and reflection on `listener` until `shutdown` resolves.
///
/// Health: `handoff.v1.Cases` is SERVING while this server runs; the overall
/// service (`""`) follows `ingest_healthy`, so a load balancer or operator
/// sees when the exchange is not taking in events.
/// Appends a read to the access log and flushes it; if that fails, the read is not
/// answered (principle 6: every read is on record before anything leaves).
pub(crate) async fn record_read(log: &Log, record: AccessRecord) -> Result<(), Status> {
    log.access().record(record).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "a read could not be recorded and is not answered");
        Status::unavailable(format!(
            "the access log cannot be written, so nothing is answered: {e}"
        ))
    })
}

pub async fn serve(
    listener: TcpListener,
    log: Log,
    options: ServeOptions,
    mut ingest_healthy: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), QueryError> {
    let addr = listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    let transport = |source| QueryError::Transport {
        addr: addr.clone(),
        source,
    };
    let mut builder =
        tonic::transport::Server::builder().layer(RpcMetricsLayer(options.rpc_metrics.clone()));
    if let Some(tls) = &options.tls {
        // Client certificates are checked against the CA in the handshake; whether one was
        // presented, and whose it is, is decided per request so the refusal is UNAUTHENTICATED.
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca))
            .client_auth_optional(true);
        builder = builder.tls_config(config).map_err(transport)?;
    } else {
        tracing::warn!("no [query.tls]: callers have no identity, every case read is refused");
    }
    let access = Access::new(options.registry, options.revoked);
    let (fields, sla, key, keyring) = (options.fields, options.sla, options.key, options.keyring);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CasesServer<Cases>>().await;
    let overall = health.clone();
    tokio::spawn(async move {
        loop {
            let status = if *ingest_healthy.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            overall.set_service_status("", status).await;
            if ingest_healthy.changed().await.is_err() {
                break;
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(handoff_contract::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tracing::info!(%addr, "query service listening");
    let result =
        builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(
                handoff_contract::v1::directory_server::DirectoryServer::new(
                    directory::Directory::new(log.clone(), access.clone()),
                ),
            )
            .add_service(
                handoff_contract::v1::statistics_server::StatisticsServer::new(
                    stats::Statistics::new(log.clone(), access.clone(), options.suppress_below),
                ),
            )
            .add_service(CasesServer::new(Cases::new(
                log, access, fields, sla, key, keyring,
            )))
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a reply split over several writes waits for the
                // client's delayed ACK: ~40 ms on every GetCase.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
    result.map_err(transport)
}
