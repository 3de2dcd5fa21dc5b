//! `-syslog` (`enable_syslog`, `syslog_facility`): each log line also goes to the local syslog
//! daemon as one RFC 3164 datagram on its Unix socket, `<PRI>muster[pid]: line`, with the
//! severity of the event's level, as Consul's agent logs to syslog.

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Where syslog daemons listen, in the order tried.
const SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// Why syslog cannot be written to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    /// `syslog_facility` names no facility.
    #[error("Invalid syslog facility {0:?}")]
    Facility(String),
    /// No syslog socket accepts a connection (Consul's words).
    #[error("Syslog setup failed: Unix syslog delivery error")]
    NoDaemon,
}

/// syslog's facility numbers by Consul's names (`syslog_facility`, LOCAL0 by default).
pub fn facility(name: &str) -> Result<u8, SyslogError> {
    let number = match name.to_ascii_uppercase().as_str() {
        "KERN" => 0,
        "USER" => 1,
        "MAIL" => 2,
        "DAEMON" => 3,
        "AUTH" => 4,
        "SYSLOG" => 5,
        "LPR" => 6,
        "NEWS" => 7,
        "UUCP" => 8,
        "CRON" => 9,
        "AUTHPRIV" => 10,
        "FTP" => 11,
        "LOCAL0" => 16,
        "LOCAL1" => 17,
        "LOCAL2" => 18,
        "LOCAL3" => 19,
        "LOCAL4" => 20,
        "LOCAL5" => 21,
        "LOCAL6" => 22,
        "LOCAL7" => 23,
        _ => return Err(SyslogError::Facility(name.to_owned())),
    };
    Ok(number)
}

/// A connection to the syslog daemon, and the facility lines go under.
#[derive(Debug, Clone)]
pub struct Syslog {
    socket: Arc<UnixDatagram>,
    facility: u8,
}

impl Syslog {
    /// Connects to the first syslog socket there is, in Consul's words when there is none.
    pub fn connect(facility: u8) -> Result<Syslog, SyslogError> {
        for path in SOCKETS {
            let Ok(socket) = UnixDatagram::unbound() else { continue };
            if socket.connect(path).is_ok() {
                return Ok(Syslog { socket: Arc::new(socket), facility });
            }
        }
        Err(SyslogError::NoDaemon)
    }
}

/// One line on its way to syslog, sent when dropped.
pub struct Line {
    syslog: Syslog,
    severity: u8,
    text: Vec<u8>,
}

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let priority = u16::from(self.syslog.facility) * 8 + u16::from(self.severity);
        let datagram = format!("<{priority}>muster[{}]: {text}", std::process::id());
        // A daemon that is gone or full loses the line; the agent's other outputs keep it.
        let _ = self.syslog.socket.send(datagram.as_bytes());
    }
}

/// syslog's severity for a level.
fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { syslog: self.clone(), severity: severity(Level::INFO), text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line { syslog: self.clone(), severity: severity(*meta.level()), text: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_go_out_as_rfc3164_datagrams_with_their_severity() {
        let (daemon, agent) = UnixDatagram::pair().unwrap();
        let syslog = Syslog { socket: Arc::new(agent), facility: facility("local0").unwrap() };
        let mut line = syslog.make_writer();
        line.write_all(b"agent: started\n").unwrap();
        drop(line);
        let mut received = [0u8; 256];
        let n = daemon.recv(&mut received).unwrap();
        let text = String::from_utf8_lossy(&received[..n]).into_owned();
        assert_eq!(text, format!("<134>muster[{}]: agent: started", std::process::id()), "16 * 8 + 6");
        assert_eq!(facility("daemon"), Ok(3));
        assert!(facility("nope").is_err());
    }
}
