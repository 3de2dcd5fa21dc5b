//! The floor for `benches/checks_load.sh`: the same connections the agent's checks make (one a
//! millisecond, alternately a TCP connect-and-close and an HTTP/1.1 GET with `Connection:
//! close`), made by a bare single-threaded loop with no agent around it. Its CPU is what the
//! kernel and a minimal client spend on those connections alone; the agent's CPU above it is
//! the cost of being an agent.
//!
//!   cargo run --release -p muster-benches --example probe_floor -- TARGET_PORT RUNS_PER_SECOND

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: probe_floor TARGET_PORT RUNS_PER_SECOND";
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect(usage);
    let rate: u64 = args.next().and_then(|p| p.parse().ok()).expect(usage);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        for n in 0u64.. {
            tick.tick().await;
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
                if n % 2 == 0 {
                    let request = format!(
                        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Consul Health Check\r\n\
                         Connection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(request.as_bytes()).await;
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer).await;
                }
            });
        }
    });
}
