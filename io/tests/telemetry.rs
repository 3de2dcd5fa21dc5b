//! Consul's telemetry through the real HTTP stack: a one-server agent takes a workload (KV,
//! transactions, catalog, sessions, blocking and consistent reads, DNS, RPC from a client, gossip
//! events), then `/v1/agent/metrics` must show every metric muster emits, with Consul's name and
//! Prometheus type, in both its formats.
//!
//! The registry is one per process: both tests configure it alike and only look for what their
//! own workload guarantees.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use muster::telemetry::{self, Kind, TelemetryConfig, METRICS};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::call;

/// Prometheus on, host names off: names as most Consul dashboards expect them.
fn config() -> TelemetryConfig {
    TelemetryConfig {
        prometheus_retention_time: Duration::from_secs(60),
        disable_hostname: true,
        ..TelemetryConfig::default()
    }
}

/// A one-server agent with telemetry started and its state gauges reported, its HTTP address.
async fn agent(name: &str) -> (String, Arc<muster::http::Api>) {
    telemetry::start(config(), "testhost".into());
    let (addr, api) = common::start_with_api(name).await;
    tokio::spawn(telemetry::run_usage_metrics(api.clone()));
    (format!("http://{addr}"), api)
}

/// Everything the agent does that Consul measures.
async fn workload(base: &str, api: &Arc<muster::http::Api>) {
    let ok = |answer: common::Answer, what: &str| assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    ok(call("PUT", format!("{base}/v1/kv/a"), "1").await, "kv put");
    let read = call("GET", format!("{base}/v1/kv/a"), "").await;
    ok(read, "kv get");
    let index = call("GET", format!("{base}/v1/kv/a"), "").await.index.unwrap();
    ok(call("GET", format!("{base}/v1/kv/a?index={index}&wait=50ms"), "").await, "blocking get");
    ok(call("GET", format!("{base}/v1/kv/a?consistent"), "").await, "consistent get");
    ok(call("DELETE", format!("{base}/v1/kv/a"), "").await, "kv delete");
    let write = r#"[{"KV": {"Verb": "set", "Key": "t", "Value": "dg=="}}]"#;
    ok(call("PUT", format!("{base}/v1/txn"), write).await, "txn write");
    let read = r#"[{"KV": {"Verb": "get", "Key": "t"}}]"#;
    ok(call("PUT", format!("{base}/v1/txn"), read).await, "txn read");
    let register =
        r#"{"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "web", "Tags": ["v1"], "Port": 80}}"#;
    ok(call("PUT", format!("{base}/v1/catalog/register"), register).await, "register");
    ok(call("GET", format!("{base}/v1/catalog/service/web"), "").await, "catalog service");
    ok(call("GET", format!("{base}/v1/catalog/service/web?tag=v1"), "").await, "catalog service by tag");
    ok(call("GET", format!("{base}/v1/health/service/web"), "").await, "health service");
    ok(call("GET", format!("{base}/v1/health/service/web?tag=v1"), "").await, "health service by tag");
    let deregister = r#"{"Node": "n2", "ServiceID": "web"}"#;
    ok(call("PUT", format!("{base}/v1/catalog/deregister"), deregister).await, "deregister");
    let created = call("PUT", format!("{base}/v1/session/create"), r#"{"TTL": "15s"}"#).await;
    let id = serde_json::from_str::<Value>(&created.body).unwrap()["ID"].as_str().unwrap().to_owned();
    ok(call("PUT", format!("{base}/v1/session/renew/{id}"), "").await, "session renew");
    ok(call("PUT", format!("{base}/v1/session/destroy/{id}"), "").await, "session destroy");
    ok(call("GET", format!("{base}/v1/agent/self"), "").await, "agent self");
    dns(api).await;
    rpc(api).await;
    gossip();
}

/// DNS queries to the agent's DNS interface: one in the domain, one reverse.
async fn dns(api: &Arc<muster::http::Api>) {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = udp.local_addr().unwrap().port();
    let settings = muster::dns::Settings {
        answers: muster_core::dns::Config::default(),
        recursors: Vec::new(),
        strategy: muster::dns::RecursorStrategy::default(),
        recursor_timeout: Duration::from_secs(2),
    };
    tokio::spawn(muster::dns::serve(api.clone(), Arc::new(settings), udp, tcp));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (name, qtype) in [("node1.node.consul.", RecordType::A), ("1.0.0.127.in-addr.arpa.", RecordType::PTR)]
    {
        let mut message = Message::new(7, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        socket.send_to(&message.to_vec().unwrap(), ("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 4096];
        tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
    }
}

/// A client agent's RPC to this server (answered), one to nowhere (failed), and a malformed
/// request.
async fn rpc(api: &Arc<muster::http::Api>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    // The server port hands over RPC connections once it has read their protocol byte.
    tokio::spawn(async move {
        while let Ok((mut stream, from)) = listener.accept().await {
            let mut byte = [0u8; 1];
            let stream_ok = stream.read_exact(&mut byte).await.is_ok();
            let boxed: muster::secure::ServerStream = Box::new(stream);
            if stream_ok && tx.send((boxed, from)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(muster::rpc::serve(rx, Arc::new(muster::http::RpcHandler::new(api.clone()))));
    let request = |uri: &str| {
        muster::rpc::Request::Server(muster::rpc::Call::Http(muster::rpc::HttpRequest {
            method: "GET".into(),
            uri: uri.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }))
    };
    let pool = muster::rpc::Pool::default();
    assert!(pool.call(addr, &request("/v1/kv/t")).await.is_ok());
    let nowhere: SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    assert!(pool.call(nowhere, &request("/v1/kv/t")).await.is_err());
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[muster::rpc::RPC_PROTOCOL_BYTE, 0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
}

/// Gossip events as the LAN pool's logger hands them over: a join, a failure and a rejoin (a
/// flap), a leave, a tag update, and a user event.
fn gossip() {
    use muster_core::swim::{MemberEvent, MemberEventKind};
    let member = |kind| {
        muster_core::gossip::Event::Member(MemberEvent {
            kind,
            node: muster_core::wire::NodeAddr { name: "n3".into(), addr: "10.0.0.3:8301".parse().unwrap() },
            incarnation: 1,
        })
    };
    for kind in [
        MemberEventKind::Join,
        MemberEventKind::Failed,
        MemberEventKind::Join,
        MemberEventKind::Update,
        MemberEventKind::Leave,
    ] {
        telemetry::serf_event("agent.server.serf.lan", member(kind));
    }
    let user = muster_core::swim::UserEvent { ltime: 1, name: "deploy".into(), payload: Bytes::new() };
    telemetry::serf_event("agent.server.serf.lan", muster_core::gossip::Event::User(user));
}

/// The Prometheus name of a table entry (`serf.events.<name>` as the workload's `deploy`).
fn prometheus_name(name: &str) -> String {
    format!("consul_{}", name.replace("<name>", "deploy").replace(['.', '-'], "_"))
}

/// A request with an `Accept` header: status, content type and body.
async fn get_accepting(url: String, accept: &'static str) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).header("Accept", accept).call().unwrap();
        let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
        (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_table_appears_with_its_prometheus_type_after_a_workload() {
    let (base, api) = agent("telemetry-table").await;
    workload(&base, &api).await;
    // The runtime gauges are read each second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let answer = call("GET", format!("{base}/v1/agent/metrics?format=prometheus"), "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type.as_deref(), Some(telemetry::PROMETHEUS_CONTENT_TYPE));
    let text = answer.body;
    for metric in METRICS {
        let name = prometheus_name(metric.name);
        let kind = metric.kind.prometheus_type();
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{} is not a {kind}:\n{text}",
            metric.name
        );
        let sample = if metric.kind == Kind::Sample { format!("{name}_count") } else { name.clone() };
        let shown = text
            .lines()
            .any(|line| line.starts_with(&format!("{sample} ")) || line.starts_with(&format!("{sample}{{")));
        assert!(shown, "{} has no value:\n{text}", metric.name);
    }
    // What the workload did, counted with Consul's names and labels.
    let counted = |prefix: &str| {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit_once(' '))
            .map(|(_, value)| value.parse::<f64>().unwrap())
            .unwrap_or_else(|| panic!("no {prefix}:\n{text}"))
    };
    for (line, at_least) in [
        ("consul_api_http_count{method=\"PUT\",path=\"v1_kv_\"}", 1.0),
        ("consul_api_http_count{method=\"GET\",path=\"v1_kv_\"}", 4.0),
        ("consul_api_http_count{method=\"GET\",path=\"v1_agent_self\"}", 1.0),
        ("consul_api_http_count{method=\"GET\",path=\"v1_catalog_service_\"}", 2.0),
        ("consul_kvs_apply_count ", 2.0),
        ("consul_txn_apply_count ", 1.0),
        ("consul_txn_read_count ", 1.0),
        ("consul_catalog_register_count ", 1.0),
        ("consul_catalog_deregister_count ", 1.0),
        ("consul_session_apply_count ", 2.0),
        ("consul_session_renew_count ", 1.0),
        ("consul_raft_apply ", 6.0),
        ("consul_raft_commitTime_count ", 6.0),
        ("consul_raft_fsm_apply_count ", 6.0),
        ("consul_raft_state_leader ", 1.0),
        ("consul_raft_state_follower ", 1.0),
        ("consul_rpc_query ", 5.0),
        ("consul_rpc_queries_blocking ", 1.0),
        ("consul_rpc_consistentRead_count ", 1.0),
        ("consul_rpc_request ", 1.0),
        ("consul_rpc_request_error ", 1.0),
        ("consul_rpc_accept_conn ", 2.0),
        ("consul_client_rpc ", 2.0),
        ("consul_client_rpc_failed{server=", 1.0),
        ("consul_catalog_service_query{service=\"web\"}", 1.0),
        ("consul_catalog_service_query_tag{service=\"web\",tag=\"v1\"}", 1.0),
        ("consul_health_service_query{service=\"web\"}", 1.0),
        ("consul_health_service_query_tag{service=\"web\",tag=\"v1\"}", 1.0),
        ("consul_dns_domain_query_count{node=\"node1\"}", 1.0),
        ("consul_dns_ptr_query_count{node=\"node1\"}", 1.0),
        ("consul_serf_member_join{network=\"lan\"}", 2.0),
        ("consul_serf_member_flap{network=\"lan\"}", 1.0),
        ("consul_serf_member_failed{network=\"lan\"}", 1.0),
        ("consul_serf_member_left{network=\"lan\"}", 1.0),
        ("consul_serf_member_update{network=\"lan\"}", 1.0),
        ("consul_serf_events{network=\"lan\"}", 1.0),
        ("consul_serf_events_deploy{network=\"lan\"}", 1.0),
        ("consul_autopilot_healthy ", 1.0),
        ("consul_server_isLeader ", 1.0),
        ("consul_state_nodes{datacenter=\"dc1\"}", 1.0),
        ("consul_version{pre_release=\"\",version=\"1.20.0\"}", 1.0),
        ("consul_runtime_sys_bytes ", 1.0),
        ("consul_runtime_num_goroutines ", 1.0),
    ] {
        let value = counted(line);
        assert!(value >= at_least, "{line}: {value} < {at_least}");
    }
    assert!(text.contains("consul_raft_commitTime{quantile=\"0.99\"} "), "{text}");
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_view_is_go_metrics_summary_and_accept_headers_choose_prometheus() {
    let (base, api) = agent("telemetry-json").await;
    workload(&base, &api).await;
    let answer = call("GET", format!("{base}/v1/agent/metrics"), "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let summary: Value = serde_json::from_str(&answer.body).unwrap();
    let keys: Vec<&str> = summary.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["Timestamp", "Gauges", "PrecisionGauges", "Points", "Counters", "Samples"]);
    let timestamp = summary["Timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with("0 +0000 UTC") && timestamp.len() == 29, "{timestamp}");
    // go-metrics sorts by its key, the name then `;label=value` for each label: so
    // `query-tag;...` comes before `query;...` (`-` sorts before `;`), as in Consul.
    for list in ["Gauges", "Counters", "Samples"] {
        let keys: Vec<String> = summary[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let labels = entry["Labels"].as_object().unwrap();
                let labels: String =
                    labels.iter().map(|(k, v)| format!(";{k}={}", v.as_str().unwrap())).collect();
                format!("{}{labels}", entry["Name"].as_str().unwrap())
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "{list} sorted by key");
    }
    // Within the first interval of the process the running one is shown, so the workload is in
    // it; a later interval shows the finished one, which may predate it: look at either.
    let counters = summary["Counters"].as_array().unwrap();
    if let Some(apply) = counters.iter().find(|c| c["Name"] == "consul.raft.apply") {
        let fields: Vec<&str> = apply.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"]);
        let (rate, sum) = (apply["Rate"].as_f64().unwrap(), apply["Sum"].as_f64().unwrap());
        assert!((rate - sum / 10.0).abs() < 1e-9, "{apply}");
    }
    let pretty = call("GET", format!("{base}/v1/agent/metrics?pretty"), "").await.body;
    assert!(pretty.starts_with("{\n    \"Timestamp\": ") && pretty.ends_with("}\n"), "{pretty}");
    for accept in ["application/openmetrics-text; version=1.0.0", "text/plain; version=0.4.0"] {
        let (status, content_type, body) = get_accepting(format!("{base}/v1/agent/metrics"), accept).await;
        assert_eq!((status, content_type.as_str()), (200, telemetry::PROMETHEUS_CONTENT_TYPE), "{accept}");
        assert!(body.contains("# TYPE consul_raft_apply counter\n"), "{body}");
    }
    let (_, content_type, _) = get_accepting(format!("{base}/v1/agent/metrics"), "text/plain").await;
    assert_eq!(content_type, "application/json");
}

#[test]
fn the_telemetry_block_reads_as_consul_reads_it() {
    let parsed = telemetry::parse_config(&serde_json::json!({
        "prometheus_retention_time": "2m",
        "disable_hostname": true,
        "prefix_filter": ["+consul.raft", "-consul.api"],
        "statsite_address": "127.0.0.1:8125"
    }))
    .unwrap();
    assert_eq!(parsed.config.prometheus_retention_time, Duration::from_secs(120));
    let (allowed, blocked, warnings) = parsed.config.prefix_rules();
    assert_eq!(allowed, ["consul.raft"]);
    assert_eq!(blocked, ["consul.api", "consul.rpc.server.call"]);
    assert!(warnings.is_empty());
    let wrong = telemetry::parse_config(&serde_json::json!({"metrics_prefix": 5})).unwrap_err();
    assert_eq!(
        wrong,
        ["'telemetry.metrics_prefix' expected type 'string', got unconvertible type 'float64', value: '5'"]
    );
}
