//! `handoff-bench`: drives a deterministic workload through the real path
//! (publish over NATS -> ingest -> sled -> projections -> gRPC) and measures
//! baselines in the same run, so figures can be read as ratios.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use handoff_bench::measure::{
    Percentiles, cpu_time, disk_usage, fdatasync_latency, prepare, publish_acknowledged,
    publish_causal, rss_bytes,
};
use handoff_bench::workload;
use handoff_contract::v1::{GetCaseRequest, Receipts};
use handoff_e2e::{Exchange, ExchangeOptions, NatsServer, run_handoff};
use prost::Message;

mod audit;

/// Measure Handoff end to end against baselines from the same run.
#[derive(Parser)]
struct Args {
    /// Events in the bulk ingest (and in the raw JetStream baseline).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cases in progress at once in the workload.
    #[arg(long, default_value_t = 256)]
    concurrent_cases: usize,
    /// Publish acknowledgements outstanding at once.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Events per second of the steady-load latency run.
    #[arg(long, default_value_t = 1000)]
    steady_rate: u64,
    /// Seconds of the steady-load latency run.
    #[arg(long, default_value_t = 10)]
    steady_secs: u64,
    /// GetCase calls (and as many empty health RPCs) for query latency.
    #[arg(long, default_value_t = 5000)]
    queries: usize,
    /// Messages per ingest batch (`[ingest] batch_max`).
    #[arg(long, default_value_t = 512)]
    batch_max: usize,
    /// sled's page cache of the exchange's store (`[store] cache_mb`), if not the default.
    #[arg(long)]
    store_cache_mb: Option<u64>,
    /// nats-server fsyncs at JetStream's default interval instead of every message
    /// (`sync_interval: always`, as ops/nats/single.conf ships).
    #[arg(long)]
    nats_default_sync: bool,
    /// Also measure Message DB on PostgreSQL (installs both; see ops/bench/messagedb-baseline).
    #[arg(long)]
    message_db: bool,
    /// Keep a copy of the exchange's directory (config and data dir) here, to profile
    /// `handoff admin rebuild` or queries on a loaded store afterwards.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Write the figures as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Everything one run measured.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    events: u64,
    seed: u64,
    nats_sync_always: bool,
    raw_jetstream_events_per_sec: f64,
    handoff_ingest_events_per_sec: f64,
    handoff_publish_acked_events_per_sec: f64,
    message_db_events_per_sec: Option<f64>,
    publish_to_queryable: Option<Percentiles>,
    steady_rate: u64,
    get_case: Option<Percentiles>,
    empty_rpc: Option<Percentiles>,
    /// 512-byte write + fdatasync on the data dir's disk: the floor of a durably recorded read.
    fdatasync: Option<Percentiles>,
    cases: usize,
    /// CPU time per event during the bulk ingest: the exchange, and nats-server beside it.
    handoff_cpu_us_per_event: f64,
    nats_cpu_us_per_event: f64,
    rss_bytes: u64,
    disk_bytes: u64,
    disk_bytes_per_event: f64,
    cold_start_ms: f64,
    /// SIGTERM to exit after the load, including settling the store for the next start.
    stop_ms: f64,
    export_bytes: u64,
    sha256_mb_per_sec: f64,
    verify_mb_per_sec: f64,
    replay_secs: f64,
    /// `handoff admin rebuild` of the stopped exchange's data dir, in place.
    rebuild_secs: f64,
    /// What the store holds per keyspace after the load, per logged event.
    keyspaces: Vec<Keyspace>,
}

/// One keyspace's live bytes after the load.
#[derive(Debug, Default, serde::Serialize)]
struct Keyspace {
    name: &'static str,
    keys: u64,
    bytes: u64,
    bytes_per_event: f64,
}

/// The live bytes of each keyspace of the stopped exchange's store, per logged event.
fn keyspaces(data_dir: &std::path::Path) -> anyhow::Result<Vec<Keyspace>> {
    let log = handoff_log::Log::open(data_dir)?;
    let events = log.head().sequence.max(1) as f64;
    Ok(log
        .keyspace_sizes()?
        .into_iter()
        .map(|k| Keyspace {
            name: k.name,
            keys: k.keys,
            bytes: k.key_bytes + k.value_bytes,
            bytes_per_event: (k.key_bytes + k.value_bytes) as f64 / events,
        })
        .collect())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut f = Figures {
        events: args.events,
        seed: args.seed,
        nats_sync_always: !args.nats_default_sync,
        steady_rate: args.steady_rate,
        ..Figures::default()
    };
    eprintln!("generating {} events (seed {})", args.events, args.seed);
    let bulk = prepare(workload::events(
        args.seed,
        args.events,
        args.concurrent_cases,
    ));
    let case_ids: Vec<String> = workload::events(args.seed, args.events, args.concurrent_cases)
        .map(|e| e.case_id)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    let nats = NatsServer::start_syncing(!args.nats_default_sync);
    let client = nats.connect().await;
    let mut js = async_nats::jetstream::new(client.clone());
    // The window queues acknowledgements behind fsyncs: allow for it rather than fail.
    js.set_timeout(Duration::from_secs(120));

    // Baseline 1: the transport's own ceiling, the same payloads into a file-backed stream.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_RAW".into(),
        subjects: vec!["bench.raw.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .context("create the raw baseline stream")?;
    eprintln!("baseline: raw JetStream publishes");
    let (took, _) = publish_acknowledged(
        &js,
        &bulk,
        |m| m.subject.replacen("handoff.events.", "bench.raw.", 1),
        args.window,
    )
    .await?;
    f.raw_jetstream_events_per_sec = rate(args.events, took);
    js.delete_stream("BENCH_RAW").await.ok();

    // Every agency's ingress quota holds the whole run (the default is sized for one
    // agency's normal hour), and the query latency run may call as fast as it can.
    // nats-server reserves each stream's byte quota up front, for every agency of
    // the registry, so a quota of the run's messages and a quarter more, at 1 KiB each (they are
    // about 500 B) is what still fits beside 1M events on a 40 GB disk.
    let messages = args.events + args.steady_rate * args.steady_secs;
    let quota_messages = (messages + messages / 4).max(20_000);
    let quota_mb = (quota_messages * 1024).div_ceil(1 << 20).max(16);
    let mut exchange = Exchange::start_with(
        &nats,
        ExchangeOptions {
            log_filter: Some("warn".into()),
            batch_max: Some(args.batch_max),
            config_lines: vec![
                (
                    "[nats]".into(),
                    format!(
                        "agency_quota_messages = {quota_messages}\nagency_quota_mb = {quota_mb}"
                    ),
                ),
                (
                    "[query]".into(),
                    "calls_per_second = 1000000.0\ncall_burst = 1000000.0".into(),
                ),
            ]
            .into_iter()
            .chain(
                args.store_cache_mb
                    .map(|mb| ("[store]".into(), format!("cache_mb = {mb}"))),
            )
            .collect(),
            ..Default::default()
        },
    )
    .await;
    let pid = exchange.pid().context("the exchange runs")?;

    // Handoff: publish -> ingest -> sled -> projections, until the log holds the last one.
    // Each agency publishes into its own ingress stream, so an event that follows another
    // agency's on its case goes out once that one is decided, as adapters do.
    eprintln!("handoff: bulk ingest");
    let nats_pid = nats.pid().context("nats-server runs")?;
    let cpu_before = (cpu_time(pid), cpu_time(nats_pid));
    let started = Instant::now();
    let (acked, sent) = publish_causal(&js, &client, &bulk, args.window).await?;
    f.handoff_publish_acked_events_per_sec = rate(args.events, acked);
    let head = exchange.wait_for(&sent, Duration::from_secs(3600)).await;
    f.handoff_ingest_events_per_sec = rate(args.events, started.elapsed());
    let per_event = |after: Option<Duration>, before: Option<Duration>| match (after, before) {
        (Some(a), Some(b)) => (a - b).as_secs_f64() * 1e6 / args.events as f64,
        _ => f64::NAN,
    };
    f.handoff_cpu_us_per_event = per_event(cpu_time(pid), cpu_before.0);
    f.nats_cpu_us_per_event = per_event(cpu_time(nats_pid), cpu_before.1);
    anyhow::ensure!(
        head.sequence == args.events && head.quarantined == 0,
        "the log holds {} records and {} quarantined, not {} records",
        head.sequence,
        head.quarantined,
        args.events
    );
    f.rss_bytes = rss_bytes(pid).unwrap_or_default();
    f.disk_bytes = disk_usage(&exchange.data_dir());
    f.disk_bytes_per_event = f.disk_bytes as f64 / args.events as f64;

    f.publish_to_queryable = Some(steady_latency(&args, &js, &client).await?);
    let (get_case, empty) = query_latency(&exchange, &case_ids, args.queries).await?;
    f.get_case = Some(get_case);
    f.empty_rpc = Some(empty);
    f.fdatasync = Some(fdatasync_latency(&exchange.data_dir(), args.queries)?);
    f.cases = case_ids.len();

    // Stopped as an operator does, then cold start to SERVING on the loaded store,
    // without a rebuild.
    let started = Instant::now();
    let stopped = exchange.stop();
    f.stop_ms = started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        stopped.is_some_and(|s| s.success()),
        "the exchange did not stop cleanly: {stopped:?}\n{}",
        exchange.last_log()
    );
    f.keyspaces = keyspaces(&exchange.data_dir())?;
    let started = Instant::now();
    exchange.restart().await;
    f.cold_start_ms = started.elapsed().as_secs_f64() * 1e3;

    let export = audit::audit_figures(&exchange, &mut f)?;

    // Every projection dropped and rebuilt from the log, in place, the exchange stopped.
    exchange.stop();
    eprintln!("rebuild: every projection from the log");
    let t = Instant::now();
    let (code, out) = run_handoff(
        &["admin", "rebuild", "--config"],
        &[&exchange.config_path()],
    );
    anyhow::ensure!(code == 0, "admin rebuild: {out}");
    f.rebuild_secs = t.elapsed().as_secs_f64();
    eprint!("{out}");
    if let Some(keep) = &args.keep {
        let from = exchange.config_path();
        let from = from.parent().context("the exchange's dir")?;
        let status = Command::new("cp").arg("-a").arg(from).arg(keep).status()?;
        anyhow::ensure!(
            status.success(),
            "cp -a {} {}",
            from.display(),
            keep.display()
        );
        std::fs::copy(&export, keep.join("export.jsonl"))?;
        eprintln!(
            "exchange dir and its export (export.jsonl) kept in {} (its config names the old data dir)",
            keep.display()
        );
    }
    if let Some(dir) = export.parent() {
        std::fs::remove_dir_all(dir).ok();
    }
    drop(exchange);
    drop(nats);

    if args.message_db {
        // Its rate is flat in the event count (a lock per commit), so a slice is enough.
        f.message_db_events_per_sec = Some(message_db(args.events.min(20_000) / 8 * 8)?);
    }
    report(&f);
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&f)?)?;
        eprintln!("figures written to {}", out.display());
    }
    Ok(())
}

/// Publishes new cases at a steady rate and times each event from publish to its
/// receipt. A receipt is sent only after the batch is flushed and its projections
/// updated, so it is an upper bound on publish-to-queryable. An event that follows
/// another agency's on its case goes out once that one's receipt arrived (each agency
/// has its own ingress stream), later than its slot if need be.
async fn steady_latency(
    args: &Args,
    js: &async_nats::jetstream::Context,
    client: &async_nats::Client,
) -> anyhow::Result<Percentiles> {
    let total = args.steady_rate * args.steady_secs;
    eprintln!(
        "handoff: {} events at {} events/s for latency",
        total, args.steady_rate
    );
    let messages = prepare(workload::events(args.seed + 1_000_003, total, 64));
    let sent: Arc<Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let awaited: Arc<std::collections::HashSet<String>> =
        Arc::new(messages.iter().filter_map(|m| m.after.clone()).collect());
    let decided: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let decided_now = Arc::new(tokio::sync::Notify::new());
    let mut receipts = client.subscribe("handoff.receipts.>").await?;
    client.flush().await?;
    let collector = {
        let sent = sent.clone();
        let (awaited, decided, decided_now) =
            (awaited.clone(), decided.clone(), decided_now.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total as usize);
            while (latencies.len() as u64) < total {
                let Ok(Some(msg)) =
                    tokio::time::timeout(Duration::from_secs(30), receipts.next()).await
                else {
                    break;
                };
                let now = Instant::now();
                let Ok(receipts) = Receipts::decode(msg.payload.as_ref()) else {
                    continue;
                };
                for receipt in receipts.receipts {
                    if awaited.contains(&receipt.event_id)
                        && let Ok(mut d) = decided.lock()
                    {
                        d.insert(receipt.event_id.clone());
                        decided_now.notify_waiters();
                    }
                    let at = sent
                        .lock()
                        .ok()
                        .and_then(|mut s| s.remove(&receipt.event_id));
                    if let Some(at) = at {
                        latencies.push(now - at);
                    }
                }
            }
            latencies
        })
    };
    let start = tokio::time::Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for (i, m) in messages.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / args.steady_rate as f64);
        // Drain acknowledgements while waiting for the next slot.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => break,
                Some(ack) = acks.next(), if !acks.is_empty() => { ack?; }
            }
        }
        // And, if it follows another agency's event, until that one is decided.
        if let Some(dep) = &m.after {
            let waited_from = tokio::time::Instant::now();
            loop {
                let notified = decided_now.notified();
                if decided.lock().is_ok_and(|d| d.contains(dep)) {
                    break;
                }
                anyhow::ensure!(
                    waited_from.elapsed() < Duration::from_secs(30),
                    "no receipt for {dep} within 30 s"
                );
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    Some(ack) = acks.next(), if !acks.is_empty() => { ack?; }
                }
            }
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", m.msg_id.as_str());
        if let Ok(mut s) = sent.lock() {
            s.insert(m.msg_id.clone(), Instant::now());
        }
        let ack = js
            .publish_with_headers(m.subject.clone(), headers, m.body.clone())
            .await?;
        acks.push(ack.into_future());
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let mut latencies = collector.await?;
    anyhow::ensure!(
        latencies.len() as u64 == total,
        "only {} of {} receipts arrived",
        latencies.len(),
        total
    );
    Ok(Percentiles::of(&mut latencies))
}

/// GetCase against an empty RPC (gRPC health Check) on the same server, channel and
/// certificate, alternating so both see the same noise.
async fn query_latency(
    exchange: &Exchange,
    case_ids: &[String],
    n: usize,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    eprintln!("handoff: {n} GetCase and {n} empty RPCs");
    let channel = exchange.channel_as(handoff_e2e::POLICE).await;
    let mut cases =
        handoff_contract::v1::cases_service_client::CasesServiceClient::new(channel.clone());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut rng = workload::Rng::new(42);
    let (mut get, mut empty) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let case_id = rng.pick(case_ids).clone();
        let t = Instant::now();
        cases
            .get_case(GetCaseRequest {
                case_id,
                purpose: "benchmark".into(),
            })
            .await
            .context("GetCase as the referring police")?;
        get.push(t.elapsed());
        let t = Instant::now();
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?;
        empty.push(t.elapsed());
    }
    Ok((Percentiles::of(&mut get), Percentiles::of(&mut empty)))
}

/// Runs ops/bench/messagedb-baseline and reads its events/s.
fn message_db(events: u64) -> anyhow::Result<f64> {
    eprintln!("baseline: Message DB on PostgreSQL");
    let script = handoff_e2e::repo_root().join("ops/bench/messagedb-baseline");
    let out = Command::new(&script)
        .args(["--events", &events.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "{} failed", script.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no output")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    v["events_per_sec"]
        .as_f64()
        .context("no events_per_sec in the baseline's output")
}

fn report(f: &Figures) {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!(
        "\nHandoff benchmark: {} events, seed {}, nats-server {}",
        f.events,
        f.seed,
        if f.nats_sync_always {
            "fsyncing every message"
        } else {
            "fsyncing at its default interval"
        }
    );
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure", "handoff", "baseline", "ratio"
    );
    let row = |name: &str, h: f64, b: f64, unit: &str| {
        println!(
            "{:<44} {:>10.0} {unit:<3} {:>10.0} {unit:<3} {:>8.2}",
            name,
            h,
            b,
            ratio(h, b)
        );
    };
    row(
        "ingest vs raw JetStream (events/s)",
        f.handoff_ingest_events_per_sec,
        f.raw_jetstream_events_per_sec,
        "/s",
    );
    if let Some(mdb) = f.message_db_events_per_sec {
        row(
            "ingest vs Message DB (events/s)",
            f.handoff_ingest_events_per_sec,
            mdb,
            "/s",
        );
    }
    row(
        "audit verify vs SHA-256 (MB/s)",
        f.verify_mb_per_sec,
        f.sha256_mb_per_sec,
        "MB",
    );
    if let (Some(g), Some(e)) = (f.get_case, f.empty_rpc) {
        println!(
            "{:<44} {:>10.3} ms  {:>10.3} ms  {:>8.2}",
            "GetCase p99 vs empty RPC p99",
            g.p99_ms,
            e.p99_ms,
            ratio(g.p99_ms, e.p99_ms)
        );
        println!(
            "{:<44} {:>10.3} ms  {:>10.3} ms  {:>8.2}",
            "GetCase p50 vs empty RPC p50",
            g.p50_ms,
            e.p50_ms,
            ratio(g.p50_ms, e.p50_ms)
        );
    }
    if let Some(d) = f.fdatasync {
        println!(
            "disk floor, 512 B + fdatasync: p50 {:.3} ms, p99 {:.3} ms (every GetCase records the read durably first)",
            d.p50_ms, d.p99_ms
        );
    }
    if let Some(l) = f.publish_to_queryable {
        println!(
            "publish to queryable at {}/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} events)",
            f.steady_rate, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.samples
        );
    }
    println!(
        "publish acknowledged (into the agencies' ingress streams, each event after the other agency's it follows was decided): {:.0} events/s; CPU per event during ingest: exchange {:.1} µs, nats-server {:.1} µs",
        f.handoff_publish_acked_events_per_sec, f.handoff_cpu_us_per_event, f.nats_cpu_us_per_event
    );
    println!(
        "{} cases; RSS {:.1} MB, disk {:.1} MB ({:.0} bytes/event), stop (SIGTERM) {:.0} ms, cold start to SERVING {:.0} ms",
        f.cases,
        f.rss_bytes as f64 / 1e6,
        f.disk_bytes as f64 / 1e6,
        f.disk_bytes_per_event,
        f.stop_ms,
        f.cold_start_ms,
    );
    println!(
        "rebuild of every projection in place {:.2} s; audit replay from the export (verify + rebuild into a fresh dir) {:.2} s; export {:.1} MB",
        f.rebuild_secs,
        f.replay_secs,
        f.export_bytes as f64 / 1e6
    );
    if !f.keyspaces.is_empty() {
        let live: f64 = f.keyspaces.iter().map(|k| k.bytes_per_event).sum();
        println!(
            "live bytes per logged event, by keyspace (of {:.0} on disk; the rest is sled's log and pages):",
            f.disk_bytes_per_event
        );
        for k in &f.keyspaces {
            println!(
                "  {:<22} {:>10} keys {:>8.0} bytes/event",
                k.name, k.keys, k.bytes_per_event
            );
        }
        println!("  {:<22} {:>10}      {:>8.0} bytes/event", "all", "", live);
    }
}
