//! The DNS interface of the `muster` binary, over real UDP and TCP: hickory-built queries, then
//! the seeds' `dig` examples (`web.service.consul`, `... SRV`, `rails.web.service.consul`,
//! `<node>.node.consul`, a critical `web` → NXDOMAIN). `dig` comes from Debian's
//! `bind9-dnsutils`; without it the `dig` test skips with the reason, except under `CI=true`,
//! where `.ci/run` has installed it and its absence fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use common::free_port;

mod common;

struct Agent {
    child: Child,
    http: u16,
    dns: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dev agent named `node` on fresh ports, with `extra` flags, once it leads.
fn spawn_agent(node: &str, extra: &[String]) -> Agent {
    let (http, dns) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", &format!("-node={node}")])
        .args([format!("-serf-lan-port={}", free_port()), format!("-serf-wan-port={}", free_port())])
        .args([
            format!("-http-port={http}"),
            format!("-server-port={}", free_port()),
            format!("-dns-port={dns}"),
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner: Vec<String> =
        lines.by_ref().map_while(Result::ok).take_while(|l| !l.contains("agent running")).collect();
    assert!(banner.iter().any(|l| l.contains(&format!("DNS: {dns}"))), "{banner:?}");
    std::thread::spawn(move || lines.for_each(drop));
    let agent = Agent { child, http, dns };
    wait_for_leader(http);
    agent
}

/// A dev agent named `smoke` with `web` (tag `rails`, port 80, a TTL check passing) on it, and
/// `agent-two` at 10.1.2.3 registered through the catalog with `web` on 8080.
fn agent() -> Agent {
    let agent = spawn_agent("smoke", &[]);
    let http = agent.http;
    put(
        http,
        "/v1/agent/service/register",
        r#"{"Name": "web", "Tags": ["rails"], "Port": 80,
        "Check": {"CheckID": "web-ttl", "TTL": "10m", "Status": "passing"}}"#,
    );
    put(
        http,
        "/v1/catalog/register",
        r#"{"Node": "agent-two", "Address": "10.1.2.3",
        "NodeMeta": {"rack": "r2"}, "Service": {"Service": "web", "Port": 8080}}"#,
    );
    agent
}

fn put(port: u16, path: &str, body: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
}

fn wait_for_leader(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ =
                stream.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") && answer.contains(":") && !answer.ends_with("\"\"") {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(0xbeef, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message.to_vec().unwrap()
}

fn over_udp(port: u16, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.send_to(&query(name, qtype), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).expect("an answer within 5 s");
    Message::from_vec(&buf[..len]).unwrap()
}

fn over_tcp(port: u16, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let packet = query(name, qtype);
    stream.write_all(&u16::try_from(packet.len()).unwrap().to_be_bytes()).unwrap();
    stream.write_all(&packet).unwrap();
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut answer).unwrap();
    Message::from_vec(&answer).unwrap()
}

fn addresses(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_agent_answers_services_nodes_and_srv_over_udp_and_tcp() {
    let agent = agent();
    let web = over_udp(agent.dns, "web.service.consul.", RecordType::A);
    assert_eq!(web.metadata.response_code, ResponseCode::NoError);
    assert!(web.metadata.authoritative);
    assert_eq!(addresses(&web), ["10.1.2.3", "127.0.0.1"]);
    let tagged = over_tcp(agent.dns, "rails.web.service.consul.", RecordType::A);
    assert_eq!(addresses(&tagged), ["127.0.0.1"]);
    let srv = over_udp(agent.dns, "_web._tcp.service.consul.", RecordType::SRV);
    let mut targets: Vec<(String, u16)> = srv
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(srv) => (srv.target.to_ascii(), srv.port),
            other => panic!("{other:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [("agent-two.node.dc1.consul.".to_owned(), 8080), ("smoke.node.dc1.consul.".to_owned(), 80)]
    );
    let additionals = |kind: RecordType, owner: &str| -> Vec<String> {
        let records =
            srv.additionals.iter().filter(|r| r.record_type() == kind && r.name.to_ascii() == owner);
        records.map(|r| r.data.to_string()).collect()
    };
    // The targets' addresses, and their nodes' meta as TXT (agent-two's as registered; smoke's
    // own, `consul-network-segment=`, arrives with the agent's first sync).
    assert_eq!(additionals(RecordType::A, "agent-two.node.dc1.consul."), ["10.1.2.3"]);
    assert_eq!(additionals(RecordType::A, "smoke.node.dc1.consul."), ["127.0.0.1"]);
    assert_eq!(additionals(RecordType::TXT, "agent-two.node.dc1.consul."), ["rack=r2"]);
    assert_eq!(srv.additionals.len(), 3 + additionals(RecordType::TXT, "smoke.node.dc1.consul.").len());
    assert_eq!(addresses(&over_udp(agent.dns, "agent-two.node.consul.", RecordType::A)), ["10.1.2.3"]);
    let missing = over_udp(agent.dns, "nope.service.consul.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(missing.authorities[0].record_type(), RecordType::SOA);
    let outside = over_udp(agent.dns, "example.com.", RecordType::A);
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused, "no recursors");
    // A critical check takes the instance out.
    put(agent.http, "/v1/agent/check/fail/web-ttl", "");
    assert_eq!(addresses(&over_udp(agent.dns, "web.service.consul.", RecordType::A)), ["10.1.2.3"]);
    // Garbage gets no answer and does not stop the server.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"\x01\x02", ("127.0.0.1", agent.dns)).unwrap();
    assert_eq!(addresses(&over_udp(agent.dns, "agent-two.node.consul.", RecordType::A)), ["10.1.2.3"]);
}

/// `dig`, as the seeds run it.
fn dig(port: u16, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_seeds_dig_examples() {
    if Command::new("dig").arg("-v").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "dig is missing under CI=true (.ci/run installs bind9-dnsutils)"
        );
        println!("skipped: dig is not installed (apt-get install bind9-dnsutils)");
        return;
    }
    let agent = agent();
    let mut short: Vec<String> =
        dig(agent.dns, &["web.service.consul", "+short"]).lines().map(str::to_owned).collect();
    short.sort();
    assert_eq!(short, ["10.1.2.3", "127.0.0.1"]);
    let mut srv: Vec<String> =
        dig(agent.dns, &["web.service.consul", "SRV", "+short"]).lines().map(str::to_owned).collect();
    srv.sort();
    assert_eq!(srv, ["1 1 80 smoke.node.dc1.consul.", "1 1 8080 agent-two.node.dc1.consul."]);
    assert_eq!(dig(agent.dns, &["rails.web.service.consul", "+short"]).trim(), "127.0.0.1");
    assert_eq!(dig(agent.dns, &["smoke.node.consul", "+short"]).trim(), "127.0.0.1");
    assert_eq!(dig(agent.dns, &["agent-two.node.consul", "TXT", "+short"]).trim(), "\"rack=r2\"");
    let full = dig(agent.dns, &["web.service.consul"]);
    assert!(full.contains("status: NOERROR") && full.contains("flags: qr aa rd"), "{full}");
    // The seeds' failure: web goes critical on every node and vanishes.
    put(agent.http, "/v1/agent/check/fail/web-ttl", "");
    put(
        agent.http,
        "/v1/catalog/register",
        r#"{"Node": "agent-two", "Address": "10.1.2.3",
        "Service": {"Service": "web", "Port": 8080},
        "Check": {"CheckID": "web-down", "Name": "web down", "ServiceID": "web", "Status": "critical"}}"#,
    );
    let gone = dig(agent.dns, &["web.service.consul"]);
    assert!(gone.contains("status: NXDOMAIN"), "{gone}");
    assert!(gone.contains("SOA") && gone.contains("ns.consul. hostmaster.consul."), "{gone}");
    let tcp = dig(agent.dns, &["+tcp", "smoke.node.consul", "+short"]);
    assert_eq!(tcp.trim(), "127.0.0.1");
}

#[test]
fn names_outside_the_domain_go_to_the_recursors_and_servfail_when_none_answers() {
    let upstream = common::stand_in_recursor();
    // Nothing listens on `refusing`: that recursor fails (the port refuses), the next answers.
    let refusing = free_port();
    let recursors = [format!("-recursor=127.0.0.1:{refusing}"), format!("-recursor=127.0.0.1:{upstream}")];
    let agent = spawn_agent("recursing", &recursors);
    let answer = over_udp(agent.dns, "example.com.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), ["192.0.2.7"]);
    // An external service (its node's address a hostname): the CNAME, and what the recursors
    // give for the hostname, in one answer.
    put(
        agent.http,
        "/v1/catalog/register",
        r#"{"Node": "aws", "Address": "db.example.com", "Service": {"Service": "rds", "Port": 5432}}"#,
    );
    let answer = over_udp(agent.dns, "rds.service.consul.", RecordType::A);
    let records: Vec<(String, String)> =
        answer.answers.iter().map(|r| (r.name.to_ascii(), r.data.to_string())).collect();
    assert_eq!(
        records,
        [
            ("rds.service.consul.".to_owned(), "db.example.com.".to_owned()),
            ("db.example.com.".to_owned(), "192.0.2.7".to_owned()),
        ]
    );
    assert!(
        over_udp(agent.dns, "consul.", RecordType::SOA).metadata.recursion_available,
        "RA with recursors"
    );
    // Only a recursor that fails: SERVFAIL, with the query's ID.
    let stranded = spawn_agent("stranded", &[format!("-recursor=127.0.0.1:{refusing}")]);
    let failed = over_udp(stranded.dns, "example.com.", RecordType::A);
    assert_eq!((failed.metadata.id, failed.metadata.response_code), (0xbeef, ResponseCode::ServFail));
}

/// With ACLs on, DNS answers with the `dns` token's permissions (else the `default` token's):
/// the anonymous token under `deny` sees no node, a management token sees the agent's own.
#[test]
fn acls_decide_what_dns_answers() {
    const MANAGEMENT: &str = "0a4f5b3c-7d2e-4f1a-9b8c-6e5d4c3b2a10";
    let acl = |tokens: &str| {
        format!("-hcl=acl {{ enabled = true default_policy = \"deny\" tokens {{ initial_management = \"{MANAGEMENT}\" {tokens} }} }}")
    };
    // The default token (management) lets HTTP see the node; DNS reads as anonymous.
    let hidden = spawn_agent("hidden", &[acl(&format!("default = \"{MANAGEMENT}\" dns = \"anonymous\""))]);
    let registered = |agent: &Agent, node: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", agent.http)).unwrap();
        let request = format!("GET /v1/catalog/node/{node} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.contains("\"Address\"")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !registered(&hidden, "hidden") {
        assert!(std::time::Instant::now() < deadline, "the node was never registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = over_udp(hidden.dns, "hidden.node.consul.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{answer:?}");
    let answer = over_udp(hidden.dns, "consul.service.consul.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{answer:?}");

    let shown = spawn_agent("shown", &[acl(&format!("dns = \"{MANAGEMENT}\""))]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = over_udp(shown.dns, "shown.node.consul.", RecordType::A);
        if addresses(&answer) == ["127.0.0.1"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the DNS token never saw the node: {answer:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
