//! The `muster` binary.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use muster::drive::{self, CommandRequest, Sockets};
use muster::storage::{FileStorage, MemoryStorage};
use muster::version;
use muster_core::{swim, Command, Config, Event, Instant, Node, StableState};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

mod cli;

fn main() -> ExitCode {
    let args = cli::normalize(std::env::args_os());
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Consul exits 1 on a usage error; help itself is a success.
            return if error.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        cli::Subcommands::Version => {
            print!("{}", version::version_text());
            ExitCode::SUCCESS
        }
        cli::Subcommands::Keygen => match keygen() {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("Error reading random data: {error}");
                ExitCode::from(1)
            }
        },
        cli::Subcommands::Agent(args) => match agent(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("==> {message}");
                ExitCode::from(1)
            }
        },
    }
}

fn agent(args: cli::AgentArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();

    let bind = match (args.bind, args.dev) {
        (Some(ip), _) => ip,
        (None, true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (None, false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let advertise_ip = args.advertise.unwrap_or(bind);
    if advertise_ip.is_unspecified() {
        return Err("-advertise is required when -bind is 0.0.0.0 (no private address detection yet)".into());
    }
    let bind = SocketAddr::new(bind, args.serf_lan_port);
    let advertise = SocketAddr::new(advertise_ip, args.serf_lan_port);
    let joins =
        args.join.iter().map(|text| parse_join(text, args.serf_lan_port)).collect::<Result<Vec<_>, _>>()?;
    let node_name = args.node.clone().unwrap_or_else(|| hostname().unwrap_or_else(|| "muster".into()));
    let encrypt_key = args.encrypt.as_deref().map(decode_key).transpose()?;
    if !args.dev && args.data_dir.is_none() {
        return Err("data_dir cannot be empty".to_owned());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("Error starting runtime: {e}"))?;
    runtime.block_on(async move {
        let udp = UdpSocket::bind(bind).await.map_err(|e| format!("Error binding UDP {bind}: {e}"))?;
        let tcp = TcpListener::bind(bind).await.map_err(|e| format!("Error binding TCP {bind}: {e}"))?;
        let origin = tokio::time::Instant::now();
        let seed = seed_from_os();
        let (tx, rx) = mpsc::channel::<CommandRequest>(16);

        println!("==> Starting muster agent...");
        println!("           Version: '{}'", version::MUSTER_VERSION);
        println!("         Node name: '{node_name}'");
        println!("         Bind addr: {bind}");
        println!("    Advertise addr: {advertise}");
        println!("          Dev mode: {}", args.dev);
        println!("        Encrypt: Gossip: {}", encrypt_key.is_some());
        println!();
        println!("==> muster agent running!");

        // SIGINT or SIGTERM: leave gracefully (Consul's default for agents), then stop once the
        // leave has gone out or after a grace period.
        let (left_tx, mut left_rx) = mpsc::channel::<()>(1);
        let on_event = move |event: Event| match event {
            Event::Member(member) => tracing::info!(
                "serf: EventMember{:?}: {} {}",
                member.kind,
                member.node.name,
                member.node.addr.ip()
            ),
            Event::User(user) => {
                tracing::info!(
                    "serf: EventUser: {} (ltime {}, {} bytes)",
                    user.name,
                    user.ltime,
                    user.payload.len()
                )
            }
            Event::Keyring(result) => tracing::info!(
                "agent: keyring {:?}: {} of {} members answered, {} errors",
                result.op,
                result.responses,
                result.members,
                result.errors.len()
            ),
            Event::Left => {
                tracing::info!("agent: graceful leave complete");
                let _ = left_tx.try_send(());
            }
        };
        let joiner = tokio::spawn(join_all(tx.clone(), joins));
        let shutdown = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("agent: caught signal, gracefully leaving");
            let (reply, _) = oneshot::channel();
            if tx.send((Command::Leave, reply)).await.is_ok() {
                let _ = tokio::time::timeout(LEAVE_GRACE, left_rx.recv()).await;
            }
            drop(tx);
        });
        let result = if args.dev {
            let node = new_node(&node_name, advertise, true, seed, encrypt_key.clone(), None)?;
            drive::run(node, origin, Sockets { udp, tcp }, MemoryStorage::default(), rx, on_event, |_| {})
                .await
        } else {
            let dir = args.data_dir.clone().expect("checked before start-up");
            let storage = FileStorage::open(&dir)
                .map_err(|e| format!("Error opening data dir {}: {e}", dir.display()))?;
            let restored = storage.load().map_err(|e| format!("Error reading data dir: {e}"))?;
            let node = new_node(&node_name, advertise, false, seed, encrypt_key.clone(), restored)?;
            drive::run(node, origin, Sockets { udp, tcp }, storage, rx, on_event, |_| {}).await
        };
        joiner.abort();
        shutdown.abort();
        result.map_err(|e| format!("agent stopped: {e}"))
    })
}

fn new_node(
    name: &str,
    advertise: SocketAddr,
    dev: bool,
    seed: u64,
    encrypt_key: Option<bytes::Bytes>,
    restored: Option<StableState>,
) -> Result<Node, String> {
    let mut config = Config::new(name, advertise, seed);
    if dev {
        config.swim = swim::Config::dev();
    }
    config.encrypt_keys = encrypt_key.into_iter().collect();
    Node::new(config, restored, Instant::ZERO).map_err(|e| format!("Error: {e}"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// How long a leaving agent waits for its leave to go out (Consul: a 5 s broadcast timeout).
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(6);

async fn join_all(commands: mpsc::Sender<CommandRequest>, peers: Vec<SocketAddr>) {
    for peer in peers {
        let (reply_tx, reply_rx) = oneshot::channel();
        if commands.send((Command::Join { peer }, reply_tx)).await.is_err() {
            return;
        }
        match reply_rx.await {
            Ok(Ok(())) => tracing::info!(%peer, "agent: join requested"),
            Ok(Err(error)) => tracing::warn!(%peer, %error, "agent: join refused"),
            Err(_) => return,
        }
    }
}

/// Decodes `-encrypt`: base64 of 16, 24 or 32 bytes, as Consul's `encrypt`.
fn decode_key(text: &str) -> Result<bytes::Bytes, String> {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("Error decoding the encryption key: {e}"))?;
    if ![16, 24, 32].contains(&key.len()) {
        return Err(format!("Error: the encryption key must be 16, 24 or 32 bytes, not {}", key.len()));
    }
    Ok(bytes::Bytes::from(key))
}

/// `muster keygen`: 32 random bytes from the operating system, base64 encoded.
fn keygen() -> std::io::Result<String> {
    use base64::Engine;
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

fn parse_join(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, default_port)))
        .map_err(|_| format!("Error parsing -join address {text:?}: expected IP or IP:port"))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The agent's randomness is seeded from the OS once, here at the edge; the core only ever sees
/// the seed. Logged so a surprising run can be reasoned about.
fn seed_from_os() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let seed = RandomState::new().hash_one(std::process::id());
    tracing::debug!(seed, "agent: rng seed");
    seed
}
