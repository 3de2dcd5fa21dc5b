//! Tables from Consul's `acl/policy_authorizer_test.go`, `acl/acl_test.go` and the reference
//! (`consul-wave2.md` §1.3–1.5, §1.9).

use super::tree::RuleTree;
use super::*;

use AccessLevel::{Deny, List, Read, Write};
use Decision::{Allow, Default as Open, Deny as Refuse};

/// Rules from a compact list: `(resource, match, label, level)`; `"service"` rules take no
/// intentions here (see the intentions tables).
fn rules(list: &[(&str, Match, &str, AccessLevel)]) -> Rules {
    let mut rules = Rules::default();
    for &(resource, matching, label, level) in list {
        let labelled = match resource {
            "agent" => &mut rules.agent,
            "event" => &mut rules.event,
            "key" => &mut rules.key,
            "node" => &mut rules.node,
            "query" => &mut rules.query,
            "session" => &mut rules.session,
            "service" => {
                rules.service.insert(matching, label, ServiceAccess::new(level));
                continue;
            }
            other => panic!("no labelled resource {other}"),
        };
        labelled.insert(matching, label, level);
    }
    rules
}

fn policy(list: &[(&str, Match, &str, AccessLevel)]) -> PolicyAuthorizer {
    PolicyAuthorizer::new(&rules(list))
}

/// One read check and one write check per labelled resource kind, by name.
fn read_and_write(resource: &str, name: &'static str) -> (Permission<'static>, Permission<'static>) {
    match resource {
        "agent" => (Permission::AgentRead(name), Permission::AgentWrite(name)),
        "event" => (Permission::EventRead(name), Permission::EventWrite(name)),
        "key" => (Permission::KeyRead(name), Permission::KeyWrite(name)),
        "node" => (Permission::NodeRead(name), Permission::NodeWrite(name)),
        "query" => (Permission::QueryRead(name), Permission::QueryWrite(name)),
        "session" => (Permission::SessionRead(name), Permission::SessionWrite(name)),
        "service" => (Permission::ServiceRead(name), Permission::ServiceWrite(name)),
        "intention" => (Permission::IntentionRead(name), Permission::IntentionWrite(name)),
        other => panic!("no labelled resource {other}"),
    }
}

/// Every check, with a name where one is needed.
fn every_permission() -> Vec<Permission<'static>> {
    use Permission::*;
    vec![
        AclRead,
        AclWrite,
        AgentRead("n"),
        AgentWrite("n"),
        EventRead("e"),
        EventWrite("e"),
        IntentionRead("s"),
        IntentionWrite("s"),
        IntentionRead(WILDCARD),
        IntentionWrite(WILDCARD),
        KeyRead("k"),
        KeyList("k"),
        KeyWrite("k"),
        KeyWritePrefix("k"),
        KeyWritePrefix(""),
        KeyringRead,
        KeyringWrite,
        MeshRead,
        MeshWrite,
        NodeRead("n"),
        NodeReadAll,
        NodeWrite("n"),
        OperatorRead,
        OperatorWrite,
        PeeringRead,
        PeeringWrite,
        QueryRead("q"),
        QueryWrite("q"),
        ServiceRead("s"),
        ServiceReadAll,
        ServiceWrite("s"),
        ServiceWriteAny,
        SessionRead("n"),
        SessionWrite("n"),
        Snapshot,
    ]
}

const LABELLED: [&str; 7] = ["agent", "event", "key", "node", "query", "service", "session"];

#[test]
fn empty_policy_decides_nothing() {
    // Consul's "Defaults" case: no rule, no decision, so the default policy is consulted.
    let authorizer = PolicyAuthorizer::new(&Rules::default());
    for permission in every_permission() {
        assert_eq!(authorizer.decide(permission), Open, "{permission:?}");
    }
}

#[test]
fn exact_beats_prefix_and_longest_prefix_wins() {
    // Consul's "Prefer Exact Matches": exact foo write, exact football deny, prefix foot read,
    // prefix fo read, on every labelled resource kind.
    let table: [(&str, Decision, Decision); 7] = [
        ("fo", Allow, Refuse),
        ("for", Allow, Refuse),
        ("foo", Allow, Allow),
        ("foot", Allow, Refuse),
        ("foot2", Allow, Refuse),
        ("food", Allow, Refuse),
        ("football", Refuse, Refuse),
    ];
    for resource in LABELLED {
        let authorizer = policy(&[
            (resource, Match::Exact, "foo", Write),
            (resource, Match::Exact, "football", Deny),
            (resource, Match::Prefix, "foot", Read),
            (resource, Match::Prefix, "fo", Read),
        ]);
        for (name, read, write) in table {
            let (read_check, write_check) = read_and_write(resource, name);
            assert_eq!(authorizer.decide(read_check), read, "{resource} read {name}");
            assert_eq!(authorizer.decide(write_check), write, "{resource} write {name}");
        }
        let (read_check, _) = read_and_write(resource, "bar");
        assert_eq!(authorizer.decide(read_check), Open, "{resource}: no rule governs bar");
    }
}

#[test]
fn governing_rule_by_name() {
    let tree = RuleTree::compile(
        &rules(&[
            ("key", Match::Prefix, "", Read),
            ("key", Match::Prefix, "a/", Write),
            ("key", Match::Prefix, "a/b/", Deny),
            ("key", Match::Exact, "a/b/open", Write),
            ("key", Match::Prefix, "x", Read),
            ("key", Match::Exact, "x", Deny),
            ("key", Match::Prefix, "é", Write),
        ])
        .key,
        |level| level,
    );
    let table: [(&str, Option<AccessLevel>, &str); 11] = [
        ("z", Some(Read), "only the catch-all prefix starts it"),
        ("", Some(Read), "the empty name is governed by the empty prefix"),
        ("a/", Some(Write), "a prefix rule whose label is the whole name"),
        ("a/x", Some(Write), "longer prefix beats the catch-all"),
        ("a/b/c", Some(Deny), "the longest prefix wins, deny or not"),
        ("a/b/open", Some(Write), "an exact rule for the whole name beats every prefix"),
        ("a/b/open/more", Some(Deny), "an exact rule governs only its own name"),
        ("x", Some(Deny), "exact beats the prefix rule with the same label"),
        ("xy", Some(Read), "the prefix rule with that label still governs longer names"),
        ("éa", Some(Write), "labels match on characters, not on stray bytes"),
        ("e", Some(Read), "é is not e"),
    ];
    for (name, expected, why) in table {
        assert_eq!(tree.governing(name), expected, "{name:?}: {why}");
    }
    assert_eq!(RuleTree::default().governing("a"), None, "no rules, no governing rule");
}

#[test]
fn merge_precedence_per_label() {
    // deny > write > list > read, whichever policy comes first.
    let table: [(AccessLevel, AccessLevel, AccessLevel); 10] = [
        (Read, Read, Read),
        (Read, List, List),
        (Read, Write, Write),
        (Read, Deny, Deny),
        (List, Write, Write),
        (List, Deny, Deny),
        (Write, Deny, Deny),
        (List, List, List),
        (Write, Write, Write),
        (Deny, Deny, Deny),
    ];
    for (a, b, expected) in table {
        for (first, second) in [(a, b), (b, a)] {
            let one = rules(&[("key", Match::Prefix, "foo/", first)]);
            let two = rules(&[("key", Match::Prefix, "foo/", second)]);
            let merged = Rules::merged([&one, &two]);
            assert_eq!(merged.key.get(Match::Prefix, "foo/"), Some(expected), "{first} + {second}");
            let mut in_place = one.clone();
            in_place.merge(&two);
            assert_eq!(in_place, merged, "merge and merged agree");
        }
    }
    for (a, b, expected) in table {
        assert_eq!(a.merge(b), expected, "{a} + {b}");
        assert_eq!(b.merge(a), expected, "{b} + {a}");
    }
}

#[test]
fn merge_keeps_labels_and_match_kinds_apart() {
    // The reference's example: a deny on the catch-all does not beat a write on a longer
    // prefix, because merging is per identical label and match kind.
    let deny_all = rules(&[("key", Match::Prefix, "", Deny)]);
    let write_foo = rules(&[("key", Match::Prefix, "foo/", Write), ("key", Match::Exact, "bar", Read)]);
    let deny_bar_prefix = rules(&[("key", Match::Prefix, "bar", Deny)]);
    let authorizer =
        Authorizer::from_policies([&deny_all, &write_foo, &deny_bar_prefix], DefaultPolicy::Allow);
    let table: [(Permission<'_>, bool); 6] = [
        (Permission::KeyWrite("foo/x"), true),
        (Permission::KeyRead("foo/x"), true),
        (Permission::KeyRead("other"), false),
        (Permission::KeyRead("bar"), true),
        (Permission::KeyRead("bar2"), false),
        (Permission::KeyWrite("bar"), false),
    ];
    for (permission, allowed) in table {
        assert_eq!(authorizer.allowed(permission), allowed, "{permission:?}");
    }
}

#[test]
fn list_is_between_read_and_write() {
    let table: [(AccessLevel, [Decision; 3]); 4] = [
        (Write, [Allow, Allow, Allow]),
        (List, [Allow, Allow, Refuse]),
        (Read, [Allow, Refuse, Refuse]),
        (Deny, [Refuse, Refuse, Refuse]),
    ];
    for (level, [read, list, write]) in table {
        let authorizer = policy(&[("key", Match::Prefix, "dir/", level)]);
        assert_eq!(authorizer.decide(Permission::KeyRead("dir/a")), read, "{level} read");
        assert_eq!(authorizer.decide(Permission::KeyList("dir/")), list, "{level} list");
        assert_eq!(authorizer.decide(Permission::KeyWrite("dir/a")), write, "{level} write");
    }
}

#[test]
fn key_write_prefix() {
    type Case =
        (&'static str, &'static [(&'static str, Match, &'static str, AccessLevel)], &'static str, Decision);
    let table: [Case; 12] = [
        ("write on everything", &[("key", Match::Prefix, "", Write)], "foo/", Allow),
        ("no rules", &[], "foo/", Open),
        (
            "a read key below the prefix",
            &[("key", Match::Prefix, "", Write), ("key", Match::Exact, "foo/bar", Read)],
            "foo/",
            Refuse,
        ),
        (
            "the read key is not below this prefix",
            &[("key", Match::Prefix, "", Write), ("key", Match::Exact, "foo/bar", Read)],
            "baz/",
            Allow,
        ),
        (
            "a denied prefix below",
            &[("key", Match::Prefix, "foo/", Write), ("key", Match::Prefix, "foo/private/", Deny)],
            "foo/",
            Refuse,
        ),
        (
            "beside the denied prefix",
            &[("key", Match::Prefix, "foo/", Write), ("key", Match::Prefix, "foo/private/", Deny)],
            "foo/public/",
            Allow,
        ),
        ("the governing prefix only reads", &[("key", Match::Prefix, "foo/", Read)], "foo/bar/", Refuse),
        ("the governing prefix only lists", &[("key", Match::Prefix, "", List)], "foo/", Refuse),
        (
            "only a writable exact key below: no governing prefix",
            &[("key", Match::Exact, "foo/x", Write)],
            "foo/",
            Open,
        ),
        ("only a read exact key below", &[("key", Match::Exact, "foo/x", Read)], "foo/", Refuse),
        (
            "an exact rule on the prefix itself counts as below it",
            &[("key", Match::Prefix, "", Write), ("key", Match::Exact, "foo/", Read)],
            "foo/",
            Refuse,
        ),
        (
            "below means a string prefix, not a path",
            &[("key", Match::Prefix, "foo", Write), ("key", Match::Prefix, "foobar/", Deny)],
            "foo",
            Refuse,
        ),
    ];
    for (why, list, prefix, expected) in table {
        assert_eq!(policy(list).decide(Permission::KeyWritePrefix(prefix)), expected, "{why}");
    }
}

#[test]
fn any_and_all_allowed() {
    // Consul's TestAnyAllowed and TestAllAllowed: rules on "" and "foo", decisions for read,
    // list and write. `None` leaves the "foo" rule out.
    type Case = (&'static str, Option<(Match, AccessLevel)>, [Decision; 3]);
    let any: [Case; 11] = [
        ("prefix-write", None, [Allow, Allow, Allow]),
        ("prefix-write, foo deny", Some((Match::Prefix, Deny)), [Allow, Allow, Allow]),
        ("prefix-list", None, [Allow, Allow, Refuse]),
        ("prefix-read", None, [Allow, Refuse, Refuse]),
        ("prefix-deny", None, [Refuse, Refuse, Refuse]),
        ("prefix-deny, foo write prefix", Some((Match::Prefix, Write)), [Allow, Allow, Allow]),
        ("prefix-deny, foo write exact", Some((Match::Exact, Write)), [Allow, Allow, Allow]),
        ("prefix-deny, foo list prefix", Some((Match::Prefix, List)), [Allow, Allow, Refuse]),
        ("prefix-deny, foo read exact", Some((Match::Exact, Read)), [Allow, Refuse, Refuse]),
        ("prefix-deny, foo deny prefix", Some((Match::Prefix, Deny)), [Refuse, Refuse, Refuse]),
        ("prefix-deny, foo deny exact", Some((Match::Exact, Deny)), [Refuse, Refuse, Refuse]),
    ];
    let catch_all_of = |why: &str| match why.split(',').next() {
        Some("prefix-write") => Write,
        Some("prefix-list") => List,
        Some("prefix-read") => Read,
        _ => Deny,
    };
    for (why, foo, expected) in any {
        let tree = tree_of(catch_all_of(why), foo);
        assert_eq!([Read, List, Write].map(|level| tree.any_allowed(level)), expected, "any: {why}");
    }
    let all: [Case; 11] = [
        ("prefix-write", None, [Allow, Allow, Allow]),
        ("prefix-list", None, [Allow, Allow, Refuse]),
        ("prefix-read", None, [Allow, Refuse, Refuse]),
        ("prefix-deny", None, [Refuse, Refuse, Refuse]),
        ("prefix-write, foo write prefix", Some((Match::Prefix, Write)), [Allow, Allow, Allow]),
        ("prefix-write, foo write exact", Some((Match::Exact, Write)), [Allow, Allow, Allow]),
        ("prefix-write, foo list prefix", Some((Match::Prefix, List)), [Allow, Allow, Refuse]),
        ("prefix-write, foo list exact", Some((Match::Exact, List)), [Allow, Allow, Refuse]),
        ("prefix-write, foo read exact", Some((Match::Exact, Read)), [Allow, Refuse, Refuse]),
        ("prefix-write, foo deny prefix", Some((Match::Prefix, Deny)), [Refuse, Refuse, Refuse]),
        ("prefix-write, foo deny exact", Some((Match::Exact, Deny)), [Refuse, Refuse, Refuse]),
    ];
    for (why, foo, expected) in all {
        let tree = tree_of(catch_all_of(why), foo);
        assert_eq!([Read, List, Write].map(|level| tree.all_allowed(level)), expected, "all: {why}");
    }
    let empty = RuleTree::default();
    assert_eq!([Read, List, Write].map(|level| empty.any_allowed(level)), [Open; 3], "any: no rules");
    assert_eq!([Read, List, Write].map(|level| empty.all_allowed(level)), [Open; 3], "all: no rules");
}

fn tree_of(catch_all: AccessLevel, foo: Option<(Match, AccessLevel)>) -> RuleTree {
    let mut list = vec![("key", Match::Prefix, "", catch_all)];
    if let Some((matching, level)) = foo {
        list.push(("key", matching, "foo", level));
    }
    RuleTree::compile(&rules(&list).key, |level| level)
}

#[test]
fn intention_wildcards() {
    // Consul's "Intention Wildcards" cases: `*` reads if any intention may be read, writes only
    // if all may be written.
    let with = |policy, intentions| ServiceAccess::with_intentions(policy, intentions);
    type Case = (&'static str, ServiceAccess, Option<ServiceAccess>, Decision, Decision);
    let table: [Case; 5] = [
        ("prefix denied", with(Write, Write), Some(with(Deny, Deny)), Allow, Refuse),
        ("prefix allowed, foo denied", with(Write, Deny), Some(with(Write, Write)), Allow, Refuse),
        ("all allowed", with(Write, Write), Some(with(Write, Write)), Allow, Allow),
        ("all default", with(Write, Write), None, Allow, Open),
        ("any default", with(Write, Deny), None, Open, Refuse),
    ];
    for (why, foo, catch_all, read, write) in table {
        let mut rules = Rules::default();
        rules.service.insert(Match::Exact, "foo", foo);
        if let Some(catch_all) = catch_all {
            rules.service.insert(Match::Prefix, "", catch_all);
        }
        let authorizer = PolicyAuthorizer::new(&rules);
        assert_eq!(authorizer.decide(Permission::IntentionRead(WILDCARD)), read, "{why}: read *");
        assert_eq!(authorizer.decide(Permission::IntentionWrite(WILDCARD)), write, "{why}: write *");
    }
}

#[test]
fn intentions_default_and_merge() {
    let table: [(&str, &[ServiceAccess], Decision, Decision); 7] = [
        ("write gives intentions read", &[ServiceAccess::new(Write)], Allow, Refuse),
        ("read gives intentions read", &[ServiceAccess::new(Read)], Allow, Refuse),
        ("deny gives intentions deny", &[ServiceAccess::new(Deny)], Refuse, Refuse),
        ("written intentions win", &[ServiceAccess::with_intentions(Read, Write)], Allow, Allow),
        (
            "intentions merge on their own",
            &[ServiceAccess::new(Write), ServiceAccess::with_intentions(Read, Write)],
            Allow,
            Allow,
        ),
        (
            "a written deny beats an unwritten default",
            &[ServiceAccess::new(Write), ServiceAccess::with_intentions(Write, Deny)],
            Refuse,
            Refuse,
        ),
        (
            "a merged deny policy makes the unwritten default deny",
            &[ServiceAccess::new(Write), ServiceAccess::new(Deny)],
            Refuse,
            Refuse,
        ),
    ];
    for (why, grants, read, write) in table {
        let policies: Vec<Rules> = grants
            .iter()
            .map(|&grant| {
                let mut rules = Rules::default();
                rules.service.insert(Match::Exact, "web", grant);
                rules
            })
            .collect();
        let authorizer = PolicyAuthorizer::from_policies(&policies);
        assert_eq!(authorizer.decide(Permission::IntentionRead("web")), read, "{why}: read");
        assert_eq!(authorizer.decide(Permission::IntentionWrite("web")), write, "{why}: write");
    }
}

#[test]
fn default_policy_fallback() {
    let management = [Permission::AclRead, Permission::AclWrite, Permission::Snapshot];
    let allow_all = Authorizer::from_policies([], DefaultPolicy::Allow);
    let deny_all = Authorizer::from_policies([], DefaultPolicy::Deny);
    for permission in every_permission() {
        let is_management = management.contains(&permission);
        assert_eq!(allow_all.allowed(permission), !is_management, "allow: {permission:?}");
        assert!(!deny_all.allowed(permission), "deny: {permission:?}");
    }
}

#[test]
fn allow_all_never_grants_acl_but_rules_do() {
    let table: [(&str, Option<AccessLevel>, [bool; 3]); 5] = [
        ("no acl rule", None, [false, false, false]),
        ("acl read", Some(Read), [true, false, false]),
        ("acl write", Some(Write), [true, true, true]),
        ("acl deny", Some(Deny), [false, false, false]),
        ("acl list is read at most", Some(List), [true, false, false]),
    ];
    for (why, acl, [read, write, snapshot]) in table {
        let rules = Rules { acl, ..Rules::default() };
        let authorizer = Authorizer::from_policies([&rules], DefaultPolicy::Allow);
        assert_eq!(
            [authorizer.acl_read(), authorizer.acl_write(), authorizer.snapshot()],
            [read, write, snapshot],
            "{why}"
        );
    }
}

#[test]
fn rules_decide_before_the_default_policy() {
    let rules = rules(&[("key", Match::Prefix, "", Deny), ("key", Match::Prefix, "public/", Read)]);
    let table: [(DefaultPolicy, Permission<'_>, bool); 6] = [
        (DefaultPolicy::Allow, Permission::KeyRead("private"), false),
        (DefaultPolicy::Allow, Permission::KeyRead("public/a"), true),
        (DefaultPolicy::Allow, Permission::KeyWrite("public/a"), false),
        (DefaultPolicy::Allow, Permission::NodeRead("n"), true),
        (DefaultPolicy::Deny, Permission::KeyRead("public/a"), true),
        (DefaultPolicy::Deny, Permission::NodeRead("n"), false),
    ];
    for (default_policy, permission, allowed) in table {
        let authorizer = Authorizer::from_policies([&rules], default_policy);
        assert_eq!(authorizer.allowed(permission), allowed, "{default_policy:?} {permission:?}");
    }
}

#[test]
fn mesh_and_peering_follow_operator_without_rules_of_their_own() {
    let table: [(&str, Rules, [Decision; 4]); 4] = [
        ("operator read", Rules { operator: Some(Read), ..Rules::default() }, [Allow, Refuse, Allow, Refuse]),
        ("operator write", Rules { operator: Some(Write), ..Rules::default() }, [Allow, Allow, Allow, Allow]),
        (
            "own rules beat operator",
            Rules { operator: Some(Deny), mesh: Some(Write), peering: Some(Read), ..Rules::default() },
            [Allow, Allow, Allow, Refuse],
        ),
        ("nothing", Rules::default(), [Open, Open, Open, Open]),
    ];
    for (why, rules, expected) in table {
        let authorizer = PolicyAuthorizer::new(&rules);
        let checks =
            [Permission::MeshRead, Permission::MeshWrite, Permission::PeeringRead, Permission::PeeringWrite];
        assert_eq!(checks.map(|check| authorizer.decide(check)), expected, "{why}");
    }
}

#[test]
fn read_all_and_write_any() {
    let table: [(&str, Rules, bool, bool); 4] = [
        ("one service written", rules(&[("service", Match::Exact, "web", Write)]), false, true),
        ("every service read", rules(&[("service", Match::Prefix, "", Read)]), true, false),
        (
            "every service read but one",
            rules(&[("service", Match::Prefix, "", Read), ("service", Match::Exact, "secret", Deny)]),
            false,
            false,
        ),
        ("every node read", rules(&[("node", Match::Prefix, "", Read)]), false, false),
    ];
    for (why, rules, read_all, write_any) in table {
        let authorizer = Authorizer::from_policies([&rules], DefaultPolicy::Deny);
        assert_eq!(authorizer.service_read_all(), read_all, "{why}: service read all");
        assert_eq!(authorizer.service_write_any(), write_any, "{why}: service write any");
    }
    let nodes =
        Authorizer::from_policies([&rules(&[("node", Match::Prefix, "", Read)])], DefaultPolicy::Deny);
    assert!(nodes.node_read_all());
}

#[test]
fn global_management_grants_everything() {
    let authorizer = Authorizer::from_policies([&global_management()], DefaultPolicy::Deny);
    for permission in every_permission() {
        assert!(authorizer.allowed(permission), "{permission:?}");
    }
}

#[test]
fn global_read_only_reads_and_nothing_more() {
    let authorizer = Authorizer::from_policies([&global_read_only()], DefaultPolicy::Deny);
    for permission in every_permission() {
        let expected = permission.level() == Read;
        assert_eq!(authorizer.allowed(permission), expected, "{permission:?}");
    }
}

#[test]
fn identities_and_templated_policies() {
    type Case = (&'static str, Rules, &'static [(Permission<'static>, bool)]);
    let table: [Case; 3] = [
        (
            "service identity web",
            SyntheticPolicy::service_identity("web").rules,
            &[
                (Permission::ServiceWrite("web"), true),
                (Permission::ServiceWrite("web-sidecar-proxy"), true),
                (Permission::ServiceWrite("web2"), false),
                (Permission::ServiceRead("api"), true),
                (Permission::NodeRead("n1"), true),
                (Permission::NodeWrite("n1"), false),
                (Permission::IntentionRead("web"), true),
                (Permission::IntentionWrite("web"), false),
                (Permission::KeyRead("k"), false),
            ],
        ),
        (
            "node identity n1",
            SyntheticPolicy::node_identity("n1").rules,
            &[
                (Permission::NodeWrite("n1"), true),
                (Permission::NodeWrite("n2"), false),
                (Permission::NodeRead("n2"), false),
                (Permission::ServiceRead("api"), true),
                (Permission::ServiceWrite("api"), false),
            ],
        ),
        (
            "builtin/dns",
            SyntheticPolicy::templated_dns().rules,
            &[
                (Permission::NodeRead("n1"), true),
                (Permission::ServiceRead("api"), true),
                (Permission::QueryRead("q"), true),
                (Permission::QueryWrite("q"), false),
                (Permission::KeyRead("k"), false),
            ],
        ),
    ];
    for (why, rules, checks) in table {
        let authorizer = Authorizer::from_policies([&rules], DefaultPolicy::Deny);
        for &(permission, allowed) in checks {
            assert_eq!(authorizer.allowed(permission), allowed, "{why}: {permission:?}");
        }
    }
}

#[test]
fn synthetic_policy_names() {
    let node = SyntheticPolicy::node_identity("n1");
    assert_eq!(
        node.rules_text,
        "\nnode \"n1\" {\n\tpolicy = \"write\"\n}\nservice_prefix \"\" {\n\tpolicy = \"read\"\n}"
    );
    // Consul's Sum(rules) quirk: the text in hex ("\nnode" is 0a 6e 6f 64 65), then the offset
    // basis of FNV-128a.
    assert!(node.id.starts_with("0a6e6f6465"), "{}", node.id);
    assert!(node.id.ends_with("6c62272e07bb014262b821756295c58d"), "{}", node.id);
    assert_eq!(node.id.len(), 2 * node.rules_text.len() + 32);
    assert_eq!(node.name, format!("synthetic-policy-{}", node.id));
    assert_eq!(node.description, "synthetic policy for node identity \"n1\"");
    let web = SyntheticPolicy::service_identity("web");
    assert_eq!(web.description, "synthetic policy for service identity \"web\"");
    assert!(web.rules_text.contains("service \"web-sidecar-proxy\" {\n\tpolicy = \"write\"\n}"));
    let dns = SyntheticPolicy::templated_dns();
    assert_eq!(dns.description, "synthetic policy generated from templated policy: builtin/dns");
    assert_eq!(dns.rules_text, DNS_TEMPLATED_POLICY_RULES);
    assert_eq!(synthetic_policy_id(""), "6c62272e07bb014262b821756295c58d");
}

#[test]
fn name_checks() {
    let long_identity = "a".repeat(SERVICE_IDENTITY_NAME_BYTES_MAX);
    let too_long_identity = "a".repeat(SERVICE_IDENTITY_NAME_BYTES_MAX + 1);
    let identities: [(&str, bool); 12] = [
        ("web", true),
        ("a", true),
        ("web-1_b", true),
        ("9lives", true),
        (&long_identity, true),
        ("", false),
        ("Web", false),
        ("-web", false),
        ("web_", false),
        ("web.1", false),
        ("wéb", false),
        (&too_long_identity, false),
    ];
    for (name, valid) in identities {
        assert_eq!(is_valid_service_identity_name(name), valid, "service {name:?}");
        assert_eq!(is_valid_node_identity_name(name), valid, "node {name:?}");
    }
    let long_policy = "P".repeat(POLICY_NAME_BYTES_MAX);
    let too_long_policy = "P".repeat(POLICY_NAME_BYTES_MAX + 1);
    let policies: [(&str, bool); 11] = [
        ("my-Policy_1", true),
        ("team/readers", true),
        ("team/", true),
        (&long_policy, true),
        ("", false),
        ("/team", false),
        ("a/b/c", false),
        ("builtin/mine", false),
        ("with space", false),
        ("dotted.name", false),
        (&too_long_policy, false),
    ];
    for (name, valid) in policies {
        assert_eq!(is_valid_policy_name(name), valid, "policy {name:?}");
    }
    let ids = [
        (GLOBAL_MANAGEMENT_POLICY_ID, true),
        ("00000000-0000-0000-0000-000000000099", true),
        ("0a000000-0000", false),
    ];
    for (id, reserved) in ids {
        assert_eq!(is_reserved_id(id), reserved, "{id}");
    }
}

#[test]
fn permission_denied_text() {
    let lacks = |accessor: &str, resource, level, subject: &str| PermissionDenied::Lacks {
        accessor_id: accessor.to_owned(),
        resource,
        level,
        subject: subject.to_owned(),
    };
    let token = "5e3a1c1e-0000-4000-8000-000000000001";
    let table: [(PermissionDenied, &str); 7] = [
        (
            lacks(token, Resource::Key, Read, "foo/bar"),
            "Permission denied: token with AccessorID '5e3a1c1e-0000-4000-8000-000000000001' lacks permission 'key:read' on \"foo/bar\"",
        ),
        (
            lacks(token, Resource::Operator, Read, ""),
            "Permission denied: token with AccessorID '5e3a1c1e-0000-4000-8000-000000000001' lacks permission 'operator:read'",
        ),
        (
            lacks(ANONYMOUS_TOKEN_ACCESSOR_ID, Resource::Service, Write, "web"),
            "Permission denied: anonymous token lacks permission 'service:write' on \"web\". The anonymous token is used implicitly when a request does not specify a token.",
        ),
        (
            lacks(ANONYMOUS_TOKEN_ACCESSOR_ID, Resource::Acl, Write, ""),
            "Permission denied: anonymous token lacks permission 'acl:write'. The anonymous token is used implicitly when a request does not specify a token.",
        ),
        (lacks(token, Resource::Key, List, "a\"b"), "Permission denied: token with AccessorID '5e3a1c1e-0000-4000-8000-000000000001' lacks permission 'key:list' on \"a\"b\""),
        (
            PermissionDenied::Cause("ACL bootstrap no longer allowed (reset index: 7)".to_owned()),
            "Permission denied: ACL bootstrap no longer allowed (reset index: 7)",
        ),
        (PermissionDenied::Bare, "Permission denied"),
    ];
    for (error, text) in table {
        assert_eq!(error.to_string(), text);
        assert!(error.to_string().starts_with(PERMISSION_DENIED));
    }
}

#[test]
fn check_names_resource_level_and_subject() {
    let authorizer = Authorizer::from_policies([], DefaultPolicy::Deny);
    let table: [(Permission<'_>, &str); 7] = [
        (Permission::KeyWritePrefix("dir/"), "lacks permission 'key:write' on \"dir/\""),
        (Permission::KeyRead(""), "lacks permission 'key:read'"),
        (Permission::Snapshot, "lacks permission 'acl:write'"),
        (Permission::NodeReadAll, "lacks permission 'node:read' on \"all nodes\""),
        (Permission::ServiceReadAll, "lacks permission 'service:read' on \"all services\""),
        (Permission::ServiceWriteAny, "lacks permission 'service:write' on \"any service\""),
        (Permission::IntentionWrite("web"), "lacks permission 'intention:write' on \"web\""),
    ];
    for (permission, ending) in table {
        let error = authorizer.check(permission, "abc").expect_err("deny-all refuses");
        let text = error.to_string();
        assert!(text.starts_with("Permission denied: token with AccessorID 'abc' "), "{text}");
        assert!(text.ends_with(ending), "{permission:?}: {text}");
    }
    let allowing = Authorizer::from_policies([], DefaultPolicy::Allow);
    assert_eq!(allowing.check(Permission::KeyRead("k"), "abc"), Ok(()));
}

#[test]
fn convenience_methods_match_permissions() {
    let rules = rules(&[("key", Match::Prefix, "", Write), ("node", Match::Prefix, "", Read)]);
    let authorizer = Authorizer::from_policies([&rules], DefaultPolicy::Deny);
    let table: [(bool, Permission<'_>); 8] = [
        (authorizer.key_read("k"), Permission::KeyRead("k")),
        (authorizer.key_list("k"), Permission::KeyList("k")),
        (authorizer.key_write("k"), Permission::KeyWrite("k")),
        (authorizer.key_write_prefix(""), Permission::KeyWritePrefix("")),
        (authorizer.node_read("n"), Permission::NodeRead("n")),
        (authorizer.node_write("n"), Permission::NodeWrite("n")),
        (authorizer.agent_read("n"), Permission::AgentRead("n")),
        (authorizer.operator_read(), Permission::OperatorRead),
    ];
    for (by_method, permission) in table {
        assert_eq!(by_method, authorizer.allowed(permission), "{permission:?}");
    }
}

#[test]
fn builtin_rules_are_what_their_text_says() {
    // The io crate's parser checks the texts against these; here, their shape.
    let management = global_management();
    assert_eq!(management.acl, Some(Write));
    assert_eq!(management.service.get(Match::Prefix, ""), Some(ServiceAccess::with_intentions(Write, Write)));
    for labelled in [
        &management.agent,
        &management.event,
        &management.key,
        &management.node,
        &management.query,
        &management.session,
    ] {
        assert_eq!(labelled.iter().collect::<Vec<_>>(), vec![(Match::Prefix, "", Write)]);
    }
    assert_eq!(global_read_only().peering, Some(Read));
}

#[test]
fn rules_round_trip_through_postcard() {
    let mut rules = global_read_only();
    rules.merge(&SyntheticPolicy::service_identity("web").rules);
    rules.key.insert(Match::Exact, "a/b", List);
    let bytes = postcard::to_allocvec(&rules).expect("rules encode");
    let decoded: Rules = postcard::from_bytes(&bytes).expect("rules decode");
    assert_eq!(decoded, rules);
    assert!(Rules::default().is_empty());
    assert!(!rules.is_empty());
}

#[test]
fn access_levels_parse_as_consul_does() {
    let table: [(&str, Option<AccessLevel>); 7] = [
        ("read", Some(Read)),
        ("list", Some(List)),
        ("write", Some(Write)),
        ("deny", Some(Deny)),
        ("WRITE", Some(Write)),
        ("", None),
        ("nope", None),
    ];
    for (text, level) in table {
        assert_eq!(AccessLevel::parse(text), level, "{text:?}");
    }
    for level in AccessLevel::ALL {
        assert_eq!(AccessLevel::parse(level.as_str()), Some(level));
    }
}
