//! ACL state against Consul's rules and words (`consul-wave2.md` §1.2, §1.3, §1.7–1.9; consul
//! `agent/consul/state/acl.go`, `agent/consul/auth/token_writer.go`, `agent/consul/acl_endpoint.go`):
//! initialization, bootstrap, accepted and refused writes with their exact texts, resolution,
//! snapshots and restores.

use super::*;
use crate::acl::{
    global_management, DefaultPolicy, Rules, ANONYMOUS_TOKEN_ACCESSOR_ID, GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_POLICY_RULES, GLOBAL_READ_ONLY_POLICY_ID,
};

const ROOT_ACCESSOR: &str = "11111111-1111-4111-8111-111111111111";
const ROOT_SECRET: &str = "22222222-2222-4222-8222-222222222222";
const APP_ACCESSOR: &str = "33333333-3333-4333-8333-333333333333";
const APP_SECRET: &str = "44444444-4444-4444-8444-444444444444";
const WEB_POLICY: &str = "55555555-5555-4555-8555-555555555555";
const DB_POLICY: &str = "66666666-6666-4666-8666-666666666666";
const MISSING: &str = "77777777-7777-4777-8777-777777777777";

/// The leader clock stamped on entry `index`: 3 ms per entry.
fn now_ms(index: Index) -> u64 {
    1_000_000 + index * 3
}

/// Applies one command at the next index through the encoding.
fn apply(fsm: &mut Fsm, command: &Command) -> Applied {
    let index = fsm.applied() + 1;
    fsm.apply(index, &command.encode(now_ms(index))).expect("decodes")
}

fn initialize() -> Command {
    Command::AclInitialize(AclInitialize {})
}

fn token(accessor_id: &str, secret_id: &str, policies: &[&str]) -> Token {
    Token {
        accessor_id: accessor_id.into(),
        secret_id: secret_id.into(),
        policies: policies.iter().map(|id| (*id).to_owned()).collect(),
        create_time_ms: 1_000_000,
        ..Token::default()
    }
}

fn create_token(token: Token) -> Command {
    Command::AclTokenSet(Box::new(AclTokenSet { token, create: true }))
}

fn update_token(token: Token) -> Command {
    Command::AclTokenSet(Box::new(AclTokenSet { token, create: false }))
}

fn bootstrap(reset_index: Option<Index>) -> Command {
    let token = token(ROOT_ACCESSOR, ROOT_SECRET, &[GLOBAL_MANAGEMENT_POLICY_ID]);
    Command::AclBootstrap(Box::new(AclBootstrap { token, reset_index }))
}

/// A policy granting write on the service `service`, as a proposer would have parsed it.
fn policy(id: &str, name: &str, service: &str) -> Policy {
    let mut rules = Rules::default();
    rules.service.insert(
        crate::acl::Match::Exact,
        service,
        crate::acl::ServiceAccess::new(crate::acl::AccessLevel::Write),
    );
    Policy {
        id: id.into(),
        name: name.into(),
        rules_text: format!("service {service:?} {{ policy = \"write\" }}"),
        rules,
        ..Policy::default()
    }
}

fn create_policy(policy: Policy) -> Command {
    Command::AclPolicySet(Box::new(AclPolicySet { policy, create: true }))
}

fn update_policy(policy: Policy) -> Command {
    Command::AclPolicySet(Box::new(AclPolicySet { policy, create: false }))
}

fn global_management_policy(fsm: &Fsm) -> Policy {
    fsm.acl().policy(GLOBAL_MANAGEMENT_POLICY_ID).expect("initialized").clone()
}

/// Initialized, bootstrapped, a `web` policy and an app token holding it.
fn populated() -> Fsm {
    let mut fsm = Fsm::new();
    for command in [
        initialize(),
        bootstrap(None),
        create_policy(policy(WEB_POLICY, "web", "web")),
        create_token(token(APP_ACCESSOR, APP_SECRET, &[WEB_POLICY])),
    ] {
        let applied = apply(&mut fsm, &command);
        assert_eq!(applied.response, Response::Bool(true), "{command:?}");
    }
    fsm
}

fn refusal(response: &Response) -> String {
    match response {
        Response::Rejected(error) => error.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn initialize_creates_the_builtins_and_the_anonymous_token_once() {
    let mut fsm = Fsm::new();
    assert!(fsm.acl().is_empty());
    let first = apply(&mut fsm, &initialize());
    assert_eq!(first.response, Response::Bool(true));
    assert_eq!(first.touched.tables, [Table::AclPolicies, Table::AclTokens]);
    let management = global_management_policy(&fsm);
    assert_eq!(
        (management.name.as_str(), management.create_index, management.modify_index),
        ("global-management", 1, 1)
    );
    assert_eq!(management.rules_text, GLOBAL_MANAGEMENT_POLICY_RULES);
    assert_eq!(management.rules, global_management(), "the binary's typed rules");
    let read_only = fsm.acl().policy(GLOBAL_READ_ONLY_POLICY_ID).expect("created");
    assert_eq!(read_only.name, "builtin/global-read-only");
    let anonymous = fsm.acl().token(ANONYMOUS_TOKEN_ACCESSOR_ID).expect("created");
    assert_eq!(
        (anonymous.secret_id.as_str(), anonymous.description.as_str()),
        ("anonymous", "Anonymous Token")
    );
    assert_eq!(anonymous.create_time_ms, now_ms(1), "the entry's stamp");
    assert!(anonymous.policies.is_empty());
    {
        // A leader taking office again changes nothing, and a renamed built-in keeps its name.
        let renamed = Policy { name: "root-policy".into(), ..global_management_policy(&fsm) };
        assert_eq!(apply(&mut fsm, &update_policy(renamed)).response, Response::Bool(true));
        let again = apply(&mut fsm, &initialize());
        assert_eq!(again.response, Response::Bool(false));
        assert!(again.touched.is_empty());
        assert_eq!(global_management_policy(&fsm).name, "root-policy");
        assert_eq!((fsm.acl().policies_index(), fsm.acl().tokens_index()), (2, 1));
    }
}

#[test]
fn bootstrap_happens_once_unless_its_reset_index_is_named() {
    let mut fsm = Fsm::new();
    let early = apply(&mut fsm, &bootstrap(None));
    let gm = GLOBAL_MANAGEMENT_POLICY_ID;
    assert_eq!(refusal(&early.response), format!("No such ACL policy with ID \"{gm}\""), "before initialize");
    assert_eq!(fsm.acl().bootstrapped(), None);
    apply(&mut fsm, &initialize());
    let first = apply(&mut fsm, &bootstrap(None));
    assert_eq!(first.response, Response::Bool(true));
    assert_eq!(first.touched.tables, [Table::AclTokens]);
    assert_eq!(fsm.acl().bootstrapped(), Some(3));
    assert_eq!(fsm.acl().token_by_secret(ROOT_SECRET).map(|t| t.create_index), Some(3));
    let second = apply(&mut fsm, &bootstrap(None));
    assert_eq!(refusal(&second.response), "ACL bootstrap no longer allowed (reset index: 3)");
    assert!(
        matches!(&second.response, Response::Rejected(CommandError::Acl(error)) if error.is_permission_denied())
    );
    let wrong = apply(&mut fsm, &bootstrap(Some(7)));
    assert_eq!(refusal(&wrong.response), "Invalid bootstrap reset index (specified 7, reset index: 3)");
    assert_eq!(fsm.acl().bootstrapped(), Some(3), "refusals change nothing");
    apply(&mut fsm, &Command::AclTokenDelete(AclTokenDelete { accessor_id: ROOT_ACCESSOR.into() }));
    let reset = apply(&mut fsm, &bootstrap(Some(3)));
    assert_eq!(reset.response, Response::Bool(true), "the operator's reset index allows one more");
    assert_eq!(fsm.acl().bootstrapped(), Some(7));
    assert_eq!(
        refusal(&apply(&mut fsm, &bootstrap(Some(3))).response),
        "Invalid bootstrap reset index (specified 3, reset index: 7)"
    );
}

/// Every refusal with Consul's words (muster's own where marked), changing nothing but the
/// applied index.
#[test]
fn refused_acl_writes_answer_consul_texts_and_change_nothing() {
    let base = populated();
    let app = || base.acl().token(APP_ACCESSOR).expect("created").clone();
    let gm = || global_management_policy(&base);
    let read_only = || base.acl().policy(GLOBAL_READ_ONLY_POLICY_ID).expect("created").clone();
    let expiring = Token {
        expiration_time_ms: Some(2_000_000),
        ..token(MISSING, "88888888-8888-4888-8888-888888888888", &[])
    };
    let cases: Vec<(Command, String)> = vec![
        // Policies (agent/consul/acl_endpoint.go PolicySet, state/acl.go aclPolicySetTxn).
        (create_policy(policy(DB_POLICY, "web", "db")), r#"Invalid Policy: A Policy with Name "web" already exists"#.into()),
        (create_policy(policy(WEB_POLICY, "other", "db")), format!(r#"Invalid Policy: A Policy with ID "{WEB_POLICY}" already exists"#)),
        (update_policy(Policy { name: "web".into(), ..gm() }), r#"Invalid Policy: A policy with name "web" already exists"#.into()),
        (update_policy(policy(MISSING, "nope", "x")), format!("cannot find policy {MISSING}")),
        (
            update_policy(Policy { rules_text: "acl = \"read\"".into(), ..gm() }),
            "Changing the Rules for the builtin global-management policy is not permitted".into(),
        ),
        (
            update_policy(Policy { datacenters: vec!["dc2".into()], ..gm() }),
            "Changing the Datacenters of the builtin global-management policy is not permitted".into(),
        ),
        (
            update_policy(Policy { rules_text: String::new(), ..read_only() }),
            "Changing the Rules for the builtin builtin/global-read-only policy is not permitted".into(),
        ),
        (
            Command::AclPolicyDelete(AclPolicyDelete { id: GLOBAL_MANAGEMENT_POLICY_ID.into() }),
            "Delete operation not permitted on the builtin global-management policy".into(),
        ),
        (
            Command::AclPolicyDelete(AclPolicyDelete { id: GLOBAL_READ_ONLY_POLICY_ID.into() }),
            "Delete operation not permitted on the builtin builtin/global-read-only policy".into(),
        ),
        (create_policy(policy(DB_POLICY, "", "db")), "Invalid Policy: no Name is set".into()),
        (
            create_policy(policy(DB_POLICY, "db policy", "db")),
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed".into(),
        ),
        (create_policy(policy("db", "db", "db")), "Policy ID invalid UUID".into()),
        (create_policy(policy("", "db", "db")), "Missing ACL Policy ID".into()),
        (
            create_policy(Policy { description: "x".repeat(DESCRIPTION_BYTES_MAX + 1), ..policy(DB_POLICY, "db", "db") }),
            format!("Description is too long ({} > {DESCRIPTION_BYTES_MAX} bytes)", DESCRIPTION_BYTES_MAX + 1),
        ),
        // Tokens (agent/consul/auth/token_writer.go, state/acl.go aclTokenSetTxn).
        (create_token(token(MISSING, "99999999-9999-4999-8999-999999999999", &[DB_POLICY])), format!(r#"No such ACL policy with ID "{DB_POLICY}""#)),
        (create_token(token(APP_ACCESSOR, MISSING, &[])), "Invalid Token: AccessorID is already in use".into()),
        (create_token(token(APP_SECRET, MISSING, &[])), "Invalid Token: AccessorID is already in use".into()),
        (create_token(token(MISSING, ROOT_SECRET, &[])), "Invalid Token: SecretID is already in use".into()),
        (create_token(token(MISSING, ROOT_ACCESSOR, &[])), "Invalid Token: SecretID is already in use".into()),
        (create_token(token(MISSING, "", &[])), "Missing ACL Token SecretID".into()),
        (create_token(token("", MISSING, &[])), "Missing ACL Token AccessorID".into()),
        (update_token(token(MISSING, "", &[])), format!(r#"Cannot find token "{MISSING}""#)),
        (update_token(token("app", "", &[])), "AccessorID is not a valid UUID".into()),
        (update_token(Token { secret_id: MISSING.into(), ..app() }), "Changing a token's SecretID is not permitted".into()),
        (update_token(Token { secret_id: "manage".into(), ..app() }), "Cannot modify root ACL".into()),
        (update_token(Token { local: true, ..app() }), format!("Cannot toggle local mode of {APP_ACCESSOR}")),
        (
            update_token(Token { expiration_time_ms: Some(9_000_000), ..app() }),
            format!("Cannot change expiration time of {APP_ACCESSOR}"),
        ),
        (
            create_token(Token { expiration_time_ms: Some(999_999), ..token(MISSING, APP_ACCESSOR, &[]) }),
            "ExpirationTime cannot be before CreateTime".into(),
        ),
        (
            create_token(Token { service_identities: vec![service_identity("Web", &[])], ..expiring.clone() }),
            r#"Service identity "Web" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"#.into(),
        ),
        (
            create_token(Token { service_identities: vec![service_identity("", &[])], ..expiring.clone() }),
            "Service identity is missing the service name field on this token".into(),
        ),
        (
            create_token(Token { local: true, service_identities: vec![service_identity("web", &["dc1"])], ..expiring.clone() }),
            r#"Service identity "web" cannot specify a list of datacenters on a local token"#.into(),
        ),
        (
            create_token(Token { node_identities: vec![node_identity("n1", "")], ..expiring.clone() }),
            "Node identity is missing the datacenter field on this token".into(),
        ),
        (
            create_token(Token { node_identities: vec![node_identity("", "dc1")], ..expiring.clone() }),
            "Node identity is missing the node name field on this token".into(),
        ),
        (
            create_token(Token { node_identities: vec![node_identity("N1", "dc1")], ..expiring.clone() }),
            "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed".into(),
        ),
        (
            Command::AclTokenDelete(AclTokenDelete { accessor_id: ANONYMOUS_TOKEN_ACCESSOR_ID.into() }),
            "Delete operation not permitted on the anonymous token".into(),
        ),
        (Command::AclTokenDelete(AclTokenDelete { accessor_id: String::new() }), "Missing ACL Token AccessorID".into()),
        (bootstrap(None), "ACL bootstrap no longer allowed (reset index: 2)".into()),
    ];
    for (command, expected) in cases {
        let mut fsm = base.clone();
        let applied = apply(&mut fsm, &command);
        assert_eq!(refusal(&applied.response), expected, "{command:?}");
        assert!(applied.touched.is_empty(), "{command:?}");
        assert_eq!(fsm.acl(), base.acl(), "a refusal changes nothing: {command:?}");
        assert_eq!(fsm.applied(), base.applied() + 1);
    }
    {
        // An expired token cannot be updated: it is gone but for the reaper.
        let mut fsm = base.clone();
        apply(&mut fsm, &create_token(expiring.clone()));
        let update = update_token(Token { secret_id: String::new(), ..expiring.clone() });
        let late = fsm.apply(10_000, &update.encode(2_000_001)).expect("decodes");
        assert_eq!(refusal(&late.response), format!(r#"Cannot find token "{MISSING}""#));
    }
}

fn service_identity(name: &str, datacenters: &[&str]) -> ServiceIdentity {
    ServiceIdentity {
        service_name: name.into(),
        datacenters: datacenters.iter().map(|dc| (*dc).to_owned()).collect(),
    }
}

fn node_identity(name: &str, datacenter: &str) -> NodeIdentity {
    NodeIdentity { node_name: name.into(), datacenter: datacenter.into() }
}

#[test]
fn token_updates_keep_what_cannot_change_and_deduplicate_links() {
    let mut fsm = populated();
    apply(&mut fsm, &create_policy(policy(DB_POLICY, "db", "db")));
    let stored = fsm.acl().token(APP_ACCESSOR).expect("created").clone();
    let update = Token {
        secret_id: String::new(),
        description: "app".into(),
        policies: vec![DB_POLICY.into(), WEB_POLICY.into(), DB_POLICY.into()],
        service_identities: vec![service_identity("web", &["dc1"]), service_identity("web", &["dc2", "dc1"])],
        create_time_ms: 5,
        ..stored.clone()
    };
    let applied = apply(&mut fsm, &update_token(update));
    assert_eq!((applied.response, applied.touched.tables), (Response::Bool(true), vec![Table::AclTokens]));
    let updated = fsm.acl().token(APP_ACCESSOR).expect("kept");
    assert_eq!(updated.secret_id, APP_SECRET, "an empty SecretID keeps the stored one");
    assert_eq!(
        (updated.create_time_ms, updated.create_index, updated.modify_index),
        (stored.create_time_ms, 4, 6)
    );
    assert_eq!(updated.policies, [DB_POLICY, WEB_POLICY], "each link once, first seen first");
    assert_eq!(updated.service_identities, [service_identity("web", &["dc1", "dc2"])]);
    assert_eq!(fsm.acl().tokens_index(), 6);
}

#[test]
fn deletes_drop_rows_indexes_and_links() {
    let mut fsm = populated();
    {
        // A renamed policy frees its old name; a deleted one leaves no link behind.
        apply(&mut fsm, &update_policy(policy(WEB_POLICY, "frontend", "web")));
        assert!(fsm.acl().policy_by_name("web").is_none());
        assert_eq!(fsm.acl().policy_by_name("frontend").map(|p| p.create_index), Some(3));
        let deleted = apply(&mut fsm, &Command::AclPolicyDelete(AclPolicyDelete { id: WEB_POLICY.into() }));
        let tables = vec![Table::AclPolicies, Table::AclTokens];
        assert_eq!((deleted.response, deleted.touched.tables), (Response::Bool(true), tables));
        let app = fsm.acl().token(APP_ACCESSOR).expect("kept");
        assert!(app.policies.is_empty(), "the link went with the policy");
        assert_eq!(app.modify_index, 4, "as Consul shows it: the token row did not change");
        assert_eq!(fsm.acl().tokens_index(), 6, "but token readers wake to a newer index");
        let again = apply(&mut fsm, &Command::AclPolicyDelete(AclPolicyDelete { id: WEB_POLICY.into() }));
        assert_eq!((again.response, again.touched.is_empty()), (Response::Bool(false), true));
    }
    {
        let deleted =
            apply(&mut fsm, &Command::AclTokenDelete(AclTokenDelete { accessor_id: APP_ACCESSOR.into() }));
        assert_eq!(
            (deleted.response, deleted.touched.tables),
            (Response::Bool(true), vec![Table::AclTokens])
        );
        assert!(fsm.acl().token_by_secret(APP_SECRET).is_none());
        let resolved = fsm.acl().resolve(APP_SECRET, now_ms(9), "dc1", DefaultPolicy::Deny);
        assert_eq!(resolved, Err(ResolveError::NotFound));
        assert_eq!(fsm.acl().tokens_index(), 8);
        let again =
            apply(&mut fsm, &Command::AclTokenDelete(AclTokenDelete { accessor_id: APP_ACCESSOR.into() }));
        assert_eq!(again.response, Response::Bool(false));
        let reused = apply(&mut fsm, &create_token(token(MISSING, APP_SECRET, &[])));
        assert_eq!(reused.response, Response::Bool(true), "a deleted token's secret is free again");
    }
}

#[test]
fn a_secret_resolves_to_its_policies_and_identities_in_this_datacenter() {
    let mut fsm = populated();
    let identities = Token {
        service_identities: vec![service_identity("api", &[]), service_identity("billing", &["dc2"])],
        node_identities: vec![node_identity("n1", "dc1")],
        ..token(MISSING, "99999999-9999-4999-8999-999999999999", &[])
    };
    apply(&mut fsm, &create_token(identities));
    let scoped = Policy { datacenters: vec!["dc2".into()], ..policy(DB_POLICY, "db", "db") };
    apply(&mut fsm, &create_policy(scoped));
    let expiring = Token {
        expiration_time_ms: Some(2_000_000),
        ..token(APP_SECRET.replace('4', "a").as_str(), "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", &[DB_POLICY])
    };
    apply(&mut fsm, &create_token(expiring));
    let acl = fsm.acl();
    let now = now_ms(10);
    let resolve = |secret: &str, dc: &str, default| acl.resolve(secret, now, dc, default);
    {
        let root = resolve(ROOT_SECRET, "dc1", DefaultPolicy::Deny).expect("resolves");
        assert!(root.management);
        assert_eq!(root.accessor_id, ROOT_ACCESSOR);
        assert!(
            root.authorizer.acl_write() && root.authorizer.key_write("any") && root.authorizer.snapshot()
        );
    }
    {
        let anonymous =
            resolve("", "dc1", DefaultPolicy::Deny).expect("an empty secret is the anonymous token's");
        assert_eq!(
            (anonymous.accessor_id.as_str(), anonymous.management),
            (ANONYMOUS_TOKEN_ACCESSOR_ID, false)
        );
        assert!(!anonymous.authorizer.key_read("k"));
        let allowing = resolve("anonymous", "dc1", DefaultPolicy::Allow).expect("resolves");
        assert!(
            allowing.authorizer.key_read("k") && !allowing.authorizer.acl_read(),
            "AllowAll never grants acl"
        );
    }
    {
        let app = resolve(APP_SECRET, "dc1", DefaultPolicy::Deny).expect("resolves");
        assert!(app.authorizer.service_write("web") && !app.authorizer.service_write("db"));
    }
    {
        let id =
            resolve("99999999-9999-4999-8999-999999999999", "dc1", DefaultPolicy::Deny).expect("resolves");
        let authz = &id.authorizer;
        assert!(
            authz.service_write("api") && authz.service_write("api-sidecar-proxy") && authz.node_read("x")
        );
        assert!(!authz.service_write("billing"), "a service identity scoped to dc2");
        assert!(authz.node_write("n1"), "a node identity in its own datacenter");
        let elsewhere =
            resolve("99999999-9999-4999-8999-999999999999", "dc2", DefaultPolicy::Deny).expect("resolves");
        assert!(!elsewhere.authorizer.node_write("n1"), "a node identity only in its datacenter");
        assert!(elsewhere.authorizer.service_write("billing"));
    }
    {
        let expiring = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
        let dc2 =
            acl.resolve(expiring, 2_000_000, "dc2", DefaultPolicy::Deny).expect("at its expiry, still valid");
        assert!(dc2.authorizer.service_write("db"), "a policy scoped to dc2 applies there");
        let dc1 = acl.resolve(expiring, 2_000_000, "dc1", DefaultPolicy::Deny).expect("resolves");
        assert!(!dc1.authorizer.service_write("db"), "and not in dc1");
        assert_eq!(acl.resolve(expiring, 2_000_001, "dc2", DefaultPolicy::Deny), Err(ResolveError::NotFound));
    }
    assert_eq!(resolve(MISSING, "dc1", DefaultPolicy::Allow), Err(ResolveError::NotFound));
    assert_eq!(ResolveError::NotFound.to_string(), "ACL not found");
    for root in ["allow", "deny", "manage"] {
        let refused = resolve(root, "dc1", DefaultPolicy::Allow);
        assert_eq!(refused.map_err(|e| e.to_string()), Err("Cannot resolve root ACL".to_owned()));
    }
    assert!(acl.token(APP_ACCESSOR).is_some_and(|t| t.check_new_ids().is_ok()));
    let reserved = token(ANONYMOUS_TOKEN_ACCESSOR_ID, APP_SECRET, &[]).check_new_ids();
    assert_eq!(
        reserved.map_err(|e| e.to_string()),
        Err(r#"Invalid Token: AccessorID - UUIDs with the prefix "00000000-0000-0000-0000-0000000000" are reserved"#.into())
    );
    let not_uuid = token(APP_ACCESSOR, "secret", &[]).check_new_ids().map_err(|e| e.to_string());
    assert_eq!(not_uuid, Err("Invalid Token: SecretID - not a valid UUID".into()));
}

#[test]
fn every_acl_command_round_trips_through_its_encoding() {
    let commands = [
        initialize(),
        bootstrap(Some(3)),
        create_token(Token {
            node_identities: vec![node_identity("n1", "dc1")],
            ..token(APP_ACCESSOR, APP_SECRET, &[WEB_POLICY])
        }),
        Command::AclTokenDelete(AclTokenDelete { accessor_id: APP_ACCESSOR.into() }),
        update_policy(policy(WEB_POLICY, "web", "web")),
        Command::AclPolicyDelete(AclPolicyDelete { id: WEB_POLICY.into() }),
    ];
    for (code, command) in (18..).zip(commands) {
        let bytes = command.encode(42);
        assert_eq!(bytes[1], code, "codes are forever");
        assert_eq!(Command::decode(&bytes), Ok(Some(Stamped { now_ms: 42, command })));
    }
}

#[test]
fn acl_state_travels_in_a_version_6_snapshot_and_older_ones_still_restore() {
    let mut fsm = Fsm::new();
    apply(&mut fsm, &set_key("k"));
    assert_eq!(fsm.snapshot()[4], 3, "no ACL state: the version servers from before read");
    let fsm = {
        let mut fsm = populated();
        apply(&mut fsm, &set_key("k"));
        fsm
    };
    let bytes = fsm.snapshot();
    assert_eq!(bytes[4], 6);
    let restored = Fsm::restore(&bytes).expect("restores");
    assert_eq!(restored, fsm, "derived indexes rebuilt");
    assert_eq!(restored.snapshot(), bytes, "and it encodes to the same bytes");
    assert!(restored.acl().resolve(APP_SECRET, now_ms(9), "dc1", DefaultPolicy::Deny).is_ok());
    {
        // Version 5 (autopilot settings, no ACL state) still restores, with an empty ACL state.
        let mut old = Fsm::new();
        let config = crate::autopilot::Config::default();
        apply(&mut old, &Command::AutopilotSet(AutopilotSet { config, cas: None }));
        let bytes = old.snapshot();
        assert_eq!(bytes[4], 5);
        let restored = Fsm::restore(&bytes).expect("restores");
        assert!(restored.acl().is_empty() && restored.autopilot().is_some());
    }
}

fn set_key(key: &str) -> Command {
    Command::KvSet(KvSet { key: key.into(), value: Bytes::from_static(b"v"), flags: 0 })
}

#[test]
fn a_restore_replaces_acl_state_and_lowers_its_indexes_to_the_entry() {
    let source = {
        let mut fsm = Fsm::new();
        for n in 0..20 {
            apply(&mut fsm, &set_key(&format!("pad/{n}")));
        }
        for command in [initialize(), bootstrap(None), create_token(token(APP_ACCESSOR, APP_SECRET, &[]))] {
            apply(&mut fsm, &command);
        }
        fsm
    };
    assert_eq!(source.acl().bootstrapped(), Some(22));
    let mut target = populated();
    let restore = Command::Restore(Restore { state: source.snapshot() });
    let applied = apply(&mut target, &restore);
    assert_eq!(applied.response, Response::Bool(true));
    assert!(applied.touched.all, "every reader wakes");
    let acl = target.acl();
    assert_eq!(acl.bootstrapped(), Some(5), "the reset index lowered to the restore's entry");
    assert_eq!((acl.tokens_index(), acl.policies_index()), (5, 5));
    assert!(acl.token(APP_ACCESSOR).is_some_and(|t| (t.create_index, t.modify_index) == (5, 5)));
    assert!(acl.policy_by_name("web").is_none(), "the snapshot's ACL state replaced ours");
    {
        // A snapshot from before ACLs leaves none, as Consul's restore replaces every table;
        // the leader proposes AclInitialize again when it re-establishes itself.
        let mut old = Fsm::new();
        apply(&mut old, &set_key("k"));
        let applied = apply(&mut target, &Command::Restore(Restore { state: old.snapshot() }));
        assert_eq!(applied.response, Response::Bool(true));
        assert!(target.acl().is_empty());
        assert_eq!(
            target.acl().resolve("", now_ms(7), "dc1", DefaultPolicy::Allow),
            Err(ResolveError::NotFound)
        );
    }
}

/// The ACL part of a version 6 snapshot, field by field, to damage it.
type AclParts = (imbl::OrdMap<String, Policy>, imbl::OrdMap<String, Token>, Index, Index, Option<Index>);
type Damage<'a> = &'a dyn Fn(&mut AclParts);
type Parts = (SnapshotBody<Kv, Catalog, Sessions>, Option<StagedRestore>, Option<AutopilotEntry>, AclParts);

#[test]
fn a_snapshot_whose_acl_state_breaks_its_rules_is_refused() {
    let fsm = populated();
    let bytes = fsm.snapshot();
    let damaged = |damage: Damage| {
        let (body, staged, autopilot, mut acl): Parts = postcard::from_bytes(&bytes[5..]).expect("decodes");
        damage(&mut acl);
        let mut out = bytes[..5].to_vec();
        out.extend(postcard::to_allocvec(&(body, staged, autopilot, acl)).expect("encodes"));
        Fsm::restore(&out).map(|_| ()).map_err(|error| error.to_string())
    };
    assert_eq!(damaged(&|_| {}), Ok(()), "undamaged, it restores");
    let cases: [(Damage, &str); 6] = [
        (
            &|acl| acl.0.get_mut(WEB_POLICY).unwrap().name = "global-management".into(),
            "two ACL policies share a name",
        ),
        (
            &|acl| acl.1.get_mut(APP_ACCESSOR).unwrap().secret_id = ROOT_SECRET.into(),
            "two ACL tokens share a SecretID",
        ),
        (
            &|acl| acl.1.get_mut(APP_ACCESSOR).unwrap().policies.push(MISSING.into()),
            "an ACL token links a missing policy",
        ),
        (&|acl| acl.1.get_mut(APP_ACCESSOR).unwrap().modify_index = 9, "an ACL token row is inconsistent"),
        (&|acl| acl.3 = 9, "an ACL table index is past the applied index"),
        (&|acl| acl.4 = Some(9), "the ACL bootstrap index is past the applied index"),
    ];
    for (damage, broken) in cases {
        assert_eq!(damaged(damage), Err(format!("inconsistent state snapshot: {broken}")));
    }
    let emptied = damaged(&|acl| *acl = Default::default());
    assert_eq!(emptied, Err("inconsistent state snapshot: a version 6 snapshot without ACL state".into()));
}

/// ACL writes over small alphabets, so they collide: for the watch contract's property test.
pub(super) fn acl_command() -> impl proptest::strategy::Strategy<Value = Command> {
    use proptest::prelude::*;
    let policy_id = prop_oneof![Just(WEB_POLICY), Just(DB_POLICY), Just(GLOBAL_MANAGEMENT_POLICY_ID)];
    let name = prop_oneof![Just("web"), Just("db"), Just("global-management")];
    let rules_text = prop_oneof![Just("a"), Just(GLOBAL_MANAGEMENT_POLICY_RULES)];
    let policy_set =
        (policy_id.clone(), name, rules_text, any::<bool>()).prop_map(|(id, name, text, create)| {
            let policy =
                Policy { id: id.into(), name: name.into(), rules_text: text.into(), ..Policy::default() };
            Command::AclPolicySet(Box::new(AclPolicySet { policy, create }))
        });
    let accessor = prop_oneof![Just(APP_ACCESSOR), Just(ROOT_ACCESSOR), Just(ANONYMOUS_TOKEN_ACCESSOR_ID)];
    let secret = prop_oneof![Just(APP_SECRET), Just(ROOT_SECRET), Just("")];
    let links = prop::collection::vec(policy_id.clone(), 0..3);
    let token_set =
        (accessor.clone(), secret, links, any::<bool>()).prop_map(|(accessor, secret, links, create)| {
            let token = token(accessor, secret, &links);
            Command::AclTokenSet(Box::new(AclTokenSet { token, create }))
        });
    prop_oneof![
        1 => Just(initialize()),
        1 => Just(bootstrap(None)),
        3 => policy_set,
        3 => token_set,
        1 => policy_id.prop_map(|id| Command::AclPolicyDelete(AclPolicyDelete { id: id.into() })),
        1 => accessor.prop_map(|id| Command::AclTokenDelete(AclTokenDelete { accessor_id: id.into() })),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// The blocking-query contract on the ACL tables: an entry that changes what a reader of
    /// tokens or policies would be answered wakes it, and the answer's index moves past the
    /// one it waited on.
    #[test]
    fn every_changed_acl_answer_wakes_its_readers_with_a_newer_index(
        commands in proptest::collection::vec(acl_command(), 1..30),
    ) {
        let mut fsm = Fsm::new();
        let answer = |fsm: &Fsm| {
            let (tokens_index, tokens) = fsm.acl().tokens();
            let (policies_index, policies) = fsm.acl().policies();
            let tokens: Vec<Token> = tokens.into_iter().cloned().collect();
            let policies: Vec<Policy> = policies.into_iter().cloned().collect();
            ((tokens_index, tokens), (policies_index, policies))
        };
        for command in &commands {
            let (tokens_before, policies_before) = answer(&fsm);
            let applied = apply(&mut fsm, command);
            let (tokens_after, policies_after) = answer(&fsm);
            for (table, before, after) in [
                (Table::AclTokens, tokens_before.0, tokens_after.0),
                (Table::AclPolicies, policies_before.0, policies_after.0),
            ] {
                let changed = match table {
                    Table::AclTokens => tokens_before.1 != tokens_after.1,
                    _ => policies_before.1 != policies_after.1,
                };
                if changed {
                    proptest::prop_assert!(applied.touched.tables.contains(&table), "{:?} not woken by {:?}", table, command);
                    proptest::prop_assert!(after > before, "{:?} index {} -> {} at {:?}", table, before, after, command);
                }
            }
        }
    }
}
