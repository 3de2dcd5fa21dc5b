//! A large catalog on one server, after Consul's Global Scale Benchmark (issue 23): `--nodes`
//! nodes with 10 service instances each, registered through `/v1/catalog/register` over 64
//! keep-alive connections, spread over 1,000 service names; then what that state costs.
//!
//! `catalog_scale --addr 127.0.0.1:8500 --dns 127.0.0.1:8600 --pid <server pid> --nodes 10000`
//!
//! Prints one line of `key=value` figures for `benches/catalog_scale.sh`: registrations per
//! second, resident memory, snapshot size and save and restore times, and the latency of
//! `/v1/health/service/<name>?passing` and of a DNS SRV query for one service.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Service instances per node, as in the benchmark's 172,000 instances on 10,000 nodes.
const SERVICES_PER_NODE: usize = 10;
/// Distinct service names the instances spread over.
const SERVICE_NAMES: usize = 1000;
/// Connections registering at once.
const CONNECTIONS: usize = 64;
/// Queries timed per latency figure.
const SAMPLES: usize = 200;

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect to the agent");
        stream.set_nodelay(true).unwrap();
        Connection { stream, pending: Vec::new() }
    }

    /// Sends a request and reads its answer: status and body.
    async fn call(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n", body.len());
        self.stream.write_all(head.as_bytes()).await.expect("send");
        self.stream.write_all(body).await.expect("send");
        let end = loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).to_ascii_lowercase();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        self.pending.drain(..end);
        let body = if let Some(length) = head.split("\r\ncontent-length: ").nth(1) {
            let length: usize = length.split("\r\n").next().unwrap().trim().parse().unwrap();
            while self.pending.len() < length {
                self.fill().await;
            }
            self.pending.drain(..length).collect()
        } else {
            self.chunked().await
        };
        (status, body)
    }

    async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = self.pending.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                self.fill().await;
            };
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&self.pending[..line_end]).trim(), 16).unwrap();
            self.pending.drain(..line_end + 2);
            while self.pending.len() < size + 2 {
                self.fill().await;
            }
            body.extend(self.pending.drain(..size));
            self.pending.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    async fn fill(&mut self) {
        let mut piece = [0u8; 64 * 1024];
        let n = self.stream.read(&mut piece).await.expect("read");
        assert!(n > 0, "the agent closed the connection");
        self.pending.extend_from_slice(&piece[..n]);
    }
}

fn registration(node: usize, instance: usize) -> Vec<u8> {
    let name = (node * SERVICES_PER_NODE + instance) % SERVICE_NAMES;
    let third = (node >> 8) & 0xff;
    let fourth = node & 0xff;
    format!(
        r#"{{"Node":"node-{node}","Address":"10.{third}.{fourth}.1","Service":{{"ID":"svc-{name}-{instance}","Service":"svc-{name}","Tags":["v1"],"Port":{port}}}}}"#,
        port = 20000 + instance
    )
    .into_bytes()
}

/// Registers every instance; the rate per second.
async fn register(addr: SocketAddr, nodes: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let total = nodes * SERVICES_PER_NODE;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let next = next.clone();
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::open(addr).await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let body = registration(i / SERVICES_PER_NODE, i % SERVICES_PER_NODE);
                let (status, answer) = connection.call("PUT", "/v1/catalog/register", &body).await;
                assert_eq!(status, 200, "registration {i}: {}", String::from_utf8_lossy(&answer));
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.5).as_secs_f64() * 1e3, at(0.99).as_secs_f64() * 1e3)
}

async fn http_latency(addr: SocketAddr, path: &str) -> (f64, f64) {
    let mut connection = Connection::open(addr).await;
    let mut samples = Vec::new();
    for _ in 0..SAMPLES {
        let started = Instant::now();
        let (status, _) = connection.call("GET", path, b"").await;
        assert_eq!(status, 200, "{path}");
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

async fn dns_latency(dns: SocketAddr, name: &str) -> (f64, f64) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = Message::new(1, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::SRV));
    let wire = query.to_vec().unwrap();
    let mut samples = Vec::new();
    let mut answer = vec![0u8; 65535];
    for _ in 0..SAMPLES {
        let started = Instant::now();
        socket.send_to(&wire, dns).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut answer))
            .await
            .expect("a DNS answer")
            .unwrap();
        samples.push(started.elapsed());
        let reply = Message::from_vec(&answer[..n]).expect("a DNS message");
        assert!(!reply.answers.is_empty() || reply.metadata.truncation, "{name}: no answer");
    }
    percentiles(samples)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut dns, mut pid, mut nodes) = (None, None, 0u32, 1000usize);
    while let Some(flag) = args.next() {
        let value = args.next().expect("a value");
        match flag.as_str() {
            "--addr" => addr = Some(value.parse().expect("--addr")),
            "--dns" => dns = Some(value.parse().expect("--dns")),
            "--pid" => pid = value.parse().expect("--pid"),
            "--nodes" => nodes = value.parse().expect("--nodes"),
            other => panic!("unknown flag {other}"),
        }
    }
    let (addr, dns): (SocketAddr, SocketAddr) = (addr.expect("--addr"), dns.expect("--dns"));
    let idle = rss_kib(pid);
    let rate = register(addr, nodes).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib(pid);

    let mut connection = Connection::open(addr).await;
    let started = Instant::now();
    let (status, archive) = connection.call("GET", "/v1/snapshot", b"").await;
    assert_eq!(status, 200, "snapshot save");
    let save = started.elapsed();
    let started = Instant::now();
    let (status, answer) = connection.call("PUT", "/v1/snapshot", &archive).await;
    assert_eq!(status, 200, "snapshot restore: {}", String::from_utf8_lossy(&answer));
    let restore = started.elapsed();

    let (health_p50, health_p99) = http_latency(addr, "/v1/health/service/svc-7?passing").await;
    let (dns_p50, dns_p99) = dns_latency(dns, "svc-7.service.consul.").await;
    println!(
        "nodes={nodes} instances={} register_per_s={rate:.0} rss_idle_mb={:.1} rss_mb={:.1} snapshot_mb={:.2} \
         save_s={:.2} restore_s={:.2} health_p50_ms={health_p50:.2} health_p99_ms={health_p99:.2} \
         dns_p50_ms={dns_p50:.2} dns_p99_ms={dns_p99:.2}",
        nodes * SERVICES_PER_NODE,
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0,
        archive.len() as f64 / 1e6,
        save.as_secs_f64(),
        restore.as_secs_f64(),
    );
}
