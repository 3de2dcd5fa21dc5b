//! The state machine against Consul's semantics, case by case, and against a plain reference
//! model over random operation sequences (proptest, with shrinking).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const NODE_ID: &str = "6a2f6a0e-0c3c-4c5e-9b0e-2f0b6f8f2a11";

fn set(key: &str, value: &'static str, flags: u64) -> Command {
    Command::KvSet(KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags })
}

fn cas(key: &str, value: &'static str, index: Index) -> Command {
    let set = KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags: 0 };
    Command::KvCas(KvCas { set, index })
}

/// The leader clock the tests stamp on entry `index`: 3 ms per entry.
fn now_ms(index: Index) -> u64 {
    1_000_000 + index * 3
}

/// Applies commands at the next indexes through the encoding, as the log delivers them.
fn run(fsm: &mut Fsm, commands: &[Command]) -> Vec<Response> {
    commands.iter().map(|command| apply(fsm, command).response).collect()
}

/// Applies one command at the next index through the encoding.
fn apply(fsm: &mut Fsm, command: &Command) -> Applied {
    let index = fsm.applied() + 1;
    fsm.apply(index, &command.encode(now_ms(index))).expect("decodes")
}

#[test]
fn indexes_follow_consul_create_modify_and_the_table_index_for_missing_keys() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("web/a", "1", 7), set("web/b", "2", 0), set("web/a", "3", 0)]);
    let (index, entry) = fsm.kv().get("web/a");
    let entry = entry.unwrap();
    assert_eq!((index, entry.create_index, entry.modify_index, entry.flags), (3, 1, 3, 0));
    assert_eq!(entry.value, Bytes::from_static(b"3"), "a plain put resets the flags");
    assert_eq!(fsm.kv().get("web/zzz"), (3, None), "missing: the table index");
    assert_eq!(fsm.kv().list("web/").0, 3);
    assert_eq!(fsm.kv().list("nothing/"), (3, vec![]), "nothing there: the table index");
}

#[test]
fn check_and_set_creates_only_when_absent_with_zero_and_otherwise_matches_modify_index() {
    let mut fsm = Fsm::new();
    let responses = run(&mut fsm, &[cas("k", "a", 0), cas("k", "b", 0), cas("k", "c", 1), cas("k", "d", 1)]);
    assert_eq!(
        responses,
        [Response::Bool(true), Response::Bool(false), Response::Bool(true), Response::Bool(false)]
    );
    assert_eq!(fsm.kv().get("k").1.unwrap().value, Bytes::from_static(b"c"));
    let refused = run(&mut fsm, &[Command::KvDeleteCas(KvDeleteCas { key: "k".into(), index: 0 })]);
    assert_eq!(refused, [Response::Bool(false)], "delete-cas with 0 never deletes a present key");
    let deleted = run(&mut fsm, &[Command::KvDeleteCas(KvDeleteCas { key: "k".into(), index: 3 })]);
    assert_eq!(deleted, [Response::Bool(true)]);
    assert_eq!(fsm.kv().get("k"), (6, None));
    let missing = run(&mut fsm, &[Command::KvDeleteCas(KvDeleteCas { key: "k".into(), index: 3 })]);
    assert_eq!(missing, [Response::Bool(true)], "a missing key counts as deleted (Consul)");
    assert_eq!(fsm.kv().get("k"), (6, None), "and nothing moved");
}

#[test]
fn deletes_leave_tombstones_that_keep_a_prefix_index_from_going_back_until_reaped() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("a/1", "x", 0), set("a/2", "y", 0), set("b/1", "z", 0)]);
    run(&mut fsm, &[Command::KvDelete(KvDelete { key: "a/2".into() })]);
    // The newest write under a/ is gone, but its tombstone answers for it: index 4, not 1.
    assert_eq!(fsm.kv().list("a/").0, 4);
    assert_eq!(fsm.kv().keys("a/", None), (4, vec!["a/1".to_owned()]));
    run(&mut fsm, &[Command::KvDeleteTree(KvDeleteTree { prefix: "a/".into() })]);
    assert_eq!(fsm.kv().list("a/"), (5, vec![]));
    assert_eq!(fsm.kv().tombstones(), 2, "a/2, and one for the deleted tree");
    let reaped = run(&mut fsm, &[Command::TombstoneReap(TombstoneReap { up_to: 4 })]);
    assert_eq!(reaped, [Response::Reaped(1)]);
    assert_eq!(fsm.kv().list("a/").0, 5, "the tombstone at 5 remains");
    assert_eq!(fsm.kv().index(), 5, "a reap does not move the table index (Consul)");
    run(&mut fsm, &[Command::TombstoneReap(TombstoneReap { up_to: 5 })]);
    assert_eq!(fsm.kv().list("a/").0, 5, "nothing left under a/: the table index");
}

#[test]
fn keys_with_a_separator_stop_at_the_first_separator_after_the_prefix() {
    let mut fsm = Fsm::new();
    run(
        &mut fsm,
        &[set("web/bar", "", 0), set("web/subdir/a", "", 0), set("web/subdir/b", "", 0), set("webx", "", 0)],
    );
    let (index, keys) = fsm.kv().keys("web/", Some("/"));
    assert_eq!(keys, ["web/bar", "web/subdir/"]);
    assert_eq!(index, 3, "collapsed keys count towards the index");
    assert_eq!(fsm.kv().keys("", Some("/")).1, ["web/", "webx"]);
}

#[test]
fn refused_commands_change_nothing_but_the_applied_index() {
    let mut fsm = Fsm::new();
    assert_eq!(VALUE_BYTES_MAX, 524_288, "Consul's kv_max_value_size");
    let largest =
        Command::KvSet(KvSet { key: "k".into(), value: Bytes::from(vec![0u8; VALUE_BYTES_MAX]), flags: 0 });
    assert_eq!(largest.validate(), Ok(()));
    let big = Bytes::from(vec![0u8; VALUE_BYTES_MAX + 1]);
    let too_large = Command::KvSet(KvSet { key: "k".into(), value: big, flags: 0 });
    assert_eq!(
        too_large.validate(),
        Err(CommandError::ValueTooLarge { key: "k".into(), size: VALUE_BYTES_MAX + 1, max: VALUE_BYTES_MAX })
    );
    let responses = run(&mut fsm, &[too_large, set("", "v", 0)]);
    assert!(matches!(responses[..], [Response::Rejected(_), Response::Rejected(CommandError::MissingKey)]));
    assert_eq!((fsm.kv().len(), fsm.kv().index(), fsm.applied()), (0, 0, 2));
    assert!(fsm.kv().is_empty());
    run(&mut fsm, &[set("k", "v", 0)]);
    assert!(!fsm.kv().is_empty());
}

#[test]
fn unknown_commands_are_skipped_only_when_marked_ignorable() {
    let mut fsm = Fsm::new();
    let stamp = [0u8; 8];
    let applied = fsm.apply(1, &[&[COMMAND_VERSION, 0x90][..], &stamp, &[1, 2, 3]].concat()).unwrap();
    assert_eq!(applied.response, Response::Ignored);
    assert_eq!(
        fsm.apply(2, &[&[COMMAND_VERSION, 0x30][..], &stamp].concat()),
        Err(ApplyError { index: 2, error: DecodeError::UnknownType(0x30) })
    );
    assert_eq!(
        fsm.apply(3, &[9, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().error,
        DecodeError::UnsupportedVersion(9)
    );
    assert_eq!(fsm.apply(4, &[COMMAND_VERSION, 1, 0]).unwrap_err().error, DecodeError::Truncated);
    let mut encoded = set("k", "v", 0).encode(7).to_vec();
    encoded.push(0);
    assert_eq!(fsm.apply(5, &encoded).unwrap_err().error, DecodeError::TrailingBytes(1));
}

#[test]
fn a_snapshot_restores_the_same_state_and_damage_is_refused() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("a", "1", 3), set("b", "2", 0), Command::KvDelete(KvDelete { key: "a".into() })]);
    let bytes = fsm.snapshot();
    let restored = Fsm::restore(&bytes).unwrap();
    assert_eq!(restored, fsm);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(Fsm::restore(b"nope"), Err(SnapshotError::Format));
    for cut in 5..bytes.len() {
        assert!(Fsm::restore(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn a_write_that_changes_nothing_moves_no_index_and_wakes_no_one() {
    let mut fsm = Fsm::new();
    run(&mut fsm, &[set("k", "v", 1)]);
    let again = apply(&mut fsm, &set("k", "v", 1));
    assert_eq!(again.response, Response::Bool(true));
    assert!(again.touched.is_empty());
    assert_eq!((fsm.kv().get("k").0, fsm.kv().index(), fsm.applied()), (1, 1, 2));
}

// --- the catalog -------------------------------------------------------------------------------

fn node(name: &str, address: &str) -> Node {
    Node { node: name.into(), address: address.into(), datacenter: "dc1".into(), ..Node::default() }
}

fn service(id: &str, name: &str, tags: &[&str], port: u16) -> Service {
    Service {
        id: id.into(),
        service: name.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        port,
        ..Service::default()
    }
}

fn check(id: &str, service_id: &str, status: Health) -> Check {
    Check { check_id: id.into(), name: id.into(), service_id: service_id.into(), status, ..Check::default() }
}

fn register(node: Node, service: Option<Service>, checks: Vec<Check>) -> Command {
    Command::Register(Box::new(Register { node, skip_node_update: false, service, checks }))
}

fn deregister(node: &str, service_id: Option<&str>, check_id: Option<&str>) -> Command {
    Command::Deregister(Deregister {
        node: node.into(),
        service_id: service_id.map(Into::into),
        check_id: check_id.map(Into::into),
    })
}

/// Two nodes with `web` on both (tags differ) and `db` on one; `web` on n2 is critical.
fn catalog() -> Fsm {
    let mut fsm = Fsm::new();
    let responses = run(
        &mut fsm,
        &[
            register(
                node("n1", "10.0.0.1"),
                Some(service("web", "web", &["rails", "v1"], 80)),
                vec![check(SERF_HEALTH, "", Health::Passing), check("web-http", "web", Health::Passing)],
            ),
            register(node("n1", "10.0.0.1"), Some(service("db", "db", &["primary"], 5432)), vec![]),
            register(
                node("n2", "10.0.0.2"),
                Some(service("web-2", "web", &["v2"], 8080)),
                vec![check("web-2-tcp", "web-2", Health::Critical)],
            ),
        ],
    );
    assert!(responses.iter().all(|r| *r == Response::Bool(true)), "{responses:?}");
    fsm
}

#[test]
fn registration_fills_the_tables_with_consul_indexes_and_queries_answer_from_them() {
    let fsm = catalog();
    let catalog = fsm.catalog();
    let (index, nodes) = catalog.nodes();
    assert_eq!((index, nodes.iter().map(|n| n.node.as_str()).collect::<Vec<_>>()), (3, vec!["n1", "n2"]));
    let n1 = catalog.node("n1").unwrap();
    assert_eq!((n1.create_index, n1.modify_index), (1, 1), "re-registering the same node moved nothing");
    let (index, services) = catalog.services();
    assert_eq!(index, 3);
    assert_eq!(services["web"].iter().copied().collect::<Vec<_>>(), ["rails", "v1", "v2"], "the tag union");
    assert_eq!(services["db"].iter().copied().collect::<Vec<_>>(), ["primary"]);
    let (index, web) = catalog.service_nodes("web", &[]);
    assert_eq!(index, 3, "web last changed at 3");
    let ids: Vec<(&str, &str)> = web.iter().map(|(n, s)| (n.node.as_str(), s.id.as_str())).collect();
    assert_eq!(ids, [("n1", "web"), ("n2", "web-2")]);
    assert_eq!(catalog.service_nodes("web", &["RAILS"]).1.len(), 1, "tags match case-insensitively");
    assert_eq!(catalog.service_nodes("web", &["rails", "v2"]).1.len(), 0, "several tags: all of them");
    assert_eq!(catalog.service_index("db"), 2);
    assert_eq!(catalog.service_nodes("nope", &[]), (3, vec![]), "unknown: the services table index");
    let check = catalog.check("n1", "web-http").unwrap();
    assert_eq!(
        (check.service_name.as_str(), check.service_tags.len()),
        ("web", 2),
        "filled from the service"
    );
}

#[test]
fn health_service_lists_node_checks_first_and_passing_drops_any_non_passing_instance() {
    let fsm = catalog();
    let (index, all) = fsm.catalog().health_service("web", &[], false);
    assert_eq!(index, 3);
    assert_eq!(all.len(), 2);
    let checks: Vec<&str> = all[0].checks.iter().map(|c| c.check_id.as_str()).collect();
    assert_eq!(checks, [SERF_HEALTH, "web-http"]);
    assert_eq!(Health::worst(all[1].checks.iter().copied()), Health::Critical);
    let (_, passing) = fsm.catalog().health_service("web", &[], true);
    assert_eq!(passing.iter().map(|i| i.service.id.as_str()).collect::<Vec<_>>(), ["web"]);
    let (_, critical) = fsm.catalog().checks_in_state(Some(Health::Critical));
    assert_eq!(critical.iter().map(|c| c.check_id.as_str()).collect::<Vec<_>>(), ["web-2-tcp"]);
    assert_eq!(fsm.catalog().service_checks("web").1.len(), 2);
    assert_eq!(fsm.catalog().node_checks("n1").1.len(), 2);
}

#[test]
fn a_node_level_check_changes_every_service_on_its_node() {
    let mut fsm = catalog();
    let applied = apply(
        &mut fsm,
        &Command::Register(Box::new(Register {
            node: node("n1", "10.0.0.1"),
            skip_node_update: true,
            service: None,
            checks: vec![check(SERF_HEALTH, "", Health::Critical)],
        })),
    );
    assert_eq!(applied.touched.tables, [Table::Checks]);
    assert_eq!(applied.touched.services, ["db", "web"]);
    assert_eq!(applied.touched.nodes, ["n1"]);
    assert_eq!((fsm.catalog().service_index("web"), fsm.catalog().service_index("db")), (4, 4));
    assert!(fsm.catalog().health_service("web", &[], true).1.is_empty(), "n1 is down, n2's web is critical");
}

#[test]
fn deregistration_removes_a_check_a_service_with_its_checks_or_a_node_with_everything() {
    let mut fsm = catalog();
    assert_eq!(run(&mut fsm, &[deregister("n9", None, None), deregister("n1", Some("nope"), None)]).len(), 2);
    assert_eq!(fsm.catalog().index(), 3, "deregistering nothing changes nothing");
    run(&mut fsm, &[deregister("n1", None, Some("web-http"))]);
    assert!(fsm.catalog().check("n1", "web-http").is_none());
    assert_eq!(fsm.catalog().service_index("web"), 6);
    run(&mut fsm, &[deregister("n2", Some("web-2"), None)]);
    assert!(fsm.catalog().check("n2", "web-2-tcp").is_none(), "a service's checks go with it");
    assert_eq!(fsm.catalog().service_nodes("web", &[]).1.len(), 1);
    let gone = apply(&mut fsm, &deregister("n1", None, None));
    assert_eq!(gone.touched.services, ["db", "web"]);
    assert!(fsm.catalog().node("n1").is_none());
    assert_eq!(fsm.catalog().node_checks("n1").1.len(), 0);
    assert!(fsm.catalog().services().1.is_empty(), "no instance of any name is left");
    assert_eq!(fsm.catalog().service_nodes("web", &[]).0, 8, "a vanished name answers with the table index");
}

#[test]
fn bad_registrations_are_refused_with_consul_messages_and_change_nothing() {
    let mut fsm = catalog();
    let before = fsm.snapshot();
    let cases = [
        (register(node("", "10.0.0.9"), None, vec![]), "Must provide node"),
        (register(node("n3", ""), None, vec![]), "Must provide address if SkipNodeUpdate is not set"),
        (
            register(node("n3", "10.0.0.3"), Some(service("x", "", &[], 1)), vec![]),
            "Must provide service name (Service.Service) when service ID is provided",
        ),
        (
            register(node("n3", "10.0.0.3"), None, vec![check("c", "ghost", Health::Passing)]),
            "failed inserting check on node \"n3\": Missing service registration",
        ),
        (
            register(
                node("n3", "10.0.0.3"),
                None,
                vec![Check { node: "n1".into(), ..check("c", "", Health::Passing) }],
            ),
            "check node \"n1\" does not match node \"n3\"",
        ),
        (
            register(Node { id: "not-a-uuid".into(), ..node("n3", "10.0.0.3") }, None, vec![]),
            "Bad node ID: uuid string is wrong length",
        ),
    ];
    for (command, message) in cases {
        match apply(&mut fsm, &command).response {
            Response::Rejected(error) => assert_eq!(error.to_string(), message),
            other => panic!("{command:?} answered {other:?}"),
        }
    }
    let mut unchanged = Fsm::restore(&before).unwrap();
    assert_eq!(unchanged.catalog(), fsm.catalog());
    unchanged.applied = fsm.applied();
    assert_eq!(unchanged, fsm);
}

#[test]
fn a_node_id_keeps_a_live_nodes_name_and_a_known_id_renames_its_node() {
    let mut fsm = catalog();
    let with_id = Node { id: NODE_ID.into(), ..node("n1", "10.0.0.1") };
    assert_eq!(run(&mut fsm, &[register(with_id, None, vec![])]), [Response::Bool(true)]);
    // n1 is alive (serfHealth passing): another ID may not take its name.
    let other = Node { id: NODE_ID.replace('6', "7"), ..node("n1", "10.0.0.7") };
    match apply(&mut fsm, &register(other, None, vec![])).response {
        Response::Rejected(error) => assert!(
            error.to_string().starts_with("failed inserting node: Error while renaming Node ID: \"7a2f"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    // The same ID under a new name: the old node goes, with its services and checks.
    let renamed = Node { id: NODE_ID.to_uppercase(), ..node("n1-renamed", "10.0.0.1") };
    assert_eq!(run(&mut fsm, &[register(renamed, None, vec![])]), [Response::Bool(true)]);
    assert!(fsm.catalog().node("n1").is_none());
    assert_eq!(fsm.catalog().node_by_id(NODE_ID).unwrap().node, "n1-renamed");
    assert_eq!(fsm.catalog().service_nodes("db", &[]).1.len(), 0);
}

// --- sessions and locks -----------------------------------------------------------------------

fn session(id: &str, behavior: Behavior, lock_delay_ms: u64, node_checks: &[&str]) -> Command {
    Command::SessionCreate(Session {
        id: id.into(),
        name: format!("{id}-name"),
        node: "n1".into(),
        lock_delay_ms,
        behavior,
        node_checks: node_checks.iter().map(|c| (*c).to_owned()).collect(),
        ..Session::default()
    })
}

fn lock(key: &str, value: &'static str, session: &str) -> Command {
    let set = KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags: 0 };
    Command::KvLock(KvLock { set, session: session.into() })
}

fn unlock(key: &str, value: &'static str, session: &str) -> Command {
    let set = KvSet { key: key.into(), value: Bytes::from_static(value.as_bytes()), flags: 0 };
    Command::KvUnlock(KvUnlock { set, session: session.into() })
}

#[test]
fn session_reads_answer_by_id_and_by_node_with_the_table_index() {
    let mut fsm = catalog();
    assert!(fsm.sessions().is_empty());
    let on_n2 = Command::SessionCreate(Session { id: "s3".into(), node: "n2".into(), ..Session::default() });
    let responses = run(
        &mut fsm,
        &[session("s2", Behavior::Delete, 0, &[]), session("s1", Behavior::Release, 0, &[]), on_n2],
    );
    assert!(responses.iter().all(|r| *r == Response::Bool(true)), "{responses:?}");
    let index = fsm.applied();

    let sessions = fsm.sessions();
    assert_eq!((sessions.len(), sessions.is_empty(), sessions.index()), (3, false, index));
    let (at, found) = sessions.info("s2");
    assert_eq!((at, found.map(|s| (s.id.as_str(), s.behavior.as_str()))), (index, Some(("s2", "delete"))));
    assert_eq!(sessions.info("s9"), (index, None));
    let ids =
        |(at, found): (Index, Vec<&Session>)| (at, found.iter().map(|s| s.id.clone()).collect::<Vec<_>>());
    assert_eq!(ids(sessions.of_node("n1")), (index, vec!["s1".to_owned(), "s2".to_owned()]), "by ID");
    assert_eq!(ids(sessions.of_node("n2")), (index, vec!["s3".to_owned()]));
    assert_eq!(ids(sessions.of_node("n9")), (index, vec![]));
    assert_eq!(Behavior::Release.as_str(), "release");
}

#[test]
fn sessions_need_their_node_and_live_checks() {
    let mut fsm = catalog();
    let rejected = |fsm: &mut Fsm, command: Command| match apply(fsm, &command).response {
        Response::Rejected(error) => error.to_string(),
        other => panic!("{other:?}"),
    };
    let on_n9 = Command::SessionCreate(Session { id: "s".into(), node: "n9".into(), ..Session::default() });
    assert_eq!(rejected(&mut fsm, on_n9), "Missing node registration");
    assert_eq!(
        rejected(&mut fsm, session("s", Behavior::Release, 0, &["nope"])),
        "Missing check 'nope' registration"
    );
    run(&mut fsm, &[register(node("n1", "10.0.0.1"), None, vec![check("down", "", Health::Critical)])]);
    assert_eq!(
        rejected(&mut fsm, session("s", Behavior::Release, 0, &["down"])),
        "Check 'down' is in critical state"
    );
    assert_eq!(run(&mut fsm, &[session("s", Behavior::Release, 0, &[SERF_HEALTH])]), [Response::Bool(true)]);
    assert_eq!(
        rejected(&mut fsm, session("s", Behavior::Release, 0, &[])),
        "Session ID \"s\" already exists"
    );
    let (index, sessions) = fsm.sessions().list();
    assert_eq!((index, sessions.len(), sessions[0].create_index), (8, 1, 8));
    assert_eq!(fsm.sessions().of_node("n1").1.len(), 1);
}

#[test]
fn locks_follow_consul_lock_index_rules_and_only_the_holder_releases() {
    let mut fsm = catalog();
    run(&mut fsm, &[session("s1", Behavior::Release, 0, &[]), session("s2", Behavior::Release, 0, &[])]);
    let responses = run(
        &mut fsm,
        &[
            lock("lock", "a", "s1"),   // 6: new key, LockIndex 1
            lock("lock", "b", "s1"),   // 7: the holder again: LockIndex stays
            lock("lock", "c", "s2"),   // 8: held by another: false
            unlock("lock", "d", "s2"), // 9: not the holder: false
            unlock("lock", "e", "s1"), // 10: released, value written
            lock("lock", "f", "s2"),   // 11: a new holder: LockIndex 2
        ],
    );
    let [t, f] = [Response::Bool(true), Response::Bool(false)];
    assert_eq!(responses, [t.clone(), t.clone(), f.clone(), f, t.clone(), t]);
    let entry = fsm.kv().get("lock").1.unwrap();
    assert_eq!(
        (
            entry.value.as_ref(),
            entry.lock_index,
            entry.session.as_deref(),
            entry.create_index,
            entry.modify_index
        ),
        (&b"f"[..], 2, Some("s2"), 6, 11)
    );
    // A plain PUT keeps the holder (and, as Consul's, resets the lock index).
    run(&mut fsm, &[set("lock", "g", 0)]);
    let entry = fsm.kv().get("lock").1.unwrap();
    assert_eq!((entry.session.as_deref(), entry.lock_index), (Some("s2"), 0));
    let missing = apply(&mut fsm, &lock("other", "x", "s9")).response;
    assert_eq!(missing, Response::Rejected(CommandError::Lock(LockError::InvalidSession("s9".into()))));
    assert_eq!(missing_message(missing), "invalid session \"s9\"");
}

fn missing_message(response: Response) -> String {
    match response {
        Response::Rejected(error) => error.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_destroyed_session_releases_its_keys_and_holds_them_for_its_lock_delay() {
    let mut fsm = catalog();
    run(&mut fsm, &[session("s1", Behavior::Release, 10, &[]), session("s2", Behavior::Release, 0, &[])]);
    run(&mut fsm, &[lock("a", "1", "s1"), lock("b", "2", "s1")]); // 6, 7
    let destroyed = apply(&mut fsm, &Command::SessionDestroy(SessionDestroy { id: "s1".into() })); // 8
    assert_eq!(destroyed.touched.keys, ["a", "b"]);
    assert_eq!(destroyed.touched.tables, [Table::Sessions]);
    let entry = fsm.kv().get("a").1.unwrap();
    assert_eq!((entry.session.as_deref(), entry.lock_index, entry.modify_index), (None, 1, 8));
    assert_eq!(fsm.kv().lock_delay("a"), Some(now_ms(8) + 10));
    // 3 ms per entry: entries 9, 10 and 11 are inside the 10 ms delay, 12 is past it.
    let attempts = run(
        &mut fsm,
        &[lock("a", "x", "s2"), lock("a", "x", "s2"), lock("a", "x", "s2"), lock("a", "x", "s2")],
    );
    assert_eq!(
        attempts,
        [Response::Bool(false), Response::Bool(false), Response::Bool(false), Response::Bool(true)]
    );
    assert_eq!(fsm.kv().lock_delay("a"), None, "an expired delay is dropped when the lock is taken");
    assert_eq!(
        run(&mut fsm, &[Command::SessionDestroy(SessionDestroy { id: "s1".into() })]),
        [Response::Bool(true)],
        "destroying an unknown session is a no-op"
    );
}

#[test]
fn a_check_going_critical_or_a_node_leaving_invalidates_its_sessions() {
    let mut fsm = catalog();
    run(
        &mut fsm,
        &[
            session("s1", Behavior::Delete, 0, &[SERF_HEALTH]),
            session("s2", Behavior::Release, 0, &["web-http"]),
            lock("by-s1", "1", "s1"),
            lock("by-s2", "2", "s2"),
        ],
    );
    let failing = register(node("n1", "10.0.0.1"), None, vec![check(SERF_HEALTH, "", Health::Critical)]);
    let applied = apply(&mut fsm, &failing); // 8
    assert!(fsm.sessions().get("s1").is_none());
    assert!(fsm.kv().get("by-s1").1.is_none(), "behavior delete: the key is deleted");
    assert_eq!(fsm.kv().list("by-s1").0, 8, "with a tombstone");
    assert!(applied.touched.tables.contains(&Table::Sessions));
    assert!(fsm.sessions().get("s2").is_some(), "s2 is bound to another check");
    run(&mut fsm, &[deregister("n1", None, None)]);
    assert!(fsm.sessions().is_empty(), "every session of a deregistered node goes");
    assert_eq!(fsm.kv().get("by-s2").1.unwrap().session, None, "behavior release: the key stays");
}

// --- transactions -----------------------------------------------------------------------------

fn kv_op(verb: KvVerb, key: &str, value: &'static str, index: Index) -> TxnOp {
    TxnOp::Kv(
        verb,
        KvOperand {
            key: key.into(),
            value: Bytes::from_static(value.as_bytes()),
            index,
            ..KvOperand::default()
        },
    )
}

#[test]
fn a_transaction_commits_every_operation_and_answers_consul_results() {
    let mut fsm = catalog();
    run(&mut fsm, &[set("existing", "old", 0)]); // 4
    let txn = Txn {
        ops: vec![
            kv_op(KvVerb::Set, "a", "1", 0),
            kv_op(KvVerb::Cas, "existing", "new", 4),
            kv_op(KvVerb::Get, "existing", "", 0),
            kv_op(KvVerb::CheckIndex, "a", "", 5),
            kv_op(KvVerb::Delete, "existing", "", 0),
            TxnOp::Node(CatalogVerb::Get, Box::new(node("n2", ""))),
            TxnOp::Service(CatalogVerb::Set, "n2".into(), Box::new(service("cache", "cache", &[], 6379))),
        ],
    };
    let applied = apply(&mut fsm, &Command::Txn(txn)); // 5
    let Response::Txn(Ok(results)) = applied.response else { panic!("{:?}", applied.response) };
    assert_eq!(results.len(), 6, "a delete yields no result");
    let TxnResult::Kv(set_result) = &results[0] else { panic!() };
    assert!(set_result.value.is_empty(), "writes answer without the value");
    let TxnResult::Kv(read) = &results[2] else { panic!() };
    assert_eq!(
        (read.value.as_ref(), read.modify_index),
        (&b"new"[..], 5),
        "a read sees the writes before it"
    );
    assert!(matches!(&results[5], TxnResult::Service(node, s) if node == "n2" && s.create_index == 5));
    assert!(fsm.kv().get("existing").1.is_none());
    assert_eq!(fsm.catalog().service_nodes("cache", &[]).1.len(), 1);
    assert!(applied.touched.keys.contains(&"a".to_owned()));
    assert!(applied.touched.services.contains(&"cache".to_owned()));
}

#[test]
fn a_failing_transaction_reports_every_failure_and_changes_nothing() {
    let mut fsm = catalog();
    run(&mut fsm, &[set("k", "v", 0)]); // 4
    let before = fsm.snapshot();
    let txn = Txn {
        ops: vec![
            kv_op(KvVerb::Set, "fresh", "1", 0),
            kv_op(KvVerb::Cas, "k", "x", 3),
            kv_op(KvVerb::Get, "nope", "", 0),
            kv_op(KvVerb::CheckNotExists, "k", "", 0),
            TxnOp::Check(
                CatalogVerb::Get,
                Box::new(Check { node: "n1".into(), ..check("ghost", "", Health::Passing) }),
            ),
            kv_op(KvVerb::DeleteCas, "k", "", 3),
        ],
    };
    let applied = apply(&mut fsm, &Command::Txn(txn)); // 5
    let Response::Txn(Err(errors)) = applied.response else { panic!("{:?}", applied.response) };
    let errors: Vec<(usize, &str)> = errors.iter().map(|e| (e.op_index, e.what.as_str())).collect();
    assert_eq!(
        errors,
        [
            (1, "failed to set key \"k\", index is stale"),
            (2, "key \"nope\" doesn't exist"),
            (3, "key \"k\" exists"),
            (4, "check \"ghost\" on node \"n1\" doesn't exist"),
            (5, "failed to delete key \"k\", index is stale"),
        ]
    );
    assert!(applied.touched.is_empty());
    assert!(fsm.kv().get("fresh").1.is_none(), "the first operation was rolled back");
    let mut unchanged = Fsm::restore(&before).unwrap();
    unchanged.applied = 5;
    assert_eq!(unchanged, fsm);
    let too_many = Txn { ops: vec![kv_op(KvVerb::Get, "k", "", 0); TXN_OPS_MAX + 1] };
    assert_eq!(
        missing_message(apply(&mut fsm, &Command::Txn(too_many)).response),
        "Transaction contains too many operations (129 > 128)"
    );
}

#[test]
fn a_read_only_transaction_is_answered_without_the_log() {
    let mut fsm = catalog();
    run(&mut fsm, &[set("k", "v", 0)]);
    let reads = Txn { ops: vec![kv_op(KvVerb::Get, "k", "", 0), kv_op(KvVerb::GetTree, "k", "", 0)] };
    let Some(Ok(results)) = fsm.read_txn(&reads) else { panic!() };
    assert_eq!(results.len(), 2);
    let writes = Txn { ops: vec![kv_op(KvVerb::Set, "k", "w", 0)] };
    assert_eq!(fsm.read_txn(&writes), None);
    assert_eq!(fsm.applied(), 4);
}

#[test]
fn a_snapshot_of_the_whole_state_restores_its_derived_indexes() {
    let mut fsm = catalog();
    run(&mut fsm, &[session("s1", Behavior::Release, 0, &[SERF_HEALTH]), lock("held", "1", "s1")]);
    let bytes = fsm.snapshot();
    let mut restored = Fsm::restore(&bytes).unwrap();
    assert_eq!(restored, fsm);
    assert_eq!(restored.snapshot(), bytes);
    // The restored copy knows which keys s1 holds and which sessions its node has.
    let destroyed = apply(&mut restored, &deregister("n1", None, None));
    assert_eq!(destroyed.touched.keys, ["held"]);
    assert!(restored.sessions().is_empty());
}

// --- the reference model ----------------------------------------------------------------------

/// One entry of the model: (value, flags, create, modify, lock index, holder).
type ModelEntry = (Bytes, u64, Index, Index, u64, Option<String>);

/// Consul's KV, session and lock semantics written the plain way: linear scans, no derived
/// indexes, no cleverness. Node `n1` is registered at index 1 for sessions to live on.
#[derive(Default)]
struct Model {
    entries: BTreeMap<String, ModelEntry>,
    tombstones: Vec<(String, Index)>,
    table: Index,
    /// id → (behavior, lock delay ms)
    sessions: BTreeMap<String, (Behavior, u64)>,
    /// key → the time its lock delay ends
    delays: BTreeMap<String, u64>,
}

impl Model {
    fn apply(&mut self, index: Index, now: u64, command: &Command) -> Response {
        if let Err(error) = command.validate() {
            return Response::Rejected(error);
        }
        let modify = |model: &Model, key: &str| model.entries.get(key).map_or(0, |e| e.3);
        match command {
            Command::KvSet(s) => {
                let holder = self.entries.get(&s.key).and_then(|e| e.5.clone());
                self.write(index, &s.key, &s.value, s.flags, 0, holder);
                Response::Bool(true)
            }
            Command::KvCas(c) => {
                let ok = modify(self, &c.set.key) == c.index;
                if ok {
                    let holder = self.entries.get(&c.set.key).and_then(|e| e.5.clone());
                    self.write(index, &c.set.key, &c.set.value, c.set.flags, 0, holder);
                }
                Response::Bool(ok)
            }
            Command::KvDelete(d) => {
                self.delete(index, &d.key);
                Response::Bool(true)
            }
            Command::KvDeleteCas(d) => {
                let current = modify(self, &d.key);
                if current != 0 && current == d.index {
                    self.delete(index, &d.key);
                }
                Response::Bool(current == 0 || current == d.index)
            }
            Command::KvDeleteTree(t) => {
                let keys: Vec<String> =
                    self.entries.keys().filter(|k| k.starts_with(&t.prefix)).cloned().collect();
                for key in &keys {
                    self.entries.remove(key);
                }
                if !keys.is_empty() {
                    self.table = index;
                    if !t.prefix.is_empty() {
                        self.tombstones.retain(|(k, _)| *k != t.prefix);
                        self.tombstones.push((t.prefix.clone(), index));
                    }
                }
                Response::Bool(true)
            }
            Command::TombstoneReap(r) => {
                let before = self.tombstones.len();
                self.tombstones.retain(|&(_, i)| i > r.up_to);
                self.delays.retain(|_, &mut until| until > now);
                Response::Reaped(before - self.tombstones.len())
            }
            Command::KvLock(l) => {
                if !self.sessions.contains_key(&l.session) {
                    return Response::Rejected(LockError::InvalidSession(l.session.clone()).into());
                }
                if self.delays.get(&l.set.key).is_some_and(|&until| until > now) {
                    return Response::Bool(false);
                }
                self.delays.remove(&l.set.key);
                let lock_index = match self.entries.get(&l.set.key) {
                    Some(e) if e.5.as_ref() == Some(&l.session) => e.4,
                    Some(e) if e.5.is_some() => return Response::Bool(false),
                    Some(e) => e.4 + 1,
                    None => 1,
                };
                self.write(index, &l.set.key, &l.set.value, l.set.flags, lock_index, Some(l.session.clone()));
                Response::Bool(true)
            }
            Command::KvUnlock(u) => {
                // Consul's release: an unknown session holds nothing, so the answer is false.
                if u.session.is_empty() {
                    return Response::Rejected(LockError::MissingSession.into());
                }
                match self.entries.get(&u.set.key) {
                    Some(e) if e.5.as_ref() == Some(&u.session) => {
                        let lock_index = e.4;
                        self.write(index, &u.set.key, &u.set.value, u.set.flags, lock_index, None);
                        Response::Bool(true)
                    }
                    _ => Response::Bool(false),
                }
            }
            Command::SessionCreate(session) => {
                if self.sessions.contains_key(&session.id) {
                    return Response::Rejected(SessionError::IdTaken(session.id.clone()).into());
                }
                self.sessions.insert(session.id.clone(), (session.behavior, session.lock_delay_ms));
                Response::Bool(true)
            }
            Command::SessionDestroy(d) => {
                if let Some((behavior, delay)) = self.sessions.remove(&d.id) {
                    let held: Vec<String> = self
                        .entries
                        .iter()
                        .filter(|(_, e)| e.5.as_ref() == Some(&d.id))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in held {
                        match behavior {
                            Behavior::Delete => self.delete(index, &key),
                            Behavior::Release => {
                                let entry = self.entries.get_mut(&key).unwrap();
                                entry.5 = None;
                                entry.3 = index;
                                self.table = index;
                            }
                        }
                        if delay > 0 {
                            self.delays.insert(key, now + delay);
                        }
                    }
                }
                Response::Bool(true)
            }
            other => unreachable!("the generator makes no {other:?}"),
        }
    }

    fn write(
        &mut self,
        index: Index,
        key: &str,
        value: &Bytes,
        flags: u64,
        lock_index: u64,
        holder: Option<String>,
    ) {
        let create = match self.entries.get(key) {
            Some(e) if e.0 == *value && e.1 == flags && e.4 == lock_index && e.5 == holder => return,
            Some(e) => e.2,
            None => index,
        };
        self.entries.insert(key.to_owned(), (value.clone(), flags, create, index, lock_index, holder));
        self.table = index;
    }

    fn delete(&mut self, index: Index, key: &str) {
        if self.entries.remove(key).is_some() {
            self.tombstones.retain(|(k, _)| k != key);
            self.tombstones.push((key.to_owned(), index));
            self.table = index;
        }
    }

    fn prefix_index(&self, prefix: &str) -> Index {
        let newest = self
            .entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.3)
            .chain(self.tombstones.iter().filter(|(k, _)| k.starts_with(prefix)).map(|&(_, i)| i))
            .max()
            .unwrap_or(0);
        if prefix.is_empty() || newest == 0 {
            self.table
        } else {
            newest
        }
    }

    fn keys(&self, prefix: &str, separator: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for key in self.entries.keys().filter(|k| k.starts_with(prefix)) {
            let rest = &key[prefix.len()..];
            let cut = match rest.find(separator) {
                Some(at) if !separator.is_empty() => key[..prefix.len() + at + separator.len()].to_owned(),
                _ => key.clone(),
            };
            if !out.contains(&cut) {
                out.push(cut);
            }
        }
        out
    }
}

fn key() -> impl Strategy<Value = String> {
    "[ab/]{0,4}"
}

fn session_id() -> impl Strategy<Value = String> {
    prop_oneof![Just("s1".to_owned()), Just("s2".to_owned()), Just("s3".to_owned())]
}

fn kv_set() -> impl Strategy<Value = KvSet> {
    kv_set_on(key())
}

/// Lock keys come from three, so locks, releases and lock delays meet on the same key.
fn lock_set() -> impl Strategy<Value = KvSet> {
    kv_set_on(prop_oneof![Just("a".to_owned()), Just("a/b".to_owned()), Just("b".to_owned())])
}

fn kv_set_on(key: impl Strategy<Value = String>) -> impl Strategy<Value = KvSet> {
    let value =
        prop_oneof![Just(Bytes::new()), Just(Bytes::from_static(b"v")), Just(Bytes::from_static(b"w"))];
    (key, value, 0..2u64).prop_map(|(key, value, flags)| KvSet { key, value, flags })
}

fn command() -> impl Strategy<Value = Command> {
    let set = kv_set;
    prop_oneof![
        4 => set().prop_map(Command::KvSet),
        2 => (set(), 0..12u64).prop_map(|(set, index)| Command::KvCas(KvCas { set, index })),
        2 => key().prop_map(|key| Command::KvDelete(KvDelete { key })),
        1 => (key(), 0..12u64).prop_map(|(key, index)| Command::KvDeleteCas(KvDeleteCas { key, index })),
        1 => key().prop_map(|prefix| Command::KvDeleteTree(KvDeleteTree { prefix })),
        1 => (0..12u64).prop_map(|up_to| Command::TombstoneReap(TombstoneReap { up_to })),
        3 => (lock_set(), session_id()).prop_map(|(set, session)| Command::KvLock(KvLock { set, session })),
        2 => (lock_set(), session_id()).prop_map(|(set, session)| Command::KvUnlock(KvUnlock { set, session })),
        2 => (session_id(), prop::bool::ANY, prop_oneof![Just(0u64), Just(30u64)]).prop_map(|(id, delete, lock_delay_ms)| {
            let behavior = if delete { Behavior::Delete } else { Behavior::Release };
            Command::SessionCreate(Session { id, node: "n1".into(), behavior, lock_delay_ms, ..Session::default() })
        }),
        1 => session_id().prop_map(|id| Command::SessionDestroy(SessionDestroy { id })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_store_answers_as_the_reference_model_does(commands in prop::collection::vec(command(), 1..48)) {
        let mut fsm = Fsm::new();
        apply(&mut fsm, &register(node("n1", "10.0.0.1"), None, vec![]));
        let mut model = Model { table: 0, ..Model::default() };
        let mut log = vec![register(node("n1", "10.0.0.1"), None, vec![]).encode(now_ms(1))];
        for (i, command) in commands.iter().enumerate() {
            let index = i as Index + 2;
            let entry = command.encode(now_ms(index));
            let applied = fsm.apply(index, &entry).expect("decodes");
            log.push(entry);
            prop_assert_eq!(&applied.response, &model.apply(index, now_ms(index), command), "command {:?}", command);
            for prefix in ["", "a", "a/", "b", "ab", "/"] {
                let (list_index, entries) = fsm.kv().list(prefix);
                let expected: Vec<(String, ModelEntry)> = model.entries.iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect();
                let got: Vec<(String, ModelEntry)> = entries.iter()
                    .map(|e| (e.key.clone(), (e.value.clone(), e.flags, e.create_index, e.modify_index, e.lock_index, e.session.clone())))
                    .collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(list_index, model.prefix_index(prefix));
                prop_assert_eq!(fsm.kv().keys(prefix, Some("/")).1, model.keys(prefix, "/"));
                prop_assert_eq!(fsm.kv().get(prefix).0, model.entries.get(prefix).map_or(model.table, |e| e.3));
            }
            let sessions: Vec<&str> = fsm.sessions().list().1.iter().map(|s| s.id.as_str()).collect();
            prop_assert_eq!(sessions, model.sessions.keys().map(String::as_str).collect::<Vec<_>>());
        }
        // Pure: another replica applying the same log holds the same bytes; a snapshot restores it.
        let mut replica = Fsm::new();
        for (i, entry) in log.iter().enumerate() {
            replica.apply(i as Index + 1, entry).expect("decodes");
        }
        prop_assert_eq!(replica.snapshot(), fsm.snapshot());
        prop_assert_eq!(Fsm::restore(&fsm.snapshot()).expect("restores"), fsm);
    }

    #[test]
    fn every_command_round_trips_through_its_encoding(command in command(), now in any::<u64>()) {
        prop_assert_eq!(Command::decode(&command.encode(now)), Ok(Some(Stamped { now_ms: now, command })));
    }
}

// --- blocking queries: every changed answer wakes its readers with a newer index ---------------

/// What each kind of blocked reader would be answered, owned, with the index it would get.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Key(Option<KvEntry>),
    Prefix(Vec<KvEntry>),
    Nodes(Vec<Node>),
    Services(Vec<(String, Vec<String>)>),
    Checks(Vec<Check>),
    Sessions(Vec<Session>),
    AclTokens(Vec<Token>),
    AclPolicies(Vec<Policy>),
    Service(Vec<(Node, Service, Vec<Check>)>),
    Node(Option<(Node, Vec<Service>)>, Vec<Check>),
}

fn answer(fsm: &Fsm, target: &WatchTarget) -> (Index, Answer) {
    let catalog = fsm.catalog();
    match target {
        WatchTarget::Key(key) => {
            let (index, entry) = fsm.kv().get(key);
            (index, Answer::Key(entry.cloned()))
        }
        WatchTarget::Prefix(prefix) => {
            let (index, entries) = fsm.kv().list(prefix);
            (index, Answer::Prefix(entries.into_iter().cloned().collect()))
        }
        WatchTarget::Table(Table::Nodes) => {
            let (index, nodes) = catalog.nodes();
            (index, Answer::Nodes(nodes.into_iter().cloned().collect()))
        }
        WatchTarget::Table(Table::Services) => {
            let (index, names) = catalog.services();
            let names = names
                .into_iter()
                .map(|(n, tags)| (n.to_owned(), tags.into_iter().map(str::to_owned).collect()));
            (index, Answer::Services(names.collect()))
        }
        WatchTarget::Table(Table::Checks) => {
            let (index, checks) = catalog.checks_in_state(None);
            (index, Answer::Checks(checks.into_iter().cloned().collect()))
        }
        WatchTarget::Table(Table::Sessions) => {
            let (index, sessions) = fsm.sessions().list();
            (index, Answer::Sessions(sessions.into_iter().cloned().collect()))
        }
        WatchTarget::Table(Table::AclTokens) => {
            let (index, tokens) = fsm.acl().tokens();
            (index, Answer::AclTokens(tokens.into_iter().cloned().collect()))
        }
        WatchTarget::Table(Table::AclPolicies) => {
            let (index, policies) = fsm.acl().policies();
            (index, Answer::AclPolicies(policies.into_iter().cloned().collect()))
        }
        WatchTarget::Service(name) => {
            let (index, instances) = catalog.health_service(name, &[], false);
            let instances = instances
                .into_iter()
                .map(|i| (i.node.clone(), i.service.clone(), i.checks.into_iter().cloned().collect()));
            (index, Answer::Service(instances.collect()))
        }
        WatchTarget::Node(name) => {
            let (services_index, found) = catalog.node_services(name);
            let (checks_index, checks) = catalog.node_checks(name);
            let found = found.map(|(node, services)| (node.clone(), services.into_iter().cloned().collect()));
            (services_index.max(checks_index), Answer::Node(found, checks.into_iter().cloned().collect()))
        }
    }
}

fn targets() -> Vec<WatchTarget> {
    let mut targets: Vec<WatchTarget> =
        ["a", "b", "a/b"].iter().map(|k| WatchTarget::Key((*k).into())).collect();
    targets.extend(["", "a"].iter().map(|p| WatchTarget::Prefix((*p).into())));
    let tables =
        [Table::Nodes, Table::Services, Table::Checks, Table::Sessions, Table::AclTokens, Table::AclPolicies];
    targets.extend(tables.map(WatchTarget::Table));
    targets.extend(["web", "db"].iter().map(|s| WatchTarget::Service((*s).into())));
    targets.extend(["n1", "n2"].iter().map(|n| WatchTarget::Node((*n).into())));
    targets
}

fn catalog_command() -> impl Strategy<Value = Command> {
    let node_name = prop_oneof![Just("n1"), Just("n2")];
    let service_id = prop_oneof![Just("web"), Just("web2"), Just("db")];
    let service_name = prop_oneof![Just("web"), Just("db")];
    let check_id = prop_oneof![Just(SERF_HEALTH), Just("c1"), Just("c2")];
    let status = prop_oneof![Just(Health::Passing), Just(Health::Warning), Just(Health::Critical)];
    let tags = prop_oneof![Just(vec![]), Just(vec!["v1"]), Just(vec!["v1", "v2"])];
    let address = prop_oneof![Just("10.0.0.1"), Just("10.0.0.2")];
    let registration = (
        node_name.clone(),
        address,
        prop::option::of((service_id.clone(), service_name, tags)),
        prop::option::of((check_id.clone(), prop::option::of(service_id.clone()), status)),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(node_name, address, service, check, skip)| {
            let svc = service
                .map(|(id, name, tags): (&str, &str, Vec<&str>)| super::tests::service(id, name, &tags, 80));
            let check = check.map(|(id, bound, status)| super::tests::check(id, bound.unwrap_or(""), status));
            Command::Register(Box::new(Register {
                node: node(node_name, address),
                skip_node_update: skip,
                service: svc,
                checks: check.into_iter().collect(),
            }))
        });
    let removal = (node_name, prop::option::of(service_id), prop::option::of(check_id))
        .prop_map(|(node, service, check)| deregister(node, service, check));
    prop_oneof![
        6 => registration,
        2 => removal,
        2 => command(),
        2 => super::acl_tests::acl_command(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The blocking-query contract: whenever an entry changes what a reader would be answered,
    /// the entry wakes that reader and the answer's index moves past the one it waited on.
    /// Readers of a service or node that did not change stay asleep.
    #[test]
    fn every_changed_answer_wakes_its_readers_with_a_newer_index(
        commands in prop::collection::vec(catalog_command(), 1..40),
    ) {
        let mut fsm = Fsm::new();
        apply(&mut fsm, &register(node("n1", "10.0.0.1"), None, vec![]));
        let mut watches = Watches::new();
        for command in &commands {
            let before: Vec<(WatchId, WatchTarget, (Index, Answer))> = targets()
                .into_iter()
                .map(|target| (watches.register(target.clone()), target.clone(), answer(&fsm, &target)))
                .collect();
            let applied = apply(&mut fsm, command);
            let woken = watches.wake(&applied.touched);
            for (id, target, (before_index, before_answer)) in before {
                let (after_index, after_answer) = answer(&fsm, &target);
                if after_answer != before_answer {
                    prop_assert!(woken.contains(&id), "{:?} changed but was not woken by {:?}", target, command);
                    prop_assert!(
                        after_index > before_index,
                        "{:?} changed but its index went {} -> {} at {:?}", target, before_index, after_index, command
                    );
                }
                if matches!(target, WatchTarget::Service(_) | WatchTarget::Node(_)) && after_answer == before_answer {
                    prop_assert!(!woken.contains(&id), "{:?} woken for nothing by {:?}", target, command);
                }
                watches.cancel(id);
            }
            prop_assert!(watches.is_empty());
        }
    }
}

// --- session TTLs ----------------------------------------------------------------------------

#[test]
fn session_ttls_are_checked_as_consul_does() {
    assert_eq!(Session::check_ttl(""), Ok(()));
    assert_eq!(Session::check_ttl("0s"), Ok(()));
    assert_eq!(Session::check_ttl("30s"), Ok(()));
    assert_eq!(
        Session::check_ttl("5s").unwrap_err().to_string(),
        "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"
    );
    assert_eq!(
        Session::check_ttl("soon").unwrap_err().to_string(),
        "Session TTL 'soon' invalid: time: invalid duration \"soon\""
    );
    let mut fsm = catalog();
    let short = Command::SessionCreate(Session {
        id: "s".into(),
        node: "n1".into(),
        ttl: "1s".into(),
        ..Session::default()
    });
    assert!(matches!(
        apply(&mut fsm, &short).response,
        Response::Rejected(CommandError::Session(SessionError::TtlOutOfRange { .. }))
    ));
}

#[test]
fn the_leaders_timers_expire_sessions_after_twice_their_ttl_unless_renewed() {
    use crate::time::Instant;
    let mut fsm = catalog();
    let with_ttl = |id: &str| {
        Command::SessionCreate(Session {
            id: id.into(),
            node: "n1".into(),
            ttl: "10s".into(),
            ..Session::default()
        })
    };
    run(&mut fsm, &[with_ttl("a"), with_ttl("b"), session("no-ttl", Behavior::Release, 0, &[])]);
    let mut timers = SessionTimers::new();
    timers.reset_all(fsm.sessions(), Instant::ZERO);
    assert_eq!(timers.len(), 2, "only sessions with a TTL have timers");
    assert_eq!(timers.next_deadline(), Some(Instant::from_millis(20_000)));
    timers.reset("a", std::time::Duration::from_secs(10), Instant::from_millis(15_000));
    assert_eq!(timers.expired(Instant::from_millis(19_999)), Vec::<String>::new());
    assert_eq!(timers.expired(Instant::from_millis(20_000)), ["b"]);
    assert!(timers.contains("a") && !timers.contains("b"));
    timers.remove("a");
    assert!(timers.is_empty() && timers.next_deadline().is_none());
}

#[test]
fn every_verb_parses_from_its_consul_spelling() {
    for verb in KvVerb::ALL {
        assert_eq!(KvVerb::parse(verb.as_str()), Some(verb));
    }
    for verb in CatalogVerb::ALL {
        assert_eq!(CatalogVerb::parse(verb.as_str()), Some(verb));
    }
    assert_eq!(KvVerb::parse("get_tree"), None);
}

// --- restoring a snapshot through the log -----------------------------------------------------

fn restore(state: Bytes) -> Command {
    Command::Restore(Restore { state })
}

/// Applies one command at a chosen index (entries may skip indexes the state never saw).
fn apply_at(fsm: &mut Fsm, index: Index, command: &Command) -> Applied {
    fsm.apply(index, &command.encode(now_ms(index))).expect("decodes")
}

/// A state written at scattered indexes, up to 60: n1 with `web` and two checks (2), key `a`
/// (4), session s1 on n1 (20) holding `held` (30), key `gone` written (40) and deleted (50),
/// n2 with `db` (60).
fn scattered() -> Fsm {
    let mut fsm = Fsm::new();
    let writes = [
        (
            2,
            register(
                node("n1", "10.0.0.1"),
                Some(service("web", "web", &["v1"], 80)),
                vec![check(SERF_HEALTH, "", Health::Passing), check("web-http", "web", Health::Passing)],
            ),
        ),
        (4, set("a", "1", 7)),
        (10, set("b", "1", 0)),
        (20, session("s1", Behavior::Release, 0, &[SERF_HEALTH])),
        (30, lock("held", "h", "s1")),
        (40, set("gone", "g", 0)),
        (50, Command::KvDelete(KvDelete { key: "gone".into() })),
        (55, set("b", "2", 0)),
        (60, register(node("n2", "10.0.0.2"), Some(service("db", "db", &[], 5432)), vec![])),
    ];
    for (index, command) in &writes {
        let response = apply_at(&mut fsm, *index, command).response;
        assert_eq!(response, Response::Bool(true), "{command:?}");
    }
    fsm
}

#[test]
fn a_restore_into_a_state_past_the_snapshot_keeps_every_index() {
    let source = scattered();
    let mut fsm = catalog();
    apply_at(&mut fsm, 99, &set("mine", "x", 0));
    let applied = apply_at(&mut fsm, 100, &restore(source.snapshot()));
    assert_eq!(applied.response, Response::Bool(true));
    assert_eq!(applied.touched, Touched::everything(), "every reader wakes");
    fsm.check_invariants();
    assert_eq!(fsm.applied(), 100);
    assert_eq!(fsm.kv(), source.kv(), "the snapshot's keys, indexes and tombstones; ours are gone");
    assert_eq!(fsm.catalog(), source.catalog());
    assert_eq!(fsm.sessions(), source.sessions());
    assert_eq!(fsm.kv().get("mine"), (55, None), "the KV index of the snapshot");
    assert_eq!(fsm.kv().held_by("s1").collect::<Vec<_>>(), ["held"], "derived indexes rebuilt");
    // The restored state goes on applying, with its sessions and locks live.
    let destroyed = apply(&mut fsm, &Command::SessionDestroy(SessionDestroy { id: "s1".into() }));
    assert_eq!(destroyed.touched.keys, ["held"]);
    assert_eq!(fsm.kv().get("held").1.unwrap().modify_index, 101);
}

#[test]
fn a_restore_into_a_state_behind_the_snapshot_lowers_indexes_above_its_entry() {
    let source = scattered();
    let mut fsm = catalog();
    apply_at(&mut fsm, 44, &set("mine", "x", 0));
    let applied = apply_at(&mut fsm, 45, &restore(source.snapshot()));
    assert_eq!(applied.response, Response::Bool(true));
    assert!(applied.touched.all);
    fsm.check_invariants();
    assert_eq!(fsm.applied(), 45);

    // KV: indexes at or below 45 stay, those above become 45; lock indexes are counts and stay.
    let entry = |key: &str| {
        let entry = fsm.kv().get(key).1.unwrap().clone();
        (entry.create_index, entry.modify_index, entry.lock_index, entry.flags)
    };
    assert_eq!(entry("a"), (4, 4, 0, 7));
    assert_eq!(entry("held"), (30, 30, 1, 0));
    assert_eq!(entry("b"), (10, 45, 0, 0), "modified at 55");
    assert_eq!(fsm.kv().index(), 45, "was 55");
    assert_eq!(fsm.kv().list("go"), (45, vec![]), "the tombstone of `gone`, was 50");
    assert_eq!(fsm.kv().list("h").0, 30);
    assert_eq!(fsm.kv().get("mine"), (45, None));

    // Catalog rows, the per-service indexes and the three table indexes.
    let n1 = fsm.catalog().node("n1").unwrap();
    assert_eq!((n1.create_index, n1.modify_index), (2, 2));
    let n2 = fsm.catalog().node("n2").unwrap();
    assert_eq!((n2.create_index, n2.modify_index), (45, 45), "was 60");
    let db = fsm.catalog().service("n2", "db").unwrap();
    assert_eq!((db.create_index, db.modify_index), (45, 45));
    let web_http = fsm.catalog().check("n1", "web-http").unwrap();
    assert_eq!((web_http.create_index, web_http.modify_index), (2, 2));
    assert_eq!((fsm.catalog().service_index("web"), fsm.catalog().service_index("db")), (2, 45));
    assert_eq!(fsm.catalog().nodes().0, 45);
    assert_eq!(fsm.catalog().services().0, 45);
    assert_eq!(fsm.catalog().checks_in_state(None).0, 2);

    // Sessions.
    let s1 = fsm.sessions().get("s1").unwrap();
    assert_eq!((s1.create_index, s1.modify_index, fsm.sessions().index()), (20, 20, 20));

    // Restoring into a state far behind lowers everything above to the entry's index.
    let mut fresh = Fsm::new();
    apply_at(&mut fresh, 1, &restore(source.snapshot()));
    fresh.check_invariants();
    let n1 = fresh.catalog().node("n1").unwrap();
    assert_eq!((n1.create_index, n1.modify_index), (1, 1));
    let a = fresh.kv().get("a").1.unwrap();
    assert_eq!((a.create_index, a.modify_index, fresh.kv().index()), (1, 1, 1));
    assert_eq!(fresh.sessions().get("s1").unwrap().modify_index, 1);
    assert_eq!(fresh.catalog().index(), 1);
}

#[test]
fn a_restore_of_a_bad_snapshot_is_refused_and_changes_nothing_but_the_applied_index() {
    let mut fsm = catalog();
    run(&mut fsm, &[set("k", "v", 0), session("s1", Behavior::Release, 0, &[])]);
    let before = fsm.clone();
    let good = scattered().snapshot();
    let mut inconsistent = scattered();
    inconsistent.applied = 10;
    // `scattered()`'s snapshot with its entry "a" (created and modified at 4) changed.
    let with_entry_a = |change: fn(&mut KvEntry)| {
        let mut state = scattered();
        let mut entry = state.kv.entries["a"].clone();
        change(&mut entry);
        state.kv.entries.insert("a".into(), entry);
        state.snapshot()
    };
    let out_of_order =
        CommandError::Restore(SnapshotError::Inconsistent("an entry's indexes are out of order".into()));
    let cases = [
        (Bytes::from_static(b"not a snapshot"), CommandError::Restore(SnapshotError::Format)),
        (Bytes::new(), CommandError::Restore(SnapshotError::Format)),
        (
            good.slice(..good.len() - 1),
            CommandError::Restore(SnapshotError::Malformed(
                "Hit the end of buffer, expected more data".into(),
            )),
        ),
        (
            Bytes::from([&good[..], &[0]].concat()),
            CommandError::Restore(SnapshotError::Malformed("trailing bytes".into())),
        ),
        (
            inconsistent.snapshot(),
            CommandError::Restore(SnapshotError::Inconsistent(
                "the KV index is past the applied index".into(),
            )),
        ),
        (with_entry_a(|entry| entry.create_index = 5), out_of_order.clone()),
        (with_entry_a(|entry| entry.modify_index = 56), out_of_order),
        (
            with_entry_a(|entry| entry.value = Bytes::from(vec![0; VALUE_BYTES_MAX + 1])),
            CommandError::Restore(SnapshotError::Inconsistent("a value is over the size limit".into())),
        ),
    ];
    for (state, error) in cases {
        let applied = apply(&mut fsm, &restore(state));
        assert_eq!(applied.response, Response::Rejected(error));
        assert!(applied.touched.is_empty());
        fsm.check_invariants();
        assert_eq!(
            (fsm.kv(), fsm.catalog(), fsm.sessions()),
            (before.kv(), before.catalog(), before.sessions())
        );
    }
    assert_eq!(fsm.applied(), before.applied() + 8);

    // A value of exactly the limit is restored.
    let largest = with_entry_a(|entry| entry.value = Bytes::from(vec![0; VALUE_BYTES_MAX]));
    assert_eq!(apply(&mut fsm, &restore(largest)).response, Response::Bool(true));
    assert_eq!(
        CommandError::Restore(SnapshotError::Format).to_string(),
        "failed to restore snapshot: not a muster state snapshot of version 3 to 6"
    );
}

#[test]
fn a_restore_must_fit_one_raft_entry() {
    let largest = restore(Bytes::from(vec![0; RESTORE_BYTES_MAX]));
    assert_eq!(largest.validate(), Ok(()));
    assert_eq!(largest.encode(0).len(), crate::raft::ENTRY_BYTES_MAX, "header and length prefix fit");
    let over = restore(Bytes::from(vec![0; RESTORE_BYTES_MAX + 1]));
    let error = CommandError::SnapshotTooLarge { size: RESTORE_BYTES_MAX + 1, max: RESTORE_BYTES_MAX };
    assert_eq!(over.validate(), Err(error.clone()));
    assert_eq!(
        error.to_string(),
        format!("State snapshot is too large ({} > {RESTORE_BYTES_MAX} bytes)", RESTORE_BYTES_MAX + 1)
    );
    let mut fsm = catalog();
    let before = fsm.clone();
    let applied = fsm.apply_command(4, 0, &over);
    assert_eq!(applied.response, Response::Rejected(error));
    assert_eq!(fsm.catalog(), before.catalog());
    // The command round-trips through its encoding like every other.
    let small = restore(scattered().snapshot());
    assert_eq!(Command::decode(&small.encode(9)), Ok(Some(Stamped { now_ms: 9, command: small })));
}

/// A state whose snapshot is over one entry's [`RESTORE_BYTES_MAX`]: 5,000 keys of 1 KiB.
fn large_state() -> Fsm {
    let mut fsm = Fsm::new();
    for i in 0..5_000u64 {
        let set = KvSet { key: format!("big/{i:05}"), value: Bytes::from(vec![b'x'; 1024]), flags: i };
        fsm.apply_command(i + 1, 0, &Command::KvSet(set));
    }
    assert!(fsm.snapshot().len() > RESTORE_BYTES_MAX);
    fsm
}

/// `snapshot` cut into pieces of `piece_bytes` for restore `id`.
fn pieces(snapshot: &Bytes, id: u64, piece_bytes: usize) -> Vec<Command> {
    let total = snapshot.len() as u64;
    (0..snapshot.len())
        .step_by(piece_bytes)
        .map(|offset| {
            let end = (offset + piece_bytes).min(snapshot.len());
            Command::RestoreChunk(RestoreChunk {
                id,
                offset: offset as u64,
                total,
                bytes: snapshot.slice(offset..end),
            })
        })
        .collect()
}

#[test]
fn a_state_over_one_entry_is_restored_in_pieces_and_only_by_the_last() {
    let source = large_state();
    let snapshot = source.snapshot();
    let mut fsm = catalog();
    let before = fsm.clone();
    let commands = pieces(&snapshot, 7, RESTORE_CHUNK_BYTES_MAX);
    assert_eq!(commands.len(), 2);
    // The largest piece fits one Raft entry.
    assert!(commands[0].encode(u64::MAX).len() <= crate::raft::ENTRY_BYTES_MAX);
    let mut index = before.applied();
    for (n, command) in commands.iter().enumerate() {
        index += 1;
        let applied = fsm.apply_command(index, 0, command);
        assert_eq!(applied.response, Response::Bool(true), "piece {n}");
        if n + 1 < commands.len() {
            // Staged, nothing visible yet: readers are not woken.
            assert_eq!((fsm.kv(), fsm.catalog()), (before.kv(), before.catalog()));
            assert_eq!(applied.touched, Touched::default());
        } else {
            assert_eq!(applied.touched, Touched::everything());
        }
    }
    assert_eq!(fsm.kv().len(), 5_000);
    assert_eq!(fsm.kv().get("big/04999").1.map(|e| e.flags), Some(4_999));
    assert!(fsm.catalog().nodes().1.is_empty(), "the old state is gone");
    assert_eq!(fsm.staged, None, "the staging is dropped once restored");
    assert_eq!(fsm.applied(), index);
}

#[test]
fn pieces_out_of_order_are_refused_and_a_new_restore_replaces_the_staged_one() {
    let snapshot = large_state().snapshot();
    let first = pieces(&snapshot, 1, 1 << 20);
    let second = pieces(&snapshot, 2, 1 << 20);
    let mut fsm = catalog();
    let before = fsm.clone();
    assert_eq!(fsm.apply_command(10, 0, &first[0]).response, Response::Bool(true));
    // A piece that skips one: refused, nothing changes.
    let staged = fsm.staged.clone();
    let skipped = fsm.apply_command(11, 0, &first[2]);
    let error = CommandError::RestoreOutOfOrder { offset: 2 << 20, staged: 1 << 20 };
    assert_eq!(skipped.response, Response::Rejected(error.clone()));
    assert_eq!(fsm.staged, staged);
    assert_eq!(
        error.to_string(),
        "failed to restore snapshot: a piece at offset 2097152 does not follow the 1048576 bytes staged \
         (another restore started, or a piece went missing)"
    );
    // Another restore starts: the first one's next piece no longer fits.
    assert_eq!(fsm.apply_command(12, 0, &second[0]).response, Response::Bool(true));
    let stale = fsm.apply_command(13, 0, &first[1]);
    assert_eq!(
        stale.response,
        Response::Rejected(CommandError::RestoreOutOfOrder { offset: 1 << 20, staged: 0 })
    );
    let mut index = 13;
    for command in &second[1..] {
        index += 1;
        assert_eq!(fsm.apply_command(index, 0, command).response, Response::Bool(true));
    }
    assert_eq!(fsm.kv().len(), 5_000);
    assert_ne!(fsm.kv(), before.kv());
    // Pieces that do not add up are refused before they are staged.
    let malformed = |offset: u64, total: u64, bytes: Bytes| {
        Command::RestoreChunk(RestoreChunk { id: 3, offset, total, bytes }).validate()
    };
    assert_eq!(malformed(0, 1, Bytes::new()), Err(CommandError::RestoreChunkMalformed), "empty");
    assert_eq!(
        malformed(5, 6, Bytes::from_static(b"ab")),
        Err(CommandError::RestoreChunkMalformed),
        "past total"
    );
    assert_eq!(malformed(u64::MAX, 6, Bytes::from_static(b"ab")), Err(CommandError::RestoreChunkMalformed));
    let too_large = malformed(0, RESTORE_STAGED_BYTES_MAX + 1, Bytes::from_static(b"ab"));
    assert!(matches!(too_large, Err(CommandError::SnapshotTooLarge { .. })), "{too_large:?}");
}

#[test]
fn a_snapshot_taken_mid_restore_carries_the_staged_pieces_so_replicas_finish_alike() {
    let snapshot = large_state().snapshot();
    let commands = pieces(&snapshot, 9, 1 << 20);
    let mut leader = catalog();
    let mut index = leader.applied();
    for command in &commands[..3] {
        index += 1;
        leader.apply_command(index, 0, command);
    }
    // A follower installs the leader's Raft snapshot taken now, then applies the rest.
    let mut follower = Fsm::restore(&leader.snapshot()).expect("a mid-restore snapshot decodes");
    assert_eq!(follower, leader);
    for command in &commands[3..] {
        index += 1;
        let (a, b) = (leader.apply_command(index, 0, command), follower.apply_command(index, 0, command));
        assert_eq!(a, b);
    }
    assert_eq!(follower, leader);
    assert_eq!(leader.kv().len(), 5_000);
    // A whole that is not a snapshot: refused at the last piece, the staging dropped, the
    // state as it was.
    let garbage = Bytes::from(vec![0xee; 3 << 20]);
    let mut fsm = catalog();
    let before = fsm.clone();
    let mut index = fsm.applied();
    let mut last = None;
    for command in pieces(&garbage, 4, 1 << 20) {
        index += 1;
        last = Some(fsm.apply_command(index, 0, &command).response);
    }
    assert_eq!(last, Some(Response::Rejected(CommandError::Restore(SnapshotError::Format))));
    assert_eq!((fsm.kv(), fsm.catalog(), &fsm.staged), (before.kv(), before.catalog(), &None));
}

#[test]
fn a_snapshot_is_version_3_unless_a_restore_is_staged_and_an_abort_drops_the_staging() {
    let mut fsm = catalog();
    let plain = fsm.snapshot();
    assert_eq!(plain[4], 3, "servers from before staged restores read it");
    assert_eq!(Fsm::restore(&plain), Ok(fsm.clone()));
    let pieces = pieces(&large_state().snapshot(), 5, 1 << 20);
    let mut index = fsm.applied() + 1;
    fsm.apply_command(index, 0, &pieces[0]);
    let staged = fsm.snapshot();
    assert_eq!(staged[4], 4);
    assert_eq!(Fsm::restore(&staged), Ok(fsm.clone()));
    assert_eq!(fsm.without_staged_restore().snapshot()[4], 3, "what a user saves");
    let mut unknown = staged.to_vec();
    unknown[4] = 7;
    assert_eq!(Fsm::restore(&unknown), Err(SnapshotError::Format));
    // An abort of another restore leaves the staging; its own drops it.
    index += 1;
    let other = fsm.apply_command(index, 0, &Command::RestoreAbort(RestoreAbort { id: 6 }));
    assert_eq!((other.response, fsm.staged.is_some()), (Response::Bool(true), true));
    index += 1;
    let own = fsm.apply_command(index, 0, &Command::RestoreAbort(RestoreAbort { id: 5 }));
    assert_eq!((own.response, fsm.staged.is_none()), (Response::Bool(true), true));
    let late = fsm.apply_command(index + 1, 0, &pieces[1]);
    assert_eq!(
        late.response,
        Response::Rejected(CommandError::RestoreOutOfOrder { offset: 1 << 20, staged: 0 })
    );
}

fn autopilot_set(cleanup: bool, cas: Option<Index>) -> Command {
    let config = crate::autopilot::Config { cleanup_dead_servers: cleanup, ..Default::default() };
    Command::AutopilotSet(AutopilotSet { config, cas })
}

#[test]
fn autopilot_settings_are_set_whole_or_by_cas_and_snapshots_carry_them() {
    let mut fsm = catalog();
    let first = fsm.applied() + 1;
    let responses = run(&mut fsm, &[autopilot_set(false, Some(0)), autopilot_set(false, None)]);
    assert_eq!(responses, [Response::Bool(false), Response::Bool(true)], "a CAS finds nothing stored");
    let stored = fsm.autopilot().cloned().unwrap();
    assert_eq!((stored.create_index, stored.modify_index), (first + 1, first + 1));
    assert!(!stored.config.cleanup_dead_servers);

    let responses = run(&mut fsm, &[autopilot_set(true, Some(first)), autopilot_set(true, Some(first + 1))]);
    assert_eq!(responses, [Response::Bool(false), Response::Bool(true)]);
    let stored = fsm.autopilot().cloned().unwrap();
    assert_eq!((stored.create_index, stored.modify_index), (first + 1, first + 3));
    assert!(stored.config.cleanup_dead_servers);

    let snapshot = fsm.snapshot();
    assert_eq!(snapshot[4], 5);
    assert_eq!(Fsm::restore(&snapshot), Ok(fsm.clone()));
    // Restored into a younger cluster, the settings' indexes come down to the restore's.
    let mut young = Fsm::new();
    let restored = young.apply_command(2, 0, &Command::Restore(Restore { state: snapshot }));
    assert_eq!(restored.response, Response::Bool(true));
    let entry = young.autopilot().unwrap();
    assert_eq!((entry.create_index, entry.modify_index), (2, 2));
}
