//! Every read is recorded before it is answered, in a hash-chained access log,
//! and an auditor can ask who read a case or a subject's data.

use std::time::Duration;

use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, incident, publish, referral, subject_of};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn reads_are_recorded_before_they_are_answered_and_survive_a_kill() {
    let nats = NatsServer::start();
    let mut exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    publish(&js, &incident(1, "k")).await;
    let last = publish(&js, &referral(2, "k", "r", CENTRE)).await;
    exchange.wait_for([&last], Duration::from_secs(30)).await;

    let ask = |purpose: &str| GetCaseRequest {
        case_id: case_id("k"),
        purpose: purpose.into(),
    };
    exchange
        .client_as(POLICE)
        .await
        .get_case(ask("checking the referral"))
        .await
        .expect("police read");
    let refused = exchange
        .client_as("social-north")
        .await
        .get_case(ask("curious"))
        .await
        .expect_err("no part");
    assert_eq!(refused.code(), Code::NotFound);
    // Killed right after answering: the read must already be on disk.
    exchange
        .client_as(CENTRE)
        .await
        .get_case(ask("intake"))
        .await
        .expect("centre read");
    exchange.kill();
    exchange.restart().await;

    let mut auditor = exchange.client_as(AUDITOR).await;
    let report = auditor
        .access_report(AccessReportRequest {
            case_id: case_id("k"),
            ..Default::default()
        })
        .await
        .expect("report")
        .into_inner()
        .records;
    let rows: Vec<(&str, &str, &str, &str)> = report
        .iter()
        .map(|r| {
            (
                r.agency.as_str(),
                r.rpc.as_str(),
                r.outcome.as_str(),
                r.purpose.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (POLICE, "GetCase", "ok", "checking the referral"),
            ("social-north", "GetCase", "not_found", "curious"),
            (CENTRE, "GetCase", "ok", "intake"),
        ]
    );
    assert!(
        report[0].fields.contains(&"incidents".to_string()),
        "{:?}",
        report[0].fields
    );
    assert!(
        report[1].fields.is_empty(),
        "nothing was returned to the refused caller"
    );
    for r in &report {
        assert_eq!(
            handoff_log::access_hash(r).as_slice(),
            r.hash.as_slice(),
            "access record {} intact",
            r.sequence
        );
    }

    // By subject as well.
    let by_subject = auditor
        .access_report(AccessReportRequest {
            subject_pseudonym: subject_of("k"),
            ..Default::default()
        })
        .await
        .expect("report")
        .into_inner()
        .records;
    assert_eq!(
        by_subject.len(),
        2,
        "the two reads that returned the subject's case"
    );

    // Only auditors.
    let denied = exchange
        .client_as(POLICE)
        .await
        .access_report(AccessReportRequest {
            case_id: case_id("k"),
            ..Default::default()
        })
        .await
        .expect_err("police may not read the access log");
    assert_eq!(denied.code(), Code::PermissionDenied);
}
