//! Three `muster agent -server -bootstrap-expect=3` processes and two client agents on
//! loopback, as an operator runs them: the servers find each other through `-retry-join` and
//! gossip tags and bootstrap one Raft cluster; followers forward writes and default reads to
//! the leader (blocking ones too); clients keep no state and send every request to a server;
//! the leader registers every member in the catalog from gossip, marks a killed client's
//! `serfHealth` critical and removes one that left; autopilot adds a late server as a
//! non-voter and removes it once it is dead; a `kill -9` of the leader leaves the other two to
//! elect a new one, which takes writes through followers and clients alike; the killed server
//! restarts from its data directory, catches up and votes again. Every write acknowledged is
//! read back from every server.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{eventually, free_port, http};

mod common;

/// One agent's ports and directory, and its process while it runs.
struct Server {
    name: String,
    server: bool,
    lan: u16,
    wan: u16,
    http: u16,
    rpc: u16,
    dns: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Server {
    fn new(n: usize) -> Server {
        Server::named(format!("s{n}"), true)
    }

    fn client(n: usize) -> Server {
        Server::named(format!("c{n}"), false)
    }

    fn named(name: String, server: bool) -> Server {
        let dir = std::env::temp_dir().join(format!("muster-cluster-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Server {
            name,
            server,
            lan: free_port(),
            wan: free_port(),
            http: free_port(),
            rpc: free_port(),
            dns: free_port(),
            dir,
            child: None,
        }
    }

    fn start(&mut self, join: Option<u16>) {
        self.start_with(join, &[]);
    }

    fn start_with(&mut self, join: Option<u16>, extra: &[&str]) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
        command.args(["agent", "-bind=127.0.0.1"]).args(extra);
        if self.server {
            command.args(["-server", "-bootstrap-expect=3"]);
        }
        command
            .arg(format!("-node={}", self.name))
            .arg(format!("-data-dir={}", self.dir.display()))
            .args([format!("-serf-lan-port={}", self.lan), format!("-serf-wan-port={}", self.wan)])
            .args([format!("-http-port={}", self.http), format!("-server-port={}", self.rpc)])
            .arg(format!("-dns-port={}", self.dns));
        if let Some(port) = join {
            // A join that finds the seed not yet listening is tried again after 1 s, not 30 s.
            command.arg(format!("-retry-join=127.0.0.1:{port}")).arg("-retry-interval=1s");
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("a log file");
        let child = command
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: nothing runs at exit
            let _ = child.wait();
        }
    }

    /// SIGTERM: a client agent leaves the cluster gracefully first (Consul's default).
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
            assert!(sent.success());
            let exited =
                eventually("the agent to exit", Duration::from_secs(15), || child.try_wait().ok()?);
            assert!(exited.success(), "{} exits cleanly after leaving: {exited}", self.name);
        }
    }

    /// Where its output goes (beside its data directory, which it may outlive).
    fn log_path(&self) -> std::path::PathBuf {
        self.dir.with_extension("log")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        // A failing test shows what each agent logged last.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- {} (last lines of its log)", self.name);
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(self.log_path());
    }
}

/// The leader's RPC address as `server` reports it, if it knows one.
fn leader_seen_by(server: &Server) -> Option<String> {
    let (status, body) = http("GET", &server.url("/v1/status/leader"), b"")?;
    let leader: String = serde_json::from_str(&body).ok()?;
    (status == 200 && !leader.is_empty()).then_some(leader)
}

/// The index of the server every running one agrees leads, once they agree.
fn agreed_leader(servers: &[Server]) -> Option<usize> {
    let running: Vec<&Server> = servers.iter().filter(|s| s.child.is_some()).collect();
    let first = leader_seen_by(running[0])?;
    running.iter().all(|s| leader_seen_by(s).as_ref() == Some(&first)).then_some(())?;
    servers.iter().position(|s| s.rpc_addr() == first && s.child.is_some())
}

/// The Raft configuration's servers as `server` holds it (`?stale`).
fn raft_servers(server: &Server) -> Option<Vec<serde_json::Value>> {
    let (status, body) = http("GET", &server.url("/v1/operator/raft/configuration?stale"), b"")?;
    let configuration: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then_some(configuration["Servers"].as_array()?.clone())
}

/// The value of `key` as `server` holds it (`?stale`: its own state, no leader involved).
fn stale_value(server: &Server, key: &str) -> Option<String> {
    let (status, body) = http("GET", &server.url(&format!("/v1/kv/{key}?stale&raw")), b"")?;
    (status == 200).then_some(body)
}

#[test]
fn three_servers_bootstrap_from_gossip_and_survive_the_loss_of_their_leader() {
    let mut servers: Vec<Server> = (1..=3).map(Server::new).collect();
    servers[0].start(None);
    eventually("the first server's API", Duration::from_secs(20), || {
        http("GET", &servers[0].url("/v1/agent/self"), b"")
    });
    // Alone it waits: two more servers are expected.
    assert_eq!(leader_seen_by(&servers[0]), None, "no cluster of one when three are expected");
    let seed = servers[0].lan;
    servers[1].start(Some(seed));
    servers[2].start(Some(seed));

    let leader =
        eventually("one leader all three agree on", Duration::from_secs(30), || agreed_leader(&servers));
    let (_, peers) = http("GET", &servers[0].url("/v1/status/peers"), b"").unwrap();
    let mut peers: Vec<String> = serde_json::from_str(&peers).unwrap();
    peers.sort();
    let mut expected: Vec<String> = servers.iter().map(Server::rpc_addr).collect();
    expected.sort();
    assert_eq!(peers, expected, "the three bootstrapped as voters");
    // A retry-join logs in Consul's words, which operators grep for.
    let joined = eventually("s2 logging its join", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(servers[1].log_path()).ok()?;
        log.contains(
            "[INFO]  agent: Join cluster completed. Synced with initial agents: cluster=LAN num_agents=",
        )
        .then_some(log)
    });
    for line in [
        "[INFO]  agent: Joining cluster...: cluster=LAN",
        &format!("[INFO]  agent: (LAN) joining: lan_addresses=[127.0.0.1:{seed}]"),
        "[INFO]  agent: (LAN) joined: number_of_nodes=",
    ] {
        assert!(joined.contains(line), "{line} not logged");
    }

    // A fourth server expecting three sees four, asks the others, finds their configuration,
    // and does not bootstrap a second cluster: it waits, without voters, and the leader's
    // autopilot adds it as a non-voter.
    let mut late = Server::new(4);
    late.start(Some(seed));
    let late_id = eventually("the fourth server added as a non-voter", Duration::from_secs(30), || {
        let servers = raft_servers(&servers[leader])?;
        let late = servers.iter().find(|s| s["Node"] == "s4")?;
        (late["Voter"] == false).then(|| late["ID"].as_str().unwrap().to_owned())
    });
    let (_, peers) = http("GET", &servers[leader].url("/v1/status/peers"), b"").unwrap();
    assert_eq!(serde_json::from_str::<Vec<String>>(&peers).unwrap().len(), 3, "a non-voter is no peer");
    // It follows the cluster once replication has brought it the configuration.
    eventually("the late server knowing the configuration", Duration::from_secs(10), || {
        raft_servers(&late)?.iter().any(|s| s["Node"] == "s1").then_some(())
    });
    // kill -9: gossip declares it failed, autopilot removes it from Raft, and force-leave
    // makes it left, so the leader removes it from the catalog too.
    drop(late);
    // Failure detection runs on LAN timings: suspicion starts at 4 x log(n) probe intervals (up
    // to 24 s here) and only shortens as others confirm, so these windows allow 90 s.
    eventually("the failed non-voter removed from Raft", Duration::from_secs(90), || {
        let servers = raft_servers(&servers[leader])?;
        (servers.len() == 3 && !servers.iter().any(|s| s["ID"] == late_id.as_str())).then_some(())
    });
    eventually("force-leave of the failed late server", Duration::from_secs(90), || {
        http("PUT", &servers[leader].url("/v1/agent/force-leave/s4"), b"")
            .filter(|(status, _)| *status == 200)
    });
    eventually("the late server out of the catalog", Duration::from_secs(20), || {
        let (_, body) = http("GET", &servers[leader].url("/v1/catalog/nodes"), b"")?;
        let nodes: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        (nodes.len() == 3).then_some(())
    });

    // A follower forwards a write, and a default-mode read, to the leader.
    let follower = (leader + 1) % 3;
    let put = http("PUT", &servers[follower].url("/v1/kv/cluster/a"), b"one").unwrap();
    assert_eq!(put, (200, "true".to_owned()));
    let read = http("GET", &servers[follower].url("/v1/kv/cluster/a?raw"), b"").unwrap();
    assert_eq!(read, (200, "one".to_owned()));
    // A blocking read through a follower wakes on a write made through the other follower.
    let (_, entry) = http("GET", &servers[follower].url("/v1/kv/cluster/a"), b"").unwrap();
    let index =
        serde_json::from_str::<serde_json::Value>(&entry).unwrap()[0]["ModifyIndex"].as_u64().unwrap();
    let blocking_url = servers[follower].url(&format!("/v1/kv/cluster/a?index={index}&wait=20s&raw"));
    let blocked = std::thread::spawn(move || (Instant::now(), http("GET", &blocking_url, b"")));
    std::thread::sleep(Duration::from_millis(300));
    let other = (leader + 2) % 3;
    assert_eq!(http("PUT", &servers[other].url("/v1/kv/cluster/a"), b"uno").unwrap().0, 200);
    let (started, woken) = blocked.join().unwrap();
    assert_eq!(woken, Some((200, "uno".to_owned())));
    assert!(started.elapsed() < Duration::from_secs(10), "the write woke the forwarded blocking read");
    // Two client agents join; the leader registers them, and they forward what they are asked.
    let mut clients: Vec<Server> = (1..=2).map(Server::client).collect();
    let recursor = format!("-recursor=127.0.0.1:{}", common::stand_in_recursor());
    clients[0].start(Some(seed));
    clients[1].start_with(Some(seed), &[&recursor]);
    let nodes = eventually("five nodes in the catalog, all passing", Duration::from_secs(30), || {
        let (_, body) = http("GET", &servers[follower].url("/v1/health/state/passing"), b"")?;
        let checks: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let mut nodes: Vec<String> = checks
            .iter()
            .filter(|c| c["CheckID"] == "serfHealth")
            .map(|c| c["Node"].as_str().unwrap().to_owned())
            .collect();
        nodes.sort_unstable();
        (nodes.len() == 5).then_some(nodes)
    });
    assert_eq!(nodes, ["c1", "c2", "s1", "s2", "s3"]);
    let (_, servers_service) = http("GET", &clients[0].url("/v1/catalog/service/consul"), b"").unwrap();
    assert_eq!(serde_json::from_str::<Vec<serde_json::Value>>(&servers_service).unwrap().len(), 3);
    let put = http("PUT", &clients[0].url("/v1/kv/cluster/c"), b"via-client").unwrap();
    assert_eq!(put, (200, "true".to_owned()));
    let read = http("GET", &clients[1].url("/v1/kv/cluster/c?raw"), b"").unwrap();
    assert_eq!(read, (200, "via-client".to_owned()));
    let (_, configuration) = http("GET", &clients[1].url("/v1/operator/raft/configuration"), b"").unwrap();
    let configuration: serde_json::Value = serde_json::from_str(&configuration).unwrap();
    assert_eq!(configuration["Servers"].as_array().map(Vec::len), Some(3), "a client asks a server");
    // A service registered on a client reaches the catalog through its anti-entropy.
    let web = br#"{"Name": "web", "Tags": ["rails"], "Port": 80}"#;
    assert_eq!(http("PUT", &clients[0].url("/v1/agent/service/register"), web).unwrap().0, 200);
    let (_, instances) = http("GET", &servers[leader].url("/v1/catalog/service/web"), b"").unwrap();
    let instances: Vec<serde_json::Value> = serde_json::from_str(&instances).unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!((instances[0]["Node"].as_str(), instances[0]["ServicePort"].as_u64()), (Some("c1"), Some(80)));
    // DNS on a client (which keeps no catalog) is answered by a server, with the client's settings.
    // Answers come from the server's replica (stale reads allowed, as Consul's DNS): the write
    // reaches a follower a moment after the leader acknowledged it.
    let targets = eventually("the service in a client's DNS answers", Duration::from_secs(10), || {
        let srv = dns_query(clients[1].dns, "rails.web.service.consul.", hickory_proto::rr::RecordType::SRV)?;
        let targets: Vec<String> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                hickory_proto::rr::RData::SRV(srv) => Some(format!("{}:{}", srv.target.to_ascii(), srv.port)),
                _ => None,
            })
            .collect();
        (!targets.is_empty()).then_some(targets)
    });
    assert_eq!(targets, ["c1.node.dc1.consul.:80"]);
    // An external service's hostname is looked up through the recursors of the client asked,
    // between the server's two passes.
    let rds = br#"{"Node": "aws", "Address": "db.example.com", "Service": {"Service": "rds", "Port": 5432}}"#;
    assert_eq!(http("PUT", &servers[leader].url("/v1/catalog/register"), rds).unwrap().0, 200);
    let records =
        eventually("the external service in a client's DNS answers", Duration::from_secs(10), || {
            let answer = dns_query(clients[1].dns, "rds.service.consul.", hickory_proto::rr::RecordType::A)?;
            let records: Vec<(String, String)> =
                answer.answers.iter().map(|r| (r.name.to_ascii(), r.data.to_string())).collect();
            (!records.is_empty()).then_some(records)
        });
    assert_eq!(
        records,
        [
            ("rds.service.consul.".to_owned(), "db.example.com.".to_owned()),
            ("db.example.com.".to_owned(), "192.0.2.7".to_owned()),
        ]
    );
    // kill -9 of a client: gossip declares it failed, and the leader marks it critical.
    clients[1].kill();
    eventually("the killed client's serfHealth critical", Duration::from_secs(90), || {
        let (_, body) = http("GET", &servers[follower].url("/v1/health/node/c2"), b"")?;
        let checks: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let serf = checks.iter().find(|c| c["CheckID"] == "serfHealth")?;
        (serf["Status"] == "critical" && serf["Output"] == "Agent not live or unreachable").then_some(())
    });
    for server in &servers {
        let value = eventually("the write on every server", Duration::from_secs(10), || {
            stale_value(server, "cluster/a").filter(|value| value == "uno")
        });
        assert_eq!(value, "uno", "{}", server.name);
    }
    // A stale read says how long ago its server heard from the leader; the leader, zero.
    let last_contact_ms = |server: &Server| {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let response = agent.get(&server.url("/v1/kv/cluster/a?stale")).call().unwrap();
        response.headers()["x-consul-lastcontact"].to_str().unwrap().parse::<u64>().unwrap()
    };
    assert_eq!(last_contact_ms(&servers[leader]), 0);
    let follower_contact = last_contact_ms(&servers[follower]);
    assert!(follower_contact < 5_000, "a follower heard from its leader {follower_contact} ms ago");
    // Autopilot on the leader: three healthy voters, one of which may fail.
    let health = eventually("autopilot finds three healthy servers", Duration::from_secs(30), || {
        let (status, body) = http("GET", &servers[leader].url("/v1/operator/autopilot/health"), b"")?;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && health["Servers"].as_array()?.len() == 3).then_some(health)
    });
    assert_eq!(
        (&health["Healthy"], &health["FailureTolerance"]),
        (&serde_json::json!(true), &serde_json::json!(1))
    );

    // kill -9 the leader: the other two elect one of their own, which takes writes.
    servers[leader].kill();
    let next = eventually("a new leader", Duration::from_secs(30), || agreed_leader(&servers));
    assert_ne!(next, leader);
    let survivor = (0..3).find(|&i| i != leader && i != next).expect("three servers");
    let put = eventually("a write through the surviving follower", Duration::from_secs(10), || {
        http("PUT", &servers[survivor].url("/v1/kv/cluster/b"), b"two").filter(|(status, _)| *status == 200)
    });
    assert_eq!(put.1, "true");
    let put = eventually("a write through a client", Duration::from_secs(10), || {
        http("PUT", &clients[0].url("/v1/kv/cluster/d"), b"three").filter(|(status, _)| *status == 200)
    });
    assert_eq!(put.1, "true");

    // SIGTERM: the client leaves gracefully, and the leader removes its node and services.
    clients[0].terminate();
    let log = std::fs::read_to_string(clients[0].log_path()).unwrap();
    let leaving = [
        "[INFO]  agent: Caught: signal=terminated",
        "[INFO]  agent: Gracefully shutting down agent...",
        "[INFO]  agent.client: client starting leave",
        "[INFO]  agent: Graceful leave complete",
        "[INFO]  agent: Requesting shutdown",
    ];
    let at: Vec<Option<usize>> = leaving.iter().map(|line| log.find(line)).collect();
    assert!(at.iter().all(Option::is_some) && at.is_sorted(), "Consul's leave lines in order: {at:?}");
    eventually("the client that left removed from the catalog", Duration::from_secs(20), || {
        let (_, body) = http("GET", &servers[survivor].url("/v1/catalog/nodes"), b"")?;
        let nodes: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        (!nodes.iter().any(|n| n["Node"] == "c1")).then_some(())
    });
    let (_, instances) = http("GET", &servers[survivor].url("/v1/catalog/service/web"), b"").unwrap();
    assert_eq!(instances, "[]");

    // The killed server comes back from its data directory and catches up.
    let rejoin = servers[next].lan;
    servers[leader].start(Some(rejoin));
    for server in &servers {
        // Catch-up comes in batches, so each key is waited for on its own.
        for (key, value) in
            [("cluster/a", "uno"), ("cluster/b", "two"), ("cluster/c", "via-client"), ("cluster/d", "three")]
        {
            let read = eventually("every write on every server", Duration::from_secs(20), || {
                stale_value(server, key).filter(|read| read == value)
            });
            assert_eq!(read, value, "{} {key}", server.name);
        }
    }
    // Autopilot removed it from Raft while it was dead; it comes back as a non-voter and is
    // promoted once it has been healthy for the stabilization time (10 s).
    let back = eventually("the cluster with three voters again", Duration::from_secs(60), || {
        let leader = agreed_leader(&servers)?;
        let voters = raft_servers(&servers[leader])?.iter().filter(|s| s["Voter"] == true).count();
        (voters == 3).then_some(leader)
    });
    let (_, peers) = http("GET", &servers[back].url("/v1/status/peers"), b"").unwrap();
    assert_eq!(serde_json::from_str::<Vec<String>>(&peers).unwrap().len(), 3);

    // Restarted without any join flag: the client killed with -9 rejoins the members it
    // remembers; the one that left gracefully does not, until it is given -rejoin.
    clients[1].start(None);
    eventually("the killed client passing again", Duration::from_secs(30), || {
        let (_, body) = http("GET", &servers[back].url("/v1/health/node/c2"), b"")?;
        let checks: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        checks.iter().any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing").then_some(())
    });
    // Everyone must know c1 left before it comes back: a member that still thought it alive
    // (c2 pulled its member list while c1's leave was spreading) would probe the restarted c1
    // and so join it, which is gossip working, not a rejoin.
    eventually("every member seeing c1 as left", Duration::from_secs(60), || {
        let viewers = servers.iter().chain(std::iter::once(&clients[1]));
        viewers
            .map(|agent| {
                let (_, body) = http("GET", &agent.url("/v1/agent/members"), b"")?;
                let members: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
                Some(members.iter().all(|m| m["Name"] != "c1" || m["Status"] == 3))
            })
            .all(|left| left == Some(true))
            .then_some(())
    });
    // It comes back on another gossip port: the members keep gossiping to a member that left
    // for a while (memberlist's gossip-to-the-dead window, 30 s), and a message reaching the old
    // address would teach it the cluster, which is gossip working, not a rejoin. The data dir,
    // with its memory of the members, is the same.
    clients[0].lan = free_port();
    clients[0].start(None);
    // Up first, then time to (wrongly) rejoin: a slow start must not make this check vacuous.
    lan_members(&clients[0]);
    std::thread::sleep(Duration::from_secs(3));
    let alone = lan_members(&clients[0]);
    assert_eq!(alone, Some(1), "the client that left stays out without -rejoin");
    clients[0].kill();
    clients[0].start_with(None, &["-rejoin"]);
    eventually("the client that left back with -rejoin", Duration::from_secs(30), || {
        (lan_members(&clients[0])? > 1).then_some(())
    });

    // The whole cluster stops at once and starts again, without join flags: the servers find
    // each other from what they remember, elect a leader from their logs, and every write
    // acknowledged before is there.
    for server in &mut servers {
        server.kill();
    }
    for server in &mut servers {
        server.start(None);
    }
    eventually("a leader after a full restart", Duration::from_secs(30), || agreed_leader(&servers));
    let put = eventually("a write through a client after a full restart", Duration::from_secs(20), || {
        http("PUT", &clients[1].url("/v1/kv/cluster/e"), b"four").filter(|(status, _)| *status == 200)
    });
    assert_eq!(put.1, "true");
    for server in &servers {
        for (key, value) in [
            ("cluster/a", "uno"),
            ("cluster/b", "two"),
            ("cluster/c", "via-client"),
            ("cluster/d", "three"),
            ("cluster/e", "four"),
        ] {
            let read = eventually("every write after a full restart", Duration::from_secs(10), || {
                stale_value(server, key)
            });
            assert_eq!(read, value, "{} {key}", server.name);
        }
    }
}

/// One DNS query over UDP to `port` on 127.0.0.1, and its answer.
fn dns_query(
    port: u16,
    name: &str,
    qtype: hickory_proto::rr::RecordType,
) -> Option<hickory_proto::op::Message> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(hickory_proto::rr::Name::from_ascii(name).unwrap(), qtype));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.send_to(&message.to_vec().unwrap(), ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    // No answer in 5 s (a datagram lost, an agent busy): the caller's `eventually` asks again.
    let len = socket.recv(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..len]).unwrap())
}

/// How many LAN members `agent` sees alive.
fn lan_members(agent: &Server) -> Option<usize> {
    let body = eventually("the agent's API", Duration::from_secs(20), || {
        http("GET", &agent.url("/v1/agent/members"), b"")
    });
    let members: Vec<serde_json::Value> = serde_json::from_str(&body.1).ok()?;
    Some(members.iter().filter(|m| m["Status"] == 1).count())
}

/// A leader paused (SIGSTOP) while the others elect a new one and write must not answer a
/// default read from its old state when it resumes: its lease has run out, so it confirms its
/// leadership first, finds it gone, and refuses. (Found by `benches/nemesis.sh --seed 2`: the
/// default mode checked only the role, and a resumed leader served a value already overwritten.)
#[test]
fn a_resumed_leader_whose_lease_ran_out_never_serves_a_stale_read() {
    let mut servers: Vec<Server> = (11..=13).map(Server::new).collect();
    servers[0].start(None);
    let seed = servers[0].lan;
    servers[1].start(Some(seed));
    servers[2].start(Some(seed));
    eventually("a leader", Duration::from_secs(30), || agreed_leader(&servers));
    let put = eventually("a first write", Duration::from_secs(10), || {
        http("PUT", &servers[0].url("/v1/kv/lease/k"), b"old").filter(|(s, _)| *s == 200)
    });
    assert_eq!(put.1, "true");
    // The leader as of now, just before it is paused (pausing a follower would test nothing).
    let old = eventually("a leader", Duration::from_secs(30), || agreed_leader(&servers));

    let pid = servers[old].child.as_ref().expect("running").id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    eventually("a new leader among the other two", Duration::from_secs(30), || {
        let seen: Vec<String> = others.iter().filter_map(|&i| leader_seen_by(&servers[i])).collect();
        let first = seen.first()?;
        (seen.len() == 2 && seen.iter().all(|s| s == first) && *first != servers[old].rpc_addr())
            .then_some(())
    });
    let put = eventually("a write on the new leader", Duration::from_secs(10), || {
        http("PUT", &servers[others[0]].url("/v1/kv/lease/k"), b"new").filter(|(s, _)| *s == 200)
    });
    assert_eq!(put.1, "true");

    // Reads reach the paused leader's socket now and are read when it resumes, racing the
    // messages from the new leader that depose it: many, so that some win the race.
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let url = servers[old].url("/v1/kv/lease/k?raw");
            std::thread::spawn(move || http("GET", &url, b""))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    for read in reads {
        let answer = read.join().unwrap();
        assert_ne!(answer, Some((200, "old".to_owned())), "a stale read from the resumed leader");
    }
}

/// Certificates made by `muster tls` in `dir`: the CA, `servers` server certificates
/// (`dc1-server-consul-<n>.pem`) and a client one (`dc1-client-consul-0.pem`).
fn make_certificates(dir: &std::path::Path, servers: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut runs = vec![vec!["tls", "ca", "create"]];
    runs.extend((0..servers).map(|_| vec!["tls", "cert", "create", "-server"]));
    runs.push(vec!["tls", "cert", "create", "-client"]);
    for args in runs {
        let output =
            Command::new(env!("CARGO_BIN_EXE_muster")).args(&args).current_dir(dir).output().unwrap();
        assert!(output.status.success(), "muster {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

/// The `tls` block Consul's production guide gives every agent: mutual TLS on the server
/// port, servers' names checked, with the agent's own certificate `stem`.
fn tls_block(dir: &std::path::Path, stem: &str) -> String {
    let path = |file: String| dir.join(file).display().to_string();
    format!(
        "-hcl=tls {{ defaults {{ ca_file = \"{}\" cert_file = \"{}\" key_file = \"{}\" verify_incoming = true \
         verify_outgoing = true }} internal_rpc {{ verify_server_hostname = true }} }}",
        path("consul-agent-ca.pem".to_owned()),
        path(format!("{stem}.pem")),
        path(format!("{stem}-key.pem")),
    )
}

/// Three servers and a client agent with Consul's production TLS: Raft and RPC run over
/// mutual TLS (the servers elect a leader, a client's write reaches it), and a client agent
/// without a certificate joins gossip but is refused on the server port, so its write fails.
#[test]
fn mutual_tls_on_the_server_port_carries_the_cluster_and_keeps_out_an_agent_without_a_certificate() {
    let certs = std::env::temp_dir().join(format!("muster-cluster-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&certs);
    make_certificates(&certs, 3);
    let mut servers: Vec<Server> = (1..=3).map(Server::new).collect();
    let seed = servers[0].lan;
    for (n, server) in servers.iter_mut().enumerate() {
        let tls = tls_block(&certs, &format!("dc1-server-consul-{n}"));
        server.start_with((n > 0).then_some(seed), &[&tls]);
    }
    eventually("one leader all three agree on, over TLS", Duration::from_secs(30), || {
        agreed_leader(&servers)
    });

    let mut client = Server::client(1);
    client.start_with(Some(seed), &[&tls_block(&certs, "dc1-client-consul-0")]);
    let written = eventually("the client's write through the servers", Duration::from_secs(20), || {
        let (status, body) = http("PUT", &client.url("/v1/kv/tls/written"), b"over mutual TLS")?;
        (status == 200).then_some(body)
    });
    assert_eq!(written, "true");
    eventually("the write on every server", Duration::from_secs(10), || {
        servers
            .iter()
            .all(|s| stale_value(s, "tls/written").as_deref() == Some("over mutual TLS"))
            .then_some(())
    });

    let mut plain = Server::client(2);
    plain.start(Some(seed));
    eventually("the plain client in gossip", Duration::from_secs(20), || {
        (lan_members(&servers[0])? == 5).then_some(())
    });
    for _ in 0..3 {
        let answer = http("PUT", &plain.url("/v1/kv/tls/plain"), b"refused");
        assert!(answer.as_ref().is_some_and(|(status, _)| *status != 200), "a plain agent wrote: {answer:?}");
    }
    assert_eq!(stale_value(&servers[0], "tls/plain"), None);
    eventually("a server logging the refusal", Duration::from_secs(10), || {
        servers.iter().find_map(|s| {
            let log = std::fs::read_to_string(s.log_path()).ok()?;
            log.contains("Non-TLS connection attempted with VerifyIncoming set").then_some(())
        })
    });
    let _ = std::fs::remove_dir_all(&certs);
}
