//! `handoff_rpc_requests_total{method,code}` and `handoff_rpc_duration_seconds{method}`
//! for every gRPC call, as a tower layer around the whole server.
//!
//! The code is the response's `grpc-status` header: tonic puts it there for every
//! refusal (a trailers-only response); a response without it is under way, and the
//! status then comes in the trailers, which for this service means OK. The duration
//! runs to the response headers (for a stream, to its start).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::codegen::{Service, http};

type Labels = Vec<(String, String)>;

fn new_histogram() -> Histogram {
    // 0.1 ms .. ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The query service's per-call metrics; clones share the same values.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    throttled: Family<Labels, Counter>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            throttled: Family::default(),
        }
    }
}

impl RpcMetrics {
    /// Registers both metrics under `handoff_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("handoff");
        r.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            self.requests.clone(),
        );
        r.register(
            "rpc_duration_seconds",
            "Seconds from a gRPC call's arrival to its response headers, by method",
            self.duration.clone(),
        );
        r.register(
            "rpc_throttled",
            "gRPC calls refused because the calling agency was over its share, by agency",
            self.throttled.clone(),
        );
    }

    /// The counter of calls refused for being over an agency's share.
    pub fn throttled(&self) -> Family<Labels, Counter> {
        self.throttled.clone()
    }

    fn record(&self, method: &str, code: &str, seconds: f64) {
        // Unknown paths are answered UNIMPLEMENTED; naming them would let any caller
        // create label values without bound.
        let method = if code == "UNIMPLEMENTED" {
            "unknown"
        } else {
            method
        };
        self.requests
            .get_or_create(&vec![
                ("method".to_string(), method.to_string()),
                ("code".to_string(), code.to_string()),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("method".to_string(), method.to_string())])
            .observe(seconds);
    }
}

/// Wraps every request of the server in [`RpcMetrics`].
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer(pub RpcMetrics);

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] makes.
#[derive(Debug, Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, R> Service<http::Request<B>> for RpcMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path()).to_string();
        let started = Instant::now();
        let response = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("OK", |c| code_name(tonic::Code::from(c))),
                Err(_) => "INTERNAL",
            };
            metrics.record(&method, code, started.elapsed().as_secs_f64());
            result
        })
    }
}

/// `/handoff.v1.CasesService/GetCase` -> `GetCase`.
fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

/// The canonical upper-case name of a gRPC status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_the_last_path_segment_and_unknown_paths_one_label() {
        assert_eq!(method_of("/handoff.v1.CasesService/GetCase"), "GetCase");
        assert_eq!(code_name(tonic::Code::from(7)), "PERMISSION_DENIED");
        let m = RpcMetrics::default();
        m.record("Nonsense1", "UNIMPLEMENTED", 0.001);
        m.record("Nonsense2", "UNIMPLEMENTED", 0.001);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(r#"handoff_rpc_requests_total{method="unknown",code="UNIMPLEMENTED"} 2"#),
            "{text}"
        );
        assert!(!text.contains("Nonsense"), "{text}");
    }
}
