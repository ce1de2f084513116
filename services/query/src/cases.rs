//! The `handoff.v1.CasesService` service: case views, inboxes and histories for the
//! partners with a part in them, redacted by field policy, each read recorded
//! before it is answered. Bulk reads (the watch, the log, the quarantine) are in
//! `bulk.rs`, auditors' reports in `reports.rs`.
//!
//! Current rights govern every read: whether the caller may see a case, and
//! which of its fields, is decided by the caller and the case as they stand
//! now, also when the case is shown as it stood at an earlier sequence.

use std::collections::BTreeSet;

use handoff_contract::v1::cases_service_server::CasesService as CasesApi;
use handoff_contract::v1::*;
use handoff_domain::limits::{ID, KEPT_TEXT, REQUEST_PURPOSE, bounded};
use handoff_domain::policy::{FieldPolicy, Grant};
use handoff_domain::{AgencyKind, Visibility, visibility};
use handoff_keyring::{Keyring, Opened};

use crate::private_text::{TextSource, resolve};
use handoff_domain::private::{clear_references, put_private};
use handoff_log::{CaseFilter, Log};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::identity::{Access, Caller};
use crate::{
    DEFAULT_PAGE, MAX_PAGE, internal, keys, now_unix_ms, outcome_of, record_read, required,
};

/// The `handoff.v1.CasesService` service over a log.
#[derive(Debug, Clone)]
pub struct Cases {
    pub(crate) log: Log,
    pub(crate) access: Access,
    fields: std::sync::Arc<FieldPolicy>,
    sla: handoff_domain::sla::SlaRules,
    pub(crate) key: std::sync::Arc<handoff_audit::ExchangeKey>,
    pub(crate) keyring: std::sync::Arc<Keyring>,
}

/// A case as a caller may see it, with the consent that governs its fields now.
pub(crate) struct Visible {
    pub(crate) view: CaseView,
    pub(crate) consent: ConsentState,
}

/// What a read returned, for the access log.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) cases: Vec<(String, String)>,
    pub(crate) fields: BTreeSet<String>,
}

impl Seen {
    pub(crate) fn case(&mut self, view: &CaseView, grant: &Grant) {
        self.cases
            .push((view.case_id.clone(), view.subject_pseudonym.clone()));
        self.fields.extend(grant.names());
    }
}

/// Checks every string field of a request against its limit (INVALID_ARGUMENT).
pub(crate) fn within_limits<M: Message>(request: &M, full_name: &str) -> Result<(), Status> {
    handoff_domain::limits::check_request(full_name, &request.encode_to_vec())
        .map_err(|e| Status::invalid_argument(e.to_string()))
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

    /// Sets the repeat flags from all of the subject's cases, as recorded by the view's
    /// own time (a view of the past shows the flags of then).
    fn repeat_flags(&self, view: &mut CaseView) -> Result<(), Status> {
        if view.incidents.is_empty() && view.evictions.is_empty() {
            return Ok(());
        }
        let mut cases = vec![CaseView {
            incidents: view.incidents.clone(),
            evictions: view.evictions.clone(),
            ..CaseView::default()
        }];
        for id in self
            .log
            .subject_cases(&view.subject_pseudonym)
            .map_err(internal)?
        {
            if id != view.case_id
                && let Some(other) = self.log.case(&id).map_err(internal)?
            {
                cases.push(other);
            }
        }
        let until = view
            .updated_at
            .as_ref()
            .map_or(i64::MAX, handoff_contract::time::to_unix_ms);
        let flags = handoff_domain::repeat::flags(&cases, until);
        view.reported_again = flags.reported_again;
        view.evicted_again = flags.evicted_again;
        view.several_endangered = flags.several_endangered;
        Ok(())
    }

    /// Opens a view's sealed personal details (or marks them erased) and its sealed free
    /// text. Runs before the field policy, which then removes what callers may not see.
    pub(crate) fn open_view(&self, view: &mut CaseView) -> Result<(), Status> {
        handoff_domain::statutory::apply_to_view(view, &self.sla.statutory, now_unix_ms());
        self.repeat_flags(view)?;
        if let Some(sealed) = view.sealed_subject_details.take() {
            match self.keyring.open(&sealed).map_err(keys)? {
                Opened::Private(p) => view.subject_details = p.details,
                Opened::Erased => view.subject_details_erased = true,
            }
        }
        resolve(
            view,
            "handoff.v1.CaseView",
            &mut TextSource::new(&self.log, &self.keyring),
        )?;
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
    pub(crate) fn open_event(&self, record: LogRecord) -> Result<LoggedEvent, Status> {
        let mut envelope = Envelope::decode(record.envelope.as_slice()).map_err(|e| {
            Status::internal(format!(
                "record {} holds an undecodable envelope: {e}",
                record.sequence
            ))
        })?;
        let mut erased = false;
        if let Some(sealed) = &record.sealed_details {
            match self.keyring.open(sealed).map_err(keys)? {
                Opened::Private(parts) => {
                    if put_private(&mut envelope, parts).is_err() {
                        return Err(Status::internal(format!(
                            "record {}'s sealed parts do not fit its envelope",
                            record.sequence
                        )));
                    }
                }
                Opened::Erased => {
                    erased = sealed.has_details;
                    clear_references(&mut envelope);
                }
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

    /// What `caller` may see of the fields of `case` (its side of the episode) whose
    /// subject's consent stands at `consent` now (the one place field policy is applied).
    pub(crate) fn grant(&self, caller: &Caller, consent: ConsentState, case: &CaseView) -> Grant {
        self.fields
            .grant(caller.kind, consent, handoff_domain::policy::Side::of(case))
    }

    /// How much of a case, as it stands now, `caller` may see: `None` is nothing.
    pub(crate) fn limit_of(current: &CaseView, caller: &Caller) -> Option<Option<u64>> {
        match visibility(current, &caller.agency, caller.kind) {
            Visibility::Hidden => None,
            Visibility::Whole => Some(None),
            Visibility::UpTo(until) => Some(Some(until)),
        }
    }

    /// The case as `caller` may see it, optionally as it stood after sequence `as_of`.
    /// A case the caller may not see is NOT_FOUND with the same message as a missing one.
    pub(crate) fn visible_case(
        &self,
        caller: &Caller,
        case_id: &str,
        as_of: Option<u64>,
    ) -> Result<Visible, Status> {
        let not_found = || Status::not_found(format!("no case {case_id}"));
        let current = self
            .log
            .case(case_id)
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let consent = current.consent();
        let limit = Self::limit_of(&current, caller).ok_or_else(not_found)?;
        let until = match (limit, as_of) {
            (None, None) => {
                return Ok(Visible {
                    view: current,
                    consent,
                });
            }
            (Some(l), None) | (None, Some(l)) => l,
            (Some(l), Some(a)) => l.min(a),
        };
        if until >= current.last_sequence {
            return Ok(Visible {
                view: current,
                consent,
            });
        }
        let view = self
            .log
            .case_as_of(case_id, until, self.access.registry())
            .map_err(internal)?
            .ok_or_else(not_found)?;
        Ok(Visible { view, consent })
    }

    pub(crate) fn auditor(&self, caller: &Caller) -> Result<(), Status> {
        if caller.kind != AgencyKind::Auditor {
            return Err(Status::permission_denied(format!(
                "only auditors may read the log, the quarantine and access reports; {} is a {}",
                caller.agency, caller.kind
            )));
        }
        Ok(())
    }

    /// Records the read in the access log (durably), then lets the answer go out.
    /// If the read cannot be recorded, nothing is answered. Everything recorded is
    /// bounded, whatever the request carried.
    pub(crate) async fn answer<T>(
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
            Some(seen) => {
                let mut subjects: Vec<String> = seen
                    .cases
                    .iter()
                    .map(|c| c.1.clone())
                    .filter(|s| !s.is_empty())
                    .collect();
                subjects.sort();
                subjects.dedup();
                let mut cases: Vec<String> = seen
                    .cases
                    .iter()
                    .map(|c| c.0.clone())
                    .filter(|c| !c.is_empty())
                    .collect();
                cases.sort();
                cases.dedup();
                (cases, subjects, seen.fields.iter().cloned().collect())
            }
            // A refused read is recorded against what was asked for.
            None => (
                asked
                    .iter()
                    .filter(|c| !c.is_empty())
                    .map(|c| bounded(c, ID))
                    .collect(),
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
            purpose: bounded(purpose, REQUEST_PURPOSE),
            outcome,
            query: bounded(&query, KEPT_TEXT),
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
        let mut consents = Vec::new();
        let (cases, more) = self
            .log
            .list_cases(&req.page_token, limit, |view| {
                // The filter applies to what the caller may see, not to what it may not.
                let consent = view.consent();
                let visible = match Self::limit_of(&view, caller) {
                    None => None,
                    Some(None) => Some(view),
                    Some(Some(until)) => self.log.case_as_of(&view.case_id, until, registry)?,
                };
                let visible = visible.filter(|v| filter.matches(v));
                if visible.is_some() {
                    consents.push(consent);
                }
                Ok(visible)
            })
            .map_err(internal)?;
        let cases = cases
            .into_iter()
            .zip(consents)
            .map(|(mut v, consent)| {
                self.open_view(&mut v)?;
                let grant = self.grant(caller, consent, &v);
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
        let Visible { view, consent } = self.visible_case(caller, case_id, None)?;
        let grant = self.grant(caller, consent, &view);
        let mut seen = Seen::default();
        seen.case(&view, &grant);
        let records = self.log.case_records(case_id).map_err(internal)?;
        let events = records
            .into_iter()
            .take_while(|r| r.sequence <= view.last_sequence)
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
        let Visible { mut view, consent } = self.visible_case(caller, case_id, as_of)?;
        self.open_view(&mut view)?;
        let grant = self.grant(caller, consent, &view);
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
        let now_ms = now_unix_ms();
        // What is worked out at read time: first contacts due, statutory duties, notices.
        self.log
            .list_cases("", usize::MAX, |v| {
                items.extend(
                    handoff_domain::sla::due_items(&v, &self.sla, now_ms)
                        .into_iter()
                        .filter(|i| i.to_agency == caller.agency),
                );
                Ok(None)
            })
            .map_err(internal)?;
        let mut text = TextSource::new(&self.log, &self.keyring);
        for item in &mut items {
            let view = self
                .log
                .case(&item.case_id)
                .map_err(internal)?
                .unwrap_or_default();
            handoff_domain::sla::apply(item, &view, self.access.registry(), &self.sla, now_ms);
            let grant = self.grant(caller, view.consent(), &view);
            if !grant.allows(handoff_domain::policy::FieldGroup::Reasons) {
                item.reason.clear();
            }
            resolve(item, "handoff.v1.InboxItem", &mut text)?;
            seen.cases
                .push((item.case_id.clone(), item.subject_pseudonym.clone()));
            seen.fields
                .extend(grant.names().into_iter().filter(|n| n == "reasons"));
        }
        Ok((InboxResponse { items }, seen))
    }
}

#[tonic::async_trait]
impl CasesApi for Cases {
    async fn get_case(
        &self,
        request: Request<GetCaseRequest>,
    ) -> Result<Response<GetCaseResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = within_limits(&req, "handoff.v1.GetCaseRequest")
            .and_then(|()| required("case_id", &req.case_id))
            .and_then(|id| self.one_case(&caller, id, None))
            .map(|(case, seen)| (GetCaseResponse { case: Some(case) }, seen));
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
        let result = within_limits(&req, "handoff.v1.ListCasesRequest")
            .and_then(|()| self.list(&caller, &req));
        self.answer(&caller, "ListCases", &req.purpose, query, &[], result)
            .await
    }

    async fn inbox(
        &self,
        request: Request<InboxRequest>,
    ) -> Result<Response<InboxResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = within_limits(&req, "handoff.v1.InboxRequest")
            .and_then(|()| self.inbox_of(&caller, &req.agency));
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
        let result = within_limits(&req, "handoff.v1.CaseHistoryRequest")
            .and_then(|()| required("case_id", &req.case_id))
            .and_then(|id| self.history(&caller, id));
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
    ) -> Result<Response<GetCaseAsOfResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = within_limits(&req, "handoff.v1.GetCaseAsOfRequest")
            .and_then(|()| required("case_id", &req.case_id))
            .and_then(|case_id| {
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
            })
            .map(|(case, seen)| (GetCaseAsOfResponse { case: Some(case) }, seen));
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

    type WatchCasesStream = ReceiverStream<Result<WatchCasesResponse, Status>>;

    async fn watch_cases(
        &self,
        request: Request<WatchCasesRequest>,
    ) -> Result<Response<Self::WatchCasesStream>, Status> {
        self.watch_cases_stream(request).await
    }

    type ReadLogStream = ReceiverStream<Result<ReadLogResponse, Status>>;

    async fn read_log(
        &self,
        request: Request<ReadLogRequest>,
    ) -> Result<Response<Self::ReadLogStream>, Status> {
        self.read_log_stream(request).await
    }

    async fn list_quarantine(
        &self,
        request: Request<ListQuarantineRequest>,
    ) -> Result<Response<ListQuarantineResponse>, Status> {
        self.list_quarantine_page(request).await
    }

    async fn get_log_head(
        &self,
        request: Request<GetLogHeadRequest>,
    ) -> Result<Response<GetLogHeadResponse>, Status> {
        // The head carries no case data; it is not an access to personal data. How far
        // other agencies' ingress streams were read is theirs: an agency sees its own.
        let caller = self.access.caller(&request)?;
        // Positions first, then the head: the head then includes everything they say
        // is decided (the log updates the head before the positions).
        let ingress = self
            .log
            .ingress_positions()
            .map_err(internal)?
            .into_iter()
            .filter(|(agency, _)| caller.kind == AgencyKind::Auditor || *agency == caller.agency)
            .map(|(agency, sequence)| IngressPosition { agency, sequence })
            .collect();
        let head = self.log.head();
        Ok(Response::new(GetLogHeadResponse {
            head: Some(LogHead {
                sequence: head.sequence,
                hash: head.hash.to_vec(),
                stream_position: head.stream_position,
                quarantined: head.quarantined,
                ingress,
            }),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
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
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(self.key.checkpoint(head.sequence, &head.hash, recorded_at)),
        }))
    }

    async fn get_projection_digest(
        &self,
        request: Request<GetProjectionDigestRequest>,
    ) -> Result<Response<GetProjectionDigestResponse>, Status> {
        let caller = self.access.caller(&request)?;
        self.auditor(&caller)?;
        // Ingest may commit meanwhile: take the digest between two equal heads.
        for _ in 0..10 {
            let before = self.log.head().sequence;
            let digest = self.log.projection_digest().map_err(internal)?;
            if self.log.head().sequence == before {
                return Ok(Response::new(GetProjectionDigestResponse {
                    digest: Some(ProjectionDigest {
                        sequence: before,
                        digest: digest.to_vec(),
                    }),
                }));
            }
        }
        Err(Status::unavailable("the log keeps moving; try again"))
    }

    async fn access_report(
        &self,
        request: Request<AccessReportRequest>,
    ) -> Result<Response<AccessReportResponse>, Status> {
        self.access_report_of(request).await
    }

    async fn subject_report(
        &self,
        request: Request<SubjectReportRequest>,
    ) -> Result<Response<SubjectReportResponse>, Status> {
        let report = self.subject_report_of(request).await?;
        Ok(report.map(|report| SubjectReportResponse {
            report: Some(report),
        }))
    }

    async fn get_case_fhir(
        &self,
        request: Request<GetCaseFhirRequest>,
    ) -> Result<Response<GetCaseFhirResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        // The same view GetCase answers (need to know, field policy), then mapped:
        // the export shows nothing GetCase would not, and is recorded as a read.
        let result = within_limits(&req, "handoff.v1.GetCaseFhirRequest")
            .and_then(|()| required("case_id", &req.case_id))
            .and_then(|id| self.one_case(&caller, id, None))
            .map(|(case, seen)| {
                let bundle = crate::fhir::case_bundle(&case).to_string();
                (
                    GetCaseFhirResponse {
                        bundle_json: bundle,
                    },
                    seen,
                )
            });
        self.answer(
            &caller,
            "GetCaseFhir",
            &req.purpose,
            String::new(),
            &[&req.case_id],
            result,
        )
        .await
    }
}
