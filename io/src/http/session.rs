//! `/v1/session/...`: create, destroy, info, node, list, renew
//! (`../shared/reference/consul-behaviour.md` §1.6). The leader's TTL timers follow the sessions
//! the state holds ([`crate::store`]); a renewal restarts one.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use muster_core::acl::Permission;
use muster_core::fsm::{Behavior, Command, Session, SessionDestroy, Table, WatchTarget};
use serde::Serialize;
use serde_json::Value;

use super::body::{decode_failed, Object};
use super::{json, Access, Api, HttpError, Query};

/// Consul's lock delay when a session names none.
const LOCK_DELAY_DEFAULT: Duration = Duration::from_secs(15);

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/destroy/{id}", put(destroy))
        .route("/v1/session/renew/{id}", put(renew))
        .route("/v1/session/info/{id}", get(info))
        .route("/v1/session/node/{node}", get(of_node))
        .route("/v1/session/list", get(list))
}

/// Consul's `Session` JSON, in its field order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    node: &'a str,
    /// Nanoseconds.
    lock_delay: u64,
    behavior: &'static str,
    #[serde(rename = "TTL")]
    ttl: &'a str,
    node_checks: &'a [String],
    service_checks: Option<Vec<ServiceCheck<'a>>>,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCheck<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    namespace: &'static str,
}

impl<'a> From<&'a Session> for SessionJson<'a> {
    fn from(session: &'a Session) -> SessionJson<'a> {
        SessionJson {
            id: &session.id,
            name: &session.name,
            node: &session.node,
            lock_delay: session.lock_delay_ms.saturating_mul(1_000_000),
            behavior: session.behavior.as_str(),
            ttl: &session.ttl,
            node_checks: &session.node_checks,
            service_checks: (!session.service_checks.is_empty()).then(|| {
                session.service_checks.iter().map(|id| ServiceCheck { id, namespace: "" }).collect()
            }),
            create_index: session.create_index,
            modify_index: session.modify_index,
        }
    }
}

async fn create(
    State(api): State<Arc<Api>>,
    access: Access,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(raw.as_deref());
    match create_inner(&api, &access, &query, &body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn create_inner(api: &Api, access: &Access, query: &Query, body: &[u8]) -> Result<Response, HttpError> {
    api.check_datacenter(query)?;
    let object = Object::parse(body)?;
    let node = match object.string("Node")? {
        node if node.is_empty() => api.node_name.clone(),
        node => node,
    };
    access.require(Permission::SessionWrite(&node))?;
    // Consul binds a session to the node's serfHealth unless the client names the checks.
    let node_checks = if object.has("NodeChecks") || object.has("Checks") {
        let mut checks = object.strings("NodeChecks")?;
        checks.extend(object.strings("Checks")?);
        checks
    } else {
        vec![muster_core::fsm::SERF_HEALTH.to_owned()]
    };
    let service_checks = match object.get("ServiceChecks") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| Object::from_value(item, "ServiceChecks").and_then(|check| check.string("ID")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(decode_failed("ServiceChecks: expected a list")),
    };
    let lock_delay = match object.get("LockDelay") {
        None => LOCK_DELAY_DEFAULT,
        // A bare number under 1000 means seconds (Consul's compatibility rule).
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n < 1000) => {
            Duration::from_secs(n.as_u64().expect("checked"))
        }
        Some(value) => {
            super::body::duration(value).map_err(|reason| decode_failed(format!("LockDelay: {reason}")))?
        }
    };
    let behavior = match object.string("Behavior")?.as_str() {
        "" | "release" => Behavior::Release,
        "delete" => Behavior::Delete,
        other => return Err(HttpError::internal(format!("Invalid Behavior setting '{other}'"))),
    };
    let ttl = match object.get("TTL") {
        None => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(value) => {
            let duration =
                super::body::duration(value).map_err(|reason| decode_failed(format!("TTL: {reason}")))?;
            muster_core::duration::format(duration)
        }
    };
    Session::check_ttl(&ttl).map_err(|error| HttpError::internal(error.to_string()))?;
    let session = Session {
        id: uuid::Uuid::new_v4().to_string(),
        name: object.string("Name")?,
        node,
        lock_delay_ms: u64::try_from(lock_delay.as_millis()).unwrap_or(u64::MAX),
        behavior,
        ttl,
        node_checks,
        service_checks,
        ..Session::default()
    };
    let started = std::time::Instant::now();
    let written = api.write(&Command::SessionCreate(session.clone())).await;
    crate::telemetry::measure_since("session.apply", &[], started);
    written?;
    #[derive(Serialize)]
    struct Created<'a> {
        #[serde(rename = "ID")]
        id: &'a str,
    }
    Ok(json(query, &Created { id: &session.id }).into_response())
}

async fn destroy(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let result = async {
        api.check_datacenter(&query)?;
        may_write(&api, &access, &id)?;
        let started = std::time::Instant::now();
        let written = api.write(&Command::SessionDestroy(SessionDestroy { id: id.clone() })).await;
        crate::telemetry::measure_since("session.apply", &[], started);
        written?;
        Ok::<_, HttpError>(json(&query, &true).into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// Renewal restarts the leader's timer; it never reaches the log. Consul answers the session
/// whether or not a timer ran (one without a TTL has none).
async fn renew(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw.as_deref());
    let started = std::time::Instant::now();
    let result = async {
        api.check_datacenter(&query)?;
        may_write(&api, &access, &id)?;
        let Some(session) = api.consensus()?.renew(&id).await? else {
            return Err(HttpError {
                status: StatusCode::NOT_FOUND,
                reason: format!("Session id '{id}' not found"),
            });
        };
        Ok(json(&query, &[SessionJson::from(&session)]).into_response())
    };
    let response = result.await.unwrap_or_else(IntoResponse::into_response);
    crate::telemetry::measure_since("session.renew", &[], started);
    response
}

/// `session:write` on the node of session `id`, as Consul's destroy and renew ask (nothing to
/// check for a session that does not exist: the answer says so).
fn may_write(api: &Api, access: &Access, id: &str) -> Result<(), HttpError> {
    let node = api.consensus()?.store.read(|fsm| fsm.sessions().get(id).map(|session| session.node.clone()));
    node.map_or(Ok(()), |node| access.require(Permission::SessionWrite(&node)))
}

async fn info(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    sessions(api, access, raw, move |fsm| {
        let (index, session) = fsm.sessions().info(&id);
        (index, session.into_iter().cloned().collect())
    })
    .await
}

async fn of_node(
    State(api): State<Arc<Api>>,
    access: Access,
    Path(node): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    sessions(api, access, raw, move |fsm| {
        let (index, sessions) = fsm.sessions().of_node(&node);
        (index, sessions.into_iter().cloned().collect())
    })
    .await
}

async fn list(State(api): State<Arc<Api>>, access: Access, RawQuery(raw): RawQuery) -> Response {
    sessions(api, access, raw, |fsm| {
        let (index, sessions) = fsm.sessions().list();
        (index, sessions.into_iter().cloned().collect())
    })
    .await
}

/// A session read: blocking on the session table, answered as a list (`[]` when empty) of the
/// sessions the caller may read (`session:read` on their node).
async fn sessions(
    api: Arc<Api>,
    access: Access,
    raw: Option<String>,
    read: impl Fn(&muster_core::fsm::Fsm) -> (u64, Vec<Session>),
) -> Response {
    let query = Query::parse(raw.as_deref());
    let options = match api.prepare_read(&query).await {
        Ok(options) => options,
        Err(error) => return error.into_response(),
    };
    let (index, sessions) = match api.read(options, || vec![WatchTarget::Table(Table::Sessions)], read).await
    {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    let shaped: Vec<SessionJson<'_>> = sessions
        .iter()
        .filter(|session| access.allows(Permission::SessionRead(&session.node)))
        .map(SessionJson::from)
        .collect();
    let mut meta = api.meta_headers(index);
    access.filtered_header(shaped.len() != sessions.len(), &mut meta);
    (meta, json(&query, &shaped)).into_response()
}
