//! The commands about the agent and its gossip pool: `members`, `join`, `leave`,
//! `force-leave`, `reload`, `maint` and `event` (`../shared/reference/consul-behaviour.md`
//! §4.2).

use std::collections::BTreeMap;

use clap::Args;
use serde::Deserialize;

use super::{at_most, columnize, CliError, Client, ClientError, HttpArgs, Outcome};

#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    partition: super::PartitionArgs,
    /// Shows every tag instead of the standard columns.
    #[arg(long)]
    detailed: bool,
    /// Lists the WAN pool (servers of every datacenter) instead of the LAN.
    #[arg(long)]
    wan: bool,
    /// Shows only members whose status matches this regular expression.
    #[arg(long, default_value = ".*")]
    status: String,
    /// Consul Enterprise's network segment to list; `_all` (the default) lists every one. A
    /// Consul CE agent, as muster's, has none and refuses any other name.
    #[arg(long, default_value = "_all")]
    segment: String,
    /// A filter expression the agent applies to the members (`?filter`).
    #[arg(long, default_value = "")]
    filter: String,
}

#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    partition: super::PartitionArgs,
    /// Joins the WAN pool (servers only).
    #[arg(long)]
    wan: bool,
    /// Addresses (`ip`, `ip:port`) of agents to join.
    addresses: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LeaveArgs {
    #[command(flatten)]
    http: HttpArgs,
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ForceLeaveArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    partition: super::PartitionArgs,
    /// Removes the node from the member list at once instead of marking it left.
    #[arg(long)]
    prune: bool,
    /// Forces the node out of the WAN pool.
    #[arg(long)]
    wan: bool,
    /// The node's name.
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    http: HttpArgs,
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct MaintArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Puts the node (or -service) into maintenance mode.
    #[arg(long)]
    enable: bool,
    /// Takes the node (or -service) out of maintenance mode.
    #[arg(long)]
    disable: bool,
    /// Why, shown in the maintenance check's Notes.
    #[arg(long, default_value = "")]
    reason: String,
    /// A service ID on this agent, instead of the node.
    #[arg(long = "service", default_value = "")]
    service: String,
}

#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The event's name.
    #[arg(long, default_value = "")]
    name: String,
    #[command(flatten)]
    filters: super::EventFilters,
    /// The payload (optional).
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    http: HttpArgs,
    args: Vec<String>,
}

/// A member as `/v1/agent/members` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Member {
    name: String,
    addr: String,
    port: u16,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    status: u8,
}

/// Serf's member status names, by the number the API shows.
fn status_name(status: u8) -> &'static str {
    match status {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

/// Go's `net.JoinHostPort`: IPv6 addresses in brackets.
fn host_port(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

pub(crate) fn members(args: &MembersArgs) -> Outcome {
    let status =
        regex::Regex::new(&args.status).map_err(|source| CliError::Regex { what: "status", source })?;
    let client = Client::new(&args.http.in_partition(&args.partition))?;
    // Consul's `MembersOpts`: the segment always, the filter when given.
    let mut query = vec![("segment", args.segment.as_str())];
    if args.wan {
        query.push(("wan", "1"));
    }
    if !args.filter.is_empty() {
        query.push(("filter", args.filter.as_str()));
    }
    let members: Vec<Member> = client
        .get("/v1/agent/members", &query)
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error retrieving members"))?;
    let mut shown: Vec<Member> =
        members.into_iter().filter(|m| status.is_match(status_name(m.status))).collect();
    if shown.is_empty() {
        // Consul's exit code for "nothing matched", with nothing printed.
        return Ok(2);
    }
    // Consul fills in the partition and segment before it sorts and prints.
    for member in &mut shown {
        label_partition_and_segment(member, &args.segment);
    }
    // Consul's `ByMemberNamePartitionAndSegment`: servers first, then the default partition,
    // then by segment, partition and name.
    shown.sort_by(|a, b| {
        let tag = |m: &Member, name: &str| m.tags.get(name).cloned().unwrap_or_default();
        let key = |m: &Member| {
            let partition = tag(m, "ap");
            let default = partition.is_empty() || partition == "default";
            (tag(m, "role") != "consul", !default, tag(m, "segment"), partition, m.name.clone())
        };
        key(a).cmp(&key(b))
    });
    let rows = if args.detailed { detailed_rows(&shown) } else { standard_rows(&shown) };
    print!("{}", columnize(&rows));
    Ok(0)
}

/// The `ap` and `segment` tags as Consul's `members` sets them before printing: `default` for
/// no partition; in the default partition, `<all>` for a server when every segment was asked
/// for and `<default>` for a member of no segment; outside it, no segment.
fn label_partition_and_segment(member: &mut Member, segment_asked: &str) {
    let partition = member.tags.entry("ap".to_owned()).or_default();
    if partition.is_empty() {
        *partition = "default".to_owned();
    }
    let default_partition = partition == "default";
    let server = member.tags.get("role").is_some_and(|role| role == "consul");
    let segment = member.tags.entry("segment".to_owned()).or_default();
    if !default_partition {
        segment.clear();
    } else if segment_asked == "_all" && server {
        *segment = "<all>".to_owned();
    } else if segment.is_empty() {
        *segment = "<default>".to_owned();
    }
}

/// Consul's standard columns.
fn standard_rows(members: &[Member]) -> Vec<String> {
    let mut rows = vec![
        "Node\x1fAddress\x1fStatus\x1fType\x1fBuild\x1fProtocol\x1fDC\x1fPartition\x1fSegment".to_owned(),
    ];
    for m in members {
        let build = match m.tags.get("build") {
            None => "< 0.3",
            Some(build) => build.split(':').next().unwrap_or_default(),
        };
        let tag = |name: &str| m.tags.get(name).map_or("", String::as_str);
        let address = host_port(&m.addr, m.port);
        let status = status_name(m.status);
        let kind = match tag("role") {
            "consul" => "server",
            "node" => "client",
            // Consul prints nothing past the type of a member it cannot place.
            _ => {
                rows.push(format!("{}\x1f{address}\x1f{status}\x1funknown\x1f\x1f\x1f\x1f\x1f", m.name));
                continue;
            }
        };
        rows.push(format!(
            "{}\x1f{address}\x1f{status}\x1f{kind}\x1f{build}\x1f{}\x1f{}\x1f{}\x1f{}",
            m.name,
            tag("vsn"),
            tag("dc"),
            tag("ap"),
            tag("segment"),
        ));
    }
    rows
}

/// `-detailed`: every tag, as `k=v` pairs in key order.
fn detailed_rows(members: &[Member]) -> Vec<String> {
    let mut rows = vec!["Node\x1fAddress\x1fStatus\x1fTags".to_owned()];
    for m in members {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(format!(
            "{}\x1f{}\x1f{}\x1f{}",
            m.name,
            host_port(&m.addr, m.port),
            status_name(m.status),
            tags.join(",")
        ));
    }
    rows
}

/// `muster info`: the agent's `Stats`, sections and keys in order, as Consul prints them.
pub(crate) fn info(args: &InfoArgs) -> Outcome {
    at_most(&args.args, 0)?;
    #[derive(Deserialize)]
    struct AgentSelf {
        #[serde(rename = "Stats", default)]
        stats: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    }
    let client = Client::new(&args.http)?;
    let agent: AgentSelf = client
        .get("/v1/agent/self", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error querying agent"))?;
    print!("{}", info_text(&agent.stats));
    Ok(0)
}

fn info_text(stats: &BTreeMap<String, BTreeMap<String, serde_json::Value>>) -> String {
    let mut out = String::new();
    for (section, values) in stats {
        out.push_str(&format!("{section}:\n"));
        for (key, value) in values {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            out.push_str(&format!("\t{key} = {value}\n"));
        }
    }
    out
}

pub(crate) fn join(args: &JoinArgs) -> Outcome {
    if args.addresses.is_empty() {
        return Err(CliError::usage("At least one address to join must be specified."));
    }
    let client = Client::new(&args.http.in_partition(&args.partition))?;
    let query: &[(&str, &str)] = if args.wan { &[("wan", "1")] } else { &[] };
    let mut joined = 0;
    for address in &args.addresses {
        match client.put(&format!("/v1/agent/join/{address}"), query, b"").and_then(|reply| reply.ok()) {
            Ok(_) => joined += 1,
            Err(error) => eprintln!("Error joining address '{address}': {error}"),
        }
    }
    if joined == 0 {
        return Err(CliError::refused("Failed to join any nodes."));
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(0)
}

pub(crate) fn leave(args: &LeaveArgs) -> Outcome {
    if !args.args.is_empty() {
        return Err(CliError::usage("The leave command expects no arguments"));
    }
    let client = Client::new(&args.http)?;
    client
        .put("/v1/agent/leave", &[], b"")
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error leaving"))?;
    println!("Graceful leave complete");
    Ok(0)
}

pub(crate) fn force_leave(args: &ForceLeaveArgs) -> Outcome {
    let [node] = args.args.as_slice() else {
        return Err(CliError::usage("A single node name must be specified to force leave."));
    };
    let client = Client::new(&args.http.in_partition(&args.partition))?;
    let mut query = Vec::new();
    if args.prune {
        query.push(("prune", "1"));
    }
    if args.wan {
        query.push(("wan", "1"));
    }
    client
        .put(&format!("/v1/agent/force-leave/{node}"), &query, b"")
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error force leaving"))?;
    Ok(0)
}

pub(crate) fn reload(args: &ReloadArgs) -> Outcome {
    at_most(&args.args, 0)?;
    let client = Client::new(&args.http)?;
    client
        .put("/v1/agent/reload", &[], b"")
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error reloading"))?;
    println!("Configuration reload triggered");
    Ok(0)
}

/// A check as `/v1/agent/checks` lists it (what `maint` reads).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCheck {
    #[serde(rename = "CheckID")]
    check_id: String,
    #[serde(default)]
    notes: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
}

/// The node's name, from `/v1/agent/self`.
fn node_name(client: &Client) -> Result<String, ClientError> {
    #[derive(Deserialize)]
    struct SelfConfig {
        #[serde(rename = "NodeName")]
        node_name: String,
    }
    #[derive(Deserialize)]
    struct AgentSelf {
        #[serde(rename = "Config")]
        config: SelfConfig,
    }
    let agent: AgentSelf = client.get("/v1/agent/self", &[]).and_then(|reply| reply.json())?;
    Ok(agent.config.node_name)
}

pub(crate) fn maint(args: &MaintArgs) -> Outcome {
    if args.enable && args.disable {
        return Err(CliError::usage("Only one of -enable or -disable may be provided"));
    }
    if !args.enable && !args.reason.is_empty() {
        return Err(CliError::usage("Reason may only be provided with -enable"));
    }
    if !args.enable && !args.disable && !args.service.is_empty() {
        return Err(CliError::usage("Service requires either -enable or -disable"));
    }
    let client = Client::new(&args.http)?;
    let node = node_name(&client).map_err(CliError::client("Error querying Consul agent"))?;
    if !args.enable && !args.disable {
        let checks: BTreeMap<String, AgentCheck> = client
            .get("/v1/agent/checks", &[])
            .and_then(|reply| reply.json())
            .map_err(CliError::client("Error getting checks"))?;
        for check in checks.values() {
            if check.check_id == "_node_maintenance" {
                println!("Node:\n  Name:   {node}\n  Reason: {}\n", check.notes);
            } else if check.check_id.starts_with("_service_maintenance:") {
                println!("Service:\n  ID:     {}\n  Reason: {}\n", check.service_id, check.notes);
            }
        }
        return Ok(0);
    }
    let enable = if args.enable { "true" } else { "false" };
    let mut query = vec![("enable", enable)];
    if !args.reason.is_empty() {
        query.push(("reason", args.reason.as_str()));
    }
    let (path, what) = if args.service.is_empty() {
        ("/v1/agent/maintenance".to_owned(), "node")
    } else {
        (format!("/v1/agent/service/maintenance/{}", args.service), "service")
    };
    let verb = if args.enable { "enabling" } else { "disabling" };
    client
        .put(&path, &query, b"")
        .and_then(|reply| reply.ok())
        .map_err(CliError::client(format!("Error {verb} {what} maintenance")))?;
    let state = if args.enable { "enabled" } else { "disabled" };
    if args.service.is_empty() {
        println!("Node maintenance is now {state}");
    } else {
        println!("Service maintenance is now {state} for \"{}\"", args.service);
    }
    Ok(0)
}

pub(crate) fn event(args: &EventArgs) -> Outcome {
    if args.name.is_empty() {
        return Err(CliError::usage("Event name must be specified"));
    }
    args.filters.check()?;
    let payload = match args.args.as_slice() {
        [] => &[][..],
        [payload] => payload.as_bytes(),
        more => {
            return Err(CliError::Usage(format!(
                "Too many command line arguments (expected 0 or 1, got {})",
                more.len()
            )))
        }
    };
    let client = Client::new(&args.http)?;
    node_name(&client).map_err(CliError::client("Error querying Consul agent"))?;
    let id = super::fire_event(&client, &args.name, &args.filters, payload)
        .map_err(CliError::client("Error firing event"))?;
    println!("Event ID: {id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, status: u8) -> Member {
        let tags = [("role", role), ("build", "1.20.0:muster"), ("vsn", "2"), ("dc", "dc1"), ("id", "x")];
        Member {
            name: name.into(),
            addr: "127.0.0.1".into(),
            port: 8301,
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            status,
        }
    }

    #[test]
    fn members_print_consuls_columns() {
        let mut members = [member("s1", "consul", 1), member("c1", "node", 4)];
        members.iter_mut().for_each(|m| label_partition_and_segment(m, "_all"));
        let rows = standard_rows(&members);
        assert_eq!(
            columnize(&rows),
            "Node  Address         Status  Type    Build   Protocol  DC   Partition  Segment\n\
             s1    127.0.0.1:8301  alive   server  1.20.0  2         dc1  default    <all>\n\
             c1    127.0.0.1:8301  failed  client  1.20.0  2         dc1  default    <default>\n"
        );
        let rows = detailed_rows(&[member("s1", "consul", 3)]);
        assert_eq!(
            columnize(&rows),
            "Node  Address         Status  Tags\n\
             s1    127.0.0.1:8301  left    build=1.20.0:muster,dc=dc1,id=x,role=consul,vsn=2\n"
        );
        // A segment asked for by name (here the empty one) shows servers in `<default>`, as
        // Consul does; a member of another partition shows no segment.
        let mut server = member("s1", "consul", 1);
        label_partition_and_segment(&mut server, "");
        assert_eq!(server.tags["segment"], "<default>");
        let mut other = member("c2", "node", 1);
        other.tags.insert("ap".into(), "team".into());
        label_partition_and_segment(&mut other, "_all");
        assert_eq!((other.tags["ap"].as_str(), other.tags["segment"].as_str()), ("team", ""));
    }

    #[test]
    fn info_prints_sorted_sections_of_key_value_lines() {
        let stats =
            serde_json::from_str(r#"{"raft": {"term": "2", "state": "Leader"}, "agent": {"checks": "0"}}"#)
                .unwrap();
        assert_eq!(info_text(&stats), "agent:\n\tchecks = 0\nraft:\n\tstate = Leader\n\tterm = 2\n");
    }

    #[test]
    fn ipv6_members_are_bracketed() {
        assert_eq!(host_port("::1", 8301), "[::1]:8301");
        assert_eq!(host_port("10.0.0.1", 8301), "10.0.0.1:8301");
    }
}
