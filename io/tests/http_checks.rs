//! The agent's health checks against real targets: a local HTTP server answering 200, 429 and
//! 500 and one that never answers; a TCP port open and one closed; scripts exiting 0, 1 and 2
//! and one sleeping past its timeout; a UDP port; an HTTPS server with a self-signed certificate
//! (HTTPS and TCP+TLS checks, verified and not); HTTP/2 servers over TLS and cleartext (H2PING);
//! a grpc.health.v1 server (gRPC). Each check's status and Consul's output are
//! asserted as `/v1/agent/checks` shows them, then in the catalog (status changes are synced at
//! once). Flap damping and `DeregisterCriticalServiceAfter` are checked end to end too.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{call, start_with_scripts};
use serde_json::Value;

mod common;

/// A tiny HTTP server: `/ok` 200, `/busy` 429, `/broken` 500, `/hang` never answers.
fn target() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let n = stream.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = match path.as_str() {
                    "/ok" => ("200 OK", "fine"),
                    "/busy" => ("429 Too Many Requests", "slow down"),
                    "/broken" => ("500 Internal Server Error", "oops"),
                    "/agent" if request.to_ascii_lowercase().contains("user-agent: consul health check") => {
                        ("200 OK", "ua")
                    }
                    "/moved" => ("302 Found", ""),
                    _ => {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                };
                let location = if path == "/moved" { "Location: /ok\r\n" } else { "" };
                let answer = format!(
                    "HTTP/1.1 {status}\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

/// The agent's checks, by ID, once `ready` holds for them (within 15 s).
async fn checks_when(base: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = call("GET", format!("{base}/v1/agent/checks"), "").await;
        let checks: Value = serde_json::from_str(&answer.body).unwrap();
        if ready(&checks) {
            return checks;
        }
        assert!(Instant::now() < deadline, "not within 15 s: {checks:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers each (name, definition fields) as a check run every second, passing until it runs.
async fn register_passing_every_second(base: &str, checks: &[(&str, String)]) {
    for (name, definition) in checks {
        register(
            base,
            format!(r#"{{"Name": "{name}", "Interval": "1s", "Status": "passing", {definition}}}"#),
        )
        .await;
    }
}

async fn register(base: &str, body: String) {
    let answer = call("PUT", format!("{base}/v1/agent/check/register"), body.clone()).await;
    assert_eq!(answer.status, 200, "{body}: {}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tcp_udp_and_script_checks_report_consuls_statuses_and_outputs() {
    let (addr, _api) = start_with_scripts("checks").await;
    let base = format!("http://{addr}");
    let web = target();
    let closed = common::free_port();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let udp_closed = common::free_port();
    let url = |path: &str| format!("http://127.0.0.1:{web}{path}");
    let checks = [
        ("ok", format!(r#""HTTP": "{}""#, url("/ok"))),
        ("busy", format!(r#""HTTP": "{}""#, url("/busy"))),
        ("broken", format!(r#""HTTP": "{}""#, url("/broken"))),
        ("hang", format!(r#""HTTP": "{}", "Timeout": "500ms""#, url("/hang"))),
        ("agent", format!(r#""HTTP": "{}""#, url("/agent"))),
        ("moved", format!(r#""HTTP": "{}""#, url("/moved"))),
        ("unmoved", format!(r#""HTTP": "{}", "DisableRedirects": true"#, url("/moved"))),
        // A health check of the agent itself, at its root, as people point one at Consul.
        ("root", format!(r#""HTTP": "{base}/""#)),
        ("tcp-open", format!(r#""TCP": "127.0.0.1:{open_port}""#)),
        ("tcp-closed", format!(r#""TCP": "127.0.0.1:{closed}""#)),
        ("udp-closed", format!(r#""UDP": "127.0.0.1:{udp_closed}""#)),
        ("exit0", r#""Args": ["sh", "-c", "echo hello; exit 0"]"#.to_owned()),
        ("exit1", r#""Args": ["sh", "-c", "echo careful >&2; exit 1"]"#.to_owned()),
        ("exit2", r#""Args": ["sh", "-c", "echo failed; exit 2"]"#.to_owned()),
        ("sleepy", r#""Args": ["sleep", "30"], "Timeout": "500ms""#.to_owned()),
        ("missing", r#""Args": ["/nonexistent/binary"]"#.to_owned()),
    ];
    register_passing_every_second(&base, &checks).await;
    let expected = [
        ("ok", "passing", format!("HTTP GET {}: 200 OK Output: fine", url("/ok"))),
        ("busy", "warning", format!("HTTP GET {}: 429 Too Many Requests Output: slow down", url("/busy"))),
        (
            "broken",
            "critical",
            format!("HTTP GET {}: 500 Internal Server Error Output: oops", url("/broken")),
        ),
        ("hang", "critical", format!("HTTP GET {}: request timed out after 500ms", url("/hang"))),
        ("agent", "passing", format!("HTTP GET {}: 200 OK Output: ua", url("/agent"))),
        ("moved", "passing", format!("HTTP GET {}: 200 OK Output: fine", url("/moved"))),
        ("unmoved", "critical", format!("HTTP GET {}: 302 Found Output: ", url("/moved"))),
        ("root", "passing", format!("HTTP GET {base}/: 200 OK Output: {}", muster::http::UI_DISABLED)),
        ("tcp-open", "passing", format!("TCP connect 127.0.0.1:{open_port}: Success")),
        ("exit0", "passing", "hello\n".to_owned()),
        ("exit1", "warning", "careful\n".to_owned()),
        ("exit2", "critical", "failed\n".to_owned()),
        ("sleepy", "critical", "Timed out (500ms) running check".to_owned()),
    ];
    let ran = checks_when(&base, |checks| {
        // Registered passing with no output: each has run once its output is there.
        expected
            .iter()
            .all(|(id, status, output)| checks[id]["Status"] == *status && checks[id]["Output"] == *output)
            && ["tcp-closed", "udp-closed", "missing"]
                .iter()
                .all(|id| checks[id]["Status"] == "critical" && checks[id]["Output"] != "")
    })
    .await;
    for (id, status, output) in &expected {
        assert_eq!(
            (ran[id]["Status"].as_str(), ran[id]["Output"].as_str()),
            (Some(*status), Some(output.as_str())),
            "{id}"
        );
    }
    let refused = ran["tcp-closed"]["Output"].as_str().unwrap();
    assert_eq!(refused, format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"));
    assert!(
        ran["udp-closed"]["Output"].as_str().unwrap().starts_with("read udp 127.0.0.1:"),
        "{}",
        ran["udp-closed"]
    );
    assert!(ran["missing"]["Output"].as_str().unwrap().starts_with("Failed to start check: "));
    assert_eq!(ran["ok"]["Type"], "http");
    assert_eq!(ran["exit0"]["Type"], "script");

    // Status changes reach the catalog too (pushed right after the local change).
    catalog_state_when(&base, "warning", &["busy", "exit1"]).await;
}

/// Waits (up to 15 s) until the catalog's checks in `state` are exactly `ids`.
async fn catalog_state_when(base: &str, state: &str, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = call("GET", format!("{base}/v1/health/state/{state}"), "").await;
        let rows: Vec<Value> = serde_json::from_str(&answer.body).unwrap();
        let mut found: Vec<&str> = rows.iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
        found.sort_unstable();
        if found == ids {
            return;
        }
        assert!(Instant::now() < deadline, "{state} in the catalog: {found:?}, not {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_hold_back_a_flapping_check() {
    let (addr, _api) = start_with_scripts("flapping").await;
    let base = format!("http://{addr}");
    let flag = std::env::temp_dir().join(format!("muster-flap-{}", std::process::id()));
    let runs = std::env::temp_dir().join(format!("muster-flap-runs-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    let _ = std::fs::remove_file(&runs);
    // Passes on every other run: the file is created by one run and removed by the next. Each
    // run leaves a line in `runs`, so the test knows the check kept running.
    let script = format!(
        "echo run >> {1}; if [ -e {0} ]; then rm {0}; exit 2; else touch {0}; exit 0; fi",
        flag.display(),
        runs.display()
    );
    let body = format!(
        r#"{{"Name": "flappy", "Interval": "1s", "Args": ["sh", "-c", "{script}"],
            "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}}"#
    );
    register(&base, body).await;
    // The first result applies (counters start satisfied): passing.
    checks_when(&base, |checks| checks["flappy"]["Status"] == "passing").await;
    // From then on it alternates, and never reaches either threshold.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let answer = call("GET", format!("{base}/v1/agent/checks"), "").await;
        let checks: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(checks["flappy"]["Status"], "passing", "held back: {checks:#}");
    }
    let count = std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
    assert!(count >= 3, "the check ran {count} times: a held-back status proves nothing otherwise");
    let _ = std::fs::remove_file(&flag);
    let _ = std::fs::remove_file(&runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_checks_are_refused_unless_enabled() {
    let addr = common::start("noscripts").await;
    let body = r#"{"Name": "s", "Interval": "10s", "Args": ["true"]}"#;
    let answer = call("PUT", format!("http://{addr}/v1/agent/check/register"), body).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.starts_with("Scripts are disabled on this agent"), "{}", answer.body);
    let answer = call("GET", format!("http://{addr}/v1/agent/checks"), "").await;
    assert_eq!(answer.body, "{}", "nothing registered");
}

/// A self-signed certificate for `localhost`, and a TLS acceptor offering `alpn`.
fn acceptor(alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// Accepts connections on a fresh port, each served by `serve` in a task of its own.
async fn tokio_target<F, Fut>(serve: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(serve(stream));
        }
    });
    port
}

/// An HTTPS server answering every request `200 OK` with body `secure`.
async fn https_target() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = acceptor(b"http/1.1");
    tokio_target(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            // A failed handshake (a client that does not trust the certificate) is expected.
            let Ok(mut tls) = acceptor.accept(stream).await else { return };
            let mut buf = [0u8; 2048];
            if tls.read(&mut buf).await.unwrap_or(0) > 0 {
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        }
    })
    .await
}

/// An HTTP/2 server (over TLS offering `h2`, or cleartext) that only answers PINGs.
async fn h2_target(tls: bool) -> u16 {
    let acceptor = acceptor(b"h2");
    tokio_target(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let connection = if tls {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                h2::server::handshake(Box::new(stream) as Box<dyn Io>).await
            } else {
                h2::server::handshake(Box::new(stream) as Box<dyn Io>).await
            };
            // Accepting drives the connection, which answers PINGs by itself.
            let Ok(mut connection) = connection else { return };
            while let Some(Ok(_)) = connection.accept().await {}
        }
    })
    .await
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// A grpc.health.v1 server: `web` serving, `db` not serving.
async fn grpc_target() -> u16 {
    use tonic_health::ServingStatus;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("web", ServingStatus::Serving).await;
    reporter.set_service_status("db", ServingStatus::NotServing).await;
    let port = common::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve(addr));
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_tcp_tls_grpc_and_h2ping_checks_report_consuls_statuses_and_outputs() {
    let (addr, _api) = start_with_scripts("tls-checks").await;
    let base = format!("http://{addr}");
    let https = https_target().await;
    let h2_tls = h2_target(true).await;
    let h2_clear = h2_target(false).await;
    let grpc = grpc_target().await;
    let closed = common::free_port();
    let secure = format!("https://127.0.0.1:{https}/health");
    let checks = [
        ("https-skip", format!(r#""HTTP": "{secure}", "TLSSkipVerify": true"#)),
        ("https-verified", format!(r#""HTTP": "{secure}", "TLSServerName": "localhost""#)),
        ("tcp-tls-skip", format!(r#""TCP": "127.0.0.1:{https}", "TCPUseTLS": true, "TLSSkipVerify": true"#)),
        ("tcp-tls-verified", format!(r#""TCP": "127.0.0.1:{https}", "TCPUseTLS": true"#)),
        ("h2ping-tls", format!(r#""H2PING": "127.0.0.1:{h2_tls}", "TLSSkipVerify": true"#)),
        ("h2ping-clear", format!(r#""H2PING": "127.0.0.1:{h2_clear}", "H2PingUseTLS": false"#)),
        ("h2ping-closed", format!(r#""H2PING": "127.0.0.1:{closed}", "H2PingUseTLS": false"#)),
        ("grpc-web", format!(r#""GRPC": "127.0.0.1:{grpc}/web""#)),
        ("grpc-db", format!(r#""GRPC": "127.0.0.1:{grpc}/db""#)),
        ("grpc-closed", format!(r#""GRPC": "127.0.0.1:{closed}""#)),
    ];
    register_passing_every_second(&base, &checks).await;
    let expected = [
        ("https-skip", "passing", format!("HTTP GET {secure}: 200 OK Output: secure")),
        ("tcp-tls-skip", "passing", format!("TCP+TLS connect 127.0.0.1:{https}: Success")),
        ("h2ping-tls", "passing", "HTTP2 ping was successful".to_owned()),
        ("h2ping-clear", "passing", "HTTP2 ping was successful".to_owned()),
        ("grpc-web", "passing", format!("gRPC check 127.0.0.1:{grpc}/web: success")),
        ("grpc-db", "critical", format!("gRPC 127.0.0.1:{grpc}/db serving status: NOT_SERVING")),
    ];
    let failing = ["https-verified", "tcp-tls-verified", "h2ping-closed", "grpc-closed"];
    let ran = checks_when(&base, |checks| {
        expected
            .iter()
            .all(|(id, status, output)| checks[id]["Status"] == *status && checks[id]["Output"] == *output)
            && failing.iter().all(|id| checks[id]["Status"] == "critical")
    })
    .await;
    let output = |id: &str| ran[id]["Output"].as_str().unwrap().to_owned();
    // The certificate is self-signed: verified against the system's roots, it is refused.
    assert!(
        output("https-verified").starts_with(&format!("HTTP GET {secure}: tls: invalid peer certificate"))
    );
    assert!(
        output("tcp-tls-verified").starts_with("tls: invalid peer certificate"),
        "{}",
        output("tcp-tls-verified")
    );
    assert!(output("h2ping-closed").starts_with(&format!("Failed to dial to 127.0.0.1:{closed}: dial tcp")));
    assert!(
        output("grpc-closed").starts_with("rpc error: code = Unavailable desc = connection error: dial tcp"),
        "{}",
        output("grpc-closed")
    );
    assert_eq!(
        (ran["grpc-web"]["Type"].as_str(), ran["h2ping-tls"]["Type"].as_str()),
        (Some("grpc"), Some("h2ping"))
    );
    // H2PingUseTLS defaults to true and shows in the definition the catalog keeps.
    let answer = call("GET", format!("{base}/v1/health/state/any"), "").await;
    let rows: Vec<Value> = serde_json::from_str(&answer.body).unwrap();
    let h2 = rows.iter().find(|c| c["CheckID"] == "h2ping-tls").expect("synced");
    assert_eq!(h2["Definition"]["H2PING"], format!("127.0.0.1:{h2_tls}"));
    assert_eq!(h2["Definition"]["H2PingUseTLS"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_checks_mirror_a_local_service_and_a_nodes_service() {
    let (addr, _api) = start_with_scripts("alias").await;
    let base = format!("http://{addr}");
    let body = r#"{"Name": "web", "Port": 80, "Check": {"CheckID": "web-ttl", "Name": "web-ttl", "TTL": "60s", "Status": "passing"}}"#;
    let answer = call("PUT", format!("{base}/v1/agent/service/register"), body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // One alias follows the local state; one names the node, and reads the catalog.
    register(&base, r#"{"Name": "local-alias", "AliasService": "web"}"#.to_owned()).await;
    register(&base, r#"{"Name": "node-alias", "AliasService": "web", "AliasNode": "node1"}"#.to_owned())
        .await;
    register(&base, r#"{"Name": "missing-alias", "AliasService": "nope"}"#.to_owned()).await;
    let statuses = |checks: &Value| {
        ["local-alias", "node-alias"].map(|id| (checks[id]["Status"].clone(), checks[id]["Output"].clone()))
    };
    let ran = checks_when(&base, |checks| {
        statuses(checks).iter().all(|(status, output)| status == "passing" && output == "All checks passing.")
    })
    .await;
    assert_eq!(ran["local-alias"]["Type"], "alias");
    assert_eq!(
        (ran["missing-alias"]["Status"].as_str(), ran["missing-alias"]["Output"].as_str()),
        (Some("critical"), Some("Service nope could not be found on node "))
    );

    let answer = call("PUT", format!("{base}/v1/agent/check/fail/web-ttl?note=down"), "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let failing = r#"Aliased check "web-ttl" failing: down"#;
    checks_when(&base, |checks| {
        statuses(checks).iter().all(|(status, output)| status == "critical" && output == failing)
    })
    .await;
    // Status changes of an alias reach the catalog like any other.
    catalog_state_when(&base, "critical", &["local-alias", "missing-alias", "node-alias", "web-ttl"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_only_update_waits_for_the_check_update_interval_and_a_status_change_does_not() {
    let (addr, _api) = start_with_scripts("deferral").await;
    let base = format!("http://{addr}");
    register(&base, r#"{"Name": "beat", "TTL": "60s"}"#.to_owned()).await;
    let catalog_output = || async {
        let answer = call("GET", format!("{base}/v1/health/state/any"), "").await;
        let rows: Vec<Value> = serde_json::from_str(&answer.body).unwrap();
        let row = rows.into_iter().find(|c| c["CheckID"] == "beat").expect("synced");
        (row["Status"].as_str().unwrap().to_owned(), row["Output"].as_str().unwrap().to_owned())
    };
    let update = |verb: &'static str, note: &'static str| {
        let url = format!("{base}/v1/agent/check/{verb}/beat?note={note}");
        async move { assert_eq!(call("PUT", url, "").await.status, 200) }
    };
    update("pass", "first").await;
    assert_eq!(catalog_output().await, ("passing".to_owned(), "first".to_owned()), "a status change syncs");
    update("pass", "second").await;
    let agent = checks_when(&base, |checks| checks["beat"]["Output"] == "second").await;
    assert_eq!(agent["beat"]["Status"], "passing");
    assert_eq!(catalog_output().await, ("passing".to_owned(), "first".to_owned()), "output only: held back");
    update("warn", "third").await;
    assert_eq!(
        catalog_output().await,
        ("warning".to_owned(), "third".to_owned()),
        "a status change syncs all"
    );
}

/// The reaper on the real agent: a service whose only check is critical, with
/// `DeregisterCriticalServiceAfter` of 1 minute (the least there is), is gone from the agent and
/// the catalog within the minute plus one 30 s reap interval; a service beside it with a passing
/// check stays. (Slow by nature: the simulation sweeps the reaper's timing over many seeds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_deregisters_a_critical_service_on_the_real_agent() {
    let (addr, _api) = start_with_scripts("reaper").await;
    let base = format!("http://{addr}");
    let closed = common::free_port();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let service = |name: &str, port: u16| {
        format!(
            r#"{{"Name": "{name}", "Port": {port}, "Check": {{"TCP": "127.0.0.1:{port}", "Interval": "1s",
                "DeregisterCriticalServiceAfter": "1m"}}}}"#
        )
    };
    for (name, port) in [("doomed", closed), ("healthy", open_port)] {
        let answer = call("PUT", format!("{base}/v1/agent/service/register"), service(name, port)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let started = Instant::now();
    // The reaper looks every 30 s: the check turns critical just after the agent starts, so the
    // look at 60 s comes a moment early and the one at 90 s reaps; a third look of slack.
    let deadline = started + Duration::from_secs(60 + 30 + 30);
    loop {
        let answer = call("GET", format!("{base}/v1/agent/services"), "").await;
        let services: Value = serde_json::from_str(&answer.body).unwrap();
        if services.get("doomed").is_none() {
            assert!(started.elapsed() >= Duration::from_secs(60), "reaped after {:?}", started.elapsed());
            assert!(services.get("healthy").is_some(), "the passing service stays: {services:#}");
            break;
        }
        assert!(Instant::now() < deadline, "not reaped within 120 s: {services:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let answer = call("GET", format!("{base}/v1/catalog/service/doomed"), "").await;
    assert_eq!(answer.body, "[]", "gone from the catalog too");
    let answer = call("GET", format!("{base}/v1/catalog/service/healthy"), "").await;
    assert_ne!(answer.body, "[]");
}
