//! The servers of a datacenter as gossip shows them, and the bootstrap-expect decision
//! (`../shared/reference/consul-behaviour.md` §7; Consul's `maybeBootstrap`).
//!
//! Every server gossips tags that describe it: `role=consul`, `dc`, `port` (its RPC and Raft
//! port), `id` (its node ID, which is also its Raft ID, as in Raft protocol 3), and `expect` or
//! `bootstrap` when it was started with them. A server started with `-bootstrap-expect=N` waits
//! until gossip shows N alive servers of its datacenter, all expecting N, then starts Raft with
//! exactly those as voters. Every one of them computes the same set from the same tags, so they
//! agree on the first configuration without talking about it.

use core::net::SocketAddr;
use std::collections::BTreeMap;

use crate::raft::ServerId;

/// A server, from its gossip tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its node name.
    pub name: String,
    /// Its node ID (a UUID).
    pub node_id: String,
    /// Its Raft ID, derived from the node ID.
    pub raft_id: ServerId,
    /// Its datacenter.
    pub datacenter: String,
    /// Where it answers RPC and Raft: its gossip address's IP with its `port` tag.
    pub rpc_addr: SocketAddr,
    /// Its `expect` tag (0 when absent).
    pub expect: usize,
    /// Whether it was started with `-bootstrap`.
    pub bootstrap: bool,
}

impl ServerInfo {
    /// The server a gossip member describes, or `None` if it is not a server or its tags are
    /// not usable (a member's tags are input from the network: nothing here trusts them).
    pub fn from_member(
        name: &str,
        gossip_addr: SocketAddr,
        tags: &BTreeMap<String, String>,
    ) -> Option<ServerInfo> {
        if tags.get("role").map(String::as_str) != Some("consul") {
            return None;
        }
        let port: u16 = tags.get("port")?.parse().ok()?;
        let node_id = tags.get("id")?.clone();
        let raft_id = raft_id(&node_id)?;
        let expect = match tags.get("expect") {
            None => 0,
            Some(text) => text.parse().ok()?,
        };
        Some(ServerInfo {
            name: name.to_owned(),
            node_id,
            raft_id,
            datacenter: tags.get("dc")?.clone(),
            rpc_addr: SocketAddr::new(gossip_addr.ip(), port),
            expect,
            bootstrap: tags.contains_key("bootstrap"),
        })
    }
}

/// A server's Raft ID: the first 64 bits of its node ID (a random UUID, so collisions among a
/// handful of servers are out of reach); `None` for a node ID that is not a UUID or whose first
/// 64 bits are zero (Raft reserves 0).
pub fn raft_id(node_id: &str) -> Option<ServerId> {
    let hex: String = node_id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(&hex[..16], 16).ok().filter(|id| *id != 0)
}

/// What a server started with `-bootstrap-expect` does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Too few servers are visible yet.
    Wait {
        /// How many are.
        seen: usize,
    },
    /// Start Raft with these voters (sorted by Raft ID; this server among them).
    Ready(Vec<ServerInfo>),
    /// Bootstrapping must not happen; the reason is Consul's log line.
    Refuse(String),
}

/// Decides from the alive servers gossip shows (this one included) whether `expect` servers
/// of `datacenter` are there to bootstrap together. Servers of other datacenters are ignored;
/// one that expects a different number, or was started with `-bootstrap`, stops the bootstrap,
/// as in Consul, because the cluster it would form is not the one the operator meant.
pub fn bootstrap(expect: usize, datacenter: &str, alive: &[ServerInfo]) -> Bootstrap {
    assert!(expect > 0, "bootstrap-expect is at least 1");
    let mut servers: Vec<ServerInfo> = alive.iter().filter(|s| s.datacenter == datacenter).cloned().collect();
    for server in &servers {
        if server.bootstrap {
            return Bootstrap::Refuse(format!("Member {} has bootstrap mode. Expect disabled.", server.name));
        }
        if server.expect != 0 && server.expect != expect {
            return Bootstrap::Refuse(format!(
                "Member {} has a conflicting expect value. All nodes should expect the same number.",
                server.name
            ));
        }
    }
    servers.sort_by_key(|s| s.raft_id);
    servers.dedup_by_key(|s| s.raft_id);
    if servers.len() < expect {
        return Bootstrap::Wait { seen: servers.len() };
    }
    Bootstrap::Ready(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn server(n: u8, expect: usize) -> ServerInfo {
        let id = format!("{n:02x}000000-0000-4000-8000-000000000000");
        let expect_text = expect.to_string();
        let mut pairs = vec![("role", "consul"), ("dc", "dc1"), ("port", "8300"), ("id", id.as_str())];
        if expect > 0 {
            pairs.push(("expect", &expect_text));
        }
        ServerInfo::from_member(&format!("s{n}"), format!("10.0.0.{n}:8301").parse().unwrap(), &tags(&pairs))
            .unwrap()
    }

    #[test]
    fn a_servers_tags_describe_it() {
        let s = server(3, 3);
        assert_eq!(s.rpc_addr, "10.0.0.3:8300".parse().unwrap());
        assert_eq!(s.raft_id, 0x0300_0000_0000_4000);
        assert_eq!((s.expect, s.bootstrap, s.datacenter.as_str()), (3, false, "dc1"));
        let addr: SocketAddr = "10.0.0.9:8301".parse().unwrap();
        let id = ("id", "0a000000-0000-4000-8000-000000000000");
        assert_eq!(ServerInfo::from_member("c", addr, &tags(&[("role", "node"), ("dc", "dc1")])), None);
        assert_eq!(ServerInfo::from_member("x", addr, &tags(&[("role", "consul"), ("dc", "dc1"), id])), None);
        let bad_port = tags(&[("role", "consul"), ("dc", "dc1"), ("port", "99999"), id]);
        assert_eq!(ServerInfo::from_member("x", addr, &bad_port), None);
        let bad_id = tags(&[("role", "consul"), ("dc", "dc1"), ("port", "8300"), ("id", "nope")]);
        assert_eq!(ServerInfo::from_member("x", addr, &bad_id), None);
        assert_eq!(raft_id("00000000-0000-0000-8000-000000000000"), None, "0 is not a Raft ID");
    }

    #[test]
    fn expect_waits_for_enough_servers_of_its_datacenter() {
        let mut other_dc = server(9, 3);
        other_dc.datacenter = "dc2".into();
        assert_eq!(bootstrap(3, "dc1", &[server(1, 3), other_dc.clone()]), Bootstrap::Wait { seen: 1 });
        assert_eq!(bootstrap(3, "dc1", &[server(1, 3), server(2, 3), other_dc]), Bootstrap::Wait { seen: 2 });
        // Every server computes the same voters, whatever order its gossip view lists them in.
        let forward = bootstrap(3, "dc1", &[server(1, 3), server(2, 0), server(3, 3)]);
        let backward = bootstrap(3, "dc1", &[server(3, 3), server(2, 0), server(1, 3)]);
        assert_eq!(forward, backward);
        let Bootstrap::Ready(voters) = forward else { panic!("{forward:?}") };
        assert_eq!(voters.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["s1", "s2", "s3"]);
    }

    #[test]
    fn a_conflicting_server_stops_the_bootstrap() {
        assert_eq!(
            bootstrap(3, "dc1", &[server(1, 3), server(2, 5), server(3, 3)]),
            Bootstrap::Refuse(
                "Member s2 has a conflicting expect value. All nodes should expect the same number.".into()
            )
        );
        let mut lone = server(2, 0);
        lone.bootstrap = true;
        assert_eq!(
            bootstrap(3, "dc1", &[server(1, 3), lone, server(3, 3)]),
            Bootstrap::Refuse("Member s2 has bootstrap mode. Expect disabled.".into())
        );
    }
}
