//! Auditors' reports: who read what (AccessReport) and everything held about
//! one subject (SubjectReport), each itself recorded as a read of what it names.

use handoff_contract::v1::*;
use handoff_domain::private::put_private;
use handoff_keyring::Opened;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::cases::{Cases, Seen, within_limits};
use crate::{internal, keys, now_unix_ms, required};

impl Cases {
    pub(crate) async fn access_report_of(
        &self,
        request: Request<AccessReportRequest>,
    ) -> Result<Response<AccessReportResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = within_limits(&req, "handoff.v1.AccessReportRequest")
            .and_then(|()| self.auditor(&caller))
            .and_then(|()| self.access_report(&req));
        let query = format!(
            "case_id={:?} subject={:?} agency={:?}",
            req.case_id, req.subject_pseudonym, req.agency
        );
        self.answer(&caller, "AccessReport", &req.purpose, query, &[], result)
            .await
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
        // Who read a case is about that case: the report is recorded against it.
        let mut seen = Seen::default();
        seen.cases
            .push((req.case_id.clone(), req.subject_pseudonym.clone()));
        seen.fields.insert("access_records".into());
        Ok((AccessReportResponse { records }, seen))
    }

    pub(crate) async fn subject_report_of(
        &self,
        request: Request<SubjectReportRequest>,
    ) -> Result<Response<SubjectReport>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = within_limits(&req, "handoff.v1.SubjectReportRequest")
            .and_then(|()| self.auditor(&caller))
            .and_then(|()| {
                required("subject_pseudonym", &req.subject_pseudonym)
                    .and_then(|s| self.subject_report(s))
            });
        let query = format!("subject={:?}", req.subject_pseudonym);
        self.answer(&caller, "SubjectReport", &req.purpose, query, &[], result)
            .await
    }

    /// Everything held about one subject, details opened, and every read of it.
    fn subject_report(&self, subject: &str) -> Result<(SubjectReport, Seen), Status> {
        let mut cases = Vec::new();
        for case_id in self.log.subject_cases(subject).map_err(internal)? {
            if let Some(view) = self.log.case(&case_id).map_err(internal)? {
                cases.push(view);
            }
        }
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
                        Opened::Private(parts) => {
                            if put_private(&mut envelope, parts).is_ok() {
                                entry.raw = envelope.encode_to_vec();
                            }
                        }
                        Opened::Erased => entry.sealed_details = Some(sealed),
                    }
                }
                quarantined.push(entry);
            }
        }
        let accesses = self.log.access().report(subject, true).map_err(internal)?;
        let erasure = self.keyring.erasure(subject).map_err(keys)?;
        let agency_erasures = self
            .keyring
            .agency_erasures(subject)
            .map_err(keys)?
            .into_iter()
            .map(|(agency, e)| AgencyErasure {
                agency,
                reason: e.reason,
                erased_at: Some(handoff_contract::time::from_unix_ms(e.at_unix_ms)),
            })
            .collect();
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
            agency_erasures,
        };
        if seen.cases.is_empty() {
            seen.cases.push((String::new(), subject.to_string()));
        }
        Ok((report, seen))
    }
}
