//! What the HTTP layer reports: `api.http` timing, `rpc.query` counting, and the RPC scope that
//! exempts answers for other agents.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};

use super::registry::{elapsed_ms, global, Registry};
use super::{add_sample, incr_counter, set_gauge, PATH_LABEL_BYTES_MAX};

/// The timing of an HTTP request the agent answers, reported as `api.http` when it is
/// answered, labeled with its method and its route as Consul names its mux patterns
/// (`/v1/kv/` → `v1_kv_`, `/v1/agent/self` → `v1_agent_self`: the pattern without its leading
/// slash, `/` → `_`). Requests matching no route (Consul's index handler) are not timed, nor
/// requests answered for another agent's RPC (those are that agent's HTTP requests, and this
/// server's `rpc.request`).
pub struct HttpTiming {
    method: axum::http::Method,
    matched: MatchedPath,
    start: Instant,
}

impl HttpTiming {
    /// Starts timing `request`, if it is timed.
    pub fn start(request: &Request) -> Option<HttpTiming> {
        if IN_RPC.try_with(|_| ()).is_ok() {
            return None;
        }
        let matched = request.extensions().get::<MatchedPath>()?.clone();
        Some(HttpTiming { method: request.method().clone(), matched, start: Instant::now() })
    }

    /// Reports the request answered.
    pub fn finish(self) {
        let elapsed = elapsed_ms(self.start);
        with_path_label(self.matched.as_str(), |path| {
            add_sample("api.http", &[("method", self.method.as_str()), ("path", path)], elapsed);
        });
    }
}

/// Counts a read of replicated state this server answers (`rpc.query`, each one an RPC query
/// in Consul), and sets `rpc.queries_blocking` when a blocking one (with an `index`) begins,
/// as Consul's `blockingquery.Query` does; the guard returned keeps it counted in flight until
/// it is dropped. Called behind the forwarding to the leader, so a read counts where it is
/// answered.
pub fn count_read(request: &Request) -> Option<ReadInFlight> {
    if request.method() != axum::http::Method::GET || !reads_state(request.uri().path()) {
        return None;
    }
    incr_counter("rpc.query", &[], 1.0);
    if !blocking_index(request.uri().query()) {
        return None;
    }
    let registry = global();
    let in_flight = registry.blocking.fetch_add(1, Ordering::SeqCst) + 1;
    set_gauge("rpc.queries_blocking", &[], in_flight as f32);
    Some(ReadInFlight(registry))
}

/// Runs `answer` as the answer to another agent's RPC: [`HttpTiming`] leaves its HTTP requests
/// to the agent that received them.
pub async fn answering_rpc<F: Future>(answer: F) -> F::Output {
    IN_RPC.scope((), answer).await
}

/// A blocking read in flight: decrements `rpc.queries_blocking` when it ends (or is dropped).
pub struct ReadInFlight(&'static Registry);

impl Drop for ReadInFlight {
    fn drop(&mut self) {
        self.0.blocking.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Calls `f` with Consul's `path` label for the route `matched` (axum's pattern): the pattern
/// up to its first parameter (`/v1/kv/{*key}` is Consul's `/v1/kv/`), without the leading
/// slash, `/` made `_`. Written into a stack buffer: no allocation per request.
fn with_path_label<R>(matched: &str, f: impl FnOnce(&str) -> R) -> R {
    let pattern = &matched[..matched.find('{').unwrap_or(matched.len())];
    // muster also answers `/v1/kv` without the slash; Consul's pattern is `/v1/kv/`.
    let pattern = if pattern == "/v1/kv" { "/v1/kv/" } else { pattern };
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    let mut buffer = [0u8; PATH_LABEL_BYTES_MAX];
    if pattern.len() > buffer.len() {
        return f(&pattern.replace('/', "_"));
    }
    for (out, byte) in buffer.iter_mut().zip(pattern.bytes()) {
        *out = if byte == b'/' { b'_' } else { byte };
    }
    // Only ASCII `/` was replaced, by ASCII `_`: still the UTF-8 it was.
    f(std::str::from_utf8(&buffer[..pattern.len()]).expect("a str with `/` replaced by `_`"))
}

/// Whether a GET of `path` reads replicated state (an RPC query in Consul).
fn reads_state(path: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "/v1/kv/",
        "/v1/health/",
        "/v1/session/info/",
        "/v1/session/node/",
        "/v1/catalog/",
        "/v1/coordinate/nodes",
    ];
    (PREFIXES.iter().any(|prefix| path.starts_with(prefix)) && path != "/v1/catalog/datacenters")
        || path == "/v1/kv"
        || path == "/v1/session/list"
}

/// Whether the query string asks to block (`index` above 0).
fn blocking_index(query: Option<&str>) -> bool {
    query.is_some_and(|query| {
        query.split('&').any(|pair| {
            pair.strip_prefix("index=")
                .and_then(|index| index.parse::<u64>().ok())
                .is_some_and(|index| index > 0)
        })
    })
}

tokio::task_local! {
    /// Set while a server answers another agent's RPC.
    static IN_RPC: ();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::prometheus_requested;

    #[test]
    fn routes_become_consuls_path_labels() {
        let label = |matched: &str| with_path_label(matched, str::to_owned);
        assert_eq!(label("/v1/kv/{*key}"), "v1_kv_");
        assert_eq!(label("/v1/kv"), "v1_kv_");
        assert_eq!(label("/v1/agent/self"), "v1_agent_self");
        assert_eq!(label("/v1/catalog/service/{name}"), "v1_catalog_service_");
        assert_eq!(label("/v1/session/destroy/{id}"), "v1_session_destroy_");
        assert!(
            reads_state("/v1/kv/a")
                && reads_state("/v1/health/service/web")
                && !reads_state("/v1/catalog/datacenters")
        );
        assert!(
            blocking_index(Some("wait=1s&index=12"))
                && !blocking_index(Some("index=0"))
                && !blocking_index(None)
        );
        assert!(prometheus_requested(None, Some("text/plain; version=0.4.0")));
        assert!(prometheus_requested(
            None,
            Some("application/json, application/openmetrics-text; version=1.0.0")
        ));
        assert!(
            !prometheus_requested(None, Some("text/plain")) && prometheus_requested(Some("prometheus"), None)
        );
    }
}
