//! The agent's health checks on real parts (`../shared/reference/consul-behaviour.md` §3): the
//! executors (script, HTTP and HTTPS, TCP and TCP+TLS, UDP, gRPC, H2PING; the task that runs them
//! on the core's schedule is [`crate::tasks::checks`]).
//!
//! What a result changes (a status at once, an output after `check_update_interval`) is the
//! task's business, not the executors'.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use muster_core::fsm::CheckKind;
use muster_core::fsm::{Check, Health};
use muster_core::health::{capped_output, SCRIPT_TIMEOUT_DEFAULT, TIMEOUT_DEFAULT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

mod h2;
mod tls;

use tls::{Alpn, Verify};

/// What one run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status the run gives.
    pub status: Health,
    /// What it says, capped at [`muster_core::health::OUTPUT_BYTES_MAX`].
    pub output: String,
}

impl Outcome {
    fn new(status: Health, output: impl Into<String>) -> Outcome {
        Outcome { status, output: capped_output(&output.into()) }
    }
}

/// The checks the agent runs on an interval (TTL checks are updated from outside; alias checks
/// follow the checks they mirror).
pub fn is_runnable(check: &Check) -> bool {
    matches!(
        check.kind,
        CheckKind::Script
            | CheckKind::Http
            | CheckKind::Tcp
            | CheckKind::Udp
            | CheckKind::Grpc
            | CheckKind::H2ping
    ) && check.definition.interval_ns > 0
}

/// How long one run of `check` may take: its `Timeout`, else Consul's default for its kind.
pub fn timeout_of(check: &Check) -> Duration {
    match check.definition.timeout_ns {
        0 if check.kind == CheckKind::Script => SCRIPT_TIMEOUT_DEFAULT,
        0 => TIMEOUT_DEFAULT,
        ns => Duration::from_nanos(ns),
    }
}

/// Runs `check` once, within `timeout`.
pub async fn execute(check: &Check, timeout: Duration) -> Outcome {
    let definition = &check.definition;
    match &check.kind {
        CheckKind::Script => script(&definition.args, timeout).await,
        CheckKind::Http => http(check, timeout).await,
        CheckKind::Tcp => tcp(check, timeout).await,
        CheckKind::Udp => udp(&definition.udp, timeout).await,
        CheckKind::Grpc => {
            within(timeout, h2::grpc(check), || {
                format!(
                    "rpc error: code = DeadlineExceeded desc = context deadline exceeded ({})",
                    go_duration(timeout)
                )
            })
            .await
        }
        CheckKind::H2ping => {
            within(timeout, h2::h2ping(check), || {
                format!("HTTP2 ping failed: context deadline exceeded ({})", go_duration(timeout))
            })
            .await
        }
        other => Outcome::new(
            Health::Critical,
            format!("check type {:?} is not run by this agent", other.as_str()),
        ),
    }
}

/// A script check: exit 0 passing, 1 warning, anything else (or failing to start) critical;
/// stdout and stderr together are the output. On timeout the whole process group is killed,
/// so a script's children do not outlive it.
async fn script(args: &[String], timeout: Duration) -> Outcome {
    let Some((program, rest)) = args.split_first() else {
        return Outcome::new(Health::Critical, "script check without arguments");
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Outcome::new(Health::Critical, format!("Failed to start check: {error}")),
    };
    let group = child.id();
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            if let Some(pipe) = stdout.as_mut() {
                let _ = pipe.take(OUTPUT_READ_BYTES_MAX).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(pipe) = stderr.as_mut() {
                let _ = pipe.take(OUTPUT_READ_BYTES_MAX).read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((Ok(status), output)) => {
            let output = String::from_utf8_lossy(&output).into_owned();
            let health = match status.code() {
                Some(0) => Health::Passing,
                Some(1) => Health::Warning,
                _ => Health::Critical,
            };
            Outcome::new(health, output)
        }
        Ok((Err(error), _)) => Outcome::new(Health::Critical, format!("Failed to run check: {error}")),
        Err(_) => {
            let group =
                group.and_then(|pid| i32::try_from(pid).ok()).and_then(rustix::process::Pid::from_raw);
            if let Some(group) = group {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            Outcome::new(Health::Critical, format!("Timed out ({}) running check", go_duration(timeout)))
        }
    }
}

/// The most output read from a script before the rest is ignored (it is capped to 4 KiB
/// afterwards; reading more keeps the pipe from blocking the script, up to a point).
const OUTPUT_READ_BYTES_MAX: u64 = 1 << 20;

/// `run`'s outcome, or critical with `late()`'s words if it takes longer than `timeout`.
async fn within(
    timeout: Duration,
    run: impl std::future::Future<Output = Outcome>,
    late: impl FnOnce() -> String,
) -> Outcome {
    tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| Outcome::new(Health::Critical, late()))
}

/// A connection's byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Why a check could not connect, in the words of Go's dialer (or of its TLS).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The target's name did not resolve.
    #[error("dial tcp {target}: {source}")]
    Lookup { target: String, source: std::io::Error },
    /// The target's name resolved to no address.
    #[error("dial tcp {0}: no addresses")]
    NoAddresses(String),
    /// No resolved address answered; the last one tried, and why.
    #[error("dial tcp {addr}: connect: {}", go_errno(source))]
    Connect { addr: SocketAddr, source: std::io::Error },
    /// The connection was made, its TLS handshake was not.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A connection to `target` (`host:port`): to the first of its resolved addresses that answers,
/// then, with `tls`, a TLS handshake verified as it says, offering its ALPN protocol. Errors
/// read as Go's dialer's.
async fn dial(target: &str, tls: Option<(Verify<'_>, Alpn)>) -> Result<Box<dyn Io>, DialError> {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(target).await {
        Ok(addrs) => addrs.collect(),
        Err(source) => return Err(DialError::Lookup { target: target.to_owned(), source }),
    };
    let mut last = DialError::NoAddresses(target.to_owned());
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                let Some((verify, alpn)) = tls else { return Ok(Box::new(stream)) };
                let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                return Ok(Box::new(tls::connect(stream, host, verify, alpn).await?));
            }
            Err(source) => last = DialError::Connect { addr, source },
        }
    }
    Err(last)
}

/// A socket error as Go's `syscall.Errno` words it (`connection refused`), which is what
/// Consul's check outputs, and the scripts that read them, carry; other errors keep Rust's text
/// without its `(os error N)` suffix.
pub(crate) fn go_errno(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let text = match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset by peer",
        ErrorKind::HostUnreachable => "no route to host",
        ErrorKind::NetworkUnreachable => "network is unreachable",
        ErrorKind::AddrNotAvailable => "cannot assign requested address",
        ErrorKind::TimedOut => "i/o timeout",
        _ => {
            let text = error.to_string();
            return match text.find(" (os error ") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
        }
    };
    text.to_owned()
}

/// A TCP check: a connection to any of the address's resolved IPs succeeds (and with
/// `TCPUseTLS`, a verified TLS handshake over it).
async fn tcp(check: &Check, timeout: Duration) -> Outcome {
    let definition = &check.definition;
    let target = definition.tcp.as_str();
    let verify = Verify { server_name: &definition.tls_server_name, skip: definition.tls_skip_verify };
    let (tls, kind) =
        if definition.tcp_use_tls { (Some((verify, Alpn::None)), "TCP+TLS") } else { (None, "TCP") };
    let attempt = async {
        match dial(target, tls).await {
            Ok(_) => Outcome::new(Health::Passing, format!("{kind} connect {target}: Success")),
            Err(error) => Outcome::new(Health::Critical, error.to_string()),
        }
    };
    within(timeout, attempt, || format!("dial tcp {target}: i/o timeout")).await
}

/// A UDP check: a datagram goes out; an answer, or silence until the timeout, is passing; an
/// error (the port refused it: ICMP unreachable) is critical.
async fn udp(target: &str, timeout: Duration) -> Outcome {
    let addr = match tokio::net::lookup_host(target).await.map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => return Outcome::new(Health::Critical, format!("dial udp {target}: no addresses")),
        Err(error) => return Outcome::new(Health::Critical, format!("dial udp {target}: {error}")),
    };
    let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let exchange = async {
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        socket.send(b"Consul health check").await?;
        let mut buf = [0u8; 512];
        socket.recv(&mut buf).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(_)) | Err(_) => Outcome::new(Health::Passing, format!("UDP message sent to {target}: Success")),
        Ok(Err(error)) => {
            Outcome::new(Health::Critical, format!("read udp {target}: read: {}", go_errno(&error)))
        }
    }
}

/// How many redirects an HTTP check follows (Go's client's limit).
const REDIRECTS_MAX: usize = 10;

/// An HTTP check: 2xx passing, 429 warning, anything else critical, with Consul's output
/// (`HTTP GET <url>: 200 OK Output: <body>`). `https://` URLs are verified against the system's
/// roots unless `TLSSkipVerify`, by `TLSServerName` when set.
async fn http(check: &Check, timeout: Duration) -> Outcome {
    let definition = &check.definition;
    let method = if definition.method.is_empty() { "GET" } else { definition.method.as_str() };
    let mut url = definition.http.clone();
    let exchange = async {
        for _ in 0..=REDIRECTS_MAX {
            let (status, reason, location, body) = http_once(method, &url, check).await?;
            let redirect = matches!(status, 301 | 302 | 303 | 307 | 308) && !definition.disable_redirects;
            match location.filter(|_| redirect) {
                Some(next) => url = join_url(&url, &next),
                None => return Ok((status, reason, body)),
            }
        }
        Err(HttpCheckError::Redirects)
    };
    let original = &definition.http;
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Outcome::new(
            Health::Critical,
            format!("HTTP {method} {original}: request timed out after {}", go_duration(timeout)),
        ),
        Ok(Err(error)) => Outcome::new(Health::Critical, format!("HTTP {method} {original}: {error}")),
        Ok(Ok((status, reason, body))) => {
            let health = match status {
                200..=299 => Health::Passing,
                429 => Health::Warning,
                _ => Health::Critical,
            };
            let body = String::from_utf8_lossy(&body);
            Outcome::new(health, format!("HTTP {method} {original}: {status} {reason} Output: {body}"))
        }
    }
}

/// A relative redirect resolved against the URL it came from.
fn join_url(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let Some(after_scheme) = base.find("://").map(|i| i + 3) else { return location.to_owned() };
    let authority_end = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    if location.starts_with('/') {
        format!("{}{location}", &base[..authority_end])
    } else {
        let dir_end = base.rfind('/').filter(|&i| i >= authority_end).map_or(authority_end, |i| i);
        format!("{}/{location}", &base[..dir_end])
    }
}

/// Why an HTTP check got no answer, in the words of Go's client.
#[derive(Debug, thiserror::Error)]
enum HttpCheckError {
    /// The URL does not parse.
    #[error("invalid URL: {0}")]
    Url(#[source] axum::http::uri::InvalidUri),
    /// Neither `http` nor `https`.
    #[error("unsupported protocol scheme")]
    Scheme,
    /// No host to connect to.
    #[error("missing host in URL")]
    NoHost,
    /// The connection failed.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The request could not be made from the definition (a header Go would refuse too).
    #[error("{0}")]
    Request(#[from] axum::http::Error),
    /// The exchange failed.
    #[error("{0}")]
    Exchange(#[from] hyper::Error),
    /// Redirects did not end.
    #[error("stopped after {REDIRECTS_MAX} redirects")]
    Redirects,
}

/// One request and its answer: (status, reason, Location, body up to the output cap).
async fn http_once(
    method: &str,
    url: &str,
    check: &Check,
) -> Result<(u16, String, Option<String>, Bytes), HttpCheckError> {
    let uri: axum::http::Uri = url.parse().map_err(HttpCheckError::Url)?;
    let (default_port, alpn) = match uri.scheme_str() {
        Some("http") => (80, None),
        Some("https") => (443, Some(Alpn::Http1)),
        _ => return Err(HttpCheckError::Scheme),
    };
    let host =
        uri.host().ok_or(HttpCheckError::NoHost)?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(default_port);
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let definition = &check.definition;
    let verify = Verify { server_name: &definition.tls_server_name, skip: definition.tls_skip_verify };
    let stream = dial(&target, alpn.map(|alpn| (verify, alpn))).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = axum::http::Request::builder().method(method).uri(path);
    let mut has_host = false;
    for (name, values) in &check.definition.header {
        has_host |= name.eq_ignore_ascii_case("host");
        for value in values {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    if !has_host {
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        request = request.header("Host", authority);
    }
    let request = request
        .header("User-Agent", "Consul Health Check")
        .header("Accept", "text/plain, text/*, */*")
        .header("Connection", "close")
        .body(http_body_util::Full::new(Bytes::from(check.definition.body.clone())))?;
    let exchange = async move {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let reason = status.canonical_reason().unwrap_or("").to_owned();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        while body.len() <= muster_core::health::OUTPUT_BYTES_MAX {
            match http_body_util::BodyExt::frame(&mut incoming).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        body.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        body.truncate(muster_core::health::OUTPUT_BYTES_MAX);
        Ok((status.as_u16(), reason, location, Bytes::from(body)))
    };
    // The connection is driven here, beside the exchange, rather than by a task of its own: one
    // task per run instead of two (10,000 checks make a thousand runs a second). Once the
    // exchange is over the connection is dropped, closing it.
    tokio::pin!(exchange, connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            result = &mut exchange => return result,
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

/// A duration as Go prints it for whole seconds and milliseconds (`30s`, `1.5s`, `500ms`).
fn go_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_url_they_came_from() {
        assert_eq!(join_url("http://a:1/x/y?q", "/z"), "http://a:1/z");
        assert_eq!(join_url("http://a:1/x/y", "z"), "http://a:1/x/z");
        assert_eq!(join_url("http://a:1", "z"), "http://a:1/z");
        assert_eq!(join_url("http://a:1/x", "http://b/c"), "http://b/c");
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
