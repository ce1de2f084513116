//! Operations observability end to end: the Prometheus metrics a real exchange
//! serves after accepted and refused events and allowed and refused gRPC calls,
//! a W3C trace id followed from the adapter's publish to the exchange's decision
//! line, and `handoff config check`.

use std::time::{Duration, Instant};

use handoff_adapters::publisher::{Outcome, Publisher};
use handoff_contract::trace::TraceParent;
use handoff_contract::v1::*;
use handoff_e2e::events::{envelope, incident, publish, publish_raw, subject};
use handoff_e2e::{AUDITOR, CENTRE, Exchange, NatsServer, POLICE, REVOKED, repo_root, run_handoff};

/// The log without its colours (the exchange colours its log even into a file).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls the exchange's /metrics until every check holds, or fails naming the ones that do not.
async fn until_metrics(exchange: &Exchange, checks: &[(&str, &dyn Fn(f64) -> bool)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failing: Vec<&str> = checks
            .iter()
            .filter(|(series, ok)| !exchange.metric(series).is_some_and(ok))
            .map(|(series, _)| *series)
            .collect();
        if failing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics not as expected: {failing:?}\n{}",
            exchange.metrics()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_traces_and_config_check() {
    let nats = NatsServer::start();
    let exchange = Exchange::start(&nats).await;
    let js = async_nats::jetstream::new(nats.connect().await);

    // One accepted, one undecodable, one with an event id that is not a UUIDv7.
    publish(&js, &incident(1, "obs-1")).await;
    let garbage = incident(2, "obs-garbage");
    publish_raw(
        &js,
        &subject(&garbage),
        Some("garbage-1"),
        b"\xff\xfe not protobuf".to_vec(),
    )
    .await;
    let mut invalid = envelope(
        3,
        POLICE,
        "obs-invalid",
        incident(3, "x").event.expect("event"),
    );
    invalid.event_id = "not-a-uuid".into();
    publish(&js, &invalid).await;

    // The police adapter's publisher, carrying a trace context the record came with.
    let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("valid traceparent");
    let traced = incident(4, "obs-traced");
    let police = Publisher::new(
        nats.connect_as(POLICE).await.expect("police connects"),
        POLICE,
    )
    .with_transport(&handoff_e2e::transport_public())
    .expect("transport key")
    .with_timeout(Duration::from_secs(30));
    let outcomes = police
        .publish_all_traced(std::slice::from_ref(&traced), &[Some(trace)])
        .await
        .expect("publish");
    assert!(
        matches!(outcomes[0], Outcome::Accepted { .. }),
        "{outcomes:?}"
    );
    exchange.wait_for_position(4, Duration::from_secs(30)).await;

    // Calls: allowed, refused by need to know, refused for a revoked certificate.
    exchange
        .client_as(AUDITOR)
        .await
        .get_log_head(GetLogHeadRequest {})
        .await
        .expect("auditor reads the head");
    let denied = exchange
        .client_as(CENTRE)
        .await
        .inbox(InboxRequest {
            agency: POLICE.into(),
            purpose: String::new(),
        })
        .await
        .expect_err("another agency's inbox");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let unauthenticated = exchange
        .client_as(REVOKED)
        .await
        .get_log_head(GetLogHeadRequest {})
        .await
        .expect_err("revoked certificate");
    assert_eq!(
        unauthenticated.code(),
        tonic::Code::Unauthenticated,
        "{unauthenticated:?}"
    );

    let one = |v: f64| v == 1.0;
    let some = |v: f64| v >= 1.0;
    let zero = |v: f64| v == 0.0;
    until_metrics(
        &exchange,
        &[
            (r#"handoff_ingest_rejected_total{reason="malformed"}"#, &one),
            (r#"handoff_ingest_rejected_total{reason="invalid"}"#, &one),
            (
                r#"handoff_ingest_messages_total{outcome="accepted"}"#,
                &|v| v == 2.0,
            ),
            (
                r#"handoff_rpc_requests_total{method="GetLogHead",code="OK"}"#,
                &some,
            ),
            (
                r#"handoff_rpc_requests_total{method="Inbox",code="PERMISSION_DENIED"}"#,
                &one,
            ),
            (
                r#"handoff_rpc_requests_total{method="GetLogHead",code="UNAUTHENTICATED"}"#,
                &one,
            ),
            (
                r#"handoff_rpc_duration_seconds_count{method="Inbox"}"#,
                &one,
            ),
            ("handoff_ingest_consumer_lag", &zero),
            ("handoff_ingest_stuck", &zero),
            ("handoff_store_bytes", &|v| v > 0.0),
            ("handoff_ingest_commit_duration_seconds_count", &some),
            ("handoff_ingest_batch_messages_count", &some),
            ("handoff_ingest_batch_messages_sum", &|v| v == 4.0),
            (r#"handoff_sla_overdue{rule="first_contact"}"#, &zero),
        ],
    )
    .await;
    let text = exchange.metrics();
    assert!(
        text.contains(r#"handoff_rpc_duration_seconds_bucket{le="+Inf",method="GetLogHead"}"#)
            || text
                .contains(r#"handoff_rpc_duration_seconds_bucket{method="GetLogHead",le="+Inf"}"#),
        "{text}"
    );

    // The trace id appears on the exchange's decision line for that event.
    let log = strip_ansi(&exchange.last_log());
    let line = log
        .lines()
        .find(|l| l.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736") && l.contains("decided"))
        .unwrap_or_else(|| panic!("no decision line with the trace id:\n{log}"));
    assert!(
        line.contains(&traced.event_id) && line.contains("obs-traced") && line.contains("accepted"),
        "{line}"
    );
    // Untraced messages get no invented trace id.
    assert!(
        !log.lines()
            .any(|l| l.contains("not-a-uuid") && l.contains("trace_id")),
        "{log}"
    );

    // `handoff config check`: the shipped config and the test's pass; a broken one names its line.
    let shipped = repo_root().join("ops/handoff.toml");
    let (code, out) = run_handoff(&["config", "check", "--config"], &[&shipped]);
    assert!(code == 0 && out.lines().any(|l| l == "ok"), "{out}");
    let (code, out) = run_handoff(&["config", "check", "--config"], &[&exchange.config_path()]);
    assert!(code == 0 && out.contains("ok"), "{out}");
    let broken = exchange.config_path().with_file_name("broken.toml");
    let text = std::fs::read_to_string(exchange.config_path()).expect("config");
    std::fs::write(&broken, text.replacen("batch_max", "batchmax", 1)).expect("write");
    let (code, out) = run_handoff(&["config", "check", "--config"], &[&broken]);
    let line = text
        .lines()
        .position(|l| l.starts_with("batch_max"))
        .expect("batch_max line")
        + 1;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("broken.toml:{line}:1: unknown field `batchmax`"))
            && out.contains("batch_max"),
        "{out}"
    );

    // The example deployments' configs pass the same check.
    for example in [
        "ops/examples/single-node/handoff.toml",
        "ops/examples/cluster/handoff-a.toml",
        "ops/examples/cluster/handoff-b.toml",
    ] {
        // They name the policy where a deployment installs it; point that at ours.
        let text = std::fs::read_to_string(repo_root().join(example)).expect(example);
        assert!(text.contains("/etc/handoff/policy.toml"), "{example}");
        let copy = exchange.config_path().with_file_name("example.toml");
        let policy = repo_root().join("ops/policy.toml");
        std::fs::write(
            &copy,
            text.replace("/etc/handoff/policy.toml", &policy.display().to_string()),
        )
        .expect("write");
        let (code, out) = run_handoff(&["config", "check", "--config"], &[&copy]);
        assert_eq!(code, 0, "{example}: {out}");
    }

    // An agency calling faster than its share ([query] call_burst, 200 by default) is
    // refused RESOURCE_EXHAUSTED, and counted.
    const EAGER: &str = "probation-north";
    let mut eager = exchange.client_as(EAGER).await;
    let mut calls = 0;
    let throttled = loop {
        calls += 1;
        assert!(calls <= 2000, "{calls} calls in a row and none refused");
        if let Err(status) = eager.get_log_head(GetLogHeadRequest {}).await {
            break status;
        }
    };
    assert_eq!(
        throttled.code(),
        tonic::Code::ResourceExhausted,
        "{throttled:?}"
    );
    until_metrics(
        &exchange,
        &[(
            &format!("handoff_rpc_throttled_total{{agency=\"{EAGER}\"}}"),
            &some,
        )],
    )
    .await;

    // Every metric the dashboard draws and the alerts watch is one the exchange serves.
    // Gauges by label (an agency's quota use) appear once the background sampler has
    // set them, within its first round.
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for file in [
        "ops/grafana/handoff-dashboard.json",
        "ops/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
        if file.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text).expect("the dashboard is JSON");
        }
        let names = metric_names(&text);
        assert!(names.len() > 5, "{file} names only {} metrics", names.len());
        wanted.extend(names.into_iter().map(|n| (file, n)));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let served: std::collections::BTreeSet<String> = exchange
            .metrics()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(metric_family)
            .collect();
        let Some((file, name)) = wanted
            .iter()
            .find(|(_, name)| !served.contains(&metric_family(name)))
        else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "{file} uses {name}, which the exchange does not serve; it serves {served:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `handoff_…` metric names in a text (a dashboard, alert rules).
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("handoff_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Only whole identifiers: not a part of a longer word before it.
        let whole =
            at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if whole && end > "handoff_".len() {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end.max(1)..];
    }
    out
}

/// A sample's or family's name without the suffixes exposition adds.
fn metric_family(name: &str) -> String {
    ["_bucket", "_count", "_sum", "_total", "_created"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
        .to_string()
}
