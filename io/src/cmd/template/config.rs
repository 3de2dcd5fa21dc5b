//! `muster template -config`: consul-template's configuration files (HCL, or JSON), a file or
//! a directory of them, read in order, later settings over earlier ones, flags over all.
//!
//! Read: `consul { address token retry { enabled attempts backoff max_backoff } ssl { enabled
//! verify cert key ca_cert ca_path server_name } }`, `max_stale`, `wait` (`"min:max"` or
//! `{ min max }`), `log_level`, `pid_file`, and each `template { source destination contents
//! command command_timeout perms backup create_dest_dirs error_on_missing_key
//! left_delimiter right_delimiter function_denylist wait }`. A key consul-template does not
//! know is refused, as its decoder refuses it; one it knows that muster does not act on
//! (Vault, Nomad, `exec`, `dedup`, syslog, a template's own `wait`) is named in a warning.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::cmd::CliError;

/// What the files set; `None` where none did.
#[derive(Debug, Default)]
pub(super) struct FileSettings {
    pub(super) address: Option<String>,
    pub(super) token: Option<String>,
    pub(super) retry_enabled: Option<bool>,
    pub(super) retry_attempts: Option<u32>,
    pub(super) retry_backoff: Option<String>,
    pub(super) retry_max_backoff: Option<String>,
    pub(super) ssl_enabled: Option<bool>,
    pub(super) ssl_verify: Option<bool>,
    pub(super) ssl_cert: Option<String>,
    pub(super) ssl_key: Option<String>,
    pub(super) ssl_ca_cert: Option<String>,
    pub(super) ssl_ca_path: Option<String>,
    pub(super) ssl_server_name: Option<String>,
    pub(super) max_stale: Option<String>,
    /// `min:max` (or `min`).
    pub(super) wait: Option<String>,
    pub(super) pid_file: Option<String>,
    pub(super) templates: Vec<TemplateBlock>,
    /// Keys consul-template knows and muster does not act on, to warn of.
    pub(super) ignored: Vec<String>,
}

/// One `template { ... }` block.
#[derive(Debug, Clone)]
pub(super) struct TemplateBlock {
    pub(super) source: Option<String>,
    pub(super) contents: Option<String>,
    pub(super) destination: String,
    /// The command and its arguments (a string runs through `sh -c`).
    pub(super) command: Vec<String>,
    pub(super) command_timeout: Option<Duration>,
    pub(super) perms: Option<u32>,
    pub(super) backup: bool,
    pub(super) create_dest_dirs: bool,
    pub(super) error_on_missing_key: bool,
    pub(super) left_delimiter: Option<String>,
    pub(super) right_delimiter: Option<String>,
    pub(super) function_denylist: Vec<String>,
}

/// Keys consul-template reads that muster accepts without acting on them.
const IGNORED: &[&str] = &[
    "vault",
    "nomad",
    "exec",
    "dedup",
    "syslog",
    "kill_signal",
    "reload_signal",
    "block_query_wait",
    "default_delimiters",
    "once",
    "log_level",
    "template_error_fatal",
    "err_on_failed_lookup",
];

/// Reads every `-config` path in order.
pub(super) fn load(paths: &[String]) -> Result<FileSettings, CliError> {
    let mut settings = FileSettings::default();
    for path in paths {
        for file in files(Path::new(path))? {
            let text = std::fs::read_to_string(&file)
                .map_err(|error| CliError::refused(format!("config: reading {}: {error}", file.display())))?;
            let document = muster::config::hcl1::parse(&text)
                .map_err(|error| CliError::refused(format!("config: parsing {}: {error}", file.display())))?;
            settings
                .merge(document)
                .map_err(|error| CliError::refused(format!("{}: {error}", file.display())))?;
        }
    }
    Ok(settings)
}

/// `path` itself, or the files in it, sorted, as consul-template walks a directory.
fn files(path: &Path) -> Result<Vec<std::path::PathBuf>, CliError> {
    let unreadable =
        |error: std::io::Error| CliError::refused(format!("config: reading {}: {error}", path.display()));
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|file| file.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Why a document is refused, in the words of consul-template's decoder (mapstructure's).
type Refusal = String;

impl FileSettings {
    fn merge(&mut self, document: Map<String, Value>) -> Result<(), Refusal> {
        let mut unknown = Vec::new();
        for (key, value) in document {
            match key.as_str() {
                "consul" => self.merge_consul(object(&key, value)?)?,
                "max_stale" => self.max_stale = Some(duration_text(&key, &value)?),
                "wait" => self.wait = Some(wait_text(&value)?),
                "pid_file" => self.pid_file = Some(string(&key, &value)?),
                "template" => {
                    for block in blocks(value) {
                        self.templates.push(template_block(object("template", block)?)?);
                    }
                }
                name if IGNORED.contains(&name) => self.ignored.push(key),
                _ => unknown.push(key),
            }
        }
        invalid_keys("", &unknown)
    }

    fn merge_consul(&mut self, consul: Map<String, Value>) -> Result<(), Refusal> {
        let mut unknown = Vec::new();
        for (key, value) in consul {
            let at = format!("consul.{key}");
            match key.as_str() {
                "address" => self.address = Some(string(&at, &value)?),
                "token" => self.token = Some(string(&at, &value)?),
                "retry" => {
                    for (name, value) in object(&at, value)? {
                        let at = format!("consul.retry.{name}");
                        match name.as_str() {
                            "enabled" => self.retry_enabled = Some(boolean(&at, &value)?),
                            "attempts" => self.retry_attempts = Some(count(&at, &value)?),
                            "backoff" => self.retry_backoff = Some(duration_text(&at, &value)?),
                            "max_backoff" => self.retry_max_backoff = Some(duration_text(&at, &value)?),
                            _ => unknown.push(format!("retry.{name}")),
                        }
                    }
                }
                "ssl" => {
                    for (name, value) in object(&at, value)? {
                        let at = format!("consul.ssl.{name}");
                        match name.as_str() {
                            "enabled" => self.ssl_enabled = Some(boolean(&at, &value)?),
                            "verify" => self.ssl_verify = Some(boolean(&at, &value)?),
                            "cert" => self.ssl_cert = Some(string(&at, &value)?),
                            "key" => self.ssl_key = Some(string(&at, &value)?),
                            "ca_cert" => self.ssl_ca_cert = Some(string(&at, &value)?),
                            "ca_path" => self.ssl_ca_path = Some(string(&at, &value)?),
                            "server_name" => self.ssl_server_name = Some(string(&at, &value)?),
                            _ => unknown.push(format!("ssl.{name}")),
                        }
                    }
                }
                "auth" | "transport" | "namespace" => self.ignored.push(at),
                _ => unknown.push(key),
            }
        }
        invalid_keys("consul", &unknown)
    }
}

fn template_block(block: Map<String, Value>) -> Result<TemplateBlock, Refusal> {
    let mut template = TemplateBlock {
        source: None,
        contents: None,
        destination: String::new(),
        command: Vec::new(),
        command_timeout: None,
        perms: None,
        backup: false,
        create_dest_dirs: true,
        error_on_missing_key: false,
        left_delimiter: None,
        right_delimiter: None,
        function_denylist: Vec::new(),
    };
    let mut unknown = Vec::new();
    for (key, value) in block {
        let at = format!("template.{key}");
        match key.as_str() {
            "source" => template.source = Some(string(&at, &value)?),
            "contents" => template.contents = Some(string(&at, &value)?),
            "destination" => template.destination = string(&at, &value)?,
            "command" => template.command = command(&at, value)?,
            "command_timeout" => {
                let text = duration_text(&at, &value)?;
                template.command_timeout =
                    Some(muster_core::duration::parse(&text).map_err(|e| format!("{at}: {e}"))?);
            }
            "perms" => template.perms = Some(count(&at, &value)?),
            "backup" => template.backup = boolean(&at, &value)?,
            "create_dest_dirs" => template.create_dest_dirs = boolean(&at, &value)?,
            "error_on_missing_key" => template.error_on_missing_key = boolean(&at, &value)?,
            "left_delimiter" => template.left_delimiter = Some(string(&at, &value)?),
            "right_delimiter" => template.right_delimiter = Some(string(&at, &value)?),
            "function_denylist" | "function_blacklist" => template.function_denylist = strings(&at, value)?,
            // Accepted: the run's own -wait applies to every template.
            "wait" | "sandbox_path" | "exec" | "uid" | "gid" | "user" | "group" => {}
            _ => unknown.push(key),
        }
    }
    invalid_keys("template", &unknown)?;
    match (&template.source, &template.contents, template.destination.is_empty()) {
        (Some(_), Some(_), _) => Err("template: source and contents are mutually exclusive".to_owned()),
        (None, None, _) => Err("template: must specify exactly one of source or contents".to_owned()),
        (_, _, true) => Err("template: missing destination".to_owned()),
        _ => Ok(template),
    }
}

/// A repeated block is an array of objects, a single one an object.
fn blocks(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

fn invalid_keys(at: &str, unknown: &[String]) -> Result<(), Refusal> {
    if unknown.is_empty() {
        return Ok(());
    }
    Err(format!("1 error(s) decoding:\n\n* '{at}' has invalid keys: {}", unknown.join(", ")))
}

fn object(at: &str, value: Value) -> Result<Map<String, Value>, Refusal> {
    match value {
        Value::Object(map) => Ok(map),
        // A block given twice where one is expected: the later one wins.
        Value::Array(items) => items.into_iter().try_fold(Map::new(), |mut merged, item| {
            merged.extend(object(at, item)?);
            Ok(merged)
        }),
        other => Err(format!("'{at}' expected a map, got '{}'", kind(&other))),
    }
}

fn string(at: &str, value: &Value) -> Result<String, Refusal> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("'{at}' expected type 'string', got '{}'", kind(value)))
}

fn boolean(at: &str, value: &Value) -> Result<bool, Refusal> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) => crate::goflag::parse_go_bool(text).ok_or_else(|| {
            format!("cannot parse '{at}' as bool: strconv.ParseBool: parsing {text:?}: invalid syntax")
        }),
        other => Err(format!("'{at}' expected type 'bool', got '{}'", kind(other))),
    }
}

fn count(at: &str, value: &Value) -> Result<u32, Refusal> {
    let parsed = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => {
            u64::from_str_radix(text.trim_start_matches("0o"), if text.starts_with('0') { 8 } else { 10 })
                .ok()
        }
        _ => None,
    };
    parsed
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("'{at}' expected a whole number, got {value}"))
}

/// A duration as consul-template takes it: Go's notation, or a number of nanoseconds.
fn duration_text(at: &str, value: &Value) -> Result<String, Refusal> {
    match value {
        Value::String(text) => {
            muster_core::duration::parse(text).map_err(|error| format!("{at}: {error}"))?;
            Ok(text.clone())
        }
        Value::Number(number) => Ok(format!("{}ns", number.as_u64().unwrap_or(0))),
        other => Err(format!("'{at}' expected a duration, got '{}'", kind(other))),
    }
}

/// `wait = "5s:10s"` or `wait { min = "5s" max = "10s" }`, as `min:max`.
fn wait_text(value: &Value) -> Result<String, Refusal> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Object(_) | Value::Array(_) => {
            let map = object("wait", value.clone())?;
            let min = map.get("min").map(|v| duration_text("wait.min", v)).transpose()?;
            let max = map.get("max").map(|v| duration_text("wait.max", v)).transpose()?;
            Ok(match (min, max) {
                (Some(min), Some(max)) => format!("{min}:{max}"),
                (Some(min), None) => min,
                (None, _) => String::new(),
            })
        }
        other => Err(format!("'wait' expected a string or a map, got '{}'", kind(other))),
    }
}

/// `command = "reload nginx"` (through `sh -c`) or `command = ["nginx", "-s", "reload"]`.
fn command(at: &str, value: Value) -> Result<Vec<String>, Refusal> {
    match value {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec!["sh".to_owned(), "-c".to_owned(), text]),
        list @ Value::Array(_) => strings(at, list),
        other => Err(format!("'{at}' expected a string or a list, got '{}'", kind(&other))),
    }
}

fn strings(at: &str, value: Value) -> Result<Vec<String>, Refusal> {
    match value {
        Value::Array(items) => items.iter().map(|item| string(at, item)).collect(),
        other => Err(format!("'{at}' expected a list, got '{}'", kind(&other))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}
