//! The leader's reconciliation of LAN gossip into the catalog (`../shared/reference/
//! consul-behaviour.md` §3 "node health" and §7; Consul's `reconcileMember` and
//! `reconcileReaped`).
//!
//! Gossip is the authority on which agents exist and whether they answer; the catalog is what
//! clients read. The leader alone writes what gossip says, so the two meet in one place:
//! - an alive member has its node row (with its gossip address), a passing `serfHealth` check,
//!   and, for a server, the `consul` service on its RPC port;
//! - a failed member keeps its row, with `serfHealth` critical (its services then drop out of
//!   `?passing` and DNS);
//! - a member that left, or that gossip has forgotten (reaped), loses its node and everything
//!   on it; nodes registered through the catalog API alone (no `serfHealth`) are not gossip's
//!   to remove;
//! - a leaving member is left as it is until it has left.
//!
//! [`reconcile`] compares and returns the writes; it writes nothing, so the same inputs give
//! the same plan, and a plan that has been applied gives an empty one.

use core::net::IpAddr;
use std::collections::{BTreeMap, BTreeSet};

use crate::fsm::catalog::{parse_uuid, Catalog};
use crate::fsm::{Check, Command, Deregister, Health, Node, Register, Service, SERF_HEALTH};
use crate::swim::Status;

/// `serfHealth`'s name.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// `serfHealth`'s output while the member answers.
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// `serfHealth`'s output once the member failed.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// The service every server carries.
pub const SERVER_SERVICE: &str = "consul";

/// One member of the LAN pool, as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipMember {
    /// Its node name.
    pub name: String,
    /// Its gossip address's IP, which the catalog lists as the node's address.
    pub addr: IpAddr,
    /// Its tags (`dc`, `id`, `role`, `port`, ...), untrusted input from the network.
    pub tags: BTreeMap<String, String>,
    /// Its status.
    pub status: Status,
}

impl GossipMember {
    fn datacenter(&self) -> Option<&str> {
        self.tags.get("dc").map(String::as_str)
    }

    /// Its node ID, if it tags a well-formed one.
    fn node_id(&self) -> String {
        self.tags.get("id").filter(|id| parse_uuid(id).is_ok()).cloned().unwrap_or_default()
    }

    /// Its server RPC port, if it is a server.
    fn server_port(&self) -> Option<u16> {
        if self.tags.get("role").map(String::as_str) != Some("consul") {
            return None;
        }
        self.tags.get("port")?.parse().ok()
    }
}

/// The catalog writes that make `catalog` agree with `members` (the LAN pool of the leader,
/// named `leader`, in `datacenter`), in order. Members of other datacenters are ignored; the
/// leader never removes itself.
pub fn reconcile(
    datacenter: &str,
    leader: &str,
    members: &[GossipMember],
    catalog: &Catalog,
) -> Vec<Command> {
    let mut plan = Vec::new();
    let mut known = BTreeSet::new();
    for member in members.iter().filter(|m| m.datacenter() == Some(datacenter)) {
        known.insert(member.name.as_str());
        match member.status {
            Status::Alive => plan.extend(alive(datacenter, member, catalog)),
            Status::Failed => plan.extend(failed(datacenter, member, catalog)),
            Status::Left if member.name != leader && catalog.node(&member.name).is_some() => {
                plan.push(deregister(&member.name));
            }
            Status::Left | Status::Leaving => {}
        }
    }
    // Reaped: gone from gossip, yet registered by it (it carries serfHealth).
    for node in catalog.nodes().1 {
        let name = node.node.as_str();
        if name != leader && !known.contains(name) && catalog.check(name, SERF_HEALTH).is_some() {
            plan.push(deregister(name));
        }
    }
    plan
}

/// Whether the catalog's row for `member` is there with its gossip address.
fn row_matches(member: &GossipMember, catalog: &Catalog) -> bool {
    catalog.node(&member.name).is_some_and(|node| node.address == member.addr.to_string())
}

fn alive(datacenter: &str, member: &GossipMember, catalog: &Catalog) -> Option<Command> {
    let node_ok = row_matches(member, catalog);
    let serf_ok = catalog
        .check(&member.name, SERF_HEALTH)
        .is_some_and(|c| c.status == Health::Passing && c.output == SERF_ALIVE_OUTPUT);
    let service = member.server_port().map(|port| Service {
        id: SERVER_SERVICE.into(),
        service: SERVER_SERVICE.into(),
        port,
        ..Service::default()
    });
    let service_ok = match &service {
        None => true,
        Some(wanted) => catalog
            .service(&member.name, SERVER_SERVICE)
            .is_some_and(|s| s.service == wanted.service && s.port == wanted.port),
    };
    if node_ok && serf_ok && service_ok {
        return None;
    }
    Some(register(datacenter, member, node_ok, service, Health::Passing, SERF_ALIVE_OUTPUT))
}

fn failed(datacenter: &str, member: &GossipMember, catalog: &Catalog) -> Option<Command> {
    let node_ok = row_matches(member, catalog);
    let critical = catalog.check(&member.name, SERF_HEALTH).is_some_and(|c| c.status == Health::Critical);
    if node_ok && critical {
        return None;
    }
    Some(register(datacenter, member, node_ok, None, Health::Critical, SERF_FAILED_OUTPUT))
}

/// The member's `serfHealth` in `status`, with its node row when that is missing or moved, and
/// its service.
fn register(
    datacenter: &str,
    member: &GossipMember,
    node_ok: bool,
    service: Option<Service>,
    status: Health,
    output: &str,
) -> Command {
    let node = Node {
        id: member.node_id(),
        node: member.name.clone(),
        address: member.addr.to_string(),
        datacenter: datacenter.to_owned(),
        ..Node::default()
    };
    let serf = Check {
        check_id: SERF_HEALTH.into(),
        name: SERF_CHECK_NAME.into(),
        status,
        output: output.into(),
        ..Check::default()
    };
    Command::Register(Box::new(Register { node, skip_node_update: node_ok, service, checks: vec![serf] }))
}

fn deregister(name: &str) -> Command {
    Command::Deregister(Deregister { node: name.to_owned(), service_id: None, check_id: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::Fsm;

    fn member(name: &str, last_octet: u8, status: Status, server: bool) -> GossipMember {
        let mut tags: BTreeMap<String, String> = [
            ("dc".to_owned(), "dc1".to_owned()),
            ("id".to_owned(), format!("{last_octet:08x}-0000-4000-8000-000000000000")),
            ("role".to_owned(), if server { "consul" } else { "node" }.to_owned()),
        ]
        .into_iter()
        .collect();
        if server {
            tags.insert("port".into(), "8300".into());
        }
        GossipMember { name: name.into(), addr: IpAddr::from([10, 0, 0, last_octet]), tags, status }
    }

    /// Applies `plan` to `fsm`, asserting that the catalog takes every write.
    fn apply(fsm: &mut Fsm, plan: Vec<Command>) {
        for command in plan {
            let index = fsm.applied() + 1;
            let response = fsm.apply_command(index, 0, &command).response;
            assert!(
                !matches!(response, crate::fsm::Response::Rejected(_)),
                "{command:?} refused: {response:?}"
            );
        }
    }

    /// Reconciles once, as leader `s1`, and applies the plan.
    fn step(fsm: &mut Fsm, members: &[GossipMember]) {
        let plan = reconcile("dc1", "s1", members, fsm.catalog());
        apply(fsm, plan);
    }

    fn serf(fsm: &Fsm, name: &str) -> Option<(Health, String)> {
        fsm.catalog().check(name, SERF_HEALTH).map(|c| (c.status, c.output.clone()))
    }

    #[test]
    fn alive_members_are_registered_once_and_servers_carry_the_consul_service() {
        let mut fsm = Fsm::default();
        let members = [member("s1", 1, Status::Alive, true), member("c1", 2, Status::Alive, false)];
        let plan = reconcile("dc1", "s1", &members, fsm.catalog());
        assert_eq!(plan.len(), 2);
        apply(&mut fsm, plan);
        assert_eq!(serf(&fsm, "s1"), Some((Health::Passing, SERF_ALIVE_OUTPUT.into())));
        assert_eq!(serf(&fsm, "c1"), Some((Health::Passing, SERF_ALIVE_OUTPUT.into())));
        assert_eq!(fsm.catalog().service("s1", "consul").map(|s| s.port), Some(8300));
        assert_eq!(fsm.catalog().service("c1", "consul"), None);
        let node = fsm.catalog().node("c1").unwrap();
        assert_eq!(
            (node.address.as_str(), node.id.as_str()),
            ("10.0.0.2", "00000002-0000-4000-8000-000000000000")
        );
        assert_eq!(
            reconcile("dc1", "s1", &members, fsm.catalog()),
            Vec::new(),
            "applied, nothing is left to do"
        );
    }

    #[test]
    fn a_failed_member_turns_critical_and_comes_back_passing() {
        let mut fsm = Fsm::default();
        let mut members = vec![member("s1", 1, Status::Alive, true), member("c1", 2, Status::Alive, false)];
        step(&mut fsm, &members);
        members[1].status = Status::Failed;
        step(&mut fsm, &members);
        assert_eq!(serf(&fsm, "c1"), Some((Health::Critical, SERF_FAILED_OUTPUT.into())));
        assert!(fsm.catalog().node("c1").is_some(), "a failed node stays listed");
        assert_eq!(reconcile("dc1", "s1", &members, fsm.catalog()), Vec::new());
        members[1].status = Status::Alive;
        step(&mut fsm, &members);
        assert_eq!(serf(&fsm, "c1"), Some((Health::Passing, SERF_ALIVE_OUTPUT.into())));
    }

    #[test]
    fn left_and_reaped_members_are_removed_but_catalog_only_nodes_and_the_leader_stay() {
        let mut fsm = Fsm::default();
        let mut members = vec![
            member("s1", 1, Status::Alive, true),
            member("c1", 2, Status::Alive, false),
            member("c2", 3, Status::Alive, false),
        ];
        step(&mut fsm, &members);
        let external = Register {
            node: Node { node: "db".into(), address: "10.0.9.9".into(), ..Node::default() },
            skip_node_update: false,
            service: None,
            checks: Vec::new(),
        };
        apply(&mut fsm, vec![Command::Register(Box::new(external))]);
        members[1].status = Status::Leaving;
        assert_eq!(reconcile("dc1", "s1", &members, fsm.catalog()), Vec::new(), "leaving: not yet");
        members[1].status = Status::Left;
        members.remove(2); // c2 reaped
        members[0].status = Status::Left; // the leader's own status never removes it
        step(&mut fsm, &members);
        let names: Vec<&str> = fsm.catalog().nodes().1.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["db", "s1"]);
    }

    #[test]
    fn a_moved_member_gets_its_new_address_and_other_datacenters_are_ignored() {
        let mut fsm = Fsm::default();
        let mut members = vec![member("s1", 1, Status::Alive, true), member("c1", 2, Status::Alive, false)];
        step(&mut fsm, &members);
        members[1].addr = IpAddr::from([10, 0, 0, 20]);
        let mut other = member("x1", 9, Status::Alive, false);
        other.tags.insert("dc".into(), "dc2".into());
        members.push(other);
        step(&mut fsm, &members);
        assert_eq!(fsm.catalog().node("c1").map(|n| n.address.as_str()), Some("10.0.0.20"));
        assert!(fsm.catalog().node("x1").is_none());
    }

    #[test]
    fn untrusted_tags_never_break_the_plan() {
        let mut fsm = Fsm::default();
        let mut bad = member("c1", 2, Status::Alive, true);
        bad.tags.insert("id".into(), "not-a-uuid".into());
        bad.tags.insert("port".into(), "99999".into());
        let plan = reconcile("dc1", "s1", &[bad], fsm.catalog());
        apply(&mut fsm, plan);
        let node = fsm.catalog().node("c1").unwrap();
        assert_eq!(node.id, "", "a malformed ID is left out");
        assert_eq!(fsm.catalog().service("c1", "consul"), None, "a malformed port is no server");
    }

    proptest::proptest! {
        /// Whatever gossip shows, one reconciliation brings the catalog to agree with it: every
        /// alive member passing, every failed one critical, no node that left or was reaped,
        /// and nothing more to do.
        #[test]
        fn one_pass_reaches_the_fixpoint(
            rounds in proptest::collection::vec(proptest::collection::vec((0..5u8, 0..5u8), 0..6), 1..8)
        ) {
            let mut fsm = Fsm::default();
            for round in rounds {
                // (member, status): 0 alive, 1 leaving, 2 left, 3 failed, 4 reaped (absent).
                let members: Vec<GossipMember> = round
                    .iter()
                    .copied()
                    .collect::<BTreeMap<u8, u8>>()
                    .into_iter()
                    .filter(|(_, status)| *status != 4)
                    .map(|(n, status)| {
                        let status = [Status::Alive, Status::Leaving, Status::Left, Status::Failed][usize::from(status)];
                        member(&format!("m{n}"), n + 1, status, n % 2 == 0)
                    })
                    .collect();
                step(&mut fsm, &members);
                proptest::prop_assert_eq!(reconcile("dc1", "s1", &members, fsm.catalog()), Vec::new());
                for m in &members {
                    let health = serf(&fsm, &m.name).map(|(h, _)| h);
                    match m.status {
                        Status::Alive => proptest::prop_assert_eq!(health, Some(Health::Passing)),
                        Status::Failed => proptest::prop_assert_eq!(health, Some(Health::Critical)),
                        Status::Left => proptest::prop_assert!(fsm.catalog().node(&m.name).is_none()),
                        Status::Leaving => {}
                    }
                }
                for node in fsm.catalog().nodes().1 {
                    proptest::prop_assert!(members.iter().any(|m| m.name == node.node), "{} reaped", node.node);
                }
            }
        }
    }
}
