//! The gRPC query service: projections of the log for partners, the log
//! itself for auditors, plus gRPC health and reflection.
//!
//! Every read goes through [`Cases`] (or the `Directory` and `Statistics`
//! services): the caller's identity, share of calls, need to know, field policy
//! and the access record all attach there, so no other path serves case data.

use std::net::SocketAddr;

use handoff_contract::v1::AccessRecord;
use handoff_contract::v1::cases_service_server::CasesServiceServer;
use handoff_domain::Registry;
use handoff_domain::policy::FieldPolicy;
use handoff_keyring::Keyring;
use handoff_log::{Log, LogError};

mod bulk;
mod cases;
pub mod directory;
pub mod fhir;
mod identity;
mod private_text;
mod reports;
mod rpc_metrics;
pub mod stats;

pub use cases::Cases;
pub use identity::{Access, CallQuota, Caller};
pub use rpc_metrics::{RpcMetrics, RpcMetricsLayer, code_name};
use tokio::net::TcpListener;
use tonic::Status;

/// Default and largest page of `ListCases`.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of `ListCases`.
pub const MAX_PAGE: usize = 500;

pub(crate) fn internal(e: LogError) -> Status {
    tracing::error!(error = %e, "log read failed");
    Status::internal(e.to_string())
}

pub(crate) fn keys(e: handoff_keyring::KeyringError) -> Status {
    tracing::error!(error = %e, "personal details could not be opened");
    Status::internal(e.to_string())
}

pub(crate) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

pub(crate) fn outcome_of(status: &Status) -> String {
    match status.code() {
        tonic::Code::NotFound => "not_found".into(),
        tonic::Code::PermissionDenied => "permission_denied".into(),
        tonic::Code::InvalidArgument => "invalid_argument".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The largest request any service decodes; every field has its own limit too.
const REQUEST_BYTES: usize = handoff_domain::limits::REQUEST_BYTES;

/// Why the query server stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Binding or serving failed.
    #[error("gRPC server on {addr}: {source}")]
    Transport {
        /// The listen address.
        addr: String,
        /// What tonic said.
        source: tonic::transport::Error,
    },
    /// Reflection could not be set up from the compiled descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// PEM material for mTLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// CA that signs agency client certificates.
    pub ca: Vec<u8>,
    /// Server certificate chain.
    pub cert: Vec<u8>,
    /// Server private key.
    pub key: Vec<u8>,
}

/// What the query server serves, to whom, and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The registered agencies (callers are mapped to these).
    pub registry: Registry,
    /// Agencies whose certificates are refused.
    pub revoked: Vec<String>,
    /// Field groups each kind of agency may see.
    pub fields: FieldPolicy,
    /// Deadlines shown in inboxes.
    pub sla: handoff_domain::sla::SlaRules,
    /// The exchange's signing key, for checkpoints.
    pub key: std::sync::Arc<handoff_audit::ExchangeKey>,
    /// The subjects' data keys, to open personal details for callers allowed them.
    pub keyring: std::sync::Arc<Keyring>,
    /// mTLS; without it every caller is anonymous and refused.
    pub tls: Option<TlsFiles>,
    /// Per-call metrics (`handoff_rpc_*`); registered by the caller, or `default()`.
    pub rpc_metrics: RpcMetrics,
    /// Statistics withhold counts (and medians over fewer cases) below this.
    pub suppress_below: u32,
    /// Each agency's share of calls and open streams.
    pub calls: CallQuota,
    /// While this holds a reason, every read is UNAVAILABLE with it and health is
    /// NOT_SERVING (restored from a backup and catching up, or behind an aged-out stream).
    pub gate: tokio::sync::watch::Receiver<Option<String>>,
}

/// Appends a read to the access log and makes it durable; if that fails, the read is not
/// answered (principle 6: every read is on record before anything leaves).
pub(crate) async fn record_read(log: &Log, record: AccessRecord) -> Result<(), Status> {
    log.access().record(record).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "a read could not be recorded and is not answered");
        Status::unavailable(format!(
            "the access log cannot be written, so nothing is answered: {e}"
        ))
    })
}

/// Serves `Cases`, health and reflection on `listener` until `shutdown` resolves.
///
/// Health: `handoff.v1.CasesService` is SERVING while this server runs and the read gate
/// is open; the overall service (`""`) follows `ingest_healthy` and the gate, so a
/// load balancer or operator sees when the exchange is not taking in events or
/// may not answer yet.
pub async fn serve(
    listener: TcpListener,
    log: Log,
    options: ServeOptions,
    mut ingest_healthy: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), QueryError> {
    let addr = listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    let transport = |source| QueryError::Transport {
        addr: addr.clone(),
        source,
    };
    let mut builder =
        tonic::transport::Server::builder().layer(RpcMetricsLayer(options.rpc_metrics.clone()));
    if let Some(tls) = &options.tls {
        // Client certificates are checked against the CA in the handshake; whether one was
        // presented, and whose it is, is decided per request so the refusal is UNAUTHENTICATED.
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key))
            .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca))
            .client_auth_optional(true);
        builder = builder.tls_config(config).map_err(transport)?;
    } else {
        tracing::warn!("no [query.tls]: callers have no identity, every case read is refused");
    }
    let access = Access::new(options.registry, options.revoked)
        .with_gate(options.gate.clone())
        .with_log(log.clone())
        .with_quota(options.calls, options.rpc_metrics.throttled());
    let (fields, sla, key, keyring) = (options.fields, options.sla, options.key, options.keyring);
    let (health, health_service) = tonic_health::server::health_reporter();
    // Known before the first call; the task below keeps it current.
    if options.gate.borrow().is_none() {
        health.set_serving::<CasesServiceServer<Cases>>().await;
    } else {
        health.set_not_serving::<CasesServiceServer<Cases>>().await;
    }
    let overall = health.clone();
    let mut gate = options.gate;
    tokio::spawn(async move {
        let mut gate_alive = true;
        loop {
            let open = gate.borrow_and_update().is_none();
            let serving = |yes: bool| {
                if yes {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                }
            };
            let ingest = *ingest_healthy.borrow_and_update();
            overall
                .set_service_status("", serving(ingest && open))
                .await;
            overall
                .set_service_status(
                    <CasesServiceServer<Cases> as tonic::server::NamedService>::NAME,
                    serving(open),
                )
                .await;
            tokio::select! {
                changed = ingest_healthy.changed() => if changed.is_err() { break },
                changed = gate.changed(), if gate_alive => gate_alive = changed.is_ok(),
            }
        }
    });
    // Both reflection versions: many clients (grpcio-reflection, older grpcurl) speak
    // only v1alpha. Health is listed too, so a client finds every service by reflection.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(handoff_contract::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let reflection = reflection().build_v1()?;
    tracing::info!(%addr, "query service listening");
    let result = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            handoff_contract::v1::directory_service_server::DirectoryServiceServer::new(
                directory::Directory::new(log.clone(), access.clone()),
            )
            .max_decoding_message_size(REQUEST_BYTES),
        )
        .add_service(
            handoff_contract::v1::statistics_service_server::StatisticsServiceServer::new(
                stats::Statistics::new(
                    log.clone(),
                    access.clone(),
                    options.suppress_below,
                    sla.statutory.clone(),
                ),
            )
            .max_decoding_message_size(REQUEST_BYTES),
        )
        .add_service(
            CasesServiceServer::new(Cases::new(log, access, fields, sla, key, keyring))
                .max_decoding_message_size(REQUEST_BYTES),
        )
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a reply split over several writes waits for the
            // client's delayed ACK: ~40 ms on every GetCase.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    result.map_err(transport)
}
