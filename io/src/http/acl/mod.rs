//! Consul's ACL system over HTTP: which token a request carries and what it may do
//! (`gate`, run for every request a server answers), and the `/v1/acl/*` endpoints
//! (`../shared/reference/consul-wave2.md` §1; consul `agent/acl_endpoint.go`, `agent/http.go`).
//!
//! With ACLs off (`acl.enabled = false`, Consul's default) every ACL endpoint answers
//! `401 ACL support disabled`, whatever its argument (`checkACLDisabled`, before anything is
//! read), and a method it does not serve 405 first, as Consul's router refuses it. Client
//! libraries and tools read that answer to tell "ACLs are off" from "this token may not".
//!
//! With ACLs on, the bootstrap, tokens and policies are served as Consul serves them; roles,
//! auth methods, binding rules, templated policies, login and replication answer 501 until they
//! exist. Consul's own checks are made by:
//! - the handlers that know what they touch ([`Access`]): KV (one key refused, lists filtered),
//!   catalog and health reads (filtered by `node:read` and `service:read`, never refused),
//!   catalog registrations (Consul's `vetRegisterWithACL`), the agent's services and checks
//!   (`service:write` on the service, `node:write` for a node check; lists filtered), members,
//!   user events listed, sessions (`session:write` on the node, lists filtered by
//!   `session:read`), and transactions (each operation, refused ones as Consul's 409 errors);
//! - `gate`, for endpoints whose check is one permission the path names
//!   (`one_permission`: operator, keyring, snapshot, the agent's self, reload, join, leave,
//!   maintenance, event fire).
//!
//! Every other endpoint, until it has its own check, asks of the caller every permission
//! outside `acl` ([`Caller::may_do_everything`]): stricter than Consul, never looser. Requests the agent
//! makes of itself (anti-entropy, the leader's reconciliation) do not pass through HTTP and
//! are not checked.
//!
//! ACLs are on only on servers (and `-dev`): a client agent answers agent endpoints itself and
//! would need the servers to resolve tokens, so one configured with ACLs refuses to start.

mod policies;
mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use muster_core::acl::{
    Authorizer, DefaultPolicy, Permission, PermissionDenied, ANONYMOUS_TOKEN_ACCESSOR_ID,
};
use muster_core::fsm::{CommandError, ResolveError};

use super::endpoints::{Endpoint, ACL, ACL_SERVED, ENDPOINTS};
use super::{Api, HttpError, Query};
use crate::consensus::ConsensusError;

pub(crate) use tokens::initialize_acls;

/// Consul's words for a request to an ACL endpoint while ACLs are off.
pub const ACL_DISABLED: &str = "ACL support disabled";

/// The most bytes an ACL request body may have (a policy's rules text is the largest part).
const BODY_BYTES_MAX: usize = 512 * 1024;

/// The agent's `acl` block, when ACLs are on.
#[derive(Debug)]
pub struct AclSettings {
    /// `acl.default_policy`: what no rule decides.
    pub default_policy: DefaultPolicy,
    /// `acl.tokens.*`, which `PUT /v1/agent/token/<kind>` changes while the agent runs.
    pub tokens: std::sync::RwLock<AgentTokens>,
    /// Where the tokens set through the API are kept (`acl.enable_token_persistence`).
    pub persist_to: Option<std::path::PathBuf>,
    /// `acl.tokens.initial_management`: the SecretID of a management token the leader creates.
    pub initial_management: Option<String>,
}

impl AclSettings {
    /// The agent's tokens as they are now.
    pub fn tokens(&self) -> AgentTokens {
        self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The agent's own tokens (`acl.tokens`; empty when not set).
#[derive(Debug, Clone, Default)]
pub struct AgentTokens {
    /// `default`: the token of a request that carries none (else the anonymous one).
    pub default: String,
    /// `agent`: the agent's own work.
    pub agent: String,
    /// `agent_recovery`: agent endpoints when the servers cannot be reached.
    pub agent_recovery: String,
    /// `dns`: what DNS answers are read with (else `default`).
    pub dns: String,
    /// `replication`: secondary datacenters' replication.
    pub replication: String,
    /// `config_file_service_registration`: services and checks from configuration files.
    pub config_file_service_registration: String,
}

/// The file in the data directory that keeps the tokens set through the API (Consul's name).
pub const ACL_TOKENS_FILE: &str = "acl-tokens.json";

/// The persisted tokens, as Consul's `agent/token/persistence.go` writes them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Persisted {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    agent_recovery: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    default: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    replication: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    config_file_service_registration: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dns: String,
}

impl AgentTokens {
    /// Lays the tokens persisted at `path` over these (a missing file is none).
    pub fn load(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let persisted: Persisted = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        for (kind, token) in [
            ("agent", persisted.agent),
            ("agent_recovery", persisted.agent_recovery),
            ("default", persisted.default),
            ("replication", persisted.replication),
            ("config_file_service_registration", persisted.config_file_service_registration),
            ("dns", persisted.dns),
        ] {
            if !token.is_empty() {
                *self.slot(kind).expect("every persisted kind has a slot") = token;
            }
        }
        Ok(())
    }

    /// Keeps these tokens at `path`: a temporary file beside it, synced, renamed over it,
    /// readable by the owner only.
    fn persist(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let persisted = Persisted {
            agent: self.agent.clone(),
            agent_recovery: self.agent_recovery.clone(),
            default: self.default.clone(),
            replication: self.replication.clone(),
            config_file_service_registration: self.config_file_service_registration.clone(),
            dns: self.dns.clone(),
        };
        let temporary = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&serde_json::to_vec(&persisted).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&temporary, path)
    }

    /// The token `kind` names in `/v1/agent/token/<kind>`, Consul's legacy names included.
    fn slot(&mut self, kind: &str) -> Option<&mut String> {
        Some(match kind {
            "default" | "acl_token" => &mut self.default,
            "agent" | "acl_agent_token" => &mut self.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => &mut self.agent_recovery,
            "dns" => &mut self.dns,
            "replication" | "acl_replication_token" => &mut self.replication,
            "config_file_service_registration" => &mut self.config_file_service_registration,
            _ => return None,
        })
    }
}

/// Who made a request, once its token resolved: put in the request's extensions by `gate`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's AccessorID (the anonymous token's when the request carried none).
    pub accessor_id: String,
    /// What the token may do.
    pub authorizer: Authorizer,
}

impl Caller {
    /// The check, as Consul's 403.
    pub fn check(&self, permission: Permission<'_>) -> Result<(), HttpError> {
        self.authorizer.check(permission, &self.accessor_id).map_err(denied)
    }

    /// Whether the caller holds every permission outside `acl`: what an endpoint without its
    /// own checks asks (see the module's note). `Err` names the first one missing.
    pub fn may_do_everything(&self) -> Result<(), HttpError> {
        const EVERYTHING: [Permission<'static>; 11] = [
            Permission::OperatorWrite,
            Permission::KeyWritePrefix(""),
            Permission::NodeWrite(""),
            Permission::NodeReadAll,
            Permission::ServiceWrite(""),
            Permission::ServiceReadAll,
            Permission::SessionWrite(""),
            Permission::AgentWrite(""),
            Permission::EventWrite(""),
            Permission::QueryWrite(""),
            Permission::KeyringWrite,
        ];
        EVERYTHING.into_iter().try_for_each(|permission| self.check(permission))
    }
}

/// A permission denial as Consul sends it: 403 and the text.
pub fn denied(denial: PermissionDenied) -> HttpError {
    HttpError { status: StatusCode::FORBIDDEN, reason: denial.to_string() }
}

/// What may pass without a token resolving: what is not the API (the index, `/ui/`), the
/// endpoints Consul checks nothing on (status, the agent's version, the datacenters), and the
/// bootstrap, which makes the first token.
fn needs_no_token(path: &str) -> bool {
    const OPEN: [&str; 3] = ["/v1/acl/bootstrap", "/v1/agent/version", "/v1/coordinate/datacenters"];
    !path.starts_with("/v1/") || path.starts_with("/v1/status/") || OPEN.contains(&path)
}

/// The endpoints that check their own permissions, as Consul's do; every other asks for
/// [`Caller::may_do_everything`].
const CHECKING_THEIR_OWN: &[&str] = &[
    "/v1/acl/",
    "/v1/kv",
    "/v1/catalog/register",
    "/v1/catalog/deregister",
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/service/",
    "/v1/catalog/node/",
    "/v1/catalog/node-services/",
    "/v1/catalog/datacenters",
    "/v1/health/",
    "/v1/session/",
    "/v1/agent/services",
    "/v1/agent/service/",
    "/v1/agent/checks",
    "/v1/agent/check/",
    "/v1/agent/health/service/",
    "/v1/agent/members",
    "/v1/event/list",
    "/v1/txn",
    "/v1/agent/token/",
];

/// The endpoints whose whole check is one permission that the path names, as Consul's
/// endpoints check them (`node` is the agent's own).
fn one_permission<'a>(method: &Method, path: &'a str, node: &'a str) -> Option<Permission<'a>> {
    let read = method == Method::GET;
    let permission = match path {
        "/v1/operator/keyring" if read => Permission::KeyringRead,
        "/v1/operator/keyring" => Permission::KeyringWrite,
        _ if path.starts_with("/v1/operator/") && read => Permission::OperatorRead,
        _ if path.starts_with("/v1/operator/") => Permission::OperatorWrite,
        "/v1/snapshot" => Permission::Snapshot,
        "/v1/agent/self" | "/v1/agent/metrics" | "/v1/agent/monitor" => Permission::AgentRead(node),
        "/v1/agent/host" => Permission::OperatorRead,
        "/v1/agent/reload" | "/v1/agent/leave" => Permission::AgentWrite(node),
        _ if path.starts_with("/v1/agent/join/") => Permission::AgentWrite(node),
        _ if path.starts_with("/v1/agent/force-leave/") => Permission::OperatorWrite,
        "/v1/agent/maintenance" => Permission::NodeWrite(node),
        _ => match path.strip_prefix("/v1/event/fire/") {
            Some(name) => Permission::EventWrite(name),
            None => return None,
        },
    };
    Some(permission)
}

fn checks_its_own(path: &str) -> bool {
    CHECKING_THEIR_OWN.iter().any(|prefix| path.starts_with(prefix))
}

/// The secret a request presents, where Consul looks for it, in its order: `?token=`, then
/// `X-Consul-Token`, then `Authorization: Bearer` (`agent/http.go` `parseTokenInternal`).
pub fn presented_token(query: Option<&str>, headers: &HeaderMap) -> Option<String> {
    let from_query = Query::parse(query).get("token").filter(|token| !token.is_empty()).map(str::to_owned);
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
    let from_header = header("x-consul-token").filter(|token| !token.is_empty()).map(str::to_owned);
    let from_bearer = header("authorization")
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    from_query.or(from_header).or(from_bearer)
}

/// Resolves the request's token on a server that answers it here, and lets it through (with
/// its [`Caller`] in its extensions) or answers Consul's 403. Nothing to do with ACLs off.
pub(super) fn gate(api: &Api, request: &mut Request) -> Result<(), HttpError> {
    let Some(settings) = &api.acl else { return Ok(()) };
    let path = request.uri().path();
    if needs_no_token(path) {
        return Ok(());
    }
    let Some(consensus) = &api.consensus else {
        return Err(HttpError::internal("rpc error: this agent is not a server"));
    };
    let secret = presented_token(request.uri().query(), request.headers())
        .unwrap_or_else(|| settings.tokens().default);
    let now_ms = unix_ms();
    let resolved = consensus
        .store
        .read(|fsm| fsm.acl().resolve(&secret, now_ms, &api.datacenter, settings.default_policy));
    let caller = match resolved {
        Ok(token) => Caller { accessor_id: token.accessor_id, authorizer: token.authorizer },
        Err(error @ (ResolveError::NotFound | ResolveError::RootDenied)) => {
            return Err(HttpError { status: StatusCode::FORBIDDEN, reason: error.to_string() });
        }
    };
    if let Some(permission) = one_permission(request.method(), path, &api.node_name) {
        caller.check(permission)?;
    } else if !checks_its_own(path) {
        caller.may_do_everything()?;
    }
    request.extensions_mut().insert(Arc::new(caller));
    Ok(())
}

/// What a handler that checks its own permissions knows of the caller (an extractor): the
/// [`Caller`] that `gate` resolved, or nothing with ACLs off, when everything is allowed.
#[derive(Debug, Clone, Default)]
pub struct Access(Option<Arc<Caller>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Access {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Access, Self::Rejection> {
        Ok(Access(parts.extensions.get::<Arc<Caller>>().cloned()))
    }
}

impl Access {
    /// Whether ACLs are on (a caller was resolved).
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Whether the caller holds `permission` (always, with ACLs off).
    pub fn allows(&self, permission: Permission<'_>) -> bool {
        self.0.as_ref().is_none_or(|caller| caller.authorizer.allowed(permission))
    }

    /// `permission`, or Consul's 403.
    pub fn require(&self, permission: Permission<'_>) -> Result<(), HttpError> {
        self.0.as_ref().map_or(Ok(()), |caller| caller.check(permission))
    }

    /// Consul's `X-Consul-Results-Filtered-By-ACLs: true` when `removed` (never to the
    /// anonymous token, which would learn what exists).
    pub fn filtered_header(&self, removed: bool, headers: &mut HeaderMap) {
        let named = self.0.as_ref().is_some_and(|caller| caller.accessor_id != ANONYMOUS_TOKEN_ACCESSOR_ID);
        if removed && named {
            headers.insert("X-Consul-Results-Filtered-By-ACLs", axum::http::HeaderValue::from_static("true"));
        }
    }
}

/// The clock as ACL writes stamp it, Unix milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn routes() -> Router<Arc<Api>> {
    ENDPOINTS.iter().filter(|endpoint| [ACL, ACL_SERVED].contains(&endpoint.status)).fold(
        Router::new(),
        |router, endpoint| {
            let methods = methods(endpoint);
            match endpoint.path.strip_suffix('/') {
                // A path that takes an argument answers with one and without (`/v1/acl/token/`).
                Some(base) => router
                    .route(endpoint.path, methods.clone())
                    .route(&format!("{base}/{{*argument}}"), methods),
                None => router.route(endpoint.path, methods),
            }
        },
    )
}

/// The methods Consul serves on `endpoint`, each answering through [`dispatch`].
fn methods(endpoint: &Endpoint) -> MethodRouter<Arc<Api>> {
    endpoint.methods.iter().fold(MethodRouter::new(), |router, method| {
        let method = Method::from_bytes(method.as_bytes()).expect("the table names HTTP methods");
        let filter = MethodFilter::try_from(method).expect("the table names methods axum routes");
        router.on(filter, dispatch)
    })
}

/// One ACL request, taken apart for the handlers.
struct AclRequest {
    method: Method,
    /// The path after `/v1/acl/` (or `/v1/agent/`, `/v1/internal/acl/`).
    path: String,
    query: Query,
    caller: Option<Arc<Caller>>,
    body: bytes::Bytes,
}

async fn dispatch(State(api): State<Arc<Api>>, request: Request) -> Response {
    if api.acl.is_none() {
        return HttpError { status: StatusCode::UNAUTHORIZED, reason: ACL_DISABLED.to_owned() }
            .into_response();
    }
    let (mut parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return HttpError { status: StatusCode::PAYLOAD_TOO_LARGE, reason: "Request body too large".into() }
            .into_response();
    };
    let path = parts.uri.path();
    let path = path.strip_prefix("/v1/acl/").unwrap_or(path).to_owned();
    let request = AclRequest {
        method: parts.method.clone(),
        path,
        query: Query::parse(parts.uri.query()),
        caller: parts.extensions.remove::<Arc<Caller>>(),
        body,
    };
    match answer(&api, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(api: &Api, request: AclRequest) -> Result<Response, HttpError> {
    api.check_datacenter(&request.query)?;
    let segments: Vec<&str> = request.path.split('/').collect();
    match (&request.method, segments.as_slice()) {
        (&Method::PUT, ["bootstrap"]) => tokens::bootstrap(api, &request).await,
        (&Method::GET, ["tokens"]) => tokens::list(api, &request).await,
        (&Method::PUT, ["token"]) => tokens::create(api, &request).await,
        (&Method::GET, ["token", "self"]) => tokens::read_self(api, &request).await,
        (&Method::PUT, ["token", accessor, "clone"]) => tokens::clone(api, &request, accessor).await,
        (&Method::GET, ["token", accessor]) => tokens::read(api, &request, accessor).await,
        (&Method::PUT, ["token", accessor]) => tokens::update(api, &request, accessor).await,
        (&Method::DELETE, ["token", accessor]) => tokens::delete(api, &request, accessor).await,
        (&Method::GET, ["policies"]) => policies::list(api, &request).await,
        (&Method::PUT, ["policy"]) => policies::create(api, &request).await,
        (&Method::GET, ["policy", "name", name]) => policies::read_by_name(api, &request, name).await,
        (&Method::GET, ["policy", id]) => policies::read(api, &request, id).await,
        (&Method::PUT, ["policy", id]) => policies::update(api, &request, id).await,
        (&Method::DELETE, ["policy", id]) => policies::delete(api, &request, id).await,
        (&Method::PUT, ["", "v1", "agent", "token", kind]) => set_agent_token(api, &request, kind),
        _ => Err(HttpError {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: format!("muster does not serve {} {} yet", request.method, request.path),
        }),
    }
}

/// `PUT /v1/agent/token/<kind>` with `{"Token": "..."}`: the agent uses it from now on, and with
/// `acl.enable_token_persistence` after a restart too (`<data_dir>/acl-tokens.json`).
fn set_agent_token(api: &Api, request: &AclRequest, kind: &str) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclWrite)?;
    let object = tokens::decode(&request.body, "Token")?;
    let token = object.string("Token")?;
    let settings = api.acl.as_ref().ok_or_else(|| HttpError::internal(ACL_DISABLED))?;
    let mut tokens = settings.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(slot) = tokens.slot(kind) else {
        return Err(HttpError {
            status: StatusCode::NOT_FOUND,
            reason: format!("Token {kind:?} is unknown"),
        });
    };
    *slot = token;
    if let Some(path) = &settings.persist_to {
        tokens
            .persist(path)
            .map_err(|error| HttpError::internal(format!("Failed to persist tokens - {error}")))?;
    }
    Ok(StatusCode::OK.into_response())
}

impl AclRequest {
    /// The caller, which `gate` resolved (every ACL endpoint but the bootstrap has one).
    fn caller(&self) -> Result<&Caller, HttpError> {
        self.caller.as_deref().ok_or_else(|| HttpError::internal("the request's token was not resolved"))
    }
}

/// An ACL write's refusal in Consul's words: a permission denial as a 403 that says so, and
/// the rest as the state machine worded them.
fn refused(error: HttpError, written: Result<(), ConsensusError>) -> HttpError {
    match written {
        Err(ConsensusError::Rejected(CommandError::Acl(refusal))) if refusal.is_permission_denied() => {
            denied(PermissionDenied::Cause(refusal.to_string()))
        }
        _ => error,
    }
}

/// Proposes an ACL command and maps its refusal ([`refused`]).
async fn write(api: &Api, command: &muster_core::fsm::Command) -> Result<(), HttpError> {
    match &api.consensus {
        Some(consensus) => {
            let written = consensus.write_via_leader(command).await.map(drop);
            match written {
                Ok(()) => Ok(()),
                Err(error) => {
                    let status =
                        StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let plain = HttpError { status, reason: error.to_string() };
                    Err(refused(plain, Err(error)))
                }
            }
        }
        None => api.write(command).await.map(drop),
    }
}
