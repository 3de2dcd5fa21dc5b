//! Every key Consul 1.20 (CE) accepts in its agent configuration files, with its Go type and
//! what muster does with it, and [`check`], which walks one parsed file (or one `-hcl`
//! fragment) against the table the way Consul reads it.
//!
//! Consul reads a file in three stages (`agent/config/config.go`, `deprecated.go`,
//! `builder.go` at the 1.20 line), and [`check`] follows them:
//!
//! 1. **Decode.** mapstructure decodes the parsed map into Go structs: key names match exactly,
//!    else through the Go field's name or an `alias` tag (lib/decode's `HookTranslateKeys`, so
//!    `ServiceID` and `DeregisterCriticalServiceAfter` work in files), else case-insensitively.
//!    A value of the wrong type is an error in mapstructure's words; a key that matches no field
//!    is `invalid config key a.b`. HCL wraps every block in a list; the `HookWeakDecodeFromSlice`
//!    hook unwraps a one-element list where Go wants a single block.
//! 2. **Deprecations.** Old keys are read as their new ones, with Consul's warning; a new key set
//!    in the same file wins.
//! 3. **Build.** Durations are parsed (`retry_interval: invalid duration: "10": ...`),
//!    Enterprise keys draw Consul CE's warning, and muster adds its own: a key it does not act on
//!    yet is accepted with a warning naming it, and a key whose value asks for protection muster
//!    cannot give yet stops the agent (valid Consul input never stops muster, unless running
//!    without it would be less secure than the file asks).
//!
//! Every problem is reported, as Consul collects them. The caller wraps the list as Consul does
//! (`failed to parse <file>: N error(s) occurred: ...`).
//!
//! The table was completed from Consul's `agent/config/config.go` (struct tags), `deprecated.go`,
//! `builder.go`, `builder_ce.go`, `default.go`, `testdata/full-config.hcl` and the agent
//! configuration reference. Keys added after 1.20 (`disable_kv_key_validation`,
//! `enable_xds_load_balancing`, `http_config.read_timeout` and its siblings) are left out: a 1.20
//! agent refuses them.

use serde_json::{Map, Value};

/// What a key's value must be: the Go type Consul decodes it into.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `int`. mapstructure truncates a float (every JSON number is a float64 in Go).
    Int,
    /// An unsigned integer of the named Go type (`uint`, `uint32`, `uint64`): a negative number
    /// is mapstructure's "overflows uint" error, a larger one wraps as Go's conversion does.
    Uint(&'static str),
    /// `float64`.
    Float,
    /// A string in Go's duration syntax (`"10s"`, `"1h30m"`), parsed when Consul builds its
    /// runtime configuration.
    Duration,
    /// `[]string`. A single string is not a list: mapstructure refuses it.
    StrList,
    /// `map[string]string` (`node_meta`, `tagged_addresses`, ...).
    StrMap,
    /// A nested block with known keys (`ports { ... }`).
    Block(&'static [Key]),
    /// A list of blocks (`segments`, `ui_config.metrics_proxy.add_headers`), each checked
    /// against the keys.
    BlockList(&'static [Key]),
    /// An object whose keys are free names, each value of the inner kind
    /// (`dns_config.service_ttl`: name → duration; `audit.sink`: name → sink block).
    MapOf(&'static Kind),
    /// `map[string]interface{}`: an object Consul decodes elsewhere (`connect.ca_config`, a
    /// proxy's `config`).
    Opaque,
    /// `[]map[string]interface{}`: a list of such objects (`watches`,
    /// `config_entries.bootstrap`).
    OpaqueList,
    /// Anything: a key Consul never decodes (`acl_enforce_version_8`).
    Any,
    /// One service definition ([`SERVICE_FIELDS`]).
    Service,
    /// A list of service definitions.
    Services,
    /// One check definition ([`CHECK_FIELDS`]).
    Check,
    /// A list of check definitions.
    Checks,
}

/// What muster does with a key.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    /// muster acts on it.
    Implemented,
    /// Consul accepts it; muster does not act on it yet: accepted with one warning naming it
    /// and saying why.
    NotYet(&'static str),
    /// Consul accepts it and ignores or overwrites it (not user-settable: `ae_interval`,
    /// `version`, ...): accepted silently.
    Inert,
    /// Enterprise-only: Consul CE warns (`"segment" is a Consul Enterprise configuration and
    /// will have no effect`) and goes on; so does muster.
    Enterprise,
    /// Deprecated: read as the key at the dotted path `new`, with Consul's warning `The 'OLD'
    /// field is deprecated. Use the 'NEW' field instead.`
    Deprecated {
        /// The dotted path of the key that replaces it.
        new: &'static str,
    },
    /// A key whose value can ask for protection muster does not give yet. When `refuses` says
    /// the value asks for it, the agent does not start (running would be less secure than the
    /// file asks); any other value is accepted like [`Status::NotYet`], with `why` as the reason.
    Guarded {
        /// What muster lacks.
        why: &'static str,
        /// Whether a value asks for that protection.
        refuses: fn(&Value) -> bool,
    },
    /// Consul decodes nothing from it and warns in these words (`acl_enforce_version_8`).
    Ignored(&'static str),
    /// Consul decodes it, then refuses to start in these words (`verify_outgoing` in the
    /// `tls.grpc` stanza); so does muster.
    Rejected(&'static str),
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key's name in Consul's files (its mapstructure tag), in lower case.
    pub name: &'static str,
    /// Its Go type.
    pub kind: Kind,
    /// What muster does with it.
    pub status: Status,
    /// The Go field's name in lower case, where it is not `name` without its underscores:
    /// Consul takes it as another spelling of the key (`advertiseaddrlan` for `advertise_addr`).
    pub go_name: Option<&'static str>,
    /// Further spellings from Consul's `alias` tags (`non_voting_server` for `read_replica`).
    pub aliases: &'static [&'static str],
    /// Consul's default, as text for the reference ("" when unset or derived).
    pub default: &'static str,
}

impl Key {
    /// A key whose Go field is named like the key without underscores, no default.
    const fn new(name: &'static str, kind: Kind, status: Status) -> Key {
        Key { name, kind, status, go_name: None, aliases: &[], default: "" }
    }

    /// The Go field's name, in lower case.
    const fn go(self, go_name: &'static str) -> Key {
        Key { go_name: Some(go_name), ..self }
    }

    /// Consul's `alias` spellings.
    const fn aka(self, aliases: &'static [&'static str]) -> Key {
        Key { aliases, ..self }
    }

    /// Consul's default, for the reference.
    const fn or(self, default: &'static str) -> Key {
        Key { default, ..self }
    }

    /// Whether `lower` (a key in lower case) is the Go field's name or an alias of this key.
    fn has_spelling(&self, lower: &str) -> bool {
        let go_name_matches = match self.go_name {
            Some(go_name) => go_name == lower,
            None => self.name.contains('_') && without_underscores(self.name) == lower,
        };
        go_name_matches || self.aliases.contains(&lower)
    }
}

/// Which parser produced a source. Go sees different types: a JSON number is a float64 and a
/// JSON object a map, while HCL gives integers and wraps every block in a list. Consul's error
/// texts and what its slice hook unwraps follow those types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `.json` file (or one read as JSON by `-config-format`).
    Json,
    /// A `.hcl` file or a `-hcl` fragment.
    Hcl,
}

/// The result of checking one source (a file or one `-hcl` fragment).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The same object with every key under the table's canonical name, numbers converted as
    /// mapstructure converts them, `null`s (unset in Go) dropped, a single HCL block unwrapped
    /// and a single HCL block given for a list wrapped, and deprecated keys moved to their new
    /// place (when both are set, the new key wins, as in Consul): the reader only ever sees
    /// current names.
    pub config: Map<String, Value>,
    /// Warnings to log once at startup, in Consul's words where Consul has words, else naming
    /// the key and why muster does not act on it.
    pub warnings: Vec<String>,
}

/// Checks one parsed JSON source against the table: [`check_from`] with [`Origin::Json`].
pub fn check(source: Map<String, Value>) -> Result<Checked, Vec<String>> {
    check_from(source, Origin::Json)
}

/// Checks one parsed source against the table. The errors are every problem found, each in
/// Consul's words: mapstructure's type errors (sorted, as mapstructure sorts them), then
/// `invalid config key a.b`, then the builder's (`retry_interval: invalid duration: "10": time:
/// missing unit in duration "10"`), then muster's refusals of values that ask for protection
/// it does not give yet.
pub fn check_from(source: Map<String, Value>, origin: Origin) -> Result<Checked, Vec<String>> {
    let mut decode = Decode::new(origin);
    let mut config = decode.object(KEYS, &At::root(), source);
    let Decode { mut type_errors, unknown, rejected, mut warnings, moves, .. } = decode;
    for one in moves {
        apply_move(&mut config, one, &mut warnings);
    }
    let mut build = Build { errors: Vec::new(), refusals: Vec::new(), warnings: &mut warnings };
    build.object(KEYS, &At::root(), &config, None);
    let Build { errors: built, refusals, .. } = build;
    type_errors.sort();
    let errors: Vec<String> = [type_errors, unknown, rejected, built, refusals].concat();
    if errors.is_empty() {
        Ok(Checked { config, warnings })
    } else {
        Err(errors)
    }
}

/// The table as Markdown: one row per leaf key (dotted path, `[]` for a list item or a map
/// entry), its type, Consul's default, muster's status and why; then the fields of a service
/// and of a check definition. `docs/config-keys.md` is this output.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration keys\n\n\
         Every key Consul 1.20 accepts in its agent configuration files (JSON and HCL), and what \
         muster does with it. Generated by `config::keys::markdown()`; do not edit.\n\n\
         Status: **implemented**: muster acts on it; **not yet**: accepted with a warning; \
         **guarded**: accepted with a warning, but the agent refuses to start when the value asks \
         for protection muster does not give yet; **inert**: Consul ignores or overwrites it, so \
         does muster; **Enterprise**: Consul CE warns and ignores it, so does muster; \
         **deprecated**: read as its replacement, with Consul's warning; **ignored**: Consul \
         warns and ignores it; **rejected**: Consul refuses to start with it.\n\n",
    );
    let sections: [(&str, &[Key], &str); 3] = [
        ("Agent configuration", KEYS, ""),
        ("Service definition fields (`service`, `services`)", SERVICE_FIELDS, "service."),
        ("Check definition fields (`check`, `checks`, and a service's)", CHECK_FIELDS, "check."),
    ];
    for (title, table, prefix) in sections {
        out.push_str(&format!(
            "## {title}\n\n| Key | Type | Default | muster | Notes |\n|---|---|---|---|---|\n"
        ));
        let mut rows = Vec::new();
        leaves(table, prefix, &mut rows);
        for (path, key) in rows {
            let (status, mut note) = status_text(&key.status);
            for alias in key.aliases {
                note.push_str(&format!("{}also spelt `{alias}`", if note.is_empty() { "" } else { "; " }));
            }
            let default = if key.default.is_empty() { String::new() } else { format!("`{}`", key.default) };
            out.push_str(&format!(
                "| `{path}` | {} | {default} | {status} | {} |\n",
                kind_text(&key.kind),
                note.replace('|', "\\|")
            ));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The table.

/// The top-level keys.
pub static KEYS: &[Key] = &[
    Key::new("acl", Kind::Block(ACL), CONTAINER),
    Key::new("addresses", Kind::Block(ADDRESSES), CONTAINER),
    Key::new("advertise_addr", Kind::Str, IMPL).go("advertiseaddrlan").or("derived from bind_addr"),
    Key::new("advertise_addr_ipv4", Kind::Str, ONE_ADDRESS).go("advertiseaddrlanipv4"),
    Key::new("advertise_addr_ipv6", Kind::Str, ONE_ADDRESS).go("advertiseaddrlanipv6"),
    Key::new("advertise_addr_wan", Kind::Str, IMPL).or("advertise_addr"),
    Key::new("advertise_addr_wan_ipv4", Kind::Str, ONE_ADDRESS),
    Key::new("advertise_addr_wan_ipv6", Kind::Str, ONE_ADDRESS),
    Key::new("advertise_reconnect_timeout", Kind::Duration, RECONNECT).or("0s"),
    Key::new("ae_interval", Kind::Duration, Status::Inert),
    Key::new("alt_domain", Kind::Str, IMPL).go("dnsaltdomain"),
    Key::new("audit", Kind::Block(AUDIT), Status::Enterprise),
    Key::new("auto_config", Kind::Block(AUTO_CONFIG), CONTAINER),
    Key::new("auto_encrypt", Kind::Block(AUTO_ENCRYPT), CONTAINER),
    Key::new("auto_reload_config", Kind::Bool, IMPL).or("false"),
    Key::new("autopilot", Kind::Block(AUTOPILOT), CONTAINER),
    Key::new("bind_addr", Kind::Str, IMPL).or("0.0.0.0"),
    Key::new("bootstrap", Kind::Bool, IMPL).or("false"),
    Key::new("bootstrap_expect", Kind::Int, IMPL).or("0"),
    Key::new("build_date", Kind::Block(&[]), Status::Inert),
    Key::new("cache", Kind::Block(CACHE), CONTAINER),
    Key::new("check", Kind::Check, IMPL),
    Key::new("check_deregister_interval_min", Kind::Duration, Status::Inert),
    Key::new("check_output_max_size", Kind::Int, Status::NotYet("muster keeps 4096 bytes of check output"))
        .or("4096"),
    Key::new("check_reap_interval", Kind::Duration, Status::Inert),
    Key::new("check_update_interval", Kind::Duration, IMPL).or("5m"),
    Key::new("checks", Kind::Checks, IMPL),
    Key::new("client_addr", Kind::Str, IMPL).or("127.0.0.1"),
    Key::new("cloud", Kind::Block(CLOUD), CONTAINER),
    Key::new("config_entries", Kind::Block(CONFIG_ENTRIES), CONTAINER),
    Key::new("connect", Kind::Block(CONNECT), CONTAINER),
    Key::new("consul", Kind::Block(CONSUL), CONTAINER),
    Key::new("data_dir", Kind::Str, IMPL),
    Key::new("datacenter", Kind::Str, IMPL).or("dc1"),
    Key::new("default_query_time", Kind::Duration, IMPL).or("300s"),
    Key::new("disable_anonymous_signature", Kind::Bool, NO_UPDATE_CHECK).or("false"),
    Key::new("disable_coordinates", Kind::Bool, Status::NotYet("muster computes no network coordinates yet"))
        .or("false"),
    Key::new("disable_host_node_id", Kind::Bool, IMPL).or("true"),
    Key::new(
        "disable_http_unprintable_char_filter",
        Kind::Bool,
        Status::NotYet("muster does not filter unprintable characters from KV keys yet"),
    )
    .or("false"),
    Key::new("disable_keyring_file", Kind::Bool, IMPL).or("false"),
    Key::new("disable_remote_exec", Kind::Bool, IMPL).or("true"),
    Key::new("disable_update_check", Kind::Bool, NO_UPDATE_CHECK).or("false"),
    Key::new("discard_check_output", Kind::Bool, Status::NotYet("muster always stores check output"))
        .or("false"),
    Key::new(
        "discovery_max_stale",
        Kind::Duration,
        Status::NotYet("muster answers discovery queries with its default consistency"),
    )
    .or("0s"),
    Key::new("dns_config", Kind::Block(DNS_CONFIG), CONTAINER).go("dns"),
    Key::new("domain", Kind::Str, IMPL).go("dnsdomain").or("consul."),
    Key::new(
        "enable_agent_tls_for_checks",
        Kind::Bool,
        Status::NotYet("muster's checks present no client certificate"),
    )
    .or("false"),
    Key::new("enable_central_service_config", Kind::Bool, NO_CONFIG_ENTRIES).or("true"),
    Key::new("enable_debug", Kind::Bool, Status::NotYet("muster serves no pprof endpoints")).or("false"),
    Key::new("enable_local_script_checks", Kind::Bool, IMPL).or("enable_script_checks"),
    Key::new("enable_script_checks", Kind::Bool, IMPL).or("false"),
    Key::new("enable_syslog", Kind::Bool, IMPL).or("false"),
    Key::new("encrypt", Kind::Str, IMPL).go("encryptkey"),
    Key::new("encrypt_verify_incoming", Kind::Bool, GOSSIP_VERIFY).or("true"),
    Key::new("encrypt_verify_outgoing", Kind::Bool, GOSSIP_VERIFY).or("true"),
    Key::new("experiments", Kind::StrList, Status::NotYet("muster has none of Consul's experiments")),
    Key::new("gossip_lan", Kind::Block(GOSSIP_LAN), CONTAINER),
    Key::new("gossip_wan", Kind::Block(GOSSIP_WAN), CONTAINER),
    Key::new("http_config", Kind::Block(HTTP_CONFIG), CONTAINER),
    Key::new("leave_on_terminate", Kind::Bool, IMPL)
        .go("leaveonterm")
        .or("true on clients, false on servers"),
    Key::new("license_path", Kind::Str, Status::Enterprise),
    Key::new("license_poll_base_time", Kind::Str, Status::Inert),
    Key::new("license_poll_max_time", Kind::Str, Status::Inert),
    Key::new("license_update_base_time", Kind::Str, Status::Inert),
    Key::new("license_update_max_time", Kind::Str, Status::Inert),
    Key::new("limits", Kind::Block(LIMITS), CONTAINER),
    Key::new("locality", Kind::Block(LOCALITY), CONTAINER),
    Key::new("log_file", Kind::Str, IMPL),
    Key::new("log_json", Kind::Bool, IMPL).or("false"),
    Key::new("log_level", Kind::Str, IMPL).or("INFO"),
    Key::new("log_rotate_bytes", Kind::Int, IMPL).or("0"),
    Key::new("log_rotate_duration", Kind::Duration, IMPL).or("24h"),
    Key::new("log_rotate_max_files", Kind::Int, IMPL).or("0"),
    Key::new("max_query_time", Kind::Duration, IMPL).or("600s"),
    Key::new("node_id", Kind::Str, IMPL),
    Key::new("node_meta", Kind::StrMap, IMPL),
    Key::new("node_name", Kind::Str, IMPL).or("the host name"),
    Key::new("partition", Kind::Str, Status::Enterprise),
    Key::new("peering", Kind::Block(PEERING), CONTAINER),
    Key::new("performance", Kind::Block(PERFORMANCE), CONTAINER),
    Key::new("pid_file", Kind::Str, IMPL),
    Key::new("ports", Kind::Block(PORTS), CONTAINER),
    Key::new("primary_datacenter", Kind::Str, NO_REPLICATION).or("datacenter"),
    Key::new("primary_gateways", Kind::StrList, NO_MESH),
    Key::new("primary_gateways_interval", Kind::Duration, NO_MESH).or("30s"),
    Key::new("protocol", Kind::Int, IMPL).go("rpcprotocol").or("2"),
    Key::new("raft_boltdb", Kind::Block(RAFT_BOLTDB), Status::Deprecated { new: "raft_logstore.boltdb" })
        .go("raftboltdbconfig"),
    Key::new("raft_logstore", Kind::Block(RAFT_LOGSTORE), CONTAINER),
    Key::new("raft_protocol", Kind::Int, IMPL).or("3"),
    Key::new("raft_snapshot_interval", Kind::Duration, RAFT_TUNING).or("30s"),
    Key::new("raft_snapshot_threshold", Kind::Int, RAFT_TUNING).or("16384"),
    Key::new("raft_trailing_logs", Kind::Int, RAFT_TUNING).or("10240"),
    Key::new("read_replica", Kind::Bool, Status::Enterprise).aka(&["non_voting_server"]),
    Key::new("reconnect_timeout", Kind::Duration, RECONNECT).go("reconnecttimeoutlan").or("72h"),
    Key::new("reconnect_timeout_wan", Kind::Duration, RECONNECT).or("72h"),
    Key::new("recursors", Kind::StrList, IMPL).go("dnsrecursors"),
    Key::new("rejoin_after_leave", Kind::Bool, IMPL).or("false"),
    Key::new("reporting", Kind::Block(REPORTING), CONTAINER),
    Key::new("retry_interval", Kind::Duration, IMPL).go("retryjoinintervallan").or("30s"),
    Key::new("retry_interval_wan", Kind::Duration, IMPL).go("retryjoinintervalwan").or("30s"),
    Key::new("retry_join", Kind::StrList, IMPL).go("retryjoinlan"),
    Key::new("retry_join_wan", Kind::StrList, IMPL),
    Key::new("retry_max", Kind::Int, IMPL).go("retryjoinmaxattemptslan").or("0"),
    Key::new("retry_max_wan", Kind::Int, Status::NotYet("muster retries WAN joins without a limit"))
        .go("retryjoinmaxattemptswan")
        .or("0"),
    Key::new("revision", Kind::Str, Status::Inert),
    Key::new("rpc", Kind::Block(RPC), CONTAINER),
    Key::new("segment", Kind::Str, Status::Enterprise).go("segmentname"),
    Key::new("segment_limit", Kind::Int, Status::Inert).or("64"),
    Key::new("segment_name_limit", Kind::Int, Status::Inert),
    Key::new("segments", Kind::BlockList(SEGMENT), Status::Enterprise),
    Key::new("serf_lan", Kind::Str, IMPL).go("serfbindaddrlan").or("bind_addr"),
    Key::new("serf_lan_allowed_cidrs", Kind::StrList, IMPL).go("serfallowedcidrslan"),
    Key::new("serf_wan", Kind::Str, IMPL).go("serfbindaddrwan").or("bind_addr"),
    Key::new("serf_wan_allowed_cidrs", Kind::StrList, IMPL).go("serfallowedcidrswan"),
    Key::new("server", Kind::Bool, IMPL).go("servermode").or("false"),
    Key::new("server_name", Kind::Str, NO_TLS),
    Key::new(
        "server_rejoin_age_max",
        Kind::Duration,
        Status::NotYet("muster's servers rejoin however long they were offline"),
    )
    .or("168h"),
    Key::new("service", Kind::Service, IMPL),
    Key::new("services", Kind::Services, IMPL),
    Key::new("session_ttl_min", Kind::Duration, Status::NotYet("muster keeps Consul's 10s minimum"))
        .or("10s"),
    Key::new("skip_leave_on_interrupt", Kind::Bool, IMPL).go("skipleaveonint").or("true on servers"),
    Key::new("snapshot_agent", Kind::Opaque, Status::Inert),
    Key::new("sync_coordinate_interval_min", Kind::Duration, Status::Inert),
    Key::new("sync_coordinate_rate_target", Kind::Float, Status::Inert),
    Key::new("syslog_facility", Kind::Str, IMPL).or("LOCAL0"),
    Key::new(
        "tagged_addresses",
        Kind::StrMap,
        Status::NotYet("muster tags a node with its lan and wan addresses only"),
    ),
    Key::new("telemetry", Kind::Block(TELEMETRY), CONTAINER),
    Key::new("tls", Kind::Block(TLS), CONTAINER),
    Key::new(
        "translate_wan_addrs",
        Kind::Bool,
        Status::NotYet("muster answers with LAN addresses across datacenters"),
    )
    .or("false"),
    Key::new("ui", Kind::Bool, Status::Deprecated { new: "ui_config.enabled" }),
    Key::new("ui_config", Kind::Block(UI_CONFIG), CONTAINER),
    Key::new("ui_content_path", Kind::Str, Status::Deprecated { new: "ui_config.content_path" }),
    Key::new("ui_dir", Kind::Str, Status::Deprecated { new: "ui_config.dir" }),
    Key::new("unix_sockets", Kind::Block(UNIX_SOCKETS), CONTAINER).go("unixsocket"),
    Key::new("use_streaming_backend", Kind::Bool, Status::NotYet("muster's clients use blocking queries"))
        .or("true"),
    Key::new("version", Kind::Str, Status::Inert),
    Key::new("version_metadata", Kind::Str, Status::Inert),
    Key::new("version_prerelease", Kind::Str, Status::Inert),
    Key::new("watches", Kind::OpaqueList, IMPL),
    Key::new("xds", Kind::Block(XDS), CONTAINER),
    // Deprecated top-level keys (`deprecated.go`), each read as its replacement.
    Key::new("acl_agent_master_token", Kind::Str, Status::Deprecated { new: "acl.tokens.agent_recovery" }),
    Key::new("acl_agent_token", Kind::Str, Status::Deprecated { new: "acl.tokens.agent" }),
    Key::new("acl_datacenter", Kind::Str, Status::Deprecated { new: "primary_datacenter" }),
    Key::new("acl_default_policy", Kind::Str, Status::Deprecated { new: "acl.default_policy" }),
    Key::new("acl_down_policy", Kind::Str, Status::Deprecated { new: "acl.down_policy" }),
    Key::new(
        "acl_enable_key_list_policy",
        Kind::Bool,
        Status::Deprecated { new: "acl.enable_key_list_policy" },
    ),
    Key::new(
        "acl_enforce_version_8",
        Kind::Any,
        Status::Ignored("config key \"acl_enforce_version_8\" is deprecated and should be removed"),
    ),
    Key::new("acl_master_token", Kind::Str, Status::Deprecated { new: "acl.tokens.initial_management" }),
    Key::new("acl_replication_token", Kind::Str, Status::Deprecated { new: "acl.tokens.replication" }),
    Key::new("acl_token", Kind::Str, Status::Deprecated { new: "acl.tokens.default" }),
    Key::new("acl_ttl", Kind::Str, Status::Deprecated { new: "acl.token_ttl" }),
    Key::new("ca_file", Kind::Str, Status::Deprecated { new: "tls.defaults.ca_file" }),
    Key::new("ca_path", Kind::Str, Status::Deprecated { new: "tls.defaults.ca_path" }),
    Key::new("cert_file", Kind::Str, Status::Deprecated { new: "tls.defaults.cert_file" }),
    Key::new(
        "enable_acl_replication",
        Kind::Bool,
        Status::Deprecated { new: "acl.enable_token_replication" },
    ),
    Key::new("key_file", Kind::Str, Status::Deprecated { new: "tls.defaults.key_file" }),
    Key::new("start_join", Kind::StrList, Status::Deprecated { new: "retry_join" }).go("startjoinaddrslan"),
    Key::new("start_join_wan", Kind::StrList, Status::Deprecated { new: "retry_join_wan" })
        .go("startjoinaddrswan"),
    Key::new("tls_cipher_suites", Kind::Str, Status::Deprecated { new: "tls.defaults.tls_cipher_suites" }),
    Key::new("tls_min_version", Kind::Str, Status::Deprecated { new: "tls.defaults.tls_min_version" }),
    Key::new(
        "tls_prefer_server_cipher_suites",
        Kind::Bool,
        Status::Ignored("The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored."),
    ),
    Key::new("verify_incoming", Kind::Bool, Status::Deprecated { new: "tls.defaults.verify_incoming" }),
    Key::new("verify_incoming_https", Kind::Bool, Status::Deprecated { new: "tls.https.verify_incoming" }),
    Key::new(
        "verify_incoming_rpc",
        Kind::Bool,
        Status::Deprecated { new: "tls.internal_rpc.verify_incoming" },
    ),
    Key::new("verify_outgoing", Kind::Bool, Status::Deprecated { new: "tls.defaults.verify_outgoing" }),
    Key::new(
        "verify_server_hostname",
        Kind::Bool,
        Status::Deprecated { new: "tls.internal_rpc.verify_server_hostname" },
    ),
];

/// The fields of a service definition in a configuration file (`config.go`
/// `ServiceDefinition`; Consul CE has no `namespace` or `partition` here).
pub static SERVICE_FIELDS: &[Key] = &[
    Key::new("address", Kind::Str, IMPL),
    Key::new("check", Kind::Check, IMPL),
    Key::new("checks", Kind::Checks, IMPL),
    Key::new("connect", Kind::Block(SERVICE_CONNECT), CONTAINER),
    Key::new("enable_tag_override", Kind::Bool, IMPL).or("false"),
    Key::new("id", Kind::Str, IMPL).or("name"),
    Key::new("kind", Kind::Str, IMPL),
    Key::new("meta", Kind::StrMap, IMPL),
    Key::new("name", Kind::Str, IMPL),
    Key::new("port", Kind::Int, IMPL),
    Key::new("proxy", Kind::Block(SERVICE_PROXY), CONTAINER),
    Key::new("socket_path", Kind::Str, IMPL),
    Key::new("tagged_addresses", Kind::MapOf(&Kind::Block(SERVICE_ADDRESS)), CONTAINER),
    Key::new("tags", Kind::StrList, IMPL),
    Key::new("token", Kind::Str, NO_ACL),
    Key::new("weights", Kind::Block(SERVICE_WEIGHTS), CONTAINER),
];

/// The fields of a check definition in a configuration file (`config.go` `CheckDefinition`).
pub static CHECK_FIELDS: &[Key] = &[
    Key::new("alias_node", Kind::Str, IMPL),
    Key::new("alias_service", Kind::Str, IMPL),
    Key::new("args", Kind::StrList, IMPL).go("scriptargs"),
    Key::new("body", Kind::Str, IMPL),
    Key::new("deregister_critical_service_after", Kind::Duration, IMPL),
    Key::new("disable_redirects", Kind::Bool, IMPL).or("false"),
    Key::new(
        "docker_container_id",
        Kind::Str,
        Status::Guarded {
            why:
                "muster runs no Docker checks, and would run the check's args on the host instead of in the \
                  container",
            refuses: non_empty_str,
        },
    ),
    Key::new("failures_before_critical", Kind::Int, IMPL).or("0"),
    Key::new("failures_before_warning", Kind::Int, IMPL).or("failures_before_critical"),
    Key::new("grpc", Kind::Str, IMPL),
    Key::new("grpc_use_tls", Kind::Bool, IMPL).or("false"),
    Key::new("h2ping", Kind::Str, IMPL),
    Key::new("h2ping_use_tls", Kind::Bool, IMPL).or("true"),
    Key::new("header", Kind::MapOf(&Kind::StrList), IMPL),
    Key::new("http", Kind::Str, IMPL),
    Key::new("id", Kind::Str, IMPL),
    Key::new("interval", Kind::Duration, IMPL),
    Key::new("method", Kind::Str, IMPL).or("GET"),
    Key::new("name", Kind::Str, IMPL),
    Key::new("notes", Kind::Str, IMPL),
    Key::new("os_service", Kind::Str, Status::NotYet("muster runs no operating-system service checks")),
    Key::new("output_max_size", Kind::Int, Status::NotYet("muster keeps 4096 bytes of check output"))
        .or("4096"),
    Key::new("service_id", Kind::Str, IMPL).aka(&["serviceid"]),
    Key::new("shell", Kind::Str, Status::NotYet("muster runs no Docker checks")),
    Key::new("status", Kind::Str, IMPL).or("critical"),
    Key::new("success_before_passing", Kind::Int, IMPL).or("0"),
    Key::new("tcp", Kind::Str, IMPL),
    Key::new("tcp_use_tls", Kind::Bool, IMPL).or("false"),
    Key::new("timeout", Kind::Duration, IMPL).or("10s (30s for scripts)"),
    Key::new("tls_server_name", Kind::Str, IMPL),
    Key::new("tls_skip_verify", Kind::Bool, IMPL).or("false"),
    Key::new("token", Kind::Str, NO_ACL),
    Key::new("ttl", Kind::Duration, IMPL),
    Key::new("udp", Kind::Str, IMPL),
];

/// The status of a block: what muster does is said by its keys.
const CONTAINER: Status = Status::Implemented;
const IMPL: Status = Status::Implemented;
const NO_ACL: Status = Status::NotYet("muster does not act on this ACL setting yet");
const NO_TLS: Status = Status::NotYet("muster has no gRPC TLS or automatic certificates yet");
const NO_MESH: Status = Status::NotYet("muster has no service mesh (Connect) yet");
const NO_UI: Status = Status::NotYet("muster has no web UI yet");
const NO_METRICS: Status = Status::NotYet(
    "muster sends no metrics to Circonus, and keeps the other telemetry settings at their defaults",
);
const NO_AUTO_CONFIG: Status = Status::NotYet("muster has no auto-config or auto-encrypt yet");
const NO_HCP: Status = Status::NotYet("muster does not link to HCP");
const NO_CONFIG_ENTRIES: Status = Status::NotYet("muster has no configuration entries yet");
const NO_REPLICATION: Status = Status::NotYet("muster replicates no ACLs or mesh data between datacenters");
const NO_UPDATE_CHECK: Status = Status::NotYet("muster never checks for updates");
const NO_CACHE: Status = Status::NotYet("muster's agent keeps no cache of server answers");
const ONE_ADDRESS: Status = Status::NotYet("muster advertises one LAN and one WAN address");
const RECONNECT: Status = Status::NotYet("muster reaps failed nodes after its own fixed timeout");
const RAFT_TUNING: Status = Status::NotYet("muster's Raft runs with its own fixed settings");
const GOSSIP_TUNING: Status = Status::NotYet("muster's gossip runs with Consul's default timing");
const GOSSIP_VERIFY: Status = Status::NotYet("muster always encrypts and verifies gossip when it has a key");
const DEFAULT_LIMITS: Status = Status::NotYet("muster keeps Consul's default limits");
const RATE_LIMITS: Status = Status::NotYet("muster does not rate-limit requests yet");
const NO_RPC_TUNING: Status = Status::NotYet("muster's RPC runs with its own fixed timeouts");
const NO_GRPC: Status = Status::NotYet("muster serves no gRPC API yet");

const ACL: &[Key] = &[
    Key::new("default_policy", Kind::Str, IMPL).or("allow"),
    Key::new("down_policy", Kind::Str, NO_ACL).or("extend-cache"),
    Key::new("enable_key_list_policy", Kind::Bool, NO_ACL).or("false"),
    Key::new("enable_token_persistence", Kind::Bool, IMPL).or("false"),
    Key::new("enable_token_replication", Kind::Bool, NO_ACL).go("tokenreplication").or("false"),
    Key::new("enabled", Kind::Bool, IMPL).or("false"),
    Key::new("msp_disable_bootstrap", Kind::Bool, Status::Enterprise),
    Key::new("policy_ttl", Kind::Duration, NO_ACL).or("30s"),
    Key::new("role_ttl", Kind::Duration, NO_ACL).or("30s"),
    Key::new("token_ttl", Kind::Duration, NO_ACL).or("30s"),
    Key::new("tokens", Kind::Block(ACL_TOKENS), CONTAINER),
];

const ACL_TOKENS: &[Key] = &[
    Key::new("agent", Kind::Str, NO_ACL),
    Key::new("agent_master", Kind::Str, Status::Deprecated { new: "acl.tokens.agent_recovery" }),
    Key::new("agent_recovery", Kind::Str, NO_ACL),
    Key::new("config_file_service_registration", Kind::Str, NO_ACL).go("configfileregistration"),
    Key::new("default", Kind::Str, IMPL),
    Key::new("dns", Kind::Str, IMPL),
    Key::new("initial_management", Kind::Str, IMPL),
    Key::new("managed_service_provider", Kind::BlockList(MSP_TOKEN), Status::Enterprise),
    Key::new("master", Kind::Str, Status::Deprecated { new: "acl.tokens.initial_management" }),
    Key::new("replication", Kind::Str, NO_ACL),
];

const MSP_TOKEN: &[Key] = &[
    Key::new("accessor_id", Kind::Str, Status::Enterprise),
    Key::new("secret_id", Kind::Str, Status::Enterprise),
];

/// Where muster serves its HTTP and DNS interfaces: on `client_addr`. An address asked here
/// may be narrower (`127.0.0.1` while `client_addr` is `0.0.0.0`, or a unix socket with
/// restricted permissions), so serving on `client_addr` instead could expose more than asked.
const ADDRESSES: &[Key] = &[
    // A `unix://` socket here is refused by the reader (muster serves none yet; TCP on
    // client_addr instead would expose the API wider than asked).
    Key::new("dns", Kind::Str, IMPL).or("client_addr"),
    Key::new("grpc", Kind::Str, NO_GRPC).or("client_addr"),
    Key::new("grpc_tls", Kind::Str, NO_GRPC).or("client_addr"),
    Key::new("http", Kind::Str, IMPL).or("client_addr"),
    Key::new("https", Kind::Str, IMPL).or("client_addr"),
];

const AUDIT: &[Key] = &[
    Key::new("enabled", Kind::Bool, Status::Enterprise),
    Key::new("sink", Kind::MapOf(&Kind::Block(AUDIT_SINK)), Status::Enterprise).go("sinks"),
];

const AUDIT_SINK: &[Key] = &[
    Key::new("delivery_guarantee", Kind::Str, Status::Enterprise),
    Key::new("format", Kind::Str, Status::Enterprise),
    Key::new("mode", Kind::Str, Status::Enterprise),
    Key::new(
        "name",
        Kind::Any,
        Status::Ignored("config key audit.sink[].name is deprecated and should be removed"),
    ),
    Key::new("path", Kind::Str, Status::Enterprise),
    Key::new("rotate_bytes", Kind::Int, Status::Enterprise),
    // Consul CE never parses it: a string, whatever it holds.
    Key::new("rotate_duration", Kind::Str, Status::Enterprise),
    Key::new("rotate_max_files", Kind::Int, Status::Enterprise),
    Key::new("type", Kind::Str, Status::Enterprise),
];

const AUTO_CONFIG: &[Key] = &[
    Key::new("authorization", Kind::Block(AUTO_CONFIG_AUTHORIZATION), CONTAINER),
    Key::new("dns_sans", Kind::StrList, NO_AUTO_CONFIG),
    Key::new(
        "enabled",
        Kind::Bool,
        Status::Guarded {
            why:
                "muster has no auto-config yet, so it would run without the TLS and ACL settings the servers \
                  hand out",
            refuses: is_true,
        },
    )
    .or("false"),
    Key::new("intro_token", Kind::Str, NO_AUTO_CONFIG),
    Key::new("intro_token_file", Kind::Str, NO_AUTO_CONFIG),
    Key::new("ip_sans", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("server_addresses", Kind::StrList, NO_AUTO_CONFIG),
];

const AUTO_CONFIG_AUTHORIZATION: &[Key] = &[
    Key::new("enabled", Kind::Bool, NO_AUTO_CONFIG).or("false"),
    Key::new("static", Kind::Block(AUTO_CONFIG_STATIC), CONTAINER),
];

const AUTO_CONFIG_STATIC: &[Key] = &[
    Key::new("allow_reuse", Kind::Bool, NO_AUTO_CONFIG).or("false"),
    Key::new("bound_audiences", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("bound_issuer", Kind::Str, NO_AUTO_CONFIG),
    Key::new("claim_assertions", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("claim_mappings", Kind::StrMap, NO_AUTO_CONFIG),
    Key::new("clock_skew_leeway", Kind::Duration, NO_AUTO_CONFIG),
    Key::new("expiration_leeway", Kind::Duration, NO_AUTO_CONFIG),
    Key::new("jwks_ca_cert", Kind::Str, NO_AUTO_CONFIG),
    Key::new("jwks_url", Kind::Str, NO_AUTO_CONFIG),
    Key::new("jwt_supported_algs", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("jwt_validation_pub_keys", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("list_claim_mappings", Kind::StrMap, NO_AUTO_CONFIG),
    Key::new("not_before_leeway", Kind::Duration, NO_AUTO_CONFIG),
    Key::new("oidc_discovery_ca_cert", Kind::Str, NO_AUTO_CONFIG),
    Key::new("oidc_discovery_url", Kind::Str, NO_AUTO_CONFIG),
];

const AUTO_ENCRYPT: &[Key] = &[
    Key::new("allow_tls", Kind::Bool, NO_AUTO_CONFIG).or("false"),
    Key::new("dns_san", Kind::StrList, NO_AUTO_CONFIG),
    Key::new("ip_san", Kind::StrList, NO_AUTO_CONFIG),
    Key::new(
        "tls",
        Kind::Bool,
        Status::Guarded {
            why:
                "muster does not fetch or use TLS certificates from the servers yet, so its RPC would not be \
                  encrypted",
            refuses: is_true,
        },
    )
    .or("false"),
];

const AUTOPILOT: &[Key] = &[
    Key::new("cleanup_dead_servers", Kind::Bool, IMPL).or("true"),
    Key::new("disable_upgrade_migration", Kind::Bool, Status::Enterprise),
    Key::new("last_contact_threshold", Kind::Duration, IMPL).or("200ms"),
    Key::new("max_trailing_logs", Kind::Int, IMPL).or("250"),
    Key::new("min_quorum", Kind::Uint("uint"), IMPL).or("0"),
    Key::new("redundancy_zone_tag", Kind::Str, Status::Enterprise),
    Key::new("server_stabilization_time", Kind::Duration, IMPL).or("10s"),
    Key::new("upgrade_version_tag", Kind::Str, Status::Enterprise),
];

const CACHE: &[Key] = &[
    Key::new("entry_fetch_max_burst", Kind::Int, NO_CACHE).or("2"),
    Key::new("entry_fetch_rate", Kind::Float, NO_CACHE).or("unlimited"),
];

const CLOUD: &[Key] = &[
    Key::new("auth_url", Kind::Str, NO_HCP),
    Key::new("client_id", Kind::Str, NO_HCP),
    Key::new("client_secret", Kind::Str, NO_HCP),
    Key::new("hostname", Kind::Str, NO_HCP),
    Key::new("resource_id", Kind::Str, NO_HCP),
    Key::new("scada_address", Kind::Str, NO_HCP),
];

const CONFIG_ENTRIES: &[Key] = &[Key::new("bootstrap", Kind::OpaqueList, NO_CONFIG_ENTRIES)];

const CONNECT: &[Key] = &[
    Key::new("ca_config", Kind::Opaque, NO_MESH),
    Key::new("ca_provider", Kind::Str, NO_MESH).or("consul"),
    Key::new("enable_mesh_gateway_wan_federation", Kind::Bool, NO_MESH)
        .go("meshgatewaywanfederationenabled")
        .or("false"),
    Key::new("enabled", Kind::Bool, NO_MESH).or("true"),
    Key::new("test_ca_leaf_root_change_spread", Kind::Duration, Status::Inert),
];

/// `consul { ... }`: Consul's internal timings, overwritten after every user source.
const CONSUL: &[Key] = &[
    Key::new("coordinate", Kind::Block(CONSUL_COORDINATE), CONTAINER),
    Key::new("raft", Kind::Block(CONSUL_RAFT), CONTAINER),
    Key::new("server", Kind::Block(CONSUL_SERVER), CONTAINER),
];

const CONSUL_COORDINATE: &[Key] = &[
    Key::new("update_batch_size", Kind::Int, Status::Inert),
    Key::new("update_max_batches", Kind::Int, Status::Inert),
    Key::new("update_period", Kind::Duration, Status::Inert),
];

const CONSUL_RAFT: &[Key] = &[
    Key::new("election_timeout", Kind::Duration, Status::Inert),
    Key::new("heartbeat_timeout", Kind::Duration, Status::Inert),
    Key::new("leader_lease_timeout", Kind::Duration, Status::Inert),
];

const CONSUL_SERVER: &[Key] = &[Key::new("health_interval", Kind::Duration, Status::Inert)];

const DNS_CONFIG: &[Key] = &[
    Key::new("a_record_limit", Kind::Int, IMPL).or("0"),
    Key::new("allow_stale", Kind::Bool, IMPL).or("true"),
    Key::new("cache_max_age", Kind::Duration, NO_CACHE).or("0s"),
    Key::new(
        "disable_compression",
        Kind::Bool,
        Status::NotYet("muster always compresses names in DNS answers"),
    )
    .or("false"),
    Key::new("enable_additional_node_meta_txt", Kind::Bool, IMPL).go("nodemetatxt").or("true"),
    Key::new("enable_truncate", Kind::Bool, IMPL).or("false"),
    Key::new("max_stale", Kind::Duration, IMPL).or("87600h"),
    Key::new("node_ttl", Kind::Duration, IMPL).or("0s"),
    Key::new("only_passing", Kind::Bool, IMPL).or("false"),
    Key::new("prefer_namespace", Kind::Bool, Status::Enterprise),
    Key::new("recursor_strategy", Kind::Str, IMPL).or("sequential"),
    Key::new("recursor_timeout", Kind::Duration, IMPL).or("2s"),
    Key::new("service_ttl", Kind::MapOf(&Kind::Duration), IMPL),
    Key::new("soa", Kind::Block(DNS_SOA), CONTAINER),
    Key::new("udp_answer_limit", Kind::Int, IMPL).or("3"),
    Key::new("use_cache", Kind::Bool, NO_CACHE).or("false"),
];

const DNS_SOA: &[Key] = &[
    Key::new("expire", Kind::Uint("uint32"), IMPL).or("86400"),
    Key::new("min_ttl", Kind::Uint("uint32"), IMPL).or("0"),
    Key::new("refresh", Kind::Uint("uint32"), IMPL).or("3600"),
    Key::new("retry", Kind::Uint("uint32"), IMPL).or("600"),
];

const GOSSIP_LAN: &[Key] = &[
    Key::new("gossip_interval", Kind::Duration, GOSSIP_TUNING).or("200ms"),
    Key::new("gossip_nodes", Kind::Int, GOSSIP_TUNING).or("3"),
    Key::new("probe_interval", Kind::Duration, GOSSIP_TUNING).or("1s"),
    Key::new("probe_timeout", Kind::Duration, GOSSIP_TUNING).or("500ms"),
    Key::new("retransmit_mult", Kind::Int, GOSSIP_TUNING).or("4"),
    Key::new("suspicion_mult", Kind::Int, GOSSIP_TUNING).or("4"),
];

const GOSSIP_WAN: &[Key] = &[
    Key::new("gossip_interval", Kind::Duration, GOSSIP_TUNING).or("500ms"),
    Key::new("gossip_nodes", Kind::Int, GOSSIP_TUNING).or("3"),
    Key::new("probe_interval", Kind::Duration, GOSSIP_TUNING).or("5s"),
    Key::new("probe_timeout", Kind::Duration, GOSSIP_TUNING).or("3s"),
    Key::new("retransmit_mult", Kind::Int, GOSSIP_TUNING).or("4"),
    Key::new("suspicion_mult", Kind::Int, GOSSIP_TUNING).or("6"),
];

const HTTP_CONFIG: &[Key] = &[
    Key::new(
        "allow_write_http_from",
        Kind::StrList,
        Status::Guarded {
            why: "muster does not restrict which networks may write over HTTP yet",
            refuses: non_empty_list,
        },
    ),
    Key::new("block_endpoints", Kind::StrList, IMPL),
    Key::new("max_header_bytes", Kind::Int, DEFAULT_LIMITS).or("1 MiB"),
    Key::new("response_headers", Kind::StrMap, IMPL),
    Key::new("use_cache", Kind::Bool, NO_CACHE).or("true"),
];

const LIMITS: &[Key] = &[
    Key::new("http_max_conns_per_client", Kind::Int, DEFAULT_LIMITS).or("200"),
    Key::new("https_handshake_timeout", Kind::Duration, IMPL).or("5s"),
    Key::new("kv_max_value_size", Kind::Uint("uint64"), DEFAULT_LIMITS).or("524288"),
    Key::new("request_limits", Kind::Block(REQUEST_LIMITS), CONTAINER),
    Key::new("rpc_client_timeout", Kind::Duration, IMPL).or("60s"),
    Key::new("rpc_handshake_timeout", Kind::Duration, NO_RPC_TUNING).or("5s"),
    Key::new("rpc_max_burst", Kind::Int, RATE_LIMITS).or("1000"),
    Key::new("rpc_max_conns_per_client", Kind::Int, DEFAULT_LIMITS).or("100"),
    Key::new("rpc_rate", Kind::Float, RATE_LIMITS).or("-1 (unlimited)"),
    Key::new("txn_max_req_len", Kind::Uint("uint64"), DEFAULT_LIMITS).or("524288"),
];

const REQUEST_LIMITS: &[Key] = &[
    Key::new("mode", Kind::Str, RATE_LIMITS).or("disabled"),
    Key::new("read_rate", Kind::Float, RATE_LIMITS).or("-1 (unlimited)"),
    Key::new("write_rate", Kind::Float, RATE_LIMITS).or("-1 (unlimited)"),
];

const LOCALITY: &[Key] = &[
    Key::new("region", Kind::Str, Status::NotYet("muster does not route by locality")),
    Key::new("zone", Kind::Str, Status::NotYet("muster does not route by locality")),
];

const PEERING: &[Key] = &[
    Key::new("enabled", Kind::Bool, Status::NotYet("muster has no cluster peering")).or("true"),
    Key::new("test_allow_peer_registrations", Kind::Bool, Status::Inert),
];

const PERFORMANCE: &[Key] = &[
    Key::new("grpc_keepalive_interval", Kind::Duration, NO_GRPC).or("30s"),
    Key::new("grpc_keepalive_timeout", Kind::Duration, NO_GRPC).or("20s"),
    Key::new("leave_drain_time", Kind::Duration, NO_RPC_TUNING).or("5s"),
    Key::new("raft_multiplier", Kind::Int, IMPL).or("5"),
    Key::new("rpc_hold_timeout", Kind::Duration, IMPL).or("7s"),
];

const PORTS: &[Key] = &[
    Key::new("dns", Kind::Int, IMPL).or("8600"),
    Key::new("expose_max_port", Kind::Int, NO_MESH).or("21755"),
    Key::new("expose_min_port", Kind::Int, NO_MESH).or("21500"),
    Key::new("grpc", Kind::Int, NO_GRPC).or("-1"),
    Key::new("grpc_tls", Kind::Int, NO_GRPC).or("-1"),
    Key::new("http", Kind::Int, IMPL).or("8500"),
    Key::new("https", Kind::Int, IMPL).or("-1"),
    Key::new("proxy_max_port", Kind::Int, NO_MESH).or("20255"),
    Key::new("proxy_min_port", Kind::Int, NO_MESH).or("20000"),
    Key::new("serf_lan", Kind::Int, IMPL).or("8301"),
    Key::new("serf_wan", Kind::Int, IMPL).or("8302"),
    Key::new("server", Kind::Int, IMPL).or("8300"),
    Key::new("sidecar_max_port", Kind::Int, NO_MESH).or("21255"),
    Key::new("sidecar_min_port", Kind::Int, NO_MESH).or("21000"),
];

/// `raft_boltdb { NoFreelistSync = ... }`: the struct has no tags, so its one field keeps its
/// Go name (matched case-insensitively).
const RAFT_BOLTDB: &[Key] = &[Key::new(
    "NoFreelistSync",
    Kind::Bool,
    Status::Deprecated { new: "raft_logstore.boltdb.no_freelist_sync" },
)];

const RAFT_LOGSTORE: &[Key] = &[
    Key::new("backend", Kind::Str, RAFT_TUNING).or("boltdb"),
    Key::new("boltdb", Kind::Block(RAFT_LOGSTORE_BOLTDB), CONTAINER).go("boltdbconfig"),
    Key::new("disable_log_cache", Kind::Bool, RAFT_TUNING).or("false"),
    Key::new("verification", Kind::Block(RAFT_LOGSTORE_VERIFICATION), CONTAINER),
    Key::new("wal", Kind::Block(RAFT_LOGSTORE_WAL), CONTAINER).go("walconfig"),
];

const RAFT_LOGSTORE_BOLTDB: &[Key] = &[Key::new("no_freelist_sync", Kind::Bool, RAFT_TUNING).or("false")];

const RAFT_LOGSTORE_VERIFICATION: &[Key] = &[
    Key::new("enabled", Kind::Bool, RAFT_TUNING).or("false"),
    Key::new("interval", Kind::Duration, RAFT_TUNING),
];

const RAFT_LOGSTORE_WAL: &[Key] = &[Key::new("segment_size_mb", Kind::Int, RAFT_TUNING).or("64")];

const REPORTING: &[Key] = &[Key::new("license", Kind::Block(REPORTING_LICENSE), CONTAINER)];

const REPORTING_LICENSE: &[Key] = &[Key::new("enabled", Kind::Bool, Status::Enterprise)];

const RPC: &[Key] =
    &[Key::new("enable_streaming", Kind::Bool, Status::NotYet("muster's servers serve no streaming"))
        .or("server")];

const SEGMENT: &[Key] = &[
    Key::new("advertise", Kind::Str, Status::Enterprise),
    Key::new("bind", Kind::Str, Status::Enterprise),
    Key::new("name", Kind::Str, Status::Enterprise),
    Key::new("port", Kind::Int, Status::Enterprise),
    Key::new("rpc_listener", Kind::Bool, Status::Enterprise),
];

const TELEMETRY: &[Key] = &[
    Key::new("circonus_api_app", Kind::Str, NO_METRICS),
    Key::new("circonus_api_token", Kind::Str, NO_METRICS),
    Key::new("circonus_api_url", Kind::Str, NO_METRICS),
    Key::new("circonus_broker_id", Kind::Str, NO_METRICS),
    Key::new("circonus_broker_select_tag", Kind::Str, NO_METRICS),
    Key::new("circonus_check_display_name", Kind::Str, NO_METRICS),
    Key::new("circonus_check_force_metric_activation", Kind::Str, NO_METRICS),
    Key::new("circonus_check_id", Kind::Str, NO_METRICS),
    Key::new("circonus_check_instance_id", Kind::Str, NO_METRICS),
    Key::new("circonus_check_search_tag", Kind::Str, NO_METRICS),
    Key::new("circonus_check_tags", Kind::Str, NO_METRICS),
    // A string Consul hands to the Circonus library as it is.
    Key::new("circonus_submission_interval", Kind::Str, NO_METRICS).or("10s"),
    Key::new("circonus_submission_url", Kind::Str, NO_METRICS),
    Key::new("disable_hostname", Kind::Bool, IMPL).or("false"),
    Key::new("disable_per_tenancy_usage_metrics", Kind::Bool, NO_METRICS).or("false"),
    Key::new("dogstatsd_addr", Kind::Str, IMPL),
    Key::new("dogstatsd_tags", Kind::StrList, IMPL),
    Key::new("enable_host_metrics", Kind::Bool, NO_METRICS).or("false"),
    Key::new("filter_default", Kind::Bool, IMPL).or("true"),
    Key::new("metrics_prefix", Kind::Str, IMPL).or("consul"),
    Key::new("prefix_filter", Kind::StrList, IMPL),
    Key::new("prometheus_retention_time", Kind::Duration, IMPL).or("0s"),
    Key::new("retry_failed_connection", Kind::Bool, NO_METRICS).go("retryfailedconfiguration").or("true"),
    Key::new("statsd_address", Kind::Str, IMPL).go("statsdaddr"),
    Key::new("statsite_address", Kind::Str, IMPL).go("statsiteaddr"),
];

const TLS: &[Key] = &[
    Key::new("defaults", Kind::Block(TLS_DEFAULTS), CONTAINER),
    Key::new("grpc", Kind::Block(TLS_GRPC), CONTAINER),
    Key::new("https", Kind::Block(TLS_HTTPS), CONTAINER),
    Key::new("internal_rpc", Kind::Block(TLS_INTERNAL_RPC), CONTAINER),
];

const VERIFY_INCOMING: Status = Status::Guarded {
    why: "muster serves no gRPC API yet, so there is nothing to verify clients of",
    refuses: is_true,
};
const ONLY_INTERNAL_RPC: Status =
    Status::Rejected("verify_server_hostname is only valid in the tls.internal_rpc stanza");
const ONLY_GRPC: Status = Status::Rejected("use_auto_cert is only valid in the tls.grpc stanza");

const TLS_DEFAULTS: &[Key] = &[
    Key::new("ca_file", Kind::Str, IMPL),
    Key::new("ca_path", Kind::Str, IMPL),
    Key::new("cert_file", Kind::Str, IMPL),
    Key::new("key_file", Kind::Str, IMPL),
    Key::new("tls_cipher_suites", Kind::Str, IMPL),
    Key::new("tls_min_version", Kind::Str, IMPL).or("TLSv1_2"),
    Key::new("use_auto_cert", Kind::Bool, ONLY_GRPC),
    Key::new("verify_incoming", Kind::Bool, IMPL).or("false"),
    Key::new("verify_outgoing", Kind::Bool, IMPL).or("false"),
    Key::new("verify_server_hostname", Kind::Bool, ONLY_INTERNAL_RPC),
];

const TLS_INTERNAL_RPC: &[Key] = &[
    Key::new("ca_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("ca_path", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("cert_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("key_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("tls_cipher_suites", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("tls_min_version", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("use_auto_cert", Kind::Bool, ONLY_GRPC),
    Key::new("verify_incoming", Kind::Bool, IMPL).or("tls.defaults"),
    Key::new("verify_outgoing", Kind::Bool, IMPL).or("tls.defaults"),
    Key::new("verify_server_hostname", Kind::Bool, IMPL).or("false"),
];

const TLS_HTTPS: &[Key] = &[
    Key::new("ca_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("ca_path", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("cert_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("key_file", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("tls_cipher_suites", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("tls_min_version", Kind::Str, IMPL).or("tls.defaults"),
    Key::new("use_auto_cert", Kind::Bool, ONLY_GRPC),
    Key::new("verify_incoming", Kind::Bool, IMPL).or("tls.defaults"),
    // muster opens no HTTPS connections of its own for this to secure.
    Key::new("verify_outgoing", Kind::Bool, IMPL).or("tls.defaults"),
    Key::new("verify_server_hostname", Kind::Bool, ONLY_INTERNAL_RPC),
];

const TLS_GRPC: &[Key] = &[
    Key::new("ca_file", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("ca_path", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("cert_file", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("key_file", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("tls_cipher_suites", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("tls_min_version", Kind::Str, NO_TLS).or("tls.defaults"),
    Key::new("use_auto_cert", Kind::Bool, NO_TLS).or("false"),
    Key::new("verify_incoming", Kind::Bool, VERIFY_INCOMING).or("tls.defaults"),
    Key::new(
        "verify_outgoing",
        Kind::Bool,
        Status::Rejected("verify_outgoing is not valid in the tls.grpc stanza"),
    ),
    Key::new("verify_server_hostname", Kind::Bool, ONLY_INTERNAL_RPC),
];

const UI_CONFIG: &[Key] = &[
    Key::new("content_path", Kind::Str, NO_UI).or("/ui/"),
    Key::new("dashboard_url_templates", Kind::StrMap, NO_UI),
    Key::new("dir", Kind::Str, NO_UI),
    Key::new("enabled", Kind::Bool, NO_UI).or("false"),
    Key::new("metrics_provider", Kind::Str, NO_UI),
    Key::new("metrics_provider_files", Kind::StrList, NO_UI),
    Key::new("metrics_provider_options_json", Kind::Str, NO_UI),
    Key::new("metrics_proxy", Kind::Block(UI_METRICS_PROXY), CONTAINER),
];

const UI_METRICS_PROXY: &[Key] = &[
    Key::new("add_headers", Kind::BlockList(UI_METRICS_PROXY_HEADER), CONTAINER),
    Key::new("base_url", Kind::Str, NO_UI),
    Key::new("path_allowlist", Kind::StrList, NO_UI),
];

const UI_METRICS_PROXY_HEADER: &[Key] =
    &[Key::new("name", Kind::Str, NO_UI), Key::new("value", Kind::Str, NO_UI)];

const UNIX_SOCKETS: &[Key] = &[
    Key::new("group", Kind::Str, Status::NotYet("muster serves nothing on unix sockets yet")),
    Key::new("mode", Kind::Str, Status::NotYet("muster serves nothing on unix sockets yet")),
    Key::new("user", Kind::Str, Status::NotYet("muster serves nothing on unix sockets yet")),
];

const XDS: &[Key] = &[Key::new("update_max_per_second", Kind::Float, NO_MESH).or("250")];

const SERVICE_ADDRESS: &[Key] = &[Key::new("address", Kind::Str, IMPL), Key::new("port", Kind::Int, IMPL)];

const SERVICE_WEIGHTS: &[Key] =
    &[Key::new("passing", Kind::Int, IMPL).or("1"), Key::new("warning", Kind::Int, IMPL).or("1")];

const SERVICE_CONNECT: &[Key] = &[
    Key::new("native", Kind::Bool, NO_MESH).or("false"),
    Key::new("sidecar_service", Kind::Service, NO_MESH),
];

const SERVICE_PROXY: &[Key] = &[
    Key::new("config", Kind::Opaque, NO_MESH),
    Key::new("destination_service_id", Kind::Str, NO_MESH),
    Key::new("destination_service_name", Kind::Str, NO_MESH),
    Key::new("expose", Kind::Block(PROXY_EXPOSE), CONTAINER),
    Key::new("local_service_address", Kind::Str, NO_MESH),
    Key::new("local_service_port", Kind::Int, NO_MESH),
    Key::new("local_service_socket_path", Kind::Str, NO_MESH),
    Key::new("mesh_gateway", Kind::Block(PROXY_MESH_GATEWAY), CONTAINER),
    Key::new("mode", Kind::Str, NO_MESH),
    Key::new("transparent_proxy", Kind::Block(PROXY_TRANSPARENT), CONTAINER),
    Key::new("upstreams", Kind::BlockList(PROXY_UPSTREAM), CONTAINER),
];

const PROXY_EXPOSE: &[Key] = &[
    Key::new("checks", Kind::Bool, NO_MESH),
    Key::new("paths", Kind::BlockList(PROXY_EXPOSE_PATH), CONTAINER),
    Key::new("port", Kind::Int, NO_MESH),
];

const PROXY_EXPOSE_PATH: &[Key] = &[
    Key::new("listener_port", Kind::Int, NO_MESH),
    Key::new("local_path_port", Kind::Int, NO_MESH),
    Key::new("path", Kind::Str, NO_MESH),
    Key::new("protocol", Kind::Str, NO_MESH),
];

const PROXY_MESH_GATEWAY: &[Key] = &[Key::new("mode", Kind::Str, NO_MESH)];

const PROXY_TRANSPARENT: &[Key] = &[
    Key::new("dialed_directly", Kind::Bool, NO_MESH),
    Key::new("outbound_listener_port", Kind::Int, NO_MESH),
];

const PROXY_UPSTREAM: &[Key] = &[
    Key::new("config", Kind::Opaque, NO_MESH),
    Key::new("datacenter", Kind::Str, NO_MESH),
    Key::new("destination_name", Kind::Str, NO_MESH),
    Key::new("destination_namespace", Kind::Str, NO_MESH),
    Key::new("destination_partition", Kind::Str, NO_MESH),
    Key::new("destination_peer", Kind::Str, NO_MESH),
    Key::new("destination_type", Kind::Str, NO_MESH).or("service"),
    Key::new("local_bind_address", Kind::Str, NO_MESH),
    Key::new("local_bind_port", Kind::Int, NO_MESH),
    Key::new("local_bind_socket_mode", Kind::Str, NO_MESH),
    Key::new("local_bind_socket_path", Kind::Str, NO_MESH),
    Key::new("mesh_gateway", Kind::Block(PROXY_MESH_GATEWAY), CONTAINER),
];

// ---------------------------------------------------------------------------------------------
// What a guarded value asks for.

fn is_true(value: &Value) -> bool {
    value == &Value::Bool(true)
}

fn non_empty_str(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.trim().is_empty())
}

fn non_empty_list(value: &Value) -> bool {
    value.as_array().is_some_and(|items| !items.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Stage 1: decoding, as mapstructure does.

/// A key's place, twice: as Consul names it in errors (`services[0].port`,
/// `audit.sink[main].type`) and as the table names it (`services[].port`), so that a warning is
/// given once per table key, not once per list item.
#[derive(Debug, Clone)]
struct At {
    consul: String,
    table: String,
}

impl At {
    fn root() -> At {
        At { consul: String::new(), table: String::new() }
    }

    fn child(&self, name: &str) -> At {
        let join = |base: &str| if base.is_empty() { name.to_owned() } else { format!("{base}.{name}") };
        At { consul: join(&self.consul), table: join(&self.table) }
    }

    fn index(&self, index: usize) -> At {
        At { consul: format!("{}[{index}]", self.consul), table: format!("{}[]", self.table) }
    }

    fn entry(&self, name: &str) -> At {
        At { consul: format!("{}[{name}]", self.consul), table: format!("{}[]", self.table) }
    }
}

/// A deprecated key's value, to be read as its replacement once the whole source is decoded.
#[derive(Debug)]
struct Move {
    from: String,
    to: &'static str,
    value: Value,
}

/// Stage 1's state: what mapstructure would find, and what the deprecations will move.
#[derive(Debug)]
struct Decode {
    origin: Origin,
    type_errors: Vec<String>,
    unknown: Vec<String>,
    rejected: Vec<String>,
    warnings: Vec<String>,
    moves: Vec<Move>,
    /// Set while decoding a deprecated key's value: the whole value moves, its keys do not.
    in_deprecated: bool,
    depth: usize,
}

/// How an input key names a table key, best first: mapstructure takes the exact name, then
/// `HookTranslateKeys` the Go field's name or an alias, then any case of the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Spelling {
    Exact,
    GoName,
    Folded,
}

impl Decode {
    fn new(origin: Origin) -> Decode {
        Decode {
            origin,
            type_errors: Vec::new(),
            unknown: Vec::new(),
            rejected: Vec::new(),
            warnings: Vec::new(),
            moves: Vec::new(),
            in_deprecated: false,
            depth: 0,
        }
    }

    /// Decodes an object against `table`, giving it back under the table's names.
    fn object(&mut self, table: &'static [Key], at: &At, input: Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        if self.depth >= NESTING_MAX {
            self.type_errors.push(format!("'{}': nested more than {NESTING_MAX} levels deep", at.consul));
            return out;
        }
        self.depth += 1;
        let (chosen, unknown) = resolve(table, input);
        for name in unknown {
            self.unknown.push(format!("invalid config key {}", at.child(&name).consul));
        }
        for (key, value) in chosen {
            // `null` is Go's nil: the key stays unset.
            if value.is_null() {
                continue;
            }
            let here = at.child(key.name);
            let deprecated = matches!(key.status, Status::Deprecated { .. });
            let outer = self.in_deprecated;
            self.in_deprecated = outer || deprecated;
            let decoded = self.value(&key.kind, &here, value);
            self.in_deprecated = outer;
            let Some(value) = decoded else { continue };
            match key.status {
                Status::Deprecated { new } if !self.in_deprecated => {
                    self.moves.push(Move { from: here.consul, to: new, value })
                }
                Status::Ignored(warning) => push_once(&mut self.warnings, warning),
                Status::Rejected(error) => push_once(&mut self.rejected, error),
                _ => {
                    out.insert(key.name.to_owned(), value);
                }
            }
        }
        self.depth -= 1;
        out
    }

    /// Decodes one value into `kind`; `None` when it cannot be (the error is recorded) or when
    /// it leaves the key unset.
    fn value(&mut self, kind: &Kind, at: &At, value: Value) -> Option<Value> {
        match kind {
            Kind::Str | Kind::Duration => self.typed(at, "string", value, Value::is_string),
            Kind::Bool => self.typed(at, "bool", value, Value::is_boolean),
            Kind::Int => self.int(at, value),
            Kind::Uint(go_type) => self.uint(at, go_type, value),
            Kind::Float => self.float(at, value),
            Kind::Any => Some(value),
            Kind::StrList => self.list(&Kind::Str, at, value),
            Kind::StrMap => self.map_of(&Kind::Str, at, value),
            Kind::MapOf(inner) => self.map_of(inner, at, value),
            Kind::Opaque => self.map(at, value).map(Value::Object),
            Kind::OpaqueList => self.list(&Kind::Opaque, at, value),
            Kind::Block(table) => self.block(table, at, value),
            Kind::BlockList(table) => self.list(&Kind::Block(table), at, value),
            Kind::Service => self.block(SERVICE_FIELDS, at, value),
            Kind::Services => self.list(&Kind::Service, at, value),
            Kind::Check => self.block(CHECK_FIELDS, at, value),
            Kind::Checks => self.list(&Kind::Check, at, value),
        }
    }

    fn typed(&mut self, at: &At, go_type: &str, value: Value, fits: fn(&Value) -> bool) -> Option<Value> {
        if fits(&value) {
            return Some(value);
        }
        self.unconvertible(at, go_type, &value);
        None
    }

    /// mapstructure's `decodeInt`: any number, a float truncated toward zero.
    fn int(&mut self, at: &At, value: Value) -> Option<Value> {
        let Some(number) = value.as_number() else {
            self.unconvertible(at, "int", &value);
            return None;
        };
        let whole = match (number.as_i64(), number.as_u64()) {
            (Some(signed), _) => signed,
            (None, Some(unsigned)) => i64::try_from(unsigned).unwrap_or(i64::MAX),
            // `as` saturates, where Go's conversion of an out-of-range float is unspecified.
            (None, None) => number.as_f64().unwrap_or_default().trunc() as i64,
        };
        Some(Value::from(whole))
    }

    /// mapstructure's `decodeUint`: a negative number is an error, a float is truncated, and a
    /// `uint32` keeps the low 32 bits as Go's `reflect.Value.SetUint` does.
    fn uint(&mut self, at: &At, go_type: &str, value: Value) -> Option<Value> {
        let Some(number) = value.as_number() else {
            self.unconvertible(at, go_type, &value);
            return None;
        };
        if number.as_f64().is_some_and(|f| f < 0.0) {
            let shown = match (self.origin, number.as_i64()) {
                (Origin::Hcl, Some(signed)) => signed.to_string(),
                _ => format!("{:.6}", number.as_f64().unwrap_or_default()),
            };
            self.type_errors.push(format!("cannot parse '{}', {shown} overflows uint", at.consul));
            return None;
        }
        let whole = number.as_u64().unwrap_or_else(|| number.as_f64().unwrap_or_default().trunc() as u64);
        let kept = if go_type == "uint32" { whole & u64::from(u32::MAX) } else { whole };
        Some(Value::from(kept))
    }

    fn float(&mut self, at: &At, value: Value) -> Option<Value> {
        match value.as_f64() {
            Some(float) => Some(Value::from(float)),
            None => {
                self.unconvertible(at, "float64", &value);
                None
            }
        }
    }

    /// mapstructure's `decodeSlice`: a list, each item decoded into `item`.
    fn list(&mut self, item: &Kind, at: &At, value: Value) -> Option<Value> {
        let items = match value {
            Value::Array(items) => items,
            // HCL1 makes every block a list, even a single one; the parser here gives the block.
            Value::Object(_) if self.origin == Origin::Hcl => vec![value],
            other => {
                let kind = go_kind(self.origin, &other);
                self.type_errors
                    .push(format!("'{}': source data must be an array or slice, got {kind}", at.consul));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut complete = true;
        for (index, value) in items.into_iter().enumerate() {
            let decoded =
                if value.is_null() { Some(zero(item)) } else { self.value(item, &at.index(index), value) };
            match decoded {
                Some(value) => out.push(value),
                None => complete = false,
            }
        }
        complete.then_some(Value::Array(out))
    }

    /// mapstructure's `decodeMapFromMap`: every entry decoded into `item`, named `at[name]`.
    fn map_of(&mut self, item: &Kind, at: &At, value: Value) -> Option<Value> {
        let map = self.map(at, value)?;
        let mut out = Map::new();
        let mut complete = true;
        for (name, value) in map {
            let decoded =
                if value.is_null() { Some(zero(item)) } else { self.value(item, &at.entry(&name), value) };
            match decoded {
                Some(value) => {
                    out.insert(name, value);
                }
                None => complete = false,
            }
        }
        complete.then_some(Value::Object(out))
    }

    fn block(&mut self, table: &'static [Key], at: &At, value: Value) -> Option<Value> {
        let map = self.map(at, value)?;
        Some(Value::Object(self.object(table, at, map)))
    }

    /// An object where Go wants a struct or a map. `HookWeakDecodeFromSlice` unwraps a
    /// one-element list of objects, HCL's (`[]map[string]interface{}`) and JSON's
    /// (`[]interface{}`) alike, so `"service": [{...}]` as Consul's own documentation writes it
    /// is one service; a longer list (a block repeated where Consul takes one) is
    /// mapstructure's error.
    fn map(&mut self, at: &At, value: Value) -> Option<Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            Value::Array(items) if items.len() == 1 && items[0].is_object() => {
                items.into_iter().next().and_then(|item| match item {
                    Value::Object(map) => Some(map),
                    _ => None,
                })
            }
            other => {
                let kind = go_kind(self.origin, &other);
                self.type_errors.push(format!("'{}' expected a map, got '{kind}'", at.consul));
                None
            }
        }
    }

    fn unconvertible(&mut self, at: &At, go_type: &str, value: &Value) {
        self.type_errors.push(format!(
            "'{}' expected type '{go_type}', got unconvertible type '{}', value: '{}'",
            at.consul,
            go_type_of(self.origin, value),
            go_value(self.origin, value)
        ));
    }
}

/// The entries of `input` that name keys of `table`, in input order and paired with their key,
/// and the names that name none. When several spellings name one key, the best wins
/// ([`Spelling`]); a losing Go name or alias is dropped silently (`HookTranslateKeys` keeps the
/// canonical value), a losing other case is left unused, which Consul reports as unknown.
fn resolve(table: &'static [Key], input: Map<String, Value>) -> (Vec<(&'static Key, Value)>, Vec<String>) {
    let found: Vec<Option<(usize, Spelling)>> = input.keys().map(|name| lookup(table, name)).collect();
    let mut winner: Vec<Option<(Spelling, usize)>> = vec![None; table.len()];
    for (position, (index, spelling)) in found.iter().enumerate().filter_map(|(p, f)| f.map(|f| (p, f))) {
        let best = &mut winner[index];
        if best.is_none_or(|current| (spelling, position) < current) {
            *best = Some((spelling, position));
        }
    }
    let mut chosen = Vec::new();
    let mut unknown = Vec::new();
    for (position, ((name, value), found)) in input.into_iter().zip(found).enumerate() {
        match found {
            None => unknown.push(name),
            Some((index, _)) if winner[index].is_some_and(|(_, at)| at == position) => {
                chosen.push((&table[index], value))
            }
            Some((_, Spelling::GoName)) => {}
            Some(_) => unknown.push(name),
        }
    }
    (chosen, unknown)
}

/// The key of `table` that `name` names, and how.
fn lookup(table: &'static [Key], name: &str) -> Option<(usize, Spelling)> {
    let lower = name.to_lowercase();
    let spelling = |key: &Key| {
        if key.name == name {
            Some(Spelling::Exact)
        } else if key.has_spelling(&lower) {
            Some(Spelling::GoName)
        } else if key.name.eq_ignore_ascii_case(name) {
            Some(Spelling::Folded)
        } else {
            None
        }
    };
    table
        .iter()
        .enumerate()
        .filter_map(|(index, key)| spelling(key).map(|how| (index, how)))
        .min_by_key(|(_, how)| *how)
}

/// Go's zero value of `kind`: what a `null` item of a list or map decodes to.
fn zero(kind: &Kind) -> Value {
    match kind {
        Kind::Str | Kind::Duration => Value::from(""),
        Kind::Bool => Value::Bool(false),
        Kind::Int | Kind::Uint(_) => Value::from(0),
        Kind::Float => Value::from(0.0),
        Kind::StrList | Kind::BlockList(_) | Kind::OpaqueList | Kind::Services | Kind::Checks => {
            Value::Array(Vec::new())
        }
        Kind::StrMap | Kind::MapOf(_) | Kind::Opaque | Kind::Block(_) | Kind::Service | Kind::Check => {
            Value::Object(Map::new())
        }
        Kind::Any => Value::Null,
    }
}

fn without_underscores(name: &str) -> String {
    name.chars().filter(|c| *c != '_').collect()
}

fn push_once(list: &mut Vec<String>, text: impl Into<String>) {
    let text = text.into();
    if !list.contains(&text) {
        list.push(text);
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: deprecated keys read as their replacements (`deprecated.go`).

/// Moves one deprecated key's value to its replacement (unless that is set: the new key wins)
/// with Consul's warning, and applies what else Consul does for that key.
fn apply_move(config: &mut Map<String, Value>, one: Move, warnings: &mut Vec<String>) {
    let Move { from, to, value } = one;
    match from.as_str() {
        // Appended to the new list; Consul says nothing of an empty one.
        "start_join" | "start_join_wan" => {
            let Value::Array(items) = value else { return };
            if items.is_empty() {
                return;
            }
            append(config, to, items);
        }
        // The block moves as a whole: an absent field is Go's false.
        "raft_boltdb" => {
            let no_sync = value.get("NoFreelistSync").cloned().unwrap_or(Value::Bool(false));
            set_if_absent(config, "raft_logstore.boltdb.no_freelist_sync", no_sync);
        }
        "tls_min_version" => {
            let value = tls_version(value, warnings);
            set_if_absent(config, to, value);
        }
        _ => set_if_absent(config, to, value),
    }
    warnings.push(format!("The '{from}' field is deprecated. Use the '{to}' field instead."));
    match from.as_str() {
        "acl_replication_token" => set(config, "acl.enable_token_replication", Value::Bool(true)),
        // The old key also turned ACLs on.
        "acl_datacenter" => set(config, "acl.enabled", Value::Bool(true)),
        // Before Consul 1.12 the top-level key never reached the gRPC port.
        "verify_incoming" => set_if_absent(config, "tls.grpc.verify_incoming", Value::Bool(false)),
        _ => {}
    }
}

/// Consul's rewrite of the pre-1.12 TLS version names, with its warning.
fn tls_version(value: Value, warnings: &mut Vec<String>) -> Value {
    let old = value.as_str().unwrap_or_default();
    let new = match old {
        "tls10" => "TLSv1_0",
        "tls11" => "TLSv1_1",
        "tls12" => "TLSv1_2",
        "tls13" => "TLSv1_3",
        _ => return value,
    };
    warnings.push(format!("'tls_min_version' value '{old}' is deprecated, please specify '{new}' instead"));
    Value::from(new)
}

/// The object that holds the last segment of the dotted `path`, made as needed; `None` when
/// something on the way is not an object (its type error is already recorded).
fn parent_of<'m>(
    config: &'m mut Map<String, Value>,
    path: &str,
) -> Option<(&'m mut Map<String, Value>, String)> {
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().unwrap_or_default().to_owned();
    let mut map = config;
    for segment in segments {
        map = map.entry(segment).or_insert_with(|| Value::Object(Map::new())).as_object_mut()?;
    }
    Some((map, last))
}

fn set_if_absent(config: &mut Map<String, Value>, path: &str, value: Value) {
    if let Some((parent, last)) = parent_of(config, path) {
        parent.entry(last).or_insert(value);
    }
}

fn set(config: &mut Map<String, Value>, path: &str, value: Value) {
    if let Some((parent, last)) = parent_of(config, path) {
        parent.insert(last, value);
    }
}

fn append(config: &mut Map<String, Value>, path: &str, items: Vec<Value>) {
    if let Some((parent, last)) = parent_of(config, path) {
        if let Value::Array(list) = parent.entry(last).or_insert_with(|| Value::Array(Vec::new())) {
            list.extend(items);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 3: what Consul's builder checks, and what muster says about each key.

struct Build<'w> {
    errors: Vec<String>,
    refusals: Vec<String>,
    warnings: &'w mut Vec<String>,
}

impl Build<'_> {
    /// Walks a decoded object; `check_id` is set inside a check definition, whose durations
    /// Consul names `check[<id>].<field>`.
    fn object(&mut self, table: &'static [Key], at: &At, map: &Map<String, Value>, check_id: Option<&str>) {
        for (name, value) in map {
            // Stage 1 left only the table's names; stage 2 may have made an object on the way.
            let Some(key) = table.iter().find(|key| key.name == name) else { continue };
            self.key(key, &at.child(name), value, check_id);
        }
    }

    fn key(&mut self, key: &'static Key, at: &At, value: &Value, check_id: Option<&str>) {
        match key.status {
            Status::Enterprise => {
                if enterprise_applies(&at.consul, value) {
                    push_once(self.warnings, enterprise_warning(&at.consul));
                }
                return;
            }
            // Consul overwrites it after every user source: even a bad duration is never parsed.
            Status::Inert => return,
            // A value that is Consul's default asks for nothing muster lacks (`ports { grpc = -1 }`).
            Status::NotYet(_) | Status::Guarded { .. } if is_default(key, value) => {}
            Status::NotYet(why) => push_once(self.warnings, not_yet(at, why)),
            Status::Guarded { why, refuses } if refuses(value) => push_once(
                &mut self.refusals,
                format!("{}: {why}; muster will not run less secure than this configuration asks", at.consul),
            ),
            Status::Guarded { why, .. } => push_once(self.warnings, not_yet(at, why)),
            _ => {}
        }
        self.contents(key, at, value, check_id);
    }

    fn contents(&mut self, key: &'static Key, at: &At, value: &Value, check_id: Option<&str>) {
        match (&key.kind, value) {
            (Kind::Duration, Value::String(text)) => {
                let label = match check_id {
                    Some(id) => format!("check[{id}].{}", key.name),
                    None => duration_label(&at.consul),
                };
                self.duration(&label, text);
            }
            (Kind::MapOf(&Kind::Duration), Value::Object(map)) => {
                for (name, text) in map {
                    if let Some(text) = text.as_str() {
                        self.duration(
                            &format!("{}[{}]", at.consul, muster_core::go_quote::quote(name)),
                            text,
                        );
                    }
                }
            }
            (Kind::MapOf(&Kind::Block(table)), Value::Object(map)) => {
                for (name, item) in map {
                    if let Some(item) = item.as_object() {
                        self.object(table, &at.entry(name), item, None);
                    }
                }
            }
            (Kind::Block(table), Value::Object(map)) => self.object(table, at, map, None),
            (Kind::Service, Value::Object(map)) => self.object(SERVICE_FIELDS, at, map, None),
            (Kind::Check, Value::Object(map)) => self.check(at, map),
            (Kind::BlockList(table), Value::Array(items)) => self.each(items, at, |build, at, map| {
                build.object(table, at, map, None);
            }),
            (Kind::Services, Value::Array(items)) => self.each(items, at, |build, at, map| {
                build.object(SERVICE_FIELDS, at, map, None);
            }),
            (Kind::Checks, Value::Array(items)) => self.each(items, at, Build::check),
            _ => {}
        }
    }

    fn check(&mut self, at: &At, map: &Map<String, Value>) {
        let id = map.get("id").and_then(Value::as_str).unwrap_or_default();
        self.object(CHECK_FIELDS, at, map, Some(id));
    }

    fn each(&mut self, items: &[Value], at: &At, mut walk: impl FnMut(&mut Self, &At, &Map<String, Value>)) {
        for (index, item) in items.iter().enumerate() {
            if let Some(map) = item.as_object() {
                walk(self, &at.index(index), map);
            }
        }
    }

    /// The builder's `durationVal`: Go's syntax, in its error words. Go takes a negative
    /// duration, so a negative one is not an error here either.
    fn duration(&mut self, label: &str, text: &str) {
        use muster_core::duration::{parse, DurationError};
        let parsed = match parse(text) {
            Ok(duration) => Some(duration),
            Err(DurationError::Negative(_)) => None,
            Err(error) => {
                self.errors.push(format!(
                    "{label}: invalid duration: {}: {error}",
                    muster_core::go_quote::quote(text)
                ));
                None
            }
        };
        // `durationValWithDefaultMin`: an unparsable value counts as zero, so it is short too.
        if label == "server_rejoin_age_max" && parsed.is_none_or(|duration| duration < SERVER_REJOIN_AGE_MIN)
        {
            self.errors.push(format!("server_rejoin_age_max: duration '{text}' cannot be less than: 6h0m0s"));
        }
    }
}

/// The name Consul's builder gives a duration in its error: the dotted path, except where the
/// builder spells it otherwise.
fn duration_label(path: &str) -> String {
    match path {
        "dns_config.recursor_timeout" => "recursor_timeout".to_owned(),
        "telemetry.prometheus_retention_time" => "prometheus_retention_time".to_owned(),
        // `builder.go` writes `gossip_lan..gossip_interval` and the like.
        _ => match path.strip_prefix("gossip_lan.").or_else(|| path.strip_prefix("gossip_wan.")) {
            Some(field) => format!("{}..{field}", &path[..10]),
            None => path.to_owned(),
        },
    }
}

/// Whether Consul CE warns about an Enterprise key with this value (`builder_ce.go`): strings
/// and lists when not empty (`license_path` whenever set), `audit` when enabled or with sinks,
/// anything else whenever set.
fn enterprise_applies(path: &str, value: &Value) -> bool {
    match (path, value) {
        ("license_path", _) => true,
        ("audit", Value::Object(audit)) => {
            audit.get("enabled") == Some(&Value::Bool(true))
                || audit.get("sink").and_then(Value::as_object).is_some_and(|sinks| !sinks.is_empty())
        }
        (_, Value::String(text)) => !text.is_empty(),
        (_, Value::Array(items)) => !items.is_empty(),
        _ => true,
    }
}

fn enterprise_warning(path: &str) -> String {
    let key =
        if path == "read_replica" { "read_replica (or the deprecated non_voting_server)" } else { path };
    format!(
        "{} is a Consul Enterprise configuration and will have no effect",
        muster_core::go_quote::quote(key)
    )
}

/// Whether `value` is the key's default as the table writes it (`-1`, `false`, `"5s"`).
fn is_default(key: &Key, value: &Value) -> bool {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        _ => return false,
    };
    !key.default.is_empty() && text == key.default
}

fn not_yet(at: &At, why: &str) -> String {
    format!("{}: accepted, but muster does not act on it yet: {why}", at.table)
}

// ---------------------------------------------------------------------------------------------
// Go's renderings, for error texts in Consul's words.

/// Go's name for the type a parsed value has (`reflect.Type.String()`).
fn go_type_of(origin: Origin, value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(number) if origin == Origin::Hcl && !number.is_f64() => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Go's `reflect.Kind` name for a parsed value.
fn go_kind(origin: Origin, value: &Value) -> &'static str {
    match value {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(number) if origin == Origin::Hcl && !number.is_f64() => "int",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// `fmt.Sprintf("%v", value)` of the Go value a parsed value decodes to; past
/// [`RENDER_DEPTH_MAX`] levels, `...` (only error texts use it, and a hostile file may nest deep).
fn go_value(origin: Origin, value: &Value) -> String {
    go_value_within(origin, value, RENDER_DEPTH_MAX)
}

fn go_value_within(origin: Origin, value: &Value, depth: usize) -> String {
    let Some(inner) = depth.checked_sub(1) else { return "...".to_owned() };
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) if origin == Origin::Hcl && !number.is_f64() => number.to_string(),
        Value::Number(number) => go_float(number.as_f64().unwrap_or_default()),
        Value::String(text) => text.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|item| go_value_within(origin, item, inner)).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => {
            // Go's fmt prints a map's entries sorted by key.
            let mut entries: Vec<(&String, String)> =
                map.iter().map(|(name, item)| (name, go_value_within(origin, item, inner))).collect();
            entries.sort();
            let entries: Vec<String> =
                entries.into_iter().map(|(name, item)| format!("{name}:{item}")).collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits that
/// read back the same, in exponent form when the exponent is below -4 or at least 6
/// (`1e+06`, `0.334`, `100000`).
fn go_float(float: f64) -> String {
    if float == 0.0 {
        return if float.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sign = if float < 0.0 { "-" } else { "" };
    // Rust's `{:e}` writes the same shortest digits: `1.5e6`, `3.34e-1`.
    let scientific = format!("{:e}", float.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or_default();
    let digits: Vec<char> = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exponent) {
        let rest: String = digits[1..].iter().collect();
        let point = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{}{point}e{exponent_sign}{:02}", digits[0], exponent.abs());
    }
    let point = exponent + 1;
    let digit = |at: i32| usize::try_from(at).ok().and_then(|at| digits.get(at)).copied().unwrap_or('0');
    let whole: String = if point > 0 { (0..point).map(digit).collect() } else { "0".to_owned() };
    let count = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let fraction: String = (point..count).map(digit).collect();
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

// ---------------------------------------------------------------------------------------------
// The reference.

/// Every leaf key of `table` under `prefix`, depth first, with its dotted path.
fn leaves(table: &'static [Key], prefix: &str, rows: &mut Vec<(String, &'static Key)>) {
    for key in table {
        let path = format!("{prefix}{}", key.name);
        match key.kind {
            Kind::Block(inner) if !inner.is_empty() => leaves(inner, &format!("{path}."), rows),
            Kind::BlockList(inner) | Kind::MapOf(&Kind::Block(inner)) => {
                leaves(inner, &format!("{path}[]."), rows)
            }
            _ => rows.push((path, key)),
        }
    }
}

fn status_text(status: &Status) -> (&'static str, String) {
    match status {
        Status::Implemented => ("implemented", String::new()),
        Status::NotYet(why) => ("not yet", (*why).to_owned()),
        Status::Inert => ("inert", "Consul ignores or overwrites it".to_owned()),
        Status::Enterprise => ("Enterprise", "Consul CE warns and ignores it".to_owned()),
        Status::Deprecated { new } => ("deprecated", format!("read as `{new}`")),
        Status::Guarded { why, .. } => {
            ("guarded", format!("{why}; the agent refuses a value that asks for it"))
        }
        Status::Ignored(warning) => ("ignored", format!("Consul warns: {warning}")),
        Status::Rejected(error) => ("rejected", format!("Consul refuses to start: {error}")),
    }
}

fn kind_text(kind: &Kind) -> String {
    match kind {
        Kind::Str => "string".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::Int => "int".to_owned(),
        Kind::Uint(go_type) => (*go_type).to_owned(),
        Kind::Float => "float".to_owned(),
        Kind::Duration => "duration".to_owned(),
        Kind::StrList => "list of strings".to_owned(),
        Kind::StrMap => "map of strings".to_owned(),
        Kind::MapOf(inner) => format!("map of {}", kind_text(inner)),
        Kind::Block(_) => "object".to_owned(),
        Kind::BlockList(_) => "list of objects".to_owned(),
        Kind::Opaque => "object (free-form)".to_owned(),
        Kind::OpaqueList => "list of objects (free-form)".to_owned(),
        Kind::Any => "any".to_owned(),
        Kind::Service => "service definition".to_owned(),
        Kind::Services => "list of service definitions".to_owned(),
        Kind::Check => "check definition".to_owned(),
        Kind::Checks => "list of check definitions".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Limits.

/// How deep blocks may nest. Only `connect.sidecar_service` nests a table in itself, and Consul
/// refuses a sidecar inside a sidecar; the limit keeps a hostile file from exhausting the stack.
const NESTING_MAX: usize = 32;

/// The shortest `server_rejoin_age_max` Consul takes.
const SERVER_REJOIN_AGE_MIN: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How deep [`go_value`] renders nested lists and objects.
const RENDER_DEPTH_MAX: usize = 16;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("a test document must be an object, not {other}"),
        }
    }

    fn errors(value: Value) -> Vec<String> {
        check(object(value)).expect_err("the document must fail")
    }

    fn passes(value: Value) -> Checked {
        check(object(value)).unwrap_or_else(|errors| panic!("the document must pass: {errors:#?}"))
    }

    /// The key at a dotted table path (`services[].checks[].interval`).
    fn find(path: &str) -> Option<&'static Key> {
        let mut table: &'static [Key] = KEYS;
        let mut found = None;
        for segment in path.split('.') {
            let name = segment.trim_end_matches("[]");
            let key = table.iter().find(|key| key.name == name)?;
            found = Some(key);
            table = match key.kind {
                Kind::Block(inner) | Kind::BlockList(inner) | Kind::MapOf(&Kind::Block(inner)) => inner,
                Kind::Service | Kind::Services => SERVICE_FIELDS,
                Kind::Check | Kind::Checks => CHECK_FIELDS,
                _ => &[],
            };
        }
        found
    }

    /// A valid value of `kind`: the harmless one where the key is guarded.
    fn sample(key: &Key, depth: usize) -> Option<Value> {
        let value = match key.kind {
            Kind::Str => json!("x"),
            Kind::Bool => json!(true),
            Kind::Int | Kind::Uint(_) => json!(3),
            Kind::Float => json!(1.5),
            Kind::Duration => json!("168h"),
            Kind::StrList => json!(["a", "b"]),
            Kind::StrMap => json!({"k": "v"}),
            Kind::MapOf(&Kind::Duration) => json!({"*": "5s"}),
            Kind::MapOf(&Kind::StrList) => json!({"X-A": ["1"]}),
            Kind::MapOf(&Kind::Block(table)) => json!({"main": sample_block(table, depth)}),
            Kind::MapOf(_) => json!({}),
            Kind::Block(table) => sample_block(table, depth),
            Kind::BlockList(table) => json!([sample_block(table, depth)]),
            Kind::Opaque => json!({"anything": [1, "two"]}),
            Kind::OpaqueList => json!([{"type": "key", "key": "a", "handler_type": "script", "args": ["x"]}]),
            Kind::Any => json!(false),
            Kind::Service if depth > 1 => json!({"port": 1}),
            Kind::Service => sample_block(SERVICE_FIELDS, depth + 1),
            Kind::Services => json!([sample_block(SERVICE_FIELDS, depth + 1)]),
            Kind::Check => sample_block(CHECK_FIELDS, depth),
            Kind::Checks => json!([sample_block(CHECK_FIELDS, depth)]),
        };
        match key.status {
            Status::Rejected(_) => None,
            Status::Guarded { refuses, .. } if refuses(&value) => Some(zero(&key.kind)),
            _ => Some(value),
        }
    }

    fn sample_block(table: &'static [Key], depth: usize) -> Value {
        let map = table
            .iter()
            .filter_map(|key| sample(key, depth).map(|value| (key.name.to_owned(), value)))
            .collect();
        Value::Object(map)
    }

    /// Consul's `agent/config/testdata/full-config.hcl` (1.18 to 1.20), as the dotted paths of
    /// its keys; a service's and a check's fields are listed under `service.` and `check.`.
    const FULL_CONFIG_KEYS: &[&str] = &[
        "acl_agent_master_token",
        "acl_agent_token",
        "acl_datacenter",
        "acl_default_policy",
        "acl_down_policy",
        "acl_enable_key_list_policy",
        "acl_master_token",
        "acl_replication_token",
        "acl_token",
        "acl_ttl",
        "acl.enabled",
        "acl.down_policy",
        "acl.default_policy",
        "acl.enable_key_list_policy",
        "acl.enable_token_persistence",
        "acl.policy_ttl",
        "acl.role_ttl",
        "acl.token_ttl",
        "acl.enable_token_replication",
        "acl.msp_disable_bootstrap",
        "acl.tokens.master",
        "acl.tokens.initial_management",
        "acl.tokens.agent_master",
        "acl.tokens.agent_recovery",
        "acl.tokens.replication",
        "acl.tokens.agent",
        "acl.tokens.default",
        "acl.tokens.managed_service_provider[].accessor_id",
        "acl.tokens.managed_service_provider[].secret_id",
        "addresses.dns",
        "addresses.http",
        "addresses.https",
        "addresses.grpc",
        "addresses.grpc_tls",
        "advertise_addr",
        "advertise_addr_wan",
        "advertise_reconnect_timeout",
        "audit.enabled",
        "auto_config.enabled",
        "auto_config.intro_token",
        "auto_config.intro_token_file",
        "auto_config.dns_sans",
        "auto_config.ip_sans",
        "auto_config.server_addresses",
        "auto_config.authorization.enabled",
        "auto_config.authorization.static.allow_reuse",
        "auto_config.authorization.static.claim_mappings",
        "auto_config.authorization.static.list_claim_mappings",
        "auto_config.authorization.static.bound_issuer",
        "auto_config.authorization.static.bound_audiences",
        "auto_config.authorization.static.claim_assertions",
        "auto_config.authorization.static.jwt_validation_pub_keys",
        "autopilot.cleanup_dead_servers",
        "autopilot.disable_upgrade_migration",
        "autopilot.last_contact_threshold",
        "autopilot.max_trailing_logs",
        "autopilot.min_quorum",
        "autopilot.redundancy_zone_tag",
        "autopilot.server_stabilization_time",
        "autopilot.upgrade_version_tag",
        "bind_addr",
        "bootstrap_expect",
        "cache.entry_fetch_max_burst",
        "cache.entry_fetch_rate",
        "use_streaming_backend",
        "ca_file",
        "ca_path",
        "cert_file",
        "check",
        "checks",
        "check_update_interval",
        "client_addr",
        "config_entries.bootstrap",
        "auto_encrypt.tls",
        "auto_encrypt.dns_san",
        "auto_encrypt.ip_san",
        "auto_encrypt.allow_tls",
        "cloud.resource_id",
        "cloud.client_id",
        "cloud.client_secret",
        "cloud.hostname",
        "cloud.auth_url",
        "cloud.scada_address",
        "connect.ca_provider",
        "connect.ca_config",
        "connect.enable_mesh_gateway_wan_federation",
        "connect.enabled",
        "gossip_lan.gossip_nodes",
        "gossip_lan.gossip_interval",
        "gossip_lan.retransmit_mult",
        "gossip_lan.suspicion_mult",
        "gossip_lan.probe_interval",
        "gossip_lan.probe_timeout",
        "gossip_wan.gossip_nodes",
        "gossip_wan.gossip_interval",
        "gossip_wan.retransmit_mult",
        "gossip_wan.suspicion_mult",
        "gossip_wan.probe_interval",
        "gossip_wan.probe_timeout",
        "datacenter",
        "default_query_time",
        "disable_anonymous_signature",
        "disable_coordinates",
        "disable_host_node_id",
        "disable_http_unprintable_char_filter",
        "disable_keyring_file",
        "disable_remote_exec",
        "disable_update_check",
        "discard_check_output",
        "discovery_max_stale",
        "domain",
        "alt_domain",
        "dns_config.allow_stale",
        "dns_config.a_record_limit",
        "dns_config.disable_compression",
        "dns_config.enable_truncate",
        "dns_config.max_stale",
        "dns_config.node_ttl",
        "dns_config.only_passing",
        "dns_config.recursor_timeout",
        "dns_config.service_ttl",
        "dns_config.udp_answer_limit",
        "dns_config.use_cache",
        "dns_config.cache_max_age",
        "dns_config.prefer_namespace",
        "enable_acl_replication",
        "enable_agent_tls_for_checks",
        "enable_central_service_config",
        "enable_debug",
        "enable_script_checks",
        "enable_local_script_checks",
        "enable_syslog",
        "encrypt",
        "encrypt_verify_incoming",
        "encrypt_verify_outgoing",
        "http_config.block_endpoints",
        "http_config.allow_write_http_from",
        "http_config.response_headers",
        "http_config.use_cache",
        "http_config.max_header_bytes",
        "key_file",
        "leave_on_terminate",
        "license_path",
        "limits.http_max_conns_per_client",
        "limits.https_handshake_timeout",
        "limits.rpc_handshake_timeout",
        "limits.rpc_client_timeout",
        "limits.rpc_rate",
        "limits.rpc_max_burst",
        "limits.rpc_max_conns_per_client",
        "limits.kv_max_value_size",
        "limits.txn_max_req_len",
        "limits.request_limits.mode",
        "limits.request_limits.read_rate",
        "limits.request_limits.write_rate",
        "log_level",
        "log_json",
        "max_query_time",
        "node_id",
        "node_meta",
        "node_name",
        "partition",
        "peering.enabled",
        "performance.leave_drain_time",
        "performance.raft_multiplier",
        "performance.rpc_hold_timeout",
        "pid_file",
        "ports.dns",
        "ports.http",
        "ports.https",
        "ports.server",
        "ports.grpc",
        "ports.grpc_tls",
        "ports.proxy_min_port",
        "ports.proxy_max_port",
        "ports.sidecar_min_port",
        "ports.sidecar_max_port",
        "ports.expose_min_port",
        "ports.expose_max_port",
        "protocol",
        "primary_datacenter",
        "primary_gateways",
        "primary_gateways_interval",
        "raft_protocol",
        "raft_snapshot_threshold",
        "raft_snapshot_interval",
        "raft_trailing_logs",
        "raft_logstore.backend",
        "raft_logstore.disable_log_cache",
        "raft_logstore.verification.enabled",
        "raft_logstore.verification.interval",
        "raft_logstore.boltdb.no_freelist_sync",
        "raft_logstore.wal.segment_size_mb",
        "read_replica",
        "reconnect_timeout",
        "reconnect_timeout_wan",
        "recursors",
        "rejoin_after_leave",
        "reporting.license.enabled",
        "retry_interval",
        "retry_interval_wan",
        "retry_join",
        "retry_join_wan",
        "retry_max",
        "retry_max_wan",
        "rpc.enable_streaming",
        "segment_limit",
        "serf_lan",
        "serf_wan",
        "server",
        "server_name",
        "server_rejoin_age_max",
        "service",
        "services",
        "session_ttl_min",
        "skip_leave_on_interrupt",
        "start_join",
        "start_join_wan",
        "syslog_facility",
        "tagged_addresses",
        "telemetry.circonus_api_app",
        "telemetry.circonus_api_token",
        "telemetry.circonus_api_url",
        "telemetry.circonus_broker_id",
        "telemetry.circonus_broker_select_tag",
        "telemetry.circonus_check_display_name",
        "telemetry.circonus_check_force_metric_activation",
        "telemetry.circonus_check_id",
        "telemetry.circonus_check_instance_id",
        "telemetry.circonus_check_search_tag",
        "telemetry.circonus_check_tags",
        "telemetry.circonus_submission_interval",
        "telemetry.circonus_submission_url",
        "telemetry.enable_host_metrics",
        "telemetry.disable_hostname",
        "telemetry.dogstatsd_addr",
        "telemetry.dogstatsd_tags",
        "telemetry.retry_failed_connection",
        "telemetry.filter_default",
        "telemetry.prefix_filter",
        "telemetry.metrics_prefix",
        "telemetry.prometheus_retention_time",
        "telemetry.statsd_address",
        "telemetry.statsite_address",
        "tls.defaults.ca_file",
        "tls.defaults.ca_path",
        "tls.defaults.cert_file",
        "tls.defaults.key_file",
        "tls.defaults.tls_cipher_suites",
        "tls.defaults.tls_min_version",
        "tls.defaults.verify_incoming",
        "tls.defaults.verify_outgoing",
        "tls.internal_rpc.ca_file",
        "tls.internal_rpc.ca_path",
        "tls.internal_rpc.cert_file",
        "tls.internal_rpc.key_file",
        "tls.internal_rpc.tls_cipher_suites",
        "tls.internal_rpc.tls_min_version",
        "tls.internal_rpc.verify_incoming",
        "tls.internal_rpc.verify_outgoing",
        "tls.internal_rpc.verify_server_hostname",
        "tls.https.ca_file",
        "tls.https.ca_path",
        "tls.https.cert_file",
        "tls.https.key_file",
        "tls.https.tls_min_version",
        "tls.https.verify_incoming",
        "tls.https.verify_outgoing",
        "tls.grpc.ca_file",
        "tls.grpc.ca_path",
        "tls.grpc.cert_file",
        "tls.grpc.key_file",
        "tls.grpc.tls_cipher_suites",
        "tls.grpc.tls_min_version",
        "tls.grpc.verify_incoming",
        "tls.grpc.use_auto_cert",
        "tls_cipher_suites",
        "tls_min_version",
        "tls_prefer_server_cipher_suites",
        "translate_wan_addrs",
        "ui_config.dir",
        "ui_config.content_path",
        "ui_config.metrics_provider",
        "ui_config.metrics_provider_files",
        "ui_config.metrics_provider_options_json",
        "ui_config.metrics_proxy.base_url",
        "ui_config.metrics_proxy.add_headers[].name",
        "ui_config.metrics_proxy.add_headers[].value",
        "ui_config.metrics_proxy.path_allowlist",
        "ui_config.dashboard_url_templates",
        "unix_sockets.group",
        "unix_sockets.mode",
        "unix_sockets.user",
        "verify_incoming",
        "verify_incoming_https",
        "verify_incoming_rpc",
        "verify_outgoing",
        "verify_server_hostname",
        "watches",
        "xds.update_max_per_second",
        // A service definition's fields, as the document's services use them.
        "service.id",
        "service.name",
        "service.meta",
        "service.tagged_addresses[].address",
        "service.tagged_addresses[].port",
        "service.tags",
        "service.address",
        "service.token",
        "service.port",
        "service.weights.passing",
        "service.weights.warning",
        "service.enable_tag_override",
        "service.check",
        "service.checks",
        "service.connect.native",
        "service.connect.sidecar_service",
        "service.kind",
        "service.proxy.destination_service_name",
        "service.proxy.destination_service_id",
        "service.proxy.local_service_address",
        "service.proxy.local_service_port",
        "service.proxy.config",
        "service.proxy.upstreams[].destination_name",
        "service.proxy.upstreams[].local_bind_port",
        "service.proxy.upstreams[].config",
        "service.proxy.upstreams[].destination_type",
        "service.proxy.upstreams[].destination_namespace",
        "service.proxy.upstreams[].destination_partition",
        "service.proxy.upstreams[].local_bind_address",
        "service.proxy.upstreams[].local_bind_socket_path",
        "service.proxy.upstreams[].local_bind_socket_mode",
        "service.proxy.expose.checks",
        "service.proxy.expose.paths[].path",
        "service.proxy.expose.paths[].local_path_port",
        "service.proxy.expose.paths[].listener_port",
        "service.proxy.expose.paths[].protocol",
        "service.proxy.mode",
        "service.proxy.transparent_proxy.outbound_listener_port",
        "service.proxy.transparent_proxy.dialed_directly",
        // A check definition's fields.
        "check.id",
        "check.name",
        "check.notes",
        "check.service_id",
        "check.token",
        "check.status",
        "check.args",
        "check.http",
        "check.header",
        "check.method",
        "check.body",
        "check.disable_redirects",
        "check.tcp",
        "check.h2ping",
        "check.h2ping_use_tls",
        "check.interval",
        "check.output_max_size",
        "check.docker_container_id",
        "check.shell",
        "check.os_service",
        "check.tls_server_name",
        "check.tls_skip_verify",
        "check.timeout",
        "check.ttl",
        "check.deregister_critical_service_after",
    ];

    #[test]
    fn every_key_of_consuls_full_config_is_in_the_table() {
        let missing: Vec<&str> =
            FULL_CONFIG_KEYS.iter().copied().filter(|path| find(path).is_none()).collect();
        assert!(missing.is_empty(), "not in the table: {missing:?}");
        // `non_voting_server` is `read_replica` under its alias tag.
        assert!(find("read_replica").is_some_and(|key| key.aliases.contains(&"non_voting_server")));
    }

    #[test]
    fn a_document_with_every_key_passes() {
        let document = sample_block(KEYS, 0);
        let checked = check(object(document.clone()))
            .unwrap_or_else(|errors| panic!("every key must be accepted: {errors:#?}"));
        // Deprecated keys moved to their replacements, which were set too: the new ones won.
        assert!(checked.config.get("acl_master_token").is_none());
        assert_eq!(checked.config["acl"]["tokens"]["initial_management"], json!("x"));
        assert_eq!(checked.config["retry_join"], json!(["a", "b", "a", "b"]), "start_join is appended");
        assert!(checked.warnings.contains(&"The 'acl_master_token' field is deprecated. Use the 'acl.tokens.initial_management' field instead.".to_owned()));
        // The same document in HCL's shapes (every block a one-element list) passes too.
        let checked_hcl = check_from(object(hcl_shaped(document)), Origin::Hcl)
            .unwrap_or_else(|errors| panic!("HCL's shapes must be accepted: {errors:#?}"));
        assert_eq!(checked_hcl.config["ports"]["dns"], json!(3), "a single HCL block is unwrapped");
    }

    /// `value` as HCL1 hands it to Consul: every object below the root wrapped in a list.
    fn hcl_shaped(value: Value) -> Value {
        fn wrap(value: Value) -> Value {
            match value {
                Value::Object(map) => {
                    json!([Value::Object(map.into_iter().map(|(k, v)| (k, wrap(v))).collect())])
                }
                Value::Array(items) => Value::Array(
                    items
                        .into_iter()
                        .map(|item| match item {
                            Value::Object(map) => {
                                Value::Object(map.into_iter().map(|(k, v)| (k, wrap(v))).collect())
                            }
                            other => other,
                        })
                        .collect(),
                ),
                other => other,
            }
        }
        match value {
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, wrap(v))).collect()),
            other => other,
        }
    }

    #[test]
    fn a_full_config_like_document_passes_with_its_warnings() {
        let checked = passes(json!({
            "datacenter": "rzo029wg", "data_dir": "/var/lib/consul", "node_name": "otlLxGaI",
            "server": true, "bootstrap_expect": 3.0, "bind_addr": "16.99.34.17",
            "retry_join": ["pbsSFY7U", "l0qLtWij"], "start_join": ["LR3hGDoG"],
            "ports": {"dns": 7001, "http": 7999, "https": -1, "grpc": 4881, "grpc_tls": 5201},
            "dns_config": {"service_ttl": {"*": "32030s"}, "soa": {"min_ttl": 30}, "recursor_timeout": "4427s"},
            "acl": {"enabled": false, "tokens": {"agent": "bed2377c", "master": "8a19ac27"}},
            "http_config": {"block_endpoints": [], "response_headers": {"Access-Control-Allow-Origin": "*"}},
            "tls": {"defaults": {"verify_incoming": false, "tls_min_version": "TLSv1_2"}},
            "telemetry": {"prometheus_retention_time": "15s", "disable_hostname": true},
            "audit": {"enabled": true},
            "service": {"id": "dLOXpSCI", "name": "o1ynPkp0", "port": 24237, "tags": ["a"],
                "check": {"id": "RMi85Dv8", "http": "http://x", "interval": "23926s", "timeout": "38483s"}},
            "checks": [{"id": "uAjE6m9Z", "ttl": "21743s", "deregister_critical_service_after": "14232s"}],
            "watches": [{"type": "key", "key": "j9lF1Tve", "handler": "90N7S4LN"}],
            "non_voting_server": true,
        }));
        assert_eq!(
            checked.config["bootstrap_expect"],
            json!(3),
            "a JSON number is an int as Go truncates it"
        );
        assert_eq!(checked.config["read_replica"], json!(true), "an alias is read under its key");
        assert_eq!(checked.config["acl"]["tokens"]["initial_management"], json!("8a19ac27"));
        assert_eq!(checked.config["retry_join"], json!(["pbsSFY7U", "l0qLtWij", "LR3hGDoG"]));
        let expected = [
            "\"audit\" is a Consul Enterprise configuration and will have no effect",
            "\"read_replica (or the deprecated non_voting_server)\" is a Consul Enterprise configuration and will have no effect",
            "The 'acl.tokens.master' field is deprecated. Use the 'acl.tokens.initial_management' field instead.",
            "The 'start_join' field is deprecated. Use the 'retry_join' field instead.",
            "acl.tokens.agent: accepted, but muster does not act on it yet: muster does not act on this ACL setting yet",
        ];
        assert!(!checked.warnings.iter().any(|w| w.starts_with("watches")), "muster runs watch handlers");
        for warning in expected {
            assert!(
                checked.warnings.iter().any(|w| w == warning),
                "missing warning {warning:?} in {:#?}",
                checked.warnings
            );
        }
    }

    #[test]
    fn unknown_keys_fail_in_consuls_words() {
        assert_eq!(errors(json!({"datacentre": "east"})), ["invalid config key datacentre"]);
        assert_eq!(errors(json!({"ports": {"htp": 1}})), ["invalid config key ports.htp"]);
        assert_eq!(
            errors(json!({"telemetry": {"disable_compat_1.9": true}})),
            ["invalid config key telemetry.disable_compat_1.9"],
            "a removed key is an unknown one"
        );
        assert_eq!(
            errors(json!({"service": {"name": "web", "portz": 80}})),
            ["invalid config key service.portz"]
        );
        assert_eq!(
            errors(
                json!({"services": [{"name": "a"}, {"name": "b", "check": {"ttl": "5s", "intervall": "1s"}}]})
            ),
            ["invalid config key services[1].check.intervall"]
        );
        assert_eq!(
            errors(json!({"audit": {"sink": {"main": {"type": "file", "colour": "red"}}}})),
            ["invalid config key audit.sink[main].colour"]
        );
        // A check's ID is `id` in files: the API's `CheckID` is not a file key.
        assert_eq!(
            errors(json!({"check": {"CheckID": "a", "ttl": "5s"}})),
            ["invalid config key check.CheckID"]
        );
        // Two spellings of one key: the exact one is read, the other is left unused.
        assert_eq!(errors(json!({"data_dir": "/a", "Data_Dir": "/b"})), ["invalid config key Data_Dir"]);
    }

    #[test]
    fn type_errors_are_mapstructures() {
        assert_eq!(
            errors(json!({"retry_interval": 10})),
            ["'retry_interval' expected type 'string', got unconvertible type 'float64', value: '10'"]
        );
        let hcl = check_from(object(json!({"retry_interval": 10})), Origin::Hcl).unwrap_err();
        assert_eq!(
            hcl,
            ["'retry_interval' expected type 'string', got unconvertible type 'int', value: '10'"]
        );
        assert_eq!(
            errors(json!({"bootstrap_expect": "three", "server": "yes", "ports": {"http": 1.5e6}})),
            [
                "'bootstrap_expect' expected type 'int', got unconvertible type 'string', value: 'three'",
                "'server' expected type 'bool', got unconvertible type 'string', value: 'yes'",
            ],
            "sorted, as mapstructure sorts them; a float into an int is truncated, not an error"
        );
        assert_eq!(
            errors(json!({"retry_join": "10.0.0.1"})),
            ["'retry_join': source data must be an array or slice, got string"]
        );
        assert_eq!(
            errors(json!({"retry_join": [1]})),
            ["'retry_join[0]' expected type 'string', got unconvertible type 'float64', value: '1'"]
        );
        // A one-element list of objects is the object (the decode hook unwraps JSON's lists as it
        // does HCL's); a longer one is an error.
        assert_eq!(passes(json!({"ports": [{"http": 1}]})).config["ports"], json!({"http": 1}));
        assert_eq!(
            errors(json!({"ports": [{"http": 1}, {"dns": 2}]})),
            ["'ports' expected a map, got 'slice'"]
        );
        assert_eq!(
            errors(json!({"node_meta": {"rack": 7}})),
            ["'node_meta[rack]' expected type 'string', got unconvertible type 'float64', value: '7'"]
        );
        assert_eq!(
            errors(json!({"dns_config": {"soa": {"min_ttl": -1}}})),
            ["cannot parse 'dns_config.soa.min_ttl', -1.000000 overflows uint"]
        );
        assert_eq!(
            errors(
                json!({"limits": {"rpc_rate": "fast"}, "tagged_addresses": [1, "a"], "experiments": {"a": {"b": 1}}})
            ),
            [
                "'experiments': source data must be an array or slice, got map",
                "'limits.rpc_rate' expected type 'float64', got unconvertible type 'string', value: 'fast'",
                "'tagged_addresses' expected a map, got 'slice'",
            ]
        );
        // HCL: two `service` blocks in one file are a list where Consul takes one definition.
        let two =
            check_from(object(json!({"service": [{"name": "a"}, {"name": "b"}]})), Origin::Hcl).unwrap_err();
        assert_eq!(two, ["'service' expected a map, got 'slice'"]);
        // `null` is unset in Go: never an error.
        assert!(passes(json!({"datacenter": null, "ports": {"http": null}})).config["ports"]
            .as_object()
            .is_some_and(Map::is_empty));
    }

    #[test]
    fn bad_durations_fail_in_the_builders_words() {
        assert_eq!(
            errors(json!({"retry_interval": "10"})),
            ["retry_interval: invalid duration: \"10\": time: missing unit in duration \"10\""]
        );
        assert_eq!(
            errors(json!({
                "gossip_lan": {"probe_timeout": "1d"},
                "dns_config": {"recursor_timeout": "x", "service_ttl": {"web*": "5"}},
                "checks": [{"id": "db", "ttl": "3 s"}],
                "services": [{"name": "web", "check": {"interval": "fast", "http": "http://x"}}],
            })),
            [
                "gossip_lan..probe_timeout: invalid duration: \"1d\": time: unknown unit \"d\" in duration \"1d\"",
                "recursor_timeout: invalid duration: \"x\": time: invalid duration \"x\"",
                "dns_config.service_ttl[\"web*\"]: invalid duration: \"5\": time: missing unit in duration \"5\"",
                "check[db].ttl: invalid duration: \"3 s\": time: unknown unit \" s\" in duration \"3 s\"",
                "check[].interval: invalid duration: \"fast\": time: invalid duration \"fast\"",
            ]
        );
        assert_eq!(
            errors(json!({"server_rejoin_age_max": "1h"})),
            ["server_rejoin_age_max: duration '1h' cannot be less than: 6h0m0s"]
        );
        // Go takes a negative duration; a key Consul overwrites is never parsed.
        passes(json!({"reconnect_timeout": "-5s", "ae_interval": "bogus"}));
    }

    #[test]
    fn deprecated_keys_are_read_as_their_replacements_with_consuls_warning() {
        let checked = passes(
            json!({"acl_token": "t1", "ui": true, "tls_min_version": "tls12", "raft_boltdb": {"nofreelistsync": true}}),
        );
        assert_eq!(checked.config["acl"]["tokens"]["default"], json!("t1"));
        assert_eq!(checked.config["ui_config"]["enabled"], json!(true));
        assert_eq!(checked.config["tls"]["defaults"]["tls_min_version"], json!("TLSv1_2"));
        assert_eq!(checked.config["raft_logstore"]["boltdb"]["no_freelist_sync"], json!(true));
        for gone in ["acl_token", "ui", "tls_min_version", "raft_boltdb"] {
            assert!(!checked.config.contains_key(gone), "{gone} must have moved");
        }
        assert_eq!(
            checked.warnings[..5],
            [
                "The 'acl_token' field is deprecated. Use the 'acl.tokens.default' field instead.",
                "The 'ui' field is deprecated. Use the 'ui_config.enabled' field instead.",
                "'tls_min_version' value 'tls12' is deprecated, please specify 'TLSv1_2' instead",
                "The 'tls_min_version' field is deprecated. Use the 'tls.defaults.tls_min_version' field instead.",
                "The 'raft_boltdb' field is deprecated. Use the 'raft_logstore.boltdb' field instead.",
            ]
        );
        // When both are set, the new key wins.
        let both = passes(
            json!({"acl_token": "old", "acl": {"tokens": {"default": "new"}}, "ui_config": {"enabled": false}, "ui": true}),
        );
        assert_eq!(both.config["acl"]["tokens"]["default"], json!("new"));
        assert_eq!(both.config["ui_config"]["enabled"], json!(false));
        assert!(both.warnings.contains(
            &"The 'acl_token' field is deprecated. Use the 'acl.tokens.default' field instead.".to_owned()
        ));
        // Keys Consul only warns about.
        let ignored =
            passes(json!({"acl_enforce_version_8": "whatever", "tls_prefer_server_cipher_suites": true}));
        assert_eq!(
            ignored.warnings,
            [
                "config key \"acl_enforce_version_8\" is deprecated and should be removed",
                "The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored.",
            ]
        );
        assert!(ignored.config.is_empty());
    }

    #[test]
    fn guarded_keys_refuse_what_muster_cannot_protect_and_accept_the_rest() {
        let accepted =
            passes(json!({"acl": {"enabled": true}, "http_config": {"allow_write_http_from": []}}));
        assert!(!accepted.warnings.iter().any(|w| w.starts_with("acl.enabled")), "{:?}", accepted.warnings);
        let warned =
            passes(json!({"http_config": {"allow_write_http_from": []}, "acl": {"down_policy": "deny"}}));
        assert!(warned
            .warnings
            .iter()
            .any(|w| w.starts_with("acl.down_policy: accepted, but muster does not act on it yet")));
        // The pre-1.12 verification keys are read as their stanzas' keys, which muster acts on
        // (the gRPC stanza inherits verify_incoming, and there is no gRPC API to act on it).
        let deprecated_tls = passes(json!({"verify_incoming": true, "verify_server_hostname": true}));
        let unexpected: Vec<_> = deprecated_tls
            .warnings
            .iter()
            .filter(|w| !w.contains("is deprecated") && !w.starts_with("tls.grpc.verify_incoming: "))
            .collect();
        assert!(unexpected.is_empty(), "{unexpected:?}");
        for (document, path) in [
            (
                json!({"http_config": {"allow_write_http_from": ["127.0.0.0/8"]}}),
                "http_config.allow_write_http_from",
            ),
            (json!({"auto_encrypt": {"tls": true}}), "auto_encrypt.tls"),
            (json!({"auto_config": {"enabled": true}}), "auto_config.enabled"),
            (json!({"tls": {"grpc": {"verify_incoming": true}}}), "tls.grpc.verify_incoming"),
            (
                json!({"services": [{"name": "a", "checks": [{"docker_container_id": "c1", "args": ["x"], "interval": "5s"}]}]}),
                "services[0].checks[0].docker_container_id",
            ),
        ] {
            let refused = errors(document);
            assert!(
                refused.len() == 1 && refused[0].starts_with(&format!("{path}: ")),
                "{path}: {refused:?}"
            );
        }
        // Keys Consul itself refuses to start with.
        assert_eq!(
            errors(json!({"tls": {"grpc": {"verify_outgoing": false}}})),
            ["verify_outgoing is not valid in the tls.grpc stanza"]
        );
    }

    #[test]
    fn keys_muster_does_not_act_on_yet_warn_naming_the_key() {
        let checked = passes(json!({
            "telemetry": {"circonus_api_token": "c"},
            "services": [{"name": "a", "token": "t"}, {"name": "b", "token": "u"}],
            "segment": "", "partition": "p1",
        }));
        assert_eq!(
            checked.warnings,
            [
                "telemetry.circonus_api_token: accepted, but muster does not act on it yet: muster sends no metrics to Circonus, and keeps the other telemetry settings at their defaults",
                "services[].token: accepted, but muster does not act on it yet: muster does not act on this ACL setting yet",
                "\"partition\" is a Consul Enterprise configuration and will have no effect",
            ],
            "once per key, not per service; an empty segment draws no warning, as in Consul"
        );
    }

    #[test]
    fn go_and_camel_case_spellings_work_where_consul_takes_them() {
        let checked = passes(json!({
            "DataDir": "/d", "Datacenter": "EAST", "SERVER": true,
            "service": {"Name": "web", "Port": 80, "EnableTagOverride": true, "Check": {
                "ServiceID": "web", "DeregisterCriticalServiceAfter": "90m", "TTL": "30s",
                "TLSServerName": "web.local", "ScriptArgs": ["true"], "H2PingUseTLS": false,
            }},
        }));
        assert_eq!(checked.config["data_dir"], json!("/d"));
        assert_eq!(checked.config["datacenter"], json!("EAST"));
        assert_eq!(checked.config["server"], json!(true));
        let service = &checked.config["service"];
        assert_eq!(service["enable_tag_override"], json!(true));
        assert_eq!(
            service["check"],
            json!({"service_id": "web", "deregister_critical_service_after": "90m", "ttl": "30s",
                   "tls_server_name": "web.local", "args": ["true"], "h2ping_use_tls": false})
        );
        // The Go name and the key together: the key wins, the Go name is dropped quietly.
        assert_eq!(passes(json!({"encrypt": "a", "EncryptKey": "b"})).config["encrypt"], json!("a"));
        // A Go name that is not the key without underscores is not a spelling of it.
        assert_eq!(
            errors(json!({"telemetry": {"statsdaddress": "x"}})),
            ["invalid config key telemetry.statsdaddress"]
        );
        assert_eq!(
            passes(json!({"telemetry": {"StatsdAddr": "x"}})).config["telemetry"]["statsd_address"],
            json!("x")
        );
    }

    #[test]
    fn hcl_blocks_are_unwrapped_and_wrapped_as_consul_reads_them() {
        let checked = check_from(
            object(json!({"ports": [{"http": 8501}], "services": {"name": "one"}, "watches": {"type": "key", "key": "k"}})),
            Origin::Hcl,
        )
        .unwrap();
        assert_eq!(checked.config["ports"], json!({"http": 8501}));
        assert_eq!(checked.config["services"], json!([{"name": "one"}]));
        assert_eq!(checked.config["watches"], json!([{"type": "key", "key": "k"}]));
        assert_eq!(
            errors(json!({"services": {"name": "one"}})),
            ["'services': source data must be an array or slice, got map"],
            "JSON takes a list where Consul wants one"
        );
    }

    #[test]
    fn go_renders_floats_as_consul_prints_them() {
        for (float, text) in [
            (10.0, "10"),
            (0.334, "0.334"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1.5e6, "1.5e+06"),
            (123456789.0, "1.23456789e+08"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(float), text, "{float}");
        }
        assert_eq!(muster_core::go_quote::quote("a\"b\n\u{1}"), "\"a\\\"b\\n\\x01\"");
        assert_eq!(go_value(Origin::Json, &json!({"b": [1, "x"], "a": true})), "map[a:true b:[1 x]]");
    }

    #[test]
    fn the_reference_lists_every_leaf_once() {
        let text = markdown();
        let mut rows = Vec::new();
        leaves(KEYS, "", &mut rows);
        let mut paths: Vec<&str> = rows.iter().map(|(path, _)| path.as_str()).collect();
        let total = paths.len();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), total, "a dotted path appears twice");
        for (path, _) in &rows {
            assert!(text.contains(&format!("| `{path}` |")), "{path} is missing from the reference");
        }
        assert!(text.contains("| `service.proxy.upstreams[].destination_name` |"));
        assert!(text.contains("| `check.interval` | duration |"));
        assert_eq!(text, markdown(), "the reference is deterministic");
    }

    /// Prints the table's counts by status (`cargo test -- --nocapture counts`).
    #[test]
    fn counts() {
        let tally = |table: &'static [Key], prefix: &str| {
            let mut rows = Vec::new();
            leaves(table, prefix, &mut rows);
            let mut counts = std::collections::BTreeMap::new();
            for (_, key) in &rows {
                *counts.entry(status_text(&key.status).0).or_insert(0usize) += 1;
            }
            (rows.len(), counts)
        };
        let (total, by_status) = tally(KEYS, "");
        println!("top-level keys: {}; leaf keys: {total}; by status: {by_status:?}", KEYS.len());
        println!("service fields: {}, leaves {:?}", SERVICE_FIELDS.len(), tally(SERVICE_FIELDS, "service."));
        println!("check fields: {}, leaves {:?}", CHECK_FIELDS.len(), tally(CHECK_FIELDS, "check."));
        let mut rows = Vec::new();
        leaves(KEYS, "", &mut rows);
        for (path, key) in rows {
            if matches!(key.status, Status::Guarded { .. } | Status::Rejected(_)) {
                println!("  {path}: {}", status_text(&key.status).0);
            }
        }
        assert_eq!(by_status.values().sum::<usize>(), total);
    }
}
