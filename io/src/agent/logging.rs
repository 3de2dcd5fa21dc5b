//! What the agent logs and where: the tracing subscriber, its file and rotation, and the
//! gossip events in Consul's words.

use muster_core::gossip::Event;
use tokio::sync::mpsc;

use super::error::{AgentError, FileAction};
use crate::cli;

/// The tracing subscriber: `-log-level` (or `MUSTER_LOG`, a full tracing filter, which wins),
/// text or `-log-json` lines, on stdout and, with `-log-file`, appended to a file too.
pub(crate) fn init_logging(args: &cli::AgentArgs) -> Result<(), AgentError> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = match args.log_level.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => "info",
        Some(level @ ("trace" | "debug" | "info" | "warn" | "error")) => match level {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" => "warn",
            _ => "error",
        },
        Some("err") => "error",
        Some(_) => {
            return Err(AgentError::Setting(format!(
                "Invalid log level: {:?}. Valid log levels are: [TRACE DEBUG INFO WARN ERR]",
                args.log_level.as_deref().unwrap_or_default()
            )))
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let file = match &args.log_file {
        None => None,
        Some(path) => {
            let path = if path.as_os_str().to_string_lossy().ends_with('/') {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                path.join(format!("muster-{secs}.log"))
            } else {
                path.clone()
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(AgentError::file(FileAction::Creating, dir))?;
            }
            let rotation = log_rotation(args)?;
            let file = muster::logfile::RotatingFile::open(&path, rotation)
                .map_err(AgentError::file(FileAction::Opening, &path))?;
            Some(std::sync::Mutex::new(file))
        }
    };
    // The agent's own log at its level; `/v1/agent/monitor`'s watchers, at the levels they ask
    // (more verbose than the agent's too, as Consul's monitor), through a layer of their own.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;
    let format = muster::log_format::ConsulFormat { json: args.log_json == Some(true), time: true };
    let fmt: Boxed = match file {
        None => tracing_subscriber::fmt::layer().event_format(format).with_filter(filter).boxed(),
        Some(file) => tracing_subscriber::fmt::layer()
            .event_format(format)
            .with_writer(std::io::stdout.and(file))
            .with_filter(filter)
            .boxed(),
    };
    // -syslog: the same lines, at the agent's level, to the local syslog daemon.
    let syslog: Option<Boxed> = match args.syslog == Some(true) {
        false => None,
        true => {
            let syslog = muster::syslog::Syslog::connect(muster::syslog::facility(&args.syslog_facility)?)?;
            let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
            Some(
                tracing_subscriber::fmt::layer()
                    .event_format(muster::log_format::ConsulFormat { json: false, time: false })
                    .with_writer(syslog)
                    .with_filter(filter)
                    .boxed(),
            )
        }
    };
    let monitor = muster::monitor::layer()
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| muster::monitor::wanted(*meta.level())))
        .boxed();
    tracing_subscriber::registry()
        .with(std::iter::once(fmt).chain(syslog).chain([monitor]).collect::<Vec<_>>())
        .init();
    Ok(())
}

/// `-log-rotate-bytes`, `-log-rotate-duration` and `-log-rotate-max-files`.
pub(crate) fn log_rotation(args: &cli::AgentArgs) -> Result<muster::logfile::Rotation, AgentError> {
    let mut rotation = muster::logfile::Rotation::default();
    if let Some(bytes) = args.log_rotate_bytes {
        rotation.max_bytes = bytes;
    }
    if let Some(text) = &args.log_rotate_duration {
        rotation.max_age =
            muster_core::duration::parse(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("Invalid -log-rotate-duration {text:?}: want a positive duration such as 24h")
            })?;
    }
    if let Some(files) = args.log_rotate_max_files {
        if files < -1 {
            return Err(AgentError::Setting(format!(
                "Invalid -log-rotate-max-files {files}: want -1 (keep none), 0 (keep all) or more"
            )));
        }
        rotation.max_files = files;
    }
    Ok(rotation)
}

/// Logs a pool's events as serf and memberlist word them, under Consul's logger name for the pool
/// (`agent.server.serf.lan`, `agent.client.serf.lan`, `agent.server.serf.wan`).
pub(crate) fn event_logger(module: String, me: String, left: mpsc::Sender<()>) -> impl FnMut(Event) {
    move |event: Event| match muster::telemetry::serf_event(&module, event) {
        // serf's and memberlist's words: names must be unique, and the claim is ignored.
        Event::Member(member) if member.kind == muster_core::swim::MemberEventKind::Conflict => {
            if member.node.name == me {
                tracing::error!(
                    "{module}: memberlist: Node name conflicts with another node at {}. Names must be unique!",
                    member.node.addr
                );
            } else {
                tracing::error!(
                    "{module}: memberlist: Name conflict for '{}': another node at {} claims it. Names must be unique!",
                    member.node.name,
                    member.node.addr
                );
            }
        }
        Event::Member(member) => tracing::info!(
            "{module}: serf: EventMember{:?}: {} {}",
            member.kind,
            member.node.name,
            member.node.addr.ip()
        ),
        Event::User(user) => {
            tracing::info!(
                "{module}: serf: EventUser: {} (ltime {}, {} bytes)",
                user.name,
                user.ltime,
                user.payload.len()
            )
        }
        Event::Keyring(result) => tracing::info!(
            "{module}: serf: keyring {:?}: {} of {} members answered, {} errors",
            result.op,
            result.responses,
            result.members,
            result.errors.len()
        ),
        Event::Left => {
            tracing::info!("{module}: serf: graceful leave complete");
            let _ = left.try_send(());
        }
    }
}
