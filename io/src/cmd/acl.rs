//! `muster acl bootstrap`, `acl token create|read|list|update|clone|delete` and `acl policy
//! create|read|list|delete`, with Consul's flags, messages and output (consul
//! `command/acl/token/formatter.go`, `command/acl/policy/formatter.go`: `-format pretty` is
//! the default, `-format json` prints the API's object indented, `-meta` adds the hash and
//! indexes).

use std::fmt::Write as _;

use base64::Engine;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{data_argument, CliError, Client, HttpArgs, Outcome};

/// The anonymous token's AccessorID, which `-accessor-id anonymous` names.
const ANONYMOUS_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";

/// How long a whole UUID is; a shorter ID is a prefix to look up.
const UUID_CHARS: usize = 36;

/// `muster acl <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Creates the first management token, once.
    Bootstrap(BootstrapArgs),
    /// Creates, reads, lists, updates, clones and deletes tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Creates, reads, lists and deletes policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Sets one of the agent's own tokens (default, agent, agent_recovery, dns, replication,
    /// config_file_service_registration) while it runs.
    SetAgentToken(SetAgentTokenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SetAgentTokenArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// TYPE then TOKEN.
    args: Vec<String>,
}

/// `muster acl token <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Creates a token.
    Create(TokenCreateArgs),
    /// Prints one token.
    Read(TokenReadArgs),
    /// Lists every token.
    List(ListArgs),
    /// Changes a token's description, policies and identities.
    Update(TokenUpdateArgs),
    /// Creates a token with the same policies and identities as another.
    Clone(TokenCloneArgs),
    /// Deletes a token.
    Delete(TokenIdArgs),
}

/// `muster acl policy <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Creates a policy.
    Create(PolicyCreateArgs),
    /// Prints one policy.
    Read(PolicyIdArgs),
    /// Lists every policy.
    List(ListArgs),
    /// Deletes a policy.
    Delete(PolicyIdArgs),
}

/// The output flags every command that prints an ACL object takes.
#[derive(Debug, Args)]
pub(crate) struct Output {
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// Also prints the hash and the create and modify indexes.
    #[arg(long)]
    meta: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BootstrapArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// A file holding the SecretID to give the token.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenCreateArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    /// The token's AccessorID (a UUID; generated when not given).
    #[arg(long, default_value = "")]
    accessor: String,
    /// The token's SecretID (a UUID; generated when not given).
    #[arg(long, default_value = "")]
    secret: String,
    /// What the token is for.
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    links: Links,
    /// Keeps the token in this datacenter.
    #[arg(long)]
    local: bool,
    /// How long the token is valid (Go's duration syntax).
    #[arg(long = "expires-ttl", default_value = "")]
    expires_ttl: String,
}

/// The policies and identities a token links to.
#[derive(Debug, Args)]
pub(crate) struct Links {
    /// The ID (or a unique ID prefix) of a policy. Repeatable.
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// The name of a policy. Repeatable.
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
    /// A service identity, `SERVICE` or `SERVICE:DC1,DC2`. Repeatable.
    #[arg(long = "service-identity")]
    service_identities: Vec<String>,
    /// A node identity, `NODE:DATACENTER`. Repeatable.
    #[arg(long = "node-identity")]
    node_identities: Vec<String>,
    /// The ID of a role (muster has no roles yet). Repeatable.
    #[arg(long = "role-id")]
    role_ids: Vec<String>,
    /// The name of a role (muster has no roles yet). Repeatable.
    #[arg(long = "role-name")]
    role_names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenReadArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    id: TokenId,
    /// Reads the token this command sends.
    #[arg(long = "self")]
    this: bool,
    /// Also prints the policies' rules (muster does not expand tokens yet).
    #[arg(long)]
    expanded: bool,
}

/// Which token: `-accessor-id`, or the deprecated `-id`.
#[derive(Debug, Args)]
pub(crate) struct TokenId {
    /// The AccessorID of the token, or a unique prefix of it.
    #[arg(long = "accessor-id", default_value = "")]
    accessor_id: String,
    /// Deprecated: -accessor-id.
    #[arg(long = "id", default_value = "")]
    id: String,
}

impl TokenId {
    fn given(&self) -> Option<&str> {
        [self.accessor_id.as_str(), self.id.as_str()].into_iter().find(|id| !id.is_empty())
    }
}

#[derive(Debug, Args)]
pub(crate) struct TokenIdArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    id: TokenId,
}

#[derive(Debug, Args)]
pub(crate) struct TokenUpdateArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    id: TokenId,
    /// The new description (the old one stays when not given).
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    links: Links,
    /// The ID of a policy to add to the token's. Repeatable.
    #[arg(long = "append-policy-id")]
    append_policy_ids: Vec<String>,
    /// The name of a policy to add to the token's. Repeatable.
    #[arg(long = "append-policy-name")]
    append_policy_names: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TokenCloneArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    id: TokenId,
    /// The clone's description (the original's when not given).
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyCreateArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    /// The policy's name.
    #[arg(long, default_value = "")]
    name: String,
    /// What the policy is for.
    #[arg(long, default_value = "")]
    description: String,
    /// The rules, HCL or JSON: the text, `@file` or `-` for stdin.
    #[arg(long, default_value = "")]
    rules: String,
    /// A datacenter the policy applies in (all when none). Repeatable.
    #[arg(long = "valid-datacenter")]
    datacenters: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyIdArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    output: Output,
    /// The policy's ID, or a unique prefix of it.
    #[arg(long, default_value = "")]
    id: String,
    /// The policy's name.
    #[arg(long, default_value = "")]
    name: String,
}

pub(crate) fn run(command: AclCommand) -> Outcome {
    match command {
        AclCommand::Bootstrap(args) => bootstrap(&args),
        AclCommand::Token(TokenCommand::Create(args)) => token_create(&args),
        AclCommand::Token(TokenCommand::Read(args)) => token_read(&args),
        AclCommand::Token(TokenCommand::List(args)) => token_list(&args),
        AclCommand::Token(TokenCommand::Update(args)) => token_update(&args),
        AclCommand::Token(TokenCommand::Clone(args)) => token_clone(&args),
        AclCommand::Token(TokenCommand::Delete(args)) => token_delete(&args),
        AclCommand::Policy(PolicyCommand::Create(args)) => policy_create(&args),
        AclCommand::Policy(PolicyCommand::Read(args)) => policy_read(&args),
        AclCommand::Policy(PolicyCommand::List(args)) => policy_list(&args),
        AclCommand::Policy(PolicyCommand::Delete(args)) => policy_delete(&args),
        AclCommand::SetAgentToken(args) => set_agent_token(&args),
    }
}

// --- what the API answers ---------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Link {
    #[serde(rename = "ID")]
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceIdentity {
    service_name: String,
    #[serde(default)]
    datacenters: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeIdentity {
    node_name: String,
    datacenter: String,
}

/// A token as the API answers it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Token {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
    description: String,
    #[serde(default)]
    policies: Vec<Link>,
    #[serde(default)]
    service_identities: Vec<ServiceIdentity>,
    #[serde(default)]
    node_identities: Vec<NodeIdentity>,
    local: bool,
    create_time: String,
    #[serde(default)]
    expiration_time: Option<String>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

/// A policy as the API answers it (`Rules` absent from lists).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Policy {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    #[serde(default)]
    rules: String,
    #[serde(default)]
    datacenters: Vec<String>,
    hash: String,
    create_index: u64,
    modify_index: u64,
}

// --- output -----------------------------------------------------------------------------------

/// An RFC 3339 time as Go's `time.Time` prints with `%v` (`2020-05-22 18:52:31 +0000 UTC`).
fn go_time(rfc3339: &str) -> String {
    let Ok(at) = humantime::parse_rfc3339_weak(rfc3339) else { return rfc3339.to_owned() };
    let text = humantime::format_rfc3339_nanos(at).to_string();
    let text = text.trim_end_matches('Z');
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = fraction.trim_end_matches('0');
    let dot = if fraction.is_empty() { "" } else { "." };
    format!("{}{dot}{fraction} +0000 UTC", seconds.replace('T', " "))
}

/// The API's base64 hash as Go's `%x` prints the bytes.
fn hex_hash(hash: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(hash).unwrap_or_default();
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn pretty_token(token: &Token, meta: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "AccessorID:       {}", token.accessor_id);
    let _ = writeln!(out, "SecretID:         {}", token.secret_id);
    let _ = writeln!(out, "Description:      {}", token.description);
    let _ = writeln!(out, "Local:            {}", token.local);
    let _ = writeln!(out, "Create Time:      {}", go_time(&token.create_time));
    if let Some(expires) = &token.expiration_time {
        let _ = writeln!(out, "Expiration Time:  {}", go_time(expires));
    }
    if meta {
        let _ = writeln!(out, "Hash:             {}", hex_hash(&token.hash));
        let _ = writeln!(out, "Create Index:     {}", token.create_index);
        let _ = writeln!(out, "Modify Index:     {}", token.modify_index);
    }
    if !token.policies.is_empty() {
        out.push_str("Policies:\n");
        for policy in &token.policies {
            let _ = writeln!(out, "   {} - {}", policy.id, policy.name);
        }
    }
    if !token.service_identities.is_empty() {
        out.push_str("Service Identities:\n");
        for identity in &token.service_identities {
            let datacenters = if identity.datacenters.is_empty() {
                "all".to_owned()
            } else {
                identity.datacenters.join(", ")
            };
            let _ = writeln!(out, "   {} (Datacenters: {datacenters})", identity.service_name);
        }
    }
    if !token.node_identities.is_empty() {
        out.push_str("Node Identities:\n");
        for identity in &token.node_identities {
            let _ = writeln!(out, "   {} (Datacenter: {})", identity.node_name, identity.datacenter);
        }
    }
    out
}

fn pretty_policy(policy: &Policy, meta: bool) -> String {
    let mut out = policy_lines(policy, meta, "", true);
    out.push_str("Rules:\n");
    out.push_str(&policy.rules);
    out
}

fn pretty_policy_entry(policy: &Policy, meta: bool) -> String {
    format!("{}:\n{}", policy.name, policy_lines(policy, meta, "   ", false))
}

/// A policy's fields as Consul's formatter prints them, each line after `indent`; the list
/// entry names the policy in its heading rather than in a `Name:` line.
fn policy_lines(policy: &Policy, meta: bool, indent: &str, with_name: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{indent}ID:           {}", policy.id);
    if with_name {
        let _ = writeln!(out, "{indent}Name:         {}", policy.name);
    }
    let _ = writeln!(out, "{indent}Description:  {}", policy.description);
    let _ = writeln!(out, "{indent}Datacenters:  {}", policy.datacenters.join(", "));
    if meta {
        let _ = writeln!(out, "{indent}Hash:         {}", hex_hash(&policy.hash));
        let _ = writeln!(out, "{indent}Create Index: {}", policy.create_index);
        let _ = writeln!(out, "{indent}Modify Index: {}", policy.modify_index);
    }
    out
}

/// Checks `-format` before anything is sent, as Consul's commands build their formatter.
fn check_format(format: &str) -> Result<(), CliError> {
    match format {
        "pretty" | "json" => Ok(()),
        other => Err(CliError::usage(format!("Unknown format: {other}"))),
    }
}

/// Prints an answer as `-format` asks: Consul's pretty text, or the API's JSON indented by four
/// spaces; then the empty line Consul's `UI.Info` adds.
fn print_as<T>(format: &str, raw: &Value, typed: &T, pretty: impl Fn(&T) -> String) {
    let text = match format {
        "json" => {
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(raw, &mut serializer).expect("JSON values serialize");
            String::from_utf8(out).expect("JSON is UTF-8")
        }
        _ => pretty(typed),
    };
    println!("{text}");
}

/// An API answer printed as `-format` asks; `doing` names the failure in Consul's words.
fn print_reply<T: serde::de::DeserializeOwned>(
    reply: Result<super::Reply, super::ClientError>,
    doing: &str,
    format: &str,
    pretty: impl Fn(&T) -> String,
) -> Outcome {
    let raw: Value = reply.and_then(|reply| reply.json()).map_err(CliError::client(doing))?;
    let (raw, typed) = decoded::<T>(raw, doing)?;
    print_as(format, &raw, &typed, pretty);
    Ok(0)
}

/// A reply decoded twice: as the typed object, and kept raw for `-format json`.
fn decoded<T: serde::de::DeserializeOwned>(raw: Value, doing: &str) -> Result<(Value, T), CliError> {
    let typed = serde_json::from_value(raw.clone())
        .map_err(|source| CliError::Json { doing: doing.to_owned(), source })?;
    Ok((raw, typed))
}

// --- commands ---------------------------------------------------------------------------------

fn bootstrap(args: &BootstrapArgs) -> Outcome {
    check_format(&args.format)?;
    super::at_most(&args.args, 1)?;
    let body = match args.args.first() {
        Some(path) => {
            let secret = std::fs::read_to_string(path).map_err(|error| {
                CliError::refused(format!("Error reading bootstrap secret file: {error}"))
            })?;
            json!({"BootstrapSecret": secret.trim()}).to_string()
        }
        None => String::new(),
    };
    let client = Client::new(&args.http)?;
    let doing = "Failed ACL bootstrapping";
    print_reply::<Token>(
        client.put("/v1/acl/bootstrap", &[], body.as_bytes()),
        doing,
        &args.format,
        |token| pretty_token(token, false),
    )
}

/// Consul's `GetTokenIDFromPartial`: `anonymous`, a whole UUID, or a prefix that one token's
/// AccessorID starts with.
fn token_id(client: &Client, given: &str) -> Result<String, CliError> {
    if given == "anonymous" {
        return Ok(ANONYMOUS_ACCESSOR_ID.to_owned());
    }
    if given.len() >= UUID_CHARS {
        return Ok(given.to_owned());
    }
    let doing = "Error determining token ID";
    let tokens: Vec<Value> =
        client.get("/v1/acl/tokens", &[]).and_then(|reply| reply.json()).map_err(CliError::client(doing))?;
    let ids = tokens.iter().filter_map(|token| token["AccessorID"].as_str());
    unique_prefix(ids, given).map_err(|reason| CliError::refused(format!("{doing}: {reason} {given}")))
}

/// The one ID among `ids` that starts with `prefix`; Consul's words when none or several do.
fn unique_prefix<'a>(ids: impl Iterator<Item = &'a str>, prefix: &str) -> Result<String, &'static str> {
    let mut found = ids.filter(|id| id.starts_with(prefix));
    match (found.next(), found.next()) {
        (Some(id), None) => Ok(id.to_owned()),
        (None, _) => Err("No such token ID with prefix:"),
        (Some(_), Some(_)) => Err("Multiple token IDs found with prefix:"),
    }
}

/// The same for policies (`GetPolicyIDFromPartial`; `global-management` is the built-in's).
fn policy_id(client: &Client, given: &str) -> Result<String, CliError> {
    if given == "global-management" {
        return Ok("00000000-0000-0000-0000-000000000001".to_owned());
    }
    if given.len() >= UUID_CHARS {
        return Ok(given.to_owned());
    }
    let doing = format!("Error resolving policy ID {given}");
    let policies: Vec<Value> = client
        .get("/v1/acl/policies", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client(&doing))?;
    let ids = policies.iter().filter_map(|policy| policy["ID"].as_str());
    unique_prefix(ids, given)
        .map_err(|reason| CliError::refused(format!("{doing}: {}", reason.replace("token", "policy"))))
}

/// A token's links as the API takes them: policies, service identities, node identities.
struct LinkFields {
    policies: Vec<Value>,
    services: Vec<Value>,
    nodes: Vec<Value>,
}

/// The JSON links a token's flags name: policies by ID (prefixes resolved) or by name, and the
/// identities; roles are refused, muster having none yet.
fn link_fields(client: &Client, links: &Links) -> Result<LinkFields, CliError> {
    if !links.role_ids.is_empty() || !links.role_names.is_empty() {
        return Err(CliError::usage("muster has no ACL roles yet: -role-id and -role-name are not served"));
    }
    let mut policies: Vec<Value> = links.policy_names.iter().map(|name| json!({"Name": name})).collect();
    for id in &links.policy_ids {
        policies.push(json!({"ID": policy_id(client, id)?}));
    }
    let services =
        links.service_identities.iter().map(|text| service_identity(text)).collect::<Result<_, _>>()?;
    let nodes = links.node_identities.iter().map(|text| node_identity(text)).collect::<Result<_, _>>()?;
    Ok(LinkFields { policies, services, nodes })
}

/// `SERVICE` or `SERVICE:DC1,DC2` (Consul's `ExtractServiceIdentities`).
fn service_identity(text: &str) -> Result<Value, CliError> {
    let (name, datacenters) = text.split_once(':').unwrap_or((text, ""));
    if name.is_empty() {
        return Err(CliError::usage("Service identity must not be empty"));
    }
    let datacenters: Vec<&str> = datacenters.split(',').filter(|dc| !dc.is_empty()).collect();
    Ok(json!({"ServiceName": name, "Datacenters": datacenters}))
}

/// `NODE:DATACENTER` (Consul's `ExtractNodeIdentities`).
fn node_identity(text: &str) -> Result<Value, CliError> {
    match text.split_once(':') {
        Some((node, datacenter)) if !node.is_empty() && !datacenter.is_empty() => {
            Ok(json!({"NodeName": node, "Datacenter": datacenter}))
        }
        _ => Err(CliError::usage(format!(
            "Node identity {text:?} is malformed. Must be in the format of NODENAME:DATACENTER"
        ))),
    }
}

fn token_create(args: &TokenCreateArgs) -> Outcome {
    check_format(&args.output.format)?;
    let links = &args.links;
    let none = [&links.policy_ids, &links.policy_names, &links.role_ids, &links.role_names]
        .iter()
        .chain([&links.service_identities, &links.node_identities].iter())
        .all(|list| list.is_empty());
    if none {
        return Err(CliError::usage(
            "Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, \
             -service-identity, or -node-identity at least once",
        ));
    }
    let client = Client::new(&args.http)?;
    let LinkFields { policies, services, nodes } = link_fields(&client, links)?;
    let mut body = json!({
        "Description": args.description, "Local": args.local,
        "Policies": policies, "ServiceIdentities": services, "NodeIdentities": nodes,
    });
    for (field, value) in [("AccessorID", &args.accessor), ("SecretID", &args.secret)] {
        if !value.is_empty() {
            body[field] = json!(value);
        }
    }
    if !args.expires_ttl.is_empty() {
        let ttl = muster_core::duration::parse(&args.expires_ttl).map_err(|source| CliError::Duration {
            flag: "expires-ttl",
            text: args.expires_ttl.clone(),
            source,
        })?;
        body["ExpirationTTL"] = json!(muster_core::duration::format(ttl));
    }
    let doing = "Failed to create new token";
    print_reply::<Token>(
        client.put("/v1/acl/token", &[], body.to_string().as_bytes()),
        doing,
        &args.output.format,
        |token| pretty_token(token, args.output.meta),
    )
}

fn token_read(args: &TokenReadArgs) -> Outcome {
    check_format(&args.output.format)?;
    if args.expanded {
        return Err(CliError::usage("muster does not expand tokens yet: -expanded is not served"));
    }
    let client = Client::new(&args.http)?;
    let (path, doing) = if args.this {
        ("/v1/acl/token/self".to_owned(), "Error reading token".to_owned())
    } else {
        let Some(given) = args.id.given() else {
            return Err(CliError::usage("Must specify the -id parameter"));
        };
        let id = token_id(&client, given)?;
        (format!("/v1/acl/token/{id}"), format!("Error reading token {id:?}"))
    };
    print_reply::<Token>(client.get(&path, &[]), &doing, &args.output.format, |token| {
        pretty_token(token, args.output.meta)
    })
}

fn token_list(args: &ListArgs) -> Outcome {
    check_format(&args.output.format)?;
    let client = Client::new(&args.http)?;
    let doing = "Failed to retrieve the token list";
    print_reply::<Vec<Token>>(client.get("/v1/acl/tokens", &[]), doing, &args.output.format, |tokens| {
        let entries: Vec<String> = tokens.iter().map(|token| pretty_token(token, args.output.meta)).collect();
        entries.join("\n")
    })
}

fn token_update(args: &TokenUpdateArgs) -> Outcome {
    check_format(&args.output.format)?;
    let Some(given) = args.id.given() else {
        return Err(CliError::usage("Cannot update a token without specifying the -accessor-id parameter"));
    };
    let links = &args.links;
    let replacing = !links.policy_ids.is_empty() || !links.policy_names.is_empty();
    if replacing && (!args.append_policy_ids.is_empty() || !args.append_policy_names.is_empty()) {
        return Err(CliError::usage(
            "Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite \
             existing policies, use -policy-id or -policy-name. To append to existing policies, use \
             -append-policy-id or -append-policy-name.",
        ));
    }
    let client = Client::new(&args.http)?;
    let id = token_id(&client, given)?;
    let mut current: Value = client
        .get(&format!("/v1/acl/token/{id}"), &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error when retrieving current token"))?;
    if !args.description.is_empty() {
        current["Description"] = json!(args.description);
    }
    let LinkFields { mut policies, services, nodes } = link_fields(&client, links)?;
    if !replacing {
        let kept = current["Policies"].as_array().cloned().unwrap_or_default();
        let mut appended: Vec<Value> =
            args.append_policy_names.iter().map(|name| json!({"Name": name})).collect();
        for id in &args.append_policy_ids {
            appended.push(json!({"ID": policy_id(&client, id)?}));
        }
        policies = kept.into_iter().chain(appended).collect();
    }
    current["Policies"] = json!(policies);
    current["ServiceIdentities"] = json!(services);
    current["NodeIdentities"] = json!(nodes);
    let doing = format!("Failed to update token {id}");
    print_reply::<Token>(
        client.put(&format!("/v1/acl/token/{id}"), &[], current.to_string().as_bytes()),
        &doing,
        &args.output.format,
        |token| pretty_token(token, args.output.meta),
    )
}

fn token_clone(args: &TokenCloneArgs) -> Outcome {
    check_format(&args.output.format)?;
    let Some(given) = args.id.given() else {
        return Err(CliError::usage("Cannot clone a token without specifying the -id parameter"));
    };
    let client = Client::new(&args.http)?;
    let id = token_id(&client, given)?;
    let body = json!({"Description": args.description}).to_string();
    let doing = "Failed to clone token";
    print_reply::<Token>(
        client.put(&format!("/v1/acl/token/{id}/clone"), &[], body.as_bytes()),
        doing,
        &args.output.format,
        |token| pretty_token(token, args.output.meta),
    )
}

fn token_delete(args: &TokenIdArgs) -> Outcome {
    let Some(given) = args.id.given() else {
        return Err(CliError::usage("Must specify the -accessor-id parameter"));
    };
    let client = Client::new(&args.http)?;
    let id = token_id(&client, given)?;
    client
        .delete(&format!("/v1/acl/token/{id}"), &[])
        .and_then(|reply| reply.ok())
        .map_err(CliError::client(format!("Error deleting token {id:?}")))?;
    println!("Token {id:?} deleted successfully");
    Ok(0)
}

fn policy_create(args: &PolicyCreateArgs) -> Outcome {
    check_format(&args.output.format)?;
    if args.name.is_empty() {
        return Err(CliError::usage("Missing required '-name' flag"));
    }
    let rules = if args.rules.is_empty() {
        String::new()
    } else {
        let bytes = data_argument(&args.rules)
            .map_err(|source| CliError::Data { prefix: "Error loading rules: ", source })?;
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let client = Client::new(&args.http)?;
    let body = json!({
        "Name": args.name, "Description": args.description, "Rules": rules, "Datacenters": args.datacenters,
    });
    let doing = "Failed to create new policy";
    print_reply::<Policy>(
        client.put("/v1/acl/policy", &[], body.to_string().as_bytes()),
        doing,
        &args.output.format,
        |policy| pretty_policy(policy, args.output.meta),
    )
}

/// The policy `-id` (or a prefix) or `-name` names, and its path.
fn policy_path(client: &Client, args: &PolicyIdArgs) -> Result<(String, String), CliError> {
    match (args.id.is_empty(), args.name.is_empty()) {
        (false, _) => {
            let id = policy_id(client, &args.id)?;
            Ok((format!("/v1/acl/policy/{id}"), id))
        }
        (true, false) => Ok((format!("/v1/acl/policy/name/{}", args.name), args.name.clone())),
        (true, true) => Err(CliError::usage("Must specify either the -id or -name parameters")),
    }
}

fn policy_read(args: &PolicyIdArgs) -> Outcome {
    check_format(&args.output.format)?;
    let client = Client::new(&args.http)?;
    let (path, named) = policy_path(&client, args)?;
    let doing = format!("Error reading policy {named:?}");
    print_reply::<Policy>(client.get(&path, &[]), &doing, &args.output.format, |policy| {
        pretty_policy(policy, args.output.meta)
    })
}

fn policy_list(args: &ListArgs) -> Outcome {
    check_format(&args.output.format)?;
    let client = Client::new(&args.http)?;
    let doing = "Failed to retrieve the policy list";
    print_reply::<Vec<Policy>>(client.get("/v1/acl/policies", &[]), doing, &args.output.format, |policies| {
        policies.iter().map(|policy| pretty_policy_entry(policy, args.output.meta)).collect()
    })
}

fn policy_delete(args: &PolicyIdArgs) -> Outcome {
    let client = Client::new(&args.http)?;
    let (path, named) = policy_path(&client, args)?;
    let id = if args.id.is_empty() {
        let policy: Value = client
            .get(&path, &[])
            .and_then(|reply| reply.json())
            .map_err(CliError::client(format!("Error deleting policy {named:?}")))?;
        policy["ID"].as_str().unwrap_or_default().to_owned()
    } else {
        named
    };
    client
        .delete(&format!("/v1/acl/policy/{id}"), &[])
        .and_then(|reply| reply.ok())
        .map_err(CliError::client(format!("Error deleting policy {id:?}")))?;
    println!("Policy {id:?} deleted successfully");
    Ok(0)
}

/// `acl set-agent-token TYPE TOKEN` (consul `command/acl/agenttokens`).
fn set_agent_token(args: &SetAgentTokenArgs) -> Outcome {
    let [kind, token] = args.args.as_slice() else {
        return Err(CliError::usage(match args.args.len() {
            0 => "Missing TYPE and TOKEN arguments",
            1 => "Missing TOKEN argument",
            _ => "Too many arguments, expected 2",
        }));
    };
    let client = Client::new(&args.http)?;
    let body = json!({"Token": token}).to_string();
    client
        .put(&format!("/v1/agent/token/{kind}"), &[], body.as_bytes())
        .and_then(|reply| reply.ok())
        .map_err(CliError::client(format!("Failed to set ACL token {kind:?}")))?;
    println!("ACL token {kind:?} set successfully");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_gos_percent_v() {
        assert_eq!(go_time("2020-05-22T18:52:31Z"), "2020-05-22 18:52:31 +0000 UTC");
        assert_eq!(go_time("2020-05-22T18:52:31.120Z"), "2020-05-22 18:52:31.12 +0000 UTC");
    }

    #[test]
    fn a_prefix_names_one_id_or_says_why_not() {
        let ids = ["abc-1", "abd-2", "xyz"];
        assert_eq!(unique_prefix(ids.into_iter(), "abc"), Ok("abc-1".to_owned()));
        assert_eq!(unique_prefix(ids.into_iter(), "ab"), Err("Multiple token IDs found with prefix:"));
        assert_eq!(unique_prefix(ids.into_iter(), "q"), Err("No such token ID with prefix:"));
    }

    #[test]
    fn identities_are_read_in_consuls_forms() {
        assert_eq!(service_identity("web").unwrap(), json!({"ServiceName": "web", "Datacenters": []}));
        assert_eq!(
            service_identity("db:east,west").unwrap(),
            json!({"ServiceName": "db", "Datacenters": ["east", "west"]})
        );
        assert_eq!(node_identity("n1:dc1").unwrap(), json!({"NodeName": "n1", "Datacenter": "dc1"}));
        assert!(node_identity("n1").is_err());
    }
}
