//! `handoff serve`: ingest and query in one process.

use anyhow::Context;
use handoff_ingest::{Ingest, IngestSettings, serve_receipt_lookups};
use handoff_log::{Log, hex};
use tokio::sync::watch;

use crate::config::Config;

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Says where the configuration and the log disagree about revocations: both are
/// refused on gRPC, but only the log stops ingest from taking an agency's events.
fn warn_on_revocation_drift(config: &Config, log: &Log) -> anyhow::Result<()> {
    let in_log: std::collections::BTreeSet<String> =
        log.revocations()?.into_iter().map(|(a, _)| a).collect();
    for agency in config.revoked() {
        if !in_log.contains(&agency) {
            tracing::warn!(
                %agency,
                "revoked in the config but not in the log: its calls are refused, but its events are still taken until `handoff admin revoke {agency}` records the revocation"
            );
        }
    }
    for agency in &in_log {
        if !config.revoked().contains(agency) {
            tracing::info!(%agency, "revoked in the log: its events and calls are refused");
        }
    }
    Ok(())
}

/// Runs until SIGINT/SIGTERM, or until ingest meets a fault it must not hide.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = config.registry().map_err(anyhow::Error::msg)?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    crate::private::tighten_dir(&data_dir, "the data dir");
    let log = Log::open_with(
        &data_dir,
        &handoff_log::StoreOptions {
            cache_bytes: config.store.cache_mb << 20,
            ..Default::default()
        },
    )?;
    let key = std::sync::Arc::new(handoff_audit::ExchangeKey::load_or_create(&data_dir)?);
    tracing::info!(public_key = %key.public_hex(), "exchange signing key loaded");
    let keyring = std::sync::Arc::new(
        handoff_keyring::Keyring::load(&data_dir, config.kek()?)
            .context("cannot open the subjects' key store")?,
    );
    let transport_keys = config
        .transport_keys()
        .context("cannot read the transport keys ([keys] transport_file)")?;
    tracing::info!(
        epochs = ?transport_keys.epochs().map(|e| e.epoch).collect::<Vec<_>>(),
        public_key = %transport_keys.current_public().to_line(),
        "transport keys loaded"
    );
    let transport = std::sync::Arc::new(handoff_transport::Opener::new(transport_keys));
    let head = log.head();
    tracing::info!(
        data_dir = %data_dir.display(),
        head_sequence = head.sequence,
        head_hash = %hex(&head.hash),
        stream_position = head.stream_position,
        quarantined = head.quarantined,
        "log opened, chain tail verified"
    );
    warn_on_revocation_drift(&config, &log)?;
    // Restored from a backup: no read until the stream's later erasures are applied.
    let restored = crate::restore_gate::pending(&data_dir)?;
    if let Some(backup) = &restored {
        tracing::warn!(backup_made_at = %backup.made_at, stream_position = head.stream_position, "restored from a backup: answering no read until caught up with the stream");
    }
    let (gate_tx, gate_rx) = watch::channel(
        restored
            .as_ref()
            .map(|_| crate::restore_gate::catching_up(head.stream_position, None)),
    );

    // Every reconnect bumps this, so ingest recreates its consumer at once instead of
    // waiting for the old one's heartbeat to fail.
    let (reconnected_tx, reconnected_rx) = watch::channel(0u64);
    let reconnected_tx = std::sync::Arc::new(reconnected_tx);
    let client = config
        .nats_options(None)?
        .name("handoff-exchange")
        .event_callback(move |event| {
            let reconnected = reconnected_tx.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        reconnected.send_modify(|n| *n += 1);
                    }
                    other => tracing::warn!(event = %other, "NATS connection"),
                }
            }
        })
        .retry_on_initial_connect()
        .connect(config.nats_servers()?)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let ingest_metrics = handoff_ingest::IngestMetrics::default();
    let rpc_metrics = handoff_query::RpcMetrics::default();
    let metrics = match config.metrics.listen {
        None => None,
        Some(listen) => {
            let mut registry = prometheus_client::registry::Registry::default();
            ingest_metrics.register(&mut registry);
            rpc_metrics.register(&mut registry);
            Some(tokio::spawn(crate::metrics::serve(
                listen,
                registry,
                stop_rx.clone(),
            )))
        }
    };
    let registry_for_gauges = registry.clone();
    let ingest = Ingest::new(
        log.clone(),
        registry,
        client.clone(),
        IngestSettings {
            stream: config.stream(),
            batch_max: config.ingest.batch_max,
            min_free_bytes: config.store.min_free_mb.saturating_mul(1 << 20),
            stuck_after: std::time::Duration::from_secs(config.ingest.stuck_after_secs.max(1)),
            quarantine_quota_bytes: config.ingest.quarantine_quota_mb.saturating_mul(1 << 20),
        },
        key.clone(),
        keyring.clone(),
        transport.clone(),
    )
    .with_reconnects(reconnected_rx)
    .with_metrics(ingest_metrics.clone());
    let gate = tokio::spawn(crate::restore_gate::run(
        crate::restore_gate::Watched {
            data_dir: data_dir.clone(),
            log: log.clone(),
            client: client.clone(),
            stream: config.nats.stream.clone(),
            restored: restored.is_some(),
        },
        gate_tx,
        ingest.halted(),
        stop_rx.clone(),
    ));
    let (consuming_tx, consuming_rx) = watch::channel(false);
    let mut ingest_task = tokio::spawn(ingest.run(stop_rx.clone(), consuming_tx));
    let lookups = tokio::spawn(serve_receipt_lookups(
        client.clone(),
        log.clone(),
        key.clone(),
        stop_rx.clone(),
    ));

    let admin = tokio::spawn(crate::admin_socket::serve(
        data_dir.clone(),
        log.clone(),
        keyring.clone(),
        stop_rx.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.query.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.query.listen))?;
    let policy = config.policy()?;
    let retention = policy.retention.map(|(rule, every)| {
        tokio::spawn(crate::erasure::run(
            crate::erasure::Retention {
                log: log.clone(),
                keyring: keyring.clone(),
                client: client.clone(),
                rule,
                every,
                clock: crate::erasure::Clock::from_env(),
            },
            stop_rx.clone(),
        ))
    });
    // Store size and SLA gauges are computed off the hot path, every few seconds.
    let gauges = config.metrics.listen.map(|_| {
        tokio::spawn(crate::gauges::run(
            crate::gauges::Watched {
                data_dir: data_dir.clone(),
                log: log.clone(),
                registry: registry_for_gauges.clone(),
                sla: policy.sla.clone(),
                metrics: ingest_metrics.clone(),
                client: client.clone(),
                ingress: config.stream().ingress,
                quarantine_quota_bytes: config.ingest.quarantine_quota_mb.saturating_mul(1 << 20),
            },
            stop_rx.clone(),
        ))
    });
    let options = handoff_query::ServeOptions {
        rpc_metrics,
        registry: config.registry().map_err(anyhow::Error::msg)?,
        revoked: config.revoked(),
        fields: policy.fields,
        sla: policy.sla,
        suppress_below: policy.suppress_below,
        calls: config.call_quota(),
        gate: gate_rx,
        key,
        keyring,
        tls: match &config.query.tls {
            None => None,
            Some(tls) => {
                let read = |p: &std::path::Path| {
                    let path = config.resolve(p);
                    std::fs::read(&path).with_context(|| {
                        format!(
                            "cannot read {} (create development certificates with `handoff certs`)",
                            path.display()
                        )
                    })
                };
                Some(handoff_query::TlsFiles {
                    ca: read(&tls.ca)?,
                    cert: read(&tls.cert)?,
                    key: read(&tls.key)?,
                })
            }
        },
    };
    let mut query_stop = stop_rx.clone();
    let query = tokio::spawn(handoff_query::serve(
        listener,
        log.clone(),
        options,
        consuming_rx,
        async move {
            let _ = query_stop.wait_for(|stop| *stop).await;
        },
    ));

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        result = &mut ingest_task => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("ingest stopped")),
            Err(e) => Err(anyhow::anyhow!("ingest task failed: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    if !ingest_task.is_finished() {
        let _ = ingest_task.await;
    }
    let _ = lookups.await;
    let _ = gate.await;
    if let Ok(Err(e)) = admin.await {
        tracing::warn!(error = %format!("{e:#}"), "admin socket stopped with an error");
    }
    if let Some(Ok(Err(e))) = match metrics {
        Some(m) => Some(m.await),
        None => None,
    } {
        tracing::warn!(error = %format!("{e:#}"), "metrics server stopped with an error");
    }
    if let Some(gauges) = gauges {
        let _ = gauges.await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    if let Ok(Err(e)) = query.await {
        tracing::warn!(error = %e, "query service stopped with an error");
    }
    let _ = client.flush().await;
    drop(log);
    if outcome.is_ok() {
        let started = std::time::Instant::now();
        match handoff_log::settle(&data_dir) {
            Ok(()) => tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "store settled, so the next start reads its snapshot"
            ),
            Err(e) => tracing::warn!(error = %e, "store not settled; the next start reads it back"),
        }
    }
    outcome
}
