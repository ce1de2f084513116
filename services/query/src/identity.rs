//! Who is calling: the agency named by the caller's verified client certificate,
//! registered, not revoked (in the configuration or in the log), and within its
//! share of calls and open streams, so no agency can flood the others out.
//! Before any of that, the read gate: a node that may be missing erasures (restored
//! from a backup and not caught up, or behind an aged-out stream) answers nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use handoff_domain::{AgencyKind, Registry};
use handoff_log::Log;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// How many calls and streams each agency may have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallQuota {
    /// Calls per second, sustained.
    pub per_second: f64,
    /// Calls at once after a quiet spell.
    pub burst: f64,
    /// Streams (WatchCases, ReadLog) open at once.
    pub streams: usize,
}

impl Default for CallQuota {
    fn default() -> Self {
        CallQuota {
            per_second: 50.0,
            burst: 200.0,
            streams: 4,
        }
    }
}

/// One agency's token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Usage {
    buckets: HashMap<String, Bucket>,
    streams: HashMap<String, usize>,
}

/// Maps verified client certificates to registered, unrevoked agencies, and keeps
/// each within its [`CallQuota`].
#[derive(Debug, Clone)]
pub struct Access {
    registry: Arc<Registry>,
    revoked: Arc<HashSet<String>>,
    log: Option<Log>,
    quota: CallQuota,
    usage: Arc<Mutex<Usage>>,
    throttled: Family<Vec<(String, String)>, Counter>,
    gate: Option<tokio::sync::watch::Receiver<Option<String>>>,
}

/// An open stream of an agency, counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    agency: String,
    usage: Arc<Mutex<Usage>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = usage.streams.get_mut(&self.agency) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Access {
    /// Recognises the agencies of `registry` except the `revoked` ones.
    pub fn new(registry: Registry, revoked: Vec<String>) -> Self {
        Access {
            registry: Arc::new(registry),
            revoked: Arc::new(revoked.into_iter().collect()),
            log: None,
            quota: CallQuota::default(),
            usage: Arc::default(),
            throttled: Family::default(),
            gate: None,
        }
    }

    /// Refuses every call with UNAVAILABLE and the gate's reason while it holds one
    /// (`None`: reads are answered).
    pub fn with_gate(mut self, gate: tokio::sync::watch::Receiver<Option<String>>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// UNAVAILABLE with the gate's reason while reads are refused.
    fn check_gate(&self) -> Result<(), Status> {
        match self.gate.as_ref().and_then(|g| g.borrow().clone()) {
            Some(why) => Err(Status::unavailable(why)),
            None => Ok(()),
        }
    }

    /// Also refuses agencies the log records as revoked (an `agency_revoked` event).
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Keeps each agency within `quota`, counting refusals in `throttled`
    /// (`handoff_rpc_throttled_total{agency}`).
    pub fn with_quota(
        mut self,
        quota: CallQuota,
        throttled: Family<Vec<(String, String)>, Counter>,
    ) -> Self {
        self.quota = quota;
        self.throttled = throttled;
        self
    }

    /// The registry callers are mapped into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether an agency is revoked now, by the configuration or by the log.
    pub fn is_revoked(&self, agency: &str) -> Result<bool, Status> {
        if self.revoked.contains(agency) {
            return Ok(true);
        }
        match &self.log {
            Some(log) => log
                .revocation(agency)
                .map(|r| r.is_some())
                .map_err(crate::internal),
            None => Ok(false),
        }
    }

    /// The caller of a request, or UNAVAILABLE while the read gate is closed, or
    /// UNAUTHENTICATED (and a log line saying why), or RESOURCE_EXHAUSTED when its
    /// agency is over its share of calls.
    pub fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        // First: a node that may serve erased details tells no one anything else.
        self.check_gate()?;
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
        if self.is_revoked(name)? {
            return Err(refuse(format!("agency {name} is revoked")));
        }
        self.admit_call(name)?;
        Ok(Caller {
            agency: agency.id.clone(),
            kind: agency.kind,
        })
    }

    /// Takes one call from the agency's bucket, or refuses it.
    fn admit_call(&self, agency: &str) -> Result<(), Status> {
        let now = Instant::now();
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = usage.buckets.entry(agency.to_string()).or_insert(Bucket {
            tokens: self.quota.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.quota.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.quota.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            drop(usage);
            self.throttled
                .get_or_create(&vec![("agency".to_string(), agency.to_string())])
                .inc();
            return Err(Status::resource_exhausted(format!(
                "agency {agency} made more than {} calls a second; slow down and retry",
                self.quota.per_second
            )));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// A slot for one more open stream of the agency, or RESOURCE_EXHAUSTED.
    pub fn stream_slot(&self, agency: &str) -> Result<StreamSlot, Status> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let open = usage.streams.entry(agency.to_string()).or_default();
        if *open >= self.quota.streams {
            return Err(Status::resource_exhausted(format!(
                "agency {agency} has {} streams open, the most it may; close one first",
                self.quota.streams
            )));
        }
        *open += 1;
        Ok(StreamSlot {
            agency: agency.to_string(),
            usage: self.usage.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_beyond_the_burst_are_refused_and_counted() {
        let family = Family::default();
        let access = Access::new(Registry::default(), Vec::new()).with_quota(
            CallQuota {
                per_second: 0.001,
                burst: 3.0,
                streams: 1,
            },
            family.clone(),
        );
        for _ in 0..3 {
            access.admit_call("a").expect("within the burst");
        }
        assert_eq!(
            access.admit_call("a").expect_err("over").code(),
            tonic::Code::ResourceExhausted
        );
        access
            .admit_call("b")
            .expect("another agency's share is its own");
        let slot = access.stream_slot("a").expect("one stream");
        assert!(access.stream_slot("a").is_err());
        drop(slot);
        assert!(access.stream_slot("a").is_ok());
        assert_eq!(
            family
                .get_or_create(&vec![("agency".to_string(), "a".to_string())])
                .get(),
            1
        );
    }

    #[test]
    fn a_closed_gate_refuses_every_call_before_anything_else() {
        let (gate, rx) = tokio::sync::watch::channel(Some("catching up".to_string()));
        let access = Access::new(Registry::default(), Vec::new()).with_gate(rx);
        // No certificate at all: still the gate's answer, not UNAUTHENTICATED.
        let refused = access.caller(&Request::new(())).expect_err("gate closed");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(refused.message(), "catching up");
        gate.send_replace(None);
        let refused = access
            .caller(&Request::new(()))
            .expect_err("no certificate");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
}
