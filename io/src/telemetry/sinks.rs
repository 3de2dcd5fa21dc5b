//! The statsd, statsite and dogstatsd sinks: go-metrics' line formats over UDP or TCP.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;

use super::metrics::Kind;
use super::registry::{global, Series, Settings};
use super::{SINK_FLUSH_INTERVAL, SINK_PACKET_BYTES_MAX, SINK_RETRY};

/// A sink's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// go-metrics' statsd sink: `name:value|type` lines over UDP.
    Statsd,
    /// go-metrics' statsite sink: the same lines over TCP.
    Statsite,
    /// go-metrics' dogstatsd sink (datadog-go): tags instead of label parts, no host part.
    Dogstatsd,
}

/// One configured sink and its connection.
#[derive(Debug)]
pub(super) struct Output {
    protocol: Protocol,
    address: String,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpStream>,
    /// After a failure, records are dropped until then, and the connection made anew.
    retry_at: Option<tokio::time::Instant>,
}

impl Output {
    pub(super) fn new(protocol: Protocol, address: String) -> Output {
        Output { protocol, address, udp: None, tcp: None, retry_at: None }
    }

    async fn send(&mut self, batch: &VecDeque<(Arc<Series>, f32)>, settings: &Settings) {
        if self.retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
            return;
        }
        self.retry_at = None;
        let mut lines = String::new();
        for (series, value) in batch {
            line(&mut lines, self.protocol, series, *value, settings);
        }
        if let Err(error) = self.write(&lines).await {
            tracing::error!(%error, address = %self.address, "agent.telemetry: sending metrics failed; retrying in 5s");
            self.udp = None;
            self.tcp = None;
            self.retry_at = Some(tokio::time::Instant::now() + SINK_RETRY);
        }
    }

    pub(super) async fn write(&mut self, lines: &str) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        if self.protocol == Protocol::Statsite {
            if self.tcp.is_none() {
                self.tcp = Some(tokio::net::TcpStream::connect(&self.address).await?);
            }
            let stream = self.tcp.as_mut().expect("connected above");
            return stream.write_all(lines.as_bytes()).await;
        }
        if self.udp.is_none() {
            let target = tokio::net::lookup_host(&self.address)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
            let local: std::net::SocketAddr =
                if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let socket = tokio::net::UdpSocket::bind(local).await?;
            socket.connect(target).await?;
            self.udp = Some(socket);
        }
        let socket = self.udp.as_ref().expect("connected above");
        // Whole lines, at most a packet's worth each datagram.
        let mut packet = String::new();
        for line in lines.split_inclusive('\n') {
            if !packet.is_empty() && packet.len() + line.len() > SINK_PACKET_BYTES_MAX {
                socket.send(packet.as_bytes()).await?;
                packet.clear();
            }
            packet.push_str(line);
        }
        if !packet.is_empty() {
            socket.send(packet.as_bytes()).await?;
        }
        Ok(())
    }
}

/// One record as `protocol` writes it, newline included.
pub(super) fn line(out: &mut String, protocol: Protocol, series: &Series, value: f32, settings: &Settings) {
    let sanitize = |text: &str| text.replace([':', ' '], "_");
    let kind = match series.kind {
        Kind::Counter => "c",
        Kind::Gauge => "g",
        Kind::Sample => "ms",
    };
    match protocol {
        Protocol::Statsd | Protocol::Statsite => {
            // Label values become name parts.
            let mut key = settings.full_name(series.kind, &series.name);
            for (_, label_value) in series.labels.iter() {
                key.push('.');
                key.push_str(label_value);
            }
            let _ = writeln!(out, "{}:{value:.6}|{kind}", sanitize(&key));
        }
        Protocol::Dogstatsd => {
            // The host name becomes the agent's host tag: spliced out of the name.
            let key = settings.full_name(Kind::Counter, &series.name);
            let value = match series.kind {
                Kind::Counter => format!("{}", value as i64),
                Kind::Gauge | Kind::Sample => format!("{}", f64::from(value)),
            };
            let tags: Vec<String> = settings
                .dogstatsd_tags
                .iter()
                .cloned()
                .chain(series.labels.iter().map(|(label, value)| match value.is_empty() {
                    true => sanitize(label),
                    false => format!("{}:{}", sanitize(label), sanitize(value)),
                }))
                .collect();
            let _ = write!(out, "{}:{value}|{kind}", sanitize(&key));
            if !tags.is_empty() {
                let _ = write!(out, "|#{}", tags.join(","));
            }
            out.push('\n');
        }
    }
}

/// Flushes the queued records to every sink each 100 ms (go-metrics' `flushInterval`).
pub(super) async fn run_sinks(mut outputs: Vec<Output>) {
    let mut tick = tokio::time::interval(SINK_FLUSH_INTERVAL);
    loop {
        tick.tick().await;
        let batch = global().take_queue();
        if batch.is_empty() {
            continue;
        }
        let settings = global().settings();
        for output in &mut outputs {
            output.send(&batch, &settings).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::config::TelemetryConfig;
    use crate::telemetry::tests::{prometheus_config, T0};

    #[test]
    fn sinks_write_go_metrics_lines() {
        let config = TelemetryConfig { dogstatsd_tags: vec!["env:prod".into()], ..prometheus_config() };
        let settings = Settings::new(&config, "host1".into());
        let counter = Series::new(Kind::Counter, "serf.member.join", &[("network", "lan")], T0);
        let gauge = Series::new(Kind::Gauge, "runtime.alloc_bytes", &[], T0);
        let timer = Series::new(Kind::Sample, "raft.commitTime", &[], T0);
        let mut out = String::new();
        line(&mut out, Protocol::Statsd, &counter, 1.0, &settings);
        line(&mut out, Protocol::Statsd, &gauge, 1024.0, &settings);
        line(&mut out, Protocol::Statsd, &timer, 0.25, &settings);
        assert_eq!(
            out,
            "consul.serf.member.join.lan:1.000000|c\nconsul.host1.runtime.alloc_bytes:1024.000000|g\nconsul.raft.commitTime:0.250000|ms\n"
        );
        out.clear();
        line(&mut out, Protocol::Dogstatsd, &counter, 1.0, &settings);
        line(&mut out, Protocol::Dogstatsd, &gauge, 0.1, &settings);
        assert_eq!(out, "consul.serf.member.join:1|c|#env:prod,network:lan\nconsul.runtime.alloc_bytes:0.10000000149011612|g|#env:prod\n");
    }

    #[tokio::test]
    async fn statsd_datagrams_hold_whole_lines_and_statsite_streams_them() {
        let settings = Settings::new(&TelemetryConfig::default(), String::new());
        let series = Arc::new(Series::new(Kind::Counter, "rpc.query", &[], T0));
        let batch: VecDeque<_> = (0..100).map(|_| (series.clone(), 1.0)).collect();
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut statsd = Output::new(Protocol::Statsd, receiver.local_addr().unwrap().to_string());
        statsd.send(&batch, &settings).await;
        let (mut lines, mut buf) = (0, [0u8; 2048]);
        while lines < 100 {
            let len = receiver.recv(&mut buf).await.unwrap();
            assert!(len <= SINK_PACKET_BYTES_MAX, "{len}");
            let text = std::str::from_utf8(&buf[..len]).unwrap();
            assert!(text.lines().all(|line| line == "consul.rpc.query:1.000000|c"), "{text}");
            lines += text.lines().count();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut statsite = Output::new(Protocol::Statsite, listener.local_addr().unwrap().to_string());
        let (sent, accepted) = tokio::join!(statsite.send(&batch, &settings), listener.accept());
        let ((), (mut stream, _)) = (sent, accepted.unwrap());
        drop(statsite);
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text).await.unwrap();
        assert_eq!(text.lines().count(), 100);
    }
}
