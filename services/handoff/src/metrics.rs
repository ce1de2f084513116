//! `GET /metrics` in the OpenMetrics 1.0 text format (`application/openmetrics-text`, which Prometheus scrapes), on `[metrics] listen`.

use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// Serves the registry until shutdown.
pub async fn serve(
    listen: std::net::SocketAddr,
    registry: Registry,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        axum::http::StatusCode::OK,
                        [(
                            CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(e) => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for metrics on {listen}"))?;
    tracing::info!(%listen, "metrics at /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .context("metrics server")
}
