//! The endpoint table (`io/src/http/endpoints.rs`, `docs/http-endpoints.md`) against a running
//! `muster agent -dev`: every row served is routed with every method Consul serves on it (a
//! `PATCH`, which no Consul endpoint takes, answers 405 with those methods in `Allow`, so no
//! handler runs and nothing changes), and every row not served answers Consul's `404 Invalid URL
//! path: not a recognized HTTP API endpoint`, as Consul CE answers an endpoint it lacks.

use std::time::Duration;

use muster::http::endpoints::{Status, ENDPOINTS};

mod common;

#[test]
fn the_agent_serves_what_the_endpoint_table_says_and_nothing_else() {
    let agent = common::DevAgent::start("table", &[]);
    let client: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let patch = |path: &str| {
        let mut response = client.patch(&agent.url(path)).send(&b""[..]).ok()?;
        let allow =
            response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        Some((response.status().as_u16(), allow, response.body_mut().read_to_string().unwrap()))
    };
    common::eventually("the agent answers", Duration::from_secs(30), || patch("/v1/status/leader"));

    let mut wrong = Vec::new();
    for endpoint in ENDPOINTS {
        // A path that takes an argument is asked with one.
        let path = match endpoint.path.ends_with('/') {
            true => format!("{}web", endpoint.path),
            false => endpoint.path.to_owned(),
        };
        let (status, allow, body) = patch(&path).unwrap();
        let allowed: Vec<&str> = allow.split(',').collect();
        let ok = match endpoint.status.served() {
            true => status == 405 && endpoint.methods.iter().all(|method| allowed.contains(method)),
            // The UI's `/ui/` is outside the API, and Consul's hint says so.
            false if path.contains("/v1/") => {
                (status, body.as_str()) == (404, "Invalid URL path: not a recognized HTTP API endpoint\n")
            }
            false => {
                let hint = "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n";
                (status, body.as_str()) == (404, hint)
            }
        };
        if !ok {
            wrong.push(format!("{path} ({:?}): {status} allow={allow:?} {body:?}", endpoint.status));
        }
    }
    assert!(wrong.is_empty(), "the agent and the table disagree:\n{}", wrong.join("\n"));

    // The ACL endpoints, with ACLs off, answer every method Consul serves on them as Consul
    // does, with or without an argument.
    let send = |method: &str, path: &str| {
        let request = ureq::http::Request::builder().method(method).uri(agent.url(path)).body(()).unwrap();
        let mut response = client.run(request).unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    };
    let mut asked = 0;
    let acl = [muster::http::endpoints::ACL, muster::http::endpoints::ACL_SERVED];
    for endpoint in ENDPOINTS.iter().filter(|endpoint| acl.contains(&endpoint.status)) {
        let paths = match endpoint.path.ends_with('/') {
            true => vec![
                format!("{}web", endpoint.path),
                format!("{}web/clone", endpoint.path),
                endpoint.path.to_owned(),
            ],
            false => vec![endpoint.path.to_owned()],
        };
        for (path, method) in paths.iter().flat_map(|path| endpoint.methods.iter().map(move |m| (path, *m))) {
            let answer = send(method, path);
            asked += 1;
            if answer != (401, muster::http::acl::ACL_DISABLED.to_owned()) {
                wrong.push(format!("{method} {path}: {answer:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "ACL endpoints with ACLs off:\n{}", wrong.join("\n"));
    assert!(asked > 60, "every ACL endpoint and method was asked ({asked})");
    let served = ENDPOINTS.iter().filter(|e| e.status.served()).count();
    assert!(served > 50 && ENDPOINTS.iter().any(|e| e.status == Status::Enterprise));
}

/// Every answer of the API carries the agent's `acl.default_policy`, ACLs on or off, as
/// Consul's do (`X-Consul-Default-Acl-Policy`, as Go writes the name); Consul's index (a path
/// no endpoint serves) does not.
#[test]
fn every_api_answer_reports_the_default_acl_policy() {
    let client: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let policy_at = |agent: &common::DevAgent, path: &str| {
        let response = client.get(&agent.url(path)).call().ok()?;
        Some(response.headers().get("X-Consul-Default-Acl-Policy").map(|v| v.to_str().unwrap().to_owned()))
    };
    let deny_and_cors = r#"acl { default_policy = "deny" }
        http_config { response_headers { "Access-Control-Allow-Origin" = "*" } }"#;
    for (policy, extra) in [("allow", vec![]), ("deny", vec!["-hcl", deny_and_cors])] {
        let agent = common::DevAgent::start(&format!("policy-{policy}"), &extra);
        common::eventually("the agent answers", Duration::from_secs(30), || {
            policy_at(&agent, "/v1/status/leader")
        });
        for path in ["/v1/status/leader", "/v1/kv/missing", "/v1/agent/members", "/v1/catalog/nodes?stale"] {
            assert_eq!(policy_at(&agent, path), Some(Some(policy.to_owned())), "{path}");
        }
        for path in ["/", "/v1/nonsense"] {
            assert_eq!(policy_at(&agent, path), Some(None), "{path}: Consul's index sets no policy");
        }
        // `http_config.response_headers` on every answer, the index's too (Consul's setHeaders).
        for path in ["/", "/v1/status/leader", "/v1/agent/members"] {
            let response = client.get(&agent.url(path)).call().unwrap();
            let cors =
                response.headers().get("Access-Control-Allow-Origin").map(|v| v.to_str().unwrap().to_owned());
            let want = (policy == "deny").then(|| "*".to_owned());
            assert_eq!(cors, want, "{path}");
        }
    }
}

/// `http_config.block_endpoints`: every request under a listed prefix, whatever its method, is
/// refused with Consul's 403 before anything else; the rest are answered.
#[test]
fn blocked_endpoints_are_refused_in_consuls_words() {
    let client: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let hcl = r#"http_config { block_endpoints = ["/v1/acl", "/v1/agent/self"] }"#;
    let agent = common::DevAgent::start("blocked", &["-hcl", hcl]);
    let send = |method: &str, path: &str| {
        let request = ureq::http::Request::builder().method(method).uri(agent.url(path)).body(()).unwrap();
        let mut response = client.run(request).ok()?;
        Some((response.status().as_u16(), response.body_mut().read_to_string().unwrap()))
    };
    common::eventually("the agent answers", Duration::from_secs(30), || send("GET", "/v1/status/leader"));
    let blocked = (403, "Endpoint is blocked by agent configuration".to_owned());
    for (method, path) in [
        ("GET", "/v1/agent/self"),
        ("PUT", "/v1/acl/bootstrap"),
        ("GET", "/v1/acl/bootstrap"),
        ("DELETE", "/v1/acl/token/x"),
    ] {
        assert_eq!(send(method, path), Some(blocked.clone()), "{method} {path}");
    }
    assert_eq!(send("GET", "/v1/agent/members").map(|(status, _)| status), Some(200));
    assert_eq!(send("GET", "/v1/agent/services").map(|(status, _)| status), Some(200));
}
