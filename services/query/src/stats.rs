//! The `handoff.v1.StatisticsService` service: the referral funnel for coordinators and
//! auditors, computed from the stored case views with small numbers suppressed
//! (`handoff_domain::stats`). No case or subject leaves through it.

use handoff_contract::v1::statistics_service_server::StatisticsService as StatisticsApi;
use handoff_contract::v1::{
    AccessRecord, DeadlineRow, GetStatsRequest, GetStatsResponse, ReasonCell, StatsCell,
    StatsReport, StatsRow,
};
use handoff_domain::AgencyKind;
use handoff_domain::stats::{self, Cell, Month, Stage};
use handoff_log::Log;
use tonic::{Request, Response, Status};

use crate::identity::{Access, Caller};

/// Cases read from the log per page while computing a report.
const PAGE: usize = 1000;

/// The `handoff.v1.StatisticsService` service over a log.
#[derive(Debug, Clone)]
pub struct Statistics {
    log: Log,
    access: Access,
    suppress_below: u32,
    statutory: std::sync::Arc<handoff_domain::statutory::StatutoryRules>,
}

impl Statistics {
    /// Statistics over `log` for the callers `access` recognises, suppressing counts
    /// below `suppress_below`; deadlines from the dated `statutory` table.
    pub fn new(
        log: Log,
        access: Access,
        suppress_below: u32,
        statutory: std::sync::Arc<handoff_domain::statutory::StatutoryRules>,
    ) -> Self {
        Statistics {
            log,
            access,
            suppress_below,
            statutory,
        }
    }

    fn report(&self, caller: &Caller, req: &GetStatsRequest) -> Result<StatsReport, Status> {
        if !matches!(caller.kind, AgencyKind::Auditor | AgencyKind::Coordinator) {
            return Err(Status::permission_denied(format!(
                "only coordinators and auditors may read statistics; {} is a {}",
                caller.agency, caller.kind
            )));
        }
        let bad = |e: stats::StatsError| Status::invalid_argument(e.to_string());
        let from: Month = req.from_month.parse().map_err(bad)?;
        let to: Month = if req.to_month.is_empty() {
            from
        } else {
            req.to_month.parse().map_err(bad)?
        };
        stats::months(from, to).map_err(bad)?;
        // The log has no iterator over bare views: page through list_cases.
        let mut views = Vec::new();
        let mut after = String::new();
        loop {
            let (page, more) = self
                .log
                .list_cases(&after, PAGE, |v| Ok(Some(v)))
                .map_err(super::internal)?;
            if let Some(last) = page.last() {
                after = last.case_id.clone();
            }
            views.extend(page);
            if !more {
                break;
            }
        }
        let report = stats::compute(
            &views,
            self.access.registry(),
            from,
            to,
            self.suppress_below,
        )
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let deadlines = handoff_domain::statutory_stats::compute(
            &views,
            &self.statutory,
            super::now_unix_ms(),
            from,
            to,
            self.suppress_below,
        )
        .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(to_wire(&report, &deadlines))
    }
}

fn cell(c: Cell) -> Option<StatsCell> {
    Some(match c {
        Cell::Shown(value) => StatsCell {
            suppressed: false,
            value,
        },
        Cell::Suppressed => StatsCell {
            suppressed: true,
            value: 0,
        },
    })
}

/// The wire form of a report and its deadline table.
pub fn to_wire(
    report: &stats::Report,
    deadlines: &[handoff_domain::statutory_stats::DeadlineRow],
) -> StatsReport {
    StatsReport {
        from_month: report.from.to_string(),
        to_month: report.to.to_string(),
        suppress_below: report.suppress_below,
        rows: report
            .rows
            .iter()
            .map(|r| StatsRow {
                month: r.month.to_string(),
                referring_kind: r.referring_kind.clone(),
                referred: cell(r.stage(Stage::Referred)),
                acknowledged: cell(r.stage(Stage::Acknowledged)),
                contacted: cell(r.stage(Stage::Contacted)),
                intake: cell(r.stage(Stage::Intake)),
                enrolled: cell(r.stage(Stage::Enrolled)),
                completed: cell(r.stage(Stage::Completed)),
                dropped_out: cell(r.stage(Stage::DroppedOut)),
                median_to_first_contact_secs: cell(r.median_to_first_contact_secs),
                median_to_intake_secs: cell(r.median_to_intake_secs),
                reasons: handoff_domain::reason::ALL
                    .into_iter()
                    .map(|code| ReasonCell {
                        reason: code as i32,
                        cell: cell(r.reason(code)),
                    })
                    .collect(),
            })
            .collect(),
        deadlines: deadlines
            .iter()
            .map(|r| DeadlineRow {
                month: r.month.to_string(),
                duty_kind: r.duty_kind.clone(),
                fell_due: cell(r.fell_due),
                met_in_time: cell(r.met_in_time),
                met_late: cell(r.met_late),
                overdue: cell(r.overdue),
                met_in_time_percent: cell(r.met_in_time_percent),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl StatisticsApi for Statistics {
    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let result = crate::cases::within_limits(&req, "handoff.v1.GetStatsRequest")
            .and_then(|()| self.report(&caller, &req));
        // Recorded like every read, before the answer leaves; a report names no case or subject.
        let record = AccessRecord {
            at_unix_ms: super::now_unix_ms(),
            agency: caller.agency.clone(),
            rpc: "GetStats".into(),
            purpose: handoff_domain::limits::bounded(
                &req.purpose,
                handoff_domain::limits::REQUEST_PURPOSE,
            ),
            outcome: match &result {
                Ok(_) => "ok".into(),
                Err(status) => super::outcome_of(status),
            },
            query: handoff_domain::limits::bounded(
                &format!("from={:?} to={:?}", req.from_month, req.to_month),
                handoff_domain::limits::KEPT_TEXT,
            ),
            ..AccessRecord::default()
        };
        super::record_read(&self.log, record).await?;
        result.map(|report| {
            Response::new(GetStatsResponse {
                report: Some(report),
            })
        })
    }
}
