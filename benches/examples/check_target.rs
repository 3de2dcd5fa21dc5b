//! A target for `benches/checks_load.sh`: answers every HTTP request on its port with
//! `200 OK`, and accepts (then closes) TCP connections, as cheaply as it can, so that the
//! benchmark measures the agent running checks rather than the thing checked.
//!
//!   cargo run --release -p muster-benches --example check_target -- PORT

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: check_target PORT");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free");
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                // A TCP check closes without sending; an HTTP check sends a request.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                        return;
                    }
                }
            });
        }
    });
}
