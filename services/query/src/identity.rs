//! Who is calling: the agency named by the caller's verified client certificate.

use std::collections::HashSet;
use std::sync::Arc;

use handoff_domain::{AgencyKind, Registry};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The agency's registry id.
    pub agency: String,
    /// Its kind, which decides what it may see.
    pub kind: AgencyKind,
}

/// Maps verified client certificates to registered, unrevoked agencies.
#[derive(Debug, Clone)]
pub struct Access {
    registry: Arc<Registry>,
    revoked: Arc<HashSet<String>>,
}

impl Access {
    /// Recognises the agencies of `registry` except the `revoked` ones.
    pub fn new(registry: Registry, revoked: Vec<String>) -> Self {
        Access {
            registry: Arc::new(registry),
            revoked: Arc::new(revoked.into_iter().collect()),
        }
    }

    /// The registry callers are mapped into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The caller of a request, or UNAUTHENTICATED (and a log line saying why).
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let refuse = |why: String| {
            tracing::warn!(%peer, reason = %why, "refused an unauthenticated call");
            Status::unauthenticated(why)
        };
        // The TLS layer has already verified the chain against the agencies' CA.
        let certs = request
            .peer_certs()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                refuse("a client certificate issued to your agency is required".into())
            })?;
        let (_, cert) = X509Certificate::from_der(certs[0].as_ref())
            .map_err(|e| refuse(format!("unreadable client certificate: {e}")))?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| {
                refuse("the client certificate names no agency (no common name)".into())
            })?;
        let agency = self.registry.get(name).ok_or_else(|| {
            refuse(format!(
                "the certificate names agency {name:?}, which is not registered"
            ))
        })?;
        if self.revoked.contains(name) {
            return Err(refuse(format!("agency {name} is revoked")));
        }
        Ok(Caller {
            agency: agency.id.clone(),
            kind: agency.kind,
        })
    }
}
