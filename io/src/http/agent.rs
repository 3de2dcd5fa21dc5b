//! `/v1/agent/...` (`../shared/reference/consul-behaviour.md` §1.5), first part: the services
//! and checks of this agent (register, deregister, list, one), TTL check updates and
//! maintenance; `self` is answered by `agent_self.rs`.
//!
//! The agent is the authority for its own node: registrations change its local state
//! ([`crate::local::LocalAgent`]) and anti-entropy ([`crate::tasks::anti_entropy`]) syncs
//! them into the catalog. The agent's lists answer from the local state.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use muster_core::acl::Permission;
use muster_core::agent::{LocalError, LocalState, Row};
use muster_core::fsm::CheckKind;
use muster_core::fsm::{Check, Health, Service};
use serde::Serialize;
use serde_json::{Map, Value};

pub use super::body::{check_definition, service_definition};
use super::body::{file_check_definition, Object, Refusal};
use super::catalog::check_json;
use super::filter::Filter;
use super::shapes::{self, AgentServiceJson, CheckNameJson};
use super::{json, Access, Api, HttpError, Query};
use crate::tasks::anti_entropy::{change_and_push, change_and_sync};
use crate::tasks::check_ttl::reset_timers;

/// A refusal of the local state, as the HTTP API answers it.
pub(crate) fn local_error(error: LocalError) -> HttpError {
    let status = match error {
        // Consul 1.20 answers a check for a service the agent lacks with 404, as an unknown check.
        LocalError::UnknownCheck(_) | LocalError::UnknownService(_) => StatusCode::NOT_FOUND,
        LocalError::Reserved(_) => StatusCode::BAD_REQUEST,
    };
    HttpError { status, reason: error.to_string() }
}

/// `service:write` on the agent's service `id`, as Consul's `vetServiceUpdate` asks; nothing to
/// check for a service the agent lacks (the handler answers that).
fn may_write_service(api: &Api, access: &Access, id: &str) -> Result<(), HttpError> {
    let name = api.local.state().services().get(id).map(|service| service.service.clone());
    name.map_or(Ok(()), |name| access.require(Permission::ServiceWrite(&name)))
}

/// What changing the agent's check `id` asks (Consul's `vetCheckUpdate`): `service:write` on
/// its service's name, or `node:write` on the agent's node for a node check.
fn may_write_check(api: &Api, access: &Access, id: &str) -> Result<(), HttpError> {
    let service_id = api.local.state().checks().get(id).map(|check| check.service_id.clone());
    match service_id {
        None => Ok(()),
        Some(service_id) if service_id.is_empty() => access.require(Permission::NodeWrite(&api.node_name)),
        Some(service_id) => may_write_service(api, access, &service_id),
    }
}

/// Whether the caller may see the agent's check: `service:read` on its service, or `node:read`
/// on the agent's node for a node check.
fn sees_check(api: &Api, access: &Access, state: &LocalState, check: &Check) -> bool {
    match state.services().get(&check.service_id) {
        Some(service) => access.allows(Permission::ServiceRead(&service.service)),
        None => access.allows(Permission::NodeRead(&api.node_name)),
    }
}

/// A failure to keep a change on disk (it stands in memory and in the catalog).
fn persist_error(error: std::io::Error) -> HttpError {
    HttpError::internal(format!("failed persisting state: {error}"))
}

/// Writes the rows of service `id` (if it still exists) and its checks to disk, and forgets
/// the checks in `dropped`.
fn persist_service(api: &Api, id: &str, dropped: &[String]) -> Result<(), HttpError> {
    let (service, checks) = {
        let state = api.local.state();
        let checks: Vec<Check> =
            state.checks().values().filter(|c| c.service_id == id).map(|c| Check::clone(c)).collect();
        (state.services().get(id).cloned(), checks)
    };
    match service {
        Some(service) => api.local.save_service(&service).map_err(persist_error)?,
        None => api.local.forget_service(id).map_err(persist_error)?,
    }
    for check in &checks {
        api.local.save_check(check).map_err(persist_error)?;
    }
    for check in dropped {
        api.local.forget_check(check).map_err(persist_error)?;
    }
    Ok(())
}

/// Writes a check's row (or forgets it, if it is gone).
pub(crate) fn persist_check(api: &Api, id: &str) -> Result<(), HttpError> {
    let check = api.local.state().checks().get(id).cloned();
    match check {
        Some(check) => api.local.save_check(&check).map_err(persist_error),
        None => api.local.forget_check(id).map_err(persist_error),
    }
}

/// The most output a check keeps (Consul's default `OutputMaxSize`).
const CHECK_OUTPUT_BYTES_MAX: usize = 4096;

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/agent/self", get(super::agent_self::agent_self))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/agent/service/register", put(register_service))
        .route("/v1/agent/service/deregister/{id}", put(deregister_service))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/pass/{id}", put(|s, a, p, q| ttl_update(s, a, p, q, Health::Passing)))
        .route("/v1/agent/check/warn/{id}", put(|s, a, p, q| ttl_update(s, a, p, q, Health::Warning)))
        .route("/v1/agent/check/fail/{id}", put(|s, a, p, q| ttl_update(s, a, p, q, Health::Critical)))
        .route("/v1/agent/check/update/{id}", put(update_check))
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route("/v1/agent/reload", put(reload_endpoint))
        .route("/v1/agent/service/maintenance/{id}", put(service_maintenance))
        .route("/v1/agent/monitor", get(monitor))
        .route("/v1/agent/health/service/id/{id}", get(health_by_id))
        .route("/v1/agent/health/service/name/{name}", get(health_by_name))
}

/// The node maintenance check's ID (Consul's `structs.NodeMaint`).
const NODE_MAINTENANCE: &str = "_node_maintenance";
/// The prefix of a service's maintenance check ID (`_service_maintenance:<id>`).
const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

/// `?enable=` as Go's `strconv.ParseBool` reads it, with Consul's refusals.
fn enable(query: &Query) -> Result<bool, HttpError> {
    match (query.get("enable"), query.go_bool("enable")) {
        (None | Some(""), _) => Err(HttpError::bad_request("Missing value for enable")),
        (_, Some(Some(enabled))) => Ok(enabled),
        (Some(other), _) => Err(HttpError::bad_request(format!("Invalid value for enable: {other:?}"))),
    }
}

/// Puts the node in maintenance (a critical `_node_maintenance` check, so every service on it
/// drops out of `?passing` and DNS) or takes it out.
async fn node_maintenance(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        let check = Check {
            check_id: NODE_MAINTENANCE.to_owned(),
            name: "Node Maintenance Mode".to_owned(),
            notes: maintenance_notes(&query, "node"),
            kind: CheckKind::Maintenance,
            ..Check::default()
        };
        set_maintenance(&api, enable(&query)?, check).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The same for one service (`_service_maintenance:<id>`).
async fn service_maintenance(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        let enabled = enable(&query)?;
        may_write_service(&api, &access, &id)?;
        if !api.local.state().services().contains_key(&id) {
            return Err(HttpError {
                status: StatusCode::NOT_FOUND,
                reason: format!("Unknown service ID {id:?}"),
            });
        }
        let check = Check {
            check_id: format!("{SERVICE_MAINTENANCE_PREFIX}{id}"),
            name: "Service Maintenance Mode".to_owned(),
            notes: maintenance_notes(&query, "service"),
            service_id: id.clone(),
            kind: CheckKind::Maintenance,
            ..Check::default()
        };
        set_maintenance(&api, enabled, check).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn maintenance_notes(query: &Query, what: &str) -> String {
    match query.get("reason") {
        Some(reason) if !reason.is_empty() => reason.to_owned(),
        _ => format!(
            "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."
        ),
    }
}

async fn set_maintenance(api: &Api, enabled: bool, check: Check) -> Result<Response, HttpError> {
    let id = check.check_id.clone();
    if enabled {
        let undo = api.local.state().clone();
        let row = Row::Check(id.clone());
        change_and_push(api, Some(undo), |state| state.add_check(check).map(|()| ((), Some(vec![row]))))
            .await?;
    } else {
        let row = Row::Check(id.clone());
        change_and_push(api, None, |state| Ok((state.remove_check(&id), Some(vec![row])))).await?;
    }
    persist_check(api, &id)?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/monitor?loglevel=[&logjson]`: the agent's log lines from now on, at the level
/// asked (info by default) and above, whatever the agent's own `-log-level`, as text or (with
/// `?logjson`, as Consul takes it: present) JSON lines, streamed until the client goes away.
async fn monitor(RawQuery(raw): RawQuery) -> Response {
    use tokio::sync::broadcast::error::RecvError;
    let query = Query::parse(raw.as_deref());
    let json = query.has("logjson");
    let level = match query.get("loglevel") {
        None | Some("") => tracing::Level::INFO,
        Some(text) => match crate::monitor::parse_level(text) {
            Some(level) => level,
            None => return HttpError::bad_request(format!("Unknown log level: {text}")).into_response(),
        },
    };
    let watcher = crate::monitor::subscribe(level);
    let stream = futures_util::stream::unfold(watcher, move |mut watcher| async move {
        loop {
            let text = match watcher.lines.recv().await {
                Ok(line) if line.level <= level => format!("{}\n", if json { line.json } else { line.text }),
                Ok(_) => continue,
                Err(RecvError::Lagged(lost)) => {
                    format!("[WARN]  monitor: {lost} log lines dropped: the reader fell behind\n")
                }
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok::<_, std::convert::Infallible>(text), watcher));
        }
    });
    ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream))
        .into_response()
}

/// Consul's `AgentService`.
fn agent_service_json(service: &Service, datacenter: &str) -> Value {
    shapes::to_value(AgentServiceJson::new(service, datacenter))
}

async fn services(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let map: Map<String, Value> = api
        .local
        .state()
        .services()
        .values()
        .filter(|s| access.allows(Permission::ServiceRead(&s.service)))
        .map(|s| (s.id.clone(), agent_service_json(s, &api.datacenter)))
        .collect();
    filtered(&query, Value::Object(map))
}

/// One service of this agent, with Consul's `ContentHash`; `?hash=<that hash>` blocks until
/// the service differs from it (or `?wait` passes), as Consul's hash-based blocking query.
async fn service(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        let name = api.local.state().services().get(&id).map(|service| service.service.clone());
        if let Some(name) = name {
            access.require(Permission::ServiceRead(&name))?;
        }
        let wait = api.blocking_wait(&query)?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = api.local.subscribe();
        loop {
            changes.borrow_and_update();
            let found = api.local.state().services().get(&id).cloned();
            let Some(service) = found else {
                return Err(HttpError {
                    status: StatusCode::NOT_FOUND,
                    reason: format!("unknown service ID: {id}"),
                });
            };
            let shape = AgentServiceJson::new(&service, &api.datacenter);
            let hash = content_hash(&shape);
            let unchanged = query.get("hash").is_some_and(|held| held == hash);
            if !unchanged || tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                let (mut headers, bytes) = json(&query, &shape.with_content_hash(hash.clone()));
                headers.insert("X-Consul-ContentHash", hash.parse().expect("hex is a header value"));
                return Ok((headers, bytes).into_response());
            }
        }
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A service's health on this agent, as `/v1/agent/health/service/...` sums it up for load
/// balancers and orchestrators: the worst of its checks and the node's (maintenance first), and
/// the status code they poll for, 200 passing, 429 warning, 503 critical or maintenance.
fn local_health<'a>(
    state: &'a LocalState,
    service: &'a Service,
    datacenter: &'a str,
) -> (StatusCode, &'static str, ServiceHealth<'a>) {
    let checks: Vec<&Check> = state
        .checks()
        .values()
        .filter(|check| check.service_id.is_empty() || check.service_id == service.id)
        .map(AsRef::as_ref)
        .collect();
    let maintenance = checks
        .iter()
        .any(|c| c.check_id == NODE_MAINTENANCE || c.check_id.starts_with(SERVICE_MAINTENANCE_PREFIX));
    let worst = checks.iter().map(|check| check.status).max_by_key(|status| match status {
        Health::Passing => 0,
        Health::Warning => 1,
        Health::Critical => 2,
    });
    let (code, status) = match (maintenance, worst) {
        (true, _) => (StatusCode::SERVICE_UNAVAILABLE, "maintenance"),
        (false, Some(Health::Critical)) => (StatusCode::SERVICE_UNAVAILABLE, "critical"),
        (false, Some(Health::Warning)) => (StatusCode::TOO_MANY_REQUESTS, "warning"),
        (false, _) => (StatusCode::OK, "passing"),
    };
    let body = ServiceHealth {
        aggregated_status: status,
        service: Some(AgentServiceJson::new(service, datacenter)),
        checks: Some(checks.into_iter().map(CheckNameJson::from).collect()),
    };
    (code, status, body)
}

/// Consul's `AgentServiceChecksInfo`: a service's health on this agent, its checks as the api
/// package's `HealthCheck` shows them (only the fields that name them and say how they fare).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceHealth<'a> {
    aggregated_status: &'static str,
    /// `null`, as are the checks, for a service the agent does not have.
    service: Option<AgentServiceJson<'a>>,
    checks: Option<Vec<CheckNameJson<'a>>>,
}

/// Whether the client asked for the status alone, as text (`Accept: text/plain`, `?format=text`).
fn wants_text(headers: &axum::http::HeaderMap, query: &Query) -> bool {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    accept.starts_with("text/plain") || query.get("format") == Some("text")
}

/// An answer of these endpoints: `status` as text, or `body` as JSON, with `code`.
fn health_answer(
    code: StatusCode,
    text: String,
    body: &impl Serialize,
    as_text: bool,
    query: &Query,
) -> Response {
    if as_text {
        return (code, [(axum::http::header::CONTENT_TYPE, "text/plain")], text).into_response();
    }
    let (headers, bytes) = json(query, body);
    (code, headers, bytes).into_response()
}

/// `GET /v1/agent/health/service/id/<id>`.
async fn health_by_id(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let as_text = wants_text(&headers, &query);
    let state = api.local.state();
    match state.services().get(&id) {
        Some(service) => {
            if let Err(denied) = access.require(Permission::ServiceRead(&service.service)) {
                return denied.into_response();
            }
            let (code, status, body) = local_health(&state, service, &api.datacenter);
            health_answer(code, status.to_owned(), &body, as_text, &query)
        }
        None => {
            let reason = format!("ServiceId {id} not found");
            let body = ServiceHealth { aggregated_status: "critical", service: None, checks: None };
            health_answer(StatusCode::NOT_FOUND, reason, &body, as_text, &query)
        }
    }
}

/// `GET /v1/agent/health/service/name/<name>`: every instance of the service on this agent, and
/// the worst status among them.
async fn health_by_name(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(denied) = access.require(Permission::ServiceRead(&name)) {
        return denied.into_response();
    }
    let state = api.local.state();
    let mut code = StatusCode::NOT_FOUND;
    let mut status = format!("ServiceName {name} Not Found");
    let mut instances = Vec::new();
    for service in state.services().values().filter(|service| service.service == name) {
        let (instance_code, instance_status, body) = local_health(&state, service, &api.datacenter);
        // The worst wins: 200 < 429 < 503 (and anything found beats not found).
        if code == StatusCode::NOT_FOUND || code < instance_code {
            (code, status) = (instance_code, instance_status.to_owned());
        }
        instances.push(body);
    }
    health_answer(code, status, &instances, wants_text(&headers, &query), &query)
}

/// A service's content hash: 16 hex digits of a fixed-key hash of its JSON, so the same content
/// gives the same hash on every request this binary answers.
fn content_hash(body: &impl Serialize) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_string(body).expect("a service serializes").hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

async fn checks(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let state = api.local.state();
    let checks: Map<String, Value> = state
        .checks()
        .values()
        .filter(|c| sees_check(&api, &access, &state, c))
        .map(|c| (c.check_id.clone(), check_json(c)))
        .collect();
    filtered(&query, Value::Object(checks))
}

/// An agent list answered through `?filter`, when there is one.
fn filtered(query: &Query, answer: Value) -> Response {
    let filtered = Filter::from_query(query).and_then(|filter| match filter {
        Some(filter) => filter.apply_to(answer),
        None => Ok(answer),
    });
    match filtered {
        Ok(answer) => json(query, &answer).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The configuration files the agent reads, and which of its services and checks came from
/// them (a reload replaces those and leaves the ones registered over HTTP alone).
#[derive(Debug, Default)]
pub struct ConfigFiles {
    /// `-config-file` and `-config-dir`, in order.
    pub sources: crate::config::Sources,
    owned: std::sync::Mutex<Owned>,
    /// The settings the agent started with, for `DebugConfig` in `/v1/agent/self`.
    runtime: std::sync::Mutex<super::RuntimeConfig>,
}

#[derive(Debug, Default)]
struct Owned {
    services: std::collections::BTreeSet<String>,
    checks: std::collections::BTreeSet<String>,
}

impl ConfigFiles {
    /// The agent's configuration sources.
    pub fn new(sources: crate::config::Sources) -> ConfigFiles {
        ConfigFiles { sources, ..ConfigFiles::default() }
    }

    /// Records the settings the agent started with (shown as `DebugConfig`).
    pub fn set_runtime(&self, runtime: super::RuntimeConfig) {
        *self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = runtime;
    }

    /// The settings the agent started with.
    pub fn runtime(&self) -> super::RuntimeConfig {
        self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The services and checks a configuration defines, decoded as the agent API decodes them.
pub type Definitions = (Vec<(Service, Vec<Check>)>, Vec<Check>);

/// Why a configuration's services and checks were not applied. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The files could not be read again (a reload).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A service or check definition is refused, in the agent API's words.
    #[error("failed to parse {}: {reason}", file.display())]
    Invalid {
        /// The file that defines it.
        file: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The local state refused the change, or it could not be kept on disk.
    #[error("{0}")]
    Refused(String),
    /// The HTTPS listener's new certificates or settings are refused (the old ones stay).
    #[error("Failed reloading tls configuration: {0}")]
    Tls(#[from] super::tls::HttpsError),
}

/// Decodes the service and check definitions of a configuration; the first bad one is the
/// error, naming its file.
pub fn definitions(
    config: &crate::config::FileConfig,
    scripts: bool,
) -> Result<Definitions, DefinitionError> {
    let named = |file: &std::path::Path, error: Refusal| DefinitionError::Invalid {
        file: file.to_owned(),
        reason: error.reason,
    };
    let mut services = Vec::new();
    for (file, value) in &config.services {
        let object = Object::from_value(value, "service").map_err(|e| named(file, e))?;
        services.push(service_definition(&object, scripts).map_err(|e| named(file, e))?);
    }
    let mut checks = Vec::new();
    for (file, value) in &config.checks {
        let object = Object::from_value(value, "check").map_err(|e| named(file, e))?;
        checks.push(file_check_definition(&object, scripts).map_err(|e| named(file, e))?);
    }
    Ok((services, checks))
}

/// Puts a configuration's services and checks in the local state, in place of the ones the
/// previous configuration defined, and syncs the catalog. Nothing changes if any definition
/// is refused.
pub async fn apply_definitions(api: &Api, definitions: Definitions) -> Result<(), DefinitionError> {
    let (services, checks) = definitions;
    let new_services: std::collections::BTreeSet<String> =
        services.iter().map(|(s, _)| s.id.clone()).collect();
    let new_checks: std::collections::BTreeSet<String> = services
        .iter()
        .flat_map(|(_, checks)| checks.iter().map(|c| c.check_id.clone()))
        .chain(checks.iter().map(|c| c.check_id.clone()))
        .collect();
    let (old_services, old_checks) = {
        let owned = api.config.owned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (owned.services.clone(), owned.checks.clone())
    };
    let all_checks: Vec<Check> = services
        .iter()
        .flat_map(|(_, checks)| checks.iter().cloned())
        .chain(checks.iter().cloned())
        .collect();
    let undo = api.local.state().clone();
    let removed = change_and_sync(api, Some(undo.clone()), |state| {
        let mut removed = Vec::new();
        for id in old_checks.iter().filter(|id| !new_checks.contains(*id)) {
            if state.remove_check(id) {
                removed.push(id.clone());
            }
        }
        for id in old_services.iter().filter(|id| !new_services.contains(*id)) {
            removed.extend(state.remove_service(id).unwrap_or_default());
        }
        for (service, checks) in services {
            if let Err(error) = state.add_service(service, checks) {
                *state = undo.clone();
                return Err(error);
            }
        }
        for check in checks {
            if let Err(error) = state.add_check(check) {
                *state = undo.clone();
                return Err(error);
            }
        }
        Ok(removed)
    })
    .await
    .map_err(|error| DefinitionError::Refused(error.reason))?;
    forget_timers(api, &removed);
    for id in &removed {
        persist_check(api, id).map_err(|e| DefinitionError::Refused(e.reason))?;
    }
    for id in old_services.iter().filter(|id| !new_services.contains(*id)) {
        api.local.forget_service(id).map_err(|e| DefinitionError::Refused(e.to_string()))?;
    }
    reset_timers(api, &all_checks);
    let mut owned = api.config.owned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *owned = Owned { services: new_services, checks: new_checks };
    Ok(())
}

/// Reads the configuration files again and applies their services and checks and the TLS
/// of the HTTPS listener and the server port (Consul's reload; SIGHUP and `PUT /v1/agent/reload` both come
/// here). Other settings take effect at the next start.
pub async fn reload(api: &Api) -> Result<(), DefinitionError> {
    tracing::info!("agent: Reloading configuration...");
    let config = crate::config::load(&api.config.sources)?;
    let definitions = definitions(&config, api.script_checks.from_files)?;
    // Every part is built before any is put in use, so a file that fails changes nothing.
    let mut warnings = Vec::new();
    let https = match &api.https {
        Some(https) => Some((https, https.prepare(&config.tls_https.over(&config.tls_defaults))?)),
        None => None,
    };
    let internal = match &api.internal_tls {
        Some(internal) => {
            Some((internal, internal.prepare(&config.tls_internal_rpc.over(&config.tls_defaults))?))
        }
        None => None,
    };
    if let Some((https, (prepared, more))) = https {
        https.install(prepared);
        warnings.extend(more);
    }
    if let Some((internal, (prepared, more))) = internal {
        internal.install(prepared);
        warnings.extend(more);
    }
    for warning in warnings {
        tracing::warn!("agent: {warning}");
    }
    apply_definitions(api, definitions).await
}

async fn reload_endpoint(State(api): State<Arc<Api>>) -> Response {
    match reload(&api).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(reason) => HttpError::internal(format!("Failed reloading config: {reason}")).into_response(),
    }
}

async fn register_service(State(api): State<Arc<Api>>, access: Access, body: Bytes) -> Response {
    let result = async {
        let (service, checks) = service_definition(&Object::parse(&body)?, api.script_checks.from_api)?;
        access.require(Permission::ServiceWrite(&service.service))?;
        // Replacing another service under the same ID needs its name's permission too.
        may_write_service(&api, &access, &service.id)?;
        reset_timers(&api, &checks);
        let id = service.id.clone();
        let undo = api.local.state().clone();
        let dropped = change_and_push(&api, Some(undo), |state| {
            let dropped = state.add_service(service, checks)?;
            let rows =
                std::iter::once(Row::Service(id.clone())).chain(dropped.iter().cloned().map(Row::Check));
            Ok((dropped.clone(), Some(rows.collect())))
        })
        .await?;
        forget_timers(&api, &dropped);
        persist_service(&api, &id, &dropped)?;
        Ok::<_, HttpError>(StatusCode::OK.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

fn forget_timers(api: &Api, checks: &[String]) {
    api.check_ttl.update(|timers, _| {
        for check in checks {
            timers.remove(check);
        }
    });
}

/// Removes a service and its checks; an unknown ID is a no-op, as in Consul.
async fn deregister_service(State(api): State<Arc<Api>>, access: Access, Path(id): Path<String>) -> Response {
    // Consul 1.20 answers a service the agent does not have with 404 (its
    // `vetServiceUpdateWithAuthorizer`); clients look for "Unknown service".
    if !api.local.state().services().contains_key(&id) {
        let reason =
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name.");
        return HttpError { status: StatusCode::NOT_FOUND, reason }.into_response();
    }
    if let Err(denied) = may_write_service(&api, &access, &id) {
        return denied.into_response();
    }
    match remove_service(&api, &id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Removes service `id` and its checks from the agent, the catalog and the disk.
pub(crate) async fn remove_service(api: &Api, id: &str) -> Result<(), HttpError> {
    let removed = change_and_push(api, None, |state| {
        let removed = state.remove_service(id);
        let dropped = removed.iter().flatten().cloned().map(Row::Check);
        let rows = std::iter::once(Row::Service(id.to_owned())).chain(dropped).collect();
        Ok((removed, Some(rows)))
    })
    .await?;
    if let Some(checks) = removed {
        forget_timers(api, &checks);
        persist_service(api, id, &checks)?;
    }
    Ok(())
}

async fn register_check(State(api): State<Arc<Api>>, access: Access, body: Bytes) -> Response {
    let result = async {
        let check = check_definition(&Object::parse(&body)?, api.script_checks.from_api)?;
        match check.service_id.as_str() {
            "" => access.require(Permission::NodeWrite(&api.node_name))?,
            service_id => may_write_service(&api, &access, service_id)?,
        }
        may_write_check(&api, &access, &check.check_id)?;
        reset_timers(&api, std::slice::from_ref(&check));
        let id = check.check_id.clone();
        let undo = api.local.state().clone();
        let row = Row::Check(id.clone());
        change_and_push(&api, Some(undo), |state| state.add_check(check).map(|()| ((), Some(vec![row]))))
            .await?;
        persist_check(&api, &id)?;
        Ok::<_, HttpError>(StatusCode::OK.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn deregister_check(State(api): State<Arc<Api>>, access: Access, Path(id): Path<String>) -> Response {
    let result = async {
        may_write_check(&api, &access, &id)?;
        forget_timers(&api, std::slice::from_ref(&id));
        let row = Row::Check(id.clone());
        change_and_push(&api, None, |state| Ok((state.remove_check(&id), Some(vec![row])))).await?;
        persist_check(&api, &id)?;
        Ok::<_, HttpError>(StatusCode::OK.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

async fn ttl_update(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    status: Health,
) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(denied) = may_write_check(&api, &access, &id) {
        return denied.into_response();
    }
    let note = query.get("note").unwrap_or("").to_owned();
    set_ttl_status(&api, &id, status, note).await.unwrap_or_else(IntoResponse::into_response)
}

async fn update_check(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = async {
        may_write_check(&api, &access, &id)?;
        let object = Object::parse(&body)?;
        let status = object.string("Status")?;
        let status = Health::parse(&status)
            .ok_or_else(|| HttpError::bad_request(format!("Invalid check status: '{status}'")))?;
        set_ttl_status(&api, &id, status, object.string("Output")?).await
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// A TTL check's new state and output (cut to [`CHECK_OUTPUT_BYTES_MAX`] with Consul's note).
async fn set_ttl_status(api: &Api, id: &str, status: Health, output: String) -> Result<Response, HttpError> {
    let kind = api.local.state().checks().get(id).map(|c| c.kind.clone());
    match kind {
        None => return Err(local_error(LocalError::UnknownCheck(id.to_owned()))),
        Some(kind) if kind != CheckKind::Ttl => {
            return Err(HttpError::internal(format!("CheckID \"{id}\" does not have associated TTL")))
        }
        Some(_) => {}
    }
    let output = truncate_output(output);
    let same_status = api.local.state().checks().get(id).is_some_and(|c| c.status == status);
    if same_status {
        // Output only: held back from the catalog like a run's (Consul's check_update_interval).
        crate::tasks::checks::record(api, id.to_owned(), status, output).await;
        let check = api.local.state().checks().get(id).map(|c| Check::clone(c));
        reset_timers(api, check.as_slice());
        persist_check(api, id)?;
        return Ok(StatusCode::OK.into_response());
    }
    let row = Row::Check(id.to_owned());
    let check = change_and_push(api, None, |state| {
        state.update_check(id, status, output).map(|check| (check.clone(), Some(vec![row])))
    })
    .await?;
    reset_timers(api, std::slice::from_ref(&check));
    persist_check(api, id)?;
    Ok(StatusCode::OK.into_response())
}

fn truncate_output(output: String) -> String {
    if output.len() <= CHECK_OUTPUT_BYTES_MAX {
        return output;
    }
    let mut cut = CHECK_OUTPUT_BYTES_MAX;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} ... (captured {cut} of {} bytes)", &output[..cut], output.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/v1/agent/health/service/...`'s bytes, pinned: a service with its checks' names and
    /// states, one the agent lacks, and `/v1/agent/service/<id>` with its hash (Consul's
    /// `ContentHash` comes before `Datacenter`).
    #[test]
    fn the_agents_service_answers_keep_consuls_shapes() {
        let service = Service { id: "web1".into(), service: "web".into(), port: 80, ..Service::default() };
        let check = Check {
            node: "node1".into(),
            check_id: "service:web1".into(),
            name: "web".into(),
            status: Health::Warning,
            output: "slow".into(),
            service_id: "web1".into(),
            service_name: "web".into(),
            kind: CheckKind::Ttl,
            ..Check::default()
        };
        let found = ServiceHealth {
            aggregated_status: "warning",
            service: Some(AgentServiceJson::new(&service, "dc1")),
            checks: Some(vec![CheckNameJson::from(&check)]),
        };
        let missing = ServiceHealth { aggregated_status: "critical", service: None, checks: None };
        let hashed = AgentServiceJson::new(&service, "dc1");
        let hash = content_hash(&hashed);
        assert_eq!(hash.len(), 16);
        let lines = [
            serde_json::to_string(&found).unwrap(),
            serde_json::to_string(&missing).unwrap(),
            serde_json::to_string(&hashed.with_content_hash("0123456789abcdef".into())).unwrap(),
        ];
        shapes::assert_golden("agent_service.golden", &lines);
    }
}
