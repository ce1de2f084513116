//! Restore cannot resurrect (issue 14): a node restored from a backup made before
//! an erasure answers no read (UNAVAILABLE, health NOT_SERVING) until it has caught
//! up with the stream past the backup, so the erasure is applied before anything
//! is shown; a backup older than the streams' max age is refused; and a node whose
//! next messages aged out of the stream stops consuming with the cause instead of
//! skipping them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use handoff_contract::v1::directory_service_client::DirectoryServiceClient;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::statistics_service_client::StatisticsServiceClient;
use handoff_contract::v1::*;
use handoff_e2e::events::{case_id, incident, publish, subject_of};
use handoff_e2e::{
    AUDITOR, COORDINATOR, Exchange, ExchangeOptions, NatsServer, POLICE, run_handoff,
};
use tonic_health::pb::health_check_response::ServingStatus;

const NAME: &str = "Otýlie Nevzkříšená-Nikdy";

fn with_name(mut e: Envelope) -> Envelope {
    if let Some(Event::IncidentReported(i)) = e.event.as_mut() {
        i.subject_details = Some(PersonalDetails {
            full_name: NAME.into(),
            phone: "+420 606 555 019".into(),
            ..Default::default()
        });
    }
    e
}

async fn get_case(exchange: &Exchange, case: &str) -> Result<CaseView, tonic::Status> {
    exchange
        .client_as(POLICE)
        .await
        .get_case(GetCaseRequest {
            case_id: case_id(case),
            purpose: "restore test".into(),
        })
        .await
        .map(|r| r.into_inner().case.expect("a case"))
}

fn backup(exchange: &Exchange, to: &Path) {
    let (code, out) = run_handoff(
        &["admin", "backup", "--config"],
        &[&exchange.config_path(), Path::new("--out"), to],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("made_at="), "{out}");
}

/// Every read service of `exchange` refuses with UNAVAILABLE; returns the refusals' texts.
async fn every_read_is_refused(exchange: &Exchange) -> Vec<String> {
    let mut refusals = Vec::new();
    let mut check = |what: &str, r: Result<(), tonic::Status>| {
        let status = r.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "{what}: {status:?}"
        );
        refusals.push(status.message().to_string());
    };
    check("GetCase", get_case(exchange, "r1").await.map(|_| ()));
    let mut auditor = exchange.client_as(AUDITOR).await;
    check(
        "GetLogHead",
        auditor.get_log_head(GetLogHeadRequest {}).await.map(|_| ()),
    );
    check(
        "ReadLog",
        auditor
            .read_log(ReadLogRequest::default())
            .await
            .map(|_| ()),
    );
    check(
        "GetStats",
        StatisticsServiceClient::new(exchange.channel_as(COORDINATOR).await)
            .get_stats(GetStatsRequest {
                from_month: "2026-01".into(),
                to_month: "2026-12".into(),
                purpose: "restore test".into(),
            })
            .await
            .map(|_| ()),
    );
    check(
        "ListServices",
        DirectoryServiceClient::new(exchange.channel_as(POLICE).await)
            .list_services(ListServicesRequest::default())
            .await
            .map(|_| ()),
    );
    refusals
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_node_answers_nothing_until_it_has_applied_later_erasures() {
    let mut nats = NatsServer::start();
    let mut a = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let sent = publish(&js, &with_name(incident(1, "r1"))).await;
    a.wait_for([&sent], Duration::from_secs(30)).await;

    // A backup while the details are there; then the subject is erased.
    let dir = tempfile::tempdir().expect("tmp");
    let backup_dir = dir.path().join("backup");
    backup(&a, &backup_dir);
    let (code, out) = run_handoff(
        &[
            "admin",
            "erase",
            &subject_of("r1"),
            "--reason",
            "request under GDPR art. 17",
            "--config",
        ],
        &[&a.config_path()],
    );
    assert_eq!(code, 0, "{out}");
    let view = get_case(&a, "r1").await.expect("GetCase");
    assert!(view.subject_details_erased && view.subject_details.is_none());
    let erased_at = a.head().await.stream_position;
    a.stop();

    // The restored node starts while NATS is down: it cannot know how far the stream goes.
    nats.kill();
    let b = Exchange::start_with(
        &nats,
        ExchangeOptions {
            restore_from: Some(backup_dir.clone()),
            kek_from: Some(a.kek_path()),
            unready: true,
            ..Default::default()
        },
    )
    .await;
    assert!(
        b.data_dir().join("restored-from-backup.json").exists(),
        "restore leaves its marker"
    );
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for refusal in every_read_is_refused(&b).await {
            assert!(
                refusal.starts_with(
                    "restored from a backup; catching up with the stream: position 1 of"
                ),
                "{refusal}"
            );
            assert!(!refusal.contains(NAME), "{refusal}");
        }
        assert_eq!(b.health().await.expect("health"), ServingStatus::NotServing);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // NATS back: the node catches up past the erasure, then answers, with the details erased.
    nats.restart();
    b.wait_until_serving(Duration::from_secs(60)).await;
    let view = get_case(&b, "r1").await.expect("GetCase after catching up");
    assert!(
        view.subject_details_erased && view.subject_details.is_none(),
        "{view:?}"
    );
    assert!(b.head().await.stream_position >= erased_at);
    assert!(
        !b.data_dir().join("restored-from-backup.json").exists(),
        "the marker goes once caught up"
    );
    assert!(
        b.last_log()
            .contains("restored store caught up with the stream")
    );
}

/// A copy of `exchange`'s config with another (empty) data dir, for a restore.
fn config_with_data_dir(exchange: &Exchange, data_dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(exchange.config_path()).expect("config");
    let from = format!("data_dir = {:?}", exchange.data_dir().display().to_string());
    assert!(text.contains(&from), "{text}");
    let to = format!("data_dir = {:?}", data_dir.display().to_string());
    let path = exchange.config_path().with_file_name("restore.toml");
    std::fs::write(&path, text.replacen(&from, &to, 1)).expect("write config");
    path
}

/// Moves the backup's recorded time `days` into the past.
fn age_backup(backup_dir: &Path, days: i64) {
    let path = backup_dir.join("backup.json");
    let mut info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("backup.json")).expect("json");
    let made = info["made_at_unix_ms"].as_i64().expect("made_at_unix_ms");
    info["made_at_unix_ms"] = (made - days * 86_400_000).into();
    std::fs::write(&path, info.to_string()).expect("write backup.json");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_older_than_the_streams_max_age_is_refused() {
    let nats = NatsServer::start();
    let a = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let sent = publish(&js, &incident(1, "old")).await;
    a.wait_for([&sent], Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let backup_dir = dir.path().join("backup");
    backup(&a, &backup_dir);
    let data = dir.path().join("restored");
    let config = config_with_data_dir(&a, &data);
    let restore = || {
        run_handoff(
            &["admin", "restore", "--config"],
            &[&config, Path::new("--from"), &backup_dir],
        )
    };

    // 31 days old against the default 30: refused, naming its age and the limit.
    age_backup(&backup_dir, 31);
    let (code, out) = restore();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("made 31 days ago") && out.contains("(30 days, [nats] max_age_days)"),
        "{out}"
    );
    assert!(
        !data.exists() || std::fs::read_dir(&data).expect("dir").next().is_none(),
        "nothing restored"
    );

    // A backup that records no time cannot be shown young enough.
    let info = std::fs::read(backup_dir.join("backup.json")).expect("backup.json");
    std::fs::remove_file(backup_dir.join("backup.json")).expect("rm");
    let (code, out) = restore();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("make a new backup"), "{out}");

    // 29 days old: restored, and marked to catch up before answering.
    std::fs::write(backup_dir.join("backup.json"), info).expect("put back");
    age_backup(&backup_dir, -2);
    let (code, out) = restore();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backup made 29"), "{out}");
    assert!(data.join("restored-from-backup.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_behind_an_aged_out_stream_stops_with_the_cause() {
    // Messages age out after 2 s (`max_age_secs`, for tests; operators set max_age_days).
    let short = ExchangeOptions {
        config_lines: vec![("[nats]".into(), "max_age_secs = 2".into())],
        ..Default::default()
    };
    let nats = NatsServer::start();
    let a = Exchange::start_with(&nats, short.clone()).await;
    let js = async_nats::jetstream::new(nats.connect().await);
    let sent = publish(&js, &with_name(incident(1, "gone"))).await;
    a.wait_for([&sent], Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = js.get_stream("HANDOFF_EVENTS").await.expect("stream");
        let info = stream.info().await.expect("info");
        assert_eq!(info.config.max_age, Duration::from_secs(2));
        if info.state.first_sequence > 1 {
            break;
        }
        assert!(Instant::now() < deadline, "message 1 did not age out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new node from nothing (position 0) cannot catch up: it says why and serves nothing.
    let mut b = Exchange::start_with(
        &nats,
        ExchangeOptions {
            unready: true,
            ..short
        },
    )
    .await;
    let cause = "messages 1..1 aged out of the stream before this node consumed them; restore this node from a backup younger than max_age_days";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.last_log().contains(cause) {
        assert!(
            Instant::now() < deadline,
            "no aged-out error:\n{}",
            b.last_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.exited(), None, "it keeps running, refusing");
    assert_eq!(b.health().await.expect("health"), ServingStatus::NotServing);
    assert_eq!(b.metric("handoff_ingest_aged_out"), Some(1.0));
    assert_eq!(b.metric("handoff_ingest_consuming"), Some(0.0));
    for refusal in every_read_is_refused(&b).await {
        assert!(refusal.starts_with(cause), "{refusal}");
    }
    // Still so a while later: it never skips ahead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.health().await.expect("health"), ServingStatus::NotServing);
    assert_eq!(a.health().await.expect("health"), ServingStatus::Serving);
}
