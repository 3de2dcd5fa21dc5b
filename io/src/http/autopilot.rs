//! `/v1/operator/autopilot/{configuration,health,state}`: autopilot's settings as the
//! replicated state holds them (read in any consistency mode, set whole or by check-and-set),
//! and the servers' health as the leader's autopilot last judged it
//! (`muster_core::autopilot`, run by [`crate::tasks::leader`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use muster_core::autopilot::Config;
use muster_core::fsm::{AutopilotSet, Command, Response as FsmResponse};
use muster_core::swim::Status;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{json, Api, AutopilotReport, ConsensusError, HttpError, Query, ServerReport};

pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/operator/autopilot/configuration", get(configuration).put(set_configuration))
        .route("/v1/operator/autopilot/health", get(health))
        .route("/v1/operator/autopilot/state", get(state))
}

/// Consul's `api.AutopilotConfiguration`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigJson {
    cleanup_dead_servers: bool,
    last_contact_threshold: String,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: String,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
    create_index: u64,
    modify_index: u64,
}

async fn configuration(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let options = match api.prepare_read(&query).await {
        Ok(options) => options,
        Err(error) => return error.into_response(),
    };
    let (index, entry) =
        match api.read(options, Vec::new, |fsm| (fsm.applied(), fsm.autopilot().cloned())).await {
            Ok(read) => read,
            Err(error) => return error.into_response(),
        };
    let Some(entry) = entry else {
        return HttpError::internal("autopilot config not initialized yet").into_response();
    };
    let config = &entry.config;
    let shown = ConfigJson {
        cleanup_dead_servers: config.cleanup_dead_servers,
        last_contact_threshold: muster_core::duration::format(config.last_contact_threshold),
        max_trailing_logs: config.max_trailing_logs,
        min_quorum: config.min_quorum,
        server_stabilization_time: muster_core::duration::format(config.server_stabilization),
        redundancy_zone_tag: config.redundancy_zone_tag.clone(),
        disable_upgrade_migration: config.disable_upgrade_migration,
        upgrade_version_tag: config.upgrade_version_tag.clone(),
        create_index: entry.create_index,
        modify_index: entry.modify_index,
    };
    (api.meta_headers(index), json(&query, &shown)).into_response()
}

async fn set_configuration(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let query = Query::parse(raw.as_deref());
    if let Err(error) = api.check_datacenter(&query) {
        return error.into_response();
    }
    let config = match decode_config(&body) {
        Ok(config) => config,
        Err(reason) => {
            return HttpError::bad_request(format!("Error parsing autopilot config: {reason}"))
                .into_response()
        }
    };
    let cas = match query.get("cas").map(str::parse::<u64>).transpose() {
        Ok(cas) => cas,
        Err(error) => {
            return HttpError::bad_request(format!(
                "Error parsing cas value: {}",
                go_parse_uint_error(query.get("cas").unwrap_or_default(), &error)
            ))
            .into_response()
        }
    };
    match api.write(&Command::AutopilotSet(AutopilotSet { config, cas })).await {
        // Consul answers `true` to a plain write whatever happened, and the CAS outcome to a CAS.
        Ok(FsmResponse::Bool(done)) => json(&query, &(cas.is_none() || done)).into_response(),
        Ok(other) => HttpError::internal(format!("unexpected answer {other:?}")).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Go's `strconv.ParseUint` error text.
fn go_parse_uint_error(text: &str, error: &std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    let why = match error.kind() {
        IntErrorKind::PosOverflow => "value out of range",
        _ => "invalid syntax",
    };
    format!("strconv.ParseUint: parsing {text:?}: {why}")
}

/// Why a body is not an `api.AutopilotConfiguration`, in the words of Go's `encoding/json`.
#[derive(Debug, thiserror::Error)]
enum ConfigDecodeError {
    /// Not JSON.
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("json: cannot unmarshal into Go value of type api.AutopilotConfiguration")]
    NotAnObject,
    /// A field of the wrong type.
    #[error("json: cannot unmarshal into Go struct field AutopilotConfiguration.{field} of type {kind}")]
    Mistyped {
        /// The field, as Go names it.
        field: &'static str,
        /// Its Go type.
        kind: &'static str,
    },
    /// A duration string that is not Go's syntax.
    #[error(transparent)]
    Duration(#[from] muster_core::duration::DurationError),
}

/// The body as Go's `encoding/json` decodes `api.AutopilotConfiguration`: keys matched without
/// regard to case, unknown ones ignored, absent ones zero; durations as Go strings or numbers
/// of nanoseconds.
fn decode_config(body: &[u8]) -> Result<Config, ConfigDecodeError> {
    let map: Map<String, Value> = match serde_json::from_slice(body)? {
        Value::Object(map) => map,
        _ => return Err(ConfigDecodeError::NotAnObject),
    };
    let field =
        |name: &str| map.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value);
    let mistyped = |field: &'static str, kind: &'static str| ConfigDecodeError::Mistyped { field, kind };
    let boolean = |name: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(mistyped(name, "bool")),
    };
    let string = |name: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(mistyped(name, "string")),
    };
    let unsigned = |name: &'static str, kind: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value.as_u64().ok_or_else(|| mistyped(name, kind)),
    };
    let duration = |name: &'static str| match field(name) {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        Some(Value::String(text)) => Ok(muster_core::duration::parse(text)?),
        Some(Value::Number(nanos)) => nanos
            .as_f64()
            .filter(|nanos| *nanos >= 0.0 && nanos.is_finite())
            .map(|nanos| Duration::from_nanos(nanos as u64))
            .ok_or_else(|| mistyped(name, "api.ReadableDuration")),
        Some(_) => Err(mistyped(name, "api.ReadableDuration")),
    };
    Ok(Config {
        cleanup_dead_servers: boolean("CleanupDeadServers")?,
        last_contact_threshold: duration("LastContactThreshold")?,
        max_trailing_logs: unsigned("MaxTrailingLogs", "uint64")?,
        min_quorum: u32::try_from(unsigned("MinQuorum", "uint")?)
            .map_err(|_| mistyped("MinQuorum", "uint"))?,
        server_stabilization: duration("ServerStabilizationTime")?,
        redundancy_zone_tag: string("RedundancyZoneTag")?,
        disable_upgrade_migration: boolean("DisableUpgradeMigration")?,
        upgrade_version_tag: string("UpgradeVersionTag")?,
    })
}

/// The leader's latest report; `No cluster leader` where no autopilot runs (requests reach the
/// leader through the router, so only a leader that has not finished its first pass, or a
/// stale read elsewhere, finds none).
fn latest_report(api: &Api, query: &Query) -> Result<AutopilotReport, HttpError> {
    api.check_datacenter(query)?;
    api.autopilot.report().ok_or_else(|| ConsensusError::NoLeader.into())
}

/// What Consul's `api.ServerHealth` and `api.AutopilotServer` both show of a server.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServerJson {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    address: String,
    version: &'static str,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    stable_since: String,
}

impl From<&ServerReport> for ServerJson {
    fn from(server: &ServerReport) -> ServerJson {
        ServerJson {
            id: server.node_id.clone(),
            name: server.name.clone(),
            address: server.address.clone(),
            version: crate::version::CONSUL_COMPATIBLE_VERSION,
            last_contact: muster_core::duration::format(server.last_contact),
            last_term: server.last_term,
            last_index: server.last_index,
            healthy: server.healthy,
            stable_since: rfc3339_seconds(server.stable_since),
        }
    }
}

/// Consul's `api.ServerHealth`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServerHealthJson {
    #[serde(flatten)]
    server: ServerJson,
    serf_status: &'static str,
    leader: bool,
    voter: bool,
}

/// Consul's `api.OperatorHealthReply`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthJson {
    healthy: bool,
    failure_tolerance: usize,
    servers: Vec<ServerHealthJson>,
}

async fn health(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let report = match latest_report(&api, &query) {
        Ok(report) => report,
        Err(error) => return error.into_response(),
    };
    let servers = report
        .servers
        .iter()
        .map(|server| ServerHealthJson {
            server: server.into(),
            serf_status: serf_status(server.status),
            leader: server.raft_id == report.leader,
            voter: server.voter,
        })
        .collect();
    let shown = HealthJson { healthy: report.healthy, failure_tolerance: report.failure_tolerance, servers };
    let mut response = json(&query, &shown).into_response();
    // Consul's signal to load balancers and scripts: 429 while any server is unhealthy.
    if !report.healthy {
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    }
    response
}

/// Consul's `api.AutopilotServer`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateServerJson {
    #[serde(flatten)]
    server: ServerJson,
    node_status: &'static str,
    read_replica: bool,
    status: &'static str,
    meta: std::collections::BTreeMap<String, String>,
    node_type: &'static str,
}

/// Consul's `api.AutopilotState`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateJson {
    healthy: bool,
    failure_tolerance: usize,
    optimistic_failure_tolerance: usize,
    servers: std::collections::BTreeMap<String, StateServerJson>,
    leader: String,
    voters: Vec<String>,
}

async fn state(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw.as_deref());
    let report = match latest_report(&api, &query) {
        Ok(report) => report,
        Err(error) => return error.into_response(),
    };
    let leader = report.servers.iter().find(|s| s.raft_id == report.leader);
    let voters: Vec<&ServerReport> = report.servers.iter().filter(|s| s.voter).collect();
    // Optimistic: as if every voter alive in gossip were healthy (raft-autopilot's reading).
    let alive_voters = voters.iter().filter(|s| s.status == Some(Status::Alive)).count();
    let shown = StateJson {
        healthy: report.healthy,
        failure_tolerance: report.failure_tolerance,
        optimistic_failure_tolerance: alive_voters.saturating_sub(voters.len() / 2 + 1),
        servers: report.servers.iter().map(|s| (s.node_id.clone(), state_server(&report, s))).collect(),
        leader: leader.map_or_else(String::new, |s| s.node_id.clone()),
        voters: voters.iter().map(|s| s.node_id.clone()).collect(),
    };
    json(&query, &shown).into_response()
}

fn state_server(report: &AutopilotReport, server: &ServerReport) -> StateServerJson {
    let status = match (server.raft_id == report.leader, server.voter) {
        (true, _) => "leader",
        (false, true) => "voter",
        (false, false) => "non-voter",
    };
    StateServerJson {
        server: server.into(),
        node_status: serf_status(server.status),
        read_replica: false,
        status,
        meta: std::collections::BTreeMap::new(),
        node_type: "voter",
    }
}

/// serf's member status names, as Consul's `SerfStatus` shows them.
fn serf_status(status: Option<Status>) -> &'static str {
    status.map_or("none", Status::as_str)
}

/// A time as Go's `time.Time` marshals one after `.Round(time.Second).UTC()`.
fn rfc3339_seconds(at: SystemTime) -> String {
    let rounded = at + Duration::from_millis(500);
    humantime::format_rfc3339_seconds(rounded).to_string()
}
