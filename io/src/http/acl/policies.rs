//! `/v1/acl/policy*` and `/v1/acl/policies`, as consul `agent/acl_endpoint.go` answers them.
//! A policy's rules are parsed here, before proposing (the state machine never parses), so a
//! policy Consul would refuse never reaches the log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use muster_core::acl::Permission;
use muster_core::fsm::{AclPolicyDelete, AclPolicySet, AclState, Command, Policy, Table, WatchTarget};
use serde::Serialize;
use sha2::Digest;

use super::tokens::decode;
use super::{write, AclRequest};
use crate::http::{json, Api, HttpError};

/// Consul's `ACLPolicy`, field for field in its order; the list stub leaves out `Rules`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rules: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    datacenters: &'a [String],
    hash: String,
    create_index: u64,
    modify_index: u64,
}

impl<'a> PolicyJson<'a> {
    fn new(policy: &'a Policy, with_rules: bool) -> PolicyJson<'a> {
        PolicyJson {
            id: &policy.id,
            name: &policy.name,
            description: &policy.description,
            rules: with_rules.then_some(policy.rules_text.as_str()),
            datacenters: &policy.datacenters,
            hash: policy_hash(policy),
            create_index: policy.create_index,
            modify_index: policy.modify_index,
        }
    }
}

/// The policy's `Hash`, over what it grants (SHA-256; Consul's is BLAKE2b-256, and clients
/// only compare it).
fn policy_hash(policy: &Policy) -> String {
    let mut digest = sha2::Sha256::new();
    for part in [&policy.name, &policy.description, &policy.rules_text] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.update(policy.datacenters.join(",").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.finalize())
}

/// `GET /v1/acl/policies`: every policy, without its rules.
pub(super) async fn list(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclRead)?;
    let options = api.prepare_read(&request.query).await?;
    let (index, acl) = read_state(api, options).await?;
    let shown: Vec<PolicyJson<'_>> =
        acl.policies().1.into_iter().map(|p| PolicyJson::new(p, false)).collect();
    Ok((api.meta_headers(index), json(&request.query, &shown)).into_response())
}

/// `GET /v1/acl/policy/<id>`.
pub(super) async fn read(api: &Api, request: &AclRequest, id: &str) -> Result<Response, HttpError> {
    read_one(api, request, |acl| acl.policy(id).cloned()).await
}

/// `GET /v1/acl/policy/name/<name>`.
pub(super) async fn read_by_name(api: &Api, request: &AclRequest, name: &str) -> Result<Response, HttpError> {
    read_one(api, request, |acl| acl.policy_by_name(name).cloned()).await
}

/// One policy; a missing one is Consul's `ACL not found`, a 403 (its endpoint returns
/// `acl.ErrNotFound` there).
async fn read_one(
    api: &Api,
    request: &AclRequest,
    find: impl Fn(&AclState) -> Option<Policy>,
) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclRead)?;
    let options = api.prepare_read(&request.query).await?;
    let (index, acl) = read_state(api, options).await?;
    let policy = find(&acl)
        .ok_or_else(|| HttpError { status: StatusCode::FORBIDDEN, reason: "ACL not found".into() })?;
    Ok((api.meta_headers(index), json(&request.query, &PolicyJson::new(&policy, true))).into_response())
}

async fn read_state(api: &Api, options: crate::http::ReadOptions) -> Result<(u64, AclState), HttpError> {
    let targets = || vec![WatchTarget::Table(Table::AclPolicies)];
    api.read(options, targets, |fsm| (fsm.acl().policies_index(), fsm.acl().clone())).await
}

/// `PUT /v1/acl/policy`: a new policy; the server picks its ID.
pub(super) async fn create(api: &Api, request: &AclRequest) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclWrite)?;
    let mut policy = policy_from(request)?;
    if !policy.id.is_empty() {
        return Err(HttpError::bad_request("Cannot specify the ID when creating a new policy"));
    }
    policy.id = uuid::Uuid::new_v4().to_string();
    written(api, request, policy, true).await
}

/// `PUT /v1/acl/policy/<id>`: the policy replaced by the body.
pub(super) async fn update(api: &Api, request: &AclRequest, id: &str) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclWrite)?;
    let mut policy = policy_from(request)?;
    if !policy.id.is_empty() && policy.id != id {
        return Err(HttpError::bad_request("Policy ID in URL and payload do not match"));
    }
    policy.id = id.to_owned();
    written(api, request, policy, false).await
}

/// `DELETE /v1/acl/policy/<id>`: `true`.
pub(super) async fn delete(api: &Api, request: &AclRequest, id: &str) -> Result<Response, HttpError> {
    request.caller()?.check(Permission::AclWrite)?;
    write(api, &Command::AclPolicyDelete(AclPolicyDelete { id: id.to_owned() })).await?;
    Ok(json(&request.query, &true).into_response())
}

/// The policy in the body, its rules parsed (Consul's error text when they do not parse).
fn policy_from(request: &AclRequest) -> Result<Policy, HttpError> {
    let object = decode(&request.body, "Policy")?;
    let rules_text = object.string("Rules")?;
    let rules =
        crate::acl::rules::parse(&rules_text).map_err(|error| HttpError::internal(error.to_string()))?;
    Ok(Policy {
        id: object.string("ID")?,
        name: object.string("Name")?,
        description: object.string("Description")?,
        rules_text,
        rules,
        datacenters: object.strings("Datacenters")?,
        ..Policy::default()
    })
}

/// Proposes `policy` and answers it as stored.
async fn written(
    api: &Api,
    request: &AclRequest,
    policy: Policy,
    create: bool,
) -> Result<Response, HttpError> {
    let id = policy.id.clone();
    write(api, &Command::AclPolicySet(Box::new(AclPolicySet { policy, create }))).await?;
    let stored = api.consensus()?.store.read(|fsm| fsm.acl().policy(&id).cloned());
    let stored = stored.ok_or_else(|| HttpError::internal("the policy is missing"))?;
    Ok(json(&request.query, &PolicyJson::new(&stored, true)).into_response())
}
