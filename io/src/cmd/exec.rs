//! `muster exec [-node -service -tag -prefix -shell -wait -wait-repl -verbose] <command>|-`:
//! Consul's remote execution, the client's half (`command/exec`): a session with the delete
//! behaviour, the job under `<prefix>/<session>/job`, the `_rexec` event with its filters, then
//! the answers streamed from the KV store by blocking queries until nothing more comes for
//! `-wait`. Agents run jobs only with `disable_remote_exec = false` (Consul's default is
//! true), so against a default cluster it reports `0 / 0 node(s) completed / acknowledged`.

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use serde::Deserialize;

use super::{fire_event, CliError, Client, ClientError, EventFilters, HttpArgs, Outcome};

/// The session's TTL and how often it is renewed (Consul's `rExecTTL`, `rExecRenewInterval`).
const SESSION_TTL: &str = "15s";
const SESSION_RENEW: Duration = Duration::from_secs(5);
/// The shortest `-wait`: agents heartbeat no faster than every 100 ms (each one a Raft write),
/// and a node that acknowledged is given twice the wait, so a shorter one would give up on
/// nodes still running.
const WAIT_MIN: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    filters: EventFilters,
    /// The KV prefix of the job's data.
    #[arg(long, default_value = "_rexec")]
    prefix: String,
    /// Runs the command through a shell on each node (the default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    shell: bool,
    /// How long to wait with no word from any node before ending.
    #[arg(long, default_value = "2s")]
    wait: String,
    /// How long to let the job replicate before firing the event.
    #[arg(long = "wait-repl", default_value = "200ms")]
    wait_repl: String,
    /// Says what it is doing.
    #[arg(long)]
    verbose: bool,
    /// The command and its arguments, or `-` to read a script from stdin.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn exec(args: &ExecArgs) -> Outcome {
    args.filters.check()?;
    if args.args.is_empty() {
        return Err(CliError::usage("Must specify a command to execute"));
    }
    let duration = |flag: &'static str, text: &str| {
        muster_core::duration::parse(text).map_err(|source| CliError::Duration {
            flag,
            text: text.to_owned(),
            source,
        })
    };
    let wait = duration("wait", &args.wait)?.max(WAIT_MIN);
    let wait_repl = duration("wait-repl", &args.wait_repl)?;
    let mut spec = serde_json::Map::new();
    if args.args == ["-"] {
        // The reason says `Failed to read stdin` (Consul's words), once.
        let script = super::data_argument("-").map_err(|source| CliError::Data { prefix: "", source })?;
        spec.insert("Script".into(), base64::engine::general_purpose::STANDARD.encode(script).into());
    } else if args.shell {
        spec.insert("Command".into(), args.args.join(" ").into());
    } else {
        spec.insert("Args".into(), serde_json::json!(args.args));
    }
    spec.insert("Wait".into(), u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX).into());

    let client = Client::new(&args.http)?;
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "ID")]
        id: String,
    }
    let body =
        serde_json::json!({"Name": "Remote Exec", "Behavior": "delete", "TTL": SESSION_TTL}).to_string();
    let session = client
        .put("/v1/session/create", &[], body.as_bytes())
        .and_then(|reply| reply.json::<Created>())
        .map_err(CliError::client("Failed to create session"))?
        .id;
    if args.verbose {
        println!("Created remote execution session: {session}");
    }
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let (renewing, client, session) = (renewing.clone(), Client::new(&args.http)?, session.clone());
        std::thread::spawn(move || {
            let mut next = std::time::Instant::now() + SESSION_RENEW;
            while renewing.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if std::time::Instant::now() >= next {
                    let _ = client.put(&format!("/v1/session/renew/{session}"), &[], b"");
                    next = std::time::Instant::now() + SESSION_RENEW;
                }
            }
        })
    };
    let dir = format!("{}/{session}", args.prefix.trim_end_matches('/'));
    let outcome = run(&client, args, &dir, &session, &serde_json::Value::Object(spec), wait, wait_repl);
    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = renewer.join();
    // The session's delete behaviour takes its keys; the tree goes too, for anything left.
    let _ = client.put(&format!("/v1/session/destroy/{session}"), &[], b"");
    let _ = client.delete(&format!("/v1/kv/{dir}"), &[("recurse", "")]);
    outcome
}

fn run(
    client: &Client,
    args: &ExecArgs,
    dir: &str,
    session: &str,
    spec: &serde_json::Value,
    wait: Duration,
    wait_repl: Duration,
) -> Outcome {
    let written = client
        .put(&format!("/v1/kv/{dir}/job"), &[("acquire", session)], spec.to_string().as_bytes())
        .and_then(|reply| reply.json::<bool>())
        .map_err(CliError::client("Failed to upload payload"))?;
    if !written {
        return Err(CliError::Refused(format!("Failed to upload payload: failed to acquire key {dir}/job")));
    }
    if args.verbose {
        println!("Uploaded remote execution spec");
    }
    std::thread::sleep(wait_repl);
    let payload = serde_json::json!({"Prefix": args.prefix, "Session": session}).to_string();
    let fired = fire_event(client, "_rexec", &args.filters, payload.as_bytes())
        .map_err(CliError::client("Failed to fire event"))?;
    if args.verbose {
        println!("Fired remote execution event: {fired}");
    }

    let (mut acks, mut exits, mut bad_exits) = (0usize, 0usize, 0usize);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut index = 0u64;
    let prefix = format!("{dir}/");
    loop {
        // A longer window while some node that acknowledged has not finished.
        let window = if acks > exits { wait * 2 } else { wait };
        let window_text = format!("{}ms", window.as_millis());
        let index_text = index.to_string();
        let mut query = vec![("keys", ""), ("wait", window_text.as_str())];
        if index > 0 {
            query.push(("index", index_text.as_str()));
        }
        let reply = client.get(&format!("/v1/kv/{prefix}"), &query).map_err(reading_results)?;
        let new_index = reply.index.unwrap_or(index);
        let mut keys: Vec<String> =
            if reply.status == 404 { Vec::new() } else { reply.json().map_err(reading_results)? };
        // A node's exit last: its key sorts before its output's, and one window can hold both
        // when the command ran quickly (Consul prints them in key order).
        keys.sort_by_key(|key| key.ends_with("/exit"));
        if index > 0 && new_index == index {
            // The window passed with nothing new.
            break;
        }
        index = new_index;
        for key in keys {
            let Some(short) = key.strip_prefix(&prefix).map(str::to_owned) else { continue };
            if short == "job" || !seen.insert(short.clone()) {
                continue;
            }
            if let Some(node) = short.strip_suffix("/ack") {
                acks += 1;
                if args.verbose {
                    println!("==> {node}: acknowledged");
                }
            } else if let Some(node) = short.strip_suffix("/exit") {
                let value = raw(client, &key)?;
                let code: i64 = String::from_utf8_lossy(&value).trim().parse().unwrap_or(-1);
                exits += 1;
                if code != 0 {
                    bad_exits += 1;
                }
                println!("==> {node}: finished with exit code {code}");
            } else if let Some(at) = short.rfind("/out/") {
                let node = &short[..at];
                let value = raw(client, &key)?;
                if value.is_empty() {
                    if args.verbose {
                        println!("==> {node}: heartbeat received");
                    }
                    continue;
                }
                let text = String::from_utf8_lossy(&value);
                for line in text.trim_end().split('\n') {
                    println!("    {node}: {line}");
                }
            } else {
                eprintln!("Unknown key '{short}', ignoring.");
            }
        }
    }
    println!("{exits} / {acks} node(s) completed / acknowledged");
    if exits < acks {
        bad_exits += 1;
    }
    Ok(if bad_exits > 0 { 2 } else { 0 })
}

/// A key's raw value (empty when it is gone).
fn raw(client: &Client, key: &str) -> Result<Vec<u8>, CliError> {
    let reply = client
        .get(&format!("/v1/kv/{key}"), &[("raw", "")])
        .map_err(CliError::client(format!("Failed to read key '{key}'")))?;
    Ok(if reply.status == 200 { reply.body } else { Vec::new() })
}

/// A read of the nodes' results that failed, in Consul's words.
fn reading_results(source: ClientError) -> CliError {
    CliError::Client { doing: "Failed to read results".into(), source }
}
