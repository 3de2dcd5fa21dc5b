//! `muster watch`: a blocking-query loop over one view of the cluster, as Consul's watch plans
//! run them (`api/watch`): each time the view's index moves and its data differ, the data go to
//! the handler's stdin as JSON, with `CONSUL_INDEX` in its environment. Without a handler the
//! data are printed once and the command exits.

use std::io::Write;
use std::process::{Command, Stdio};

use clap::Args;
use serde_json::Value;

use super::{CliError, Client, ClientError, HandlerError, HttpArgs, Outcome};

/// How long each blocking query may wait (Consul's watch default).
const WATCH_WAIT: &str = "5m";

/// How long to back off after a failed query before asking again (Consul's watch plan: 5 s).
const RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tenancy: super::TenancyArgs,
    /// What to watch: key, keyprefix, services, nodes, service, checks or event.
    #[arg(long = "type", default_value = "")]
    kind: String,
    /// The key of a `key` watch.
    #[arg(long, default_value = "")]
    key: String,
    /// The prefix of a `keyprefix` watch.
    #[arg(long, default_value = "")]
    prefix: String,
    /// The service of a `service` (or `checks`) watch.
    #[arg(long, default_value = "")]
    service: String,
    /// Only instances with this tag (`service` watch). Repeatable.
    #[arg(long)]
    tag: Vec<String>,
    /// Only passing instances (`service` watch): `true` or `false`, a value as Consul takes it.
    #[arg(long = "passingonly", default_value = "false")]
    passing_only: String,
    /// The check state of a `checks` watch (any, passing, warning, critical).
    #[arg(long, default_value = "")]
    state: String,
    /// The event name of an `event` watch.
    #[arg(long, default_value = "")]
    name: String,
    /// A filter expression the agent applies to the view (`?filter`).
    #[arg(long, default_value = "")]
    filter: String,
    /// Runs the handler through `sh -c` (the default) rather than directly.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    shell: bool,
    /// The handler and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    handler: Vec<String>,
}

/// A watch's endpoint path and query parameters.
type Endpoint = (String, Vec<(&'static str, String)>);

/// The endpoint and query a watch asks, from its flags (Consul's `watch/funcs.go`).
fn endpoint(args: &WatchArgs) -> Result<Endpoint, CliError> {
    let required = |value: &str, name: &str| {
        if value.is_empty() {
            Err(CliError::Usage(format!("Error parsing watch: Must specify a single {name} to watch")))
        } else {
            Ok(())
        }
    };
    Ok(match args.kind.as_str() {
        "" => return Err(CliError::usage("Must specify watch type")),
        "key" => {
            required(&args.key, "key")?;
            (format!("/v1/kv/{}", args.key), vec![])
        }
        "keyprefix" => {
            required(&args.prefix, "prefix")?;
            (format!("/v1/kv/{}", args.prefix), vec![("recurse", String::new())])
        }
        "services" => ("/v1/catalog/services".to_owned(), vec![]),
        "nodes" => ("/v1/catalog/nodes".to_owned(), vec![]),
        "service" => {
            required(&args.service, "service")?;
            let mut query: Vec<(&str, String)> = args.tag.iter().map(|t| ("tag", t.clone())).collect();
            let passing = match args.passing_only.as_str() {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
                "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
                other => {
                    return Err(CliError::Usage(format!(
                    "Failed to parse passingonly flag: strconv.ParseBool: parsing {other:?}: invalid syntax"
                )))
                }
            };
            if passing {
                query.push(("passing", String::new()));
            }
            (format!("/v1/health/service/{}", args.service), query)
        }
        "checks" => match (args.service.is_empty(), args.state.is_empty()) {
            (false, false) => {
                return Err(CliError::usage("Error parsing watch: Cannot specify service and state"))
            }
            (false, true) => (format!("/v1/health/checks/{}", args.service), vec![]),
            (true, _) => {
                let state = if args.state.is_empty() { "any" } else { args.state.as_str() };
                (format!("/v1/health/state/{state}"), vec![])
            }
        },
        "event" => {
            let query = if args.name.is_empty() { vec![] } else { vec![("name", args.name.clone())] };
            ("/v1/event/list".to_owned(), query)
        }
        other => {
            return Err(CliError::Usage(format!("Error parsing watch: Unsupported watch type: {other}")))
        }
    })
}

pub(crate) fn watch(args: &WatchArgs) -> Outcome {
    watch_loop(args, false)
}

/// Runs one of the agent's `watches` until the process ends: failures, the first one
/// included, are waited out, and a handler that fails is logged, as Consul's agent does.
pub(crate) fn run_for_agent(args: &WatchArgs) {
    if let Err(error) = watch_loop(args, true) {
        tracing::error!("agent: watch (type: {}) stopped: {error}", args.kind);
    }
}

/// A watch from the agent's configuration (`watches = [{ type = "key", key = "...", args =
/// [...] }]`), asking the agent at `http_addr`; Consul's words when it cannot be one.
pub(crate) fn from_config(
    entry: &serde_json::Map<String, Value>,
    http_addr: &str,
) -> Result<WatchArgs, String> {
    let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let tag = match entry.get("tag") {
        Some(Value::String(tag)) => vec![tag.clone()],
        Some(Value::Array(tags)) => tags.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let passing_only = match entry.get("passingonly") {
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::String(text)) => text.clone(),
        _ => "false".to_owned(),
    };
    let handler_type = text("handler_type");
    if !handler_type.is_empty() && handler_type != "script" {
        return Err(format!("Handler type '{handler_type}' not supported by muster yet (script only)"));
    }
    // `args` runs directly; the older `handler` string runs through the shell.
    let (handler, shell) = match (entry.get("args"), entry.get("handler").and_then(Value::as_str)) {
        (Some(Value::Array(args)), _) => {
            (args.iter().filter_map(Value::as_str).map(str::to_owned).collect(), false)
        }
        (_, Some(handler)) => (vec![handler.to_owned()], true),
        _ => (Vec::new(), false),
    };
    if handler.is_empty() {
        return Err("Must define a watch handler".to_owned());
    }
    let mut client =
        super::ClientArgs { http_addr: Some(http_addr.to_owned()), ..super::ClientArgs::default() };
    client.token = entry.get("token").and_then(Value::as_str).map(str::to_owned);
    let datacenter = entry.get("datacenter").and_then(Value::as_str).map(str::to_owned);
    let args = WatchArgs {
        http: HttpArgs { client, datacenter, ..HttpArgs::default() },
        tenancy: super::TenancyArgs::default(),
        kind: text("type"),
        key: text("key"),
        prefix: text("prefix"),
        service: text("service"),
        tag,
        passing_only,
        state: text("state"),
        name: text("name"),
        filter: text("filter"),
        shell,
        handler,
    };
    endpoint(&args).map_err(|error| error.to_string())?;
    Ok(args)
}

fn watch_loop(args: &WatchArgs, agent: bool) -> Outcome {
    let (path, mut base_query) = endpoint(args)?;
    if !args.filter.is_empty() {
        base_query.push(("filter", args.filter.clone()));
    }
    let client = Client::new(&args.http.in_tenancy(&args.tenancy))?;
    // The index of the last answer (Consul's `lastParamVal`): none before the first.
    let mut last_index: Option<u64> = None;
    let mut last: Option<Value> = None;
    loop {
        if last_index == Some(0) {
            // No index to block on: ask again after a pause rather than at once.
            std::thread::sleep(RETRY_BACKOFF);
        }
        let index_text = last_index.unwrap_or(0).to_string();
        let mut query: Vec<(&str, &str)> = base_query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if last_index.is_some_and(|index| index > 0) {
            query.push(("index", &index_text));
            query.push(("wait", WATCH_WAIT));
        }
        let answer = client.get(&path, &query).map_err(ViewError::from).and_then(|reply| view(args, reply));
        let (new_index, data) = match answer {
            Ok(answer) => answer,
            // The agent cannot be reached at all: say so now rather than wait for ever (the
            // agent's own watches wait for it).
            Err(error) if last_index.is_none() && !agent => return Err(CliError::Watch(error)),
            // Later, any failure (an election, a restart) is waited out, as Consul's watch plan
            // does.
            Err(error) => {
                if agent {
                    tracing::error!(
                        "agent.watch: Watch errored: type={} error=\"{error}\" retry={RETRY_BACKOFF:?}",
                        args.kind
                    );
                } else {
                    eprintln!("Watch (type: {}) errored: {error}, retry in {RETRY_BACKOFF:?}", args.kind);
                }
                std::thread::sleep(RETRY_BACKOFF);
                continue;
            }
        };
        let previous = last_index;
        // An index that went backwards (a restore, a new leader's view) starts over.
        last_index = Some(if previous.is_some_and(|p| new_index < p) { 0 } else { new_index });
        if previous == Some(new_index) || last.as_ref() == Some(&data) {
            continue;
        }
        // An event watch hands over only the events since the last answer (Consul's eventWatch).
        let data_for_handler = match (args.kind.as_str(), &data, previous) {
            ("event", Value::Array(events), Some(since)) => Value::Array(
                events
                    .iter()
                    .filter(|e| e["LTime"].as_u64().is_some_and(|ltime| ltime > since))
                    .cloned()
                    .collect(),
            ),
            _ => data.clone(),
        };
        last = Some(data);
        if args.handler.is_empty() {
            println!("{}", indent4(&data_for_handler));
            return Ok(0);
        }
        match run_handler(args, &data_for_handler, new_index) {
            Err(error) if agent => tracing::error!("agent: Failed to run watch handler: {error}"),
            result => result?,
        }
    }
}

/// Why a watch's query got no view.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError {
    /// The agent could not be reached, or answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The answer is not JSON.
    #[error("decoding the answer: {0}")]
    Decode(#[source] serde_json::Error),
}

/// One answer as the handler gets it, with its index: a missing key is `null`, and a key
/// watch hands over the entry rather than the one-entry list the endpoint answers.
fn view(args: &WatchArgs, reply: super::Reply) -> Result<(u64, Value), ViewError> {
    let index = reply.index.unwrap_or(0);
    if reply.status == 404 {
        return Ok((index, Value::Null));
    }
    let body = reply.ok()?;
    let value: Value = serde_json::from_slice(&body).map_err(ViewError::Decode)?;
    Ok(match (args.kind.as_str(), value) {
        ("key", Value::Array(mut entries)) if !entries.is_empty() => (index, entries.swap_remove(0)),
        (_, value) => (index, value),
    })
}

/// Runs the handler once with `data` on its stdin, as Consul does; a handler that fails ends
/// the watch with exit code 1.
fn run_handler(args: &WatchArgs, data: &Value, index: u64) -> Result<(), HandlerError> {
    let mut command = if args.shell {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(args.handler.join(" "));
        command
    } else {
        let mut command = Command::new(&args.handler[0]);
        command.args(&args.handler[1..]);
        command
    };
    let mut child = command
        .env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .map_err(HandlerError::Start)?;
    let mut input = serde_json::to_vec(data).expect("JSON values serialize");
    input.push(b'\n');
    // A handler that does not read its input is not an error.
    let _ = child.stdin.take().expect("stdin is piped").write_all(&input);
    let status = child.wait().map_err(HandlerError::Execute)?;
    if !status.success() {
        return Err(HandlerError::Failed(status));
    }
    Ok(())
}

/// An exit status as Go's `exec.ExitError` says it: `exit status 3`.
pub(crate) fn go_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => status.to_string(),
    }
}

/// JSON as Go's `json.MarshalIndent(v, "", "    ")` writes it.
fn indent4(value: &Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer).expect("JSON values serialize");
    String::from_utf8(out).expect("JSON is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> WatchArgs {
        let argv = ["muster", "watch"].into_iter().chain(args.iter().copied()).map(std::ffi::OsString::from);
        match crate::cli::Cli::try_parse_from(crate::cli::normalize(argv).unwrap()).unwrap().command {
            crate::cli::Subcommands::Watch(args) => args,
            other => panic!("not watch: {other:?}"),
        }
    }

    #[test]
    fn each_type_asks_its_endpoint() {
        let ask = |args: &[&str]| {
            endpoint(&parse(args)).map(|(path, query)| (path, query.len())).map_err(|error| error.to_string())
        };
        assert_eq!(ask(&["-type=key", "-key=a/b"]).unwrap(), ("/v1/kv/a/b".to_owned(), 0));
        assert_eq!(ask(&["-type=keyprefix", "-prefix=a/"]).unwrap(), ("/v1/kv/a/".to_owned(), 1));
        assert_eq!(ask(&["-type=service", "-service=web", "-passingonly=true", "-tag=rails"]).unwrap().1, 2);
        assert!(ask(&["-type=service", "-service=web", "-passingonly=maybe"])
            .unwrap_err()
            .starts_with("Failed to parse passingonly flag"));
        assert_eq!(ask(&["-type=checks"]).unwrap().0, "/v1/health/state/any");
        assert_eq!(ask(&["-type=checks", "-service=web"]).unwrap().0, "/v1/health/checks/web");
        assert_eq!(ask(&["-type=event", "-name=deploy"]).unwrap(), ("/v1/event/list".to_owned(), 1));
        assert_eq!(ask(&[]).unwrap_err(), "Must specify watch type");
        assert_eq!(
            ask(&["-type=key"]).unwrap_err(),
            "Error parsing watch: Must specify a single key to watch"
        );
        assert_eq!(ask(&["-type=bogus"]).unwrap_err(), "Error parsing watch: Unsupported watch type: bogus");
    }

    #[test]
    fn the_handler_and_its_flags_parse_as_consuls() {
        let args = parse(&["-type=key", "-key=a", "-shell=false", "cat", "-n"]);
        assert_eq!((args.shell, args.handler.as_slice()), (false, &["cat".to_owned(), "-n".to_owned()][..]));
        assert!(parse(&["-type=key", "-key=a", "./handler.sh"]).shell);
    }

    #[test]
    fn printed_data_are_indented_as_gos() {
        assert_eq!(indent4(&serde_json::json!({"a": [1]})), "{\n    \"a\": [\n        1\n    ]\n}");
    }
}
