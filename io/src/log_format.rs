//! Log lines in Consul's shape (go-hclog's, `../shared/reference/consul-dialect.md` §7), so that
//! operators' greps, log shippers and dashboards keep working:
//!
//! ```text
//! 2026-12-05T07:15:12.123Z [INFO]  agent: Synced service: service=web
//! {"@level":"info","@message":"Synced service","@module":"agent","@timestamp":"2026-12-05T07:15:12.123456Z","service":"web"}
//! ```
//!
//! A message names its logger (`agent`, `agent.server.raft`, `agent.client.serf.lan`...) as its
//! prefix, `"agent.server.raft: entering leader state"`; the prefix becomes the line's module.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The module of a message that names none.
const MODULE_DEFAULT: &str = "agent";

/// One event, taken apart as hclog keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Its level.
    pub level: Level,
    /// The logger's name (`agent.server.raft`).
    pub module: String,
    /// The message, without the module.
    pub message: String,
    /// The other fields, in the order they were given.
    pub fields: Vec<(&'static str, Value)>,
}

impl Record {
    /// Takes `event` apart.
    pub fn of(event: &Event<'_>) -> Record {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let (module, message) = split_module(&visitor.message);
        Record {
            level: *event.metadata().level(),
            module: module.to_owned(),
            message: message.to_owned(),
            fields: visitor.fields,
        }
    }

    /// hclog's plain line, without a newline: time (milliseconds, UTC), the bracketed level
    /// padded to seven characters, the module, the message and, only when there are fields,
    /// `: key=value ...`.
    pub fn plain(&self, time: Option<SystemTime>) -> String {
        let mut line = String::new();
        if let Some(time) = time {
            let _ = write!(line, "{} ", humantime::format_rfc3339_millis(time));
        }
        let _ = write!(line, "{} {}: {}", bracketed(self.level), self.module, self.message);
        let mut trailing = String::new();
        for (index, (key, value)) in self.fields.iter().enumerate() {
            line.push_str(if index == 0 { ": " } else { " " });
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if text.contains('\n') {
                // hclog writes a multi-line value after the line, each line behind `  | `.
                let _ = write!(line, "{key}=");
                let _ = write!(trailing, "\n  | {}", text.trim_end_matches('\n').replace('\n', "\n  | "));
            } else {
                let _ = write!(line, "{key}={}", quoted(&text));
            }
        }
        line.push_str(&trailing);
        line
    }

    /// hclog's JSON line: `@level`, `@message`, `@module`, `@timestamp` (microseconds) and every
    /// field as a key of its own, keys sorted as Go's encoding/json writes a map.
    pub fn json(&self, time: SystemTime) -> String {
        let mut object: BTreeMap<&str, Value> = BTreeMap::new();
        for (key, value) in &self.fields {
            object.insert(key, value.clone());
        }
        object.insert("@level", Value::from(self.level.as_str().to_ascii_lowercase()));
        object.insert("@message", Value::from(self.message.as_str()));
        object.insert("@module", Value::from(self.module.as_str()));
        object.insert("@timestamp", Value::from(humantime::format_rfc3339_micros(time).to_string()));
        serde_json::to_string(&object).expect("strings and numbers serialize")
    }
}

/// `"agent.server.raft: entering leader state"` → (`agent.server.raft`, `entering leader
/// state`); a message without a logger's name is the agent's.
fn split_module(text: &str) -> (&str, &str) {
    let named = text.split_once(": ").filter(|(prefix, _)| {
        prefix.starts_with(MODULE_DEFAULT)
            && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    });
    named.unwrap_or((MODULE_DEFAULT, text))
}

/// hclog's bracketed level names, padded to one width.
pub fn bracketed(level: Level) -> &'static str {
    match level {
        Level::TRACE => "[TRACE]",
        Level::DEBUG => "[DEBUG]",
        Level::INFO => "[INFO] ",
        Level::WARN => "[WARN] ",
        Level::ERROR => "[ERROR]",
    }
}

/// A value as hclog writes it: bare when every character is between `-` and `~` (so addresses,
/// paths and durations stay bare), else quoted Go-style; empty as `""`.
fn quoted(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| ('-'..='~').contains(&c)) {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

/// An event's message and its other fields, typed as they were given.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name(), Value::from(value)));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.push((field.name(), Value::from(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.push((field.name(), Value::from(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.push((field.name(), Value::from(value)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push((field.name(), Value::from(format!("{value:?}"))));
        }
    }
}

/// The agent's stdout and log file lines, plain or (`-log-json`) JSON.
#[derive(Debug, Clone, Copy)]
pub struct ConsulFormat {
    /// JSON lines.
    pub json: bool,
    /// Whether lines carry the time (a syslog daemon stamps its own).
    pub time: bool,
}

impl<S, N> FormatEvent<S, N> for ConsulFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let record = Record::of(event);
        let now = SystemTime::now();
        let line = match (self.json, self.time) {
            (true, _) => record.json(now),
            (false, true) => record.plain(Some(now)),
            (false, false) => record.plain(None),
        };
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str, fields: Vec<(&'static str, Value)>) -> Record {
        let (module, message) = split_module(message);
        Record { level: Level::INFO, module: module.into(), message: message.into(), fields }
    }

    #[test]
    fn plain_lines_are_hclogs() {
        let at = humantime::parse_rfc3339("2026-12-05T07:15:12.123456Z").unwrap();
        let synced = record("agent: Synced service", vec![("service", Value::from("web"))]);
        assert_eq!(
            synced.plain(Some(at)),
            "2026-12-05T07:15:12.123Z [INFO]  agent: Synced service: service=web"
        );
        let raft = Record {
            level: Level::WARN,
            ..record("agent.server.raft: no known peers, aborting election", vec![])
        };
        assert_eq!(raft.plain(None), "[WARN]  agent.server.raft: no known peers, aborting election");
        // Quoted only when a character falls outside '-'..'~'; empty values too.
        let quoting = record(
            "agent: Join cluster failed, will retry",
            vec![
                ("cluster", Value::from("LAN")),
                ("retry_interval", Value::from("30s")),
                ("error", Value::from("dial tcp 10.0.0.1:8301: connection refused")),
                ("empty", Value::from("")),
                ("n", Value::from(2)),
            ],
        );
        assert_eq!(
            quoting.plain(None),
            "[INFO]  agent: Join cluster failed, will retry: cluster=LAN retry_interval=30s \
             error=\"dial tcp 10.0.0.1:8301: connection refused\" empty=\"\" n=2"
        );
        let unnamed = record("Error: something", vec![("output", Value::from("a\nb\n"))]);
        assert_eq!(unnamed.plain(None), "[INFO]  agent: Error: something: output=\n  | a\n  | b");
    }

    #[test]
    fn json_lines_carry_hclogs_keys() {
        let at = humantime::parse_rfc3339("2026-12-05T07:15:12.123456Z").unwrap();
        let line =
            record("agent.server: New leader elected", vec![("payload", Value::from("node1"))]).json(at);
        assert_eq!(
            line,
            r#"{"@level":"info","@message":"New leader elected","@module":"agent.server","@timestamp":"2026-12-05T07:15:12.123456Z","payload":"node1"}"#
        );
    }
}
