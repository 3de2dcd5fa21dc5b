//! Every endpoint of Consul 1.20's HTTP API (its `agent/http_register.go`, and the Enterprise
//! ones Consul CE answers 404 to), with what muster does with it. `docs/http-endpoints.md` is
//! generated from this table (`MUSTER_BLESS=1 cargo test -p muster --lib endpoints` rewrites
//! it), and `io/tests/endpoint_table.rs` holds the running agent to it: a row served is routed
//! with its methods, a row not served answers Consul's `404 Invalid URL path: not a recognized
//! HTTP API endpoint`, as Consul CE answers an endpoint it lacks.

/// One path of Consul's API. A path ending in `/` takes the rest of the URL as its argument,
/// as Consul registers it (`/v1/kv/` serves `/v1/kv/<key>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The path, as Consul registers it.
    pub path: &'static str,
    /// The methods Consul serves on it.
    pub methods: &'static [&'static str],
    /// What muster does with it.
    pub status: Status,
}

/// What muster does with an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Served in Consul's shape.
    Served,
    /// Served, with what is still missing.
    Partial(&'static str),
    /// Owned by later work, named by its issue; 404 until then.
    Later(u32, &'static str),
    /// Consul's service mesh (Connect, config entries, intentions, peering): not on muster's
    /// roadmap yet; 404.
    Mesh,
    /// Consul Enterprise only: Consul CE answers 404, so does muster.
    Enterprise,
}

impl Status {
    /// Whether the agent routes it.
    pub fn served(self) -> bool {
        matches!(self, Status::Served | Status::Partial(_))
    }
}

const fn at(path: &'static str, methods: &'static [&'static str], status: Status) -> Endpoint {
    Endpoint { path, methods, status }
}

const GET: &[&str] = &["GET"];
const PUT: &[&str] = &["PUT"];
const POST: &[&str] = &["POST"];
const DELETE: &[&str] = &["DELETE"];
const GET_PUT: &[&str] = &["GET", "PUT"];
const GET_POST: &[&str] = &["GET", "POST"];
const GET_DELETE: &[&str] = &["GET", "DELETE"];
const CRUD: &[&str] = &["GET", "PUT", "DELETE"];
const KEYRING: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const ANY: &[&str] = &["GET", "PUT", "POST", "DELETE"];

use Status::{Enterprise, Mesh, Served};

/// The ACL endpoints: answered as Consul answers them with ACLs off (`http/acl.rs`).
pub const ACL: Status = Status::Partial(
    "answers `401 ACL support disabled` with ACLs off, as Consul; with them on, 501 until roles, auth \
     methods, binding rules, templated policies, login and replication exist (issue 24)",
);
/// The ACL endpoints served with ACLs on (`http/acl/`): the bootstrap, tokens and policies.
pub const ACL_SERVED: Status = Status::Partial(
    "served with ACLs on (`acl { enabled = true }`), on servers; `401 ACL support disabled` with them \
     off, as Consul",
);
const DCS: Status = Status::Later(25, "multiple datacenters, coordinates and prepared queries");
const UI: Status = Status::Later(26, "the web UI");

/// Consul 1.20's endpoints, in the order of its `http_register.go`, then Enterprise's.
pub const ENDPOINTS: &[Endpoint] = &[
    at("/v1/acl/bootstrap", PUT, ACL_SERVED),
    at("/v1/acl/login", POST, ACL),
    at("/v1/acl/logout", POST, ACL),
    at("/v1/acl/replication", GET, ACL),
    at("/v1/acl/policies", GET, ACL_SERVED),
    at("/v1/acl/policy", PUT, ACL_SERVED),
    at("/v1/acl/policy/", CRUD, ACL_SERVED),
    at("/v1/acl/policy/name/", GET, ACL_SERVED),
    at("/v1/acl/roles", GET, ACL),
    at("/v1/acl/role", PUT, ACL),
    at("/v1/acl/role/name/", GET, ACL),
    at("/v1/acl/role/", CRUD, ACL),
    at("/v1/acl/binding-rules", GET, ACL),
    at("/v1/acl/binding-rule", PUT, ACL),
    at("/v1/acl/binding-rule/", CRUD, ACL),
    at("/v1/acl/auth-methods", GET, ACL),
    at("/v1/acl/auth-method", PUT, ACL),
    at("/v1/acl/auth-method/", CRUD, ACL),
    at("/v1/acl/tokens", GET, ACL_SERVED),
    at("/v1/acl/token", PUT, ACL_SERVED),
    at("/v1/acl/token/self", GET, ACL_SERVED),
    at("/v1/acl/token/", CRUD, ACL_SERVED),
    at("/v1/acl/templated-policies", GET, ACL),
    at("/v1/acl/templated-policy/name/", GET, ACL),
    at("/v1/acl/templated-policy/preview/", POST, ACL),
    at("/v1/agent/token/", PUT, ACL_SERVED),
    at("/v1/agent/self", GET, Served),
    at("/v1/agent/host", GET, Served),
    at("/v1/agent/version", GET, Served),
    at("/v1/agent/maintenance", PUT, Served),
    at("/v1/agent/reload", PUT, Served),
    at("/v1/agent/monitor", GET, Served),
    at("/v1/agent/metrics", GET, Served),
    at("/v1/agent/metrics/stream", GET, Served),
    at("/v1/agent/services", GET, Served),
    at("/v1/agent/service/", GET, Served),
    at("/v1/agent/checks", GET, Served),
    at("/v1/agent/members", GET, Served),
    at("/v1/agent/join/", PUT, Served),
    at("/v1/agent/leave", PUT, Served),
    at("/v1/agent/force-leave/", PUT, Served),
    at("/v1/agent/health/service/id/", GET, Served),
    at("/v1/agent/health/service/name/", GET, Served),
    at("/v1/agent/check/register", PUT, Served),
    at("/v1/agent/check/deregister/", PUT, Served),
    at("/v1/agent/check/pass/", PUT, Served),
    at("/v1/agent/check/warn/", PUT, Served),
    at("/v1/agent/check/fail/", PUT, Served),
    at("/v1/agent/check/update/", PUT, Served),
    at("/v1/agent/connect/authorize", POST, Mesh),
    at("/v1/agent/connect/ca/roots", GET, Mesh),
    at("/v1/agent/connect/ca/leaf/", GET, Mesh),
    at("/v1/agent/service/register", PUT, Served),
    at("/v1/agent/service/deregister/", PUT, Served),
    at("/v1/agent/service/maintenance/", PUT, Served),
    at("/v1/catalog/register", PUT, Served),
    at("/v1/catalog/connect/", GET, Mesh),
    at("/v1/catalog/deregister", PUT, Served),
    at("/v1/catalog/datacenters", GET, Status::Partial("one datacenter until issue 25")),
    at("/v1/catalog/nodes", GET, Served),
    at("/v1/catalog/services", GET, Served),
    at("/v1/catalog/service/", GET, Served),
    at("/v1/catalog/node/", GET, Served),
    at("/v1/catalog/node-services/", GET, Served),
    at("/v1/catalog/gateway-services/", GET, Mesh),
    at("/v1/config/", GET_DELETE, Mesh),
    at("/v1/config", PUT, Mesh),
    at("/v1/connect/ca/configuration", GET_PUT, Mesh),
    at("/v1/connect/ca/roots", GET, Mesh),
    at("/v1/connect/intentions", GET_POST, Mesh),
    at("/v1/connect/intentions/match", GET, Mesh),
    at("/v1/connect/intentions/check", GET, Mesh),
    at("/v1/connect/intentions/exact", CRUD, Mesh),
    at("/v1/connect/intentions/", CRUD, Mesh),
    at("/v1/coordinate/datacenters", GET, Status::Partial("no coordinates until issue 25: an empty list")),
    at("/v1/coordinate/nodes", GET, Status::Partial("no coordinates until issue 25: an empty list")),
    at("/v1/coordinate/node/", GET, DCS),
    at("/v1/coordinate/update", PUT, DCS),
    at("/v1/internal/federation-states", GET, Mesh),
    at("/v1/internal/federation-states/mesh-gateways", GET, Mesh),
    at("/v1/internal/federation-state/", GET, Mesh),
    at("/v1/discovery-chain/", GET_POST, Mesh),
    at("/v1/exported-services", GET, Mesh),
    at("/v1/event/fire/", PUT, Served),
    at("/v1/event/list", GET, Served),
    at("/v1/health/node/", GET, Served),
    at("/v1/health/checks/", GET, Served),
    at("/v1/health/state/", GET, Served),
    at("/v1/health/service/", GET, Served),
    at("/v1/health/connect/", GET, Mesh),
    at("/v1/health/ingress/", GET, Mesh),
    at("/v1/internal/ui/metrics-proxy/", GET, UI),
    at("/v1/internal/ui/nodes", GET, UI),
    at("/v1/internal/ui/node/", GET, UI),
    at("/v1/internal/ui/services", GET, UI),
    at("/v1/internal/ui/exported-services", GET, Mesh),
    at("/v1/internal/ui/catalog-overview", GET, UI),
    at("/v1/internal/ui/gateway-services-nodes/", GET, Mesh),
    at("/v1/internal/ui/gateway-intentions/", GET, Mesh),
    at("/v1/internal/ui/service-topology/", GET, Mesh),
    at("/v1/internal/acl/authorize", POST, ACL),
    at("/v1/internal/service-virtual-ip", PUT, Mesh),
    at("/v1/kv/", CRUD, Served),
    at("/v1/operator/raft/configuration", GET, Served),
    at("/v1/operator/raft/transfer-leader", POST, Served),
    at("/v1/operator/raft/peer", DELETE, Served),
    at("/v1/operator/keyring", KEYRING, Served),
    at("/v1/operator/usage", GET, Served),
    at("/v1/operator/utilization", GET, Enterprise),
    at("/v1/operator/autopilot/configuration", GET_PUT, Served),
    at("/v1/operator/autopilot/health", GET, Served),
    at("/v1/operator/autopilot/state", GET, Served),
    at("/v1/peering/token", POST, Mesh),
    at("/v1/peering/establish", POST, Mesh),
    at("/v1/peering/", GET_DELETE, Mesh),
    at("/v1/peerings", GET, Mesh),
    at("/v1/query", GET_POST, DCS),
    at("/v1/query/", ANY, DCS),
    at("/v1/session/create", PUT, Served),
    at("/v1/session/destroy/", PUT, Served),
    at("/v1/session/renew/", PUT, Served),
    at("/v1/session/info/", GET, Served),
    at("/v1/session/node/", GET, Served),
    at("/v1/session/list", GET, Served),
    at("/v1/status/leader", GET, Served),
    at("/v1/status/peers", GET, Served),
    at("/v1/snapshot", GET_PUT, Served),
    at("/v1/txn", PUT, Served),
    at("/ui/", GET, UI),
    // Consul Enterprise's own.
    at("/v1/namespace", PUT, Enterprise),
    at("/v1/namespace/", CRUD, Enterprise),
    at("/v1/namespaces", GET, Enterprise),
    at("/v1/partition", PUT, Enterprise),
    at("/v1/partition/", CRUD, Enterprise),
    at("/v1/partitions", GET, Enterprise),
    at("/v1/operator/license", CRUD, Enterprise),
    at("/v1/operator/segment", GET, Enterprise),
    at("/v1/operator/area", GET_POST, Enterprise),
];

/// The Markdown reference generated from [`ENDPOINTS`].
pub fn reference() -> String {
    let count = |keep: fn(Status) -> bool| ENDPOINTS.iter().filter(|e| keep(e.status)).count();
    let mut out = String::from(
        "# Consul 1.20's HTTP API in muster\n\n\
         Generated from `io/src/http/endpoints.rs` (`MUSTER_BLESS=1 cargo test -p muster --lib endpoints`); \
         `io/tests/endpoint_table.rs` holds a running agent to it. A path ending in `/` takes the rest \
         of the URL as its argument, as Consul registers it.\n\n",
    );
    out.push_str(&format!(
        "{} endpoints: {} served ({} with gaps noted), {} for later issues, {} of Consul's service mesh, \
         {} Consul Enterprise only. Every endpoint muster does not serve answers Consul's `404 Invalid URL path: \
         not a recognized HTTP API endpoint`, as Consul CE answers one it lacks.\n\n",
        ENDPOINTS.len(),
        count(Status::served),
        count(|s| matches!(s, Status::Partial(_))),
        count(|s| matches!(s, Status::Later(..))),
        count(|s| s == Status::Mesh),
        count(|s| s == Status::Enterprise),
    ));
    out.push_str("| path | methods | muster |\n|---|---|---|\n");
    for endpoint in ENDPOINTS {
        let status = match endpoint.status {
            Status::Served => "served".to_owned(),
            Status::Partial(gap) => format!("served; {gap}"),
            Status::Later(issue, what) => format!("later: issue {issue} ({what})"),
            Status::Mesh => "not yet: service mesh".to_owned(),
            Status::Enterprise => "Consul Enterprise only".to_owned(),
        };
        out.push_str(&format!("| `{}` | {} | {status} |\n", endpoint.path, endpoint.methods.join(", ")));
    }
    out
}

/// The endpoint a request path falls under: the exact path, or the longest prefix ending in
/// `/` (as Go's `ServeMux` matches them).
pub fn lookup(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.path == path).or_else(|| {
        ENDPOINTS
            .iter()
            .filter(|e| e.path.ends_with('/') && path.starts_with(e.path))
            .max_by_key(|e| e.path.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_reference_is_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/http-endpoints.md");
        let generated = reference();
        if std::env::var_os("MUSTER_BLESS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(written == generated, "docs/http-endpoints.md is stale: run with MUSTER_BLESS=1");
    }

    #[test]
    fn paths_are_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for endpoint in ENDPOINTS {
            assert!(seen.insert(endpoint.path), "{} twice", endpoint.path);
        }
    }

    /// Every path muster routes is in the table as served: read from the route definitions
    /// themselves, so a new route cannot go unlisted.
    #[test]
    fn every_route_muster_serves_is_a_served_row() {
        let sources = [
            include_str!("agent.rs"),
            include_str!("autopilot.rs"),
            include_str!("catalog.rs"),
            include_str!("gossip.rs"),
            include_str!("keyring.rs"),
            include_str!("kv.rs"),
            include_str!("members.rs"),
            include_str!("operator.rs"),
            include_str!("session.rs"),
            include_str!("snapshot.rs"),
            include_str!("status.rs"),
            include_str!("txn.rs"),
        ];
        let mut routes = 0;
        for source in sources {
            for (_, rest) in source.match_indices(".route(\"").map(|(at, _)| source[at..].split_at(8)) {
                let route = &rest[..rest.find('"').unwrap()];
                routes += 1;
                // `{id}` and `{*key}` are the argument Consul takes after a `/`.
                let prefix = route.split('{').next().unwrap();
                let endpoint = lookup(prefix).or_else(|| lookup(&format!("{prefix}/")));
                let endpoint = endpoint.unwrap_or_else(|| panic!("{route} is routed but not in the table"));
                assert!(endpoint.status.served(), "{route} is routed but listed as {:?}", endpoint.status);
            }
        }
        assert!(routes > 50, "the route definitions were not found ({routes})");
    }
}
