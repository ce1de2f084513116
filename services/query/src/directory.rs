//! The `handoff.v1.DirectoryService` service: the current service listings, as the
//! log's directory projection holds them. Public information about
//! organisations (no personal data), so any registered caller may read it;
//! the read is still recorded in the access log, like every other read.

use handoff_contract::v1::directory_service_server::DirectoryService as DirectoryApi;
use handoff_contract::v1::{
    AccessRecord, ListServicesRequest, ListServicesResponse, ServiceListing,
};
use handoff_log::Log;
use tonic::{Request, Response, Status};

use crate::identity::Access;

/// The `handoff.v1.DirectoryService` service over a log.
#[derive(Debug, Clone)]
pub struct Directory {
    log: Log,
    access: Access,
}

impl Directory {
    /// The directory of `log` for the callers `access` recognises.
    pub fn new(log: Log, access: Access) -> Self {
        Directory { log, access }
    }

    fn list(&self, req: &ListServicesRequest) -> Result<ListServicesResponse, Status> {
        let mut services = self.log.directory().map_err(super::internal)?;
        for listing in &mut services {
            // Names come from the registry at read time, so a renamed agency shows its new name.
            if let Some(agency) = self.access.registry().get(&listing.agency) {
                listing.agency_name = agency.name.clone();
            }
        }
        services.retain(|l| matches(l, req));
        Ok(ListServicesResponse { services })
    }
}

/// Whether a listing passes the request's filters (each ignoring case).
pub fn matches(listing: &ServiceListing, req: &ListServicesRequest) -> bool {
    let Some(offer) = &listing.offer else {
        return false;
    };
    // Unicode case: "český krumlov" finds "Český Krumlov".
    let same = |a: &str, b: &str| a.trim().to_lowercase() == b.trim().to_lowercase();
    let area = req.area.trim().is_empty() || offer.areas.iter().any(|a| same(a, &req.area));
    let language =
        req.language.trim().is_empty() || offer.languages.iter().any(|l| same(l, &req.language));
    let needle = req.text.trim().to_lowercase();
    let text = needle.is_empty()
        || [
            &offer.name,
            &offer.description,
            &offer.eligibility,
            &listing.agency_name,
        ]
        .iter()
        .any(|t| t.to_lowercase().contains(&needle));
    area && language && text
}

#[tonic::async_trait]
impl DirectoryApi for Directory {
    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = crate::cases::within_limits(&req, "handoff.v1.ListServicesRequest")
            .and_then(|()| self.list(&req));
        // Recorded before the answer leaves, like every read; it names no case or subject.
        let record = AccessRecord {
            at_unix_ms: super::now_unix_ms(),
            agency: caller.agency.clone(),
            rpc: "ListServices".into(),
            outcome: match &result {
                Ok(_) => "ok".into(),
                Err(status) => super::outcome_of(status),
            },
            query: handoff_domain::limits::bounded(
                &format!(
                    "area={:?} language={:?} text={:?}",
                    req.area, req.language, req.text
                ),
                handoff_domain::limits::KEPT_TEXT,
            ),
            ..AccessRecord::default()
        };
        super::record_read(&self.log, record).await?;
        result.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use handoff_contract::v1::{ListServicesRequest, ServiceListing, ServiceOffered};

    #[test]
    fn areas_and_languages_match_whatever_the_case_of_their_letters() {
        let listing = ServiceListing {
            offer: Some(ServiceOffered {
                areas: vec!["Český Krumlov".into()],
                languages: vec!["cs".into()],
                name: "Program pro osoby ohrožující blízké".into(),
                ..ServiceOffered::default()
            }),
            ..ServiceListing::default()
        };
        let asked = |area: &str, language: &str, text: &str| ListServicesRequest {
            area: area.into(),
            language: language.into(),
            text: text.into(),
        };
        assert!(super::matches(
            &listing,
            &asked("český krumlov", "CS", "OHROŽUJÍCÍ")
        ));
        assert!(super::matches(&listing, &asked(" ČESKÝ KRUMLOV ", "", "")));
        assert!(!super::matches(&listing, &asked("Tábor", "", "")));
    }
}
