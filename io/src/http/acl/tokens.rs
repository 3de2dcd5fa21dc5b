//! `/v1/acl/bootstrap` and `/v1/acl/token*`, and what the leader creates on taking office
//! ([`initialize_acls`]), as consul `agent/acl_endpoint.go` and `agent/consul/acl_endpoint.go`
//! answer them.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use muster_core::acl::{Permission, ANONYMOUS_TOKEN_ACCESSOR_ID, GLOBAL_MANAGEMENT_POLICY_ID};
use muster_core::fsm::{
    AclBootstrap, AclInitialize, AclState, AclTokenDelete, AclTokenSet, Command, NodeIdentity,
    ServiceIdentity, Table, Token, WatchTarget,
};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use super::{unix_ms, write, AclRequest};
use crate::http::body::{self, Object};
use crate::http::{json, Api, Consensus, HttpError};

/// What the bootstrap token is called.
const BOOTSTRAP_DESCRIPTION: &str = "Bootstrap Token (Global Management)";

/// What the token `acl.tokens.initial_management` names is called.
const INITIAL_MANAGEMENT_DESCRIPTION: &str = "Initial Management Token";

/// The shortest and longest `ExpirationTTL` (Consul's `ACLTokenMinExpirationTTL` and
/// `ACLTokenMaxExpirationTTL` defaults).
const EXPIRATION_TTL_MIN: Duration = Duration::from_secs(60);
const EXPIRATION_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// What a caller without `acl:write` sees in place of a SecretID.
const HIDDEN: &str = "<hidden>";

/// A policy link as Consul shows it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Link {
    #[serde(rename = "ID")]
    id: String,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceIdentityJson<'a> {
    service_name: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    datacenters: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeIdentityJson<'a> {
    node_name: &'a str,
    datacenter: &'a str,
}

/// Consul's `ACLToken` (and, without `ID`, its list stub), field for field in its order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TokenJson<'a> {
    /// The bootstrap's deprecated copy of the SecretID.
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "AccessorID")]
    accessor_id: &'a str,
    #[serde(rename = "SecretID")]
    secret_id: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    policies: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    service_identities: Vec<ServiceIdentityJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    node_identities: Vec<NodeIdentityJson<'a>>,
    local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<String>,
    create_time: String,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

impl<'a> TokenJson<'a> {
    fn new(token: &'a Token, acl: &AclState, show_secret: bool) -> TokenJson<'a> {
        let policies = token
            .policies
            .iter()
            .filter_map(|id| acl.policy(id))
            .map(|policy| Link { id: policy.id.clone(), name: policy.name.clone() })
            .collect();
        TokenJson {
            id: None,
            accessor_id: &token.accessor_id,
            secret_id: if show_secret { &token.secret_id } else { HIDDEN },
            description: &token.description,
            policies,
            service_identities: token
                .service_identities
                .iter()
                .map(|s| ServiceIdentityJson { service_name: &s.service_name, datacenters: &s.datacenters })
                .collect(),
            node_identities: token
                .node_identities
                .iter()
                .map(|n| NodeIdentityJson { node_name: &n.node_name, datacenter: &n.datacenter })
                .collect(),
            local: token.local,
            expiration_time: token.expiration_time_ms.map(rfc3339_ms),
            create_time: rfc3339_ms(token.create_time_ms),
            hash: token_hash(token),
            create_index: token.create_index,
            modify_index: token.modify_index,
        }
    }
}

/// Unix milliseconds as Go's JSON writes a `time.Time` (RFC 3339, a fraction without trailing
/// zeros, none when whole).
fn rfc3339_ms(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    let text = humantime::format_rfc3339_millis(at).to_string();
    let text = text.trim_end_matches('Z');
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    match fraction.trim_end_matches('0') {
        "" => format!("{seconds}Z"),
        fraction => format!("{seconds}.{fraction}Z"),
    }
}

/// The token's `Hash`: a digest of what it grants, which clients compare and never decode.
/// (Consul's is BLAKE2b-256 over its Go fields; this is SHA-256 over the same fields.)
fn token_hash(token: &Token) -> String {
    let mut digest = sha2::Sha256::new();
    digest.update(token.description.as_bytes());
    digest.update([0]);
    for id in &token.policies {
        digest.update(id.as_bytes());
        digest.update([0]);
    }
    for identity in &token.service_identities {
        digest.update(identity.service_name.as_bytes());
        digest.update(identity.datacenters.join(",").as_bytes());
        digest.update([0]);
    }
    for identity in &token.node_identities {
        digest.update(identity.node_name.as_bytes());
        digest.update(identity.datacenter.as_bytes());
        digest.update([0]);
    }
    digest.update([u8::from(token.local)]);
    base64::engine::general_purpose::STANDARD.encode(digest.finalize())
}

/// A fresh random UUID (accessor and secret IDs).
fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn consensus(api: &Api) -> Result<&Consensus, HttpError> {
    api.consensus()
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub(super) async fn bootstrap(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    let object = decode(&request.body, "Token")?;
    let secret_id = match object.string("BootstrapSecret")? {
        secret if secret.is_empty() => new_uuid(),
        secret => secret,
    };
    let token = Token {
        accessor_id: new_uuid(),
        secret_id,
        description: BOOTSTRAP_DESCRIPTION.to_owned(),
        policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
        create_time_ms: unix_ms(),
        ..Token::default()
    };
    ensure_initialized(api).await?;
    write(api, &Command::AclBootstrap(Box::new(AclBootstrap { token: token.clone(), reset_index: None })))
        .await?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let stored =
        acl.token(&token.accessor_id).ok_or_else(|| HttpError::internal("the new token is missing"))?;
    let mut shown = TokenJson::new(stored, &acl, true);
    shown.id = Some(&stored.secret_id);
    Ok(json(&request.query, &shown).into_response())
}

/// Creates the built-in policies and the anonymous token if the leader has not yet (a request
/// can arrive between the election and the leader's own write).
async fn ensure_initialized(api: &Api) -> Result<(), HttpError> {
    let initialized =
        consensus(api)?.store.read(|fsm| fsm.acl().policy(GLOBAL_MANAGEMENT_POLICY_ID).is_some());
    if !initialized {
        write(api, &Command::AclInitialize(AclInitialize {})).await?;
    }
    Ok(())
}

/// What the leader does on taking office with ACLs on (Consul's `initializeACLs`): the
/// built-in policies and the anonymous token, then the `initial_management` token if no token
/// has its secret (through the bootstrap while the cluster has none, as Consul does).
pub(crate) async fn initialize_acls(api: &Api) -> Result<(), HttpError> {
    let Some(settings) = &api.acl else { return Ok(()) };
    ensure_initialized(api).await?;
    let Some(secret) = settings.initial_management.as_ref().filter(|secret| !secret.is_empty()) else {
        return Ok(());
    };
    let (exists, bootstrapped) = consensus(api)?
        .store
        .read(|fsm| (fsm.acl().token_by_secret(secret).is_some(), fsm.acl().bootstrapped().is_some()));
    if exists {
        return Ok(());
    }
    let token = Token {
        accessor_id: new_uuid(),
        secret_id: secret.clone(),
        description: INITIAL_MANAGEMENT_DESCRIPTION.to_owned(),
        policies: vec![GLOBAL_MANAGEMENT_POLICY_ID.to_owned()],
        create_time_ms: unix_ms(),
        ..Token::default()
    };
    let command = if bootstrapped {
        Command::AclTokenSet(Box::new(AclTokenSet { token, create: true }))
    } else {
        Command::AclBootstrap(Box::new(AclBootstrap { token, reset_index: None }))
    };
    write(api, &command).await
}

/// The token table for a reader with `acl:read` (blocking as the request asks), and whether
/// the reader may see secrets (`acl:write`).
async fn read_tokens(api: &Api, request: &AclRequest) -> Result<(u64, AclState, bool), HttpError> {
    let caller = request.caller()?;
    caller.check(Permission::AclRead)?;
    let show_secrets = caller.authorizer.acl_write();
    let options = api.prepare_read(&request.query).await?;
    let targets = || vec![WatchTarget::Table(Table::AclTokens)];
    let (index, acl) = api.read(options, targets, |fsm| (fsm.acl().tokens().0, fsm.acl().clone())).await?;
    Ok((index, acl, show_secrets))
}

/// `GET /v1/acl/tokens` (`?policy=`, `?servicename=`): every token, sorted by AccessorID.
pub(super) async fn list(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    let (index, acl, show_secrets) = read_tokens(api, request).await?;
    let policy = request.query.get("policy");
    let service = request.query.get("servicename");
    let (_, tokens) = acl.tokens();
    let shown: Vec<TokenJson<'_>> = tokens
        .into_iter()
        .filter(|token| policy.is_none_or(|id| token.policies.iter().any(|held| held == id)))
        .filter(|token| {
            service.is_none_or(|name| token.service_identities.iter().any(|s| s.service_name == name))
        })
        .map(|token| TokenJson::new(token, &acl, show_secrets))
        .collect();
    Ok((api.meta_headers(index), json(&request.query, &shown)).into_response())
}

/// `GET /v1/acl/token/<accessor>`.
pub(super) async fn read(api: &Api, request: &AclRequest, accessor: &str) -> Result<Response, HttpError> {
    let (index, acl, show_secret) = read_tokens(api, request).await?;
    let Some(token) = acl.token(accessor).filter(|token| !token.is_expired(unix_ms())) else {
        return Err(not_found("Requested token does not exist: ACL not found"));
    };
    let shown = TokenJson::new(token, &acl, show_secret);
    Ok((api.meta_headers(index), json(&request.query, &shown)).into_response())
}

/// `GET /v1/acl/token/self`: the caller's own token, secret included; no permission needed.
pub(super) async fn read_self(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    let caller = request.caller()?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let token = acl.token(&caller.accessor_id).ok_or_else(|| not_found("Supplied token does not exist"))?;
    let index = acl.tokens().0;
    Ok((api.meta_headers(index), json(&request.query, &TokenJson::new(token, &acl, true))).into_response())
}

/// `PUT /v1/acl/token`: a new token.
pub(super) async fn create(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    let caller = request.caller()?;
    caller.check(Permission::AclWrite)?;
    let object = decode(&request.body, "Token")?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let mut token = token_from(&object, &acl)?;
    if token.accessor_id.is_empty() {
        token.accessor_id = new_uuid();
    }
    if token.secret_id.is_empty() {
        token.secret_id = new_uuid();
    }
    token.create_time_ms = unix_ms();
    token.expiration_time_ms = expiration(&object, token.create_time_ms)?;
    check_new_id("AccessorID", &token.accessor_id)?;
    check_new_id("SecretID", &token.secret_id)?;
    written(api, request, token, true).await
}

/// `PUT /v1/acl/token/<accessor>`: the token replaced by the body (its SecretID, locality and
/// expiry stay).
pub(super) async fn update(api: &Api, request: &AclRequest, accessor: &str) -> Result<Response, HttpError> {
    let caller = request.caller()?;
    caller.check(Permission::AclWrite)?;
    let object = decode(&request.body, "Token")?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let mut token = token_from(&object, &acl)?;
    if !token.accessor_id.is_empty() && token.accessor_id != accessor {
        return Err(HttpError::bad_request("Token Accessor ID in URL and payload do not match"));
    }
    if object.get("ExpirationTTL").is_some() {
        return Err(invalid_token("Cannot change expiration time"));
    }
    token.accessor_id = accessor.to_owned();
    written(api, request, token, false).await
}

/// `PUT /v1/acl/token/<accessor>/clone`: a new token with the same links.
pub(super) async fn clone(api: &Api, request: &AclRequest, accessor: &str) -> Result<Response, HttpError> {
    let caller = request.caller()?;
    caller.check(Permission::AclWrite)?;
    let object = decode(&request.body, "Token")?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let Some(original) = acl.token(accessor).filter(|token| !token.is_expired(unix_ms())) else {
        return Err(HttpError::internal("Cannot find token to clone"));
    };
    let description = match object.string("Description")? {
        description if description.is_empty() => original.description.clone(),
        description => description,
    };
    let token = Token {
        accessor_id: new_uuid(),
        secret_id: new_uuid(),
        description,
        create_time_ms: unix_ms(),
        ..original.clone()
    };
    written(api, request, token, true).await
}

/// `DELETE /v1/acl/token/<accessor>`: `true`.
pub(super) async fn delete(api: &Api, request: &AclRequest, accessor: &str) -> Result<Response, HttpError> {
    let caller = request.caller()?;
    caller.check(Permission::AclWrite)?;
    if accessor == ANONYMOUS_TOKEN_ACCESSOR_ID {
        return Err(HttpError::internal("Delete operation not permitted on the anonymous token"));
    }
    let exists = consensus(api)?.store.read(|fsm| fsm.acl().token(accessor).is_some());
    if !exists {
        return Err(not_found("Cannot find token to delete"));
    }
    write(api, &Command::AclTokenDelete(AclTokenDelete { accessor_id: accessor.to_owned() })).await?;
    Ok(json(&request.query, &true).into_response())
}

/// Proposes `token` and answers it as stored.
async fn written(api: &Api, request: &AclRequest, token: Token, create: bool) -> Result<Response, HttpError> {
    let accessor_id = token.accessor_id.clone();
    write(api, &Command::AclTokenSet(Box::new(AclTokenSet { token, create }))).await?;
    let acl = consensus(api)?.store.read(|fsm| fsm.acl().clone());
    let stored = acl.token(&accessor_id).ok_or_else(|| HttpError::internal("the token is missing"))?;
    Ok(json(&request.query, &TokenJson::new(stored, &acl, true)).into_response())
}

/// The token a body describes: its IDs (may be empty), description, policy links (by ID or
/// name, resolved to IDs against `acl`), identities and locality.
fn token_from(object: &Object, acl: &AclState) -> Result<Token, HttpError> {
    let mut policies = Vec::new();
    for link in objects(object, "Policies")? {
        let (id, name) = (link.string("ID")?, link.string("Name")?);
        let id = match (id.is_empty(), name.is_empty()) {
            (false, _) => id,
            (true, false) => acl
                .policy_by_name(&name)
                .map(|policy| policy.id.clone())
                .ok_or_else(|| HttpError::internal(format!("No such ACL policy with name {name:?}")))?,
            (true, true) => return Err(HttpError::internal("Policy link is missing both an ID and a Name")),
        };
        policies.push(id);
    }
    let service_identities = objects(object, "ServiceIdentities")?
        .iter()
        .map(|s| {
            Ok(ServiceIdentity {
                service_name: s.string("ServiceName")?,
                datacenters: s.strings("Datacenters")?,
            })
        })
        .collect::<Result<_, body::Refusal>>()?;
    let node_identities = objects(object, "NodeIdentities")?
        .iter()
        .map(|n| Ok(NodeIdentity { node_name: n.string("NodeName")?, datacenter: n.string("Datacenter")? }))
        .collect::<Result<_, body::Refusal>>()?;
    Ok(Token {
        accessor_id: object.string("AccessorID")?,
        secret_id: object.string("SecretID")?,
        description: object.string("Description")?,
        policies,
        service_identities,
        node_identities,
        local: body::boolean(object, "Local")?,
        ..Token::default()
    })
}

/// A new token's expiry, from `ExpirationTTL` or `ExpirationTime` (RFC 3339), within Consul's
/// bounds.
fn expiration(object: &Object, create_time_ms: u64) -> Result<Option<u64>, HttpError> {
    let ttl = match (object.get("ExpirationTTL"), object.get("ExpirationTime")) {
        (Some(_), Some(_)) => {
            return Err(invalid_token("Token Expiration TTL and Expiration Time cannot both be set"))
        }
        (Some(value), None) => body::duration(value)
            .map_err(|reason| decoding_failed("Token", format!("ExpirationTTL: {reason}")))?,
        (None, Some(Value::String(time))) => {
            let at = humantime::parse_rfc3339_weak(time)
                .map_err(|reason| decoding_failed("Token", format!("ExpirationTime: {reason}")))?;
            let at_ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis());
            let at_ms = u64::try_from(at_ms).unwrap_or(u64::MAX);
            if at_ms < create_time_ms {
                return Err(invalid_token("ExpirationTime cannot be in the past"));
            }
            Duration::from_millis(at_ms - create_time_ms)
        }
        (None, Some(_)) => return Err(decoding_failed("Token", "ExpirationTime: expected a string")),
        (None, None) => return Ok(None),
    };
    if ttl.is_zero() && object.get("ExpirationTTL").is_some() {
        return Ok(None);
    }
    let shown = muster_core::duration::format(ttl);
    if ttl < EXPIRATION_TTL_MIN {
        let min = muster_core::duration::format(EXPIRATION_TTL_MIN);
        return Err(invalid_token(&format!("Token Expiration TTL '{shown}' should be > than {min}")));
    }
    if ttl > EXPIRATION_TTL_MAX {
        let max = muster_core::duration::format(EXPIRATION_TTL_MAX);
        return Err(invalid_token(&format!("Token Expiration TTL '{shown}' should be < than {max}")));
    }
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    Ok(Some(create_time_ms.saturating_add(ttl_ms)))
}

/// A client-chosen ID must be a UUID outside the reserved range (the core checks it is unused).
fn check_new_id(field: &str, id: &str) -> Result<(), HttpError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(invalid_token(&format!("{field} - {id:?} is not a valid UUID")));
    }
    if muster_core::acl::is_reserved_id(id) {
        return Err(invalid_token(&format!("{field} - {id:?} is a reserved ID")));
    }
    Ok(())
}

fn invalid_token(reason: &str) -> HttpError {
    HttpError::internal(format!("Invalid Token: {reason}"))
}

fn not_found(reason: &str) -> HttpError {
    HttpError { status: StatusCode::NOT_FOUND, reason: reason.to_owned() }
}

/// The body as an object; Consul's `<What> decoding failed: …` (400) otherwise.
pub(super) fn decode(body: &[u8], what: &str) -> Result<Object, HttpError> {
    Object::parse(body).map_err(|refusal| decoding_failed(what, refusal.reason))
}

pub(super) fn decoding_failed(what: &str, reason: impl std::fmt::Display) -> HttpError {
    let reason = reason.to_string();
    let reason = reason.strip_prefix("Request decode failed: ").unwrap_or(&reason).to_owned();
    HttpError::bad_request(format!("{what} decoding failed: {reason}"))
}

/// A list of objects (empty when absent).
fn objects(object: &Object, name: &str) -> Result<Vec<Object>, HttpError> {
    match object.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items
            .iter()
            .map(|item| Object::from_value(item, name))
            .collect::<Result<_, body::Refusal>>()?),
        Some(_) => Err(decoding_failed("Token", format!("{name}: expected a list"))),
    }
}
