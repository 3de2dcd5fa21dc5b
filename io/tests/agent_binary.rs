//! The `muster` binary itself: `muster agent -dev` answers on its LAN and WAN gossip ports with
//! the real wire protocol, gossips Consul's tags, reports a node name claimed twice, and stops
//! on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use muster_core::tags::Tags;
use muster_core::wire::{
    decode_datagram, frame_len, frame_prefix, DatagramBuilder, Message, NodeAddr, SerfState,
    FRAME_PREFIX_BYTES,
};
use muster_core::DATAGRAM_BYTES_TARGET;

use common::free_port;

mod common;

struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Its stdout: the banner, then the log.
type Output = std::io::Lines<BufReader<std::process::ChildStdout>>;

fn start_dev_agent(lan: u16, wan: u16, http: u16, server: u16) -> (Agent, Vec<String>, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=smoke", "-dns-port=-1", &format!("-serf-lan-port={lan}")])
        .arg(format!("--serf-wan-port={wan}"))
        .args([format!("-http-port={http}"), format!("-server-port={server}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut banner = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("agent running");
        banner.push(line);
        if done {
            break;
        }
    }
    (Agent { child }, banner, lines)
}

fn ping(port: u16, seq: u32) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let source = NodeAddr { name: "probe".into(), addr: socket.local_addr().unwrap() };
    let mut datagram = DatagramBuilder::new(DATAGRAM_BYTES_TARGET);
    datagram.push_entry(&Message::Ping { seq, target: String::new(), source }.encode_entry());
    socket.send_to(&datagram.finish(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buf).expect("an answer");
    decode_datagram(&buf[..len]).unwrap().remove(0)
}

#[test]
fn dev_agent_answers_on_lan_and_wan_gossips_its_tags_and_stops_on_sigterm() {
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let (mut agent, banner, lines) = start_dev_agent(lan, wan, http, server);
    assert!(banner.iter().any(|l| l.trim() == "Server: true (Bootstrap: true)"), "{banner:?}");
    assert!(
        banner
            .iter()
            .any(|l| l.trim()
                == format!("Client Addr: [127.0.0.1] (HTTP: {http}, HTTPS: -1, gRPC: -1, DNS: -1)")),
        "{banner:?}"
    );

    // The HTTP API answers once the one-server cluster has its leader (well under a second).
    let api: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let base = format!("http://127.0.0.1:{http}");
    let leader = (0..100)
        .find_map(|_| {
            let body =
                api.get(format!("{base}/v1/status/leader")).call().ok()?.body_mut().read_to_string().ok()?;
            if body == format!("\"127.0.0.1:{server}\"") {
                return Some(body);
            }
            std::thread::sleep(Duration::from_millis(50));
            None
        })
        .expect("a leader within 5 s");
    assert_eq!(leader, format!("\"127.0.0.1:{server}\""));
    let mut put = api.put(format!("{base}/v1/kv/smoke/key")).send(&b"value"[..]).unwrap();
    assert_eq!(put.body_mut().read_to_string().unwrap(), "true");
    let mut raw = api.get(format!("{base}/v1/kv/smoke/key?raw")).call().unwrap();
    assert_eq!(raw.body_mut().read_to_string().unwrap(), "value");
    assert!(
        banner.iter().any(|l| l.trim() == format!("Cluster Addr: 127.0.0.1 (LAN: {lan}, WAN: {wan})")),
        "{banner:?}"
    );
    assert!(banner.iter().any(|l| l.trim() == "Gossip Encryption: false"), "{banner:?}");

    assert_eq!(ping(lan, 7), Message::Ack { seq: 7 });
    assert_eq!(ping(wan, 8), Message::Ack { seq: 8 });

    // A listener at a real address hears the LAN pool's push/pull reply, with the tags.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap();
    let push = Message::PushPull {
        join: true,
        reply: false,
        source: NodeAddr { name: "probe".into(), addr: me },
        members: vec![],
        serf: SerfState::default(),
    }
    .encode_frame();
    let mut stream = TcpStream::connect(("127.0.0.1", lan)).unwrap();
    stream.write_all(&frame_prefix(push.len())).unwrap();
    stream.write_all(&push).unwrap();
    let (mut reply_stream, _) = listener.accept().unwrap();
    reply_stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    reply_stream.read_exact(&mut prefix).unwrap();
    let mut body = vec![0; frame_len(prefix).unwrap()];
    reply_stream.read_exact(&mut body).unwrap();
    let Message::PushPull { reply: true, members, .. } = Message::decode_frame(&body).unwrap() else {
        panic!("expected a push/pull reply")
    };
    let agent_entry = members.iter().find(|m| m.node.name == "smoke").expect("the agent names itself");
    let tags = Tags::decode(&agent_entry.meta).unwrap();
    let server_port = server.to_string();
    assert_eq!(
        (tags.get("role"), tags.get("dc"), tags.get("port"), tags.get("bootstrap")),
        (Some("consul"), Some("dc1"), Some(server_port.as_str()), Some("1")),
        "a server's tags give its RPC port, as -server-port set it"
    );
    assert_eq!(tags.get("id").map(str::len), Some(36), "the node ID, which is also its Raft ID");

    let pid = agent.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = agent.child.wait().unwrap();
    assert!(
        status.success(),
        "a server stops on SIGTERM (without leaving, as Consul's) and exits 0, got {status:?}"
    );
    let logged: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(logged.iter().any(|l| l.ends_with("[INFO]  agent: Caught: signal=terminated")), "{logged:?}");
}

#[test]
fn a_second_node_with_the_same_name_is_reported_as_a_conflict() {
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let (mut agent, _, logs) = start_dev_agent(lan, wan, http, server);
    // A joiner whose state says "smoke" (the agent's own name) lives at another address.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let double = muster_core::wire::PushPullMember {
        node: NodeAddr { name: "smoke".into(), addr: "127.0.0.9:8301".parse().unwrap() },
        meta: bytes::Bytes::new(),
        incarnation: 1 << 32,
        state: muster_core::wire::MemberState::Alive,
    };
    let push = Message::PushPull {
        join: true,
        reply: false,
        source: NodeAddr { name: "joiner".into(), addr: listener.local_addr().unwrap() },
        members: vec![double],
        serf: SerfState::default(),
    }
    .encode_frame();
    let mut stream = TcpStream::connect(("127.0.0.1", lan)).unwrap();
    stream.write_all(&frame_prefix(push.len())).unwrap();
    stream.write_all(&push).unwrap();
    let reported = std::thread::spawn(move || {
        logs.map_while(Result::ok).find(|line| {
            line.contains("Node name conflicts with another node at 127.0.0.9:8301. Names must be unique!")
        })
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !reported.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reported.is_finished(), "the conflict is logged within 10 s");
    let _ = agent.child.kill();
    assert!(reported.join().unwrap().is_some_and(|line| line.contains("ERROR")));
}

#[test]
fn an_undefined_flag_is_refused_in_consuls_words_with_exit_code_1() {
    let output = Command::new(env!("CARGO_BIN_EXE_muster")).args(["agent", "-bogus"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().next(), Some("flag provided but not defined: -bogus"), "{stderr}");
}

/// The command lines of Consul's guides, as written there: space-separated values
/// (`-retry-join 127.0.0.1`), booleans given `=true`, two dashes, a value that starts with a
/// dash (`-dns-port -1`). The agent starts, logs in Consul's line shape, and shows itself in
/// `/v1/agent/self` exactly as `/v1/agent/members` lists it.
#[test]
fn consul_guide_command_lines_start_the_agent_and_log_in_consuls_shape() {
    let (lan, wan, http_port, server) = (free_port(), free_port(), free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-enable-script-checks=true", "-node", "guide", "-dns-port", "-1"])
        .args(["-retry-join", "127.0.0.1", "--serf-lan-port", &lan.to_string()])
        .args([format!("-serf-wan-port={wan}"), format!("--http-port={http_port}")])
        .args(["-server-port", &server.to_string(), "-log-level", "debug", "-server=true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _agent = Agent { child };
    let base = format!("http://127.0.0.1:{http_port}");
    wait_for(&format!("{base}/v1/status/leader"), |body| body.len() > 2);

    // hclog's shape: time in milliseconds, the bracketed level padded to seven, the logger.
    let shape = hclog_shape();
    let logged: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .skip_while(|l| !l.contains("agent running"))
        .skip(1)
        .take_while(|l| !l.contains("cluster leadership acquired"))
        .collect();
    assert!(!logged.is_empty());
    for line in &logged {
        assert!(shape(line), "not in Consul's shape: {line:?}");
    }
    assert!(
        logged.iter().any(|l| l.contains("[INFO]  agent.server.raft: entering leader state")),
        "{logged:?}"
    );

    let (_, self_body) = http("GET", &format!("{base}/v1/agent/self"), b"").unwrap();
    let (_, members) = http("GET", &format!("{base}/v1/agent/members"), b"").unwrap();
    let me: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&self_body).unwrap()["Member"].clone();
    let members: Vec<serde_json::Value> = serde_json::from_str(&members).unwrap();
    assert!(members.contains(&me), "{me} among {members:?}");
    assert_eq!(me["Name"], "guide");
    assert_eq!(me["Port"], lan);
    assert_eq!(me["DelegateCur"], 4);

    // Anti-entropy and checks log in Consul's words, which operators grep for.
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).try_for_each(|line| sender.send(line)));
    let service = br#"{"Name": "web", "Check": {"CheckID": "web-ttl", "TTL": "1s"}}"#;
    assert_eq!(http("PUT", &format!("{base}/v1/agent/service/register"), service).unwrap().0, 200);
    let mut wanted = vec![
        "[INFO]  agent: Synced service: service=web",
        "[WARN]  agent: Check missed TTL, is now critical: check=web-ttl",
        "[INFO]  agent: Synced check: check=web-ttl",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !wanted.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = received.recv_timeout(left).unwrap_or_else(|_| panic!("never logged: {wanted:?}"));
        wanted.retain(|want| !line.ends_with(want));
    }
}

/// Whether a line is go-hclog's: `2026-12-05T07:15:12.123Z [INFO]  agent: message`.
fn hclog_shape() -> impl Fn(&str) -> bool {
    |line: &str| {
        let Some((time, rest)) = line.split_once(' ') else { return false };
        let time_ok = time.len() == "2026-12-05T07:15:12.123Z".len()
            && time.ends_with('Z')
            && time.as_bytes()[10] == b'T'
            && time.as_bytes()[19] == b'.';
        let levels = ["[TRACE] ", "[DEBUG] ", "[INFO]  ", "[WARN]  ", "[ERROR] "];
        let Some(rest) = levels.iter().find_map(|level| rest.strip_prefix(level)) else { return false };
        let module_ok = rest.split_once(": ").is_some_and(|(module, _)| {
            module.starts_with("agent")
                && module.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
        });
        time_ok && module_ok
    }
}

/// One plain HTTP request to the agent: status and body.
fn http(method: &str, url: &str, body: &[u8]) -> Result<(u16, String), ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = match method {
        "GET" => agent.get(url).call()?,
        _ => agent.put(url).send(body)?,
    };
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

/// Polls `url` until it answers 200 with a body `ready` accepts (the server is up and leads).
fn wait_for(url: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, body)) = http("GET", url, b"") {
            if ready(&body) {
                return body;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{url} never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a server registered through `/v1/agent/...` survives a `kill -9` and a restart from
/// its data directory: the services, their checks and a TTL check's last state are read back
/// from `<data-dir>/services` and `<data-dir>/checks`, and the catalog still agrees.
#[test]
fn a_server_keeps_its_services_and_check_states_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("muster-keep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = common::Ports::free();
    let http_port = ports.http;
    let start = || Agent { child: common::bootstrap_server("keeper", &dir, ports) };
    let url = |path: &str| format!("http://127.0.0.1:{http_port}{path}");

    let agent = start();
    wait_for(&url("/v1/status/leader"), |leader| leader != "\"\"");
    let web = br#"{"Name": "web", "Port": 80, "Check": {"TTL": "10m"}}"#;
    assert_eq!(http("PUT", &url("/v1/agent/service/register"), web).unwrap().0, 200);
    let passed = http("PUT", &url("/v1/agent/check/pass/service:web?note=warm"), b"").unwrap();
    assert_eq!(passed.0, 200);
    let gone = br#"{"Name": "gone", "Port": 81}"#;
    assert_eq!(http("PUT", &url("/v1/agent/service/register"), gone).unwrap().0, 200);
    assert_eq!(http("PUT", &url("/v1/agent/service/deregister/gone"), b"").unwrap().0, 200);
    drop(agent); // SIGKILL: nothing runs at exit

    let _agent = start();
    let services = wait_for(&url("/v1/agent/services"), |_| true);
    let services: serde_json::Value = serde_json::from_str(&services).unwrap();
    assert_eq!(services.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["web"]);
    assert_eq!(services["web"]["Port"], 80);
    let checks: serde_json::Value =
        serde_json::from_str(&http("GET", &url("/v1/agent/checks"), b"").unwrap().1).unwrap();
    assert_eq!(
        (checks["service:web"]["Status"].as_str(), checks["service:web"]["Output"].as_str()),
        (Some("passing"), Some("warm"))
    );
    let healthy = wait_for(&url("/v1/health/service/web?passing"), |body| body != "[]");
    let healthy: serde_json::Value = serde_json::from_str(&healthy).unwrap();
    assert_eq!(healthy[0]["Service"]["Port"], 80);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Services from a `-config-dir` (JSON and HCL) are registered at start; SIGHUP and `PUT
/// /v1/agent/reload` read the files again: changed services change, removed ones go, ones
/// registered over HTTP stay, and a broken file changes nothing. `muster validate` and a bad
/// key at start speak Consul's words.
#[test]
fn services_from_config_files_are_registered_and_reloaded() {
    let dir = std::env::temp_dir().join(format!("muster-config-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("web.json"), r#"{"service": {"name": "web", "tags": ["rails"], "port": 80}}"#)
        .unwrap();
    std::fs::write(
        dir.join("db.hcl"),
        "service {\n  name = \"db\"\n  port = 5432\n  check {\n    ttl = \"30s\"\n  }\n}\n",
    )
    .unwrap();
    let validate = Command::new(env!("CARGO_BIN_EXE_muster")).args(["validate"]).arg(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&validate.stdout), "Configuration is valid!\n");

    let (lan, wan, http_port, server) = (free_port(), free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=configured", "-dns-port=-1"])
        .arg(format!("-config-dir={}", dir.display()))
        .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
        .args([format!("-http-port={http_port}"), format!("-server-port={server}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Agent { child };
    let url = |path: &str| format!("http://127.0.0.1:{http_port}{path}");
    let services = |ready: &dyn Fn(&serde_json::Value) -> bool| {
        let body = wait_for(&url("/v1/agent/services"), |body| ready(&serde_json::from_str(body).unwrap()));
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let ids = |value: &serde_json::Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let first = services(&|s| s.as_object().unwrap().len() == 2);
    assert_eq!(ids(&first), vec!["db", "web"]);
    assert_eq!(
        (first["web"]["Port"].clone(), first["web"]["Tags"].clone()),
        (80.into(), serde_json::json!(["rails"]))
    );
    let healthy = wait_for(&url("/v1/catalog/service/web"), |body| body != "[]");
    assert!(healthy.contains("\"ServicePort\":80"), "{healthy}");
    let api = br#"{"Name": "api", "Port": 9000}"#;
    assert_eq!(http("PUT", &url("/v1/agent/service/register"), api).unwrap().0, 200);

    // SIGHUP: web moves to 8080.
    std::fs::write(dir.join("web.json"), r#"{"service": {"name": "web", "tags": ["rails"], "port": 8080}}"#)
        .unwrap();
    let hup = Command::new("kill").args(["-HUP", &agent.child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let moved = services(&|s| s["web"]["Port"] == 8080);
    assert_eq!(ids(&moved), vec!["api", "db", "web"]);

    // A broken file: the reload fails and nothing changes.
    std::fs::write(dir.join("zz.json"), r#"{"servce": {}}"#).unwrap();
    let (status, body) = http("PUT", &url("/v1/agent/reload"), b"").unwrap();
    assert_eq!(status, 500);
    assert_eq!(
        body,
        format!(
            "Failed reloading config: failed to parse {}: 1 error occurred:\n\t* invalid config key servce\n\n",
            dir.join("zz.json").display()
        )
    );
    let invalid = Command::new(env!("CARGO_BIN_EXE_muster")).args(["validate"]).arg(&dir).output().unwrap();
    assert_eq!(invalid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&invalid.stderr).starts_with("Config validation failed: failed to parse"));
    std::fs::remove_file(dir.join("zz.json")).unwrap();

    // db's file is removed: db and its check go; the service registered over HTTP stays.
    std::fs::remove_file(dir.join("db.hcl")).unwrap();
    assert_eq!(http("PUT", &url("/v1/agent/reload"), b"").unwrap(), (200, String::new()));
    let after = services(&|_| true);
    assert_eq!(ids(&after), vec!["api", "web"]);
    let checks = http("GET", &url("/v1/agent/checks"), b"").unwrap().1;
    assert_eq!(checks, "{}");
    let catalog = wait_for(&url("/v1/catalog/service/db"), |body| body == "[]");
    assert_eq!(catalog, "[]");
    drop(agent);

    // A bad key at start: Consul's words, exit 1.
    std::fs::write(dir.join("zz.json"), r#"{"datacentre": "east"}"#).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-http-port=-1", "-dns-port=-1"])
        .arg(format!("-config-dir={}", dir.display()))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        format!(
            "==> failed to parse {}: 1 error occurred:\n\t* invalid config key datacentre",
            dir.join("zz.json").display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `muster validate` as a Consul user meets it: a misspelt key in a service definition is
/// refused (Consul refuses it too), HCL as Consul's docs write it (commas between attributes)
/// is read, a key muster does not act on yet is accepted with a warning naming it, and a file
/// that asks for ACLs is refused rather than run open.
#[test]
fn validate_refuses_what_consul_refuses_and_names_what_muster_ignores() {
    let dir = std::env::temp_dir().join(format!("muster-validate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let validate = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        let output =
            Command::new(env!("CARGO_BIN_EXE_muster")).arg("validate").arg(dir.join(name)).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    };
    let (code, _, stderr) = validate("misspelt.json", r#"{"service": {"name": "web", "portz": 80}}"#);
    assert_eq!(code, Some(1));
    assert!(stderr.ends_with("1 error occurred:\n\t* invalid config key service.portz\n\n\n"), "{stderr:?}");

    let hcl = "dns_config { enable_truncate = true, only_passing = true }\n\
               performance { raft_multiplier = 1 }\nports { grpc = -1, http = 8500 }\n\
               telemetry { circonus_api_token = \"t\" }\n";
    let (code, stdout, stderr) = validate("docs.hcl", hcl);
    assert_eq!((code, stdout.as_str()), (Some(0), "Configuration is valid!\n"), "{stderr}");
    assert!(
        stderr.contains("telemetry.circonus_api_token: accepted, but muster does not act on it yet"),
        "{stderr}"
    );
    assert!(!stderr.contains("ports.grpc"), "Consul's default (-1) asks for nothing: {stderr}");

    let (code, _, stderr) = validate("multiplier.hcl", "performance { raft_multiplier = 11 }");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("performance.raft_multiplier cannot be 11. Must be between 1 and 10"),
        "{stderr}"
    );

    let (code, stdout, stderr) =
        validate("acl.hcl", "acl {\n  enabled = true\n  default_policy = \"deny\"\n}\n");
    assert_eq!((code, stdout.as_str()), (Some(0), "Configuration is valid!\n"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `/v1/operator/autopilot/*` as Consul answers them: the `autopilot` block is what the first
/// leader stores; a plain PUT replaces the settings whole and answers `true`, a CAS answers
/// whether it matched; bad input is refused in Consul's words and changes nothing; the health
/// of a one-server cluster is its leader's.
#[test]
fn autopilot_settings_start_from_the_config_block_and_change_by_put_and_cas() {
    let hcl = "autopilot { max_trailing_logs = 300, server_stabilization_time = \"15s\" }";
    let agent = common::DevAgent::start("pilot", &["-hcl", hcl]);
    let url = |path: &str| agent.url(path);
    let config_url = url("/v1/operator/autopilot/configuration");
    let stored = wait_for(&config_url, |_| true);
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["CleanupDeadServers"], true);
    assert_eq!(stored["LastContactThreshold"], "200ms");
    assert_eq!(stored["MaxTrailingLogs"], 300, "from the autopilot block");
    assert_eq!(stored["ServerStabilizationTime"], "15s");
    assert_eq!(stored["MinQuorum"], 0);
    let modify = stored["ModifyIndex"].as_u64().unwrap();
    assert!(modify > 0 && stored["CreateIndex"] == stored["ModifyIndex"]);

    let changed = br#"{"cleanupdeadservers": false, "LastContactThreshold": "1s", "MaxTrailingLogs": 50}"#;
    let stale_cas = format!("{config_url}?cas={}", modify - 1);
    assert_eq!(http("PUT", &stale_cas, changed).unwrap(), (200, "false".into()));
    assert_eq!(http("PUT", &format!("{config_url}?cas={modify}"), changed).unwrap(), (200, "true".into()));
    let now: serde_json::Value = serde_json::from_str(&http("GET", &config_url, b"").unwrap().1).unwrap();
    assert_eq!(
        (&now["CleanupDeadServers"], &now["LastContactThreshold"], &now["MaxTrailingLogs"]),
        (&serde_json::json!(false), &serde_json::json!("1s"), &serde_json::json!(50))
    );
    assert_eq!(now["ServerStabilizationTime"], "0s", "a PUT replaces the settings whole, as in Consul");
    assert_eq!(now["CreateIndex"], stored["CreateIndex"]);

    for (path, body, reason) in [
        (
            "",
            &br#"{"CleanupDeadServers": "yes"}"#[..],
            "Error parsing autopilot config: json: cannot unmarshal",
        ),
        ("", b"{", "Error parsing autopilot config: "),
        ("?cas=x", b"{}", "Error parsing cas value: strconv.ParseUint: parsing \"x\": invalid syntax"),
    ] {
        let (status, text) = http("PUT", &format!("{config_url}{path}"), body).unwrap();
        assert_eq!(status, 400, "{text}");
        assert!(text.starts_with(reason), "{text}");
    }
    let after: serde_json::Value = serde_json::from_str(&http("GET", &config_url, b"").unwrap().1).unwrap();
    assert_eq!(after, now, "refused writes change nothing");

    let health = wait_for(&url("/v1/operator/autopilot/health"), |body| body.contains("\"Healthy\":true"));
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["FailureTolerance"], 0);
    let me = &health["Servers"][0];
    assert_eq!(
        (&me["Name"], &me["Leader"], &me["Voter"], &me["SerfStatus"]),
        (
            &serde_json::json!("pilot"),
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!("alive")
        )
    );
    assert!(me["StableSince"].as_str().unwrap().ends_with('Z'));
    let state: serde_json::Value =
        serde_json::from_str(&http("GET", &url("/v1/operator/autopilot/state"), b"").unwrap().1).unwrap();
    let leader = state["Leader"].as_str().unwrap();
    assert_eq!(state["Voters"], serde_json::json!([leader]));
    assert_eq!(state["Servers"][leader]["Status"], "leader");
    assert_eq!(state["Servers"][leader]["NodeType"], "voter");
}

/// The soft and hard limits on open files, from the process's `/proc` entry.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn the_open_file_soft_limit_is_raised_to_the_hard_one_as_go_does() {
    // Started with a soft limit of 256 (below any hard limit), as a shell with `ulimit -Sn`.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_muster")])
        .args(["agent", "-dev", "-node=limits", "-dns-port=-1", "-http-port=-1"])
        .arg(format!("-serf-lan-port={}", free_port()))
        .arg(format!("-serf-wan-port={}", free_port()))
        .arg(format!("-server-port={}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let agent = Agent { child };
    for line in lines {
        if line.unwrap().contains("agent running") {
            break;
        }
    }
    let (soft, hard) = open_file_limits(agent.child.id());
    assert_ne!(soft, "256", "the agent kept the soft limit it was started with");
    assert_eq!(soft, hard);
}
