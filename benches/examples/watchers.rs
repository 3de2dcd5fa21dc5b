//! Many blocking queries held against one agent, as a fleet of consul-template instances and
//! sidecars holds them, and what they cost the agent (issue 23).
//!
//! `watchers --addr 127.0.0.1:8500 --pid <agent pid> --watchers 10000 --clients 100`
//!
//! The watchers are spread over `--clients` source addresses (127.0.0.2 onwards), so Consul's
//! 200 connections per client apply as they would to a fleet. A third of them watch one KV key
//! (`/v1/kv/w/k<i>?index=`), a third one service's health (`/v1/health/service/s<i>?index=`),
//! a third the service list (`/v1/catalog/services?index=`); 100 keys and 100 services. It then
//! reports, from the agent's `/proc` entries:
//! - resident memory idle, with every watcher waiting (and per watcher), and after they close;
//! - the agent's CPU while they wait;
//! - a narrow wake: a write to one key must answer exactly that key's watchers, and how long
//!   they took (from the write's send to each answer's first byte);
//! - a broad wake: a new service instance answers its health watchers and every service-list
//!   watcher.
//!
//! It prints one table row per figure, `figure | value | goal`, for `benches/watchers.sh`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Distinct keys and services the watchers spread over.
const TARGETS: usize = 100;
/// How long a watcher asks to wait: longer than the whole run.
const WAIT: &str = "300s";
/// How long the agent gets to settle before a memory reading.
const SETTLE: Duration = Duration::from_secs(3);
/// How long a wake's answers may take before the rest count as missing.
const WAKE_WINDOW: Duration = Duration::from_secs(2);
/// The window over which idle CPU is measured.
const CPU_WINDOW: Duration = Duration::from_secs(10);

struct Options {
    addr: SocketAddr,
    pid: u32,
    watchers: usize,
    clients: usize,
}

fn options() -> Options {
    let mut options =
        Options { addr: "127.0.0.1:8500".parse().unwrap(), pid: 0, watchers: 10_000, clients: 100 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} wants a value"));
        match flag.as_str() {
            "--addr" => options.addr = value.parse().expect("--addr: host:port"),
            "--pid" => options.pid = value.parse().expect("--pid: a number"),
            "--watchers" => options.watchers = value.parse().expect("--watchers: a number"),
            "--clients" => options.clients = value.parse().expect("--clients: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(options.pid != 0, "--pid: the agent's process id is required");
    assert!((1..=250).contains(&options.clients), "--clients: 1 to 250 source addresses");
    options
}

/// What one watcher watches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Watch {
    Key(usize),
    Health(usize),
    Services,
}

impl Watch {
    fn of(i: usize) -> Watch {
        match i % 3 {
            0 => Watch::Key(i / 3 % TARGETS),
            1 => Watch::Health(i / 3 % TARGETS),
            _ => Watch::Services,
        }
    }

    fn path(self) -> String {
        match self {
            Watch::Key(k) => format!("/v1/kv/w/k{k}"),
            Watch::Health(s) => format!("/v1/health/service/s{s}"),
            Watch::Services => "/v1/catalog/services".to_owned(),
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status, the `X-Consul-Index`, the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, u64, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the agent");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read an answer");
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let index = answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-consul-index").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, index, body)
}

async fn must(addr: SocketAddr, method: &str, path: &str, body: &str) -> u64 {
    let (status, index, answer) = request(addr, method, path, body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    index
}

/// The keys and services the watchers watch, and the index each watch starts from.
async fn seed(addr: SocketAddr) -> Vec<u64> {
    for k in 0..TARGETS {
        must(addr, "PUT", &format!("/v1/kv/w/k{k}"), "v0").await;
    }
    for s in 0..TARGETS {
        let body = format!(
            r#"{{"Node":"watch-bench","Address":"127.0.0.1","Service":{{"ID":"s{s}","Service":"s{s}","Port":{s}}}}}"#
        );
        must(addr, "PUT", "/v1/catalog/register", &body).await;
    }
    let mut indexes = Vec::new();
    for i in 0..(3 * TARGETS) {
        indexes.push(must(addr, "GET", &Watch::of(i).path(), "").await);
    }
    indexes
}

/// The moment a watcher's answer began to arrive.
struct Woken {
    watch: Watch,
    at: Instant,
}

/// Opens one watcher from `source` and reports when its answer begins; holds the connection
/// until `close` fires.
async fn watcher(
    addr: SocketAddr,
    source: IpAddr,
    watch: Watch,
    index: u64,
    waiting: Arc<AtomicUsize>,
    woken: mpsc::UnboundedSender<Woken>,
    mut close: tokio::sync::watch::Receiver<bool>,
) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind a source address");
    let mut stream = socket.connect(addr).await.expect("connect to the agent");
    let head = format!("GET {}?index={index}&wait={WAIT} HTTP/1.1\r\nHost: {addr}\r\n\r\n", watch.path());
    stream.write_all(head.as_bytes()).await.expect("send");
    waiting.fetch_add(1, Ordering::Relaxed);
    let mut byte = [0u8; 1];
    tokio::select! {
        read = stream.read(&mut byte) => {
            if matches!(read, Ok(n) if n > 0) {
                let _ = woken.send(Woken { watch, at: Instant::now() });
            }
            let _ = close.changed().await;
        }
        _ = close.changed() => {}
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the agent's /proc entry");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Context switches the agent's threads made to sleep so far: each is a wake-up.
fn wakeups(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the agent's /proc entry");
    let switches = |task: std::fs::DirEntry| -> Option<u64> {
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?.trim().parse().ok()
    };
    tasks.filter_map(Result::ok).filter_map(switches).sum()
}

/// The agent's CPU (percent of a core) and wake-ups per second over `window`.
async fn cpu_over(pid: u32, window: Duration) -> (f64, f64) {
    let (ticks, woke) = (cpu_ticks(pid), wakeups(pid));
    tokio::time::sleep(window).await;
    let hz = 100.0; // Linux's USER_HZ
    let busy = (cpu_ticks(pid) - ticks) as f64 / hz / window.as_secs_f64() * 100.0;
    (busy, (wakeups(pid) - woke) as f64 / window.as_secs_f64())
}

/// The agent's user and system CPU time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the agent's /proc entry");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat's command") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Answers that arrive within `WAKE_WINDOW` of `sent`: their watches and latencies.
async fn collect(woken: &mut mpsc::UnboundedReceiver<Woken>, sent: Instant) -> Vec<(Watch, Duration)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::from_std(sent + WAKE_WINDOW);
    while let Ok(Some(w)) = tokio::time::timeout_at(deadline, woken.recv()).await {
        seen.push((w.watch, w.at.duration_since(sent)));
    }
    seen
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(figure: &str, value: String, goal: &str) {
    println!("| {figure} | {value} | {goal} |");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Reports a wake: every expected watcher answered, none other did; latency percentiles.
fn report_wake(
    name: &str,
    seen: &[(Watch, Duration)],
    expected: impl Fn(Watch) -> bool,
    want: usize,
) -> bool {
    let wrong = seen.iter().filter(|(w, _)| !expected(*w)).count();
    let mut latencies: Vec<Duration> = seen.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    row(
        &format!("{name}: watchers answered (expected {want}, others)"),
        format!("{} ({wrong})", seen.len()),
        "all, 0 others",
    );
    row(
        &format!("{name}: wake latency p50 / p99 / max"),
        format!(
            "{} / {} / {}",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 99.0)),
            ms(percentile(&latencies, 100.0))
        ),
        "p99 <= 5 ms",
    );
    wrong == 0 && seen.len() == want
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let Options { addr, pid, watchers, clients } = options();
    let indexes = seed(addr).await;
    tokio::time::sleep(SETTLE).await;
    let idle = rss_kib(pid);
    let (idle_cpu, idle_wakeups) = cpu_over(pid, CPU_WINDOW).await;

    let waiting = Arc::new(AtomicUsize::new(0));
    let (woken_tx, mut woken) = mpsc::unbounded_channel();
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let opened = Instant::now();
    for i in 0..watchers {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % clients) as u8));
        let watch = Watch::of(i);
        let index = indexes[i % (3 * TARGETS)];
        tokio::spawn(watcher(
            addr,
            source,
            watch,
            index,
            waiting.clone(),
            woken_tx.clone(),
            close_rx.clone(),
        ));
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    while waiting.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = opened.elapsed();
    tokio::time::sleep(SETTLE).await;
    let early = collect(&mut woken, Instant::now() - WAKE_WINDOW).await.len();
    let holding = rss_kib(pid);
    let (waiting_cpu, waiting_wakeups) = cpu_over(pid, CPU_WINDOW).await;
    let per_watcher = (holding.saturating_sub(idle) * 1024) / watchers as u64;

    println!("| figure | value | goal |");
    println!("|---|---|---|");
    row("watchers (client addresses)", format!("{watchers} ({clients})"), "10,000");
    row("time to open them all", format!("{:.2} s", open_time.as_secs_f64()), "");
    row("answered before any write (must be 0)", format!("{early}"), "0");
    row("RSS idle", format!("{:.1} MB", idle as f64 / 1024.0), "<= 12 MB (-dev)");
    row("RSS with every watcher waiting", format!("{:.1} MB", holding as f64 / 1024.0), "");
    row("growth per waiting watcher", format!("{:.1} KB", per_watcher as f64 / 1000.0), "<= 4 KB");
    row("agent CPU idle", format!("{idle_cpu:.2} % of a core, {idle_wakeups:.0} wake-ups/s"), "~0");
    row(
        "agent CPU while they wait",
        format!("{waiting_cpu:.2} % of a core, {waiting_wakeups:.0} wake-ups/s"),
        "~0",
    );

    // Narrow: ten keys written one after another, each answering only its own watchers.
    let mut narrow = Vec::new();
    let mut narrow_ok = true;
    let per_key = (0..watchers).filter(|&i| Watch::of(i) == Watch::Key(0)).count();
    for k in 0..10 {
        let sent = Instant::now();
        must(addr, "PUT", &format!("/v1/kv/w/k{k}"), "v1").await;
        let seen = collect(&mut woken, sent).await;
        narrow_ok &= seen.iter().all(|(w, _)| *w == Watch::Key(k))
            && seen.len() == (0..watchers).filter(|&i| Watch::of(i) == Watch::Key(k)).count();
        narrow.extend(seen);
    }
    narrow_ok &=
        report_wake("one key written (x10)", &narrow, |w| matches!(w, Watch::Key(k) if k < 10), per_key * 10);

    // Broad: a new instance of s50 changes s50's health and the service list.
    let want = (0..watchers).filter(|&i| matches!(Watch::of(i), Watch::Health(50) | Watch::Services)).count();
    let sent = Instant::now();
    let body =
        r#"{"Node":"watch-bench-2","Address":"127.0.0.3","Service":{"ID":"s50","Service":"s50","Port":50}}"#;
    must(addr, "PUT", "/v1/catalog/register", body).await;
    let broad = collect(&mut woken, sent).await;
    let broad_ok = report_wake(
        "one service instance added",
        &broad,
        |w| matches!(w, Watch::Health(50) | Watch::Services),
        want,
    );

    let _ = close_tx.send(true);
    drop(close_tx);
    tokio::time::sleep(SETTLE).await;
    let after = rss_kib(pid);
    row("RSS after every watcher closed", format!("{:.1} MB", after as f64 / 1024.0), "near idle");
    if early == 0 && narrow_ok && broad_ok {
        std::process::ExitCode::SUCCESS
    } else {
        println!("FAILED: a watcher answered when it should not have, or did not when it should");
        std::process::ExitCode::FAILURE
    }
}
