//! The `telemetry` block of the configuration: [`TelemetryConfig`] and [`parse_config`], with
//! Consul's errors and warnings.

use std::time::Duration;

use serde_json::Value;

use super::render::go_float_g;

/// The `telemetry` block's settings muster acts on (Consul's `lib.TelemetryConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Prefix of every name (`consul`).
    pub metrics_prefix: String,
    /// Never put the host name in gauge names.
    pub disable_hostname: bool,
    /// How long Prometheus keeps a series nobody updates; zero when not set (Consul then has no
    /// Prometheus sink; muster serves it anyway, see the module doc).
    pub prometheus_retention_time: Duration,
    /// Whether a metric no rule of `prefix_filter` names is recorded.
    pub filter_default: bool,
    /// Rules `+prefix` (record) and `-prefix` (do not), as written.
    pub prefix_filter: Vec<String>,
    /// A statsd server (UDP), `host:port`.
    pub statsd_address: Option<String>,
    /// A statsite server (TCP), `host:port`.
    pub statsite_address: Option<String>,
    /// A dogstatsd server (UDP), `host:port`.
    pub dogstatsd_addr: Option<String>,
    /// Tags (`name:value`) dogstatsd gets with every metric.
    pub dogstatsd_tags: Vec<String>,
}

impl Default for TelemetryConfig {
    /// Consul's defaults (`agent/config/default.go`).
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            metrics_prefix: "consul".to_owned(),
            disable_hostname: false,
            prometheus_retention_time: Duration::ZERO,
            filter_default: true,
            prefix_filter: Vec::new(),
            statsd_address: None,
            statsite_address: None,
            dogstatsd_addr: None,
            dogstatsd_tags: Vec::new(),
        }
    }
}

impl TelemetryConfig {
    /// `prefix_filter` as Consul's builder splits it (`parsePrefixFilter`): the allowed
    /// prefixes, the blocked ones, and the warnings for rules that are neither. Unless a rule
    /// names it, `<prefix>.rpc.server.call` is blocked, as Consul blocks it by default (muster
    /// does not emit it; kept so the lists are Consul's).
    pub fn prefix_rules(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let (mut allowed, mut blocked, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
        let server_call = format!("{}.rpc.server.call", self.metrics_prefix);
        let mut named = false;
        for rule in &self.prefix_filter {
            match rule.as_bytes().first() {
                None => warnings.push("Cannot have empty filter rule in prefix_filter".to_owned()),
                Some(b'+') => {
                    named |= rule[1..] == server_call;
                    allowed.push(rule[1..].to_owned());
                }
                Some(b'-') => {
                    named |= rule[1..] == server_call;
                    blocked.push(rule[1..].to_owned());
                }
                Some(_) => warnings.push(format!("Filter rule must begin with either '+' or '-': {rule:?}")),
            }
        }
        if !named {
            blocked.push(server_call);
        }
        (allowed, blocked, warnings)
    }

    /// Whether a sink besides the in-memory one is configured: Consul inserts the host name into
    /// gauge names only then.
    pub(super) fn has_external_sink(&self) -> bool {
        !self.prometheus_retention_time.is_zero()
            || self.statsd_address.is_some()
            || self.statsite_address.is_some()
            || self.dogstatsd_addr.is_some()
    }
}

/// A parsed `telemetry` block and what Consul warns about in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTelemetry {
    /// The settings.
    pub config: TelemetryConfig,
    /// Warnings (`prefix_filter` rules Consul ignores).
    pub warnings: Vec<String>,
}

/// Reads a config file's `telemetry` object (keys as Consul spells them; `null` or absent keys
/// keep Consul's defaults) into its settings, with Consul's errors for values of the wrong type
/// (mapstructure's words, JSON's Go types) or a bad duration (the builder's). Keys muster does
/// not act on (`circonus_*`, `retry_failed_connection`, ...) are the config reader's to accept
/// or refuse; they are skipped here.
pub fn parse_config(telemetry: &Value) -> Result<ParsedTelemetry, Vec<String>> {
    let mut config = TelemetryConfig::default();
    let object = match telemetry {
        Value::Null => return Ok(ParsedTelemetry { config, warnings: Vec::new() }),
        Value::Object(object) => object,
        // HCL's one-element list of blocks (`HookWeakDecodeFromSlice`).
        Value::Array(items) if items.len() == 1 && items[0].is_object() => {
            items[0].as_object().expect("checked to be an object")
        }
        other => return Err(vec![format!("'telemetry' expected a map, got '{}'", go_kind(other))]),
    };
    let mut errors = Vec::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let at = format!("telemetry.{key}");
        // mapstructure matches field names case-insensitively.
        match key.to_ascii_lowercase().as_str() {
            "metrics_prefix" => {
                if let Some(text) = string_value(&at, value, &mut errors) {
                    config.metrics_prefix = text;
                }
            }
            "disable_hostname" => {
                if let Some(flag) = bool_value(&at, value, &mut errors) {
                    config.disable_hostname = flag;
                }
            }
            "filter_default" => {
                if let Some(flag) = bool_value(&at, value, &mut errors) {
                    config.filter_default = flag;
                }
            }
            "prometheus_retention_time" => {
                if let Some(text) = string_value(&at, value, &mut errors) {
                    match muster_core::duration::parse(&text) {
                        Ok(duration) => config.prometheus_retention_time = duration,
                        // Go takes a negative duration; it is not positive, so no Prometheus sink.
                        Err(muster_core::duration::DurationError::Negative(_)) => {
                            config.prometheus_retention_time = Duration::ZERO;
                        }
                        Err(error) => {
                            errors.push(format!(
                                "prometheus_retention_time: invalid duration: {text:?}: {error}"
                            ));
                        }
                    }
                }
            }
            "prefix_filter" => {
                if let Some(rules) = strings_value(&at, value, &mut errors) {
                    config.prefix_filter = rules;
                }
            }
            "dogstatsd_tags" => {
                if let Some(tags) = strings_value(&at, value, &mut errors) {
                    config.dogstatsd_tags = tags;
                }
            }
            "statsd_address" => config.statsd_address = address_value(&at, value, &mut errors),
            "statsite_address" => config.statsite_address = address_value(&at, value, &mut errors),
            "dogstatsd_addr" => config.dogstatsd_addr = address_value(&at, value, &mut errors),
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (_, _, warnings) = config.prefix_rules();
    Ok(ParsedTelemetry { config, warnings })
}

fn string_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        other => {
            errors.push(unconvertible(at, "string", other));
            None
        }
    }
}

fn bool_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        other => {
            errors.push(unconvertible(at, "bool", other));
            None
        }
    }
}

fn strings_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        errors.push(format!("'{at}': source data must be an array or slice, got {}", go_kind(value)));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::String(text) => out.push(text.clone()),
            Value::Null => out.push(String::new()),
            other => errors.push(unconvertible(&format!("{at}[{index}]"), "string", other)),
        }
    }
    (out.len() == items.len()).then_some(out)
}

/// An address: empty means none, as in Consul.
fn address_value(at: &str, value: &Value, errors: &mut Vec<String>) -> Option<String> {
    string_value(at, value, errors).filter(|address| !address.is_empty())
}

/// mapstructure's error for a value of the wrong type.
fn unconvertible(at: &str, expected: &str, value: &Value) -> String {
    format!(
        "'{at}' expected type '{expected}', got unconvertible type '{}', value: '{}'",
        go_type(value),
        go_value(value)
    )
}

/// The Go type `encoding/json` decodes `value` into.
fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Its `reflect.Kind`, as mapstructure names it in slice errors.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// `value` as Go's `%v` prints it.
fn go_value(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => go_float_g(number.as_f64().unwrap_or_default()),
        Value::String(text) => text.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(go_value).collect::<Vec<_>>().join(" ")),
        Value::Object(map) => {
            let mut pairs: Vec<String> =
                map.iter().map(|(key, value)| format!("{key}:{}", go_value(value))).collect();
            pairs.sort();
            format!("map[{}]", pairs.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telemetry_block_parses_with_consuls_errors_and_warnings() {
        let parsed = parse_config(&serde_json::json!({
            "metrics_prefix": "muster",
            "disable_hostname": true,
            "prometheus_retention_time": "30s",
            "prefix_filter": ["+muster.raft", "", "nix"],
            "statsd_address": "127.0.0.1:8125",
            "dogstatsd_addr": "",
            "dogstatsd_tags": ["env:prod"],
            "circonus_api_token": "ignored here"
        }))
        .unwrap();
        assert_eq!(parsed.config.metrics_prefix, "muster");
        assert_eq!(parsed.config.prometheus_retention_time, Duration::from_secs(30));
        assert_eq!(parsed.config.statsd_address.as_deref(), Some("127.0.0.1:8125"));
        assert_eq!(parsed.config.dogstatsd_addr, None);
        assert_eq!(
            parsed.warnings,
            [
                "Cannot have empty filter rule in prefix_filter",
                "Filter rule must begin with either '+' or '-': \"nix\""
            ]
        );
        assert_eq!(parse_config(&Value::Null).unwrap().config, TelemetryConfig::default());
        let errors = parse_config(&serde_json::json!({
            "disable_hostname": "yes",
            "prometheus_retention_time": "60",
            "prefix_filter": "+consul",
            "dogstatsd_tags": [1],
        }))
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "'telemetry.disable_hostname' expected type 'bool', got unconvertible type 'string', value: 'yes'",
                "prometheus_retention_time: invalid duration: \"60\": time: missing unit in duration \"60\"",
                "'telemetry.prefix_filter': source data must be an array or slice, got string",
                "'telemetry.dogstatsd_tags[0]' expected type 'string', got unconvertible type 'float64', value: '1'",
            ]
        );
    }
}
