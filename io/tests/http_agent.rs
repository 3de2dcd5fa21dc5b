//! The agent API over real HTTP against a one-server agent: services and checks registered on
//! the agent's node, TTL checks driven by their update endpoints, as Consul answers them
//! (`consul-behaviour.md` §1.5).

mod common;

use std::time::Duration;

use common::{call, start, start_with_api};
use serde_json::{json, Value};

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_with_ttl_checks_are_registered_updated_and_found_healthy() {
    let addr = start("agent").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let me = parse(&call("GET", url("/v1/agent/self"), b"").await.body);
    assert_eq!(me["Config"]["NodeName"], "node1");
    assert_eq!(me["Config"]["Datacenter"], "dc1");

    let register = br#"{"Name": "web", "Tags": ["rails"], "Port": 80,
        "Checks": [{"TTL": "30s"}, {"Name": "web-tcp", "TCP": "127.0.0.1:1", "Interval": "10s"}]}"#;
    let answer = call("PUT", url("/v1/agent/service/register"), register).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let services = parse(&call("GET", url("/v1/agent/services"), b"").await.body);
    assert_eq!(
        services["web"],
        json!({"ID": "web", "Service": "web", "Tags": ["rails"], "Meta": {}, "Port": 80, "Address": "",
               "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false, "Datacenter": "dc1"})
    );
    let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
    assert_eq!(checks["service:web:1"]["Name"], "Service 'web' check", "Consul's generated ID and name");
    assert_eq!(checks["service:web:1"]["Status"], "critical", "a new check starts critical");
    assert_eq!(checks["service:web:1"]["Type"], "ttl");
    assert_eq!(
        (checks["service:web:2"]["Name"].clone(), checks["service:web:2"]["Type"].clone()),
        (json!("web-tcp"), json!("tcp")),
        "a service's checks get generated IDs even when named"
    );
    assert_eq!(parse(&call("GET", url("/v1/health/service/web?passing"), b"").await.body), json!([]));

    assert_eq!(call("PUT", url("/v1/agent/check/pass/service:web:1?note=all%20good"), b"").await.status, 200);
    let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
    assert_eq!(
        (checks["service:web:1"]["Status"].clone(), checks["service:web:1"]["Output"].clone()),
        (json!("passing"), json!("all good"))
    );
    let update = call(
        "PUT",
        url("/v1/agent/check/update/service:web:1"),
        br#"{"Status": "warning", "Output": "slow"}"#,
    )
    .await;
    assert_eq!(update.status, 200);
    let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
    assert_eq!(checks["service:web:1"]["Status"], "warning");

    let unknown = call("PUT", url("/v1/agent/check/pass/nope"), b"").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name.")
    );
    let not_ttl = call("PUT", url("/v1/agent/check/pass/service:web:2"), b"").await;
    assert_eq!(
        (not_ttl.status, not_ttl.body.as_str()),
        (500, "CheckID \"service:web:2\" does not have associated TTL")
    );

    assert_eq!(call("PUT", url("/v1/agent/service/deregister/web"), b"").await.status, 200);
    let again = call("PUT", url("/v1/agent/service/deregister/web"), b"").await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (404, "Unknown service ID \"web\". Ensure that the service ID is passed, not the service name.")
    );
    assert_eq!(parse(&call("GET", url("/v1/agent/services"), b"").await.body), json!({}));
    assert_eq!(
        parse(&call("GET", url("/v1/agent/checks"), b"").await.body),
        json!({}),
        "the leader's serfHealth is not the agent's"
    );
    let node = parse(&call("GET", url("/v1/health/node/node1"), b"").await.body);
    let ids: Vec<&str> = node.as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["serfHealth"], "the service's checks left the catalog with it");
}

/// Anti-entropy: the agent owns its node in the catalog. A registration made onto it through
/// the catalog API is undone by the agent's next sync, and a service of the agent's deleted
/// there comes back; rows of other nodes are not the agent's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_undoes_catalog_drift_on_its_node() {
    let addr = start("agent-drift").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let web = br#"{"Name": "web", "Port": 80, "Check": {"TTL": "30s", "Status": "passing"}}"#;
    assert_eq!(call("PUT", url("/v1/agent/service/register"), web).await.status, 200);
    let foreign = br#"{"Node": "node1", "Address": "127.0.0.1", "Service": {"Service": "db", "Port": 5432}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), foreign).await.status, 200);
    let elsewhere =
        br#"{"Node": "node2", "Address": "10.0.0.2", "Service": {"Service": "db", "Port": 5432}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), elsewhere).await.status, 200);
    let gone = br#"{"Node": "node1", "ServiceID": "web"}"#;
    assert_eq!(call("PUT", url("/v1/catalog/deregister"), gone).await.status, 200);
    let services = parse(&call("GET", url("/v1/catalog/node/node1"), b"").await.body);
    assert_eq!(services["Services"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["db"]);

    // A change on the agent writes just what it changed (Consul's partial sync)...
    let mem = br#"{"Name": "mem", "TTL": "30s", "Status": "passing"}"#;
    assert_eq!(call("PUT", url("/v1/agent/check/register"), mem).await.status, 200);
    let services = parse(&call("GET", url("/v1/catalog/node/node1"), b"").await.body);
    assert_eq!(services["Services"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["db"]);
    // ...and a full sync (every minute, and on reload, as Consul's) repairs the whole node.
    assert_eq!(call("PUT", url("/v1/agent/reload"), b"").await.status, 200);
    let services = parse(&call("GET", url("/v1/catalog/node/node1"), b"").await.body);
    assert_eq!(services["Services"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["web"]);
    let healthy = parse(&call("GET", url("/v1/health/service/web?passing"), b"").await.body);
    let ids: Vec<&str> =
        healthy[0]["Checks"].as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["mem", "serfHealth", "service:web"], "its check came back with it");
    let db = parse(&call("GET", url("/v1/catalog/service/db"), b"").await.body);
    assert_eq!(db.as_array().unwrap().len(), 1, "node2's db is not the agent's");
    assert_eq!(db[0]["Node"], "node2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_agent_registrations_are_refused_and_change_nothing() {
    let addr = start("agent-bad").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let cases: [(&str, &[u8], u16, &str); 6] = [
        ("/v1/agent/service/register", br#"{"Port": 80}"#, 400, "Missing service name"),
        ("/v1/agent/service/register", br#"{"Name": "w", "Check": {"HTTP": "http://x"}}"#, 400, "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks"),
        ("/v1/agent/service/register", br#"{"Name": "w", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}"#, 400, "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"),
        ("/v1/agent/service/register", br#"{"Name": "w", "Weights": {"Passing": 0}}"#, 400, "Passing must be greater than 0"),
        ("/v1/agent/check/register", br#"{"Name": "c", "TTL": "10s", "ServiceID": "ghost"}"#, 404, "ServiceID \"ghost\" does not exist"),
        ("/v1/agent/check/register", br#"{"Name": "c", "TTL": "-5s"}"#, 400, "Request decode failed: TTL: time: negative duration \"-5s\""),
    ];
    for (path, body, status, reason) in cases {
        let answer = call("PUT", url(path), body).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (status, reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(parse(&call("GET", url("/v1/agent/services"), b"").await.body), json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_takes_a_node_or_a_service_out_of_passing_answers() {
    let addr = start("maintenance").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let web = br#"{"Name": "web", "Port": 80, "Check": {"TTL": "30s", "Status": "passing"}}"#;
    assert_eq!(call("PUT", url("/v1/agent/service/register"), web).await.status, 200);
    let passing = || call("GET", url("/v1/health/service/web?passing"), b"");
    assert_eq!(parse(&passing().await.body).as_array().unwrap().len(), 1);

    assert_eq!(
        call("PUT", url("/v1/agent/service/maintenance/web?enable=true&reason=deploy"), b"").await.status,
        200
    );
    assert_eq!(parse(&passing().await.body), json!([]));
    let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
    let check = &checks["_service_maintenance:web"];
    assert_eq!(
        (check["Status"].clone(), check["Notes"].clone(), check["Name"].clone()),
        (json!("critical"), json!("deploy"), json!("Service Maintenance Mode"))
    );
    assert_eq!(call("PUT", url("/v1/agent/service/maintenance/web?enable=false"), b"").await.status, 200);
    assert_eq!(parse(&passing().await.body).as_array().unwrap().len(), 1);

    assert_eq!(call("PUT", url("/v1/agent/maintenance?enable=true"), b"").await.status, 200);
    assert_eq!(parse(&passing().await.body), json!([]), "a node in maintenance takes its services with it");
    let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
    assert_eq!(
        checks["_node_maintenance"]["Notes"],
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
    );
    assert_eq!(call("PUT", url("/v1/agent/maintenance?enable=false"), b"").await.status, 200);
    assert_eq!(parse(&passing().await.body).as_array().unwrap().len(), 1);

    let missing = call("PUT", url("/v1/agent/maintenance"), b"").await;
    assert_eq!((missing.status, missing.body.as_str()), (400, "Missing value for enable"));
    let bad = call("PUT", url("/v1/agent/maintenance?enable=maybe"), b"").await;
    assert_eq!((bad.status, bad.body.as_str()), (400, "Invalid value for enable: \"maybe\""));
    let unknown = call("PUT", url("/v1/agent/service/maintenance/ghost?enable=true"), b"").await;
    assert_eq!((unknown.status, unknown.body.as_str()), (404, "Unknown service ID \"ghost\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_coordinate_and_metrics_endpoints_answer_in_consul_shapes() {
    let addr = start("operator").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let raft = parse(&call("GET", url("/v1/operator/raft/configuration"), b"").await.body);
    assert_eq!(raft["Servers"][0]["Leader"], true);
    assert_eq!(raft["Servers"][0]["Voter"], true);
    assert_eq!(raft["Servers"][0]["Address"], "127.0.0.1:8300");
    let coordinates = parse(&call("GET", url("/v1/coordinate/datacenters"), b"").await.body);
    assert_eq!(coordinates, json!([{"Datacenter": "dc1", "AreaID": "WAN", "Coordinates": []}]));
    assert_eq!(parse(&call("GET", url("/v1/coordinate/nodes"), b"").await.body), json!([]));
    call("PUT", url("/v1/kv/metric/a"), b"1").await;
    let metrics = parse(&call("GET", url("/v1/agent/metrics"), b"").await.body);
    assert!(metrics["Timestamp"].as_str().unwrap().ends_with(" +0000 UTC"), "{}", metrics["Timestamp"]);
    // The JSON view may show the interval finished before the gauge was set: Prometheus's is current.
    let text = call("GET", url("/v1/agent/metrics?format=prometheus"), b"").await;
    assert!(text.body.contains("consul_state_kv_entries{datacenter=\"dc1\"} 1\n"), "{}", text.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_check_not_updated_in_time_turns_critical_with_consuls_output() {
    let addr = start("ttl-expiry").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    // Long enough that the read right after an update lands inside it on a loaded machine.
    let register = br#"{"Name": "heartbeat", "TTL": "2s", "Status": "passing"}"#;
    assert_eq!(call("PUT", url("/v1/agent/check/register"), register).await.status, 200);
    assert_eq!(call("PUT", url("/v1/agent/check/pass/heartbeat?note=beating"), b"").await.status, 200);
    let status = || async {
        let checks = parse(&call("GET", url("/v1/agent/checks"), b"").await.body);
        (checks["heartbeat"]["Status"].clone(), checks["heartbeat"]["Output"].clone())
    };
    let mut seen = status().await;
    for _ in 0..100 {
        if seen.0 == "critical" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = status().await;
    }
    assert_eq!(seen, (json!("critical"), json!("TTL expired (last output before timeout follows): beating")));
    // An update brings it back and restarts its timer.
    assert_eq!(call("PUT", url("/v1/agent/check/pass/heartbeat"), b"").await.status, 200);
    assert_eq!(status().await.0, json!("passing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_list_read_blocks_until_a_newer_event_arrives() {
    let (addr, api) = start_with_api("events").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let empty = call("GET", url("/v1/event/list"), b"").await;
    assert_eq!((empty.body.as_str(), empty.index), ("[]", Some(1)));
    let blocked = tokio::spawn(call("GET", url("/v1/event/list?name=deploy&index=1&wait=30s"), b""));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    api.gossip.received("other", 3, b"");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!blocked.is_finished(), "another name's event does not answer it");
    api.gossip.received("deploy", 5, b"v2");
    let answer =
        tokio::time::timeout(std::time::Duration::from_secs(10), blocked).await.expect("woken").unwrap();
    assert_eq!(answer.index, Some(5));
    let events = parse(&answer.body);
    assert_eq!(
        (events[0]["Name"].clone(), events[0]["Payload"].clone(), events[0]["LTime"].clone()),
        (json!("deploy"), json!("djI="), json!(5))
    );
}

/// `operator raft remove-peer` and `transfer-leader` over HTTP, on one server: Consul's errors
/// for a missing or unknown server, and the core's refusal to remove the last voter or hand
/// leadership to itself; the configuration is unchanged after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_peer_tools_refuse_what_would_break_a_single_server() {
    let addr = start("agent-peers").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let id = "6a2f6a0e-0c3c-4c5e-9b0e-2f0b6f8f2a11";
    let cases = [
        (
            "DELETE",
            "/v1/operator/raft/peer".to_owned(),
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
                .to_owned(),
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer?id=a&address=b".to_owned(),
            400,
            "Must specify only one of ?id or ?address".to_owned(),
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer?id=nope".to_owned(),
            500,
            "id \"nope\" was not found in the Raft configuration".to_owned(),
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer?address=10.0.0.9:8300".to_owned(),
            500,
            "address \"10.0.0.9:8300\" was not found in the Raft configuration".to_owned(),
        ),
        (
            "DELETE",
            format!("/v1/operator/raft/peer?id={id}"),
            500,
            "membership change refused: cannot remove the last voter".to_owned(),
        ),
        (
            "DELETE",
            "/v1/operator/raft/peer?address=127.0.0.1:8300&dc=elsewhere".to_owned(),
            500,
            "No path to datacenter".to_owned(),
        ),
        (
            "POST",
            format!("/v1/operator/raft/transfer-leader?id={id}"),
            500,
            "server 1 cannot take over leadership".to_owned(),
        ),
        (
            "POST",
            "/v1/operator/raft/transfer-leader".to_owned(),
            400,
            "Must specify ?id with the server's ID".to_owned(),
        ),
    ];
    for (method, path, status, reason) in cases {
        let answer = call(method, url(&path), b"").await;
        assert_eq!((answer.status, answer.body.as_str()), (status, reason.as_str()), "{method} {path}");
    }
    let configuration = parse(&call("GET", url("/v1/operator/raft/configuration"), b"").await.body);
    assert_eq!(configuration["Servers"].as_array().unwrap().len(), 1);
    assert_eq!(configuration["Servers"][0]["ID"], id);
}

/// Hash-based blocking on `/v1/agent/service/<id>`: the answer carries `ContentHash` and
/// `X-Consul-ContentHash`; `?hash=` with the current hash waits out `?wait`, and returns early
/// with a new hash once the service changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_service_blocks_on_its_content_hash() {
    let addr = start("agent-hash").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let web = br#"{"Name": "web", "Port": 80}"#;
    assert_eq!(call("PUT", url("/v1/agent/service/register"), web).await.status, 200);
    let first = call("GET", url("/v1/agent/service/web"), b"").await;
    let body = parse(&first.body);
    let hash = body["ContentHash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 16);
    assert_eq!(body["Port"], 80);

    let started = std::time::Instant::now();
    let same =
        parse(&call("GET", url(&format!("/v1/agent/service/web?hash={hash}&wait=300ms")), b"").await.body);
    assert!(started.elapsed() >= Duration::from_millis(300), "an unchanged service waits out ?wait");
    assert_eq!(same["ContentHash"], hash.as_str());

    let waiting = tokio::spawn(call("GET", url(&format!("/v1/agent/service/web?hash={hash}&wait=30s")), b""));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "nothing changed yet");
    let moved = br#"{"Name": "web", "Port": 8080}"#;
    let started = std::time::Instant::now();
    assert_eq!(call("PUT", url("/v1/agent/service/register"), moved).await.status, 200);
    let changed = parse(&waiting.await.unwrap().body);
    assert!(started.elapsed() < Duration::from_secs(5), "the change wakes the reader");
    assert_eq!(changed["Port"], 8080);
    assert_ne!(changed["ContentHash"], hash.as_str());
}

/// Connections per client (Consul's `http_max_conns_per_client`): past the limit a client's
/// new connection is closed unanswered; closing one frees a place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_connection_limit_is_turned_away() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, _api) = common::start_limited("agent-conns", 3).await;
    let request = b"GET /v1/status/leader HTTP/1.1\r\nHost: muster\r\n\r\n";
    let ask = |mut stream: tokio::net::TcpStream| async move {
        stream.write_all(request).await.unwrap();
        let mut answer = vec![0; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
        let n = read.expect("an answer or a close within 5 s").unwrap_or(0);
        (String::from_utf8_lossy(&answer[..n]).into_owned(), stream)
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        let (answer, stream) = ask(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        held.push(stream);
    }
    let (answer, _) = ask(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(answer, "", "the fourth connection is closed unanswered");
    drop(held.pop());
    // The place is free once the server has seen the close: asked again until then (5 s).
    let mut answer = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = ask(tokio::net::TcpStream::connect(addr).await.unwrap()).await.0;
        if !answer.is_empty() {
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "a freed place is taken again: {answer}");
}

/// `/v1/agent/health/service/...`, which load balancers and orchestrators poll: the status
/// code is the health (200 passing, 429 warning, 503 critical or maintenance, 404 unknown), as
/// text with `?format=text`, or with the service and its checks as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_health_endpoints_answer_the_status_in_the_code() {
    let addr = start("agent-health").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let register = |id: &'static str| {
        let body = format!(
            r#"{{"Name": "web", "ID": "{id}", "Port": 80, "Check": {{"TTL": "30s", "Status": "passing"}}}}"#
        );
        let url = url("/v1/agent/service/register");
        async move { assert_eq!(call("PUT", url, body.as_bytes()).await.status, 200) }
    };
    register("web1").await;
    register("web2").await;
    let text = |path: &str| {
        let url = url(&format!("{path}?format=text"));
        async move {
            let answer = call("GET", url, b"").await;
            (answer.status, answer.body)
        }
    };
    assert_eq!(text("/v1/agent/health/service/name/web").await, (200, "passing".to_owned()));
    assert_eq!(call("PUT", url("/v1/agent/check/warn/service:web2"), b"").await.status, 200);
    assert_eq!(text("/v1/agent/health/service/name/web").await, (429, "warning".to_owned()));
    assert_eq!(text("/v1/agent/health/service/id/web1").await, (200, "passing".to_owned()));
    assert_eq!(call("PUT", url("/v1/agent/check/fail/service:web1"), b"").await.status, 200);
    assert_eq!(
        text("/v1/agent/health/service/name/web").await,
        (503, "critical".to_owned()),
        "the worst wins"
    );

    let json_answer = call("GET", url("/v1/agent/health/service/id/web2"), b"").await;
    assert_eq!(json_answer.status, 429);
    let body = parse(&json_answer.body);
    assert_eq!(body["AggregatedStatus"], "warning");
    assert_eq!(body["Service"]["ID"], "web2");
    assert_eq!(body["Checks"][0]["CheckID"], "service:web2");

    assert_eq!(call("PUT", url("/v1/agent/service/maintenance/web2?enable=true"), b"").await.status, 200);
    assert_eq!(text("/v1/agent/health/service/id/web2").await, (503, "maintenance".to_owned()));

    assert_eq!(text("/v1/agent/health/service/name/db").await, (404, "ServiceName db Not Found".to_owned()));
    let missing = call("GET", url("/v1/agent/health/service/id/db1"), b"").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        parse(&missing.body),
        json!({"AggregatedStatus": "critical", "Service": null, "Checks": null})
    );
}
