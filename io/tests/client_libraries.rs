//! Unmodified Consul client libraries against the real `muster agent -dev` binary: py-consul
//! and the `consul` npm package. Each needs its library installed (`.ci/run` installs them);
//! without it the test says so and skips, except in CI, where a missing library is a failure.

use std::process::Command;
use std::time::Duration;

mod common;
use common::{dev_agent, node_has_consul, python_has, NODE_MODULES};

#[test]
fn py_consul_works_unmodified() {
    if !python_has("consul") {
        return;
    }
    let (_agent, http) = dev_agent(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_consul.py");
    let output = Command::new("python3").arg(script).arg(http.to_string()).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "py-consul failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("every step answered as Consul answers"), "{stdout}");
}

/// py-consul's ACL calls against an agent with ACLs on and deny by default: the bootstrap,
/// policies, tokens (expiry, update, clone, delete) and what a token may then do.
#[test]
fn py_consul_manages_acls_unmodified() {
    if !python_has("consul") {
        return;
    }
    let (_agent, http) = dev_agent(&["-hcl=acl { enabled = true default_policy = \"deny\" }"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/py_consul_acl.py");
    let output = Command::new("python3").arg(script).arg(http.to_string()).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "py-consul failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("every step answered as Consul answers"), "{stdout}");
}

#[test]
fn the_node_consul_package_works_unmodified() {
    if !node_has_consul() {
        return;
    }
    let (_agent, http) = dev_agent(&[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_consul.js");
    let output = Command::new("node")
        .arg(script)
        .arg(http.to_string())
        .env("NODE_PATH", NODE_MODULES)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the node consul package failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("every step answered as Consul answers"), "{stdout}");
}

#[test]
fn a_leave_over_http_stops_the_agent() {
    let (mut agent, http) = dev_agent(&[]);
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = api.put(format!("http://127.0.0.1:{http}/v1/agent/leave")).send_empty().unwrap();
    assert_eq!(response.status(), 200);
    for _ in 0..200 {
        if let Some(status) = agent.child.try_wait().unwrap() {
            assert!(status.success(), "a graceful leave exits 0: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent still runs 10 s after leaving");
}
