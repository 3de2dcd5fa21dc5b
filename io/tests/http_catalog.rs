//! The catalog and health APIs over real HTTP against a one-server cluster, answered as Consul
//! answers (`consul-behaviour.md` §1.3, §1.4).

mod common;

use std::time::Duration;

use common::{call, start};
use serde_json::Value;

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

const WEB: &[u8] = br#"{
    "Node": "web-1", "Address": "10.0.0.5", "NodeMeta": {"rack": "r1"},
    "Service": {"Service": "web", "Tags": ["rails"], "Port": 80},
    "Check": {"CheckID": "web-http", "Name": "web HTTP", "ServiceID": "web", "Status": "passing",
              "Definition": {"HTTP": "http://10.0.0.5/health", "Interval": "10s"}}
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_services_are_listed_and_health_filters_them() {
    let addr = start("catalog").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/catalog/register"), WEB).await.body, "true");
    let db = br#"{"node": "db-1", "address": "10.0.0.6", "service": {"service": "db", "id": "db-1", "port": 5432}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), db).await.body, "true", "lowercase keys too");

    let services = parse(&call("GET", url("/v1/catalog/services"), b"").await.body);
    assert_eq!(
        services,
        serde_json::json!({"db": [], "web": ["rails"]}),
        "the agent's own node has no services here"
    );
    let nodes = parse(&call("GET", url("/v1/catalog/nodes?node-meta=rack:r1"), b"").await.body);
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["Node"], "web-1");

    let instances = call("GET", url("/v1/catalog/service/web?tag=rails"), b"").await;
    let instances = parse(&instances.body);
    assert_eq!(instances[0]["ServiceID"], "web");
    assert_eq!(instances[0]["ServiceAddress"], "", "empty: use the node's address");
    assert_eq!(instances[0]["Address"], "10.0.0.5");
    assert_eq!(instances[0]["ServicePort"], 80);
    assert_eq!(instances[0]["ServiceTags"], serde_json::json!(["rails"]));
    assert_eq!(instances[0]["ServiceWeights"], serde_json::json!({"Passing": 1, "Warning": 1}));
    assert_eq!(
        parse(&call("GET", url("/v1/catalog/service/web?tag=django"), b"").await.body),
        serde_json::json!([])
    );
    assert_eq!(parse(&call("GET", url("/v1/catalog/service/nope"), b"").await.body), serde_json::json!([]));

    let healthy = parse(&call("GET", url("/v1/health/service/web?passing"), b"").await.body);
    assert_eq!(healthy[0]["Service"]["Service"], "web");
    assert_eq!(healthy[0]["Checks"][0]["CheckID"], "web-http");
    assert_eq!(
        healthy[0]["Checks"][0]["Definition"],
        serde_json::json!({"HTTP": "http://10.0.0.5/health", "Interval": "10s"})
    );
    assert_eq!(healthy[0]["Checks"][0]["Interval"], "10s");

    // A blocked reader of web's health is answered when its check goes critical.
    let index = call("GET", url("/v1/health/service/web"), b"").await.index.unwrap();
    let blocked = tokio::spawn(call(
        "GET",
        url(&format!("/v1/health/service/web?passing&index={index}&wait=30s")),
        b"",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let failing = br#"{"Node": "web-1", "Address": "10.0.0.5", "SkipNodeUpdate": true,
        "Check": {"CheckID": "web-http", "ServiceID": "web", "Status": "critical", "Output": "HTTP GET: 500"}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), failing).await.body, "true");
    let answer = tokio::time::timeout(Duration::from_secs(10), blocked).await.expect("woken").unwrap();
    assert!(answer.index.unwrap() > index);
    assert_eq!(parse(&answer.body), serde_json::json!([]), "critical: gone from ?passing");
    let all = parse(&call("GET", url("/v1/health/service/web"), b"").await.body);
    assert_eq!(all[0]["Checks"][0]["Status"], "critical", "without ?passing it is listed");
    let critical = parse(&call("GET", url("/v1/health/state/critical"), b"").await.body);
    assert_eq!(critical[0]["Output"], "HTTP GET: 500");

    let node = parse(&call("GET", url("/v1/catalog/node/web-1"), b"").await.body);
    assert_eq!(node["Node"]["Meta"], serde_json::json!({"rack": "r1"}));
    assert_eq!(node["Services"]["web"]["Port"], 80);
    let list = parse(&call("GET", url("/v1/catalog/node-services/web-1"), b"").await.body);
    assert_eq!(list["Services"][0]["ID"], "web");
    assert_eq!(call("GET", url("/v1/catalog/node/ghost"), b"").await.body, "null");
    assert_eq!(
        parse(&call("GET", url("/v1/health/node/web-1"), b"").await.body).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        parse(&call("GET", url("/v1/health/checks/web"), b"").await.body).as_array().unwrap().len(),
        1
    );

    assert_eq!(
        call("PUT", url("/v1/catalog/deregister"), br#"{"Node": "web-1", "ServiceID": "web"}"#).await.body,
        "true"
    );
    assert_eq!(
        parse(&call("GET", url("/v1/health/node/web-1"), b"").await.body),
        serde_json::json!([]),
        "its check went with it"
    );
    assert_eq!(call("PUT", url("/v1/catalog/deregister"), br#"{"Node": "web-1"}"#).await.body, "true");
    assert_eq!(call("GET", url("/v1/catalog/node/web-1"), b"").await.body, "null");
    assert_eq!(
        parse(&call("GET", url("/v1/catalog/datacenters"), b"").await.body),
        serde_json::json!(["dc1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_with_consul_messages_and_change_nothing() {
    let addr = start("catalog-bad").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    let before = call("GET", url("/v1/catalog/nodes"), b"").await;
    let cases: [(&[u8], u16, &str); 6] = [
        (br#"{"Address": "10.0.0.1"}"#, 400, "Must provide node"),
        (br#"{"Node": "n"}"#, 400, "Must provide address if SkipNodeUpdate is not set"),
        (
            br#"{"Node": "n", "Address": "10.0.0.1", "Check": {"Name": "c", "ServiceID": "ghost"}}"#,
            400,
            "failed inserting check on node \"n\": Missing service registration",
        ),
        (
            br#"{"Node": "n", "Address": "10.0.0.1", "Check": {"Name": "c", "Status": "sleepy"}}"#,
            400,
            "Invalid check status: 'sleepy'",
        ),
        (
            br#"{"Node": "n", "Address": "10.0.0.1", "Service": {"Service": "s", "Port": 70000}}"#,
            400,
            "Request decode failed: Port: 70000 is out of range",
        ),
        (b"{not json", 400, "Request decode failed: key must be a string at line 1 column 2"),
    ];
    for (body, status, reason) in cases {
        let answer = call("PUT", url("/v1/catalog/register"), body).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (status, reason),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let state = call("GET", url("/v1/health/state/sleepy"), b"").await;
    assert_eq!((state.status, state.body.as_str()), (400, "Invalid check state: 'sleepy'"));
    let passing = call("GET", url("/v1/health/service/web?passing=maybe"), b"").await;
    assert_eq!((passing.status, passing.body.as_str()), (400, "Invalid value for ?passing"));
    let after = call("GET", url("/v1/catalog/nodes"), b"").await;
    assert_eq!((after.body, after.index), (before.body, before.index), "nothing was written");
    for (path, reason) in [
        ("/v1/catalog/node/", "Missing node name"),
        ("/v1/health/service/", "Missing service name"),
        ("/v1/health/state/", "Missing check state"),
    ] {
        let answer = call("GET", url(path), b"").await;
        assert_eq!((answer.status, answer.body.as_str()), (400, reason), "{path}");
    }
    let unknown = call("GET", url("/v1/nonsense"), b"").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "Invalid URL path: not a recognized HTTP API endpoint\n")
    );
    let outside = call("GET", url("/favicon.ico"), b"").await;
    assert_eq!(
        (outside.status, outside.body.as_str()),
        (404, "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n")
    );
    // Consul's index answers the root whatever the method, with its UI off.
    for method in ["GET", "PUT", "POST", "DELETE"] {
        let root = call(method, url("/"), b"").await;
        assert_eq!((root.status, root.body.as_str()), (200, muster::http::UI_DISABLED), "{method} /");
    }
    let wrong_method = call("DELETE", url("/v1/catalog/nodes"), b"").await;
    assert_eq!((wrong_method.status, wrong_method.body.as_str()), (405, "method DELETE not allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_expressions_select_what_they_name() {
    let addr = start("filter").await;
    let url = move |path: &str| format!("http://{addr}{path}");
    assert_eq!(call("PUT", url("/v1/catalog/register"), WEB).await.body, "true");
    let other = br#"{"Node": "web-2", "Address": "10.0.0.7", "NodeMeta": {"rack": "r2"},
        "Service": {"Service": "web", "Tags": ["django"], "Port": 8080}}"#;
    assert_eq!(call("PUT", url("/v1/catalog/register"), other).await.body, "true");
    let filtered = |filter: &str| {
        let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        call("GET", url(&format!("/v1/health/service/web?filter={encoded}")), b"")
    };
    let nodes = |body: &str| -> Vec<String> {
        parse(body)
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["Node"]["Node"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(nodes(&filtered(r#""rails" in Service.Tags"#).await.body), ["web-1"]);
    assert_eq!(
        nodes(&filtered(r#"Node.Meta.rack == "r2" or Service.Port == 80"#).await.body),
        ["web-1", "web-2"]
    );
    assert_eq!(nodes(&filtered("Checks is empty").await.body), ["web-2"]);
    let service = call("GET", url("/v1/catalog/service/web?filter=ServicePort%20%3D%3D%208080"), b"").await;
    assert_eq!(parse(&service.body)[0]["Node"], "web-2");
    let bad = filtered("Service.Port ==").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.starts_with("Failed to create boolean expression evaluator: "), "{}", bad.body);
    let typo = filtered("Servcie.Port == 80").await;
    assert_eq!(
        (typo.status, typo.body.as_str()),
        (400, "Failed to create boolean expression evaluator: Selector \"Servcie.Port\" is not valid")
    );
}
