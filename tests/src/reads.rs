//! Reading a running test exchange over gRPC, as one agency or as the auditor.

use handoff_contract::v1::*;

use crate::{AUDITOR, Exchange};

impl Exchange {
    /// The log's head now, as the auditor sees it.
    pub async fn head(&self) -> LogHead {
        self.client_as(AUDITOR)
            .await
            .get_log_head(GetLogHeadRequest {})
            .await
            .expect("head")
            .into_inner()
            .head
            .expect("a head")
    }

    /// The first hundred quarantine entries, as the auditor reads them.
    pub async fn quarantine(&self) -> Vec<QuarantineEntry> {
        self.client_as(AUDITOR)
            .await
            .list_quarantine(ListQuarantineRequest::default())
            .await
            .expect("quarantine")
            .into_inner()
            .entries
    }

    /// A case's current view, via GetCase, as the auditor sees it.
    pub async fn case(&self, case_id: &str) -> CaseView {
        self.client_as(AUDITOR)
            .await
            .get_case(GetCaseRequest {
                case_id: case_id.into(),
                purpose: "test".into(),
            })
            .await
            .expect("GetCase")
            .into_inner()
            .case
            .expect("a case")
    }

    /// `agency`'s own inbox, as it reads it.
    pub async fn inbox(&self, agency: &str) -> Vec<InboxItem> {
        self.client_as(agency)
            .await
            .inbox(InboxRequest {
                agency: agency.into(),
                purpose: "daily inbox".into(),
            })
            .await
            .expect("Inbox")
            .into_inner()
            .items
    }

    /// A case as `agency` may see it; NOT_FOUND where it has no part in it.
    pub async fn case_as(&self, agency: &str, case_id: &str) -> Result<CaseView, tonic::Status> {
        self.client_as(agency)
            .await
            .get_case(GetCaseRequest {
                case_id: case_id.into(),
                purpose: "test".into(),
            })
            .await
            .map(|r| r.into_inner().case.expect("a case"))
    }
}
