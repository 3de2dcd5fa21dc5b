//! The agent's log as `/v1/agent/monitor` streams it (Consul's `consul monitor`): a tracing
//! layer formats each event the agent logs into one line, in Consul's shape
//! (`2026-11-30T17:14:43.385Z [INFO]  agent: ...`), and publishes it on a broadcast channel
//! every open monitor reads. A monitor that falls behind loses lines (and is told how many)
//! rather than holding the agent's logging up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tokio::sync::broadcast;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::log_format::Record;

/// Lines a monitor may fall behind by before it loses some.
pub const MONITOR_BACKLOG_LINES: usize = 512;

/// One logged line and its level.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its level.
    pub level: Level,
    /// The line, without a newline.
    pub text: String,
    /// The same line as a JSON object (`?logjson`), without a newline.
    pub json: String,
}

static LINES: OnceLock<broadcast::Sender<Line>> = OnceLock::new();

/// How many watchers want each level, most severe first (ERROR, WARN, INFO, DEBUG, TRACE): the
/// layer's filter lets an event through when some watcher wants its level or a more verbose
/// one, so that nobody watching costs nothing and a debug watcher sees debug lines even when
/// the agent logs at info.
static WATCHERS: [AtomicUsize; 5] = [const { AtomicUsize::new(0) }; 5];

fn slot(level: Level) -> usize {
    match level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

fn lines() -> &'static broadcast::Sender<Line> {
    LINES.get_or_init(|| broadcast::channel(MONITOR_BACKLOG_LINES).0)
}

/// Whether some watcher wants events of `level`.
pub fn wanted(level: Level) -> bool {
    WATCHERS[slot(level)..].iter().any(|count| count.load(Ordering::Relaxed) > 0)
}

/// A watcher of every line logged from now on at `level` and more severe ones; it stops
/// counting when dropped.
pub fn subscribe(level: Level) -> Watcher {
    WATCHERS[slot(level)].fetch_add(1, Ordering::Relaxed);
    Watcher { lines: lines().subscribe(), level }
}

/// See [`subscribe`].
#[derive(Debug)]
pub struct Watcher {
    /// The lines, as they are logged (of every watcher's levels: filter by [`Watcher::level`]).
    pub lines: broadcast::Receiver<Line>,
    /// The least severe level wanted.
    pub level: Level,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        WATCHERS[slot(self.level)].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The layer that publishes the agent's log lines.
pub fn layer() -> MonitorLayer {
    MonitorLayer { lines: lines().clone() }
}

/// See [`layer`].
#[derive(Debug)]
pub struct MonitorLayer {
    lines: broadcast::Sender<Line>,
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Nobody is watching: formatting would be wasted.
        if self.lines.receiver_count() == 0 {
            return;
        }
        let record = Record::of(event);
        let now = std::time::SystemTime::now();
        let (text, json) = (record.plain(Some(now)), record.json(now));
        let _ = self.lines.send(Line { level: record.level, text, json });
    }
}

/// A log level name as `?loglevel=` and `-log-level` take it (`err` is Consul's spelling).
pub fn parse_level(text: &str) -> Option<Level> {
    match text.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_become_consul_shaped_lines() {
        assert!(!wanted(Level::TRACE));
        let watcher = subscribe(Level::DEBUG);
        assert!(wanted(Level::DEBUG) && wanted(Level::ERROR) && !wanted(Level::TRACE));
        let mut watching = watcher.lines.resubscribe();
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(peer = "127.0.0.1:8301", "agent: join requested");
            tracing::debug!("agent: quiet");
        });
        let first = watching.try_recv().unwrap();
        assert_eq!(first.level, Level::INFO);
        let (time, rest) = first.text.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.len() == "2026-11-30T17:14:43.385Z".len(), "{time}");
        assert_eq!(rest, "[INFO]  agent: join requested: peer=127.0.0.1:8301");
        assert_eq!(watching.try_recv().unwrap().text.split_once(' ').unwrap().1, "[DEBUG] agent: quiet");
        drop(watcher);
        assert!(!wanted(Level::ERROR), "nobody watches any more");
        assert_eq!(parse_level("ERR"), Some(Level::ERROR));
        assert_eq!(parse_level("loud"), None);
    }
}
