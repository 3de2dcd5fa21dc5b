//! `muster catalog datacenters|nodes|services` and `muster operator raft
//! list-peers|remove-peer|transfer-leader` (`../shared/reference/consul-behaviour.md` §4.2);
//! `operator autopilot` is in [`super::autopilot`].

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::{at_most, columnize, CliError, Client, HttpArgs, Outcome};

/// `muster catalog <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum CatalogCommand {
    /// Lists the known datacenters.
    Datacenters(DatacentersArgs),
    /// Lists the nodes of the catalog.
    Nodes(NodesArgs),
    /// Lists the services of the catalog.
    Services(ServicesArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DatacentersArgs {
    #[command(flatten)]
    http: HttpArgs,
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    partition: super::PartitionArgs,
    /// Shows full IDs, tagged addresses and meta.
    #[arg(long)]
    detailed: bool,
    /// Only nodes providing this service (name or ID).
    #[arg(long, default_value = "")]
    service: String,
    /// Sorts by estimated round-trip time from this node.
    #[arg(long, default_value = "")]
    near: String,
    /// Only nodes with this meta, `key:value`. Repeatable.
    #[arg(long = "node-meta")]
    node_meta: Vec<String>,
    /// A filter expression on the nodes.
    #[arg(long, default_value = "")]
    filter: String,
    args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// Shows each service's tags.
    #[arg(long)]
    tags: bool,
    /// Only the services on this node.
    #[arg(long, default_value = "")]
    node: String,
    /// Only services on nodes with this meta, `key:value`. Repeatable.
    #[arg(long = "node-meta")]
    node_meta: Vec<String>,
    args: Vec<String>,
}

pub(crate) fn run(command: CatalogCommand) -> Outcome {
    match command {
        CatalogCommand::Datacenters(args) => datacenters(&args),
        CatalogCommand::Nodes(args) => nodes(&args),
        CatalogCommand::Services(args) => services(&args),
    }
}

fn datacenters(args: &DatacentersArgs) -> Outcome {
    at_most(&args.args, 0)?;
    let client = Client::new(&args.http)?;
    let names: Vec<String> = client
        .get("/v1/catalog/datacenters", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error listing datacenters"))?;
    if names.is_empty() {
        return Err(CliError::refused("No datacenters found"));
    }
    for name in names {
        println!("{name}");
    }
    Ok(0)
}

/// A node as `/v1/catalog/nodes` lists it; `/v1/catalog/service/<s>` rows carry the same
/// fields, its meta under `NodeMeta`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogNode {
    #[serde(rename = "ID", default)]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "NodeMeta")]
    meta: Option<BTreeMap<String, String>>,
}

fn nodes(args: &NodesArgs) -> Outcome {
    at_most(&args.args, 0)?;
    let client = Client::new(&args.http.in_partition(&args.partition))?;
    let mut query: Vec<(&str, &str)> = args.node_meta.iter().map(|m| ("node-meta", m.as_str())).collect();
    if !args.near.is_empty() {
        query.push(("near", &args.near));
    }
    if !args.filter.is_empty() {
        query.push(("filter", &args.filter));
    }
    let path = if args.service.is_empty() {
        "/v1/catalog/nodes".to_owned()
    } else {
        format!("/v1/catalog/service/{}", args.service)
    };
    let mut nodes: Vec<CatalogNode> = client
        .get(&path, &query)
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error listing nodes"))?;
    // A service's instances can share a node; the first answer for each node stands.
    let mut listed = std::collections::BTreeSet::new();
    nodes.retain(|node| listed.insert(node.node.clone()));
    if nodes.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(0);
    }
    print!("{}", columnize(&node_rows(&nodes, args.detailed)));
    Ok(0)
}

fn node_rows(nodes: &[CatalogNode], detailed: bool) -> Vec<String> {
    let pairs = |map: &Option<BTreeMap<String, String>>| {
        let map = map.as_ref().map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>());
        map.unwrap_or_default().join(", ")
    };
    let mut rows = Vec::with_capacity(nodes.len() + 1);
    if detailed {
        rows.push("Node\x1fID\x1fAddress\x1fDC\x1fTaggedAddresses\x1fMeta".to_owned());
    } else {
        rows.push("Node\x1fID\x1fAddress\x1fDC".to_owned());
    }
    for node in nodes {
        if detailed {
            rows.push(format!(
                "{}\x1f{}\x1f{}\x1f{}\x1f{}\x1f{}",
                node.node,
                node.id,
                node.address,
                node.datacenter,
                pairs(&node.tagged_addresses),
                pairs(&node.meta)
            ));
        } else {
            let id: String = node.id.chars().take(8).collect();
            rows.push(format!("{}\x1f{id}\x1f{}\x1f{}", node.node, node.address, node.datacenter));
        }
    }
    rows
}

fn services(args: &ServicesArgs) -> Outcome {
    at_most(&args.args, 0)?;
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    let query: Vec<(&str, &str)> = args.node_meta.iter().map(|m| ("node-meta", m.as_str())).collect();
    let services: BTreeMap<String, Vec<String>> = if args.node.is_empty() {
        client
            .get("/v1/catalog/services", &query)
            .and_then(|reply| reply.json())
            .map_err(CliError::client("Error listing services"))?
    } else {
        #[derive(Deserialize)]
        struct NodeService {
            #[serde(rename = "Service")]
            service: String,
            #[serde(rename = "Tags", default)]
            tags: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        struct NodeServices {
            #[serde(rename = "Services", default)]
            services: BTreeMap<String, NodeService>,
        }
        let for_node = "Error listing services for node";
        let reply = client
            .get(&format!("/v1/catalog/node/{}", args.node), &query)
            .map_err(CliError::client(for_node))?;
        let found: Option<NodeServices> =
            if reply.status == 404 { None } else { reply.json().map_err(CliError::client(for_node))? };
        let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for service in found.map(|f| f.services).unwrap_or_default().into_values() {
            services.entry(service.service).or_default().extend(service.tags.unwrap_or_default());
        }
        services
    };
    if services.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(0);
    }
    if args.tags {
        // Consul's tabwriter: six spaces past the longest name.
        let width = services.keys().map(|name| name.chars().count()).max().unwrap_or(0) + 6;
        for (name, mut tags) in services {
            tags.sort();
            tags.dedup();
            let line = format!("{name:<width$}{}", tags.join(","));
            println!("{}", line.trim_end());
        }
    } else {
        for name in services.keys() {
            println!("{name}");
        }
    }
    Ok(0)
}

/// `muster operator <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Raft's configuration and leadership.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Autopilot's configuration and its view of the servers.
    #[command(subcommand)]
    Autopilot(super::autopilot::AutopilotCommand),
}

/// `muster operator raft <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// Lists the Raft peers.
    ListPeers(ListPeersArgs),
    /// Removes a server from the Raft configuration.
    RemovePeer(RemovePeerArgs),
    /// Hands leadership to another server.
    TransferLeader(TransferLeaderArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListPeersArgs {
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RemovePeerArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The server's RPC address, `ip:port`.
    #[arg(long, default_value = "")]
    address: String,
    /// The server's node ID.
    #[arg(long, default_value = "")]
    id: String,
}

#[derive(Debug, Args)]
pub(crate) struct TransferLeaderArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The node ID of the server to lead.
    #[arg(long, default_value = "")]
    id: String,
}

pub(crate) fn operator(command: OperatorCommand) -> Outcome {
    match command {
        OperatorCommand::Raft(RaftCommand::ListPeers(args)) => list_peers(&args),
        OperatorCommand::Raft(RaftCommand::RemovePeer(args)) => remove_peer(&args),
        OperatorCommand::Raft(RaftCommand::TransferLeader(args)) => transfer_leader(&args),
        OperatorCommand::Autopilot(command) => super::autopilot::run(command),
    }
}

/// A server of `/v1/operator/raft/configuration`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RaftServer {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    leader: bool,
    voter: bool,
    protocol_version: String,
    #[serde(default)]
    last_index: u64,
}

fn list_peers(args: &ListPeersArgs) -> Outcome {
    #[derive(Deserialize)]
    struct Configuration {
        #[serde(rename = "Servers")]
        servers: Vec<RaftServer>,
    }
    let client = Client::new(&args.http)?;
    let configuration: Configuration = client
        .get("/v1/operator/raft/configuration", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error getting peers"))?;
    print!("{}", columnize(&peer_rows(&configuration.servers)));
    Ok(0)
}

/// Consul's columns, with how far each server's log trails the leader's.
fn peer_rows(servers: &[RaftServer]) -> Vec<String> {
    let leader_index = servers.iter().find(|s| s.leader).map_or(0, |s| s.last_index);
    let mut rows =
        vec!["Node\x1fID\x1fAddress\x1fState\x1fVoter\x1fRaftProtocol\x1fCommit Index\x1fTrails Leader By"
            .to_owned()];
    for s in servers {
        // Consul's states: leader or follower (a non-voter shows as a follower, voter false).
        let state = if s.leader { "leader" } else { "follower" };
        let protocol = if s.protocol_version.is_empty() { "<=1" } else { s.protocol_version.as_str() };
        let trails = if s.leader {
            "-".to_owned()
        } else {
            match leader_index.saturating_sub(s.last_index) {
                1 => "1 commit".to_owned(),
                n => format!("{n} commits"),
            }
        };
        rows.push(format!(
            "{}\x1f{}\x1f{}\x1f{state}\x1f{}\x1f{}\x1f{}\x1f{trails}",
            s.node, s.id, s.address, s.voter, protocol, s.last_index
        ));
    }
    rows
}

fn remove_peer(args: &RemovePeerArgs) -> Outcome {
    let query = match (args.address.is_empty(), args.id.is_empty()) {
        (true, true) => {
            return Err(CliError::usage(
                "Error removing peer: an address or id is required for the peer to remove",
            ))
        }
        (false, false) => {
            return Err(CliError::usage("Error removing peer: cannot give both an address and id"))
        }
        (false, true) => ("address", args.address.as_str()),
        (true, false) => ("id", args.id.as_str()),
    };
    let client = Client::new(&args.http)?;
    client
        .delete("/v1/operator/raft/peer", &[query])
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error removing peer"))?;
    println!("Removed peer with {} {:?}", query.0, query.1);
    Ok(0)
}

fn transfer_leader(args: &TransferLeaderArgs) -> Outcome {
    let client = Client::new(&args.http)?;
    let query: Vec<(&str, &str)> = if args.id.is_empty() { vec![] } else { vec![("id", &args.id)] };
    client
        .post("/v1/operator/raft/transfer-leader", &query)
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error transferring leadership"))?;
    println!("Success");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_print_consuls_columns_and_how_far_each_trails() {
        let server = |node: &str, leader: bool, last_index: u64| RaftServer {
            id: format!("{node}-id"),
            node: node.into(),
            address: "10.0.0.1:8300".into(),
            leader,
            voter: true,
            protocol_version: "3".into(),
            last_index,
        };
        let rows = peer_rows(&[server("s1", true, 12), server("s2", false, 11), server("s3", false, 9)]);
        assert_eq!(
            columnize(&rows),
            "Node  ID     Address        State     Voter  RaftProtocol  Commit Index  Trails Leader By\n\
             s1    s1-id  10.0.0.1:8300  leader    true   3             12            -\n\
             s2    s2-id  10.0.0.1:8300  follower  true   3             11            1 commit\n\
             s3    s3-id  10.0.0.1:8300  follower  true   3             9             3 commits\n"
        );
    }

    #[test]
    fn nodes_show_short_ids_unless_detailed() {
        let node = CatalogNode {
            id: "3d563457-1a3b-49fd-a91d-c49b2d0b7282".into(),
            node: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: Some([("lan".to_owned(), "127.0.0.1".to_owned())].into()),
            meta: Some([("a".to_owned(), "b".to_owned()), ("c".to_owned(), "d".to_owned())].into()),
        };
        assert_eq!(
            columnize(&node_rows(std::slice::from_ref(&node), false)),
            "Node  ID        Address    DC\nn1    3d563457  127.0.0.1  dc1\n"
        );
        assert_eq!(
            columnize(&node_rows(&[node], true)),
            "Node  ID                                    Address    DC   TaggedAddresses  Meta\n\
             n1    3d563457-1a3b-49fd-a91d-c49b2d0b7282  127.0.0.1  dc1  lan=127.0.0.1    a=b, c=d\n"
        );
    }
}
