//! `handoff case …` and `handoff quarantine`: reading the exchange over gRPC.

use anyhow::Context;
use clap::{Args, Subcommand};
use handoff_contract::json::to_json;
use handoff_contract::v1::cases_service_client::CasesServiceClient;
use handoff_contract::v1::*;
use tonic::transport::Channel;

/// Where the exchange's gRPC service is, and who is asking.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// gRPC address of the exchange (https for mTLS).
    #[arg(
        long,
        env = "HANDOFF_SERVER",
        default_value = "https://localhost:50051"
    )]
    pub server: String,
    /// The agency you call as: its certificate is <certs>/<agency>.pem with key <agency>.key.
    #[arg(long = "as", env = "HANDOFF_AGENCY")]
    pub agency: String,
    /// Directory with ca.pem and the agency's certificate and key (see `handoff certs`).
    #[arg(long, env = "HANDOFF_CERTS", default_value = "data/certs")]
    pub certs: std::path::PathBuf,
}

/// Case queries.
#[derive(Subcommand)]
pub enum CaseCommand {
    /// One case's current state.
    Get {
        #[command(flatten)]
        server: ServerArgs,
        /// Case id.
        case_id: String,
    },
    /// Cases, filtered and paginated.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this status (open, referred, accepted, in_contact, intake, enrolled, completed, dropped_out, closed).
        #[arg(long)]
        status: Option<String>,
        /// Only cases held by this agency.
        #[arg(long)]
        holder: Option<String>,
        /// Cases per page.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Continue from a previous page's token.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Referrals and handoffs waiting for your agency.
    Inbox {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A case's events in log order.
    History {
        #[command(flatten)]
        server: ServerArgs,
        /// Case id.
        case_id: String,
    },
    /// A case's referrals as FHIR R4 (a Bundle of ServiceRequest and Task), for a
    /// system outside the platform; redacted as `case get` is, and recorded as a read.
    Fhir {
        #[command(flatten)]
        server: ServerArgs,
        /// Case id.
        case_id: String,
        /// Why you export it (recorded with the access), e.g. "handed to the health system".
        #[arg(long, default_value = "handoff case fhir")]
        purpose: String,
    },
}

/// Connects to the exchange's gRPC service as `agency`, with its client certificate.
pub async fn connect_as(
    server: &str,
    certs: &std::path::Path,
    agency: &str,
) -> anyhow::Result<CasesServiceClient<Channel>> {
    Ok(CasesServiceClient::new(
        channel_as(server, certs, agency).await?,
    ))
}

/// A channel to the exchange as `agency`, for any of its gRPC services.
pub async fn channel_as(
    server: &str,
    certs: &std::path::Path,
    agency: &str,
) -> anyhow::Result<Channel> {
    let read = |name: String| {
        let path = certs.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut endpoint = Channel::from_shared(server.to_string())
        .with_context(|| format!("bad server address {server}"))?;
    if server.starts_with("https://") {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(
                "ca.pem".into(),
            )?))
            .identity(tonic::transport::Identity::from_pem(
                read(format!("{agency}.pem"))?,
                read(format!("{agency}.key"))?,
            ));
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the exchange at {server}"))?;
    Ok(channel)
}

/// Connects as the agency and with the certificates the arguments name.
pub async fn connect(args: &ServerArgs) -> anyhow::Result<CasesServiceClient<Channel>> {
    connect_as(&args.server, &args.certs, &args.agency).await
}

fn print(value: serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn status_from_name(name: &str) -> anyhow::Result<i32> {
    let wire = format!("CASE_STATUS_{}", name.to_ascii_uppercase());
    CaseStatus::from_str_name(&wire)
        .map(|s| s as i32)
        .with_context(|| format!("unknown status {name:?}"))
}

/// Runs a case query and prints JSON.
pub async fn run(cmd: CaseCommand) -> anyhow::Result<()> {
    match cmd {
        CaseCommand::Get { server, case_id } => {
            let view = connect(&server)
                .await?
                .get_case(GetCaseRequest {
                    case_id,
                    purpose: "handoff case get".into(),
                })
                .await?
                .into_inner()
                .case
                .context("the exchange answered without a case")?;
            print(to_json(&view, "handoff.v1.CaseView"))
        }
        CaseCommand::List {
            server,
            status,
            holder,
            page_size,
            page_token,
        } => {
            let status = status
                .as_deref()
                .map(status_from_name)
                .transpose()?
                .unwrap_or(0);
            let page = connect(&server)
                .await?
                .list_cases(ListCasesRequest {
                    status,
                    holder: holder.unwrap_or_default(),
                    page_size,
                    page_token,
                    purpose: "handoff case list".into(),
                })
                .await?
                .into_inner();
            print(to_json(&page, "handoff.v1.ListCasesResponse"))
        }
        CaseCommand::Inbox { server } => {
            let inbox = connect(&server)
                .await?
                .inbox(InboxRequest {
                    agency: String::new(),
                    purpose: "handoff case inbox".into(),
                })
                .await?
                .into_inner();
            print(to_json(&inbox, "handoff.v1.InboxResponse"))
        }
        CaseCommand::History { server, case_id } => {
            let history = connect(&server)
                .await?
                .case_history(CaseHistoryRequest {
                    case_id,
                    purpose: "handoff case history".into(),
                })
                .await?
                .into_inner();
            print(to_json(&history, "handoff.v1.CaseHistoryResponse"))
        }
        CaseCommand::Fhir {
            server,
            case_id,
            purpose,
        } => {
            let answer = connect(&server)
                .await?
                .get_case_fhir(GetCaseFhirRequest { case_id, purpose })
                .await?
                .into_inner();
            let bundle: serde_json::Value = serde_json::from_str(&answer.bundle_json)
                .context("the exchange's FHIR bundle is not JSON")?;
            print(bundle)
        }
    }
}

/// Prints the quarantine.
pub async fn quarantine(server: &ServerArgs, after: u64) -> anyhow::Result<()> {
    let list = connect(server)
        .await?
        .list_quarantine(ListQuarantineRequest {
            after_stream_sequence: after,
            limit: 0,
        })
        .await?
        .into_inner();
    print(to_json(&list, "handoff.v1.ListQuarantineResponse"))
}
