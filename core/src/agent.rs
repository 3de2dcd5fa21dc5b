//! The agent's local state and anti-entropy (`../shared/reference/consul-behaviour.md` §3;
//! Consul's `agent/local/state.go`).
//!
//! An agent is the authority for its own node: the services and checks registered through
//! `/v1/agent/...` live here first, and the catalog holds a copy. [`LocalState::plan`] compares
//! the two and returns the catalog writes that make the copy match: re-register what is missing
//! or changed, deregister what the agent does not know (a catalog-API registration onto a live
//! agent's node is undone, as in Consul), fix the node row. The driver runs a plan after every
//! local change (partial sync) and on a period (full sync); since a plan is computed from the
//! catalog as it stands, both are the same comparison, and a write lost to a leader change is
//! simply planned again.
//!
//! Two rows on the node belong to the leader, not the agent, and a plan never touches them: the
//! `consul` service of a server and the `serfHealth` check.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::fsm::{Check, Command, Deregister, Health, Node, Register, Service};

/// The service a server's leader keeps on each server's node.
pub const LEADER_SERVICE_ID: &str = "consul";
/// The gossip health check the leader keeps on every node.
pub const LEADER_CHECK_ID: &str = crate::fsm::SERF_HEALTH;

/// Why a local change was refused; nothing changed. Messages are Consul's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// A check bound to a service this agent does not have.
    #[error("ServiceID {0:?} does not exist")]
    UnknownService(String),
    /// An update for a check this agent does not have.
    #[error("Unknown check ID {0:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(String),
    /// A row the leader owns.
    #[error("{0:?} is reserved for the cluster leader")]
    Reserved(String),
}

/// The agent's services or checks, by ID: a persistent map, cloned in O(1), whose rows are
/// shared. A change copies the path to the changed entry; with the rows behind an `Arc`, that
/// copy moves pointers, not checks (an agent with 10,000 checks copied ~64 whole checks per
/// change, and kept them in memory for every snapshot still held).
pub type Rows<T> = OrdMap<String, Arc<T>>;

/// The rows that differ between `before` and `after`, each with its value in `after` (`None`:
/// removed). Cheap when `after` was derived from `before` by a few changes: the maps share
/// their structure, and shared subtrees are skipped unvisited.
pub fn changed_rows<'a, T: PartialEq>(
    before: &'a Rows<T>,
    after: &'a Rows<T>,
) -> Vec<(&'a String, Option<&'a Arc<T>>)> {
    before
        .diff(after)
        .map(|item| match item {
            imbl::ordmap::DiffItem::Add(id, row) | imbl::ordmap::DiffItem::Update { new: (id, row), .. } => {
                (id, Some(row))
            }
            imbl::ordmap::DiffItem::Remove(id, _) => (id, None),
        })
        .collect()
}

/// One of the agent's rows, named for a partial sync ([`LocalState::push`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A service, with its checks.
    Service(String),
    /// A check.
    Check(String),
}

/// The services and checks of this agent, and its node's row as the catalog should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    node: Node,
    // Persistent maps: a copy of the whole state (taken before each change, to undo it if the
    // catalog refuses it) costs O(1) however many rows the agent has.
    services: Rows<Service>,
    checks: Rows<Check>,
    /// Checks whose output changed without their status, and whose output is held back from
    /// the catalog until the agent's `check_update_interval` passes (Consul's deferred check
    /// sync): meanwhile a full sync does not count their output as drift.
    output_deferred: OrdSet<String>,
}

impl LocalState {
    /// An agent with nothing registered yet, for `node`.
    pub fn new(node: Node) -> LocalState {
        LocalState {
            node: row_of_node(&node),
            services: OrdMap::new(),
            checks: OrdMap::new(),
            output_deferred: OrdSet::new(),
        }
    }

    /// The node's row.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The services, by ID.
    pub fn services(&self) -> &Rows<Service> {
        &self.services
    }

    /// The checks, by ID.
    pub fn checks(&self) -> &Rows<Check> {
        &self.checks
    }

    /// Adds or replaces a service with its checks. Checks the service had before and `checks`
    /// does not name are removed, as Consul does when a service is registered again; returns
    /// their IDs.
    pub fn add_service(&mut self, service: Service, checks: Vec<Check>) -> Result<Vec<String>, LocalError> {
        if service.id == LEADER_SERVICE_ID {
            return Err(LocalError::Reserved(service.id));
        }
        if let Some(reserved) = checks.iter().find(|c| c.check_id == LEADER_CHECK_ID) {
            return Err(LocalError::Reserved(reserved.check_id.clone()));
        }
        let service = row_of_service(&service);
        let dropped: Vec<String> = self
            .checks
            .values()
            .filter(|c| c.service_id == service.id && !checks.iter().any(|new| new.check_id == c.check_id))
            .map(|c| c.check_id.clone())
            .collect();
        for id in &dropped {
            self.checks.remove(id);
            self.output_deferred.remove(id);
        }
        for check in checks {
            let check = Check { service_id: service.id.clone(), ..check };
            self.checks.insert(check.check_id.clone(), Arc::new(self.row_of_check(&check, Some(&service))));
        }
        // The checks already bound to it carry its name and tags: keep them current.
        let bound: Vec<String> =
            self.checks.values().filter(|c| c.service_id == service.id).map(|c| c.check_id.clone()).collect();
        for id in bound {
            let check = Arc::make_mut(self.checks.get_mut(&id).expect("just listed"));
            check.service_name.clone_from(&service.service);
            check.service_tags.clone_from(&service.tags);
        }
        self.services.insert(service.id.clone(), Arc::new(service));
        self.check_invariants();
        Ok(dropped)
    }

    /// Removes a service and its checks; returns the IDs of the checks removed, or `None` if
    /// there was no such service.
    pub fn remove_service(&mut self, id: &str) -> Option<Vec<String>> {
        self.services.remove(id)?;
        let bound: Vec<String> =
            self.checks.values().filter(|c| c.service_id == id).map(|c| c.check_id.clone()).collect();
        for check in &bound {
            self.checks.remove(check);
            self.output_deferred.remove(check);
        }
        self.check_invariants();
        Some(bound)
    }

    /// Adds or replaces a check (node-level, or bound to one of this agent's services).
    pub fn add_check(&mut self, check: Check) -> Result<(), LocalError> {
        if check.check_id == LEADER_CHECK_ID {
            return Err(LocalError::Reserved(check.check_id));
        }
        let service = if check.service_id.is_empty() {
            None
        } else {
            let service = self.services.get(&check.service_id);
            Some(service.ok_or_else(|| LocalError::UnknownService(check.service_id.clone()))?)
        };
        let row = self.row_of_check(&check, service.map(Arc::as_ref));
        self.output_deferred.remove(&row.check_id);
        self.checks.insert(row.check_id.clone(), Arc::new(row));
        self.check_invariants();
        Ok(())
    }

    /// Removes a check; whether there was one.
    pub fn remove_check(&mut self, id: &str) -> bool {
        self.output_deferred.remove(id);
        self.checks.remove(id).is_some()
    }

    /// Holds check `id`'s output back from the catalog (a full sync ignores it) until
    /// [`LocalState::end_output_deferral`] or a status change; whether it was not held already.
    pub fn defer_output(&mut self, id: &str) -> bool {
        self.checks.contains_key(id) && self.output_deferred.insert(id.to_owned()).is_none()
    }

    /// Lets check `id`'s output count again; whether it was held back.
    pub fn end_output_deferral(&mut self, id: &str) -> bool {
        self.output_deferred.remove(id).is_some()
    }

    /// Whether check `id`'s output is held back from the catalog.
    pub fn output_deferred(&self, id: &str) -> bool {
        self.output_deferred.contains(id)
    }

    /// Sets a check's state and output (a TTL update, an expiry, an executor's result). A
    /// status change ends any deferral of its output: the whole row is due in the catalog.
    pub fn update_check(&mut self, id: &str, status: Health, output: String) -> Result<&Check, LocalError> {
        let check = self.checks.get_mut(id).ok_or_else(|| LocalError::UnknownCheck(id.to_owned()))?;
        if check.status != status {
            self.output_deferred.remove(id);
        }
        let check = Arc::make_mut(check);
        check.status = status;
        check.output = output;
        Ok(check)
    }

    /// The catalog writes that make the catalog's rows for this node (`node`, `services`,
    /// `checks`, as it holds them now) match this agent's, in the order to apply them. Empty
    /// when they match.
    ///
    /// A service with `EnableTagOverride` takes the catalog's tags when they differ: someone
    /// edited them there on purpose, and the agent keeps the edit.
    pub fn plan<'a>(
        &mut self,
        node: Option<&Node>,
        services: impl IntoIterator<Item = &'a Service>,
        checks: impl IntoIterator<Item = &'a Check>,
    ) -> Vec<Command> {
        let remote_services: BTreeMap<&str, &Service> =
            services.into_iter().map(|s| (s.id.as_str(), s)).collect();
        let remote_checks: BTreeMap<&str, &Check> =
            checks.into_iter().map(|c| (c.check_id.as_str(), c)).collect();
        self.adopt_tag_overrides(&remote_services);
        let mut plan = Vec::new();

        // Deregistrations first: a service the agent dropped takes its catalog checks with it.
        let mut gone_services = Vec::new();
        for &id in remote_services.keys() {
            if id != LEADER_SERVICE_ID && !self.services.contains_key(id) {
                gone_services.push(id);
                plan.push(Command::Deregister(Deregister {
                    node: self.node.node.clone(),
                    service_id: Some(id.to_owned()),
                    check_id: None,
                }));
            }
        }
        for (&id, check) in &remote_checks {
            let goes_with_service = gone_services.contains(&check.service_id.as_str());
            if id != LEADER_CHECK_ID && !goes_with_service && !self.checks.contains_key(id) {
                plan.push(Command::Deregister(Deregister {
                    node: self.node.node.clone(),
                    service_id: None,
                    check_id: Some(id.to_owned()),
                }));
            }
        }

        let node_in_sync = node.is_some_and(|remote| same_node(remote, &self.node));
        let mut stale_checks: Vec<&Check> = self
            .checks
            .values()
            .filter(|local| {
                let deferred = self.output_deferred.contains(&local.check_id);
                remote_checks.get(local.check_id.as_str()).is_none_or(|r| !same_check(r, local, deferred))
            })
            .map(Arc::as_ref)
            .collect();
        if !node_in_sync {
            // The node row goes first, with the node-level checks that need writing.
            let (node_level, rest): (Vec<&Check>, Vec<&Check>) =
                stale_checks.into_iter().partition(|c| c.service_id.is_empty());
            plan.push(self.register(None, node_level, false));
            stale_checks = rest;
        }
        for service in self.services.values() {
            let in_sync = remote_services.get(service.id.as_str()).is_some_and(|r| same_service(r, service));
            if !in_sync {
                let (own, rest): (Vec<&Check>, Vec<&Check>) =
                    stale_checks.into_iter().partition(|c| c.service_id == service.id);
                plan.push(self.register(Some(service), own, true));
                stale_checks = rest;
            }
        }
        if !stale_checks.is_empty() {
            plan.push(self.register(None, stale_checks, true));
        }
        plan
    }

    /// The one catalog write that brings `row` there in line with this agent after a change
    /// to it alone (Consul's partial sync): the service with its checks, or the check, as the
    /// agent has it now, or its deregistration if the agent dropped it. The node row is left as
    /// it is (created if missing); a full [`LocalState::plan`] repairs anything else.
    pub fn push(&self, row: &Row) -> Command {
        match row {
            Row::Service(id) => match self.services.get(id) {
                Some(service) => {
                    let checks =
                        self.checks.values().filter(|c| c.service_id == *id).map(Arc::as_ref).collect();
                    self.register(Some(service), checks, true)
                }
                None => Command::Deregister(Deregister {
                    node: self.node.node.clone(),
                    service_id: Some(id.clone()),
                    check_id: None,
                }),
            },
            Row::Check(id) => match self.checks.get(id) {
                Some(check) => self.register(None, vec![check], true),
                None => Command::Deregister(Deregister {
                    node: self.node.node.clone(),
                    service_id: None,
                    check_id: Some(id.clone()),
                }),
            },
        }
    }

    fn register(&self, service: Option<&Service>, checks: Vec<&Check>, skip_node_update: bool) -> Command {
        Command::Register(Box::new(Register {
            node: self.node.clone(),
            skip_node_update,
            service: service.cloned(),
            checks: checks.into_iter().cloned().collect(),
        }))
    }

    fn adopt_tag_overrides(&mut self, remote: &BTreeMap<&str, &Service>) {
        let edited: Vec<(String, Vec<String>)> = self
            .services
            .values()
            .filter(|s| s.enable_tag_override)
            .filter_map(|s| {
                remote.get(s.id.as_str()).filter(|r| r.tags != s.tags).map(|r| (s.id.clone(), r.tags.clone()))
            })
            .collect();
        for (id, tags) in edited {
            let bound: Vec<String> =
                self.checks.values().filter(|c| c.service_id == id).map(|c| c.check_id.clone()).collect();
            for check in bound {
                Arc::make_mut(self.checks.get_mut(&check).expect("just listed"))
                    .service_tags
                    .clone_from(&tags);
            }
            Arc::make_mut(self.services.get_mut(&id).expect("just listed")).tags = tags;
        }
    }

    /// `check` as the catalog stores it on this node (the fields the catalog fills in filled).
    fn row_of_check(&self, check: &Check, service: Option<&Service>) -> Check {
        let mut row = row_of_check(check);
        row.node.clone_from(&self.node.node);
        if let Some(service) = service {
            row.service_name.clone_from(&service.service);
            row.service_tags.clone_from(&service.tags);
        }
        row
    }

    /// Checks the state's rules; a no-op outside test, simulation and fuzz builds.
    pub fn check_invariants(&self) {
        #[cfg(any(test, feature = "invariants"))]
        {
            assert!(!self.services.contains_key(LEADER_SERVICE_ID), "the leader's service is local");
            assert!(!self.checks.contains_key(LEADER_CHECK_ID), "the leader's check is local");
            assert!(
                self.output_deferred.iter().all(|id| self.checks.contains_key(id)),
                "output deferred for a check the agent does not have"
            );
            for (id, service) in &self.services {
                assert_eq!(*id, service.id, "a service filed under another ID");
                assert_eq!((service.create_index, service.modify_index), (0, 0), "a local row with indexes");
            }
            for (id, check) in &self.checks {
                assert_eq!(*id, check.check_id, "a check filed under another ID");
                assert_eq!(check.node, self.node.node, "a check of another node");
                assert_eq!((check.create_index, check.modify_index), (0, 0), "a local row with indexes");
                if !check.service_id.is_empty() {
                    let service = self.services.get(&check.service_id).expect("a check of a missing service");
                    assert_eq!(check.service_name, service.service, "a check with a stale service name");
                    assert_eq!(check.service_tags, service.tags, "a check with stale service tags");
                }
            }
        }
    }
}

/// Whether the catalog's row `$remote` holds what the agent's `$local` does: every listed field
/// equal. Written field by field, without copying: a sync compares every row of the node. The
/// pattern must name every field but the Raft indexes (and those `ignoring`), so a field added
/// to a row does not go unnoticed here. A macro because only a pattern can enumerate fields.
macro_rules! same_row {
    ($remote:expr, $local:expr; $row:ident { $($field:ident),+ $(,)? } $(ignoring { $($skip:ident),+ })?) => {{
        let $row { $($field,)+ $($($skip: _,)+)? create_index: _, modify_index: _ } = $remote;
        $(*$field == $local.$field)&&+
    }};
}

/// Whether the catalog's node row `remote` matches `local`.
fn same_node(remote: &Node, local: &Node) -> bool {
    same_row!(remote, local; Node { id, node, address, datacenter, tagged_addresses, meta })
}

/// Whether the catalog's row `remote` matches `local`.
fn same_service(remote: &Service, local: &Service) -> bool {
    same_row!(remote, local; Service {
        kind, id, service, tags, address, tagged_addresses, meta, port, socket_path, weights,
        enable_tag_override,
    })
}

/// Whether the catalog's row `remote` matches `local`; with `ignore_output`, whatever their
/// outputs say.
fn same_check(remote: &Check, local: &Check, ignore_output: bool) -> bool {
    (ignore_output || remote.output == local.output)
        && same_row!(remote, local; Check {
            node, check_id, name, status, notes, service_id, service_name, service_tags, kind,
            definition,
        } ignoring { output })
}

/// A row with its Raft indexes cleared, as the agent keeps it.
fn row_of_node(node: &Node) -> Node {
    Node { create_index: 0, modify_index: 0, ..node.clone() }
}

fn row_of_service(service: &Service) -> Service {
    Service { create_index: 0, modify_index: 0, ..service.clone() }
}

fn row_of_check(check: &Check) -> Check {
    Check { create_index: 0, modify_index: 0, ..check.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{CheckKind, Fsm, Response};

    fn node() -> Node {
        Node {
            id: "2f0a6d43-5d1c-4a0e-9c55-0d2b1f5e7a11".into(),
            node: "agent-one".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            ..Node::default()
        }
    }

    fn web() -> Service {
        Service {
            id: "web".into(),
            service: "web".into(),
            tags: vec!["rails".into()],
            port: 80,
            ..Service::default()
        }
    }

    fn ttl(id: &str, service_id: &str) -> Check {
        Check {
            check_id: id.into(),
            name: id.into(),
            service_id: service_id.into(),
            kind: CheckKind::Ttl,
            ..Check::default()
        }
    }

    /// Applies `plan` to `fsm` from `index` on; each write must be accepted.
    fn apply(fsm: &mut Fsm, index: &mut u64, plan: Vec<Command>) {
        for command in plan {
            *index += 1;
            let applied = fsm.apply_command(*index, 0, &command);
            assert!(
                !matches!(applied.response, Response::Rejected(_)),
                "{command:?}: {:?}",
                applied.response
            );
            fsm.check_invariants();
        }
    }

    /// Plans against the catalog's view of the agent's node.
    fn plan(local: &mut LocalState, fsm: &Fsm) -> Vec<Command> {
        let name = local.node().node.clone();
        let catalog = fsm.catalog();
        let services: Vec<Service> =
            catalog.node_services(&name).1.map(|(_, s)| s.into_iter().cloned().collect()).unwrap_or_default();
        let checks: Vec<Check> = catalog.node_checks(&name).1.into_iter().cloned().collect();
        local.plan(catalog.node(&name), &services, &checks)
    }

    /// Syncs until a plan is empty; a sync must converge in one round.
    fn sync(local: &mut LocalState, fsm: &mut Fsm, index: &mut u64) {
        let first = plan(local, fsm);
        apply(fsm, index, first);
        assert_eq!(plan(local, fsm), vec![], "one sync round leaves drift");
    }

    #[test]
    fn a_deferred_output_is_not_drift_until_the_deferral_ends_or_the_status_changes() {
        let mut local = LocalState::new(node());
        local.add_check(ttl("mem", "")).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        sync(&mut local, &mut fsm, &mut index);
        local.update_check("mem", Health::Critical, "new output".into()).unwrap();
        assert_eq!(plan(&mut local, &fsm).len(), 1, "undeferred, the output is drift");
        assert!(local.defer_output("mem"));
        assert!(!local.defer_output("mem"), "deferred once");
        assert!(!local.defer_output("unknown"), "only known checks");
        assert_eq!(plan(&mut local, &fsm), vec![], "held back");
        assert!(local.end_output_deferral("mem"));
        assert_eq!(plan(&mut local, &fsm).len(), 1, "due once the deferral ends");
        // A status change ends the deferral too.
        assert!(local.defer_output("mem"));
        local.update_check("mem", Health::Passing, "ok".into()).unwrap();
        assert!(!local.output_deferred("mem"));
        sync(&mut local, &mut fsm, &mut index);
        assert_eq!(fsm.catalog().check("agent-one", "mem").map(|c| c.output.as_str()), Some("ok"));
        // Removing the check forgets its deferral.
        local.defer_output("mem");
        local.remove_check("mem");
        assert!(!local.output_deferred("mem"));
        local.check_invariants();
    }

    #[test]
    fn a_fresh_agent_registers_its_node_services_and_checks() {
        let mut local = LocalState::new(node());
        local.add_service(web(), vec![ttl("service:web", "")]).unwrap();
        local.add_check(ttl("mem", "")).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        let first = plan(&mut local, &fsm);
        assert_eq!(first.len(), 2, "the node with its node-level check, then the service with its own");
        sync(&mut local, &mut fsm, &mut index);
        let catalog = fsm.catalog();
        assert_eq!(catalog.node("agent-one").map(|n| n.address.as_str()), Some("10.0.0.1"));
        let check = catalog.check("agent-one", "service:web").unwrap();
        assert_eq!((check.service_id.as_str(), check.service_name.as_str()), ("web", "web"));
        assert_eq!(check.service_tags, vec!["rails".to_owned()]);
        assert_eq!(catalog.check("agent-one", "mem").unwrap().status, Health::Critical);
    }

    #[test]
    fn drift_in_the_catalog_is_undone_and_the_leaders_rows_are_left_alone() {
        let mut local = LocalState::new(node());
        local.add_service(web(), vec![ttl("service:web", "")]).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        sync(&mut local, &mut fsm, &mut index);
        // Someone edits the catalog directly: a foreign service, the leader's rows, a changed port,
        // a deleted check.
        let foreign = Service { id: "db".into(), service: "db".into(), ..Service::default() };
        let consul =
            Service { id: "consul".into(), service: "consul".into(), port: 8300, ..Service::default() };
        let mut moved = web();
        moved.port = 8080;
        let serf =
            Check { check_id: "serfHealth".into(), name: "Serf Health Status".into(), ..Check::default() };
        let edits = vec![
            Command::Register(Box::new(Register {
                node: node(),
                skip_node_update: true,
                service: Some(foreign),
                checks: vec![serf],
            })),
            Command::Register(Box::new(Register {
                node: node(),
                skip_node_update: true,
                service: Some(consul),
                checks: vec![],
            })),
            Command::Register(Box::new(Register {
                node: node(),
                skip_node_update: true,
                service: Some(moved),
                checks: vec![],
            })),
            Command::Deregister(Deregister {
                node: "agent-one".into(),
                service_id: None,
                check_id: Some("service:web".into()),
            }),
        ];
        apply(&mut fsm, &mut index, edits);
        sync(&mut local, &mut fsm, &mut index);
        let catalog = fsm.catalog();
        let ids: Vec<&str> =
            catalog.node_services("agent-one").1.unwrap().1.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, vec!["consul", "web"]);
        assert_eq!(catalog.service("agent-one", "web").unwrap().port, 80);
        assert!(catalog.check("agent-one", "service:web").is_some());
        assert!(catalog.check("agent-one", "serfHealth").is_some());
    }

    #[test]
    fn removing_a_service_removes_its_checks_here_and_in_the_catalog() {
        let mut local = LocalState::new(node());
        local.add_service(web(), vec![ttl("service:web", ""), ttl("web-2", "")]).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        sync(&mut local, &mut fsm, &mut index);
        assert_eq!(local.remove_service("web"), Some(vec!["service:web".to_owned(), "web-2".to_owned()]));
        assert_eq!(local.remove_service("web"), None);
        let plan_now = plan(&mut local, &fsm);
        assert_eq!(plan_now.len(), 1, "one service deregistration carries its checks: {plan_now:?}");
        sync(&mut local, &mut fsm, &mut index);
        assert!(fsm.catalog().node_checks("agent-one").1.is_empty());
    }

    #[test]
    fn registering_a_service_again_drops_the_checks_it_no_longer_names() {
        let mut local = LocalState::new(node());
        local.add_service(web(), vec![ttl("a", ""), ttl("b", "")]).unwrap();
        let mut retagged = web();
        retagged.tags = vec!["v2".into()];
        assert_eq!(local.add_service(retagged, vec![ttl("b", "")]), Ok(vec!["a".to_owned()]));
        let ids: Vec<&String> = local.checks().keys().collect();
        assert_eq!(ids, vec!["b"]);
        assert_eq!(local.checks()["b"].service_tags, vec!["v2".to_owned()]);
    }

    #[test]
    fn a_status_change_is_one_write() {
        let mut local = LocalState::new(node());
        local.add_service(web(), vec![ttl("service:web", "")]).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        sync(&mut local, &mut fsm, &mut index);
        local.update_check("service:web", Health::Passing, "ok".into()).unwrap();
        let writes = plan(&mut local, &fsm);
        assert_eq!(writes.len(), 1);
        let Command::Register(register) = &writes[0] else { panic!("{writes:?}") };
        assert_eq!((register.service.is_none(), register.checks.len()), (true, 1));
        sync(&mut local, &mut fsm, &mut index);
        assert_eq!(fsm.catalog().check("agent-one", "service:web").unwrap().output, "ok");
    }

    #[test]
    fn tag_override_keeps_the_catalogs_tags() {
        let mut local = LocalState::new(node());
        let mut service = web();
        service.enable_tag_override = true;
        local.add_service(service.clone(), vec![]).unwrap();
        let mut fsm = Fsm::new();
        let mut index = 0;
        sync(&mut local, &mut fsm, &mut index);
        service.tags = vec!["edited".into()];
        let edit = Register { node: node(), skip_node_update: true, service: Some(service), checks: vec![] };
        apply(&mut fsm, &mut index, vec![Command::Register(Box::new(edit))]);
        assert_eq!(plan(&mut local, &fsm), vec![]);
        assert_eq!(local.services()["web"].tags, vec!["edited".to_owned()]);
    }

    /// What a test run may do: to the agent, to the catalog behind its back, or a sync.
    #[derive(Debug, Clone)]
    enum Op {
        AddService { service: u8, port: u16, tags: u8, checks: u8 },
        RemoveService(u8),
        AddCheck { check: u8, service: Option<u8> },
        RemoveCheck(u8),
        UpdateCheck { check: u8, status: u8 },
        CatalogRegister { service: u8, port: u16 },
        CatalogDeregisterService(u8),
        CatalogDeregisterCheck(u8),
        CatalogMoveNode,
        Sync,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0..4u8, 1..4u16, 0..3u8, 0..3u8).prop_map(|(service, port, tags, checks)| Op::AddService {
                service,
                port,
                tags,
                checks
            }),
            (0..4u8).prop_map(Op::RemoveService),
            (0..4u8, proptest::option::of(0..4u8))
                .prop_map(|(check, service)| Op::AddCheck { check, service }),
            (0..4u8).prop_map(Op::RemoveCheck),
            (0..4u8, 0..3u8).prop_map(|(check, status)| Op::UpdateCheck { check, status }),
            (0..5u8, 1..4u16).prop_map(|(service, port)| Op::CatalogRegister { service, port }),
            (0..5u8).prop_map(Op::CatalogDeregisterService),
            (0..5u8).prop_map(Op::CatalogDeregisterCheck),
            Just(Op::CatalogMoveNode),
            Just(Op::Sync),
        ]
    }

    fn service_named(n: u8, port: u16, tags: u8) -> Service {
        Service {
            id: format!("s{n}"),
            service: format!("svc{}", n % 2),
            port,
            tags: (0..tags).map(|t| format!("t{t}")).collect(),
            ..Service::default()
        }
    }

    proptest::proptest! {
        /// Whatever the agent and others do, one sync makes the catalog's rows for the node
        /// equal the agent's, except the leader's own rows, which it never touches.
        #[test]
        fn one_sync_makes_the_catalog_match(ops in proptest::collection::vec(op(), 1..60)) {
            let mut local = LocalState::new(node());
            let mut fsm = Fsm::new();
            let mut index = 0;
            let serf = Check { check_id: LEADER_CHECK_ID.into(), name: "Serf Health Status".into(), ..Check::default() };
            let leader_rows = Register {
                node: node(),
                skip_node_update: false,
                service: Some(Service { id: LEADER_SERVICE_ID.into(), service: "consul".into(), ..Service::default() }),
                checks: vec![serf],
            };
            apply(&mut fsm, &mut index, vec![Command::Register(Box::new(leader_rows))]);
            for op in ops {
                let catalog_write = match op {
                    Op::AddService { service, port, tags, checks } => {
                        let service = service_named(service, port, tags);
                        let checks = (0..checks).map(|c| ttl(&format!("{}:{c}", service.id), "")).collect();
                        local.add_service(service, checks).unwrap();
                        None
                    }
                    Op::RemoveService(n) => {
                        local.remove_service(&format!("s{n}"));
                        None
                    }
                    Op::AddCheck { check, service } => {
                        let service_id = service.map(|s| format!("s{s}")).unwrap_or_default();
                        let known = service_id.is_empty() || local.services().contains_key(&service_id);
                        let result = local.add_check(ttl(&format!("c{check}"), &service_id));
                        proptest::prop_assert_eq!(result.is_ok(), known);
                        None
                    }
                    Op::RemoveCheck(n) => {
                        local.remove_check(&format!("c{n}"));
                        None
                    }
                    Op::UpdateCheck { check, status } => {
                        let status = [Health::Passing, Health::Warning, Health::Critical][usize::from(status)];
                        let _ = local.update_check(&format!("c{check}"), status, format!("{status:?}"));
                        None
                    }
                    Op::CatalogRegister { service, port } => Some(Command::Register(Box::new(Register {
                        node: node(),
                        skip_node_update: true,
                        service: Some(service_named(service, port, 1)),
                        checks: vec![],
                    }))),
                    Op::CatalogDeregisterService(n) => Some(Command::Deregister(Deregister {
                        node: "agent-one".into(),
                        service_id: Some(format!("s{n}")),
                        check_id: None,
                    })),
                    Op::CatalogDeregisterCheck(n) => Some(Command::Deregister(Deregister {
                        node: "agent-one".into(),
                        service_id: None,
                        check_id: Some(format!("c{n}")),
                    })),
                    Op::CatalogMoveNode => {
                        let moved = Node { address: "10.9.9.9".into(), ..node() };
                        Some(Command::Register(Box::new(Register { node: moved, skip_node_update: false, service: None, checks: vec![] })))
                    }
                    Op::Sync => {
                        sync(&mut local, &mut fsm, &mut index);
                        let catalog = fsm.catalog();
                        let services: Rows<Service> = catalog
                            .node_services("agent-one").1.unwrap().1.into_iter()
                            .filter(|s| s.id != LEADER_SERVICE_ID)
                            .map(|s| (s.id.clone(), Arc::new(row_of_service(s))))
                            .collect();
                        proptest::prop_assert_eq!(&services, local.services());
                        let checks: Rows<Check> = catalog
                            .node_checks("agent-one").1.into_iter()
                            .filter(|c| c.check_id != LEADER_CHECK_ID)
                            .map(|c| (c.check_id.clone(), Arc::new(row_of_check(c))))
                            .collect();
                        proptest::prop_assert_eq!(&checks, local.checks());
                        proptest::prop_assert_eq!(row_of_node(catalog.node("agent-one").unwrap()), local.node().clone());
                        proptest::prop_assert!(catalog.service("agent-one", LEADER_SERVICE_ID).is_some());
                        proptest::prop_assert!(catalog.check("agent-one", LEADER_CHECK_ID).is_some());
                        None
                    }
                };
                if let Some(write) = catalog_write {
                    apply(&mut fsm, &mut index, vec![write]);
                }
            }
        }
    }

    proptest::proptest! {
        /// The agent's own changes, each followed by the one write for the row it touched
        /// (partial sync), leave nothing for a full sync to do: pushing a row is exactly what
        /// the full plan would have written for it.
        #[test]
        fn pushing_each_changed_row_keeps_the_catalog_in_sync(ops in proptest::collection::vec(op(), 1..60)) {
            let mut local = LocalState::new(node());
            let mut fsm = Fsm::new();
            let mut index = 0;
            sync(&mut local, &mut fsm, &mut index);
            for op in ops {
                let touched = match op {
                    Op::AddService { service, port, tags, checks } => {
                        let service = service_named(service, port, tags);
                        let id = service.id.clone();
                        let checks = (0..checks).map(|c| ttl(&format!("{id}:{c}"), "")).collect();
                        let dropped = local.add_service(service, checks).unwrap();
                        // A re-registration drops the checks it no longer names.
                        std::iter::once(Row::Service(id)).chain(dropped.into_iter().map(Row::Check)).collect()
                    }
                    Op::RemoveService(n) => {
                        let id = format!("s{n}");
                        let dropped = local.remove_service(&id).unwrap_or_default();
                        std::iter::once(Row::Service(id)).chain(dropped.into_iter().map(Row::Check)).collect()
                    }
                    Op::AddCheck { check, service } => {
                        let service_id = service.map(|s| format!("s{s}")).unwrap_or_default();
                        let _ = local.add_check(ttl(&format!("c{check}"), &service_id));
                        vec![Row::Check(format!("c{check}"))]
                    }
                    Op::RemoveCheck(n) => {
                        local.remove_check(&format!("c{n}"));
                        vec![Row::Check(format!("c{n}"))]
                    }
                    Op::UpdateCheck { check, status } => {
                        let status = [Health::Passing, Health::Warning, Health::Critical][usize::from(status)];
                        let _ = local.update_check(&format!("c{check}"), status, format!("{status:?}"));
                        vec![Row::Check(format!("c{check}"))]
                    }
                    _ => Vec::new(),
                };
                let pushes: Vec<Command> = touched.iter().map(|row| local.push(row)).collect();
                apply(&mut fsm, &mut index, pushes);
                proptest::prop_assert_eq!(plan(&mut local, &fsm), Vec::<Command>::new());
            }
        }
    }

    #[test]
    fn changed_rows_names_exactly_what_changed() {
        let mut local = LocalState::new(node());
        for n in 0..100 {
            local.add_check(ttl(&format!("c{n}"), "")).unwrap();
        }
        let before = local.checks().clone();
        local.update_check("c7", Health::Passing, "ok".into()).unwrap();
        local.remove_check("c8");
        local.add_check(ttl("new", "")).unwrap();
        let changed: Vec<(&str, Option<Health>)> = changed_rows(&before, local.checks())
            .into_iter()
            .map(|(id, check)| (id.as_str(), check.map(|c| c.status)))
            .collect();
        assert_eq!(
            changed,
            vec![("c7", Some(Health::Passing)), ("c8", None), ("new", Some(Health::Critical))]
        );
    }

    #[test]
    fn refusals_change_nothing() {
        let mut local = LocalState::new(node());
        let before = local.clone();
        assert_eq!(local.add_check(ttl("c", "nope")), Err(LocalError::UnknownService("nope".into())));
        assert_eq!(
            local.update_check("c", Health::Passing, String::new()).map(|_| ()),
            Err(LocalError::UnknownCheck("c".into()))
        );
        let consul = Service { id: "consul".into(), service: "consul".into(), ..Service::default() };
        assert_eq!(local.add_service(consul, vec![]), Err(LocalError::Reserved("consul".into())));
        assert_eq!(
            local.add_service(web(), vec![ttl("serfHealth", "")]),
            Err(LocalError::Reserved("serfHealth".into()))
        );
        assert_eq!(local.add_check(ttl("serfHealth", "")), Err(LocalError::Reserved("serfHealth".into())));
        assert_eq!(local, before);
    }
}
