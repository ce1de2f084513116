//! Reason codes end to end: agencies publish declines, exclusions and a closure with
//! their codes through the real exchange; the case views carry them; an unknown code
//! is quarantined with a reason, not a panic; and the coordinator's `GetStats` breaks
//! the cases that fell out down by reason, suppressed like the rest of the funnel.

use std::time::Duration;

use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, envelope, publish, publish_in_order};
use handoff_e2e::{CENTRE, COORDINATOR, Exchange, NatsServer, POLICE, PROGRAMME};

const SOCIAL: &str = "social-north";
const PROBATION: &str = "probation-north";
/// The month of every test event (`events::envelope` dates them from 2026-09-21).
const MONTH: &str = "2026-09";

struct Script {
    events: Vec<Envelope>,
}

impl Script {
    fn emit(&mut self, agency: &str, case: &str, event: Event) {
        let n = self.events.len() as u64 + 1;
        self.events.push(envelope(n, agency, case, event));
    }

    /// `from` opens case `name` by referring it to `to`; returns the case's id.
    fn refer(&mut self, from: &str, name: &str, to: &str) -> String {
        let case = format!("{from}/{name}");
        self.emit(
            from,
            &case,
            Event::ReferralMade(ReferralMade {
                referral_id: "r1".into(),
                to_agency: to.into(),
                reason: "perpetrator programme".into(),
                ..Default::default()
            }),
        );
        case
    }

    fn decline(&mut self, from: &str, name: &str, to: &str, code: i32) -> String {
        let case = self.refer(from, name, to);
        self.emit(
            to,
            &case,
            Event::ReferralDeclined(ReferralDeclined {
                referral_id: "r1".into(),
                reason: "the group is full until spring".into(),
                reason_code: code,
            }),
        );
        case
    }

    /// Referred to the programme, accepted, then ended by `end`.
    fn accepted_then(&mut self, from: &str, name: &str, end: Event) -> String {
        let case = self.refer(from, name, PROGRAMME);
        let accept = Event::ReferralAccepted(ReferralAccepted {
            referral_id: "r1".into(),
        });
        self.emit(PROGRAMME, &case, accept);
        self.emit(PROGRAMME, &case, end);
        case
    }
}

fn cell(c: Option<StatsCell>) -> Option<u64> {
    let c = c.expect("every cell is present");
    (!c.suppressed).then_some(c.value)
}

fn reason(row: &StatsRow, code: OutcomeReason) -> Option<u64> {
    let found: Vec<&ReasonCell> = row
        .reasons
        .iter()
        .filter(|c| c.reason == code as i32)
        .collect();
    assert_eq!(found.len(), 1, "one cell per code: {row:?}");
    cell(found[0].cell)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_sees_why_cases_fell_out_suppressed_like_the_funnel() {
    use OutcomeReason as R;
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    let mut s = Script { events: Vec::new() };
    // No capacity: police 6, social services, the centre, the programme (to the
    // centre) and probation 5 each; nobody else refers.
    let mut declined = Vec::new();
    for (from, to, count) in [
        (POLICE, PROGRAMME, 6),
        (SOCIAL, PROGRAMME, 5),
        (CENTRE, PROGRAMME, 5),
        (PROGRAMME, CENTRE, 5),
        (PROBATION, PROGRAMME, 5),
    ] {
        for k in 0..count {
            declined.push(s.decline(from, &format!("full-{k}"), to, R::NoCapacity as i32));
        }
    }
    // Excluded from the programme for threats (vyloučení): police 5, probation 2.
    let exclusion = || {
        Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
            reason: "threatened another participant".into(),
            reason_code: R::ExcludedViolenceOrThreats as i32,
        })
    };
    let mut excluded = Vec::new();
    for (from, count) in [(POLICE, 5), (PROBATION, 2)] {
        for k in 0..count {
            excluded.push(s.accepted_then(from, &format!("excluded-{k}"), exclusion()));
        }
    }
    // One closed as unreachable.
    let unreachable = s.accepted_then(
        POLICE,
        "gone",
        Event::CaseClosed(CaseClosed {
            reason: "no answer to five calls and two letters".into(),
            reason_code: R::Unreachable as i32,
        }),
    );
    let sent = publish_in_order(&js, &exchange, &s.events).await;
    let head = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(
        (head.sequence, head.quarantined),
        (s.events.len() as u64, 0),
        "every event appended\n{}",
        exchange.last_log()
    );

    // A code from a newer contract is refused with a reason, and nothing else breaks.
    let pending = s.refer(POLICE, "pending", PROGRAMME);
    let mut unknown = envelope(
        s.events.len() as u64 + 1,
        PROGRAMME,
        &pending,
        Event::ReferralDeclined(ReferralDeclined {
            referral_id: "r1".into(),
            reason: String::new(),
            reason_code: 99,
        }),
    );
    unknown.actor = "intake desk".into();
    let first = publish(&js, &s.events[s.events.len() - 1]).await;
    exchange.wait_for([&first], Duration::from_secs(30)).await;
    let refused = publish(&js, &unknown).await;
    let head = exchange.wait_for([&refused], Duration::from_secs(30)).await;
    assert_eq!(head.quarantined, 1, "{}", exchange.last_log());
    let entry = exchange
        .quarantine()
        .await
        .into_iter()
        .find(|q| q.event_id == unknown.event_id)
        .expect("the refused decline is in the quarantine");
    assert!(
        entry.detail.contains("reason_code 99") && entry.detail.contains("no_capacity"),
        "{}",
        entry.detail
    );

    // The views carry the codes (the auditor is granted `reasons`).
    let view = exchange.case(&case_id(&declined[0])).await;
    assert_eq!(view.referrals[0].decline_reason_code, R::NoCapacity as i32);
    let view = exchange.case(&case_id(&excluded[0])).await;
    assert_eq!(
        (view.status, view.outcome_reason),
        (
            CaseStatus::DroppedOut as i32,
            R::ExcludedViolenceOrThreats as i32
        )
    );
    let view = exchange.case(&case_id(&unreachable)).await;
    assert_eq!(view.outcome_reason, R::Unreachable as i32);

    // The coordinator's breakdown.
    let report = StatisticsServiceClient::new(exchange.channel_as(COORDINATOR).await)
        .get_stats(GetStatsRequest {
            from_month: MONTH.into(),
            to_month: MONTH.into(),
            purpose: "why people fall out, partnership board".into(),
        })
        .await
        .expect("the coordinator reads statistics")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(report.suppress_below, 5);
    let rows: Vec<&StatsRow> = report.rows.iter().filter(|r| r.month == MONTH).collect();
    let (all, kinds) = rows.split_first().expect("rows");
    assert_eq!(all.referring_kind, "all");
    let kind = |name: &str| {
        kinds
            .iter()
            .find(|r| r.referring_kind == name)
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    // Every row has every code, in the same order.
    for row in &rows {
        let codes: Vec<i32> = row.reasons.iter().map(|c| c.reason).collect();
        assert_eq!(
            codes,
            all.reasons.iter().map(|c| c.reason).collect::<Vec<_>>()
        );
        assert_eq!(codes.len(), 10, "{row:?}");
    }
    let exact = |name: &str, code: R| -> u64 {
        match (name, code) {
            ("all", R::NoCapacity) => 26,
            ("police", R::NoCapacity) => 6,
            ("social_services" | "intervention_centre", R::NoCapacity) => 5,
            ("programme_provider" | "probation", R::NoCapacity) => 5,
            ("all", R::ExcludedViolenceOrThreats) => 7,
            ("police", R::ExcludedViolenceOrThreats) => 5,
            ("probation", R::ExcludedViolenceOrThreats) => 2,
            ("all" | "police", R::Unreachable) => 1,
            _ => 0,
        }
    };
    let codes: Vec<R> = all
        .reasons
        .iter()
        .map(|c| R::try_from(c.reason).expect("a known code"))
        .collect();
    for row in &rows {
        for &code in &codes {
            let want = exact(&row.referring_kind, code);
            match reason(row, code) {
                Some(v) => {
                    assert_eq!(v, want, "{} {code:?}", row.referring_kind);
                    assert!(v >= 5, "a small number published: {row:?}");
                }
                None => assert!(
                    want < 5 || row.referring_kind != "all",
                    "{} {code:?} withheld",
                    row.referring_kind
                ),
            }
        }
    }
    assert_eq!(reason(all, R::NoCapacity), Some(26));
    assert_eq!(reason(kind("police"), R::NoCapacity), Some(6));
    assert_eq!(reason(all, R::ExcludedViolenceOrThreats), Some(7));
    assert_eq!(
        reason(kind("police"), R::ExcludedViolenceOrThreats),
        Some(5)
    );
    assert_eq!(
        reason(kind("probation"), R::ExcludedViolenceOrThreats),
        None
    );
    assert_eq!(reason(all, R::Unreachable), None, "one case is too few");
    assert_eq!(
        cell(all.dropped_out),
        Some(7),
        "the exclusions are drop-outs"
    );
    // Complementary suppression: no column leaves one withheld kind cell beside a
    // published total (it would be the total minus the published cells).
    for &code in &codes {
        let hidden = kinds.iter().filter(|r| reason(r, code).is_none()).count();
        assert!(
            reason(all, code).is_none() || hidden != 1,
            "{code:?} could be worked out by subtraction"
        );
    }
}
