//! `/v1/catalog/...` and `/v1/health/...` (`../shared/reference/consul-behaviour.md` §1.3,
//! §1.4): register and deregister, the node and service lists, a service's instances with or
//! without their checks, a node's services and checks, checks by state; in Consul's JSON shapes,
//! blocking on exactly what each answer depends on.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use muster_core::acl::Permission;
use muster_core::fsm::{
    Catalog, Check, Command, Deregister, Fsm, Health, Index, Node, Register, Service, Table, WatchTarget,
};
use serde::Serialize;
use serde_json::Value;

use super::body::{boolean, decode_failed, parse_check, parse_service, string_map, Object};
use super::filter::Filter;
use super::shapes::{
    self, CheckServiceNodeJson, HealthCheckJson, NodeJson, NodeServiceJson, NodeServicesJson, ServiceNodeJson,
};
use super::{json, Access, Api, HttpError, Query};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{name}", get(service_nodes))
        .route("/v1/catalog/node/{node}", get(node_services_map))
        .route("/v1/catalog/node-services/{node}", get(node_services_list))
        .route("/v1/health/node/{node}", get(node_checks))
        .route("/v1/health/checks/{name}", get(service_checks))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/health/state/{state}", get(checks_in_state))
        // A name left out of the path is Consul's 400, not a 404.
        .route("/v1/catalog/service/", get(|| missing("Missing service name")))
        .route("/v1/catalog/node/", get(|| missing("Missing node name")))
        .route("/v1/catalog/node-services/", get(|| missing("Missing node name")))
        .route("/v1/health/node/", get(|| missing("Missing node name")))
        .route("/v1/health/checks/", get(|| missing("Missing service name")))
        .route("/v1/health/service/", get(|| missing("Missing service name")))
        .route("/v1/health/state/", get(|| missing("Missing check state")))
}

async fn missing(reason: &'static str) -> HttpError {
    HttpError::bad_request(reason)
}

// --- Consul's JSON shapes ---------------------------------------------------------------------

/// Consul's `NodeService`.
pub(super) fn service_json(service: &Service) -> Value {
    shapes::to_value(NodeServiceJson::from(service))
}

/// Consul's `ServiceNode`: one instance flattened with its node (`/v1/catalog/service/...`).
fn service_node_json(node: &Node, service: &Service) -> Value {
    shapes::to_value(ServiceNodeJson::new(node, service))
}

/// Consul's `HealthCheck`.
pub(super) fn check_json(check: &Check) -> Value {
    shapes::to_value(HealthCheckJson::from(check))
}

// --- request bodies -----------------------------------------------------------------------------

fn parse_register(body: &[u8]) -> Result<Register, HttpError> {
    let object = Object::parse(body)?;
    let node = Node {
        id: object.string("ID")?,
        node: object.string("Node")?,
        address: object.string("Address")?,
        datacenter: object.string("Datacenter")?,
        tagged_addresses: string_map(&object, "TaggedAddresses")?,
        meta: string_map(&object, "NodeMeta")?,
        ..Node::default()
    };
    let service = object.get("Service").map(|value| Object::from_value(value, "Service")).transpose()?;
    let mut checks = Vec::new();
    if let Some(value) = object.get("Check") {
        checks.push(parse_check(&Object::from_value(value, "Check")?)?);
    }
    match object.get("Checks") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                checks.push(parse_check(&Object::from_value(item, "Checks")?)?);
            }
        }
        Some(_) => return Err(decode_failed("Checks: expected a list")),
    }
    Ok(Register {
        node,
        skip_node_update: boolean(&object, "SkipNodeUpdate")?,
        service: service.as_ref().map(parse_service).transpose()?,
        checks,
    })
}

// --- handlers -----------------------------------------------------------------------------------

async fn register(
    State(api): State<Arc<Api>>,
    access: Access,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let mut register = parse_register(&body)?;
        if access.is_on() {
            api.consensus()?.store.read(|fsm| may_register(fsm.catalog(), &access, &register))?;
        }
        if register.node.datacenter.is_empty() {
            register.node.datacenter = api.datacenter.clone();
        }
        let started = std::time::Instant::now();
        let written = api.write(&Command::Register(Box::new(register))).await;
        crate::telemetry::measure_since("catalog.register", &[], started);
        written?;
        Ok::<_, HttpError>(json(&query, &true).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn deregister(
    State(api): State<Arc<Api>>,
    access: Access,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        let object = Object::parse(&body)?;
        let nonempty = |text: String| (!text.is_empty()).then_some(text);
        let deregister = Deregister {
            node: object.string("Node")?,
            service_id: nonempty(object.string("ServiceID")?),
            check_id: nonempty(object.string("CheckID")?),
        };
        if access.is_on() {
            api.consensus()?.store.read(|fsm| may_deregister(fsm.catalog(), &access, &deregister))?;
        }
        let started = std::time::Instant::now();
        let written = api.write(&Command::Deregister(deregister)).await;
        crate::telemetry::measure_since("catalog.deregister", &[], started);
        written?;
        Ok::<_, HttpError>(json(&query, &true).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// What a registration asks, as Consul's `vetRegisterWithACL`: `node:write` when it changes the
/// node (a new one, or other fields), `service:write` on its service and on the service it
/// replaces under the same ID, and for each check its service's `service:write` or, for a node
/// check, `node:write`.
fn may_register(catalog: &Catalog, access: &Access, register: &Register) -> Result<(), HttpError> {
    let node = &register.node;
    let changes_node = match catalog.node(&node.node) {
        None => true,
        Some(_) if register.skip_node_update => false,
        Some(stored) => {
            (&stored.id, &stored.address, &stored.datacenter, &stored.tagged_addresses, &stored.meta)
                != (&node.id, &node.address, &node.datacenter, &node.tagged_addresses, &node.meta)
        }
    };
    if changes_node {
        access.require(Permission::NodeWrite(&node.node))?;
    }
    if let Some(service) = &register.service {
        access.require(Permission::ServiceWrite(&service.service))?;
        if let Some(replaced) = catalog.service(&node.node, &service.id) {
            access.require(Permission::ServiceWrite(&replaced.service))?;
        }
    }
    for check in &register.checks {
        may_write_check(catalog, access, &node.node, &check.service_id, register.service.as_ref())?;
    }
    Ok(())
}

/// What changing a check asks: `service:write` on its service (in the request or the catalog),
/// else `node:write` on its node.
fn may_write_check(
    catalog: &Catalog,
    access: &Access,
    node: &str,
    service_id: &str,
    registering: Option<&Service>,
) -> Result<(), HttpError> {
    if service_id.is_empty() {
        return access.require(Permission::NodeWrite(node));
    }
    let name = match registering.filter(|service| service.id == service_id) {
        Some(service) => Some(service.service.as_str()),
        None => catalog.service(node, service_id).map(|service| service.service.as_str()),
    };
    name.map_or(Ok(()), |name| access.require(Permission::ServiceWrite(name)))
}

/// What a deregistration asks, as Consul's `vetDeregisterWithACL`: `service:write` on the
/// service, the check's as for a change, else `node:write` on the node.
fn may_deregister(catalog: &Catalog, access: &Access, deregister: &Deregister) -> Result<(), HttpError> {
    let node = &deregister.node;
    if let Some(service_id) = &deregister.service_id {
        let name = catalog.service(node, service_id).map(|service| service.service.as_str());
        return name.map_or(Ok(()), |name| access.require(Permission::ServiceWrite(name)));
    }
    if let Some(check_id) = &deregister.check_id {
        let check = catalog.node_checks(node).1.into_iter().find(|check| &check.check_id == check_id);
        return check.map_or(Ok(()), |check| may_write_check(catalog, access, node, &check.service_id, None));
    }
    access.require(Permission::NodeWrite(node))
}

async fn datacenters(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    json(&query, &[&api.datacenter]).into_response()
}

/// A read's `?filter`, parsed, and its consistency and blocking options.
async fn filtered_read(api: &Api, query: &Query) -> Result<(Option<Filter>, super::ReadOptions), HttpError> {
    Ok((Filter::from_query(query)?, api.prepare_read(query).await?))
}

/// What a catalog reader found, shaped while the state is at hand: serialized at once, or kept
/// as a tree of values when `?filter` will walk it. (At 50,000 nodes, building the tree took
/// half of a health query's time when nothing needed it.)
enum Shaped {
    Json(HeaderMap, Bytes),
    Tree(Value),
}

/// How a catalog reader shapes its answer: the request's query, whether `?filter` needs a
/// tree, and what the caller may read (Consul filters catalog answers by ACLs rather than
/// refusing them; `removed` records that something was left out).
struct Shaper<'q> {
    query: &'q Query,
    tree: bool,
    access: &'q Access,
    removed: AtomicBool,
}

impl Shaper<'_> {
    /// Whether the caller may see `permission`'s subject; a refusal is recorded.
    fn allows(&self, permission: Permission<'_>) -> bool {
        let allowed = self.access.allows(permission);
        if !allowed {
            self.removed.store(true, Ordering::Relaxed);
        }
        allowed
    }

    /// A service instance is seen with `node:read` on its node and `service:read` on it.
    fn sees_instance(&self, node: &str, service: &str) -> bool {
        self.allows(Permission::NodeRead(node)) && self.allows(Permission::ServiceRead(service))
    }

    /// A check is seen with `node:read` on its node and, for a service's, `service:read`.
    fn sees_check(&self, check: &Check) -> bool {
        self.allows(Permission::NodeRead(&check.node))
            && (check.service_name.is_empty() || self.allows(Permission::ServiceRead(&check.service_name)))
    }

    fn shape(&self, answer: &impl Serialize) -> Shaped {
        if self.tree {
            Shaped::Tree(shapes::to_value(answer))
        } else {
            let (headers, body) = json(self.query, answer);
            Shaped::Json(headers, body)
        }
    }
}

/// A blocking catalog read answered as JSON, `?filter` applied to the whole answer (a list).
/// (Not `async`: a wrapper's future would hold a second copy of every argument while the
/// read waits.)
fn answer(
    api: Arc<Api>,
    access: Access,
    raw: Option<String>,
    targets: impl Fn() -> Vec<WatchTarget>,
    read: impl Fn(&Fsm, &Shaper<'_>) -> (Index, Shaped),
) -> impl Future<Output = Response> {
    answer_filtered_at(api, access, raw, None, targets, read)
}

/// The same, `?filter` applied to the answer's `field` when given (a node's `Services`, which
/// is what Consul filters there), else to the whole answer.
async fn answer_filtered_at(
    api: Arc<Api>,
    access: Access,
    raw: Option<String>,
    field: Option<&str>,
    targets: impl Fn() -> Vec<WatchTarget>,
    read: impl Fn(&Fsm, &Shaper<'_>) -> (Index, Shaped),
) -> Response {
    let query = Query::parse(raw.as_deref());
    let (filter, options) = match filtered_read(&api, &query).await {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    let shaper =
        Shaper { query: &query, tree: filter.is_some(), access: &access, removed: Default::default() };
    let (index, shaped) = match api.read(options, targets, |fsm| read(fsm, &shaper)).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    let mut meta = api.meta_headers(index);
    access.filtered_header(shaper.removed.load(Ordering::Relaxed), &mut meta);
    let mut tree = match shaped {
        Shaped::Json(headers, body) => return (meta, headers, body).into_response(),
        Shaped::Tree(tree) => tree,
    };
    if let Some(filter) = filter {
        let filtered = match field {
            None => filter.apply_to(std::mem::take(&mut tree)).map(|filtered| tree = filtered),
            Some(field) => match tree.get_mut(field) {
                Some(part) => filter.apply_to(std::mem::take(part)).map(|filtered| *part = filtered),
                None => Ok(()),
            },
        };
        if let Err(error) = filtered {
            return error.into_response();
        }
    }
    (meta, json(&query, &tree)).into_response()
}

/// `?node-meta=key:value` (repeatable): every pair must match.
fn node_meta_matches(query: &Query, node: &Node) -> bool {
    query.all("node-meta").all(|pair| {
        let (key, wanted) = pair.split_once(':').unwrap_or((pair, ""));
        node.meta.get(key).is_some_and(|value| value == wanted)
    })
}

async fn nodes(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery) -> Response {
    answer(
        api,
        access,
        raw,
        || vec![WatchTarget::Table(Table::Nodes)],
        |fsm, shaper| {
            let (index, nodes) = fsm.catalog().nodes();
            let shaped: Vec<NodeJson<'_>> = nodes
                .into_iter()
                .filter(|n| {
                    node_meta_matches(shaper.query, n) && shaper.allows(Permission::NodeRead(&n.node))
                })
                .map(NodeJson::from)
                .collect();
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

/// `GET /v1/catalog/services`: each service name with its instances' tags. With `?filter` or
/// `?node-meta`, Consul (`Catalog.ListServices`) first selects among the instances, as its
/// state store keeps them (`ServiceNode`s naming their node and nothing else of it), and then
/// groups what is left by name; so does this.
async fn services(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let (filter, options) = match filtered_read(&api, &query).await {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    let selecting = filter.is_some() || query.has("node-meta");
    let removed = AtomicBool::new(false);
    let readable = |name: &str| {
        let allowed = access.allows(Permission::ServiceRead(name));
        removed.fetch_or(!allowed, Ordering::Relaxed);
        allowed
    };
    let (index, body) = match api
        .read(
            options,
            || vec![WatchTarget::Table(Table::Services)],
            |fsm| {
                let catalog = fsm.catalog();
                let (index, mut names) = catalog.services();
                names.retain(|name, _| readable(name));
                if !selecting {
                    return (index, Ok(json(&query, &names)));
                }
                let instances: Vec<Value> = names
                    .keys()
                    .flat_map(|name| catalog.service_nodes(name, &[]).1)
                    .filter(|(node, _)| node_meta_matches(&query, node))
                    .map(|(node, service)| {
                        let stored = Node { node: node.node.clone(), ..Node::default() };
                        service_node_json(&stored, service)
                    })
                    .collect();
                let kept = match &filter {
                    Some(filter) => filter.apply(instances).map_err(HttpError::from),
                    None => Ok(instances),
                };
                (index, kept.map(|kept| json(&query, &services_tags_by_name(kept))))
            },
        )
        .await
    {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    let mut meta = api.meta_headers(index);
    access.filtered_header(removed.load(Ordering::Relaxed), &mut meta);
    match body {
        Ok(body) => (meta, body).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Consul's `servicesTagsByName`: each name among `instances` with the union of their tags.
fn services_tags_by_name(instances: Vec<Value>) -> TagsByName {
    let mut names = TagsByName::new();
    for instance in instances {
        let name = instance["ServiceName"].as_str().unwrap_or_default().to_owned();
        let tags = instance["ServiceTags"].as_array().into_iter().flatten().filter_map(Value::as_str);
        names.entry(name).or_default().extend(tags.map(str::to_owned));
    }
    names
}

/// `/v1/catalog/services`: each service name with its instances' tags, sorted and without
/// repeats (Consul's `map[string][]string`).
type TagsByName = BTreeMap<String, BTreeSet<String>>;

async fn service_nodes(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    count_service_query(["catalog.service.query", "catalog.service.query-tag"], &name, raw.as_deref());
    let target = WatchTarget::Service(name.clone());
    answer(
        api,
        access,
        raw,
        move || vec![target.clone()],
        move |fsm, shaper| {
            let tags: Vec<&str> = shaper.query.all("tag").collect();
            let (index, instances) = fsm.catalog().service_nodes(&name, &tags);
            let shaped: Vec<ServiceNodeJson<'_>> = instances
                .into_iter()
                .filter(|(node, service)| {
                    node_meta_matches(shaper.query, node)
                        && shaper.sees_instance(&node.node, &service.service)
                })
                .map(|(node, service)| ServiceNodeJson::new(node, service))
                .collect();
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

async fn node_services_map(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(node): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    node_services(api, access, node, raw, |services| {
        Value::Object(services.iter().map(|s| (s.id.clone(), service_json(s))).collect())
    })
    .await
}

async fn node_services_list(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(node): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    node_services(api, access, node, raw, |services| {
        Value::Array(services.iter().map(|s| service_json(s)).collect())
    })
    .await
}

async fn node_services(
    api: Arc<Api>,
    access: Access,
    node: String,
    raw: Option<String>,
    shape: fn(&[&Service]) -> Value,
) -> Response {
    let target = WatchTarget::Node(node.clone());
    // Consul filters the node's services, not the answer around them.
    answer_filtered_at(
        api,
        access,
        raw,
        Some("Services"),
        move || vec![target.clone()],
        move |fsm, shaper| {
            let (index, found) = fsm.catalog().node_services(&node);
            // An unknown node is `200 null`, as in Consul; so is one the caller may not read.
            let found = found.filter(|(node, _)| shaper.allows(Permission::NodeRead(&node.node)));
            let shaped = found.map(|(node, mut services)| {
                services.retain(|service| shaper.allows(Permission::ServiceRead(&service.service)));
                NodeServicesJson::new(node, shape(&services))
            });
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

async fn node_checks(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(node): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer_checks(api, access, raw, WatchTarget::Node(node.clone()), node, Catalog::node_checks).await
}

async fn service_checks(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer_checks(api, access, raw, WatchTarget::Service(name.clone()), name, Catalog::service_checks).await
}

/// Answers with the checks `read` finds in the catalog for `name`, blocking on `target`.
async fn answer_checks(
    api: Arc<Api>,
    access: Access,
    raw: Option<String>,
    target: WatchTarget,
    name: String,
    read: for<'a> fn(&'a Catalog, &str) -> (Index, Vec<&'a Check>),
) -> Response {
    answer(
        api,
        access,
        raw,
        move || vec![target.clone()],
        move |fsm, shaper| {
            let (index, checks) = read(fsm.catalog(), &name);
            let shaped: Vec<HealthCheckJson<'_>> = checks
                .into_iter()
                .filter(|check| shaper.sees_check(check))
                .map(HealthCheckJson::from)
                .collect();
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

async fn health_service(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    // `?passing` alone means true; a value must parse as Go's booleans.
    let passing = match (query.get("passing"), query.go_bool("passing")) {
        (None, _) => false,
        (Some(""), _) => true,
        (_, Some(Some(passing))) => passing,
        _ => return HttpError::bad_request("Invalid value for ?passing").into_response(),
    };
    count_service_query(["health.service.query", "health.service.query-tag"], &name, raw.as_deref());
    let target = WatchTarget::Service(name.clone());
    answer(
        api,
        access,
        raw,
        move || vec![target.clone()],
        move |fsm, shaper| {
            let tags: Vec<&str> = shaper.query.all("tag").collect();
            let (index, instances) = fsm.catalog().health_service(&name, &tags, passing);
            let shaped: Vec<CheckServiceNodeJson<'_>> = instances
                .into_iter()
                .filter(|instance| {
                    node_meta_matches(shaper.query, instance.node)
                        && shaper.sees_instance(&instance.node.node, &instance.service.service)
                })
                .map(CheckServiceNodeJson::from)
                .collect();
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

/// Counts a query for service `name` as Consul's endpoints count it: `<what>.query`, or
/// `<what>.query-tag` with the tag when one is asked (Consul labels every tag `tag`; a label
/// holds one value, so the last of the sorted tags is the one kept, as its Prometheus sink keeps).
fn count_service_query([query_counter, tag_counter]: [&str; 2], name: &str, raw: Option<&str>) {
    let query = Query::parse(raw);
    let mut tags: Vec<&str> = query.all("tag").collect();
    tags.sort_unstable();
    match tags.last() {
        None => crate::telemetry::incr_counter(query_counter, &[("service", name)], 1.0),
        Some(tag) => crate::telemetry::incr_counter(tag_counter, &[("service", name), ("tag", tag)], 1.0),
    }
}

async fn checks_in_state(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(state): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let wanted = match state.as_str() {
        "any" => None,
        other => match Health::parse(other) {
            Some(health) => Some(health),
            None => return HttpError::bad_request(format!("Invalid check state: '{other}'")).into_response(),
        },
    };
    answer(
        api,
        access,
        raw,
        || vec![WatchTarget::Table(Table::Checks)],
        move |fsm, shaper| {
            let (index, checks) = fsm.catalog().checks_in_state(wanted);
            let shaped: Vec<HealthCheckJson<'_>> = checks
                .into_iter()
                .filter(|check| shaper.sees_check(check))
                .map(HealthCheckJson::from)
                .collect();
            (index, shaper.shape(&shaped))
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_core::fsm::{CheckKind, Instance, ServiceAddress, Weights};

    fn samples() -> (Vec<Node>, Vec<Service>, Vec<Check>) {
        let bare_node = Node { node: "a".into(), ..Node::default() };
        let full_node = Node {
            id: "0b6c4a5c-2f4c-4d43-9c55-0cd0b0b8f4a1".into(),
            node: "web-1".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: [("lan".to_owned(), "10.0.0.1".to_owned())].into_iter().collect(),
            meta: [("env".to_owned(), "prod".to_owned())].into_iter().collect(),
            create_index: 5,
            modify_index: 7,
        };
        let bare_service = Service { id: "s".into(), service: "s".into(), ..Service::default() };
        let full_service = Service {
            kind: "connect-proxy".into(),
            id: "web/1".into(),
            service: "web".into(),
            tags: vec!["v1".into(), "rails".into()],
            address: "10.0.0.2".into(),
            tagged_addresses: [("lan".to_owned(), ServiceAddress { address: "10.0.0.2".into(), port: 81 })]
                .into_iter()
                .collect(),
            meta: [("version".to_owned(), "1".to_owned())].into_iter().collect(),
            port: 80,
            socket_path: "/run/web.sock".into(),
            weights: Weights { passing: 3, warning: 1 },
            enable_tag_override: true,
            create_index: 9,
            modify_index: 11,
        };
        let bare_check = Check { check_id: "serfHealth".into(), ..Check::default() };
        let mut full_check = Check {
            node: "web-1".into(),
            check_id: "web-http".into(),
            name: "web http".into(),
            status: Health::Warning,
            notes: "n".into(),
            output: "HTTP GET: 429".into(),
            service_id: "web/1".into(),
            service_name: "web".into(),
            service_tags: vec!["v1".into()],
            kind: CheckKind::Http,
            create_index: 12,
            modify_index: 13,
            ..Check::default()
        };
        let d = &mut full_check.definition;
        d.http = "http://localhost/health".into();
        d.method = "POST".into();
        d.body = "{}".into();
        d.tls_server_name = "web".into();
        d.header = [("X".to_owned(), vec!["1".to_owned()])].into_iter().collect();
        d.tls_skip_verify = true;
        d.disable_redirects = true;
        d.interval_ns = 10_000_000_000;
        d.timeout_ns = 1_500_000_000;
        d.deregister_critical_service_after_ns = 90_000_000_000;
        let mut h2 = Check { check_id: "h2".into(), kind: CheckKind::H2ping, ..Check::default() };
        h2.definition.h2ping = "localhost:443".into();
        h2.definition.h2ping_use_tls = true;
        h2.definition.ttl_ns = 30_000_000_000;
        let mut tls_without_h2 = Check { check_id: "t".into(), kind: CheckKind::Tcp, ..Check::default() };
        tls_without_h2.definition.tcp = "localhost:22".into();
        tls_without_h2.definition.h2ping_use_tls = true;
        tls_without_h2.definition.tcp_use_tls = true;
        tls_without_h2.definition.grpc_use_tls = true;
        (
            vec![bare_node, full_node],
            vec![bare_service, full_service],
            vec![bare_check, full_check, h2, tls_without_h2],
        )
    }

    /// A shape's bytes written directly, as an answer without `?filter` is, after checking
    /// they are the bytes of its tree of values, which `?filter` walks.
    fn both(shape: &impl Serialize) -> String {
        let direct = serde_json::to_string(shape).unwrap();
        assert_eq!(direct, serde_json::to_string(&shapes::to_value(shape)).unwrap());
        direct
    }

    /// The answers' bytes, pinned: Consul's field order, `null` for an empty map, `omitempty`
    /// fields left out, a TLS flag shown only with its check, durations as Go writes them.
    #[test]
    fn the_catalogs_answers_keep_consuls_shapes() {
        let (nodes, services, checks) = samples();
        let mut out = Vec::new();
        for node in &nodes {
            out.push(both(&NodeJson::from(node)));
            for service in &services {
                out.push(both(&ServiceNodeJson::new(node, service)));
            }
        }
        for service in &services {
            out.push(serde_json::to_string(&service_json(service)).unwrap());
            let agent_service = shapes::to_value(shapes::AgentServiceJson::new(service, "dc1"));
            out.push(serde_json::to_string(&agent_service).unwrap());
        }
        for check in &checks {
            out.push(both(&HealthCheckJson::from(check)));
        }
        let (node, service) = (&nodes[1], &services[1]);
        let instance = Instance { node, service, checks: checks.iter().collect() };
        out.push(both(&CheckServiceNodeJson::from(instance)));
        let listed = Value::Array(vec![service_json(service)]);
        out.push(serde_json::to_string(&NodeServicesJson::new(node, listed)).unwrap());
        shapes::assert_golden("catalog_shapes.golden", &out);
    }
}
