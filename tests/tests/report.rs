//! The coordinator's statistics end to end: cases published by police,
//! social services, the intervention centre, the programme provider and
//! probation go through the funnel over two months; `Statistics.GetStats`
//! answers the coordinator (and auditors, nobody else) with the exact counts
//! and medians, small numbers suppressed as `handoff_domain::stats` documents;
//! the coordinator sees no case at all; every read, refused ones too, is in
//! the access log and an auditor lists them by agency; `handoff report` prints the same numbers as CSV, JSON and
//! Markdown and draws the funnel as SVG.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use handoff_contract::time::from_unix_ms;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
use handoff_contract::v1::*;
use handoff_e2e::events::{Sent, case_id, envelope, publish_in_order};
use handoff_e2e::{
    AUDITOR, CENTRE, COORDINATOR, Exchange, NatsServer, POLICE, PROGRAMME, handoff_binary,
};
use tonic::Code;
use tonic::transport::Channel;

const SOCIAL: &str = "social-north";
const PROBATION: &str = "probation-north";

const HOUR_MS: i64 = 3_600_000;
/// 2026-03-27T09:00:00Z: the first referrals of month A. Later events of these
/// cases fall in April; the cases stay in March (the month of the first referral).
const MARCH_27: i64 = 1_774_602_000_000;
/// 2026-04-14T09:00:00Z: the first referrals of month B.
const APRIL_14: i64 = 1_776_157_200_000;
/// 2026-05-04T09:00:00Z: a referral outside the range asked for.
const MAY_4: i64 = 1_777_885_200_000;

/// The referring kinds in the order the report lists them, after "all".
const KINDS: [&str; 8] = [
    "all",
    "police",
    "social_services",
    "intervention_centre",
    "programme_provider",
    "probation",
    "court",
    "victim_support",
];

/// How far one case goes through the funnel (hours after its referral).
#[derive(Debug, Clone, Copy, Default)]
struct Journey {
    acknowledged: bool,
    accepted: bool,
    contact_h: Option<i64>,
    intake_h: Option<i64>,
    enrolled: bool,
    completed: bool,
    dropped_out: bool,
}

impl Journey {
    fn referred() -> Journey {
        Journey::default()
    }
    fn acknowledged(self) -> Journey {
        Journey {
            acknowledged: true,
            ..self
        }
    }
    fn accepted(self) -> Journey {
        Journey {
            acknowledged: true,
            accepted: true,
            ..self
        }
    }
    /// Reached `h` hours after the referral (after a missed call half an hour before).
    fn contact(self, h: i64) -> Journey {
        assert!(h >= 2, "contact comes after acceptance at +1 h");
        Journey {
            contact_h: Some(h),
            ..self.accepted()
        }
    }
    fn intake(self, h: i64) -> Journey {
        assert!(self.contact_h.is_some_and(|c| c < h));
        Journey {
            intake_h: Some(h),
            ..self
        }
    }
    fn enrol(self) -> Journey {
        assert!(self.intake_h.is_some());
        Journey {
            enrolled: true,
            ..self
        }
    }
    fn complete(self) -> Journey {
        assert!(self.enrolled);
        Journey {
            completed: true,
            ..self
        }
    }
    fn drop_out(self) -> Journey {
        assert!(self.accepted);
        Journey {
            dropped_out: true,
            ..self
        }
    }
}

/// The events agencies publish, each with its own occurred_at, in the order they
/// publish them.
struct Agencies {
    events: Vec<Envelope>,
}

impl Agencies {
    fn emit(&mut self, agency: &str, case: &str, at_ms: i64, event: Event) {
        let n = self.events.len() as u64 + 1;
        let mut e = envelope(n, agency, case, event);
        e.occurred_at = Some(from_unix_ms(at_ms));
        e.actor = format!("caseworker 7 at {agency}");
        self.events.push(e);
    }

    /// One case, opened by `from` under its own id: (police: an incident, then) a
    /// referral from `from` to `to` at `made`, and whatever follows on its journey.
    fn case(&mut self, name: &str, from: &str, to: &str, made: i64, j: Journey) {
        let case = &format!("{from}/{name}");
        let at = |h: i64| made + h * HOUR_MS;
        if from == POLICE {
            self.emit(
                from,
                case,
                at(-2),
                Event::IncidentReported(IncidentReported {
                    incident_ref: format!("I-{case}"),
                    narrative: "domestic incident, call-out at night".into(),
                    area: "North".into(),
                    ..Default::default()
                }),
            );
        }
        self.emit(
            from,
            case,
            made,
            Event::ReferralMade(ReferralMade {
                referral_id: "r1".into(),
                to_agency: to.into(),
                reason: "perpetrator programme".into(),
                ..Default::default()
            }),
        );
        let r1 = || "r1".to_string();
        if j.acknowledged {
            let ack = Event::ReferralAcknowledged(ReferralAcknowledged { referral_id: r1() });
            self.emit(to, case, made + HOUR_MS / 2, ack);
        }
        if j.accepted {
            let accept = Event::ReferralAccepted(ReferralAccepted { referral_id: r1() });
            self.emit(to, case, at(1), accept);
        }
        let mut last = at(1);
        if let Some(h) = j.contact_h {
            for (when, outcome) in [
                (at(h) - HOUR_MS / 2, ContactOutcome::NoAnswer),
                (at(h), ContactOutcome::Reached),
            ] {
                let attempt = Event::ContactAttempted(ContactAttempted {
                    channel: ContactChannel::Phone as i32,
                    outcome: outcome as i32,
                    ..Default::default()
                });
                self.emit(to, case, when, attempt);
            }
            last = at(h);
        }
        if let Some(h) = j.intake_h {
            let intake = Event::IntakeCompleted(IntakeCompleted {
                note: "intake interview".into(),
            });
            self.emit(to, case, at(h), intake);
            last = at(h);
        }
        if j.enrolled {
            let enrolled = Event::Enrolled(Enrolled {
                programme: "Step Up".into(),
                planned_sessions: 24,
            });
            self.emit(to, case, last + 48 * HOUR_MS, enrolled);
            let session = Event::SessionAttended(SessionAttended {
                session_number: 1,
                note: String::new(),
            });
            self.emit(to, case, last + 7 * 24 * HOUR_MS, session);
            last += 7 * 24 * HOUR_MS;
        }
        if j.completed {
            let done = Event::ProgrammeCompleted(ProgrammeCompleted {
                note: "all sessions".into(),
            });
            self.emit(to, case, last + 24 * 7 * 24 * HOUR_MS, done);
        }
        if j.dropped_out {
            let gone = Event::ProgrammeDroppedOut(ProgrammeDroppedOut {
                reason: "stopped attending".into(),
                reason_code: OutcomeReason::NoShow as i32,
            });
            self.emit(to, case, last + 14 * 24 * HOUR_MS, gone);
        }
    }
}

/// Referral `i` of a month, ten minutes apart.
fn made(month_start: i64, i: usize) -> i64 {
    month_start + i as i64 * 600_000
}

/// Publishes the two months (and one case outside them), each agency after it saw
/// the events before its own decided; returns the number of events and what was sent.
async fn publish_cases(
    js: async_nats::jetstream::Context,
    exchange: &Exchange,
) -> (u64, Vec<Sent>) {
    let mut a = Agencies { events: Vec::new() };
    let j = Journey::referred;
    // Month A, police: 12 referred, 10 acknowledged, 8 contacted, 6 intake,
    // 5 enrolled, 3 completed, 2 dropped out.
    let police_march = [
        j(),
        j(),
        j().acknowledged(),
        j().accepted(),
        j().contact(16),
        j().contact(2),
        j().contact(12).intake(96),
        j().contact(6).intake(24).enrol().complete(),
        j().contact(10).intake(144).enrol().complete(),
        j().contact(4).intake(48).enrol().complete(),
        j().contact(14).intake(120).enrol().drop_out(),
        j().contact(8).intake(72).enrol().drop_out(),
    ];
    for (k, journey) in police_march.into_iter().enumerate() {
        let case = format!("a-police-{k:02}");
        a.case(&case, POLICE, PROGRAMME, made(MARCH_27, k), journey);
    }
    let mut i = police_march.len();
    // Month A, referred only (probation: 3 accepted too): 5 + 6 + 7 + 8.
    for (from, to, count, accepted) in [
        (SOCIAL, PROGRAMME, 5, 0),
        (CENTRE, PROGRAMME, 6, 0),
        (PROGRAMME, CENTRE, 7, 0),
        (PROBATION, PROGRAMME, 8, 3),
    ] {
        for k in 0..count {
            let journey = if k < accepted { j().accepted() } else { j() };
            let case = format!("a-{from}-{k:02}");
            a.case(&case, from, to, made(MARCH_27, i), journey);
            i += 1;
        }
    }
    // Month B, police: 7 referred, 6 acknowledged, 5 contacted, 3 intake, 2 enrolled,
    // 1 completed, 1 dropped out (before contact); probation: 2 referred, 1 accepted.
    let police_april = [
        j(),
        j().accepted().drop_out(),
        j().contact(6),
        j().contact(2).intake(30),
        j().contact(4).intake(50).enrol(),
        j().contact(10).intake(40).enrol().complete(),
        j().contact(8),
    ];
    for (k, journey) in police_april.into_iter().enumerate() {
        let case = format!("b-police-{k:02}");
        a.case(&case, POLICE, PROGRAMME, made(APRIL_14, k), journey);
    }
    for (k, journey) in [j().accepted(), j()].into_iter().enumerate() {
        let case = format!("b-probation-{k:02}");
        a.case(&case, PROBATION, PROGRAMME, made(APRIL_14, 10 + k), journey);
    }
    // Outside the range: May.
    a.case("c-police-00", POLICE, PROGRAMME, MAY_4, j().accepted());
    let sent = publish_in_order(&js, exchange, &a.events).await;
    (a.events.len() as u64, sent)
}

/// A row's cells in wire order: the seven stages, then the two medians; None = suppressed.
fn cells(row: &StatsRow) -> [Option<u64>; 9] {
    [
        row.referred,
        row.acknowledged,
        row.contacted,
        row.intake,
        row.enrolled,
        row.completed,
        row.dropped_out,
        row.median_to_first_contact_secs,
        row.median_to_intake_secs,
    ]
    .map(|c| {
        let c = c.expect("every cell is present");
        if c.suppressed {
            assert_eq!(c.value, 0, "a suppressed cell carries no value");
            None
        } else {
            Some(c.value)
        }
    })
}

fn row<'a>(report: &'a StatsReport, month: &str, kind: &str) -> &'a StatsRow {
    report
        .rows
        .iter()
        .find(|r| r.month == month && r.referring_kind == kind)
        .unwrap_or_else(|| panic!("no row {month} {kind}"))
}

const H: u64 = 3600;
const S: Option<u64> = None;

fn ask(from: &str, to: &str, purpose: &str) -> GetStatsRequest {
    GetStatsRequest {
        from_month: from.into(),
        to_month: to.into(),
        purpose: purpose.into(),
    }
}

async fn stats_as(exchange: &Exchange, agency: &str) -> StatisticsServiceClient<Channel> {
    StatisticsServiceClient::new(exchange.channel_as(agency).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_reads_the_suppressed_funnel_and_nothing_else() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let (events, sent) =
        publish_cases(async_nats::jetstream::new(nats.connect().await), &exchange).await;
    let head = exchange.wait_for(&sent, Duration::from_secs(60)).await;
    assert_eq!(
        (head.sequence, head.quarantined),
        (events, 0),
        "every event appended\n{}",
        exchange.last_log()
    );

    // The coordinator's report for March and April.
    let purpose = "grant report 2026 Q2, partnership board";
    let report = stats_as(&exchange, COORDINATOR)
        .await
        .get_stats(ask("2026-03", "2026-04", purpose))
        .await
        .expect("the coordinator reads statistics")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(
        (
            report.from_month.as_str(),
            report.to_month.as_str(),
            report.suppress_below
        ),
        ("2026-03", "2026-04", 5),
        "the shipped policy's threshold"
    );
    // Every referring kind has a row every month, in a fixed order; May is not in it.
    let layout: Vec<(&str, &str)> = report
        .rows
        .iter()
        .map(|r| (r.month.as_str(), r.referring_kind.as_str()))
        .collect();
    let expected_layout: Vec<(&str, &str)> = ["2026-03", "2026-04"]
        .into_iter()
        .flat_map(|m| KINDS.map(|k| (m, k)))
        .collect();
    assert_eq!(layout, expected_layout);

    // March. Police: every count of 5 or more as published, drop-outs and completions
    // suppressed. Medians: first contact 2,4,...,16 h -> (8 + 10) / 2 = 9 h; intake
    // 24,48,...,144 h -> (72 + 96) / 2 = 84 h.
    let march_medians = [Some(9 * H), Some(84 * H)];
    let with = |stages: [Option<u64>; 7], medians: [Option<u64>; 2]| {
        let mut all = [None; 9];
        all[..7].copy_from_slice(&stages);
        all[7..].copy_from_slice(&medians);
        all
    };
    assert_eq!(
        cells(row(&report, "2026-03", "police")),
        with(
            [Some(12), Some(10), Some(8), Some(6), Some(5), S, S],
            march_medians
        )
    );
    // The total: 38 referred (12 + 5 + 6 + 7 + 8), 13 acknowledged (10 + probation's 3).
    assert_eq!(
        cells(row(&report, "2026-03", "all")),
        with(
            [Some(38), Some(13), Some(8), Some(6), Some(5), S, S],
            march_medians
        )
    );
    // Referred in March: the court's and victim support's zeros are the suppressed kind
    // cells; two of them, so neither is the total minus the published ones and social
    // services' 5 is published. (With one suppressed cell the smallest published one
    // would be withheld too: complementary suppression, tested in stats.rs.)
    let referred = |kind: &str| cells(row(&report, "2026-03", kind))[0];
    assert_eq!(
        KINDS[1..].iter().map(|k| referred(k)).collect::<Vec<_>>(),
        [Some(12), Some(5), Some(6), Some(7), Some(8), S, S]
    );
    // Probation's 3 acknowledged are suppressed (below 5), as is everything else there.
    assert_eq!(
        cells(row(&report, "2026-03", "probation")),
        with([Some(8), S, S, S, S, S, S], [S, S])
    );
    assert_eq!(
        cells(row(&report, "2026-03", "social_services")),
        with([Some(5), S, S, S, S, S, S], [S, S])
    );
    for kind in ["court", "victim_support"] {
        assert_eq!(cells(row(&report, "2026-03", kind)), [None; 9], "{kind}");
    }

    // April. Police: 7, 6, 5 published; first contact over 5 cases 2,4,6,8,10 h -> 6 h;
    // intake over 3 cases is suppressed. Probation's 2 cases are suppressed, and with
    // five kind cells withheld per column, nothing more needs withholding.
    assert_eq!(
        cells(row(&report, "2026-04", "police")),
        with([Some(7), Some(6), Some(5), S, S, S, S], [Some(6 * H), S])
    );
    assert_eq!(
        cells(row(&report, "2026-04", "all")),
        with([Some(9), Some(7), Some(5), S, S, S, S], [Some(6 * H), S])
    );
    for kind in &KINDS[2..] {
        assert_eq!(cells(row(&report, "2026-04", kind)), [None; 9], "{kind}");
    }
    // The rule as stats.rs states it, over the whole report: where a month's total
    // is published, never exactly one kind cell of that column is withheld.
    for month in ["2026-03", "2026-04"] {
        let total = cells(row(&report, month, "all"));
        for (stage, published) in total.iter().take(7).enumerate() {
            let hidden = KINDS[1..]
                .iter()
                .filter(|k| cells(row(&report, month, k))[stage].is_none())
                .count();
            assert!(
                published.is_none() || hidden != 1,
                "{month} stage {stage}: one hidden cell is the total minus the others"
            );
        }
    }

    // One month only (to_month empty): May's single case is suppressed everywhere.
    let may = stats_as(&exchange, COORDINATOR)
        .await
        .get_stats(ask("2026-05", "", purpose))
        .await
        .expect("May")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(
        (may.from_month.as_str(), may.to_month.as_str()),
        ("2026-05", "2026-05")
    );
    assert_eq!(may.rows.len(), KINDS.len());
    assert!(may.rows.iter().all(|r| cells(r) == [None; 9]), "{may:?}");
    let bad = stats_as(&exchange, COORDINATOR)
        .await
        .get_stats(ask("2026-13", "", purpose))
        .await
        .expect_err("no such month");
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Who may read it: auditors (the same numbers), not a partner.
    let audited = stats_as(&exchange, AUDITOR)
        .await
        .get_stats(ask("2026-03", "2026-04", "audit of the grant report"))
        .await
        .expect("an auditor reads statistics")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(audited, report);
    let denied = stats_as(&exchange, POLICE)
        .await
        .get_stats(ask("2026-03", "2026-04", "curious"))
        .await
        .expect_err("police may not read statistics");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Every read is recorded, the refused one too, and an auditor can list them by agency.
    let reads_by = |agency: &'static str| {
        let exchange = &exchange;
        async move {
            exchange
                .client_as(AUDITOR)
                .await
                .access_report(AccessReportRequest {
                    agency: agency.into(),
                    purpose: "who read the statistics".into(),
                    ..Default::default()
                })
                .await
                .expect("access report by agency")
                .into_inner()
                .records
        }
    };
    let query = format!("from={:?} to={:?}", "2026-03", "2026-04");
    for (agency, purpose, outcome) in [
        (COORDINATOR, purpose, "ok"),
        (AUDITOR, "audit of the grant report", "ok"),
        (POLICE, "curious", "permission_denied"),
    ] {
        let reads = reads_by(agency).await;
        assert!(
            reads.iter().any(|r| r.rpc == "GetStats"
                && r.purpose == purpose
                && r.outcome == outcome
                && r.query == query
                && r.case_ids.is_empty()
                && r.subjects.is_empty()),
            "{agency}'s GetStats read ({outcome}) is not in the access report: {reads:?}"
        );
        assert!(reads.iter().all(|r| r.agency == agency), "{reads:?}");
    }
    // Exactly one way of asking.
    let both = exchange
        .client_as(AUDITOR)
        .await
        .access_report(AccessReportRequest {
            agency: COORDINATOR.into(),
            case_id: case_id("a-police-07"),
            ..Default::default()
        })
        .await
        .expect_err("two filters at once");
    assert_eq!(both.code(), Code::InvalidArgument);

    // The coordinator sees no case: not one it could name, none in a list, no inbox.
    let mut cases = exchange.client_as(COORDINATOR).await;
    let hidden = cases
        .get_case(GetCaseRequest {
            case_id: case_id("a-police-07"),
            purpose: "checking a number".into(),
        })
        .await
        .expect_err("no case data for the coordinator");
    assert_eq!(hidden.code(), Code::NotFound);
    let missing = cases
        .get_case(GetCaseRequest {
            case_id: case_id("no-such-case"),
            purpose: "checking a number".into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(
        (missing.code(), missing.message()),
        (
            hidden.code(),
            hidden
                .message()
                .replace("a-police-07", "no-such-case")
                .as_str()
        ),
        "a hidden case is refused in the words of a missing one"
    );
    let listed = cases
        .list_cases(ListCasesRequest {
            page_size: 500,
            purpose: "overview".into(),
            ..Default::default()
        })
        .await
        .expect("ListCases")
        .into_inner();
    assert!(listed.cases.is_empty(), "{:?}", listed.cases);
    let inbox = cases
        .inbox(InboxRequest::default())
        .await
        .expect("own inbox")
        .into_inner();
    assert!(inbox.items.is_empty(), "{:?}", inbox.items);
    let other = cases
        .inbox(InboxRequest {
            agency: PROGRAMME.into(),
            purpose: "overview".into(),
        })
        .await
        .expect_err("another agency's inbox");
    assert_eq!(other.code(), Code::PermissionDenied);
    let log = match cases.read_log(ReadLogRequest::default()).await {
        Err(status) => status,
        Ok(stream) => stream
            .into_inner()
            .message()
            .await
            .expect_err("no log record for the coordinator"),
    };
    assert_eq!(log.code(), Code::PermissionDenied);
    // The auditor sees the coordinator's attempt on the case, with nothing returned.
    let reads = exchange
        .client_as(AUDITOR)
        .await
        .access_report(AccessReportRequest {
            case_id: case_id("a-police-07"),
            ..Default::default()
        })
        .await
        .expect("access report")
        .into_inner()
        .records;
    let attempt = reads
        .iter()
        .find(|r| r.agency == COORDINATOR)
        .expect("the coordinator's GetCase is recorded");
    assert_eq!(
        (attempt.rpc.as_str(), attempt.outcome.as_str()),
        ("GetCase", "not_found")
    );
    assert!(attempt.fields.is_empty() && attempt.subjects.is_empty());

    // The CLI, as the coordinator runs it for the grant report.
    let out_dir = tempfile::tempdir().expect("temp dir");
    let chart = out_dir.path().join("funnel.svg");
    let server = format!("https://localhost:{}", exchange.grpc_port());
    let certs = exchange.certs_dir();
    let report_cli = |agency: &str, format: &str, chart: Option<&Path>| {
        let mut command = Command::new(handoff_binary());
        command
            .args(["report", "--server", &server, "--as", agency, "--certs"])
            .arg(&certs)
            .args(["--month", "2026-03", "--to", "2026-04", "--format", format]);
        if let Some(path) = chart {
            command.arg("--chart").arg(path);
        }
        let out = command.output().expect("handoff report runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, csv, err) = report_cli(COORDINATOR, "csv", Some(&chart));
    assert!(ok, "handoff report --format csv: {err}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            "month,referring_kind,referred,acknowledged,contacted,intake,enrolled,completed,dropped_out,median_to_first_contact_secs,median_to_intake_secs,\
             fell_out_no_capacity,fell_out_not_eligible,fell_out_unreachable,fell_out_refused,\
             fell_out_excluded_violence_or_threats,fell_out_moved_out_of_region,fell_out_no_show,\
             fell_out_completed_elsewhere,fell_out_other,fell_out_unspecified"
        )
    );
    // The funnel's columns, then the reasons (tests/tests/reasons.rs reads those).
    let lines: Vec<String> = lines
        .iter()
        .map(|l| l.split(',').take(11).collect::<Vec<_>>().join(","))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(lines.len(), 1 + report.rows.len(), "{csv}");
    assert!(
        lines.contains(&"2026-03,police,12,10,8,6,5,<5,<5,32400,302400"),
        "{csv}"
    );
    assert!(
        lines.contains(&"2026-03,social_services,5,<5,<5,<5,<5,<5,<5,<5,<5"),
        "{csv}"
    );
    assert!(
        lines.contains(&"2026-04,all,9,7,5,<5,<5,<5,<5,21600,<5"),
        "{csv}"
    );
    // Every line is its RPC row.
    for (line, row) in lines[1..].iter().zip(&report.rows) {
        let mut expected = format!("{},{}", row.month, row.referring_kind);
        for c in cells(row) {
            expected.push(',');
            expected.push_str(&c.map_or("<5".to_string(), |v| v.to_string()));
        }
        assert_eq!(*line, expected);
    }

    let (ok, json, err) = report_cli(COORDINATOR, "json", None);
    assert!(ok, "handoff report --format json: {err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("the JSON report parses");
    assert_eq!(json["from_month"], "2026-03");
    assert_eq!(json["to_month"], "2026-04");
    assert_eq!(json["suppress_below"], 5);
    let json_rows = json["rows"].as_array().expect("rows");
    assert_eq!(json_rows.len(), report.rows.len());
    let names = [
        "referred",
        "acknowledged",
        "contacted",
        "intake",
        "enrolled",
        "completed",
        "dropped_out",
        "median_to_first_contact_secs",
        "median_to_intake_secs",
    ];
    for (j, row) in json_rows.iter().zip(&report.rows) {
        assert_eq!(j["month"], row.month.as_str());
        assert_eq!(j["referring_kind"], row.referring_kind.as_str());
        let from_json = names.map(|name| {
            let cell = &j[name];
            if cell["suppressed"].as_bool().unwrap_or(false) {
                None
            } else {
                Some(cell["value"].as_u64().expect("a published value"))
            }
        });
        assert_eq!(from_json, cells(row), "{j}");
    }

    let (ok, md, err) = report_cli(COORDINATOR, "md", None);
    assert!(ok, "handoff report --format md: {err}");
    assert!(md.contains("Referral funnel 2026-03 to 2026-04"), "{md}");
    assert!(
        md.contains("| 2026-03 | police | 12 | 10 | 8 | 6 | 5 | <5 | <5 | 9.0 | 84.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| 2026-04 | all | 9 | 7 | 5 | <5 | <5 | <5 | <5 | 6.0 | n<5 |"),
        "{md}"
    );
    for month in ["2026-03", "2026-04"] {
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with(&format!("| {month} |")))
                .count(),
            // The funnel and its reasons, one row per kind each; the statutory deadlines,
            // "all" and each kind that owes a duty (police, centre, court).
            2 * KINDS.len() + 4,
            "{md}"
        );
    }
    assert!(
        md.contains("| 2026-03 | police | <5 | <5 | <5 | <5 | - |"),
        "no evictions, every deadline cell withheld: {md}"
    );

    // The chart: the "all" row of each month, one bar per stage.
    let svg = std::fs::read_to_string(&chart).expect("the chart was written");
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("<svg ") && svg.trim_end().ends_with("</svg>"));
    assert!(!svg.contains("<5"), "text is escaped");
    for month in ["2026-03", "2026-04"] {
        assert_eq!(
            svg.matches(&format!("<title>{month} ")).count(),
            7,
            "{month}"
        );
        assert_eq!(
            svg.matches(&format!(">{month}</text>")).count(),
            1,
            "{month}"
        );
    }
    assert!(svg.contains("<title>2026-03 Referred: 38</title>"), "{svg}");
    assert!(
        svg.contains("<title>2026-04 Intake: &lt;5</title>"),
        "{svg}"
    );
    // Suppressed bars are hatched: March 2 (completed, dropped out), April 4, and the legend key.
    assert_eq!(svg.matches("fill=\"url(#suppressed)\"").count(), 2 + 4 + 1);

    // The chart as a browser draws it: headless Chromium renders the SVG file, the
    // screenshot is kept in target/screenshots/ for a person to look at.
    let rendered = handoff_e2e::screenshot(&chart, "funnel-chart", (1000, 620));
    assert!(rendered.dom.contains("<svg"), "{}", rendered.dom);
    for label in ["2026-03", "2026-04", "Referred", "Enrolled"] {
        assert!(rendered.dom.contains(label), "{label} not rendered");
    }

    // A partner cannot run it.
    let (ok, _, err) = report_cli(POLICE, "csv", None);
    assert!(!ok, "police may not print the report");
    assert!(err.contains("only coordinators and auditors"), "{err}");
}
