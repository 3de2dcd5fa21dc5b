//! `muster operator autopilot get-config|set-config|state`, as Consul 1.20's
//! `command/operator/autopilot/{get,set,state}` print them: the configuration one `Key = value`
//! line each, a check-and-set update (read, change what the flags set, `PUT ?cas=<ModifyIndex>`),
//! and the state as Consul's pretty text or re-encoded JSON.
//!
//! The Enterprise-only settings (`-redundancy-zone-tag`, `-disable-upgrade-migration`,
//! `-upgrade-version-tag`) are taken and sent as Consul's community edition takes and sends them:
//! stored, and acted on by no one.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CliError, Client, HttpArgs, Outcome};
use crate::cli::GoSetError;

/// `muster operator autopilot <subcommand>`.
#[derive(Debug, Subcommand)]
pub(crate) enum AutopilotCommand {
    /// Shows the Autopilot configuration.
    GetConfig(GetConfigArgs),
    /// Changes the Autopilot configuration.
    SetConfig(SetConfigArgs),
    /// Shows Autopilot's view of the servers.
    State(StateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GetConfigArgs {
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SetConfigArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Whether dead servers are removed when new ones are added: true or false.
    #[arg(long = "cleanup-dead-servers", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    cleanup_dead_servers: Option<bool>,
    /// How many log entries a server may trail the leader by and still be healthy.
    #[arg(long = "max-trailing-logs", value_parser = go_uint)]
    max_trailing_logs: Option<u64>,
    /// How many servers there must be before Autopilot removes dead ones.
    #[arg(long = "min-quorum", value_parser = go_uint)]
    min_quorum: Option<u64>,
    /// How long a server may go without contact from the leader and still be healthy (`200ms`).
    #[arg(long = "last-contact-threshold", value_parser = go_duration)]
    last_contact_threshold: Option<Duration>,
    /// How long a new server must be healthy before it is promoted (`10s`).
    #[arg(long = "server-stabilization-time", value_parser = go_duration)]
    server_stabilization_time: Option<Duration>,
    /// (Enterprise-only) The node_meta tag separating servers into redundancy zones.
    #[arg(long = "redundancy-zone-tag")]
    redundancy_zone_tag: Option<String>,
    /// (Enterprise-only) Whether new servers are promoted without an upgrade migration.
    #[arg(long = "disable-upgrade-migration", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = go_bool)]
    disable_upgrade_migration: Option<bool>,
    /// (Enterprise-only) The node_meta tag holding version info for upgrade migrations.
    #[arg(long = "upgrade-version-tag")]
    upgrade_version_tag: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StateArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
}

/// `flags.BoolValue`: `strconv.ParseBool`, its error in Go's words.
fn go_bool(text: &str) -> Result<bool, GoSetError> {
    crate::goflag::parse_go_bool(text)
        .ok_or_else(|| GoSetError(format!("strconv.ParseBool: parsing {text:?}: invalid syntax")))
}

/// `flags.UintValue`: `strconv.ParseUint(v, 0, 64)` (a `0x`, `0o`, `0b` or `0` prefix picks the
/// base, `_` may separate digits after one).
fn go_uint(text: &str) -> Result<u64, GoSetError> {
    let invalid = || GoSetError(format!("strconv.ParseUint: parsing {text:?}: invalid syntax"));
    let lower = text.to_ascii_lowercase();
    let (digits, radix, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (rest, 16, true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (rest, 8, true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (rest, 2, true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (&lower[1..], 8, true)
    } else {
        (lower.as_str(), 10, false)
    };
    // Go takes underscores only with a base prefix, between digits.
    if digits.ends_with('_') || digits.contains("__") {
        return Err(invalid());
    }
    if !prefixed && digits.contains('_') {
        return Err(invalid());
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid());
    }
    u64::from_str_radix(&digits, radix)
        .map_err(|_| GoSetError(format!("strconv.ParseUint: parsing {text:?}: value out of range")))
}

/// `flags.DurationValue`: `time.ParseDuration`, its error in Go's words.
fn go_duration(text: &str) -> Result<Duration, GoSetError> {
    muster_core::duration::parse(text).map_err(|error| GoSetError(error.to_string()))
}

pub(crate) fn run(command: AutopilotCommand) -> Outcome {
    match command {
        AutopilotCommand::GetConfig(args) => get_config(&args),
        AutopilotCommand::SetConfig(args) => set_config(&args),
        AutopilotCommand::State(args) => state(&args),
    }
}

/// Consul's `api.AutopilotConfiguration`, its fields in its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Configuration {
    #[serde(default)]
    cleanup_dead_servers: bool,
    #[serde(default, with = "readable_duration")]
    last_contact_threshold: Duration,
    #[serde(default)]
    max_trailing_logs: u64,
    #[serde(default)]
    min_quorum: u64,
    #[serde(default, with = "readable_duration")]
    server_stabilization_time: Duration,
    #[serde(default)]
    redundancy_zone_tag: String,
    #[serde(default)]
    disable_upgrade_migration: bool,
    #[serde(default)]
    upgrade_version_tag: String,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

impl Configuration {
    /// Consul's `get-config` lines.
    fn lines(&self) -> String {
        let format = muster_core::duration::format;
        [
            format!("CleanupDeadServers = {}", self.cleanup_dead_servers),
            format!("LastContactThreshold = {}", format(self.last_contact_threshold)),
            format!("MaxTrailingLogs = {}", self.max_trailing_logs),
            format!("MinQuorum = {}", self.min_quorum),
            format!("ServerStabilizationTime = {}", format(self.server_stabilization_time)),
            format!("RedundancyZoneTag = {}", muster_core::go_quote::quote(&self.redundancy_zone_tag)),
            format!("DisableUpgradeMigration = {}", self.disable_upgrade_migration),
            format!("UpgradeVersionTag = {}", muster_core::go_quote::quote(&self.upgrade_version_tag)),
        ]
        .map(|line| line + "\n")
        .concat()
    }
}

fn get_config(args: &GetConfigArgs) -> Outcome {
    let client = Client::build(&args.http).map_err(CliError::client("Error initializing client"))?;
    let configuration: Configuration = client
        .get("/v1/operator/autopilot/configuration", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error querying Autopilot configuration"))?;
    print!("{}", configuration.lines());
    Ok(0)
}

fn set_config(args: &SetConfigArgs) -> Outcome {
    // Consul reads the configuration without `-stale`, whatever the flag says.
    let client = Client::build(&HttpArgs { stale: false, ..args.http.clone() })
        .map_err(CliError::client("Error initializing client"))?;
    let mut configuration: Configuration = client
        .get("/v1/operator/autopilot/configuration", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error querying Autopilot configuration"))?;
    apply(args, &mut configuration);
    let body = serde_json::to_vec(&configuration).expect("the configuration serializes");
    let cas = configuration.modify_index.to_string();
    let reply = client
        .put("/v1/operator/autopilot/configuration", &[("cas", &cas)], &body)
        .and_then(|reply| reply.ok())
        .map_err(CliError::client("Error setting Autopilot configuration"))?;
    // Consul's client looks for `true` anywhere in the answer.
    if String::from_utf8_lossy(&reply).contains("true") {
        println!("Configuration updated!");
        Ok(0)
    } else {
        println!("Configuration could not be atomically updated, please try again");
        Ok(1)
    }
}

/// The flags given, laid over the configuration read (Consul's `Merge`s).
fn apply(args: &SetConfigArgs, configuration: &mut Configuration) {
    if let Some(on) = args.cleanup_dead_servers {
        configuration.cleanup_dead_servers = on;
    }
    if let Some(tag) = &args.redundancy_zone_tag {
        configuration.redundancy_zone_tag = tag.clone();
    }
    if let Some(on) = args.disable_upgrade_migration {
        configuration.disable_upgrade_migration = on;
    }
    if let Some(tag) = &args.upgrade_version_tag {
        configuration.upgrade_version_tag = tag.clone();
    }
    if let Some(quorum) = args.min_quorum {
        configuration.min_quorum = quorum;
    }
    if let Some(logs) = args.max_trailing_logs {
        configuration.max_trailing_logs = logs;
    }
    if let Some(threshold) = args.last_contact_threshold {
        configuration.last_contact_threshold = threshold;
    }
    if let Some(time) = args.server_stabilization_time {
        configuration.server_stabilization_time = time;
    }
}

/// Consul's `api.AutopilotState`, its fields in its order (`omitempty` where Consul has it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(default)]
    healthy: bool,
    #[serde(default)]
    failure_tolerance: i64,
    #[serde(default)]
    optimistic_failure_tolerance: i64,
    #[serde(default)]
    servers: Option<BTreeMap<String, Server>>,
    #[serde(default)]
    leader: String,
    #[serde(default)]
    voters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    read_replicas: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    redundancy_zones: Option<BTreeMap<String, Zone>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upgrade: Option<Upgrade>,
}

/// Consul's `api.AutopilotServer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Server {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    node_status: String,
    #[serde(default)]
    version: String,
    #[serde(default, with = "readable_duration")]
    last_contact: Duration,
    #[serde(default)]
    last_term: u64,
    #[serde(default)]
    last_index: u64,
    #[serde(default)]
    healthy: bool,
    /// Go's `time.Time` in RFC 3339, kept as the agent wrote it.
    #[serde(default = "zero_time")]
    stable_since: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    redundancy_zone: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    upgrade_version: String,
    #[serde(default)]
    read_replica: bool,
    #[serde(default)]
    status: String,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    node_type: String,
}

/// Consul's `api.AutopilotZone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Zone {
    #[serde(default)]
    servers: Option<Vec<String>>,
    #[serde(default)]
    voters: Option<Vec<String>>,
    #[serde(default)]
    failure_tolerance: i64,
}

/// Consul's `api.AutopilotUpgrade` (Enterprise: an agent of the community edition sends none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upgrade {
    #[serde(default)]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    target_version: String,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    target_version_voters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    target_version_non_voters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    target_version_read_replicas: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    other_version_voters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    other_version_non_voters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    other_version_read_replicas: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    redundancy_zones: Option<BTreeMap<String, Value>>,
}

fn is_empty_list(list: &Option<Vec<String>>) -> bool {
    list.as_ref().is_none_or(Vec::is_empty)
}

fn is_empty_map<V>(map: &Option<BTreeMap<String, V>>) -> bool {
    map.as_ref().is_none_or(BTreeMap::is_empty)
}

/// Go's zero `time.Time`, as it encodes.
fn zero_time() -> String {
    "0001-01-01T00:00:00Z".to_owned()
}

fn state(args: &StateArgs) -> Outcome {
    let client = Client::build(&args.http).map_err(CliError::client("Error initializing client"))?;
    let state: State = client
        .get("/v1/operator/autopilot/state", &[])
        .and_then(|reply| reply.json())
        .map_err(CliError::client("Error querying Autopilot state"))?;
    let text = match args.format.as_str() {
        "pretty" => pretty(&state),
        "json" => {
            // Go's `json.MarshalIndent(state, "", "    ")`.
            let mut bytes = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
            state.serialize(&mut serializer).expect("the state serializes");
            String::from_utf8(bytes).expect("JSON is UTF-8")
        }
        other => return Err(CliError::Usage(format!("Unknown format: {other}"))),
    };
    // Consul's `UI.Info` adds a line end to what may already end with one.
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(0)
}

/// Consul's pretty formatter (`command/operator/autopilot/state/formatter.go`).
fn pretty(state: &State) -> String {
    let mut out = String::new();
    let list = |out: &mut String, indent: &str, values: &Option<Vec<String>>| {
        for value in values.iter().flatten() {
            out.push_str(&format!("{indent}{value}\n"));
        }
    };
    out.push_str(&format!("Healthy:                      {}\n", state.healthy));
    out.push_str(&format!("Failure Tolerance:            {}\n", state.failure_tolerance));
    out.push_str(&format!("Optimistic Failure Tolerance: {}\n", state.optimistic_failure_tolerance));
    out.push_str(&format!("Leader:                       {}\n", state.leader));
    out.push_str("Voters:\n");
    list(&mut out, "   ", &state.voters);
    if !is_empty_list(&state.read_replicas) {
        out.push_str("Read Replicas:\n");
        list(&mut out, "   ", &state.read_replicas);
    }
    if !is_empty_map(&state.redundancy_zones) {
        out.push_str("Redundancy Zones:\n");
        for (name, zone) in state.redundancy_zones.iter().flatten() {
            out.push_str(&format!("   {name}:\n"));
            out.push_str(&format!("      Failure Tolerance: {}\n", zone.failure_tolerance));
            out.push_str("      Voters:\n");
            list(&mut out, "         ", &zone.voters);
            out.push_str("      Servers:\n");
            list(&mut out, "         ", &zone.servers);
        }
    }
    if let Some(upgrade) = &state.upgrade {
        out.push_str("Upgrade:\n");
        out.push_str(&format!("   Status:         {}\n", upgrade.status));
        out.push_str(&format!("   Target Version: {}\n", upgrade.target_version));
        let groups = [
            ("Target Version Voters", &upgrade.target_version_voters),
            ("Target Version Non-Voters", &upgrade.target_version_non_voters),
            ("Target Version ReadReplicas", &upgrade.target_version_read_replicas),
            ("Other Version Voters", &upgrade.other_version_voters),
            ("Other Version Non-Voters", &upgrade.other_version_non_voters),
            ("Other Version ReadReplicas", &upgrade.other_version_read_replicas),
        ];
        for (title, values) in groups {
            if !is_empty_list(values) {
                out.push_str(&format!("   {title}:\n"));
                list(&mut out, "      ", values);
            }
        }
    }
    out.push_str("Servers:\n");
    for server in state.servers.iter().flat_map(BTreeMap::values) {
        out.push_str(&pretty_server(server));
    }
    out
}

fn pretty_server(server: &Server) -> String {
    let mut out = format!("   {}\n", server.id);
    let mut field = |name: &str, value: &dyn std::fmt::Display| {
        out.push_str(&format!("      {:<17}{value}\n", format!("{name}:")));
    };
    field("Name", &server.name);
    field("Address", &server.address);
    field("Version", &server.version);
    field("Status", &server.status);
    field("Node Type", &server.node_type);
    field("Node Status", &server.node_status);
    field("Healthy", &server.healthy);
    field("Last Contact", &muster_core::duration::format(server.last_contact));
    field("Last Term", &server.last_term);
    field("Last Index", &server.last_index);
    if !server.redundancy_zone.is_empty() {
        field("Redundancy Zone", &server.redundancy_zone);
    }
    if !server.upgrade_version.is_empty() {
        field("Upgrade Version", &server.upgrade_version);
    }
    if server.read_replica {
        field("Read Replica", &server.read_replica);
    }
    if let Some(meta) = server.meta.as_ref().filter(|meta| !meta.is_empty()) {
        out.push_str("      Meta\n");
        for (key, value) in meta {
            out.push_str(&format!(
                "         {}: {}\n",
                muster_core::go_quote::quote(key),
                muster_core::go_quote::quote(value)
            ));
        }
    }
    out
}

/// Consul's `api.ReadableDuration`: a Go duration string (`"200ms"`), or a number of
/// nanoseconds, in; a Go duration string out.
mod readable_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&muster_core::duration::format(*duration))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => {
                muster_core::duration::parse(&text).map_err(serde::de::Error::custom)
            }
            serde_json::Value::Number(nanos) => {
                let nanos = nanos.as_f64().unwrap_or_default().max(0.0);
                Ok(Duration::from_nanos(nanos as u64))
            }
            serde_json::Value::Null => Ok(Duration::ZERO),
            other => Err(serde::de::Error::custom(format!("not a duration: {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_prints_consuls_lines() {
        let configuration: Configuration = serde_json::from_str(
            r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,
                "MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"",
                "DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":5,"ModifyIndex":7}"#,
        )
        .unwrap();
        assert_eq!(
            configuration.lines(),
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
             MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n\
             DisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n"
        );
        // What set-config sends back: every field, in Consul's order, durations as Go prints.
        assert_eq!(
            serde_json::to_string(&configuration).unwrap(),
            r#"{"CleanupDeadServers":true,"LastContactThreshold":"200ms","MaxTrailingLogs":250,"MinQuorum":0,"ServerStabilizationTime":"10s","RedundancyZoneTag":"","DisableUpgradeMigration":false,"UpgradeVersionTag":"","CreateIndex":5,"ModifyIndex":7}"#
        );
    }

    /// Consul's `testdata/ce/state.json` and `pretty.golden`
    /// (`command/operator/autopilot/state`), for the first server.
    #[test]
    fn state_prints_as_consuls_pretty_formatter() {
        let state: State = serde_json::from_str(
            r#"{"Healthy":true,"FailureTolerance":1,"OptimisticFailureTolerance":0,
                "Servers":{"79324811-9588-4311-b208-f272e38aaabf":{
                  "ID":"79324811-9588-4311-b208-f272e38aaabf","Name":"node1",
                  "Address":"198.18.0.1:8300","NodeStatus":"alive","Version":"1.9.0",
                  "LastContact":"0s","LastTerm":3,"LastIndex":42,"Healthy":true,
                  "StableSince":"2020-11-06T14:51:00Z","Status":"leader",
                  "Meta":{"foo":"bar"},"NodeType":"voter"}},
                "Leader":"79324811-9588-4311-b208-f272e38aaabf",
                "Voters":["79324811-9588-4311-b208-f272e38aaabf"]}"#,
        )
        .unwrap();
        assert_eq!(
            pretty(&state),
            "Healthy:                      true\n\
             Failure Tolerance:            1\n\
             Optimistic Failure Tolerance: 0\n\
             Leader:                       79324811-9588-4311-b208-f272e38aaabf\n\
             Voters:\n   79324811-9588-4311-b208-f272e38aaabf\n\
             Servers:\n   79324811-9588-4311-b208-f272e38aaabf\n\
             \x20     Name:            node1\n\
             \x20     Address:         198.18.0.1:8300\n\
             \x20     Version:         1.9.0\n\
             \x20     Status:          leader\n\
             \x20     Node Type:       voter\n\
             \x20     Node Status:     alive\n\
             \x20     Healthy:         true\n\
             \x20     Last Contact:    0s\n\
             \x20     Last Term:       3\n\
             \x20     Last Index:      42\n\
             \x20     Meta\n\
             \x20        \"foo\": \"bar\"\n"
        );
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        state.serialize(&mut serde_json::Serializer::with_formatter(&mut bytes, formatter)).unwrap();
        let json = String::from_utf8(bytes).unwrap();
        assert!(
            json.contains("\"StableSince\": \"2020-11-06T14:51:00Z\",\n            \"ReadReplica\": false,")
        );
        assert!(!json.contains("ReadReplicas") && !json.contains("Upgrade\""), "{json}");
    }

    #[test]
    fn flag_values_read_as_go_reads_them() {
        assert_eq!(go_uint("250").unwrap(), 250);
        assert_eq!(go_uint("0x10").unwrap(), 16);
        assert_eq!(go_uint("010").unwrap(), 8);
        assert_eq!(go_uint("1_000").unwrap_err().0, "strconv.ParseUint: parsing \"1_000\": invalid syntax");
        assert_eq!(go_uint("-1").unwrap_err().0, "strconv.ParseUint: parsing \"-1\": invalid syntax");
        assert_eq!(go_bool("maybe").unwrap_err().0, "strconv.ParseBool: parsing \"maybe\": invalid syntax");
        assert_eq!(go_duration("5").unwrap_err().0, "time: missing unit in duration \"5\"");
        assert_eq!(muster_core::go_quote::quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
