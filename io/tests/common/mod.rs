//! What the HTTP API tests share: a one-server agent over real sockets (Raft with its log on
//! disk, the state machine, axum on a loopback port) and a real HTTP client.

#![allow(dead_code, reason = "each test binary uses its own part")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use muster::http::{self, Api};
use muster::store;
use muster_core::fsm::tombstone_gc::TOMBSTONE_TTL;
use muster_core::fsm::{Check, Command, Health, Node, Register, SERF_HEALTH};
use muster_core::raft::Config;
use tokio::net::TcpListener;

/// A loopback port nothing listens on right now, for UDP and TCP alike, and never handed out
/// before in this test process: tests running side by side each get ports of their own.
///
/// The ports come from below Linux's ephemeral range (32768-60999): a port the kernel offered
/// for `bind(0)` can be taken, before the agent under test binds it, as the local end of any
/// outgoing connection on the machine, and the agent then fails to start (CI saw an agent
/// "never ready" that way). Below the range only explicit binds compete, and those are
/// checked here. The scan starts at an offset from the process ID so that test binaries
/// running one after another do not reuse each other's ports while a killed agent's sockets
/// linger.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut offset = next.unwrap_or((std::process::id() % u32::from(COUNT)) as u16);
    for _ in 0..COUNT {
        let port = FIRST + offset;
        offset = (offset + 1) % COUNT;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if tcp.is_ok() && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            *next = Some(offset);
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + COUNT);
}

/// The ports one agent listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub lan: u16,
    pub wan: u16,
    pub http: u16,
    pub server: u16,
}

impl Ports {
    /// Four free loopback ports ([`free_port`]).
    pub fn free() -> Ports {
        Ports { lan: free_port(), wan: free_port(), http: free_port(), server: free_port() }
    }
}

/// `muster agent -server -bootstrap` as node `node` on loopback, on `ports`, its data in
/// `data_dir`, no DNS, its output discarded.
pub fn bootstrap_server(node: &str, data_dir: &std::path::Path, ports: Ports) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-server", "-bootstrap", "-bind=127.0.0.1", "-dns-port=-1"])
        .arg(format!("-node={node}"))
        .arg(format!("-data-dir={}", data_dir.display()))
        .args([format!("-serf-lan-port={}", ports.lan), format!("-serf-wan-port={}", ports.wan)])
        .args([format!("-http-port={}", ports.http), format!("-server-port={}", ports.server)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts")
}

/// A running one-server agent's HTTP address; everything stops with the runtime.
pub async fn start(name: &str) -> SocketAddr {
    start_with_api(name).await.0
}

/// The same, with the agent's API for the tests that write the catalog directly (its HTTP
/// endpoints come later) and with its node `node1` registered, as the agent registers itself.
pub async fn start_with_api(name: &str) -> (SocketAddr, Arc<Api>) {
    start_limited(name, http::HTTP_CONNS_PER_CLIENT_MAX).await
}

/// The same, allowing each client `conns_per_client` connections at once.
pub async fn start_limited(name: &str, conns_per_client: usize) -> (SocketAddr, Arc<Api>) {
    start_configured(name, conns_per_client, http::ScriptChecks::default(), TOMBSTONE_TTL).await
}

/// The same, accepting script checks from the API (`-enable-script-checks`).
pub async fn start_with_scripts(name: &str) -> (SocketAddr, Arc<Api>) {
    let scripts = http::ScriptChecks { from_api: true, from_files: true };
    start_configured(name, http::HTTP_CONNS_PER_CLIENT_MAX, scripts, TOMBSTONE_TTL).await
}

/// The same, with the leader's duties running (reconciliation, autopilot, the tombstone
/// collector), tombstones kept `tombstone_ttl`.
pub async fn start_leading(name: &str, tombstone_ttl: Duration) -> (SocketAddr, Arc<Api>) {
    let scripts = http::ScriptChecks::default();
    let (addr, api) = start_configured(name, http::HTTP_CONNS_PER_CLIENT_MAX, scripts, tombstone_ttl).await;
    tokio::spawn(muster::tasks::leader::run_leader_duties(api.clone()));
    (addr, api)
}

async fn start_configured(
    name: &str,
    conns_per_client: usize,
    script_checks: http::ScriptChecks,
    tombstone_ttl: Duration,
) -> (SocketAddr, Arc<Api>) {
    let dir = std::env::temp_dir().join(format!("muster-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::new(1, [1], 7);
    config.election_timeout = Duration::from_millis(100);
    config.heartbeat_interval = Duration::from_millis(20);
    config.leader_lease = Duration::from_millis(50);
    let (handle, store) =
        store::bootstrap_single(1, config, "127.0.0.1:0".parse().unwrap(), &dir, tombstone_ttl)
            .await
            .unwrap();
    let mut raft = handle.client();
    raft.wait_for(|status| status.leader == Some(1)).await.unwrap();
    let node = Node { node: "node1".into(), address: "127.0.0.1".into(), ..Node::default() };
    let local = Arc::new(muster::local::LocalAgent::open(node.clone(), None).unwrap());
    let api = Arc::new(Api {
        consensus: Some(http::Consensus {
            store,
            raft,
            raft_id: 1,
            rpc_addr: "127.0.0.1:8300".parse().unwrap(),
            write_timeout: http::WRITE_TIMEOUT,
            hold_timeout: http::RPC_HOLD_TIMEOUT,
            pool: Arc::default(),
        }),
        autopilot: http::AutopilotShared::default(),
        datacenter: "dc1".into(),
        node_name: "node1".into(),
        node_id: "6a2f6a0e-0c3c-4c5e-9b0e-2f0b6f8f2a11".into(),
        members: Arc::default(),
        gossip: Arc::default(),
        check_ttl: http::CheckTtl::default(),
        local,
        config: http::ConfigFiles::default(),
        rpc: Arc::default(),
        chosen_server: http::ChosenServer::default(),
        checks: http::CheckRunner::new(7),
        script_checks,
        query_times: http::QueryTimes::default(),
        acl_default_policy: "allow".to_owned(),
        response_headers: Vec::new(),
        block_endpoints: Vec::new(),
        acl: None,
        https: None,
        internal_tls: None,
    });
    let serf = Check { check_id: SERF_HEALTH.into(), status: Health::Passing, ..Check::default() };
    let register = Register { node, skip_node_update: false, service: None, checks: vec![serf] };
    api.write(&Command::Register(Box::new(register))).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(muster::tasks::leader::run_duties(api.clone()));
    muster::tasks::spawn_agent_loops(&api);
    let served = api.clone();
    tokio::spawn(async move {
        let _keep = handle;
        http::serve_limited(listener, served, conns_per_client).await
    });
    (addr, api)
}

/// Status, the headers the tests look at, and the body.
pub struct Answer {
    pub status: u16,
    pub index: Option<u64>,
    pub content_type: Option<String>,
    pub body: String,
}

/// One request, on a blocking thread (ureq is synchronous).
pub async fn call(method: &'static str, url: String, body: impl Into<Vec<u8>>) -> Answer {
    let body: Vec<u8> = body.into();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = match method {
            "GET" => agent.get(&url).call(),
            "PUT" => agent.put(&url).send(&body[..]),
            "DELETE" => agent.delete(&url).call(),
            "POST" => agent.post(&url).send(&body[..]),
            _ => unreachable!(),
        };
        let mut response = response.expect("the agent answers");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        let index = header("X-Consul-Index").map(|v| v.parse().unwrap());
        let content_type = header("Content-Type");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        Answer { status, index, content_type, body }
    })
    .await
    .unwrap()
}

/// One blocking request with a 5 s limit (for tests that drive agent processes from a plain
/// thread): the status and the body, or `None` if no answer came.
pub fn http(method: &str, url: &str, body: &[u8]) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match method {
        "GET" => agent.get(url).call().ok()?,
        _ => agent.put(url).send(body).ok()?,
    };
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

/// Polls until `ready` holds, or fails the test after `within`.
pub fn eventually<T>(what: &str, within: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stand-in upstream DNS resolver on a loopback UDP port: answers every query with one A
/// record for the name asked, 192.0.2.7 (TTL 60).
pub fn stand_in_recursor() -> u16 {
    use hickory_proto::op::{Message, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let Ok(request) = Message::from_vec(&buf[..len]) else { continue };
            let Some(question) = request.queries.first() else { continue };
            let mut response = Message::response(request.metadata.id, OpCode::Query);
            response.add_queries(request.queries.iter().cloned());
            let a = A("192.0.2.7".parse().unwrap());
            response.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(a)));
            let _ = socket.send_to(&response.to_vec().unwrap(), from);
        }
    });
    port
}

/// A `muster agent -dev` process on free ports, killed when dropped; its output is dropped.
pub struct DevAgent {
    /// The process.
    pub child: std::process::Child,
    /// Its HTTP port.
    pub http_port: u16,
}

impl DevAgent {
    /// Starts one named `node`, with `extra` flags.
    pub fn start(node: &str, extra: &[&str]) -> DevAgent {
        let (lan, wan, http_port, server) = (free_port(), free_port(), free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["agent", "-dev", &format!("-node={node}"), "-dns-port=-1"])
            .args(extra)
            .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
            .args([format!("-http-port={http_port}"), format!("-server-port={server}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts");
        DevAgent { child, http_port }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `muster agent -dev` with `extra` arguments on free ports; returns it with its HTTP port once
/// its API has a leader and has registered the agent's node.
///
/// Another process may bind one of the ports between [`free_port`]'s check and the agent's bind
/// (a second test run on the same machine did, and its agent answered this test's requests). So
/// the agent counts as up only when the agent answering is this one (the leader it names is at
/// the server port it was given), and one that exits before that is started again on other
/// ports.
pub fn dev_agent(extra: &[&str]) -> (DevAgent, u16) {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let (http, server, lan, wan) = (free_port(), free_port(), free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["agent", "-dev", "-node=client-test", "-dns-port=-1"])
            .args([
                format!("-http-port={http}"),
                format!("-server-port={server}"),
                format!("-serf-lan-port={lan}"),
                format!("-serf-wan-port={wan}"),
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts");
        let mut agent = DevAgent { child, http_port: http };
        if await_own_agent(&mut agent, http, server) {
            return (agent, http);
        }
    }
    panic!("the dev agent exited before it answered, {ATTEMPTS} times (ports taken?)");
}

/// Waits until `agent` answers on `http` as the leader at its own server port, with its node
/// registered (or, with ACLs denying the anonymous token, refusing to say); false if it exited
/// first (as it does when another process holds one of its ports, and that process may answer
/// on `http` meanwhile). `/v1/status/leader` needs no token, and names the server port.
fn await_own_agent(agent: &mut DevAgent, http: u16, server: u16) -> bool {
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let get = |path: &str| {
        let mut response = api.get(format!("http://127.0.0.1:{http}{path}")).call().ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().ok()?))
    };
    let own_leader = format!("\"127.0.0.1:{server}\"");
    for _ in 0..600 {
        if agent.child.try_wait().expect("the agent's status").is_some() {
            return false;
        }
        if get("/v1/status/leader").is_some_and(|(status, body)| status == 200 && body == own_leader) {
            let registered = get("/v1/catalog/services").is_some_and(|(_, body)| body.contains("consul"));
            if registered || get("/v1/agent/self").is_some_and(|(status, _)| status == 403) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the dev agent did not register itself within 30 s");
}

/// Whether `python3` can import `module`; outside CI a missing one skips the test (it says
/// so), in CI it is a failure (`.ci/run` installs py-consul).
pub fn python_has(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the Python module {module} (.ci/run does)"
        );
        eprintln!("skipped: python3 cannot import {module} (pip install py-consul)");
    }
    found
}

/// Where `.ci/run` installs the npm client (`npm install --prefix io/tests/clients consul@2`).
pub const NODE_MODULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_modules");

/// Whether `node` can load the `consul` package; outside CI a missing one skips the test.
pub fn node_has_consul() -> bool {
    let found = std::process::Command::new("node")
        .args(["-e", "require('consul')"])
        .env("NODE_PATH", NODE_MODULES)
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must install the npm package consul (.ci/run does)");
        eprintln!(
            "skipped: node cannot load the consul package (npm install --prefix io/tests/clients consul@2)"
        );
    }
    found
}
