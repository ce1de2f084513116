//! `handoff case …` and `handoff quarantine`: reading the exchange over gRPC.

use anyhow::Context;
use clap::{Args, Subcommand};
use handoff_contract::json::to_json;
use handoff_contract::v1::cases_client::CasesClient;
use handoff_contract::v1::*;
use tonic::transport::Channel;

/// Where the exchange's gRPC service is.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// gRPC address of the exchange.
    #[arg(long, env = "HANDOFF_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
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
    /// Referrals and handoffs waiting for an agency.
    Inbox {
        #[command(flatten)]
        server: ServerArgs,
        /// Agency id.
        agency: String,
    },
    /// A case's events in log order.
    History {
        #[command(flatten)]
        server: ServerArgs,
        /// Case id.
        case_id: String,
    },
}

/// Connects to the exchange's gRPC service.
pub async fn connect(server: &str) -> anyhow::Result<CasesClient<Channel>> {
    CasesClient::connect(server.to_string())
        .await
        .with_context(|| format!("cannot reach the exchange at {server}"))
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
            let view = connect(&server.server)
                .await?
                .get_case(GetCaseRequest {
                    case_id,
                    purpose: "handoff case get".into(),
                })
                .await?
                .into_inner();
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
            let page = connect(&server.server)
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
        CaseCommand::Inbox { server, agency } => {
            let inbox = connect(&server.server)
                .await?
                .inbox(InboxRequest {
                    agency,
                    purpose: "handoff case inbox".into(),
                })
                .await?
                .into_inner();
            print(to_json(&inbox, "handoff.v1.InboxResponse"))
        }
        CaseCommand::History { server, case_id } => {
            let history = connect(&server.server)
                .await?
                .case_history(CaseHistoryRequest {
                    case_id,
                    purpose: "handoff case history".into(),
                })
                .await?
                .into_inner();
            print(to_json(&history, "handoff.v1.CaseHistoryResponse"))
        }
    }
}

/// Prints the quarantine.
pub async fn quarantine(server: &ServerArgs, after: u64) -> anyhow::Result<()> {
    let list = connect(&server.server)
        .await?
        .list_quarantine(ListQuarantineRequest {
            after_stream_sequence: after,
            limit: 0,
        })
        .await?
        .into_inner();
    print(to_json(&list, "handoff.v1.ListQuarantineResponse"))
}
