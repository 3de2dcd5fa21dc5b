//! ACLs on, through the real binary as an operator turns them on: `acl { enabled = true
//! default_policy = "deny" }` in a config, the first token from `initial_management` or from
//! `/v1/acl/bootstrap`, then policies and tokens over HTTP and the CLI with `CONSUL_HTTP_TOKEN`.
//! Answers and texts are Consul's (`../shared/reference/consul-wave2.md` §1).

use std::process::Command;

use serde_json::{json, Value};

mod common;
use common::dev_agent;

/// The initial management token's secret in these tests.
const MANAGEMENT: &str = "6d1d0c4f-3a52-4b1e-9a43-7b1f2b0c9e11";

/// `method path` with `token` (none when empty) and `body`: the status and the body's text.
fn call(http: u16, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, String) {
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = format!("http://127.0.0.1:{http}{path}");
    let mut response = match (method, body) {
        ("GET", _) => api.get(&url).header("X-Consul-Token", token).call(),
        ("DELETE", _) => api.delete(&url).header("X-Consul-Token", token).call(),
        (_, Some(body)) => api.put(&url).header("X-Consul-Token", token).send(body.to_string()),
        (_, None) => api.put(&url).header("X-Consul-Token", token).send_empty(),
    }
    .expect("the agent answers");
    (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
}

fn ok_json(answer: (u16, String)) -> Value {
    assert_eq!(answer.0, 200, "{}", answer.1);
    serde_json::from_str(&answer.1).unwrap()
}

/// A dev agent with ACLs on, deny by default, once the leader has made the [`MANAGEMENT`]
/// token (it does so after taking office, a moment after the agent answers).
fn managed_agent() -> (common::DevAgent, u16) {
    let (agent, http) = dev_agent(&[&acl_on(&format!("tokens {{ initial_management = \"{MANAGEMENT}\" }}"))]);
    common::eventually("the initial management token", std::time::Duration::from_secs(15), || {
        (call(http, "GET", "/v1/acl/token/self", MANAGEMENT, None).0 == 200).then_some(())
    });
    (agent, http)
}

fn acl_on(extra: &str) -> String {
    format!("-hcl=acl {{ enabled = true default_policy = \"deny\" {extra} }}")
}

/// `muster <args>` against the agent with `CONSUL_HTTP_TOKEN` set: exit code, stdout, stderr.
fn muster(http: u16, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("CONSUL_HTTP_TOKEN", token)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
}

#[test]
fn a_deny_by_default_agent_lets_only_the_tokens_its_policies_allow() {
    let (_agent, http) = managed_agent();

    // No token is the anonymous token, which holds nothing; a made-up one is not found.
    let (status, text) = call(http, "GET", "/v1/kv/app/a", "", None);
    assert_eq!(status, 403);
    assert!(text.starts_with("Permission denied: anonymous token lacks permission '"), "{text}");
    assert!(text.ends_with("The anonymous token is used implicitly when a request does not specify a token."));
    let unknown = "0f5c3e2a-9c1b-4d7e-8a6f-1b2c3d4e5f60";
    assert_eq!(call(http, "GET", "/v1/kv/app/a", unknown, None), (403, "ACL not found".to_owned()));
    assert_eq!(
        call(http, "GET", "/v1/kv/app/a", "manage", None),
        (403, "Cannot resolve root ACL".to_owned())
    );
    // The status endpoints, the agent's version and the index need no token.
    for open in ["/v1/status/leader", "/v1/agent/version", "/"] {
        assert_eq!(call(http, "GET", open, "", None).0, 200, "{open}");
    }

    // The initial management token, made by the leader through the bootstrap.
    let me = ok_json(call(http, "GET", "/v1/acl/token/self", MANAGEMENT, None));
    assert_eq!(me["SecretID"], MANAGEMENT);
    assert_eq!(me["Description"], "Initial Management Token");
    assert_eq!(
        me["Policies"],
        json!([{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}])
    );
    assert!(me["CreateTime"].as_str().unwrap().ends_with('Z'));
    let (status, text) = call(http, "PUT", "/v1/acl/bootstrap", "", None);
    assert_eq!(status, 403, "{text}");
    assert!(text.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "), "{text}");

    // A policy that reads app/, and a token holding it (linked by name).
    let rules = r#"key_prefix "app/" { policy = "read" }"#;
    let policy = ok_json(call(
        http,
        "PUT",
        "/v1/acl/policy",
        MANAGEMENT,
        Some(json!({"Name": "app-read", "Description": "reads app", "Rules": rules})),
    ));
    assert_eq!((policy["Name"].as_str(), policy["Rules"].as_str()), (Some("app-read"), Some(rules)));
    let id = policy["ID"].as_str().unwrap();
    let by_name = ok_json(call(http, "GET", "/v1/acl/policy/name/app-read", MANAGEMENT, None));
    assert_eq!(by_name["ID"], id);
    let token = ok_json(call(
        http,
        "PUT",
        "/v1/acl/token",
        MANAGEMENT,
        Some(json!({"Description": "reader", "Policies": [{"Name": "app-read"}], "ExpirationTTL": "1h"})),
    ));
    assert_eq!(token["Policies"], json!([{"ID": id, "Name": "app-read"}]));
    assert!(token["ExpirationTime"].as_str().is_some(), "{token}");
    let reader = token["SecretID"].as_str().unwrap();

    // The token may not use the ACL API; the list shows it, with the secret, to management.
    let (status, text) = call(http, "GET", "/v1/acl/tokens", reader, None);
    let accessor = token["AccessorID"].as_str().unwrap();
    assert_eq!(
        (status, text),
        (403, format!("Permission denied: token with AccessorID '{accessor}' lacks permission 'acl:read'"))
    );
    let tokens = ok_json(call(http, "GET", &format!("/v1/acl/tokens?policy={id}"), MANAGEMENT, None));
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    assert_eq!(tokens[0]["SecretID"], reader);

    // Out-of-range TTLs and bad rules are refused in Consul's words; nothing is created.
    let (status, text) =
        call(http, "PUT", "/v1/acl/token", MANAGEMENT, Some(json!({"ExpirationTTL": "30s"})));
    assert_eq!(
        (status, text.as_str()),
        (500, "Invalid Token: Token Expiration TTL '30s' should be > than 1m0s")
    );
    let (status, text) = call(
        http,
        "PUT",
        "/v1/acl/policy",
        MANAGEMENT,
        Some(json!({"Name": "bad", "Rules": "key \"a\" { policy = \"nope\" }"})),
    );
    assert_eq!(status, 500, "{text}");
    assert!(text.starts_with("Invalid key policy: "), "{text}");
    assert_eq!(ok_json(call(http, "GET", "/v1/acl/tokens", MANAGEMENT, None)).as_array().unwrap().len(), 3);

    // Management writes KV, through the CLI with CONSUL_HTTP_TOKEN as users do.
    assert_eq!(muster(http, MANAGEMENT, &["kv", "put", "app/a", "1"]).0, 0);
    let (code, _, stderr) = muster(http, "", &["kv", "get", "app/a"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Permission denied: anonymous token lacks permission"), "{stderr}");

    // The reader reads app/ and nothing else: one key is refused, a list is filtered (and says so).
    assert_eq!(muster(http, MANAGEMENT, &["kv", "put", "other/b", "2"]).0, 0);
    assert_eq!(call(http, "GET", "/v1/kv/app/a?raw", reader, None), (200, "1".to_owned()));
    let refused = |permission: &str, key: &str| {
        (403, format!("Permission denied: token with AccessorID '{accessor}' lacks permission '{permission}' on \"{key}\""))
    };
    assert_eq!(call(http, "GET", "/v1/kv/other/b", reader, None), refused("key:read", "other/b"));
    assert_eq!(call(http, "PUT", "/v1/kv/app/a", reader, Some(json!(2))), refused("key:write", "app/a"));
    assert_eq!(call(http, "DELETE", "/v1/kv/app?recurse", reader, None), refused("key:write", "app"));
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut listed = api
        .get(format!("http://127.0.0.1:{http}/v1/kv/?keys"))
        .header("X-Consul-Token", reader)
        .call()
        .unwrap();
    assert_eq!(
        listed.headers().get("X-Consul-Results-Filtered-By-ACLs").map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(listed.body_mut().read_to_string().unwrap(), r#"["app/a"]"#);
    let everything = ok_json(call(http, "GET", "/v1/kv/?recurse", MANAGEMENT, None));
    assert_eq!(everything.as_array().unwrap().len(), 2);

    // Deleting the policy unlinks it; deleting the token makes its secret unknown.
    assert_eq!(
        call(http, "DELETE", &format!("/v1/acl/policy/{id}"), MANAGEMENT, None),
        (200, "true".to_owned())
    );
    assert_eq!(
        ok_json(call(http, "GET", &format!("/v1/acl/token/{accessor}"), MANAGEMENT, None))["Policies"],
        Value::Null
    );
    assert_eq!(
        call(http, "DELETE", &format!("/v1/acl/token/{accessor}"), MANAGEMENT, None),
        (200, "true".to_owned())
    );
    assert_eq!(call(http, "GET", "/v1/acl/token/self", reader, None), (403, "ACL not found".to_owned()));
}

#[test]
fn the_bootstrap_answers_once_with_a_management_token() {
    // ACLs turned on by a JSON file, as most of the corpus's ACL configs do.
    let config = std::env::temp_dir().join(format!("muster-acl-{}.json", std::process::id()));
    std::fs::write(&config, r#"{"acl": {"enabled": true, "default_policy": "deny"}}"#).unwrap();
    let (_agent, http) = dev_agent(&[&format!("-config-file={}", config.display())]);
    let _ = std::fs::remove_file(&config);
    let first = ok_json(call(http, "PUT", "/v1/acl/bootstrap", "", None));
    assert_eq!(first["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(first["ID"], first["SecretID"]);
    let secret = first["SecretID"].as_str().unwrap();
    let (status, text) = call(http, "PUT", "/v1/acl/bootstrap", "", None);
    assert_eq!(status, 403);
    assert!(text.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "), "{text}");
    // The new token manages; the anonymous token is listed beside it.
    let tokens = ok_json(call(http, "GET", "/v1/acl/tokens", secret, None));
    let descriptions: Vec<&str> =
        tokens.as_array().unwrap().iter().map(|t| t["Description"].as_str().unwrap()).collect();
    assert!(
        descriptions.contains(&"Anonymous Token")
            && descriptions.contains(&"Bootstrap Token (Global Management)")
    );
    let policies = ok_json(call(http, "GET", "/v1/acl/policies", secret, None));
    assert_eq!(policies[0]["Name"], "global-management");
    assert!(policies[0].get("Rules").is_none(), "the list leaves rules out: {policies}");
}

#[test]
fn a_client_agent_refuses_acls_it_could_not_enforce() {
    let data = std::env::temp_dir().join(format!("muster-acl-client-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-bind=127.0.0.1", "-dns-port=-1", "-http-port=-1"])
        .arg(format!("-data-dir={}", data.display()))
        .arg(acl_on(""))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("acl.enabled: muster enforces ACLs on servers only yet"), "{stderr}");
}

/// Consul filters catalog, health and session reads by what the token may read rather than
/// refusing them, and says so in `X-Consul-Results-Filtered-By-ACLs`; operator and session
/// writes are refused with the permission they lack.
#[test]
fn reads_are_filtered_to_what_the_token_may_read() {
    let (_agent, http) = managed_agent();
    for name in ["web", "db"] {
        let body = json!({"Name": name, "Port": 80});
        assert_eq!(call(http, "PUT", "/v1/agent/service/register", MANAGEMENT, Some(body)).0, 200);
    }
    let rules = r#"service "web" { policy = "read" }  node_prefix "" { policy = "read" }"#;
    let policy = json!({"Name": "web-read", "Rules": rules});
    assert_eq!(call(http, "PUT", "/v1/acl/policy", MANAGEMENT, Some(policy)).0, 200);
    let token = json!({"Policies": [{"Name": "web-read"}]});
    let token = ok_json(call(http, "PUT", "/v1/acl/token", MANAGEMENT, Some(token)));
    let (reader, accessor) = (token["SecretID"].as_str().unwrap(), token["AccessorID"].as_str().unwrap());
    common::eventually("both services are in the catalog", std::time::Duration::from_secs(15), || {
        let services = ok_json(call(http, "GET", "/v1/catalog/services", MANAGEMENT, None));
        (services.get("web").is_some() && services.get("db").is_some()).then_some(())
    });

    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut services = api
        .get(format!("http://127.0.0.1:{http}/v1/catalog/services"))
        .header("X-Consul-Token", reader)
        .call()
        .unwrap();
    let filtered =
        services.headers().get("X-Consul-Results-Filtered-By-ACLs").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(filtered.as_deref(), Some("true"));
    assert_eq!(services.body_mut().read_to_string().unwrap(), r#"{"web":[]}"#);
    assert_eq!(
        ok_json(call(http, "GET", "/v1/health/service/web", reader, None)).as_array().unwrap().len(),
        1
    );
    assert_eq!(ok_json(call(http, "GET", "/v1/health/service/db", reader, None)), json!([]));
    assert_eq!(ok_json(call(http, "GET", "/v1/catalog/service/db", reader, None)), json!([]));
    let node = ok_json(call(http, "GET", "/v1/catalog/node/client-test", reader, None));
    let services: Vec<&String> = node["Services"].as_object().unwrap().keys().collect();
    assert_eq!(services, ["web"], "{node}");
    // The anonymous token reads nothing, and is not told that anything was left out.
    let mut anonymous = api.get(format!("http://127.0.0.1:{http}/v1/catalog/nodes")).call().unwrap();
    assert!(anonymous.headers().get("X-Consul-Results-Filtered-By-ACLs").is_none());
    assert_eq!(anonymous.body_mut().read_to_string().unwrap(), "[]");

    let lacks = |permission: &str, on: &str| {
        let on = if on.is_empty() { String::new() } else { format!(" on \"{on}\"") };
        (
            403,
            format!(
                "Permission denied: token with AccessorID '{accessor}' lacks permission '{permission}'{on}"
            ),
        )
    };
    assert_eq!(
        call(http, "GET", "/v1/operator/raft/configuration", reader, None),
        lacks("operator:read", "")
    );
    assert_eq!(call(http, "PUT", "/v1/session/create", reader, None), lacks("session:write", "client-test"));
    assert_eq!(call(http, "PUT", "/v1/event/fire/deploy", reader, None), lacks("event:write", "deploy"));
    assert_eq!(call(http, "GET", "/v1/agent/self", reader, None), lacks("agent:read", "client-test"));
    // Management may do all of it.
    assert_eq!(call(http, "GET", "/v1/operator/raft/configuration", MANAGEMENT, None).0, 200);
    let session = ok_json(call(http, "PUT", "/v1/session/create", MANAGEMENT, None));
    assert_eq!(ok_json(call(http, "GET", "/v1/session/list", reader, None)), json!([]));
    let id = session["ID"].as_str().unwrap();
    assert_eq!(ok_json(call(http, "GET", "/v1/session/list", MANAGEMENT, None))[0]["ID"], id);
}

/// Writes through the agent, the catalog and transactions ask for the permission of what they
/// touch, as Consul's endpoints do; a transaction with one refused operation changes nothing.
#[test]
fn writes_need_the_permission_of_what_they_touch() {
    let (_agent, http) = managed_agent();
    let rules = r#"service "web" { policy = "write" }  node_prefix "" { policy = "read" }  key_prefix "app/" { policy = "write" }"#;
    assert_eq!(
        call(http, "PUT", "/v1/acl/policy", MANAGEMENT, Some(json!({"Name": "web", "Rules": rules}))).0,
        200
    );
    let token =
        ok_json(call(http, "PUT", "/v1/acl/token", MANAGEMENT, Some(json!({"Policies": [{"Name": "web"}]}))));
    let (web, accessor) = (token["SecretID"].as_str().unwrap(), token["AccessorID"].as_str().unwrap());
    let lacks = |permission: &str, on: &str| {
        format!("Permission denied: token with AccessorID '{accessor}' lacks permission '{permission}' on \"{on}\"")
    };

    // The agent's services and checks.
    let register = |name: &str, token: &str| {
        call(
            http,
            "PUT",
            "/v1/agent/service/register",
            token,
            Some(json!({"Name": name, "Check": {"TTL": "30s"}})),
        )
    };
    assert_eq!(register("web", web).0, 200);
    assert_eq!(register("db", web), (403, lacks("service:write", "db")));
    assert_eq!(register("db", MANAGEMENT).0, 200);
    assert_eq!(call(http, "PUT", "/v1/agent/check/pass/service:web", web, None).0, 200);
    assert_eq!(
        call(http, "PUT", "/v1/agent/check/pass/service:db", web, None),
        (403, lacks("service:write", "db"))
    );
    let node_check = json!({"Name": "disk", "TTL": "30s"});
    assert_eq!(
        call(http, "PUT", "/v1/agent/check/register", web, Some(node_check)),
        (403, lacks("node:write", "client-test"))
    );
    assert_eq!(
        call(http, "PUT", "/v1/agent/service/deregister/db", web, None),
        (403, lacks("service:write", "db"))
    );
    let services = ok_json(call(http, "GET", "/v1/agent/services", web, None));
    assert_eq!(services.as_object().unwrap().keys().collect::<Vec<_>>(), ["web"], "{services}");
    let checks = ok_json(call(http, "GET", "/v1/agent/checks", web, None));
    assert_eq!(checks.as_object().unwrap().keys().collect::<Vec<_>>(), ["service:web"], "{checks}");
    let members = ok_json(call(http, "GET", "/v1/agent/members", web, None));
    assert_eq!(members[0]["Name"], "client-test");

    // The catalog: a new node needs node:write on it.
    let external = json!({"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "web", "Port": 80}});
    assert_eq!(
        call(http, "PUT", "/v1/catalog/register", web, Some(external.clone())),
        (403, lacks("node:write", "ext"))
    );
    assert_eq!(call(http, "PUT", "/v1/catalog/register", MANAGEMENT, Some(external)).0, 200);
    let deregister = json!({"Node": "ext", "ServiceID": "web"});
    assert_eq!(call(http, "PUT", "/v1/catalog/deregister", web, Some(deregister)).0, 200);
    assert_eq!(
        call(http, "PUT", "/v1/catalog/deregister", web, Some(json!({"Node": "ext"}))),
        (403, lacks("node:write", "ext"))
    );

    // A transaction: every operation checked, none applied when one is refused.
    let value = "dg==";
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "app/x", "Value": value}},
        {"KV": {"Verb": "set", "Key": "other/y", "Value": value}},
    ]);
    let (status, text) = call(http, "PUT", "/v1/txn", web, Some(ops));
    assert_eq!(status, 409, "{text}");
    let errors: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(errors["Errors"], json!([{"OpIndex": 1, "What": lacks("key:write", "other/y")}]));
    assert_eq!(call(http, "GET", "/v1/kv/app/x", MANAGEMENT, None).0, 404);
    let ops = json!([{"KV": {"Verb": "set", "Key": "app/x", "Value": value}}]);
    assert_eq!(call(http, "PUT", "/v1/txn", web, Some(ops)).0, 200);

    // User events: firing needs event:write, the list shows what event:read allows.
    assert_eq!(call(http, "PUT", "/v1/event/fire/deploy", MANAGEMENT, None).0, 200);
    assert_eq!(ok_json(call(http, "GET", "/v1/event/list", web, None)), json!([]));
    assert_eq!(ok_json(call(http, "GET", "/v1/event/list", MANAGEMENT, None))[0]["Name"], "deploy");
}

/// `muster acl` as an operator types it on the first day: bootstrap, a policy from a rules
/// file, a token with it, read, list, update and delete, in Consul's layout and words.
#[test]
fn the_acl_commands_print_consuls_layout() {
    let (_agent, http) = dev_agent(&[&acl_on("")]);
    let (code, out, err) = muster(http, "", &["acl", "bootstrap"]);
    assert_eq!(code, 0, "{err}");
    let field = |text: &str, name: &str| {
        let line = text.lines().find(|line| line.starts_with(&format!("{name}:"))).unwrap_or_default();
        line.split_once(':').map(|(_, value)| value.trim().to_owned()).unwrap_or_default()
    };
    let root = field(&out, "SecretID");
    assert_eq!(field(&out, "Description"), "Bootstrap Token (Global Management)");
    assert!(
        out.contains("Policies:\n   00000000-0000-0000-0000-000000000001 - global-management\n"),
        "{out}"
    );
    assert!(field(&out, "Create Time").ends_with(" +0000 UTC"), "{out}");
    let (code, _, err) = muster(http, "", &["acl", "bootstrap"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed"), "{err}");

    let rules = std::env::temp_dir().join(format!("muster-acl-rules-{}.hcl", std::process::id()));
    std::fs::write(&rules, "key_prefix \"app/\" {\n  policy = \"write\"\n}\n").unwrap();
    let rules_arg = format!("@{}", rules.display());
    let (code, out, err) = muster(
        http,
        &root,
        &["acl", "policy", "create", "-name", "app", "-description", "app keys", "-rules", &rules_arg],
    );
    let _ = std::fs::remove_file(&rules);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "\nName:         app\nDescription:  app keys\nDatacenters:  \nRules:\nkey_prefix \"app/\""
        ),
        "{out}"
    );

    let (code, out, err) =
        muster(http, &root, &["acl", "token", "create", "-description=app token", "-policy-name=app"]);
    assert_eq!(code, 0, "{err}");
    let (accessor, secret) = (field(&out, "AccessorID"), field(&out, "SecretID"));
    assert!(out.contains("Policies:\n   ") && out.ends_with(" - app\n\n"), "{out:?}");
    let (_, out, _) = muster(http, &secret, &["acl", "token", "read", "-self"]);
    assert_eq!(field(&out, "AccessorID"), accessor);
    let (code, _, err) = muster(http, &root, &["acl", "token", "create", "-description", "nothing"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Cannot create a token without specifying -policy-name"), "{err}");

    // A unique prefix names a token; update keeps the policies unless told otherwise.
    let (code, out, err) = muster(
        http,
        &root,
        &["acl", "token", "update", "-accessor-id", &accessor[..8], "-description", "renamed"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(field(&out, "Description"), "renamed");
    assert!(out.contains(" - app\n"), "{out}");
    let (_, list, _) = muster(http, &root, &["acl", "token", "list"]);
    assert_eq!(list.matches("AccessorID:").count(), 3, "{list}");
    let (_, json, _) = muster(http, &root, &["acl", "token", "read", "-id", &accessor, "-format=json"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["Description"], "renamed");
    let (code, out, _) = muster(http, &root, &["acl", "token", "delete", "-accessor-id", &accessor]);
    assert_eq!((code, out), (0, format!("Token \"{accessor}\" deleted successfully\n")));
    let (code, _, err) = muster(http, &root, &["acl", "policy", "read", "-name", "app", "-format", "yaml"]);
    assert_eq!((code, err.as_str()), (1, "Unknown format: yaml\n"));
    let (_, list, _) = muster(http, &root, &["acl", "policy", "list"]);
    assert!(
        list.starts_with("global-management:\n   ID:           00000000-0000-0000-0000-000000000001\n"),
        "{list}"
    );
    let (code, out, err) = muster(http, &root, &["acl", "policy", "delete", "-name", "app"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Policy \"") && out.ends_with("\" deleted successfully\n"), "{out}");
}

/// `acl set-agent-token`: a token set while the agent runs is used from then on, as the
/// `default` token of requests without one.
#[test]
fn an_agent_token_set_at_runtime_is_used() {
    let (_agent, http) = managed_agent();
    assert_eq!(call(http, "GET", "/v1/kv/?keys", "", None).0, 200, "a list is filtered, not refused");
    assert_eq!(call(http, "GET", "/v1/operator/raft/configuration", "", None).0, 403);
    let (code, out, err) = muster(http, MANAGEMENT, &["acl", "set-agent-token", "default", MANAGEMENT]);
    assert_eq!((code, out.as_str()), (0, "ACL token \"default\" set successfully\n"), "{err}");
    assert_eq!(call(http, "GET", "/v1/operator/raft/configuration", "", None).0, 200);
    let (code, _, err) = muster(http, MANAGEMENT, &["acl", "set-agent-token", "nope", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unexpected response code: 404 (Token \"nope\" is unknown)"), "{err}");
    let (code, _, err) = muster(http, MANAGEMENT, &["acl", "set-agent-token", "default"]);
    assert_eq!((code, err.as_str()), (1, "Missing TOKEN argument\n"));
}

/// With `acl.enable_token_persistence`, a token set through the API survives a restart.
#[test]
fn persisted_agent_tokens_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("muster-acl-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = common::Ports::free();
    let hcl = format!(
        "-hcl=acl {{ enabled = true default_policy = \"deny\" enable_token_persistence = true \
         tokens {{ initial_management = \"{MANAGEMENT}\" }} }}"
    );
    let start = || {
        let child = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["agent", "-server", "-bootstrap", "-bind=127.0.0.1", "-dns-port=-1", "-node=persist"])
            .arg(format!("-data-dir={}", dir.display()))
            .args([format!("-serf-lan-port={}", ports.lan), format!("-serf-wan-port={}", ports.wan)])
            .args([format!("-http-port={}", ports.http), format!("-server-port={}", ports.server)])
            .arg(&hcl)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = common::DevAgent { child, http_port: ports.http };
        common::eventually("the management token", std::time::Duration::from_secs(30), || {
            let answer =
                std::panic::catch_unwind(|| call(ports.http, "GET", "/v1/acl/token/self", MANAGEMENT, None));
            answer.is_ok_and(|(status, _)| status == 200).then_some(())
        });
        agent
    };
    let agent = start();
    assert_eq!(call(ports.http, "GET", "/v1/operator/raft/configuration", "", None).0, 403);
    let (code, _, err) = muster(ports.http, MANAGEMENT, &["acl", "set-agent-token", "default", MANAGEMENT]);
    assert_eq!(code, 0, "{err}");
    let kept = std::fs::read_to_string(dir.join("acl-tokens.json")).unwrap();
    assert_eq!(kept, format!("{{\"default\":\"{MANAGEMENT}\"}}"));
    drop(agent);
    let _agent = start();
    assert_eq!(call(ports.http, "GET", "/v1/operator/raft/configuration", "", None).0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}
