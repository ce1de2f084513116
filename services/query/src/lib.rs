//! The gRPC query service: projections of the log for partners, the log
//! itself for auditors, plus gRPC health and reflection.
//!
//! Every read goes through [`Cases`]; the need-to-know filter and access
//! audit attach here (issue 3), so no other path serves case data.

use std::net::SocketAddr;

use handoff_contract::v1::cases_server::{Cases as CasesApi, CasesServer};
use handoff_contract::v1::*;
use handoff_domain::policy::{FieldPolicy, Grant};
use handoff_domain::{AgencyKind, Registry, Visibility, visibility};
use handoff_log::{CaseFilter, Log, LogError};

mod identity;

pub use identity::{Access, Caller};
use prost::Message;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

/// Default and largest page of `ListCases`.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page of `ListCases`.
pub const MAX_PAGE: usize = 500;

fn internal(e: LogError) -> Status {
    tracing::error!(error = %e, "log read failed");
    Status::internal(e.to_string())
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// The `handoff.v1.Cases` service over a log.
#[derive(Debug, Clone)]
pub struct Cases {
    log: Log,
    access: Access,
    fields: std::sync::Arc<FieldPolicy>,
}

impl Cases {
    /// A query service reading `log` for the callers `access` recognises, showing each
    /// the fields `fields` grants its kind.
    pub fn new(log: Log, access: Access, fields: FieldPolicy) -> Self {
        Cases {
            log,
            access,
            fields: std::sync::Arc::new(fields),
        }
    }

    /// What `caller` may see of the fields of a case (the one place field policy is applied).
    fn grant(&self, caller: &Caller, view: &CaseView) -> Grant {
        self.fields.grant(caller.kind, view.consent())
    }

    /// A case view reduced to the fields `caller` may see.
    fn shown(&self, caller: &Caller, mut view: CaseView) -> CaseView {
        self.grant(caller, &view).redact_case(&mut view);
        view
    }

    /// The case as `caller` may see it, optionally as it stood after sequence `as_of`.
    /// A case the caller may not see is NOT_FOUND with the same message as a missing one.
    fn visible_case(
        &self,
        caller: &Caller,
        case_id: &str,
        as_of: Option<u64>,
    ) -> Result<CaseView, Status> {
        let not_found = || Status::not_found(format!("no case {case_id}"));
        let current = self
            .log
            .case(case_id)
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let limit = match visibility(&current, &caller.agency, caller.kind) {
            Visibility::Hidden => return Err(not_found()),
            Visibility::Whole => None,
            Visibility::UpTo(until) => Some(until),
        };
        let until = match (limit, as_of) {
            (None, None) => return Ok(current),
            (Some(l), None) | (None, Some(l)) => l,
            (Some(l), Some(a)) => l.min(a),
        };
        if until >= current.last_sequence {
            return Ok(current);
        }
        self.log
            .case_as_of(case_id, until, self.access.registry())
            .map_err(internal)?
            .ok_or_else(not_found)
    }

    fn auditor<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let caller = self.access.caller(request)?;
        if caller.kind != AgencyKind::Auditor {
            return Err(Status::permission_denied(format!(
                "only auditors may read the log and the quarantine; {} is a {}",
                caller.agency, caller.kind
            )));
        }
        Ok(caller)
    }
}

#[tonic::async_trait]
impl CasesApi for Cases {
    async fn get_case(
        &self,
        request: Request<GetCaseRequest>,
    ) -> Result<Response<CaseView>, Status> {
        let caller = self.access.caller(&request)?;
        let case_id = required("case_id", &request.get_ref().case_id)?;
        let view = self.visible_case(&caller, case_id, None)?;
        Ok(Response::new(self.shown(&caller, view)))
    }

    async fn list_cases(
        &self,
        request: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.into_inner();
        let filter = CaseFilter {
            status: match CaseStatus::try_from(req.status) {
                Ok(CaseStatus::Unspecified) => None,
                Ok(s) => Some(s),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown status {}",
                        req.status
                    )));
                }
            },
            holder: (!req.holder.is_empty()).then_some(req.holder),
        };
        let limit = match req.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let registry = self.access.registry();
        let (cases, more) = self
            .log
            .list_cases(&req.page_token, limit, |view| {
                // The filter applies to what the caller may see, not to what it may not.
                let seen = match visibility(&view, &caller.agency, caller.kind) {
                    Visibility::Hidden => None,
                    Visibility::Whole => Some(view),
                    Visibility::UpTo(until) => {
                        self.log.case_as_of(&view.case_id, until, registry)?
                    }
                };
                Ok(seen
                    .filter(|v| filter.matches(v))
                    .map(|v| self.shown(&caller, v)))
            })
            .map_err(internal)?;
        let next_page_token = match (more, cases.last()) {
            (true, Some(last)) => last.case_id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(ListCasesResponse {
            cases,
            next_page_token,
        }))
    }

    async fn inbox(
        &self,
        request: Request<InboxRequest>,
    ) -> Result<Response<InboxResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let asked = &request.get_ref().agency;
        if !asked.is_empty() && asked != &caller.agency {
            return Err(Status::permission_denied(format!(
                "{} may read only its own inbox, not {asked}'s",
                caller.agency
            )));
        }
        let mut items = self.log.inbox(&caller.agency).map_err(internal)?;
        for item in &mut items {
            let consent = self
                .log
                .case(&item.case_id)
                .map_err(internal)?
                .map_or(ConsentState::Unspecified, |v| v.consent());
            if !self
                .fields
                .grant(caller.kind, consent)
                .allows(handoff_domain::policy::FieldGroup::Reasons)
            {
                item.reason.clear();
            }
        }
        Ok(Response::new(InboxResponse { items }))
    }

    async fn case_history(
        &self,
        request: Request<CaseHistoryRequest>,
    ) -> Result<Response<CaseHistoryResponse>, Status> {
        let caller = self.access.caller(&request)?;
        let case_id = required("case_id", &request.get_ref().case_id)?;
        let visible = self.visible_case(&caller, case_id, None)?;
        let (until, grant) = (visible.last_sequence, self.grant(&caller, &visible));
        let records = self.log.case_records(case_id).map_err(internal)?;
        let events = records
            .into_iter()
            .take_while(|r| r.sequence <= until)
            .map(|r| {
                let mut envelope = Envelope::decode(r.envelope.as_slice()).map_err(|e| {
                    Status::internal(format!(
                        "record {} holds an undecodable envelope: {e}",
                        r.sequence
                    ))
                })?;
                grant.redact_event(&mut envelope);
                Ok(LoggedEvent {
                    sequence: r.sequence,
                    recorded_at: Some(handoff_contract::time::from_unix_ms(r.recorded_at_unix_ms)),
                    hash: r.hash,
                    envelope: Some(envelope),
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(CaseHistoryResponse { events }))
    }

    async fn get_case_as_of(
        &self,
        request: Request<GetCaseAsOfRequest>,
    ) -> Result<Response<CaseView>, Status> {
        let caller = self.access.caller(&request)?;
        let req = request.get_ref();
        let case_id = required("case_id", &req.case_id)?;
        let until = match (req.as_of_sequence, &req.as_of_time) {
            (0, Some(t)) => self
                .log
                .case_sequence_at(case_id, handoff_contract::time::to_unix_ms(t))
                .map_err(internal)?,
            (0, None) => {
                return Err(Status::invalid_argument(
                    "give as_of_sequence or as_of_time",
                ));
            }
            (seq, _) => seq,
        };
        self.visible_case(&caller, case_id, Some(until))
            .map(Response::new)
    }

    type ReadLogStream = ReceiverStream<Result<LogRecord, Status>>;

    async fn read_log(
        &self,
        request: Request<ReadLogRequest>,
    ) -> Result<Response<Self::ReadLogStream>, Status> {
        self.auditor(&request)?;
        let req = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let log = self.log.clone();
        // sled iteration blocks; keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            for item in log.records(req.from_sequence, req.to_sequence) {
                let item = item.map_err(internal);
                let stop = item.is_err();
                if tx.blocking_send(item).is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_quarantine(
        &self,
        request: Request<ListQuarantineRequest>,
    ) -> Result<Response<ListQuarantineResponse>, Status> {
        self.auditor(&request)?;
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => 100,
            n => n.min(1000),
        };
        let entries = self
            .log
            .quarantine(req.after_stream_sequence, limit)
            .map_err(internal)?;
        Ok(Response::new(ListQuarantineResponse { entries }))
    }

    async fn get_log_head(
        &self,
        request: Request<LogHeadRequest>,
    ) -> Result<Response<LogHead>, Status> {
        self.access.caller(&request)?;
        let head = self.log.head();
        Ok(Response::new(LogHead {
            sequence: head.sequence,
            hash: head.hash.to_vec(),
            stream_position: head.stream_position,
            quarantined: head.quarantined,
        }))
    }
}

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
    /// mTLS; without it every caller is anonymous and refused.
    pub tls: Option<TlsFiles>,
}

/// Serves `Cases`, health and reflection on `listener` until `shutdown` resolves.
///
/// Health: `handoff.v1.Cases` is SERVING while this server runs; the overall
/// service (`""`) follows `ingest_healthy`, so a load balancer or operator
/// sees when the exchange is not taking in events.
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
    let mut builder = tonic::transport::Server::builder();
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
    let access = Access::new(options.registry, options.revoked);
    let fields = options.fields;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CasesServer<Cases>>().await;
    let overall = health.clone();
    tokio::spawn(async move {
        loop {
            let status = if *ingest_healthy.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            overall.set_service_status("", status).await;
            if ingest_healthy.changed().await.is_err() {
                break;
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(handoff_contract::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tracing::info!(%addr, "query service listening");
    let result = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(CasesServer::new(Cases::new(log, access, fields)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    result.map_err(transport)
}
