//! Remote execution, the agent's half of `muster exec` (Consul's `agent/remote_exec.go`). Off
//! unless the configuration says `disable_remote_exec = false`, as in Consul: it runs whatever
//! any client that can fire an event and write the KV store asks.
//!
//! `muster exec` writes a job (`<prefix>/<session>/job`) held by its session and fires the
//! `_rexec` user event naming that prefix and session, with node, service and tag filters.
//! Each agent the event is meant for acknowledges (`<node>/ack`), runs the command, writes its
//! output in chunks (`<node>/out/00000`, `00001`, ...; an empty chunk is a heartbeat) and its
//! exit code (`<node>/exit`), every key held by the session, so that the job's data go when
//! the session does. The agent reads and writes through its own API in-process (the router,
//! no socket), so a client agent's requests go to the servers as any other would.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::http::{router, Api, UserEvent};

/// The user event that starts a job.
pub const REXEC_EVENT: &str = "_rexec";

/// The most output one chunk carries (Consul's `remoteExecOutputSize`).
const OUTPUT_CHUNK_BYTES: usize = 4 * 1024;

/// How long output may wait before it is written (Consul's `remoteExecOutputDeadline`).
const OUTPUT_FLUSH: Duration = Duration::from_millis(500);

/// How long a command may be silent before an empty chunk says it still runs, when the job
/// does not say: the job's `Wait` is (Consul's agent heartbeats every `Wait`; `muster exec`
/// and `consul exec` wait twice their `-wait` for word from a node that acknowledged).
const HEARTBEAT_DEFAULT: Duration = Duration::from_secs(1);

/// The shortest heartbeat, whatever `Wait` says: each one is a Raft write.
const HEARTBEAT_MIN: Duration = Duration::from_millis(100);

/// The most a job's answers may take to write, each.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The event's payload (Consul's `rExecEvent`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Job {
    prefix: String,
    session: String,
}

/// The job's spec (Consul's `rExecSpec`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Spec {
    command: Option<String>,
    args: Option<Vec<String>>,
    /// Base64 (Go's `[]byte`).
    script: Option<String>,
    /// How long `exec` waits for word, nanoseconds (Go's `time.Duration`): the heartbeat.
    wait: Option<u64>,
}

impl Spec {
    fn heartbeat(&self) -> Duration {
        match self.wait {
            Some(nanos) if nanos > 0 => Duration::from_nanos(nanos).max(HEARTBEAT_MIN),
            _ => HEARTBEAT_DEFAULT,
        }
    }
}

/// Runs every `_rexec` job meant for this agent that arrives from now on.
pub async fn run_remote_exec(api: Arc<Api>) {
    let mut arrivals = api.gossip.subscribe_arrivals();
    // Events already here when the agent starts are not run again. Events are told apart by
    // ID: two fired at once can share a Lamport time.
    let mut seen: std::collections::BTreeSet<String> =
        api.gossip.events_after(None).into_iter().map(|e| e.id).collect();
    while arrivals.changed().await.is_ok() {
        let kept = api.gossip.events_after(None);
        // Forget what the gossip layer no longer keeps: the set stays as small as its list.
        seen.retain(|id| kept.iter().any(|e| e.id == *id));
        for event in kept {
            if !seen.insert(event.id.clone()) || event.name != REXEC_EVENT || !meant_for_us(&api, &event) {
                continue;
            }
            let api = api.clone();
            tokio::spawn(async move {
                if let Err(reason) = run_job(&api, &event).await {
                    tracing::warn!("agent: remote exec failed: {reason}");
                }
            });
        }
    }
}

/// The event's filters against this agent: its node name, and its services' names and tags
/// (Consul's `shouldProcessUserEvent`).
fn meant_for_us(api: &Api, event: &UserEvent) -> bool {
    let matches = |pattern: &str, text: &str| regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text));
    if !event.node_filter.is_empty() && !matches(&event.node_filter, &api.node_name) {
        return false;
    }
    if event.service_filter.is_empty() {
        return true;
    }
    let local = api.local.state();
    local.services().values().any(|service| {
        matches(&event.service_filter, &service.service)
            && (event.tag_filter.is_empty() || service.tags.iter().any(|tag| matches(&event.tag_filter, tag)))
    })
}

/// Why a remote-exec job could not be run or reported; logged, as Consul's agent logs it.
#[derive(Debug, thiserror::Error)]
enum JobError {
    /// The event's payload is not a job's base64 JSON.
    #[error("bad event payload: {0}")]
    Payload(String),
    /// No job spec is stored where the event points.
    #[error("no job at {dir}/job ({status})")]
    NoJob { dir: String, status: u16 },
    /// The stored job spec is not one.
    #[error("bad job spec: {0}")]
    Spec(#[source] serde_json::Error),
    /// A job that names nothing to run.
    #[error("the job names no command")]
    NoCommand,
    /// The job's script is not base64.
    #[error("bad script: {0}")]
    BadScript(#[source] base64::DecodeError),
    /// The script could not be written to its file.
    #[error("writing the script: {0}")]
    Script(#[source] std::io::Error),
    /// The command ran, but could not be waited for.
    #[error("waiting for the command: {0}")]
    Wait(#[source] std::io::Error),
    /// An acknowledgement, output chunk or exit code was not stored.
    #[error("writing {key}: {reason}")]
    Write { key: String, reason: String },
    /// The request to this agent's own API failed.
    #[error("{0}")]
    Call(String),
}

async fn run_job(api: &Arc<Api>, event: &UserEvent) -> Result<(), JobError> {
    let payload = base64::engine::general_purpose::STANDARD
        .decode(event.payload.as_deref().unwrap_or_default())
        .map_err(|e| JobError::Payload(e.to_string()))?;
    let job: Job = serde_json::from_slice(&payload).map_err(|e| JobError::Payload(e.to_string()))?;
    let dir = format!("{}/{}", job.prefix.trim_end_matches('/'), job.session);
    let (status, body) = call(api, Method::GET, &format!("/v1/kv/{dir}/job?raw"), Bytes::new()).await?;
    if status != 200 {
        return Err(JobError::NoJob { dir, status });
    }
    let spec: Spec = serde_json::from_slice(&body).map_err(JobError::Spec)?;
    let node = api.node_name.clone();
    let write = |key: String, value: Bytes| {
        let api = api.clone();
        let session = job.session.clone();
        async move {
            let uri = format!("/v1/kv/{key}?acquire={session}");
            match tokio::time::timeout(WRITE_TIMEOUT, call(&api, Method::PUT, &uri, value)).await {
                Ok(Ok((200, _))) => Ok(()),
                Ok(Ok((status, body))) => Err(JobError::Write {
                    key,
                    reason: format!("{status} {}", String::from_utf8_lossy(&body)),
                }),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(JobError::Write { key, reason: "timed out".into() }),
            }
        }
    };
    write(format!("{dir}/{node}/ack"), Bytes::new()).await?;
    // Acknowledged: whatever happens now, an exit code is written, as Consul's agent does.
    let exit_code = match run_command(&spec, &dir, &node, &write).await {
        Ok(code) => code,
        Err(reason) => {
            tracing::warn!("agent: remote exec: {reason}");
            1
        }
    };
    write(format!("{dir}/{node}/exit"), Bytes::from(exit_code.to_string())).await
}

/// Runs the job's command, writing its output in chunks; its exit code.
async fn run_command<W, F>(spec: &Spec, dir: &str, node: &str, write: &W) -> Result<i32, JobError>
where
    W: Fn(String, Bytes) -> F,
    F: std::future::Future<Output = Result<(), JobError>>,
{
    let mut script_path = None;
    let mut command = match (&spec.args, &spec.command, &spec.script) {
        (Some(args), _, _) if !args.is_empty() => {
            let mut command = tokio::process::Command::new(&args[0]);
            command.args(&args[1..]);
            command
        }
        (_, Some(line), _) if !line.is_empty() => {
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg("-c").arg(line);
            command
        }
        (_, _, Some(script)) => {
            let script =
                base64::engine::general_purpose::STANDARD.decode(script).map_err(JobError::BadScript)?;
            // A file, as Consul's agent writes it: a script as an argument would be bounded by
            // the kernel's argument size.
            let file = script_file(&script).map_err(JobError::Script)?;
            let mut command = tokio::process::Command::new("/bin/sh");
            command.arg(&file);
            script_path = Some(file);
            command
        }
        _ => return Err(JobError::NoCommand),
    };
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command.kill_on_drop(true);
    let mut chunk_index = 0u32;
    let _script = script_path.map(ScriptFile);
    let exit_code = match command.spawn() {
        Err(error) => {
            let text = format!("Failed to start command: {error}\n");
            write(format!("{dir}/{node}/out/{chunk_index:05x}"), Bytes::from(text)).await?;
            1
        }
        Ok(mut child) => {
            let (mut stdout, mut stderr) =
                (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
            let (mut out_buf, mut err_buf) = ([0u8; 1024], [0u8; 1024]);
            let (mut out_open, mut err_open) = (true, true);
            let mut pending: Vec<u8> = Vec::new();
            let heartbeat = spec.heartbeat();
            // Woken at least twice a heartbeat, so one is never more than half a period late
            // (output written mid-tick moves `last_write`), and as often as output is flushed.
            let tick = OUTPUT_FLUSH.min(heartbeat / 2);
            let mut flush_at = tokio::time::Instant::now() + tick;
            let mut last_write = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    read = stdout.read(&mut out_buf), if out_open => match read {
                        Ok(0) | Err(_) => out_open = false,
                        Ok(n) => pending.extend_from_slice(&out_buf[..n]),
                    },
                    read = stderr.read(&mut err_buf), if err_open => match read {
                        Ok(0) | Err(_) => err_open = false,
                        Ok(n) => pending.extend_from_slice(&err_buf[..n]),
                    },
                    () = tokio::time::sleep_until(flush_at) => {}
                }
                let done = !out_open && !err_open;
                let now = tokio::time::Instant::now();
                let due = now >= flush_at;
                // Full chunks at once; the rest when the flush deadline passes or output ends.
                while pending.len() >= OUTPUT_CHUNK_BYTES || ((due || done) && !pending.is_empty()) {
                    let take = pending.len().min(OUTPUT_CHUNK_BYTES);
                    let chunk: Vec<u8> = pending.drain(..take).collect();
                    write(format!("{dir}/{node}/out/{chunk_index:05x}"), Bytes::from(chunk)).await?;
                    chunk_index += 1;
                    last_write = tokio::time::Instant::now();
                }
                if done {
                    break;
                }
                if due {
                    // A quiet command: an empty chunk now and then tells `muster exec` it runs.
                    if now.duration_since(last_write) >= heartbeat {
                        write(format!("{dir}/{node}/out/{chunk_index:05x}"), Bytes::new()).await?;
                        chunk_index += 1;
                        last_write = tokio::time::Instant::now();
                    }
                    flush_at = tokio::time::Instant::now() + tick;
                }
            }
            let status = child.wait().await.map_err(JobError::Wait)?;
            status.code().unwrap_or(1)
        }
    };
    Ok(exit_code)
}

/// Writes a job's script to a file of its own in the temporary directory.
fn script_file(script: &[u8]) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    static SCRIPTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SCRIPTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("muster-rexec-{}-{n}.sh", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    file.write_all(script)?;
    Ok(path)
}

/// A job's script file, removed when the job is done.
struct ScriptFile(std::path::PathBuf);

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One request to this agent's own API, in-process.
async fn call(api: &Arc<Api>, method: Method, uri: &str, body: Bytes) -> Result<(u16, Bytes), JobError> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .map_err(|e| JobError::Call(e.to_string()))?;
    let response = match tower::ServiceExt::oneshot(router(api.clone()), request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(|e| JobError::Call(e.to_string()))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_follows_the_jobs_wait() {
        let spec = |json: &str| serde_json::from_str::<Spec>(json).unwrap().heartbeat();
        assert_eq!(spec(r#"{"Command": "uptime", "Wait": 2000000000}"#), Duration::from_secs(2));
        assert_eq!(spec(r#"{"Command": "uptime", "Wait": 1000}"#), HEARTBEAT_MIN, "a floor");
        assert_eq!(spec(r#"{"Command": "uptime"}"#), HEARTBEAT_DEFAULT);
        assert_eq!(spec(r#"{"Command": "uptime", "Wait": 0}"#), HEARTBEAT_DEFAULT);
    }
}
