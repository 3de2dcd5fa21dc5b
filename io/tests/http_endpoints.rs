//! Agent and operator endpoints over real HTTP against a one-server agent, as Consul 1.20
//! answers them: the build and the host, `DebugConfig` and `Stats` of `/v1/agent/self`, the
//! catalog's usage, the metrics stream, `?filter` where Consul applies it, and the query
//! metadata headers of reads.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{call, start, start_with_api};
use serde_json::{json, Value};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A GET answered with every header (names lower-cased).
async fn get(url: String) -> (u16, Vec<(String, String)>, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).call().expect("the agent answers");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_lowercase(), value.to_str().unwrap().to_owned()))
            .collect();
        let status = response.status().as_u16();
        (status, headers, response.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_host_answer_in_consuls_shapes() {
    let addr = start("endpoints-host").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let version = parse(&call("GET", url("/v1/agent/version"), b"").await.body);
    assert_eq!(keys(&version), ["BuildDate", "FIPS", "HumanVersion", "SHA"]);
    assert_eq!(version["HumanVersion"], "1.20.0");
    assert_eq!(version["FIPS"], "");
    assert_eq!(version["BuildDate"], "1970-01-01T00:00:01Z", "Consul's unstamped build date");

    let host = parse(&call("GET", url("/v1/agent/host"), b"").await.body);
    assert_eq!(keys(&host), ["CPU", "CollectionTime", "Disk", "Errors", "Host", "Memory"]);
    assert!(host["CollectionTime"].as_i64().unwrap() > 1_600_000_000_000_000_000, "nanoseconds");
    assert_eq!(host["Host"]["os"], "linux");
    for field in ["hostname", "kernelVersion", "kernelArch", "platform", "hostId"] {
        assert!(host["Host"][field].is_string(), "Host.{field}: {}", host["Host"]);
    }
    assert!(host["Host"]["uptime"].as_u64().is_some());
    assert!(host["Memory"]["total"].as_u64().unwrap() > 0);
    assert!(host["Memory"]["usedPercent"].as_f64().unwrap() > 0.0);
    assert_eq!(host["CPU"][0]["cpu"], 0);
    assert!(!host["CPU"][0]["modelName"].as_str().unwrap().is_empty());
    // The root filesystem, in gopsutil's names; nothing failed, so no errors.
    assert_eq!(host["Disk"]["path"], "/");
    assert!(host["Disk"]["total"].as_u64().unwrap() > 0);
    assert!(host["Disk"]["usedPercent"].as_f64().is_some());
    assert_eq!(host["Errors"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_self_shows_the_sanitized_runtime_config_and_every_stats_key() {
    let (addr, api) = start_with_api("endpoints-self").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    api.config.set_runtime(muster::http::RuntimeConfig {
        bootstrap: true,
        data_dir: Some("/var/lib/consul".into()),
        bind_addr: Some("0.0.0.0".parse().unwrap()),
        advertise_addr_lan: Some("10.0.0.1".parse().unwrap()),
        client_addrs: vec!["127.0.0.1".parse().unwrap()],
        http_addrs: vec!["127.0.0.1:8500".parse().unwrap()],
        ports: muster::http::Ports {
            http: 8500,
            https: -1,
            grpc: -1,
            grpc_tls: -1,
            dns: 8600,
            serf_lan: 8301,
            serf_wan: 8302,
            server: 8300,
        },
        retry_join_lan: vec!["provider=aws tag_key=consul secret_access_key=s3cr3t".into()],
        retry_join_interval_lan: Duration::from_secs(30),
        log_level: "INFO".into(),
        ..muster::http::RuntimeConfig::default()
    });
    let me = parse(&call("GET", url("/v1/agent/self"), b"").await.body);
    let debug = &me["DebugConfig"];
    assert_eq!(debug["Datacenter"], "dc1");
    assert_eq!(debug["NodeName"], "node1");
    assert_eq!(debug["ServerMode"], true);
    assert_eq!(debug["Bootstrap"], true);
    assert_eq!(debug["BindAddr"], "0.0.0.0");
    assert_eq!(debug["AdvertiseAddrLAN"], "10.0.0.1");
    assert_eq!(debug["ClientAddrs"], json!(["127.0.0.1"]));
    assert_eq!(debug["HTTPAddrs"], json!(["tcp://127.0.0.1:8500"]));
    assert_eq!(debug["SerfBindAddrLAN"], "tcp://0.0.0.0:8301");
    assert_eq!((debug["HTTPPort"].clone(), debug["HTTPSPort"].clone()), (json!(8500), json!(-1)));
    assert_eq!(debug["RetryJoinLAN"], json!(["provider=aws tag_key=hidden secret_access_key=hidden"]));
    assert_eq!(debug["RetryJoinIntervalLAN"], "30s");
    assert_eq!(debug["MaxQueryTime"], "10m0s");
    assert_eq!(debug["DefaultQueryTime"], "5m0s");
    assert_eq!(debug["EncryptKey"], "hidden", "Consul hides secrets, set or not");
    assert_eq!(debug["ACLTokens"]["ACLDefaultToken"], "hidden");
    assert_eq!(debug["DataDir"], "/var/lib/consul");
    assert_eq!(me["Config"]["BuildDate"], "1970-01-01T00:00:01Z");

    let stats = &me["Stats"];
    assert_eq!(keys(stats), ["agent", "build", "consul", "raft", "runtime", "serf_lan"], "no WAN pool here");
    assert_eq!(keys(&stats["agent"]), ["check_monitors", "check_ttls", "checks", "services"]);
    assert_eq!(keys(&stats["build"]), ["prerelease", "revision", "version", "version_metadata"]);
    assert_eq!(
        keys(&stats["consul"]),
        ["acl", "bootstrap", "known_datacenters", "leader", "leader_addr", "server"]
    );
    assert_eq!(
        keys(&stats["raft"]),
        [
            "applied_index",
            "commit_index",
            "fsm_pending",
            "last_contact",
            "last_log_index",
            "last_log_term",
            "last_snapshot_index",
            "last_snapshot_term",
            "latest_configuration",
            "latest_configuration_index",
            "num_peers",
            "protocol_version",
            "protocol_version_max",
            "protocol_version_min",
            "snapshot_version_max",
            "snapshot_version_min",
            "state",
            "term"
        ]
    );
    assert_eq!(keys(&stats["runtime"]), ["arch", "cpu_count", "goroutines", "max_procs", "os", "version"]);
    assert_eq!(
        keys(&stats["serf_lan"]),
        [
            "coordinate_resets",
            "encrypted",
            "event_queue",
            "event_time",
            "failed",
            "health_score",
            "intent_queue",
            "left",
            "member_time",
            "members",
            "query_queue",
            "query_time"
        ]
    );
    assert_eq!(stats["consul"]["bootstrap"], "true");
    assert_eq!(stats["consul"]["leader"], "true");
    assert_eq!(stats["raft"]["state"], "Leader");
    assert_eq!(stats["raft"]["last_contact"], "0", "a leader's last contact is now");
    assert_eq!(stats["raft"]["num_peers"], "0");
    assert!(stats["runtime"]["goroutines"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    for section in stats.as_object().unwrap().values() {
        assert!(section.as_object().unwrap().values().all(Value::is_string), "{section}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_usage_counts_the_catalog_as_consul_does() {
    let addr = start("endpoints-usage").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    for body in [
        r#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"ID": "web1", "Service": "web", "Port": 80}}"#,
        r#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"ID": "web2", "Service": "web", "Port": 81}}"#,
        r#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"Service": "db", "Port": 5432}}"#,
        r#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"Service": "consul", "Port": 8300}}"#,
        r#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"Service": "gw", "Kind": "mesh-gateway", "Port": 443}}"#,
    ] {
        let answer = call("PUT", url("/v1/catalog/register"), body.as_bytes()).await;
        assert_eq!(answer.status, 200, "{body}: {}", answer.body);
    }
    let (status, headers, body) = get(url("/v1/operator/usage")).await;
    assert_eq!(status, 200, "{body}");
    let usage = parse(&body);
    assert_eq!(
        usage["Usage"],
        json!({"dc1": {
            "Services": 4,
            "ServiceInstances": 5,
            "ConnectServiceInstances": {
                "api-gateway": 0, "connect-native": 0, "connect-proxy": 0, "ingress-gateway": 0,
                "mesh-gateway": 1, "terminating-gateway": 0,
            },
            "BillableServiceInstances": 3,
            "Nodes": 2,
        }})
    );
    let index: u64 = header(&headers, "x-consul-index").unwrap().parse().unwrap();
    assert_eq!(usage["Index"], index, "the body repeats the query metadata");
    assert_eq!(
        (usage["KnownLeader"].clone(), usage["ConsistencyLevel"].clone()),
        (json!(true), json!("leader"))
    );
    assert_eq!(header(&headers, "x-consul-effective-consistency"), Some("leader"));

    // A blocking read wakes on a new instance.
    let blocked = tokio::spawn(get(url(&format!("/v1/operator/usage?index={index}&wait=30s"))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished());
    let more = br#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"Service": "cache", "Port": 6379}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), more).await.status, 200);
    let (_, _, body) = tokio::time::timeout(Duration::from_secs(10), blocked).await.unwrap().unwrap();
    assert_eq!(parse(&body)["Usage"]["dc1"]["Services"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_services_and_node_services_filter_as_consul_does() {
    let addr = start("endpoints-filter").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    for body in [
        r#"{"Node": "node2", "Address": "10.0.0.2", "NodeMeta": {"env": "prod"},
            "Service": {"ID": "web1", "Service": "web", "Tags": ["v1"], "Port": 80}}"#,
        r#"{"Node": "node3", "Address": "10.0.0.3", "NodeMeta": {"env": "dev"},
            "Service": {"ID": "web2", "Service": "web", "Tags": ["v2"], "Port": 80}}"#,
        r#"{"Node": "node3", "Address": "10.0.0.3", "NodeMeta": {"env": "dev"},
            "Service": {"Service": "db", "Tags": ["primary"], "Port": 5432}}"#,
    ] {
        assert_eq!(call("PUT", url("/v1/catalog/register"), body.as_bytes()).await.status, 200);
    }
    let services = |query: &str| {
        let url = url(&format!("/v1/catalog/services?{query}"));
        async move {
            let answer = call("GET", url, b"").await;
            (answer.status, answer.body)
        }
    };
    let all = parse(&services("").await.1);
    assert_eq!(all["web"], json!(["v1", "v2"]));
    // Consul filters the instances, then gathers each remaining name's tags.
    let (status, body) = services("filter=ServiceName%20%3D%3D%20web%20and%20v1%20in%20ServiceTags").await;
    assert_eq!((status, parse(&body)), (200, json!({"web": ["v1"]})));
    let (_, body) = services("filter=Node%20%3D%3D%20node3").await;
    assert_eq!(parse(&body), json!({"db": ["primary"], "web": ["v2"]}));
    let (_, body) = services("node-meta=env:prod").await;
    assert_eq!(parse(&body), json!({"web": ["v1"]}));
    // The instances as Consul's state store keeps them carry nothing of their node but its name.
    let (_, body) = services("filter=NodeMeta.env%20%3D%3D%20prod").await;
    assert_eq!(parse(&body), json!({}));
    let (status, body) = services("filter=Nope%20%3D%3D%201").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("Failed to create boolean expression evaluator"), "{body}");

    // A node's services: the filter selects among `Services`, the node stays.
    let node =
        parse(&call("GET", url("/v1/catalog/node/node3?filter=Service%20%3D%3D%20db"), b"").await.body);
    assert_eq!(node["Node"]["Node"], "node3");
    assert_eq!(keys(&node["Services"]), ["db"]);
    let list = parse(
        &call("GET", url("/v1/catalog/node-services/node3?filter=Service%20%3D%3D%20web"), b"").await.body,
    );
    assert_eq!(list["Node"]["Node"], "node3");
    assert_eq!(list["Services"].as_array().unwrap().len(), 1);
    assert_eq!(list["Services"][0]["ID"], "web2");

    // The agent's members (none gossiped in this harness) take a filter too.
    let members = call("GET", url("/v1/agent/members?filter=Name%20%3D%3D%20node1"), b"").await;
    assert_eq!((members.status, members.body.as_str()), (200, "[]"));
    let bad = call("GET", url("/v1/agent/members?filter=Name%20%3D%3D"), b"").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_carry_their_effective_consistency_and_last_contact() {
    let addr = start("endpoints-headers").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    for (query, mode) in [("", "leader"), ("?stale", "stale"), ("?consistent", "consistent")] {
        for path in ["/v1/catalog/nodes", "/v1/health/state/any", "/v1/operator/usage"] {
            let (status, headers, body) = get(url(&format!("{path}{query}"))).await;
            assert_eq!(status, 200, "{path}{query}: {body}");
            assert_eq!(header(&headers, "x-consul-effective-consistency"), Some(mode), "{path}{query}");
            assert_eq!(header(&headers, "x-consul-knownleader"), Some("true"));
            assert_eq!(header(&headers, "x-consul-lastcontact"), Some("0"), "the leader answers");
        }
    }
    assert_eq!(call("PUT", url("/v1/kv/a"), b"1").await.status, 200);
    let (_, headers, _) = get(url("/v1/kv/a?stale")).await;
    assert_eq!(header(&headers, "x-consul-effective-consistency"), Some("stale"));
    // Agent-local answers carry no query metadata, as in Consul.
    let (_, headers, _) = get(url("/v1/agent/services")).await;
    assert_eq!(header(&headers, "x-consul-effective-consistency"), None);
    for query in ["?stale&consistent", "?max_stale=5s&consistent"] {
        let (status, _, body) = get(url(&format!("/v1/catalog/nodes{query}"))).await;
        assert_eq!(
            (status, body.as_str()),
            (400, "Cannot specify ?stale with ?consistent, conflicting semantics."),
            "{query}"
        );
    }
    let (status, _, body) = get(url("/v1/kv/a?max_stale=soon")).await;
    assert_eq!((status, body.as_str()), (400, "Invalid max_stale value \"soon\""));
    let (_, headers, _) = get(url("/v1/kv/a?max_stale=0s&consistent")).await;
    assert_eq!(
        header(&headers, "x-consul-effective-consistency"),
        Some("consistent"),
        "0 allows no staleness"
    );
}

/// `/v1/agent/metrics/stream` sends each interval's summary as it finishes (every 10 s): the
/// first arrives within one interval, indented as Consul's encoder writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_stream_sends_each_finished_interval() {
    let addr = start("endpoints-stream").await;
    let url = format!("http://{addr}/v1/agent/metrics/stream");
    let (content_type, first) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(25))).build().into();
        let mut response = agent.get(&url).call().expect("the agent answers");
        let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        let mut reader = response.body_mut().as_reader();
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while !text.ends_with(b"\n}\n") {
            assert_eq!(reader.read(&mut byte).expect("the stream goes on"), 1, "the stream ended");
            text.push(byte[0]);
        }
        (content_type, String::from_utf8(text).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(first.starts_with("{\n    \"Timestamp\": \""), "{first}");
    let summary = parse(&first);
    assert_eq!(keys(&summary), ["Counters", "Gauges", "Points", "PrecisionGauges", "Samples", "Timestamp"]);
}
