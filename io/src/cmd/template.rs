//! `muster template`: consul-template's command line over the language in
//! `muster_core::template` (`../shared/reference/consul-wave2.md` §7).
//!
//! Each `-template "in:out[:command]"` is parsed once, then rendered whenever the data it uses
//! changes. Every dependency a render asks for gets a watcher thread that runs the agent's
//! blocking query for it (`?index=`) and sends each new answer to the main loop; a render that
//! still misses data writes nothing. A rendered file is written atomically (a temporary file
//! beside it, fsync, rename; the old file's mode kept) and only when its contents change, and
//! only then is its command run. `-once` stops after every template has rendered once, `-dry`
//! prints instead of writing (`> destination` then the contents, as consul-template does), and
//! `-wait=min[:max]` waits for `min` of quiet (at most `max`) before rendering after a change.
//!
//! `-config` reads consul-template's configuration files (`template/config.rs`); flags win over
//! them. Where this departs from consul-template: one agent address and token for every query
//! (no Vault or Nomad), no `-exec` supervision, and one `-wait` for every template.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use muster_core::template::{Answer, Dependency, HealthFilter, RenderOptions, Source, Template, Value};
use serde_json::Value as Json;

use super::{CliError, Client, ClientArgs, HttpArgs, Outcome};

mod config;

/// How long one blocking query waits at the agent before it asks again.
const BLOCKING_WAIT: &str = "60s";

/// consul-template's exit status when its runner fails (a dependency out of retries).
const RUNNER_ERROR_EXIT: u8 = 14;

/// consul-template's defaults for `-max-stale` and `-consul-retry-attempts`.
const MAX_STALE_DEFAULT: &str = "2s";
const RETRY_ATTEMPTS_DEFAULT: u32 = 12;

/// How often a `file` dependency is read again.
const FILE_POLL: Duration = Duration::from_secs(1);

/// How long a template's command may run (consul-template's `command_timeout` default).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `muster template`.
#[derive(Debug, Clone, Args)]
pub(crate) struct TemplateArgs {
    /// A consul-template configuration file (HCL or JSON), or a directory of them.
    /// Repeatable; flags win over the files.
    #[arg(long = "config")]
    config: Vec<String>,
    /// Writes the process ID here while it runs.
    #[arg(long = "pid-file")]
    pid_file: Option<String>,
    /// `source:destination[:command]`: a template file, where to render it, and a command to
    /// run after each change. Repeatable.
    #[arg(long = "template")]
    templates: Vec<String>,
    /// Renders every template once, then exits.
    #[arg(long)]
    once: bool,
    /// Prints the rendered templates to stdout instead of writing them.
    #[arg(long)]
    dry: bool,
    /// The agent's HTTP address. Defaults to `CONSUL_HTTP_ADDR`, then 127.0.0.1:8500.
    #[arg(long = "consul-addr")]
    consul_addr: Option<String>,
    /// The ACL token. Defaults to `CONSUL_TOKEN`, then `CONSUL_HTTP_TOKEN`.
    #[arg(long = "consul-token")]
    consul_token: Option<String>,
    /// Talks to the agent over HTTPS.
    #[arg(long = "consul-ssl", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    consul_ssl: Option<bool>,
    /// Checks the agent's certificate (default true).
    #[arg(long = "consul-ssl-verify", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    consul_ssl_verify: Option<bool>,
    /// The CA certificate to check the agent's certificate with.
    #[arg(long = "consul-ssl-ca-cert")]
    consul_ssl_ca_cert: Option<String>,
    /// A directory of CA certificates.
    #[arg(long = "consul-ssl-ca-path")]
    consul_ssl_ca_path: Option<String>,
    /// The client certificate, for agents with `verify_incoming`.
    #[arg(long = "consul-ssl-cert")]
    consul_ssl_cert: Option<String>,
    /// The client certificate's key.
    #[arg(long = "consul-ssl-key")]
    consul_ssl_key: Option<String>,
    /// The server name to check the agent's certificate for (accepted; the address's host is
    /// checked).
    #[arg(long = "consul-ssl-server-name")]
    consul_ssl_server_name: Option<String>,
    /// `min[:max]`: how long the data must stay unchanged before a render (max defaults to
    /// four times min).
    #[arg(long)]
    wait: Option<String>,
    /// How stale an answer may be: any server may answer when above zero (default 2s).
    #[arg(long = "max-stale")]
    max_stale: Option<String>,
    /// Retries a failed query (default true); without, the first failure ends the run.
    #[arg(long = "consul-retry", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    consul_retry: Option<bool>,
    /// How many times a failed query is retried before the run ends (0: without end;
    /// default 12).
    #[arg(long = "consul-retry-attempts")]
    consul_retry_attempts: Option<u32>,
    /// The first pause before a retry, doubled for each one after (default 250ms).
    #[arg(long = "consul-retry-backoff", alias = "retry")]
    consul_retry_backoff: Option<String>,
    /// The longest pause between retries (0: no bound; default 1m).
    #[arg(long = "consul-retry-max-backoff")]
    consul_retry_max_backoff: Option<String>,
    /// Log level (accepted for consul-template's command lines).
    #[arg(long = "log-level", default_value = "info")]
    log_level: String,
}

impl TemplateArgs {
    /// These flags, each one not given taken from the `-config` files.
    fn over(&self, files: &config::FileSettings) -> TemplateArgs {
        let pick = |flag: &Option<String>, file: &Option<String>| flag.clone().or_else(|| file.clone());
        TemplateArgs {
            pid_file: pick(&self.pid_file, &files.pid_file),
            consul_addr: pick(&self.consul_addr, &files.address),
            consul_token: pick(&self.consul_token, &files.token),
            consul_ssl: self.consul_ssl.or(files.ssl_enabled),
            consul_ssl_verify: self.consul_ssl_verify.or(files.ssl_verify),
            consul_ssl_ca_cert: pick(&self.consul_ssl_ca_cert, &files.ssl_ca_cert),
            consul_ssl_ca_path: pick(&self.consul_ssl_ca_path, &files.ssl_ca_path),
            consul_ssl_cert: pick(&self.consul_ssl_cert, &files.ssl_cert),
            consul_ssl_key: pick(&self.consul_ssl_key, &files.ssl_key),
            consul_ssl_server_name: pick(&self.consul_ssl_server_name, &files.ssl_server_name),
            wait: pick(&self.wait, &files.wait),
            max_stale: pick(&self.max_stale, &files.max_stale),
            consul_retry: self.consul_retry.or(files.retry_enabled),
            consul_retry_attempts: self.consul_retry_attempts.or(files.retry_attempts),
            consul_retry_backoff: pick(&self.consul_retry_backoff, &files.retry_backoff),
            consul_retry_max_backoff: pick(&self.consul_retry_max_backoff, &files.retry_max_backoff),
            ..self.clone()
        }
    }
}

/// One template: from `-template`, or a `template` block of a `-config` file.
struct Spec {
    /// The template file, or `(contents)` for a block's inline `contents`.
    source: PathBuf,
    destination: PathBuf,
    /// The command and its arguments, run after each change; empty: none.
    command: Vec<String>,
    command_timeout: Duration,
    /// The destination's mode; `None`: an existing file's, else 0644.
    perms: Option<u32>,
    /// The destination's previous contents are kept in `<destination>.bak`.
    backup: bool,
    /// Missing parent directories of the destination are made (else it is an error).
    create_dest_dirs: bool,
    /// `error_on_missing_key` and `function_denylist`.
    options: RenderOptions,
    template: Template,
    /// What was last written (or printed), to skip unchanged renders.
    last: Option<String>,
}

/// An answer a watcher sends: the dependency, its data, and whether it is an error.
type Update = (Dependency, Result<Value, Failure>);

/// A query that failed.
#[derive(Debug)]
enum Failure {
    /// It is asked again after a pause.
    Retrying(String),
    /// Out of retries: the run ends.
    GaveUp(String),
}

/// consul-template's retry policy (`consul { retry { ... } }`): pauses that double from
/// `backoff` up to `max_backoff`, for at most `attempts` retries in a row.
#[derive(Debug, Clone, Copy)]
struct Retry {
    enabled: bool,
    /// 0: without end.
    attempts: u32,
    backoff: Duration,
    /// Zero: no bound.
    max_backoff: Duration,
}

impl Retry {
    fn from_args(args: &TemplateArgs) -> Result<Retry, CliError> {
        let duration = |flag: &str, text: &str| {
            muster_core::duration::parse(text)
                .map_err(|_| CliError::usage(format!("invalid value {text:?} for flag -{flag}: parse error")))
        };
        Ok(Retry {
            enabled: args.consul_retry != Some(false),
            attempts: args.consul_retry_attempts.unwrap_or(RETRY_ATTEMPTS_DEFAULT),
            backoff: duration(
                "consul-retry-backoff",
                args.consul_retry_backoff.as_deref().unwrap_or("250ms"),
            )?,
            max_backoff: duration(
                "consul-retry-max-backoff",
                args.consul_retry_max_backoff.as_deref().unwrap_or("1m"),
            )?,
        })
    }

    /// The pause before retry number `retry` (from 0) in a row, or `None` to give up.
    fn pause(&self, retry: u32) -> Option<Duration> {
        if !self.enabled || (self.attempts > 0 && retry >= self.attempts) {
            return None;
        }
        let doubled = self.backoff.saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
        Some(if self.max_backoff.is_zero() { doubled } else { doubled.min(self.max_backoff) })
    }
}

pub(crate) fn run(args: &TemplateArgs) -> Outcome {
    let files = config::load(&args.config)?;
    for key in &files.ignored {
        eprintln!("[WARN] (config) {key}: accepted, but muster does not act on it");
    }
    let args = &args.over(&files);
    let mut specs = args.templates.iter().map(|text| spec(text)).collect::<Result<Vec<_>, _>>()?;
    for block in &files.templates {
        specs.push(block_spec(block)?);
    }
    if specs.is_empty() {
        return Err(CliError::usage("No templates given: use -template \"in.ctmpl:out.conf\""));
    }
    let quiet = wait_times(args.wait.as_deref().unwrap_or_default())?;
    let max_stale = args.max_stale.as_deref().unwrap_or(MAX_STALE_DEFAULT);
    let stale = !muster_core::duration::parse(max_stale).unwrap_or_default().is_zero();
    let client = client(args)?;
    let _pid_file = args.pid_file.as_deref().map(PidFile::write).transpose()?;
    let retry = Retry::from_args(args)?;
    let (sender, updates) = mpsc::channel::<Update>();
    let mut data: BTreeMap<Dependency, Value> = BTreeMap::new();
    let mut watched: BTreeSet<Dependency> = BTreeSet::new();
    loop {
        let mut missing = false;
        for spec in &mut specs {
            let rendered = render(spec, &data)?;
            for dependency in &rendered.used {
                if watched.insert(dependency.clone()) {
                    watch(&client, dependency.clone(), (stale, retry), sender.clone());
                }
            }
            if rendered.missing.is_empty() {
                emit(spec, rendered.output, args.dry)?;
            } else {
                missing = true;
            }
        }
        if args.once && !missing {
            return Ok(0);
        }
        if let Err(reason) = apply(&updates, &mut data, quiet)? {
            eprintln!("[ERR] (cli) {reason}");
            return Ok(RUNNER_ERROR_EXIT);
        }
    }
}

/// `in:out[:command]` parsed, the template read and parsed.
fn spec(text: &str) -> Result<Spec, CliError> {
    let mut parts = text.splitn(3, ':');
    let (source, destination) = match (parts.next(), parts.next()) {
        (Some(source), Some(destination)) if !source.is_empty() && !destination.is_empty() => {
            (source, destination)
        }
        _ => return Err(CliError::usage(format!("invalid template declaration format: {text:?}"))),
    };
    let command = parts.next().filter(|command| !command.is_empty());
    let contents = std::fs::read_to_string(source)
        .map_err(|error| CliError::refused(format!("failed reading template {source}: {error}")))?;
    let template =
        Template::parse(source, &contents, ("", "")).map_err(|error| CliError::refused(error.to_string()))?;
    Ok(Spec {
        source: source.into(),
        destination: destination.into(),
        command: command
            .map(|command| vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()])
            .unwrap_or_default(),
        command_timeout: COMMAND_TIMEOUT,
        perms: None,
        backup: false,
        create_dest_dirs: true,
        options: RenderOptions::default(),
        template,
        last: None,
    })
}

/// A `template` block of a `-config` file, its template read (or taken inline) and parsed.
fn block_spec(block: &config::TemplateBlock) -> Result<Spec, CliError> {
    let (name, contents) = match (&block.source, &block.contents) {
        (Some(source), _) => {
            let text = std::fs::read_to_string(source)
                .map_err(|error| CliError::refused(format!("failed reading template {source}: {error}")))?;
            (source.clone(), text)
        }
        (None, contents) => ("(contents)".to_owned(), contents.clone().unwrap_or_default()),
    };
    let delimiters = (
        block.left_delimiter.as_deref().unwrap_or_default(),
        block.right_delimiter.as_deref().unwrap_or_default(),
    );
    let template = Template::parse(&name, &contents, delimiters)
        .map_err(|error| CliError::refused(error.to_string()))?;
    Ok(Spec {
        source: name.into(),
        destination: block.destination.clone().into(),
        command: block.command.clone(),
        command_timeout: block.command_timeout.unwrap_or(COMMAND_TIMEOUT),
        perms: block.perms,
        backup: block.backup,
        create_dest_dirs: block.create_dest_dirs,
        options: RenderOptions {
            error_on_missing_key: block.error_on_missing_key,
            function_denylist: block.function_denylist.clone(),
            ..RenderOptions::default()
        },
        template,
        last: None,
    })
}

/// `-pid-file`: the process ID, written at start and removed when the run ends.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &str) -> Result<PidFile, CliError> {
        std::fs::write(path, std::process::id().to_string())
            .map_err(|error| CliError::refused(format!("failed writing pid file {path}: {error}")))?;
        Ok(PidFile(path.into()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `-wait=min[:max]`: the quiet time and its bound.
fn wait_times(text: &str) -> Result<Option<(Duration, Duration)>, CliError> {
    if text.is_empty() {
        return Ok(None);
    }
    let parse = |part: &str| {
        muster_core::duration::parse(part).map_err(|source| CliError::Duration {
            flag: "wait",
            text: text.to_owned(),
            source,
        })
    };
    let (min, max) = match text.split_once(':') {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => {
            let min = parse(text)?;
            (min, min * 4)
        }
    };
    if max < min {
        return Err(CliError::usage(format!("wait: max ({max:?}) must be larger than min ({min:?})")));
    }
    Ok(Some((min, max)))
}

/// The agent's client: `-consul-addr`, `-consul-token`, `CONSUL_TOKEN` and the `-consul-ssl*`
/// flags over the CLI's own variables. `-consul-ssl` makes an address without a scheme HTTPS.
fn client(args: &TemplateArgs) -> Result<Client, CliError> {
    let token =
        args.consul_token.clone().or_else(|| std::env::var("CONSUL_TOKEN").ok()).filter(|t| !t.is_empty());
    let mut http_addr = args.consul_addr.clone();
    if args.consul_ssl == Some(true) {
        let addr = http_addr
            .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok().filter(|addr| !addr.is_empty()))
            .unwrap_or_else(|| super::HTTP_ADDR_DEFAULT.to_owned());
        http_addr = Some(if addr.contains("://") { addr } else { format!("https://{addr}") });
    }
    let client = ClientArgs {
        http_addr,
        token,
        ca_file: args.consul_ssl_ca_cert.clone(),
        ca_path: args.consul_ssl_ca_path.clone(),
        client_cert: args.consul_ssl_cert.clone(),
        client_key: args.consul_ssl_key.clone(),
        tls_server_name: args.consul_ssl_server_name.clone(),
        ssl_verify: args.consul_ssl_verify,
        ..ClientArgs::default()
    };
    Client::new(&HttpArgs { client, ..HttpArgs::default() })
}

fn render(
    spec: &Spec,
    data: &BTreeMap<Dependency, Value>,
) -> Result<muster_core::template::Rendered, CliError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let options = RenderOptions {
        now_unix_nanos: i64::try_from(now.as_nanos()).unwrap_or(i64::MAX),
        ..spec.options.clone()
    };
    let mut source = Known { data };
    spec.template
        .render(&Value::Nil, &mut source, &options)
        .map_err(|error| CliError::refused(error.to_string()))
}

/// The data fetched so far, as the template's [`Source`].
struct Known<'a> {
    data: &'a BTreeMap<Dependency, Value>,
}

impl Source for Known<'_> {
    fn query(&mut self, dependency: &Dependency) -> Answer {
        self.data.get(dependency).map_or(Answer::Pending, |value| Answer::Ready(value.clone()))
    }

    fn env(&mut self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Waits for the next answer, then (with `-wait`) for the data to stay quiet, and applies them;
/// the inner `Err` is a dependency that ran out of retries, which ends the run.
fn apply(
    updates: &mpsc::Receiver<Update>,
    data: &mut BTreeMap<Dependency, Value>,
    quiet: Option<(Duration, Duration)>,
) -> Result<Result<(), String>, CliError> {
    let mut gave_up = None;
    let mut store = |(dependency, answer): Update| match answer {
        Ok(value) => {
            data.insert(dependency, value);
        }
        Err(Failure::Retrying(message)) => eprintln!("[WARN] (view) {dependency}: {message}"),
        Err(Failure::GaveUp(reason)) => {
            eprintln!("[ERR] (view) {dependency}: {reason} (exceeded maximum retries)");
            gave_up.get_or_insert(format!("{dependency}: {reason}"));
        }
    };
    let first = updates.recv().map_err(|_| CliError::refused("every watcher stopped"))?;
    store(first);
    if let Some((min, max)) = quiet {
        let started = Instant::now();
        while let Ok(update) = updates.recv_timeout(min.min(max.saturating_sub(started.elapsed()))) {
            store(update);
            if started.elapsed() >= max {
                break;
            }
        }
    } else {
        while let Ok(update) = updates.try_recv() {
            store(update);
        }
    }
    Ok(gave_up.map_or(Ok(()), Err))
}

/// Writes (or with `-dry` prints) a render that changed, then runs its command.
fn emit(spec: &mut Spec, output: String, dry: bool) -> Result<(), CliError> {
    if spec.last.as_deref() == Some(output.as_str()) {
        return Ok(());
    }
    if dry {
        println!("> {}\n{output}", spec.destination.display());
    } else {
        let current = std::fs::read_to_string(&spec.destination).ok();
        if current.as_deref() != Some(output.as_str()) {
            let failed = |error: std::io::Error| {
                CliError::refused(format!("failed writing {}: {error}", spec.destination.display()))
            };
            if spec.backup && current.is_some() {
                let mut backup = spec.destination.clone().into_os_string();
                backup.push(".bak");
                std::fs::copy(&spec.destination, backup).map_err(failed)?;
            }
            write_atomically(&spec.destination, output.as_bytes(), spec.perms, spec.create_dest_dirs)
                .map_err(failed)?;
            if !spec.command.is_empty() {
                run_command(&spec.command, spec.command_timeout, &spec.source);
            }
        }
    }
    spec.last = Some(output);
    Ok(())
}

/// A temporary file beside `path`, written and synced, renamed over it, with mode `perms`, else
/// the old file's (0644 for a new one); its directory is made when missing if `make_dirs`.
fn write_atomically(
    path: &Path,
    contents: &[u8],
    perms: Option<u32>,
    make_dirs: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if make_dirs {
        std::fs::create_dir_all(dir)?;
    }
    let mode =
        perms.unwrap_or_else(|| std::fs::metadata(path).map_or(0o644, |meta| meta.permissions().mode()));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Runs a template's command (a string through `sh -c`), up to `timeout`; a failure is
/// reported, never fatal (consul-template goes on watching).
fn run_command(command: &[String], timeout: Duration, source: &Path) {
    let child = std::process::Command::new(&command[0]).args(&command[1..]).spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return eprintln!("[ERR] (runner) {}: running {command:?}: {error}", source.display()),
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                return eprintln!("[ERR] (runner) {}: {command:?} exited with {status}", source.display())
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                return eprintln!(
                    "[ERR] (runner) {}: {command:?} timed out after {timeout:?}",
                    source.display()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => return eprintln!("[ERR] (runner) {}: {error}", source.display()),
        }
    }
}

// --- watchers -----------------------------------------------------------------------------------

/// Starts the thread that keeps `dependency`'s data current: a blocking query per answer (a
/// file is read again every [`FILE_POLL`]); it ends with the process.
fn watch(
    client: &Client,
    dependency: Dependency,
    (stale, retry): (bool, Retry),
    updates: mpsc::Sender<Update>,
) {
    let client = client.clone();
    std::thread::spawn(move || {
        let mut index = 0;
        let mut last: Option<Value> = None;
        let mut retries = 0;
        loop {
            match fetch(&client, &dependency, index, stale) {
                Ok((value, next)) => {
                    retries = 0;
                    let changed = last.as_ref() != Some(&value);
                    if changed && updates.send((dependency.clone(), Ok(value.clone()))).is_err() {
                        return;
                    }
                    last = Some(value);
                    match next {
                        // An index that went back (a restore) starts over.
                        Some(next) if next > index => index = next,
                        Some(_) => index = 0,
                        None => std::thread::sleep(FILE_POLL),
                    }
                }
                Err(reason) => {
                    let Some(pause) = retry.pause(retries) else {
                        let _ = updates.send((dependency.clone(), Err(Failure::GaveUp(reason))));
                        return;
                    };
                    retries += 1;
                    let message = format!("{reason} (retry attempt {retries} after \"{pause:?}\")");
                    if updates.send((dependency.clone(), Err(Failure::Retrying(message)))).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
            }
        }
    });
}

/// One read of `dependency` (blocking past `index` when above zero): its data as the template
/// sees it, and the index to block on next (`None` for what is polled).
fn fetch(
    client: &Client,
    dependency: &Dependency,
    index: u64,
    stale: bool,
) -> Result<(Value, Option<u64>), String> {
    if let Dependency::File { path } = dependency {
        return std::fs::read_to_string(path)
            .map(|text| (Value::String(text), None))
            .map_err(|e| e.to_string());
    }
    let (path, mut query) = endpoint(client, dependency)?;
    let index_text = index.to_string();
    if index > 0 {
        query.push(("index".into(), index_text));
        query.push(("wait".into(), BLOCKING_WAIT.into()));
    }
    if stale {
        query.push(("stale".into(), String::new()));
    }
    let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = client.get(&path, &pairs).map_err(|error| error.to_string())?;
    let next = reply.index;
    if reply.status == 404 {
        return Ok((absent(dependency), next));
    }
    let body: Json = reply.json().map_err(|error| error.to_string())?;
    Ok((shape(dependency, &body), next))
}

/// The API path and parameters that answer `dependency`.
fn endpoint(client: &Client, dependency: &Dependency) -> Result<(String, Vec<(String, String)>), String> {
    let mut query: Vec<(String, String)> = Vec::new();
    let mut dc = |dc: &Option<String>| {
        if let Some(dc) = dc {
            query.push(("dc".into(), dc.clone()));
        }
    };
    let path = match dependency {
        Dependency::Service { name, tag, dc: at, near, connect, .. } => {
            dc(at);
            if let Some(tag) = tag {
                query.push(("tag".into(), tag.clone()));
            }
            if let Some(near) = near {
                query.push(("near".into(), near.clone()));
            }
            let kind = if *connect { "connect" } else { "service" };
            format!("/v1/health/{kind}/{name}")
        }
        Dependency::Services { dc: at, .. } => {
            dc(at);
            "/v1/catalog/services".to_owned()
        }
        Dependency::Node { name, dc: at, .. } => {
            dc(at);
            let name = match name {
                Some(name) => name.clone(),
                None => own_node(client)?,
            };
            format!("/v1/catalog/node/{name}")
        }
        Dependency::Nodes { dc: at, near, .. } => {
            dc(at);
            if let Some(near) = near {
                query.push(("near".into(), near.clone()));
            }
            "/v1/catalog/nodes".to_owned()
        }
        Dependency::Key { path, dc: at } => {
            dc(at);
            format!("/v1/kv/{path}")
        }
        Dependency::KeyPrefix { prefix, dc: at } => {
            dc(at);
            query.push(("recurse".into(), String::new()));
            format!("/v1/kv/{prefix}")
        }
        Dependency::Datacenters { .. } => "/v1/catalog/datacenters".to_owned(),
        Dependency::File { .. } => return Err("a file is read, not queried".to_owned()),
    };
    Ok((path, query))
}

/// The agent's own node name (`node` without a name).
fn own_node(client: &Client) -> Result<String, String> {
    let this: Json =
        client.get("/v1/agent/self", &[]).and_then(|reply| reply.json()).map_err(|e| e.to_string())?;
    this["Config"]["NodeName"].as_str().map(str::to_owned).ok_or_else(|| "the agent names no node".to_owned())
}

/// What a dependency's data is when the agent has none (404).
fn absent(dependency: &Dependency) -> Value {
    match dependency {
        Dependency::Key { .. } | Dependency::Node { .. } => Value::Nil,
        _ => Value::list(Vec::new()),
    }
}

/// The API's answer in the shape consul-template's dependency types give it.
fn shape(dependency: &Dependency, body: &Json) -> Value {
    let items = || body.as_array().map(Vec::as_slice).unwrap_or_default();
    match dependency {
        Dependency::Service { status_filter, near, .. } => {
            health_services(items(), status_filter, near.is_some())
        }
        Dependency::Services { .. } => {
            let names = body.as_object().into_iter().flatten();
            Value::list(
                names
                    .map(|(name, tags)| {
                        Value::record(
                            "*dependency.CatalogSnippet",
                            vec![("Name", Value::string(name)), ("Tags", strings(tags))],
                        )
                    })
                    .collect(),
            )
        }
        Dependency::Node { .. } if body.is_null() => Value::Nil,
        Dependency::Node { .. } => catalog_node(body),
        Dependency::Nodes { near, .. } => {
            let mut nodes: Vec<&Json> = items().iter().collect();
            if near.is_none() {
                nodes.sort_by(|a, b| text(&a["Node"]).cmp(&text(&b["Node"])));
            }
            Value::list(nodes.into_iter().map(node).collect())
        }
        Dependency::Key { .. } => {
            items().first().map_or(Value::Nil, |entry| Value::String(decoded(&entry["Value"])))
        }
        Dependency::KeyPrefix { prefix, .. } => {
            Value::list(items().iter().map(|entry| key_pair(entry, prefix)).collect())
        }
        Dependency::Datacenters { .. } => {
            Value::list(items().iter().map(|dc| Value::string(text(dc))).collect())
        }
        Dependency::File { .. } => Value::Nil,
    }
}

fn text(value: &Json) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn int(value: &Json) -> Value {
    Value::Int(value.as_i64().unwrap_or_default())
}

fn strings(value: &Json) -> Value {
    Value::list(value.as_array().into_iter().flatten().map(|item| Value::string(text(item))).collect())
}

fn string_map(value: &Json) -> Value {
    let entries = value.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), Value::string(text(v))));
    Value::map(entries.collect())
}

/// A KV value: base64 in the API, text in the template.
fn decoded(value: &Json) -> String {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text(value)).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// consul-template's `KeyPair`: `Key` is relative to the prefix.
fn key_pair(entry: &Json, prefix: &str) -> Value {
    let path = text(&entry["Key"]);
    let key = path.strip_prefix(prefix).unwrap_or(&path).trim_start_matches('/').to_owned();
    Value::record(
        "*dependency.KeyPair",
        vec![
            ("Path", Value::string(path.clone())),
            ("Key", Value::string(key)),
            ("Value", Value::string(decoded(&entry["Value"]))),
            ("CreateIndex", int(&entry["CreateIndex"])),
            ("ModifyIndex", int(&entry["ModifyIndex"])),
            ("LockIndex", int(&entry["LockIndex"])),
            ("Flags", int(&entry["Flags"])),
            ("Session", Value::string(text(&entry["Session"]))),
        ],
    )
}

fn node(node: &Json) -> Value {
    Value::record(
        "*dependency.Node",
        vec![
            ("ID", Value::string(text(&node["ID"]))),
            ("Node", Value::string(text(&node["Node"]))),
            ("Address", Value::string(text(&node["Address"]))),
            ("Datacenter", Value::string(text(&node["Datacenter"]))),
            ("TaggedAddresses", string_map(&node["TaggedAddresses"])),
            ("Meta", string_map(&node["Meta"])),
        ],
    )
}

/// `node`: the node and its services (sorted by ID).
fn catalog_node(body: &Json) -> Value {
    let mut services: Vec<&Json> =
        body["Services"].as_object().into_iter().flatten().map(|(_, s)| s).collect();
    services.sort_by(|a, b| text(&a["ID"]).cmp(&text(&b["ID"])));
    let services = services
        .into_iter()
        .map(|service| {
            Value::record(
                "*dependency.CatalogNodeService",
                vec![
                    ("ID", Value::string(text(&service["ID"]))),
                    ("Service", Value::string(text(&service["Service"]))),
                    ("Tags", strings(&service["Tags"])),
                    ("Meta", string_map(&service["Meta"])),
                    ("Port", int(&service["Port"])),
                    ("Address", Value::string(text(&service["Address"]))),
                ],
            )
        })
        .collect();
    Value::record(
        "*dependency.CatalogNode",
        vec![("Node", node(&body["Node"])), ("Services", Value::list(services))],
    )
}

/// `service`: the instances whose aggregated status the filters accept, sorted by node then
/// ID unless `~near` sorted them.
fn health_services(entries: &[Json], filters: &[HealthFilter], near: bool) -> Value {
    let mut kept: Vec<(String, String, Value)> = entries
        .iter()
        .filter_map(|entry| {
            let status = aggregated_status(&entry["Checks"]);
            HealthFilter::accepts(filters, status).then(|| {
                let (node, service) = (&entry["Node"], &entry["Service"]);
                (
                    text(&node["Node"]),
                    text(&service["ID"]),
                    health_service(node, service, &entry["Checks"], status),
                )
            })
        })
        .collect();
    if !near {
        kept.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    }
    Value::list(kept.into_iter().map(|(_, _, value)| value).collect())
}

/// Consul's `AggregatedStatus`: maintenance, then critical, then warning, else passing.
fn aggregated_status(checks: &Json) -> &'static str {
    let checks = checks.as_array().map(Vec::as_slice).unwrap_or_default();
    let has = |status: &str| checks.iter().any(|check| check["Status"] == status);
    let maintenance = checks.iter().any(|check| {
        let id = check["CheckID"].as_str().unwrap_or_default();
        id == "_node_maintenance" || id.starts_with("_service_maintenance:")
    });
    if maintenance {
        "maintenance"
    } else if has("critical") {
        "critical"
    } else if has("warning") {
        "warning"
    } else {
        "passing"
    }
}

fn health_service(node: &Json, service: &Json, checks: &Json, status: &str) -> Value {
    let address = match text(&service["Address"]) {
        address if address.is_empty() => text(&node["Address"]),
        address => address,
    };
    let checks = checks
        .as_array()
        .into_iter()
        .flatten()
        .map(|check| {
            let field = |name: &'static str| (name, Value::string(text(&check[name])));
            Value::record(
                "*api.HealthCheck",
                vec![
                    field("Node"),
                    field("CheckID"),
                    field("Name"),
                    field("Status"),
                    field("Notes"),
                    field("Output"),
                    field("ServiceID"),
                    field("ServiceName"),
                    ("ServiceTags", strings(&check["ServiceTags"])),
                ],
            )
        })
        .collect();
    Value::record(
        "*dependency.HealthService",
        vec![
            ("Node", Value::string(text(&node["Node"]))),
            ("NodeID", Value::string(text(&node["ID"]))),
            ("Kind", Value::string(text(&service["Kind"]))),
            ("NodeAddress", Value::string(text(&node["Address"]))),
            ("NodeDatacenter", Value::string(text(&node["Datacenter"]))),
            ("NodeTaggedAddresses", string_map(&node["TaggedAddresses"])),
            ("NodeMeta", string_map(&node["Meta"])),
            ("ServiceMeta", string_map(&service["Meta"])),
            ("Address", Value::string(address)),
            ("ID", Value::string(text(&service["ID"]))),
            ("Name", Value::string(text(&service["Service"]))),
            ("Tags", strings(&service["Tags"])),
            ("Checks", Value::list(checks)),
            ("Status", Value::string(status)),
            ("Port", int(&service["Port"])),
            ("Namespace", Value::string(text(&service["Namespace"]))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_min_or_min_and_max() {
        assert_eq!(wait_times("").unwrap(), None);
        assert_eq!(wait_times("2s").unwrap(), Some((Duration::from_secs(2), Duration::from_secs(8))));
        assert_eq!(wait_times("1s:3s").unwrap(), Some((Duration::from_secs(1), Duration::from_secs(3))));
        assert!(wait_times("3s:1s").is_err());
    }

    #[test]
    fn the_aggregated_status_is_the_worst_check() {
        let checks = |statuses: &[(&str, &str)]| {
            Json::Array(
                statuses
                    .iter()
                    .map(|(id, status)| serde_json::json!({"CheckID": id, "Status": status}))
                    .collect(),
            )
        };
        assert_eq!(aggregated_status(&checks(&[("a", "passing")])), "passing");
        assert_eq!(aggregated_status(&checks(&[("a", "passing"), ("b", "warning")])), "warning");
        assert_eq!(aggregated_status(&checks(&[("a", "critical"), ("b", "warning")])), "critical");
        assert_eq!(aggregated_status(&checks(&[("_node_maintenance", "critical")])), "maintenance");
    }
}
