//! The seeds' walkthrough, typed as a Consul user types it: `muster agent -dev` with a
//! configuration directory, then `members`, a service from a file and `reload`, catalog and
//! health queries, the `kv` commands with their exact lines and exit codes, and checks going
//! critical. Every client command runs the real binary against the real agent, addressed
//! through `CONSUL_HTTP_ADDR` or `-http-addr`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

mod common;

/// A dev agent that is killed, and its log printed if the test failed, when dropped; its
/// working directory goes with it when the test owns one.
struct Agent {
    child: Child,
    log: PathBuf,
    http: String,
    /// Its gossip port, which tells it from another agent answering on its HTTP port.
    lan: u16,
    dir: Option<PathBuf>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- the agent's log ---\n{log}");
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh directory for a test, with an empty `consul.d` in it.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("muster-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("consul.d")).unwrap();
    dir
}

/// A dev agent in a fresh directory of its own, once it leads.
///
/// Another process may bind one of its ports between [`free_port`]'s check and the agent's
/// bind, and then answer its requests; an agent that exits before it leads is started again on
/// other ports.
fn ready_agent(name: &str) -> Agent {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let dir = test_dir(name);
        let mut agent = start_agent(&dir);
        agent.dir = Some(dir);
        let led = eventually("the dev agent leads", Duration::from_secs(30), || {
            if agent.child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            let run = muster(&agent, &["operator", "raft", "list-peers"]);
            let leads = run.code == 0 && run.stdout.contains("leader");
            (leads && http_get(&agent, "/v1/agent/self")["Member"]["Port"] == agent.lan).then_some(true)
        });
        if led {
            await_serf_health(&agent);
            return agent;
        }
    }
    panic!("the dev agent exited before it led, {ATTEMPTS} times (ports taken?)");
}

/// Waits until the leader has registered the agent's `serfHealth` check, which a session
/// (and so `exec` and `lock`) needs: the leader reconciles its members after it is elected,
/// so there is a moment, as in Consul, when the node leads without the check.
fn await_serf_health(agent: &Agent) {
    eventually("serfHealth is registered", Duration::from_secs(30), || {
        let checks = http_get(agent, "/v1/health/node/walkthrough");
        let has = checks.as_array()?.iter().any(|check| check["CheckID"] == "serfHealth");
        has.then_some(())
    });
}

fn start_agent(dir: &Path) -> Agent {
    start_agent_with(dir, &[])
}

fn start_agent_with(dir: &Path, extra: &[&str]) -> Agent {
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let log = dir.join("agent.log");
    let config_dir = dir.join("consul.d");
    let child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=walkthrough", "-dns-port=-1", "-enable-local-script-checks"])
        .arg(format!("-config-dir={}", config_dir.display()))
        .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
        .args([format!("-http-port={http}"), format!("-server-port={server}")])
        .args(extra)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
        .spawn()
        .expect("the binary starts");
    Agent { child, log, http: format!("127.0.0.1:{http}"), lan, dir: None }
}

/// What a command printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `muster <args>` against `agent`, through `CONSUL_HTTP_ADDR`, with `stdin` as its input.
fn muster_with_input(agent: &Agent, args: &[&str], stdin: &str) -> Run {
    muster_with_env(agent, args, stdin, &[])
}

/// `muster <args>` against `agent`, with `stdin` as its input and `env` set.
fn muster_with_env(agent: &Agent, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(args)
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn muster(agent: &Agent, args: &[&str]) -> Run {
    muster_with_input(agent, args, "")
}

/// Asserts a command succeeded and printed exactly `stdout`.
#[track_caller]
fn ok(run: Run, stdout: &str) {
    assert_eq!((run.code, run.stdout.as_str(), run.stderr.as_str()), (0, stdout, ""), "{run:?}");
}

/// Asserts a command failed with `code` and printed exactly `stderr`'s first line.
#[track_caller]
fn fails(run: Run, code: i32, stderr: &str) {
    assert_eq!(
        (run.code, run.stderr.lines().next(), run.stdout.as_str()),
        (code, Some(stderr), ""),
        "{run:?}"
    );
}

/// Asserts `muster <args>` against `agent` is refused as Consul's commands refuse: exit 1,
/// `stderr` its first line.
#[track_caller]
fn refuses(agent: &Agent, args: &[&str], stderr: &str) {
    fails(muster(agent, args), 1, stderr);
}

/// Polls `probe` every 100 ms until it gives a value, for at most `limit`.
#[track_caller]
fn eventually<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(agent: &Agent, path: &str) -> serde_json::Value {
    let agent_http: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent_http.get(&format!("http://{}{path}", agent.http)).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

#[test]
fn the_seeds_walkthrough_runs_as_consuls_does() {
    let dir = test_dir("walkthrough");
    let agent = start_agent(&dir);
    eventually("the dev agent leads", Duration::from_secs(30), || {
        let run = muster(&agent, &["operator", "raft", "list-peers"]);
        (run.code == 0 && run.stdout.contains("leader")).then_some(())
    });

    // members: Consul's columns; -status with nothing matching exits 2 and prints nothing.
    let members = muster(&agent, &["members"]);
    assert_eq!(members.code, 0, "{members:?}");
    let lines: Vec<&str> = members.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>()[..4],
        ["walkthrough", lines[1].split_whitespace().nth(1).unwrap(), "alive", "server"]
    );
    let none = muster(&agent, &["members", "-status=failed"]);
    assert_eq!((none.code, none.stdout.as_str()), (2, ""));
    let detailed = muster(&agent, &["members", "-detailed"]);
    assert!(detailed.stdout.contains("role=consul"), "{detailed:?}");
    let info = muster(&agent, &["info"]);
    let sections: Vec<&str> = info.stdout.lines().filter(|l| !l.starts_with('\t')).collect();
    assert_eq!(sections, ["agent:", "build:", "consul:", "raft:", "runtime:", "serf_lan:", "serf_wan:"]);
    assert!(
        info.stdout.contains("\tstate = Leader\n") && info.stdout.contains("\tmembers = 1\n"),
        "{info:?}"
    );

    // A service from the configuration directory, then `reload`.
    let web = r#"{"service": {"name": "web", "tags": ["rails"], "port": 80}}"#;
    std::fs::write(dir.join("consul.d/web.json"), web).unwrap();
    ok(muster(&agent, &["reload"]), "Configuration reload triggered\n");
    let services = eventually("web in the catalog", Duration::from_secs(10), || {
        let run = muster(&agent, &["catalog", "services", "-tags"]);
        run.stdout.contains("web").then_some(run)
    });
    ok(services, "consul\nweb         rails\n");
    let web = http_get(&agent, "/v1/catalog/service/web");
    assert_eq!(
        (web[0]["ServiceTags"].clone(), web[0]["ServicePort"].clone()),
        (serde_json::json!(["rails"]), 80.into())
    );
    let passing = http_get(&agent, "/v1/health/service/web?passing");
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    let nodes = muster(&agent, &["catalog", "nodes", "-service=web"]);
    assert!(nodes.stdout.lines().nth(1).unwrap().starts_with("walkthrough  "), "{nodes:?}");
    let nobody = muster(&agent, &["catalog", "nodes", "-service=nothing"]);
    assert_eq!(
        (nobody.code, nobody.stdout.as_str(), nobody.stderr.as_str()),
        (0, "", "No nodes match the given query - try expanding your search.\n")
    );

    // kv: the seeds' session, line for line.
    ok(
        muster(&agent, &["kv", "put", "redis/config/minconns", "1"]),
        "Success! Data written to: redis/config/minconns\n",
    );
    ok(
        muster(&agent, &["kv", "put", "redis/config/maxconns", "25"]),
        "Success! Data written to: redis/config/maxconns\n",
    );
    ok(
        muster(&agent, &["kv", "put", "-flags=42", "redis/config/users/admin", "abcd1234"]),
        "Success! Data written to: redis/config/users/admin\n",
    );
    ok(muster(&agent, &["kv", "get", "redis/config/minconns"]), "1\n");
    let detailed = muster(&agent, &["kv", "get", "-detailed", "redis/config/users/admin"]);
    let rows: Vec<(String, String)> = detailed
        .stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_owned(), value.trim_start().to_owned())
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Session", "Value"]);
    assert_eq!(
        (rows[1].1.as_str(), rows[2].1.as_str(), rows[5].1.as_str(), rows[6].1.as_str()),
        ("42", "redis/config/users/admin", "-", "abcd1234")
    );
    let modify_index = rows[4].1.clone();
    ok(
        muster(&agent, &["kv", "get", "-recurse", "redis"]),
        "redis/config/maxconns:25\nredis/config/minconns:1\nredis/config/users/admin:abcd1234\n",
    );
    ok(
        muster(&agent, &["kv", "get", "-keys", "redis/config/"]),
        "redis/config/maxconns\nredis/config/minconns\nredis/config/users/\n",
    );
    refuses(&agent, &["kv", "get", "redis/missing"], "Error! No key exists at: redis/missing");

    // CAS: the index just read succeeds once; the same index a second time fails.
    let cas =
        ["kv", "put", "-cas", &format!("-modify-index={modify_index}"), "redis/config/users/admin", "qwerty"];
    ok(muster(&agent, &cas), "Success! Data written to: redis/config/users/admin\n");
    fails(muster(&agent, &cas), 1, "Error! Did not write to redis/config/users/admin: CAS failed");
    ok(muster(&agent, &["kv", "get", "redis/config/users/admin"]), "qwerty\n");

    // export, then import under a prefix from stdin; delete -recurse.
    let export = muster(&agent, &["kv", "export", "redis/config/m"]);
    assert_eq!(export.code, 0, "{export:?}");
    let exported: serde_json::Value = serde_json::from_str(&export.stdout).unwrap();
    assert_eq!(
        exported,
        serde_json::json!([
            {"key": "redis/config/maxconns", "flags": 0, "value": "MjU="},
            {"key": "redis/config/minconns", "flags": 0, "value": "MQ=="}
        ])
    );
    ok(
        muster_with_input(&agent, &["kv", "import", "-prefix=copy", "-"], &export.stdout),
        "Imported: copy/redis/config/maxconns\nImported: copy/redis/config/minconns\n",
    );
    ok(muster(&agent, &["kv", "get", "copy/redis/config/maxconns"]), "25\n");
    ok(muster(&agent, &["kv", "delete", "-recurse", "redis"]), "Success! Deleted keys with prefix: redis\n");
    ok(muster(&agent, &["kv", "get", "-recurse", "redis"]), "");
    ok(
        muster(&agent, &["kv", "delete", "copy/redis/config/maxconns"]),
        "Success! Deleted key: copy/redis/config/maxconns\n",
    );

    // Maintenance mode, in Consul's words, and listed with its reason.
    ok(muster(&agent, &["maint", "-enable", "-reason=deploy"]), "Node maintenance is now enabled\n");
    ok(muster(&agent, &["maint"]), "Node:\n  Name:   walkthrough\n  Reason: deploy\n\n");
    ok(muster(&agent, &["maint", "-disable"]), "Node maintenance is now disabled\n");
    ok(
        muster(&agent, &["maint", "-enable", "-service=web"]),
        "Service maintenance is now enabled for \"web\"\n",
    );
    ok(
        muster(&agent, &["maint", "-disable", "-service=web"]),
        "Service maintenance is now disabled for \"web\"\n",
    );
    ok(muster(&agent, &["maint"]), "");

    // Checks from a file: a ping-like script that fails, and HTTP to a port nobody listens on.
    let closed = free_port();
    let checks = format!(
        r#"{{"checks": [
            {{"id": "ping", "name": "ping", "args": ["sh", "-c", "echo 'ping: 192.0.2.1: unreachable'; exit 2"], "interval": "1s"}},
            {{"id": "web-http", "name": "web http", "service_id": "web", "http": "http://127.0.0.1:{closed}/health", "interval": "1s"}}
        ]}}"#
    );
    std::fs::write(dir.join("consul.d/checks.json"), checks).unwrap();
    ok(muster(&agent, &["reload"]), "Configuration reload triggered\n");
    let critical = eventually("both checks run and critical", Duration::from_secs(15), || {
        let checks = http_get(&agent, "/v1/health/state/critical");
        let ids: Vec<&str> = checks.as_array()?.iter().filter_map(|c| c["CheckID"].as_str()).collect();
        let local = http_get(&agent, "/v1/agent/checks");
        // Checks start critical with no output; wait for both to have run.
        let ran =
            ["ping", "web-http"].iter().all(|id| local[id]["Output"].as_str().is_some_and(|o| !o.is_empty()));
        (ran && ids.contains(&"ping") && ids.contains(&"web-http")).then_some(checks)
    });
    // The outputs as the agent has them: an output-only change reaches the catalog after
    // check_update_interval, as in Consul, and both checks were registered critical.
    let local = http_get(&agent, "/v1/agent/checks");
    let output = |id: &str| local[id]["Output"].as_str().unwrap().to_owned();
    assert_eq!(critical.as_array().unwrap().len(), 2, "{critical}");
    assert!(output("ping").contains("ping: 192.0.2.1: unreachable"), "{}", output("ping"));
    assert!(output("web-http").ends_with("connect: connection refused"), "{}", output("web-http"));
    let passing = http_get(&agent, "/v1/health/service/web?passing");
    assert_eq!(passing, serde_json::json!([]), "a critical web is not passing");

    // join: an address nobody answers on is refused, in Consul's words.
    let nobody = free_port();
    let join = muster(&agent, &["join", &format!("127.0.0.1:{nobody}")]);
    assert_eq!(join.code, 1, "{join:?}");
    assert!(
        join.stderr.starts_with(&format!(
            "Error joining address '127.0.0.1:{nobody}': Unexpected response code: 500"
        )),
        "{join:?}"
    );
    assert!(join.stderr.ends_with("\nFailed to join any nodes.\n"), "{join:?}");

    // -http-addr wins over CONSUL_HTTP_ADDR; an agent that is not there is Go's refusal.
    let elsewhere = muster(&agent, &["members", &format!("-http-addr={}", agent.http)]);
    assert_eq!(elsewhere.code, 0);
    let gone = free_port();
    refuses(&agent, &["kv", "get", &format!("-http-addr=127.0.0.1:{gone}"), "a"], &format!(
            "Error querying Consul agent: Get \"http://127.0.0.1:{gone}/v1/kv/a\": dial tcp 127.0.0.1:{gone}: connect: connection refused"
        ));
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wrong arguments get Consul's message (or usage) and a non-zero exit, and write nothing.
#[test]
fn wrong_arguments_are_refused_in_consuls_words_and_write_nothing() {
    let agent = ready_agent("bad");

    refuses(&agent, &["kv", "get"], "Error! Missing KEY argument");
    refuses(&agent, &["kv", "put"], "Error! Missing KEY argument");
    refuses(&agent, &["kv", "put", "a", "b", "c"], "Error! Too many arguments (expected 1 or 2, got 3)");
    refuses(&agent, &["kv", "put", "-cas", "a", "b"], "Must specify -modify-index with -cas!");
    refuses(
        &agent,
        &["kv", "put", "-acquire", "a", "b"],
        "Error! Missing -session (required with -acquire and -release)",
    );
    refuses(
        &agent,
        &["kv", "put", "-base64", "a", "!!"],
        "Error! Cannot base 64 decode data: Invalid symbol 33, offset 0.",
    );
    refuses(
        &agent,
        &["kv", "put", "a", "@/nonexistent/file"],
        "Error! Failed to read file: open /nonexistent/file: no such file or directory",
    );
    refuses(
        &agent,
        &["kv", "delete", "-cas", "a"],
        "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
    );
    refuses(&agent, &["kv", "delete", "-modify-index=3", "a"], "Cannot specify -modify-index without -cas!");
    refuses(
        &agent,
        &["kv", "delete", "-cas", "-modify-index=3", "-recurse", "a"],
        "Cannot specify both -cas and -recurse!",
    );
    refuses(
        &agent,
        &["kv", "import", "not json"],
        "Cannot unmarshal data: expected ident at line 1 column 2",
    );
    // One bad value among good ones: nothing is imported.
    let bad = r#"[{"key": "good", "flags": 0, "value": "MQ=="}, {"key": "bad", "flags": 0, "value": "%%%"}]"#;
    refuses(
        &agent,
        &["kv", "import", bad],
        "Error base 64 decoding value for key bad: Invalid symbol 37, offset 0.",
    );
    refuses(&agent, &["kv", "get", "good"], "Error! No key exists at: good");
    refuses(&agent, &["kv", "put", "-flags=x", "a", "b"], "invalid value \"x\" for flag -flags: parse error");
    refuses(&agent, &["kv", "get", "-bogus", "a"], "flag provided but not defined: -bogus");
    refuses(&agent, &["force-leave"], "A single node name must be specified to force leave.");
    refuses(&agent, &["join"], "At least one address to join must be specified.");
    refuses(&agent, &["leave", "extra"], "The leave command expects no arguments");
    refuses(&agent, &["maint", "-enable", "-disable"], "Only one of -enable or -disable may be provided");
    refuses(&agent, &["maint", "-reason=x"], "Reason may only be provided with -enable");
    refuses(&agent, &["event"], "Event name must be specified");
    refuses(&agent, &["snapshot", "save"], "Missing FILE argument");
    refuses(
        &agent,
        &["snapshot", "inspect", "/nonexistent.snap"],
        "Error opening snapshot file: open /nonexistent.snap: no such file or directory",
    );
    refuses(
        &agent,
        &["operator", "raft", "remove-peer"],
        "Error removing peer: an address or id is required for the peer to remove",
    );
    refuses(&agent, &["members", "-status=("], "Failed to compile status regexp: regex parse error:");
    assert_eq!(muster(&agent, &["kv"]).code, 1, "a missing subcommand is a usage error");

    // Nothing above wrote a key.
    ok(muster(&agent, &["kv", "get", "-recurse"]), "");
}

/// A snapshot saved by the CLI restores the state it held, and inspect reads it back.
#[test]
fn a_snapshot_saved_restores_what_it_held() {
    let agent = ready_agent("snap");
    let dir = agent.dir.clone().expect("a directory of its own");
    ok(muster(&agent, &["kv", "put", "kept", "before"]), "Success! Data written to: kept\n");
    let file = dir.join("backup.snap");
    let file = file.to_str().unwrap();
    let saved = muster(&agent, &["snapshot", "save", file]);
    assert_eq!(saved.code, 0, "{saved:?}");
    let index: u64 =
        saved.stdout.strip_prefix("Saved and verified snapshot to index ").unwrap().trim().parse().unwrap();
    assert!(index > 0);
    let inspected = muster(&agent, &["snapshot", "inspect", file]);
    let fields: Vec<Vec<&str>> = inspected.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = fields.iter().filter_map(|f| f.first().copied()).collect();
    assert_eq!(names[..6], ["ID", "Size", "Index", "Term", "Version", "Type"], "{inspected:?}");
    assert_eq!(fields[2][1], index.to_string());
    // Consul's table: only the kinds the state holds, largest first, each with its size.
    let kvs = fields.iter().find(|f| f.first() == Some(&"KVS")).expect("a KVS row");
    assert_eq!(kvs[1], "1", "one key, kept");
    assert!(kvs[2].ends_with('B'), "{kvs:?}");
    assert!(!names.contains(&"Session"), "no sessions, no row");
    assert_eq!(names.last(), Some(&"Total"));

    ok(muster(&agent, &["kv", "put", "kept", "after"]), "Success! Data written to: kept\n");
    ok(muster(&agent, &["snapshot", "restore", file]), "Restored snapshot\n");
    ok(muster(&agent, &["kv", "get", "kept"]), "before\n");

    // A damaged file is refused by inspect and by the agent, and changes nothing.
    let mut damaged = std::fs::read(file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    let broken = dir.join("broken.snap");
    std::fs::write(&broken, damaged).unwrap();
    let broken = broken.to_str().unwrap();
    assert_eq!(muster(&agent, &["snapshot", "inspect", broken]).code, 1);
    let refused = muster(&agent, &["snapshot", "restore", broken]);
    assert!(
        refused.stderr.starts_with("Error restoring snapshot: Unexpected response code: 400"),
        "{refused:?}"
    );
    ok(muster(&agent, &["kv", "get", "kept"]), "before\n");
}

/// `lock`: the child runs with `CONSUL_LOCK_HELD=true` and alone; the key is gone after; a lost
/// session kills the child; `-child-exit-code` reports a failed child; `-n` lets that many in.
#[test]
fn lock_runs_its_child_alone_and_stops_it_when_the_lock_is_lost() {
    let agent = ready_agent("lock");
    let dir = agent.dir.clone().expect("a directory of its own");
    ok(muster(&agent, &["lock", "app", "echo held=$CONSUL_LOCK_HELD"]), "held=true\n");
    ok(muster(&agent, &["kv", "get", "-recurse", "app"]), "");
    let failed = muster(&agent, &["lock", "-child-exit-code", "app", "exit 3"]);
    assert_eq!((failed.code, failed.stderr.as_str()), (2, "Error running handler: exit status 3\n"));
    assert_eq!(muster(&agent, &["lock", "app", "exit 3"]).code, 0, "without -child-exit-code");

    // Two holders of one lock never overlap; with -n=2 they do.
    let journal = dir.join("journal");
    let overlapping = |limit: &str| {
        let _ = std::fs::remove_file(&journal);
        // Under -n=1 a holder keeps the lock for 0.5 s; under -n=2 until the other holder has
        // started too (at most 20 s), so a slow second start cannot pass for exclusion.
        let hold = match limit {
            "-n=2" => format!(
                "i=0; while [ \"$(grep -c start {0})\" -lt 2 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done",
                journal.display()
            ),
            _ => "sleep 0.5".to_owned(),
        };
        let script = format!("echo start >> {0}; {hold}; echo end >> {0}", journal.display());
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_muster"))
                .args(["lock", limit, "shared", &script])
                .env("CONSUL_HTTP_ADDR", &agent.http)
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn(), spawn());
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        std::fs::read_to_string(&journal).unwrap()
    };
    assert_eq!(overlapping("-n=1"), "start\nend\nstart\nend\n");
    assert_eq!(overlapping("-n=2"), "start\nstart\nend\nend\n");
    ok(muster(&agent, &["kv", "get", "-recurse", "shared"]), "");

    // The session is destroyed under a running child: SIGTERM, and the lock command ends. (The
    // signal goes to the child itself, as Consul sends it: without -shell=false the child
    // would be `sh`, and the shell may not pass it on.)
    let mut holder = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["lock", "-shell=false", "held", "sleep", "60"])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let session = eventually("the lock is held", Duration::from_secs(10), || {
        let run = muster(&agent, &["kv", "get", "-detailed", "held/.lock"]);
        let line = run.stdout.lines().find(|l| l.starts_with("Session"))?.to_owned();
        let session = line.split_whitespace().nth(1)?.to_owned();
        (session != "-").then_some(session)
    });
    let destroyed =
        ureq::put(&format!("http://{}/v1/session/destroy/{session}", agent.http)).send_empty().unwrap();
    assert_eq!(destroyed.status(), 200);
    let started = Instant::now();
    let status = eventually("the lock command ends", Duration::from_secs(20), || holder.try_wait().unwrap());
    assert!(started.elapsed() < Duration::from_secs(10), "the child was stopped, not waited for");
    assert!(status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut holder.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(stderr, "Lock lost, killed child\n");
    refuses(&agent, &["lock", "app"], "Key prefix and child command must be specified");

    // SIGTERM to `muster lock`: the child is stopped, the lock released, the key gone.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["lock", "-shell=false", "stopped", "sleep", "60"])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .spawn()
        .unwrap();
    eventually("the lock is held", Duration::from_secs(10), || {
        muster(&agent, &["kv", "get", "-detailed", "stopped/.lock"])
            .stdout
            .lines()
            .any(|l| l.starts_with("Session") && !l.ends_with('-'))
            .then_some(())
    });
    assert!(Command::new("kill").args(["-TERM", &holder.id().to_string()]).status().unwrap().success());
    let status = eventually("the lock command ends", Duration::from_secs(20), || holder.try_wait().unwrap());
    assert_eq!(status.code(), Some(1));
    ok(muster(&agent, &["kv", "get", "-recurse", "stopped"]), "");

    // A lock and a semaphore on one prefix refuse each other, as Consul's do.
    let mut semaphore = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["lock", "-n=2", "-shell=false", "mixed", "sleep", "60"])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .spawn()
        .unwrap();
    eventually("the semaphore is held", Duration::from_secs(10), || {
        muster(&agent, &["kv", "get", "mixed/.lock"]).stdout.contains("Holders").then_some(())
    });
    let refused = muster(&agent, &["lock", "mixed", "true"]);
    assert_eq!(
        (refused.code, refused.stderr.as_str()),
        (1, "Lock acquisition failed: Existing key does not match lock use\n")
    );
    let _ = semaphore.kill();
    let _ = semaphore.wait();
}

/// `watch`: without a handler the view is printed once; a handler gets every change as JSON on
/// stdin with `CONSUL_INDEX`.
#[test]
fn watch_hands_each_change_to_its_handler() {
    let agent = ready_agent("watch");
    let dir = agent.dir.clone().expect("a directory of its own");
    ok(muster(&agent, &["kv", "put", "cfg/a", "1"]), "Success! Data written to: cfg/a\n");
    let once = muster(&agent, &["watch", "-type=key", "-key=cfg/a"]);
    assert_eq!(once.code, 0, "{once:?}");
    let value: serde_json::Value = serde_json::from_str(&once.stdout).unwrap();
    assert_eq!((value["Key"].as_str(), value["Value"].as_str()), (Some("cfg/a"), Some("MQ==")));
    assert!(once.stdout.starts_with("{\n    \"LockIndex\""), "Go's four-space indent: {}", once.stdout);

    let seen = dir.join("seen");
    let handler = format!("(echo \"index=$CONSUL_INDEX\"; cat) >> {}", seen.display());
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["watch", "-type=keyprefix", "-prefix=cfg/", &handler])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .spawn()
        .unwrap();
    let invocations = |count: usize| {
        eventually("the handler ran", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&seen).ok()?;
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (lines.len() >= 2 * count).then_some(lines)
        })
    };
    let first = invocations(1);
    ok(muster(&agent, &["kv", "put", "cfg/b", "2"]), "Success! Data written to: cfg/b\n");
    let second = invocations(2);
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(second.len(), 4, "one run per change: {second:?}");
    assert_eq!(first[0], second[0]);
    let keys = |line: &str| {
        let entries: serde_json::Value = serde_json::from_str(line).unwrap();
        entries.as_array().unwrap().iter().map(|e| e["Key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&second[1]), ["cfg/a"]);
    assert_eq!(keys(&second[3]), ["cfg/a", "cfg/b"]);
    let index = |line: &str| line.strip_prefix("index=").unwrap().parse::<u64>().unwrap();
    assert!(index(&second[2]) > index(&second[0]), "{second:?}");
    refuses(&agent, &["watch", "-type=nope"], "Error parsing watch: Unsupported watch type: nope");
}

/// `keyring`: a new key installed, made primary and the old one removed on every member; the
/// keys are kept in the data directory and win over `-encrypt` at the next start.
#[test]
fn keys_rotate_with_keyring_and_survive_a_restart() {
    let dir = test_dir("keyring");
    let (old_key, new_key) =
        ("4QA1RvFbpADyoDYCZ1cQ0tOnAMAFi/N/txZOYo0JWx4=", "cClU80vqtWxlKvOLhBCiQklguyxqNMO6mV2XTFBWWeQ=");
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let start = || {
        let log = dir.join("agent.log");
        let child = Command::new(env!("CARGO_BIN_EXE_muster"))
            .args(["agent", "-server", "-bootstrap", "-bind=127.0.0.1", "-node=keys", "-dns-port=-1"])
            .arg(format!("-encrypt={old_key}"))
            .arg(format!("-data-dir={}", dir.join("data").display()))
            .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
            .args([format!("-http-port={http}"), format!("-server-port={server}")])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Agent { child, log, http: format!("127.0.0.1:{http}"), lan, dir: None }
    };
    let listed = |agent: &Agent| {
        let run = muster(agent, &["keyring", "-list"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
    };
    let agent = start();
    let first = eventually("the keyring answers", Duration::from_secs(30), || {
        let run = muster(&agent, &["keyring", "-list"]);
        (run.code == 0).then_some(run.stdout)
    });
    assert_eq!(
        first,
        format!("==> Gathering installed encryption keys...\n\nWAN:\n  {old_key} [1/1]\n\ndc1 (LAN):\n  {old_key} [1/1]\n")
    );
    ok(
        muster(&agent, &["keyring", &format!("-install={new_key}")]),
        "==> Installing new gossip encryption key...\n",
    );
    assert!(listed(&agent)
        .contains(&format!("  {new_key} [1/1]\n\ndc1 (LAN):\n  {old_key} [1/1]\n  {new_key} [1/1]\n")));
    ok(
        muster(&agent, &["keyring", &format!("-use={new_key}")]),
        "==> Changing primary gossip encryption key...\n",
    );
    ok(
        muster(&agent, &["keyring", "-list-primary"]),
        &format!("==> Gathering installed encryption keys...\n\nWAN:\n  {new_key} [1/1]\n\ndc1 (LAN):\n  {new_key} [1/1]\n"),
    );
    ok(
        muster(&agent, &["keyring", &format!("-remove={old_key}")]),
        "==> Removing gossip encryption key...\n",
    );
    let removing_primary = muster(&agent, &["keyring", &format!("-remove={new_key}")]);
    assert_eq!(removing_primary.code, 1);
    assert!(
        removing_primary.stderr.contains("removing the primary key is not allowed"),
        "{removing_primary:?}"
    );
    ok(
        muster(&agent, &["keyring", "-list", "-local-only"]),
        &format!("==> Gathering installed encryption keys...\n\ndc1 (LAN):\n  {new_key} [1/1]\n"),
    );
    refuses(
        &agent,
        &["keyring", "-local-only", &format!("-use={new_key}")],
        "Cannot use -local-only with anything but -list or -list-primary",
    );
    refuses(&agent, &["keyring"], "Must specify one action");
    refuses(&agent, &["keyring", "-list", "-install=x"], "Only a single action is allowed");
    drop(agent); // SIGKILL

    // Started again with the old -encrypt: the kept keyring wins.
    let agent = start();
    let after = eventually("the keyring answers again", Duration::from_secs(30), || {
        let run = muster(&agent, &["keyring", "-list"]);
        (run.code == 0).then_some(run.stdout)
    });
    assert_eq!(
        after,
        format!("==> Gathering installed encryption keys...\n\nWAN:\n  {new_key} [1/1]\n\ndc1 (LAN):\n  {new_key} [1/1]\n")
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Agent flags from Consul's documentation: node metadata from flags, an `-hcl` fragment and a
/// file (in the catalog), a node ID, a PID file removed at exit, a JSON log file, and refusals
/// in Consul's words.
#[test]
fn agent_flags_from_consuls_docs_are_honoured() {
    let dir = test_dir("flags");
    std::fs::write(dir.join("consul.d/meta.hcl"), "node_meta {\n  rack = \"r1\"\n}\nlog_level = \"debug\"\n")
        .unwrap();
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let (pid_file, log_file) = (dir.join("agent.pid"), dir.join("logs/agent.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=flags", "-dns-port=-1", "-node-meta=zone:a", "-log-json"])
        .args(["-hcl=node_meta { env = \"test\" }", "-node-id=11111111-2222-3333-4444-555555555555"])
        .arg("-default-query-time=1s")
        .arg(format!("-config-dir={}", dir.join("consul.d").display()))
        .arg(format!("-pid-file={}", pid_file.display()))
        .arg(format!("-log-file={}", log_file.display()))
        .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
        .args([format!("-http-port={http}"), format!("-server-port={server}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_http = format!("127.0.0.1:{http}");
    let node = eventually("the node and its meta in the catalog", Duration::from_secs(30), || {
        let response = ureq::get(&format!("http://{agent_http}/v1/catalog/node/flags")).call().ok()?;
        let body: serde_json::Value =
            serde_json::from_str(&response.into_body().read_to_string().ok()?).ok()?;
        // The leader may register the node from gossip before the agent's own sync adds meta.
        body["Node"]["Meta"]["zone"].is_string().then(|| body["Node"].clone())
    });
    assert_eq!(node["ID"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        node["Meta"],
        serde_json::json!({"consul-network-segment": "", "env": "test", "rack": "r1", "zone": "a"})
    );
    // `/v1/agent/self` shows the same meta (Consul's `State.Metadata()`).
    let agent_self = ureq::get(&format!("http://{agent_http}/v1/agent/self")).call().unwrap();
    let agent_self: serde_json::Value =
        serde_json::from_str(&agent_self.into_body().read_to_string().unwrap()).unwrap();
    assert_eq!(agent_self["Meta"], node["Meta"]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), child.id().to_string());
    // A blocking query without ?wait returns after -default-query-time (1 s), not Consul's 300 s.
    let catalog = format!("http://{agent_http}/v1/catalog/nodes");
    let index = ureq::get(&catalog).call().unwrap().headers()["X-Consul-Index"].to_str().unwrap().to_owned();
    let patient: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(20))).build().into();
    let blocked = patient.get(&format!("{catalog}?index={index}")).call().expect("answered within 20 s");
    assert_eq!(
        blocked.headers()["X-Consul-Index"].to_str().unwrap(),
        index,
        "nothing changed: the wait ran out"
    );
    let logged = std::fs::read_to_string(&log_file).unwrap();
    let first: serde_json::Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    // go-hclog's JSON keys, as Consul's -log-json writes them.
    assert!(
        first["@level"].is_string() && first["@message"].is_string() && first["@module"].is_string(),
        "{first}"
    );
    assert!(logged.contains("\"@level\":\"debug\""), "log_level from the file: debug lines are logged");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    assert!(!pid_file.exists(), "the PID file goes with the agent");

    let refused = |flag: &str| {
        let output =
            Command::new(env!("CARGO_BIN_EXE_muster")).args(["agent", "-dev", flag]).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(
        refused("-log-level=loud"),
        (
            Some(1),
            "==> Invalid log level: \"loud\". Valid log levels are: [TRACE DEBUG INFO WARN ERR]".to_owned()
        )
    );
    assert_eq!(
        refused("-node-meta=consul-x:1"),
        (
            Some(1),
            "==> Invalid node metadata \"consul-x:1\": key prefix \"consul-\" is reserved for internal use"
                .to_owned()
        )
    );
    assert_eq!(
        refused("-config-format=yaml"),
        (Some(1), "==> Invalid config format \"yaml\": must be json or hcl".to_owned())
    );
    if ["/dev/log", "/var/run/syslog", "/var/run/log"].iter().any(|p| Path::new(p).exists()) {
        eprintln!("skipped: a syslog daemon listens here, so -syslog cannot be shown failing");
    } else {
        assert_eq!(
            refused("-syslog"),
            (Some(1), "==> Syslog setup failed: Unix syslog delivery error".to_owned())
        );
    }
    assert_eq!(
        refused("-serf-lan-allowed-cidrs=10.0.0.0/8,10.0.0.0/99"),
        (Some(1), "==> serf_lan_allowed_cidrs: invalid CIDR prefix in \"10.0.0.0/99\"".to_owned())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `monitor` streams the agent's log lines, in Consul's shape, until the agent goes away;
/// `leave` stops the agent gracefully.
#[test]
fn monitor_streams_the_log_until_the_agent_leaves() {
    let mut agent = ready_agent("monitor");
    refuses(
        &agent,
        &["monitor", "-log-level=loud"],
        "Error starting monitor: Unexpected response code: 400 (Unknown log level: loud)",
    );
    let mut monitor = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["monitor", "-log-level=info"])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = monitor.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Reload until the monitor shows it: from then on the monitor is subscribed.
    eventually("the monitor shows a reload", Duration::from_secs(10), || {
        ok(muster(&agent, &["reload"]), "Configuration reload triggered\n");
        lines.recv_timeout(Duration::from_millis(200)).ok().filter(|l| l.contains("Reloading configuration"))
    });
    ok(muster(&agent, &["leave"]), "Graceful leave complete\n");
    let status = monitor.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut monitor.stderr.take().unwrap(), &mut stderr).unwrap();
    let seen: Vec<String> = lines.try_iter().collect();
    let line = seen
        .iter()
        .find(|l| l.contains("agent: leave requested over HTTP"))
        .unwrap_or_else(|| panic!("{seen:?}"));
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.ends_with('Z'), "{line}");
    assert_eq!(rest, "[INFO]  agent: leave requested over HTTP");
    assert_eq!((status.code(), stderr.as_str()), (Some(1), ""));
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Remote side ended the monitor! This usually means that the remote side has exited or crashed.")
    );
    assert!(agent.child.wait().unwrap().success(), "the agent left and exited cleanly");
}

/// `exec`: off by default on agents (nobody answers); with `disable_remote_exec = false` the
/// command runs, its output and exit code come back, and the job's keys are gone after.
#[test]
fn exec_runs_a_command_only_where_remote_exec_is_enabled() {
    let off = ready_agent("exec-off");
    ok(muster(&off, &["exec", "uptime"]), "0 / 0 node(s) completed / acknowledged\n");
    drop(off);

    let dir = test_dir("exec-on");
    let mut on = start_agent_with(&dir, &["-hcl=disable_remote_exec = false"]);
    on.dir = Some(dir);
    eventually("the dev agent leads", Duration::from_secs(30), || {
        (muster(&on, &["kv", "put", "ready", "1"]).code == 0).then_some(())
    });
    await_serf_health(&on);
    ok(
        muster(&on, &["exec", "-wait=5s", "echo hello; echo world"]),
        "    walkthrough: hello\n    walkthrough: world\n==> walkthrough: finished with exit code 0\n\
         1 / 1 node(s) completed / acknowledged\n",
    );
    let failed = muster(&on, &["exec", "-wait=5s", "-shell=false", "sh", "-c", "exit 3"]);
    assert_eq!(
        (failed.code, failed.stdout.as_str()),
        (2, "==> walkthrough: finished with exit code 3\n1 / 1 node(s) completed / acknowledged\n")
    );
    let script = muster_with_input(&on, &["exec", "-wait=5s", "-"], "echo from a script\n");
    assert_eq!(script.stdout.lines().next(), Some("    walkthrough: from a script"), "{script:?}");
    // A script past the kernel's argument size runs too: it goes to a file.
    let big = format!("# {}\necho big script\n", "x".repeat(200 * 1024));
    let script = muster_with_input(&on, &["exec", "-wait=5s", "-"], &big);
    assert_eq!(script.stdout.lines().next(), Some("    walkthrough: big script"), "{}", script.stderr);
    ok(muster(&on, &["exec", "-node=nobody", "uptime"]), "0 / 0 node(s) completed / acknowledged\n");
    ok(muster(&on, &["kv", "get", "-recurse", "_rexec"]), "");
    refuses(&on, &["exec"], "Must specify a command to execute");
    refuses(&on, &["exec", "-tag=x", "uptime"], "Cannot provide tag filter without service filter.");
}

/// `-retry-max`: an agent that joined nobody after that many attempts exits 1, in Consul's
/// words.
#[test]
fn retry_max_gives_up_on_a_join_nobody_answers() {
    let (lan, wan, http, server, nobody) = (free_port(), free_port(), free_port(), free_port(), free_port());
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=lonely", "-dns-port=-1", "-retry-interval=1s", "-retry-max=2"])
        .arg(format!("-retry-join=127.0.0.1:{nobody}"))
        .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
        .args([format!("-http-port={http}"), format!("-server-port={server}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("agent: serf.lan: Retry join is exiting after max attempts: 2"), "{stdout}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).lines().last(),
        Some("==> agent stopped: serf.lan: Retry join failed after 2 attempts")
    );
}

/// `-auto-reload-config`: a service file added, then removed, is registered and deregistered
/// with no `reload`.
#[test]
fn auto_reload_config_follows_the_files() {
    let dir = test_dir("autoreload");
    let mut agent = start_agent_with(&dir, &["-auto-reload-config"]);
    agent.dir = Some(dir.clone());
    eventually("the dev agent leads", Duration::from_secs(30), || {
        (muster(&agent, &["catalog", "services"]).stdout == "consul\n").then_some(())
    });
    std::fs::write(dir.join("consul.d/web.json"), r#"{"service": {"name": "web", "port": 80}}"#).unwrap();
    eventually("web registered by itself", Duration::from_secs(15), || {
        (muster(&agent, &["catalog", "services"]).stdout == "consul\nweb\n").then_some(())
    });
    std::fs::remove_file(dir.join("consul.d/web.json")).unwrap();
    eventually("web deregistered by itself", Duration::from_secs(15), || {
        (muster(&agent, &["catalog", "services"]).stdout == "consul\n").then_some(())
    });
}

/// `-retry-join` takes a DNS name (looked up again until it resolves), and refuses Consul's
/// cloud auto-join with a reason.
#[test]
fn retry_join_takes_a_dns_name() {
    let dir = test_dir("joinname");
    let (lan, wan, http, server) = (free_port(), free_port(), free_port(), free_port());
    let log = dir.join("server.log");
    let server_agent = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-node=named-server", "-dns-port=-1"])
        .args([format!("-serf-lan-port={lan}"), format!("-serf-wan-port={wan}")])
        .args([format!("-http-port={http}"), format!("-server-port={server}")])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server_agent =
        Agent { child: server_agent, log, http: format!("127.0.0.1:{http}"), lan, dir: Some(dir.clone()) };
    let (client_lan, client_http) = (free_port(), free_port());
    let client_log = dir.join("client.log");
    let client = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-node=named-client", "-bind=127.0.0.1", "-dns-port=-1"])
        // The server may not be listening yet when the first join goes out; without this the
        // next attempt waits Consul's default 30 s, past this test's patience.
        .arg("-retry-interval=1s")
        .arg(format!("-data-dir={}", dir.join("client").display()))
        .arg(format!("-retry-join=localhost:{lan}"))
        .args([format!("-serf-lan-port={client_lan}"), format!("-http-port={client_http}")])
        .stdout(std::fs::File::create(&client_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _client = Agent {
        child: client,
        log: client_log,
        http: format!("127.0.0.1:{client_http}"),
        lan: client_lan,
        dir: None,
    };
    eventually("the client joined through the name", Duration::from_secs(20), || {
        let run = muster(&server_agent, &["members"]);
        (run.stdout.contains("named-client") && run.stdout.contains("alive   client")).then_some(())
    });
    let output = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["agent", "-dev", "-retry-join=provider=aws tag_key=consul tag_value=server"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cloud auto-join is not supported"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `services register` and `deregister` in every form a Consul user writes them: flags (each
/// in its Go forms), JSON and HCL files; bad input gets Consul's words and exit 1
/// (`command/services/register/register.go`, `deregister/deregister.go`).
#[test]
fn services_register_and_deregister_as_consuls_do() {
    let agent = ready_agent("services");
    let dir = agent.dir.clone().unwrap();
    let services = || http_get(&agent, "/v1/agent/services");

    ok(
        muster(
            &agent,
            &[
                "services",
                "register",
                "-name=web",
                "-tag",
                "a",
                "-tag=b",
                "--tag",
                "c",
                "-port",
                "8080",
                "-meta",
                "version=1",
                "-meta=team=x=y",
                "-tagged-address",
                "lan=10.0.0.1:80",
                "-address=10.0.0.2",
            ],
        ),
        "Registered service: web\n",
    );
    let web = &services()["web"];
    assert_eq!(web["Tags"], serde_json::json!(["a", "b", "c"]), "{web}");
    assert_eq!((web["Port"].clone(), web["Address"].clone()), (8080.into(), "10.0.0.2".into()));
    assert_eq!(web["Meta"], serde_json::json!({"version": "1", "team": "x=y"}));
    assert_eq!(web["TaggedAddresses"]["lan"], serde_json::json!({"Address": "10.0.0.1", "Port": 80}));
    ok(muster(&agent, &["services", "register", "--name", "api", "--id=api-1"]), "Registered service: api\n");
    assert_eq!(services()["api-1"]["Service"], "api");

    let json = dir.join("db.json");
    std::fs::write(&json, r#"{"service": {"name": "db", "port": 5432, "tags": ["primary"]}}"#).unwrap();
    let hcl = dir.join("cache.hcl");
    std::fs::write(&hcl, "services {\n  name = \"cache\"\n  id = \"cache-1\"\n  port = 6379\n}\n").unwrap();
    ok(muster(&agent, &["services", "register", json.to_str().unwrap()]), "Registered service: db\n");
    ok(muster(&agent, &["services", "register", hcl.to_str().unwrap()]), "Registered service: cache\n");
    let all = services();
    assert_eq!(
        (all["db"]["Port"].clone(), all["db"]["Tags"].clone()),
        (5432.into(), serde_json::json!(["primary"]))
    );
    assert_eq!(all["cache-1"]["Service"], "cache");

    // Bad input: Consul's messages, exit 1, nothing registered.
    refuses(
        &agent,
        &["services", "register"],
        "Service registration requires at least one argument or flags.",
    );
    refuses(
        &agent,
        &["services", "register", "-name=x", json.to_str().unwrap()],
        "Service registration requires arguments or -id, not both.",
    );
    refuses(
        &agent,
        &["services", "register", "-name=x", "-meta", "novalue"],
        "invalid value \"novalue\" for flag -meta: Missing \"=\" value in argument: novalue",
    );
    refuses(
        &agent,
        &["services", "register", "-name=x", "-tagged-address=lan=10.0.0.1"],
        "Invalid Tagged Address: address 10.0.0.1: missing port in address",
    );
    refuses(&agent, &["services", "register", "-name=x", "-bogus"], "flag provided but not defined: -bogus");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, r#"{"service": {"name": "#).unwrap();
    let run = muster(&agent, &["services", "register", broken.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with(&format!("Error: failed to parse {}", broken.display())), "{run:?}");
    let run = muster(&agent, &["services", "register", "/nonexistent/web.json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("Error: "), "{run:?}");
    let nameless = dir.join("nameless.json");
    std::fs::write(&nameless, r#"{"service": {"port": 1}}"#).unwrap();
    assert_eq!(muster(&agent, &["services", "register", nameless.to_str().unwrap()]).code, 1);
    let ids = |all: serde_json::Value| all.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(ids(services()), ["api-1", "cache-1", "db", "web"]);

    // Deregistration by -id or from the same files.
    refuses(
        &agent,
        &["services", "deregister"],
        "Service deregistration requires at least one argument or -id.",
    );
    refuses(
        &agent,
        &["services", "deregister", "-id=web", json.to_str().unwrap()],
        "Service deregistration requires arguments or -id, not both.",
    );
    ok(muster(&agent, &["services", "deregister", "-id", "api-1"]), "Deregistered service: api-1\n");
    ok(muster(&agent, &["services", "deregister", json.to_str().unwrap()]), "Deregistered service: db\n");
    ok(muster(&agent, &["services", "deregister", hcl.to_str().unwrap()]), "Deregistered service: cache-1\n");
    assert_eq!(ids(services()), ["web"]);
}

/// Unpacks a `.tar.gz`: each entry's path and, for files, contents.
fn untar(path: &Path) -> Vec<(String, Option<String>)> {
    use std::io::Read;
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string().trim_end_matches('/').to_owned();
        let contents = entry.header().entry_type().is_file().then(|| {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            text
        });
        entries.push((name, contents));
    }
    entries
}

/// `muster debug` writes Consul's layout (`command/debug/debug.go`) into `<output>.tar.gz`:
/// agent, host and members once, the log and metrics over the whole duration, and the index.
#[test]
fn debug_archives_what_consuls_debug_archives() {
    let agent = ready_agent("debug");
    let dir = agent.dir.clone().unwrap();
    let output = dir.join("capture");
    let output_arg = format!("-output={}", output.display());
    let short = [("MUSTER_DEBUG_VALIDATE_TIMING", "false")];

    // Consul's floors, unless a test lifts them.
    refuses(
        &agent,
        &["debug", "-duration=2s", "-interval=1s", &output_arg],
        "==> Capture validation failed: duration must be longer than 10s",
    );
    refuses(
        &agent,
        &["debug", "-duration=20s", "-interval=1s", &output_arg],
        "==> Capture validation failed: interval must be longer than 10s",
    );
    refuses(
        &agent,
        &["debug", "-duration=20s", "-interval=30s", &output_arg],
        "==> Capture validation failed: duration (20s) must be longer than interval (30s)",
    );
    fails(
        muster_with_env(&agent, &["debug", "-capture=disk", &output_arg], "", &short),
        1,
        "==> Capture validation failed: target not found: disk",
    );
    refuses(&agent, &["debug", "extra"], "==> debug: Too many arguments provided, expected 0");
    assert!(!output.exists(), "a refused capture writes nothing");

    let run =
        muster_with_env(&agent, &["debug", "-duration", "2s", "--interval=1s", &output_arg], "", &short);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "==> Starting debugger and capturing static information...");
    assert!(lines[1].starts_with("     Agent Version: '"), "{run:?}");
    assert_eq!(
        lines[2..5],
        [
            "          Interval: '1s'",
            "          Duration: '2s'",
            &format!("            Output: '{}.tar.gz'", output.display())
        ]
    );
    assert_eq!(lines[5], "           Capture: 'metrics, logs, host, agent, members'");
    assert!(
        lines[6].starts_with("==> Beginning capture interval ") && lines[6].ends_with(" +0000 UTC (0)"),
        "{run:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("==> Capture successful ") && l.ends_with(" (2)")), "{run:?}");
    assert_eq!(lines.last(), Some(&format!("    Saved debug archive: {}.tar.gz", output.display()).as_str()));
    assert!(!output.exists(), "the directory goes once archived");

    let entries = untar(&dir.join("capture.tar.gz"));
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "capture",
            "capture/agent.json",
            "capture/consul.log",
            "capture/host.json",
            "capture/index.json",
            "capture/members.json",
            "capture/metrics.json"
        ]
    );
    let file = |name: &str| entries.iter().find(|(n, _)| n == name).unwrap().1.clone().unwrap();
    let index: serde_json::Value = serde_json::from_str(&file("capture/index.json")).unwrap();
    assert_eq!(index["Version"], 1);
    assert_eq!((index["Interval"].clone(), index["Duration"].clone()), ("1s".into(), "4s".into()));
    assert_eq!(index["Targets"], serde_json::json!(["metrics", "logs", "host", "agent", "members"]));
    assert!(file("capture/index.json").starts_with("{\n\t\"Version\": 1,"), "tab-indented as Go's");
    let self_: serde_json::Value = serde_json::from_str(&file("capture/agent.json")).unwrap();
    assert_eq!(self_["Config"]["NodeName"], "walkthrough");
    assert_eq!(index["AgentVersion"], self_["Config"]["Version"]);
    let members: serde_json::Value = serde_json::from_str(&file("capture/members.json")).unwrap();
    assert_eq!(members[0]["Name"], "walkthrough.dc1", "the WAN pool's members");
    // The stream's summaries, one per finished metrics interval (10 s: none, or one, here).
    let metrics = file("capture/metrics.json");
    for summary in serde_json::Deserializer::from_str(&metrics).into_iter::<serde_json::Value>() {
        assert!(summary.unwrap().get("Gauges").is_some(), "{metrics}");
    }
    // host.json holds the agent's answer, or `null` with a warning where it has none.
    let host: serde_json::Value = serde_json::from_str(&file("capture/host.json")).unwrap();
    assert!(
        host.get("Host").is_some() || (host.is_null() && run.stderr.starts_with("Static capture failed: ")),
        "{run:?}"
    );

    // `-capture pprof` is taken and skipped; `-archive=false` leaves the directory.
    let run = muster_with_env(
        &agent,
        &[
            "debug",
            "-duration=1s",
            "-interval=1s",
            "-capture",
            "agent",
            "-capture=pprof",
            "-archive=false",
            &output_arg,
        ],
        "",
        &short,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.starts_with("[WARN] Unable to capture pprof: "), "{run:?}");
    assert!(run.stdout.contains("           Capture: 'agent'\n"), "{run:?}");
    assert!(run.stdout.ends_with(&format!("    Saved debug archive: {}\n", output.display())), "{run:?}");
    let mut files: Vec<String> =
        std::fs::read_dir(&output).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["agent.json", "index.json"]);
    fails(
        muster_with_env(&agent, &["debug", &output_arg], "", &short),
        1,
        &format!("==> Capture validation failed: output directory already exists: {}", output.display()),
    );
}

/// `operator autopilot`: the configuration as Consul's lines, a check-and-set update, and the
/// state as Consul's pretty text or JSON (`command/operator/autopilot/*`).
#[test]
fn autopilot_reads_and_sets_its_configuration_as_consuls_does() {
    let agent = ready_agent("autopilot");
    ok(
        muster(&agent, &["operator", "autopilot", "get-config"]),
        "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\nMinQuorum = 0\n\
         ServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\nDisableUpgradeMigration = false\n\
         UpgradeVersionTag = \"\"\n",
    );
    ok(
        muster(
            &agent,
            &[
                "operator",
                "autopilot",
                "set-config",
                "-cleanup-dead-servers=false",
                "-max-trailing-logs",
                "100",
                "--min-quorum=3",
                "-last-contact-threshold=1s500ms",
                "-server-stabilization-time",
                "30s",
                "-upgrade-version-tag=build",
            ],
        ),
        "Configuration updated!\n",
    );
    ok(
        muster(&agent, &["operator", "autopilot", "get-config", "-stale"]),
        "CleanupDeadServers = false\nLastContactThreshold = 1.5s\nMaxTrailingLogs = 100\nMinQuorum = 3\n\
         ServerStabilizationTime = 30s\nRedundancyZoneTag = \"\"\nDisableUpgradeMigration = false\n\
         UpgradeVersionTag = \"build\"\n",
    );
    // A boolean alone is true; what was not given stays.
    ok(
        muster(&agent, &["operator", "autopilot", "set-config", "-cleanup-dead-servers"]),
        "Configuration updated!\n",
    );
    let config = muster(&agent, &["operator", "autopilot", "get-config"]).stdout;
    assert!(
        config.starts_with("CleanupDeadServers = true\n") && config.contains("MinQuorum = 3\n"),
        "{config}"
    );
    refuses(
        &agent,
        &["operator", "autopilot", "set-config", "-last-contact-threshold=5"],
        "invalid value \"5\" for flag -last-contact-threshold: time: missing unit in duration \"5\"",
    );
    refuses(
        &agent,
        &["operator", "autopilot", "set-config", "-max-trailing-logs=-1"],
        "invalid value \"-1\" for flag -max-trailing-logs: strconv.ParseUint: parsing \"-1\": invalid syntax",
    );

    let state = muster(&agent, &["operator", "autopilot", "state"]);
    assert_eq!(state.code, 0, "{state:?}");
    let lines: Vec<&str> = state.stdout.lines().collect();
    assert_eq!(lines[0], "Healthy:                      true", "{state:?}");
    assert!(lines[3].starts_with("Leader:                       "), "{state:?}");
    assert_eq!(lines[4], "Voters:");
    assert!(
        lines.contains(&"Servers:") && lines.contains(&"      Name:            walkthrough"),
        "{state:?}"
    );
    assert!(state.stdout.ends_with("\n\n"), "Consul's Info adds a line end to the text's own");
    let json = muster(&agent, &["operator", "autopilot", "state", "-format=json"]);
    assert!(json.stdout.starts_with("{\n    \"Healthy\": true,\n"), "{json:?}");
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let leader = parsed["Leader"].as_str().unwrap();
    assert_eq!(parsed["Servers"][leader]["Status"], "leader", "{parsed}");
    refuses(&agent, &["operator", "autopilot", "state", "-format=xml"], "Unknown format: xml");
}

/// A stand-in agent that answers one request with `answer` and hands back the request's head,
/// to see what a command sends.
fn one_request(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let served = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    (addr, served)
}

/// The flags Consul 1.20's client commands have beyond the basics: `-token-file`, Enterprise's
/// `-namespace`/`-partition`/`-segment` refused as Consul CE refuses them, the TLS flags checked
/// as Consul checks them (muster's CLI speaks plain HTTP only), `members -filter`, `lock -try`,
/// `version -format`, `validate -config-format`, `snapshot save -append-filename` and
/// `snapshot inspect -kvdetails -kvdepth -kvfilter -format`.
#[test]
fn consul_1_20s_newer_client_flags_do_what_consuls_do() {
    let agent = ready_agent("newer-flags");
    let dir = agent.dir.clone().expect("a directory of its own");

    // -token-file (and CONSUL_HTTP_TOKEN_FILE): its trimmed content is the token, over -token.
    let token_file = dir.join("token");
    std::fs::write(&token_file, "  s3cret\n").unwrap();
    let token_file = token_file.to_str().unwrap();
    let (addr, served) = one_request("[]");
    let run = muster(&agent, &["members", "-http-addr", &addr, "-token=other", "-token-file", token_file]);
    assert_eq!(run.code, 2, "no members: {run:?}");
    let head = served.join().unwrap();
    assert!(head.starts_with("GET /v1/agent/members?segment=_all HTTP/1.1\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-consul-token: s3cret\r\n"), "{head}");
    let (addr, served) = one_request("[]");
    let run = muster_with_env(
        &agent,
        &["members", "-http-addr", &addr],
        "",
        &[("CONSUL_HTTP_TOKEN_FILE", token_file)],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(served.join().unwrap().to_ascii_lowercase().contains("x-consul-token: s3cret\r\n"));
    refuses(&agent, &["members", "-token-file=/nonexistent/token"], "Error connecting to Consul agent: Error loading token file: open /nonexistent/token: no such file or directory");

    // Namespaces and partitions: sent as Consul CE's client sends them, refused as its agent does.
    refuses(
        &agent,
        &["kv", "get", "-namespace=team", "k"],
        "Error querying Consul agent: Unexpected response code: 400 (Invalid query parameter: \"ns\" - \
         Namespaces are a Consul Enterprise feature)",
    );
    refuses(
        &agent,
        &["members", "-partition=team"],
        "Error retrieving members: Unexpected response code: 400 (Invalid query parameter: \"partition\" - \
         Partitions are a Consul Enterprise feature)",
    );
    let refused = muster_with_env(&agent, &["kv", "put", "k", "v"], "", &[("CONSUL_NAMESPACE", "team")]);
    assert!(refused.stderr.contains("Namespaces are a Consul Enterprise feature"), "{refused:?}");
    refuses(
        &agent,
        &["members", "-segment=alpha"],
        "Error retrieving members: Unexpected response code: 500 (Network segments are not supported in \
         this version of Consul)",
    );

    // TLS: checked as Consul's client checks it.
    refuses(
        &agent,
        &["members", "-client-cert=/etc/cert.pem"],
        "Error connecting to Consul agent: both client cert and client key must be provided",
    );
    refuses(&agent, &["kv", "get", "-ca-file=/nonexistent/ca.pem", "k"], "Error connecting to Consul agent: Error loading CA File: open /nonexistent/ca.pem: no such file or directory");
    // HTTPS to the plain-HTTP port, by scheme or by CONSUL_HTTP_SSL: Go's words for it.
    let plain_port = agent.http.rsplit(':').next().unwrap().to_owned();
    let https = muster(&agent, &["members", &format!("-http-addr=https://127.0.0.1:{plain_port}")]);
    assert!(https.stderr.ends_with(": http: server gave HTTP response to HTTPS client\n"), "{https:?}");
    let https = muster_with_env(&agent, &["members"], "", &[("CONSUL_HTTP_SSL", "true")]);
    assert!(https.stderr.ends_with(": http: server gave HTTP response to HTTPS client\n"), "{https:?}");

    // members -filter: the agent filters; nothing left is exit 2, as a status that matches none.
    let only = muster(&agent, &["members", "-filter", "Name == \"walkthrough\""]);
    assert_eq!((only.code, only.stdout.lines().count()), (0, 2), "{only:?}");
    assert!(only.stdout.lines().nth(1).unwrap().starts_with("walkthrough "), "{only:?}");
    assert_eq!(muster(&agent, &["members", "-filter", "Name == \"nobody\""]).code, 2);

    // lock -try: Consul's deprecated name of -timeout.
    ok(muster(&agent, &["lock", "-try=2s", "app", "echo held"]), "held\n");
    let mut holder = Command::new(env!("CARGO_BIN_EXE_muster"))
        .args(["lock", "busy", "sleep 30"])
        .env("CONSUL_HTTP_ADDR", &agent.http)
        .spawn()
        .unwrap();
    eventually("the first holder has the lock", Duration::from_secs(10), || {
        let held = muster(&agent, &["kv", "get", "-detailed", "busy/.lock"]);
        held.stdout.lines().any(|l| l.starts_with("Session") && !l.ends_with('-')).then_some(())
    });
    let started = Instant::now();
    refuses(
        &agent,
        &["lock", "-try", "500ms", "busy", "echo never"],
        "Shutdown triggered or timeout during lock acquisition",
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = holder.kill();
    let _ = holder.wait();

    // version -format.
    let version = muster(&agent, &["version", "-format=json"]);
    let info: serde_json::Value = serde_json::from_str(&version.stdout).unwrap();
    assert_eq!(
        (version.code, info["Version"].as_str(), info["RPC"]["Max"].as_u64()),
        (0, Some("1.20.0"), Some(3))
    );
    refuses(&agent, &["version", "-format=xml"], "Unknown format: xml");

    // validate -config-format: a file of any name read as the format given.
    let conf = dir.join("agent.conf");
    std::fs::write(&conf, r#"{"datacenter": "east"}"#).unwrap();
    let conf = conf.to_str().unwrap();
    ok(muster(&agent, &["validate", "-config-format=json", conf]), "Configuration is valid!\n");
    refuses(
        &agent,
        &["validate", "-config-format=yaml", conf],
        "Config validation failed: Invalid config format \"yaml\": must be json or hcl",
    );

    // snapshot save -append-filename: the agent's version, datacenter, node and role, in that
    // order whatever the order asked, before the extension.
    for key in ["app/one/a", "app/one/b", "app/two/a", "other"] {
        assert_eq!(muster(&agent, &["kv", "put", key, "value"]).code, 0);
    }
    let file = dir.join("backup.snap");
    let saved = muster(
        &agent,
        &["snapshot", "save", "-append-filename=status,dc,version,node", file.to_str().unwrap()],
    );
    assert_eq!(saved.code, 0, "{saved:?}");
    let file = dir.join("backup-1.20.0-dc1-walkthrough-leader.snap");
    assert!(file.exists() && !dir.join("backup.snap").exists(), "{saved:?}");
    let file = file.to_str().unwrap();

    // snapshot inspect -kvdetails: the keys by prefix, -kvdepth parts deep, under -kvfilter.
    let inspected = muster(&agent, &["snapshot", "inspect", "-kvdetails", file]);
    let lines: Vec<Vec<&str>> = inspected.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    let from = lines.iter().position(|l| l.starts_with(&["Key", "Name"])).expect("a key table");
    let prefixes: Vec<(&str, &str)> =
        lines[from + 2..].iter().take_while(|l| l[0] != "----").map(|l| (l[0], l[1])).collect();
    // The killed holder's `busy/.lock` stays until its session expires.
    for expected in [("app/one", "2"), ("app/two", "1"), ("other", "1"), ("busy/.lock", "1")] {
        assert!(prefixes.contains(&expected), "{expected:?} in {inspected:?}");
    }
    assert_eq!(prefixes.len(), 4, "{inspected:?}");
    let json = muster(
        &agent,
        &["snapshot", "inspect", "-kvdetails", "-kvdepth=1", "-kvfilter=app", "-format=json", file],
    );
    let stats: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(stats["StatsKV"][0]["Name"], "app", "{json:?}");
    assert_eq!(stats["StatsKV"][0]["Count"], 3);
    assert_eq!(stats["StatsKV"].as_array().unwrap().len(), 1);
    assert!(stats["Meta"]["Index"].as_u64().unwrap() > 0);
    let plain: serde_json::Value =
        serde_json::from_str(&muster(&agent, &["snapshot", "inspect", "-format", "json", file]).stdout)
            .unwrap();
    assert!(plain["StatsKV"].is_null());
}
