//! Revoking an agency: an `agency_revoked` event the exchange publishes into
//! its own ingress stream, so every node stops taking the agency's events at
//! the same log position and the decision is on the record; then the NATS
//! authorization is rewritten without the agency's user.
//!
//! The configuration's `revoked = true` and the log's revocations are one list
//! for `handoff nats-auth` and for the query service: an agency revoked in
//! either is refused.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use handoff_contract::names::EXCHANGE_SOURCE;
use handoff_contract::v1::envelope::Event;
use handoff_contract::v1::{AgencyReinstated, AgencyRevoked, Envelope};

use crate::config::Config;

/// The envelope that revokes (or, with `reinstate`, reinstates) `agency`.
pub fn request(agency: &str, reason: &str, requested_by: &str, reinstate: bool) -> Envelope {
    let event = if reinstate {
        Event::AgencyReinstated(AgencyReinstated {
            agency: agency.into(),
            reason: reason.into(),
            requested_by: requested_by.into(),
        })
    } else {
        Event::AgencyRevoked(AgencyRevoked {
            agency: agency.into(),
            reason: reason.into(),
            requested_by: requested_by.into(),
        })
    };
    Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        source_agency: EXCHANGE_SOURCE.into(),
        occurred_at: Some(handoff_contract::time::from_unix_ms(
            crate::erasure::now_ms(),
        )),
        actor: requested_by.into(),
        schema_version: handoff_contract::SCHEMA_VERSION,
        event: Some(event),
        ..Envelope::default()
    }
}

/// The agencies revoked now: in the configuration, or in the log (asked of the
/// running exchange through its admin socket, or read from its stopped store).
pub async fn revoked(config: &Config) -> anyhow::Result<BTreeSet<String>> {
    let mut revoked: BTreeSet<String> = config.revoked().into_iter().collect();
    revoked.extend(in_log(&config.data_dir()).await?);
    Ok(revoked)
}

/// The agencies the log records as revoked; none when there is no store yet.
pub async fn in_log(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    if data_dir.join(crate::admin_socket::SOCKET).exists()
        && let Ok(answer) = crate::admin_socket::request(data_dir, "revocations").await
    {
        let listed = answer
            .strip_prefix("ok")
            .with_context(|| format!("the exchange answered {answer:?}"))?;
        return Ok(listed.split_whitespace().map(str::to_string).collect());
    }
    if !data_dir.join("db").exists() {
        return Ok(Vec::new());
    }
    let log = handoff_log::Log::open(data_dir).with_context(|| {
        format!(
            "cannot read the revocations in {} (neither the running exchange's admin socket nor the store answered)",
            data_dir.display()
        )
    })?;
    Ok(log.revocations()?.into_iter().map(|(a, _)| a).collect())
}
