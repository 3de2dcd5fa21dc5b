//! `muster debug`: records what an operator needs to debug an agent into an archive, as Consul
//! 1.20's `command/debug/debug.go` does, with its lines, checks and layout:
//!
//! ```text
//! <output>/agent.json     /v1/agent/self                  (static, once)
//! <output>/host.json      /v1/agent/host                  (static, once)
//! <output>/members.json   /v1/agent/members?wan=1         (static, once)
//! <output>/consul.log     /v1/agent/monitor?loglevel=TRACE for the whole duration
//! <output>/metrics.json   /v1/agent/metrics/stream         for the whole duration
//! <output>/index.json     Version, AgentVersion, Interval, Duration, Targets
//! ```
//!
//! then `<output>.tar.gz` (unless `-archive=false`). Consul's per-interval directories hold Go
//! profiles only (`pprof`: heap, goroutines, CPU, trace); muster is not a Go program and has
//! none, so `-capture pprof` is accepted and skipped with a warning, and no interval directory is
//! made. Where the agent serves no metrics stream (404), `/v1/agent/metrics` is polled every
//! interval instead, each summary written as the stream writes them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use serde_json::Value;

use super::{Client, ClientArgs, ClientError, FileError, Outcome};

#[derive(Debug, Args)]
pub(crate) struct DebugArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// What to capture: metrics, logs, pprof, host, agent, members (cluster, its old name).
    /// Repeatable; everything when absent.
    #[arg(long)]
    capture: Vec<String>,
    /// How often dynamic information is captured.
    // A Go duration flag: Go's `flag` says only `parse error` of a bad one, as clap's does here.
    #[arg(long, default_value = "30s", value_parser = muster_core::duration::parse)]
    interval: Duration,
    /// How long to record in all.
    #[arg(long, default_value = "5m", value_parser = muster_core::duration::parse)]
    duration: Duration,
    /// Archives and compresses the files; false leaves the directory.
    #[arg(
        long,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true"
    )]
    archive: bool,
    /// The directory (and, archived, `<output>.tar.gz`) to write; `consul-debug-<time>` by
    /// default.
    #[arg(long)]
    output: Option<PathBuf>,
    args: Vec<String>,
}

/// Why `debug` failed, with the `==> ` of Consul's `PrefixedUi` where Consul prints one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DebugError {
    /// Positional arguments were given.
    #[error("==> debug: Too many arguments provided, expected 0")]
    TooManyArguments,
    /// No client could be made from the flags and the environment.
    #[error("==> Error connecting to Consul agent: {0}")]
    Connect(#[source] ClientError),
    /// The timings, the agent or the output directory do not allow a capture.
    #[error("==> Capture validation failed: {0}")]
    Validation(#[source] PrepareError),
    /// `index.json` could not be written.
    #[error("==> Error creating index document: {0}")]
    Index(#[source] FileError),
    /// The archive could not be made (a warning in Consul's words, without `==> `).
    #[error("Archive creation failed: {0}")]
    Archive(#[source] ArchiveError),
}

/// Why [`prepare`] refused a capture, in Consul's words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// `-duration` is under the minimum.
    #[error("duration must be longer than {}", muster_core::duration::format(DURATION_MIN))]
    DurationTooShort,
    /// `-interval` is under the minimum (Consul names the minimum duration here, not the
    /// minimum interval).
    #[error("interval must be longer than {}", muster_core::duration::format(DURATION_MIN))]
    IntervalTooShort,
    /// `-duration` is shorter than one `-interval`.
    #[error(
        "duration ({}) must be longer than interval ({})",
        muster_core::duration::format(*duration),
        muster_core::duration::format(*interval)
    )]
    DurationUnderInterval {
        /// `-duration`.
        duration: Duration,
        /// `-interval`.
        interval: Duration,
    },
    /// The agent did not answer `/v1/agent/self`.
    #[error("error querying target agent: {0}. verify connectivity and agent address")]
    Agent(#[source] ClientError),
    /// The agent's answer names no version.
    #[error("agent response did not contain version key")]
    NoVersion,
    /// `-capture` names a target Consul does not know.
    #[error("target not found: {0}")]
    UnknownTarget(String),
    /// The output directory is there already.
    #[error("output directory already exists: {}", .0.display())]
    OutputExists(PathBuf),
    /// The output directory could not be made.
    #[error("could not create output directory: {0}")]
    CreateOutput(#[source] FileError),
}

/// Why capturing one of the agent's streams (or its static information) failed.
#[derive(Debug, thiserror::Error)]
enum CaptureError {
    /// A request failed, or was answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A capture file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// `metrics.json` could not be made.
    #[error("failed to create metrics file: {0}")]
    MetricsFile(#[source] FileError),
    /// `metrics.json` could not be written.
    #[error("failed to copy metrics to file: {0}")]
    MetricsCopy(#[source] std::io::Error),
    /// SIGINT or SIGTERM came before the duration was over.
    #[error("stopping collection due to shutdown signal")]
    Shutdown,
}

/// Why [`create_archive`] failed, in Consul's words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// The temporary archive could not be made.
    #[error("failed to create compressed temp archive: {0}")]
    Create(#[source] std::io::Error),
    /// The output path ends in no directory name (`..`).
    #[error("the output path names no directory")]
    NoName,
    /// A member could not be added.
    #[error("failed to write compressed archive header: {0}")]
    Header(#[source] std::io::Error),
    /// A directory could not be listed.
    #[error("failed to walk filepath for archive: {0}")]
    Walk(#[source] std::io::Error),
    /// The archive could not be finished, synced or renamed into place.
    #[error("{0}")]
    Finish(#[source] std::io::Error),
    /// The directory archived could not be removed.
    #[error("failed to remove archived directory: {0}")]
    Remove(#[source] std::io::Error),
}

/// What `debug` prints: Consul's `PrefixedUi` (`==> ` before output and errors, four spaces
/// before information, nothing before warnings on stderr).
fn output(line: &str) {
    println!("==> {line}");
}

fn info(line: &str) {
    println!("    {line}");
}

fn warn(line: &str) {
    eprintln!("{line}");
}

pub(crate) fn debug(args: &DebugArgs) -> Outcome {
    if !args.args.is_empty() {
        return Err(DebugError::TooManyArguments.into());
    }
    let client = Client::build(&args.client.http()).map_err(DebugError::Connect)?;
    let output_dir = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("consul-debug-{}", name_timestamp(SystemTime::now()))));
    let (version, targets) = prepare(&client, args, &output_dir).map_err(DebugError::Validation)?;
    let archive_name = if args.archive {
        format!("{}{ARCHIVE_EXTENSION}", output_dir.display())
    } else {
        output_dir.display().to_string()
    };
    output("Starting debugger and capturing static information...");
    info(&format!(" Agent Version: '{version}'"));
    info(&format!("      Interval: '{}'", muster_core::duration::format(args.interval)));
    info(&format!("      Duration: '{}'", muster_core::duration::format(args.duration)));
    info(&format!("        Output: '{archive_name}'"));
    info(&format!("       Capture: '{}'", targets.join(", ")));
    // Consul's grace period, so that the last interval is captured within the time allotted.
    let duration = args.duration + DURATION_GRACE;
    let capture =
        |target: &str| targets.iter().any(|t| t == target || (target == "members" && t == "cluster"));

    if let Err(errors) = capture_static(&client, &output_dir, &capture) {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        warn(&format!("Static capture failed: {}", muster::config::multierror(&errors)));
    }
    if capture("metrics") || capture("logs") {
        let shutdown = super::shutdown_signals();
        let deadline = Instant::now() + duration;
        let stop = AtomicBool::new(false);
        let collected = std::thread::scope(|scope| {
            let logs = capture("logs").then(|| {
                scope.spawn(|| capture_logs(&client, &output_dir.join("consul.log"), duration, &stop))
            });
            let metrics = capture("metrics").then(|| {
                scope.spawn(|| {
                    capture_metrics(&client, &output_dir.join("metrics.json"), duration, args.interval, &stop)
                })
            });
            let intervals = capture_intervals(args.interval, deadline, &shutdown);
            // Interrupted, the streams are told to stop at their next line.
            stop.store(true, Ordering::SeqCst);
            let mut first = intervals.err();
            for handle in [logs, metrics].into_iter().flatten() {
                let result = handle.join().expect("a capture thread does not panic");
                first = first.or(result.err());
            }
            first
        });
        if let Some(error) = collected {
            eprintln!("==> Error encountered during collection: {error}");
        }
    }

    let index = serde_json::json!({
        "Version": PROTOCOL_VERSION,
        "AgentVersion": version,
        "Interval": muster_core::duration::format(args.interval),
        "Duration": muster_core::duration::format(duration),
        "Targets": targets,
    });
    write_json(&output_dir.join("index.json"), &index).map_err(DebugError::Index)?;
    if args.archive {
        create_archive(&output_dir).map_err(DebugError::Archive)?;
    }
    info(&format!("Saved debug archive: {archive_name}"));
    Ok(0)
}

/// Consul's `prepare`: checks the timings, asks the agent its version, settles the targets and
/// makes the output directory.
fn prepare(
    client: &Client,
    args: &DebugArgs,
    output_dir: &Path,
) -> Result<(String, Vec<String>), PrepareError> {
    // Consul's own tests skip these checks; muster's do with this variable.
    let validate_timing = std::env::var("MUSTER_DEBUG_VALIDATE_TIMING").as_deref() != Ok("false");
    if validate_timing {
        if args.duration < DURATION_MIN {
            return Err(PrepareError::DurationTooShort);
        }
        if args.interval < INTERVAL_MIN {
            return Err(PrepareError::IntervalTooShort);
        }
        if args.duration < args.interval {
            return Err(PrepareError::DurationUnderInterval {
                duration: args.duration,
                interval: args.interval,
            });
        }
    }
    let agent: Value =
        client.get("/v1/agent/self", &[]).and_then(|reply| reply.json()).map_err(PrepareError::Agent)?;
    let version = agent["Config"]["Version"].as_str().ok_or(PrepareError::NoVersion)?.to_owned();
    let mut targets: Vec<String> = if args.capture.is_empty() {
        // Consul's default targets, but for profiles, which muster has none of to capture.
        TARGETS_DEFAULT.iter().filter(|t| **t != "pprof").map(|t| (*t).to_owned()).collect()
    } else {
        args.capture.clone()
    };
    if targets.iter().any(|t| t == "pprof") {
        targets.retain(|t| t != "pprof");
        warn("[WARN] Unable to capture pprof: muster is not a Go program and serves no profiles.");
    }
    if let Some(unknown) = targets.iter().find(|t| !TARGETS_DEFAULT.contains(&t.as_str()) && *t != "cluster")
    {
        return Err(PrepareError::UnknownTarget(unknown.clone()));
    }
    if output_dir.exists() {
        return Err(PrepareError::OutputExists(output_dir.to_path_buf()));
    }
    std::fs::create_dir_all(output_dir)
        .map_err(|error| PrepareError::CreateOutput(FileError::at(output_dir)(error)))?;
    Ok((version, targets))
}

/// Consul's `captureStatic`: host, agent and members, each written even when its request
/// failed (as `null`); the errors, if any.
fn capture_static(
    client: &Client,
    output_dir: &Path,
    capture: &dyn Fn(&str) -> bool,
) -> Result<(), Vec<CaptureError>> {
    let mut errors = Vec::new();
    let wan = [("wan", "1")];
    let targets = [
        ("host", "/v1/agent/host", &[][..]),
        ("agent", "/v1/agent/self", &[][..]),
        // Consul's `Members(true)`: the WAN pool.
        ("members", "/v1/agent/members", &wan[..]),
    ];
    for (target, path, query) in targets {
        if !capture(target) {
            continue;
        }
        let value = client.get(path, query).and_then(|reply| reply.json::<Value>()).unwrap_or_else(|error| {
            errors.push(error.into());
            Value::Null
        });
        if let Err(error) = write_json(&output_dir.join(format!("{target}.json")), &value) {
            errors.push(error.into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Consul's `captureInterval`: a line per interval until the deadline; profiles would be
/// captured at each (muster has none). An interruption ends it with Consul's error.
fn capture_intervals(
    interval: Duration,
    deadline: Instant,
    shutdown: &AtomicBool,
) -> Result<(), CaptureError> {
    let mut count = 0u64;
    output(&format!("Beginning capture interval {} ({count})", go_utc(SystemTime::now())));
    output(&format!("Capture successful {} ({count})", go_utc(SystemTime::now())));
    let mut next_tick = Instant::now() + interval;
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return Err(CaptureError::Shutdown);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        if now >= next_tick {
            count += 1;
            next_tick += interval;
            output(&format!("Capture successful {} ({count})", go_utc(SystemTime::now())));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(now)));
    }
}

/// Consul's `captureLogs`: the agent's log at TRACE, a line at a time, for `duration`.
fn capture_logs(
    client: &Client,
    file: &Path,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let (status, body) = client.get_stream_for("/v1/agent/monitor", &[("loglevel", "TRACE")], duration)?;
    if status != 200 {
        return Err(ClientError::unexpected(status, body).into());
    }
    let mut log = std::fs::File::create(file).map_err(FileError::at(file))?;
    let mut reader = BufReader::new(body);
    let mut line = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        line.clear();
        // The end of the stream, or the time limit: the capture is over.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        log.write_all(&line).map_err(FileError::at(file))?;
    }
    Ok(())
}

/// Consul's `captureMetrics`: the agent's metrics stream, copied for `duration`; where the agent
/// has no stream, `/v1/agent/metrics` every `interval`, one summary a line, as the stream
/// writes them.
fn capture_metrics(
    client: &Client,
    file: &Path,
    duration: Duration,
    interval: Duration,
    stop: &AtomicBool,
) -> Result<(), CaptureError> {
    let deadline = Instant::now() + duration;
    let (status, mut body) = client.get_stream_for("/v1/agent/metrics/stream", &[], duration)?;
    if status != 404 {
        if status != 200 {
            return Err(ClientError::unexpected(status, body).into());
        }
        let mut metrics = create_metrics(file)?;
        let mut piece = vec![0u8; 64 << 10];
        while !stop.load(Ordering::SeqCst) {
            match body.read(&mut piece) {
                Ok(0) | Err(_) => break,
                Ok(read) => metrics.write_all(&piece[..read]).map_err(CaptureError::MetricsCopy)?,
            }
        }
        return Ok(());
    }
    let mut metrics = create_metrics(file)?;
    loop {
        let summary: Value = client.get("/v1/agent/metrics", &[]).and_then(|reply| reply.json())?;
        // As the stream encodes each summary: indented by four spaces, then a line end.
        let mut line = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        serde::Serialize::serialize(
            &summary,
            &mut serde_json::Serializer::with_formatter(&mut line, formatter),
        )
        .expect("a JSON value serializes");
        line.push(b'\n');
        metrics.write_all(&line).map_err(CaptureError::MetricsCopy)?;
        let next = Instant::now() + interval;
        while Instant::now() < next.min(deadline) {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
    }
}

fn create_metrics(file: &Path) -> Result<std::fs::File, CaptureError> {
    std::fs::File::create(file).map_err(|error| CaptureError::MetricsFile(FileError::at(file)(error)))
}

/// Consul's `writeJSONFile`: indented with tabs.
fn write_json(file: &Path, value: &Value) -> Result<(), FileError> {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("a JSON value serializes");
    std::fs::write(file, bytes).map_err(FileError::at(file))
}

/// Consul's `createArchive`: the directory as `<dir>.tar.gz` (written aside, then renamed),
/// then the directory removed.
fn create_archive(dir: &Path) -> Result<(), ArchiveError> {
    let path = PathBuf::from(format!("{}{ARCHIVE_EXTENSION}", dir.display()));
    let temp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    let written = write_archive(dir, &temp);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error);
    }
    std::fs::rename(&temp, &path).map_err(ArchiveError::Finish)?;
    std::fs::remove_dir_all(dir).map_err(ArchiveError::Remove)
}

fn write_archive(dir: &Path, temp: &Path) -> Result<(), ArchiveError> {
    let file = std::fs::File::create(temp).map_err(ArchiveError::Create)?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    tar.follow_symlinks(false);
    let base = PathBuf::from(dir.file_name().ok_or(ArchiveError::NoName)?);
    // Go's `filepath.Walk`: the directory, then its entries in lexical order, depth first.
    let mut pending = vec![(dir.to_path_buf(), base)];
    while let Some((path, name)) = pending.pop() {
        tar.append_path_with_name(&path, &name).map_err(ArchiveError::Header)?;
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .and_then(|entries| entries.map(|entry| entry.map(|e| e.path())).collect())
                .map_err(ArchiveError::Walk)?;
            entries.sort();
            for entry in entries.into_iter().rev() {
                let entry_name = name.join(entry.file_name().expect("a directory entry has a name"));
                pending.push((entry, entry_name));
            }
        }
    }
    let gzip = tar.into_inner().map_err(ArchiveError::Finish)?;
    let file = gzip.finish().map_err(ArchiveError::Finish)?;
    file.sync_all().map_err(ArchiveError::Finish)
}

/// `time.Now().UTC().String()`: `2024-06-01 10:00:00.123456789 +0000 UTC`, the fraction's
/// trailing zeros dropped.
fn go_utc(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (date, clock) = civil(since.as_secs());
    let nanos = since.subsec_nanos();
    let fraction =
        if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_owned() };
    format!("{date} {clock}{fraction} +0000 UTC")
}

/// The default output's timestamp, Consul's `2006-01-02T15-04-05Z0700` (in UTC: a `Z`).
fn name_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (date, clock) = civil(since.as_secs());
    format!("{date}T{}Z", clock.replace(':', "-"))
}

/// `YYYY-MM-DD` and `hh:mm:ss` of Unix seconds, in UTC.
fn civil(unix_seconds: u64) -> (String, String) {
    let text = super::rfc3339(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    (text[..10].to_owned(), text[11..19].to_owned())
}

/// Consul's targets, in its order.
const TARGETS_DEFAULT: &[&str] = &["metrics", "logs", "pprof", "host", "agent", "members"];

/// Consul's `debugDurationGrace`: added to the duration so the last interval is captured.
const DURATION_GRACE: Duration = Duration::from_secs(2);

/// Consul's `debugMinDuration`: long enough to collect everything.
const DURATION_MIN: Duration = Duration::from_secs(10);

/// Consul's `debugMinInterval`: a floor against hammering the agent.
const INTERVAL_MIN: Duration = Duration::from_secs(5);

/// Consul's `debugArchiveExtension`.
const ARCHIVE_EXTENSION: &str = ".tar.gz";

/// Consul's `debugProtocolVersion`: the layout's version, in `index.json`.
const PROTOCOL_VERSION: u32 = 1;

/// How often the waits look at the clock and for an interruption: short enough that Ctrl-C is
/// answered at once, long enough to cost nothing.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_717_236_000, 120_000_000);
        assert_eq!(go_utc(at), "2024-06-01 10:00:00.12 +0000 UTC");
        assert_eq!(
            go_utc(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00 +0000 UTC"
        );
        assert_eq!(name_timestamp(at), "2024-06-01T10-00-00Z");
    }
}
