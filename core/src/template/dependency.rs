//! The dependencies of consul-template's query functions, parsed from their argument strings
//! (`dependency/*.go`): `"tag.name?ns=x@dc~near|passing,warning"`, `"path@dc"`, ….

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

/// One piece of data a template needs from the driver.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// `service`/`connect`: `/v1/health/service/<name>` (or `/v1/health/connect/<name>`).
    Service {
        /// The service name.
        name: String,
        /// Only instances with this tag.
        tag: Option<String>,
        /// The datacenter (`@dc`).
        dc: Option<String>,
        /// Sort by round-trip time from this node (`~near`); otherwise sorted by node, then ID.
        near: Option<String>,
        /// The health statuses accepted, sorted (default `[Passing]`).
        status_filter: Vec<HealthFilter>,
        /// The `?ns=…&partition=…&peer=…&sameness-group=…` parameters.
        query: BTreeMap<String, String>,
        /// `connect` rather than `service`.
        connect: bool,
    },
    /// `services`: `/v1/catalog/services`.
    Services {
        /// The datacenter.
        dc: Option<String>,
        /// Query parameters.
        query: BTreeMap<String, String>,
    },
    /// `node`: `/v1/catalog/node/<name>`; no name means the local agent's node.
    Node {
        /// The node name.
        name: Option<String>,
        /// The datacenter.
        dc: Option<String>,
        /// Query parameters.
        query: BTreeMap<String, String>,
    },
    /// `nodes`: `/v1/catalog/nodes`.
    Nodes {
        /// The datacenter.
        dc: Option<String>,
        /// Sort by round-trip time from this node.
        near: Option<String>,
        /// Query parameters.
        query: BTreeMap<String, String>,
    },
    /// `key`, `keyOrDefault`, `keyExists`: one KV entry. The answer is `Value::String`, or `Value::Nil`
    /// when there is no such key.
    Key {
        /// The key (no leading `/`).
        path: String,
        /// The datacenter.
        dc: Option<String>,
    },
    /// `ls`, `safeLs`, `tree`, `safeTree`: every KV pair under a prefix (`?recurse`); the
    /// answer is a list of KeyPair records (`Path`, `Key`, `Value`, …), and the functions
    /// filter it (`ls` keeps the top level only).
    KeyPrefix {
        /// The prefix (no leading `/`).
        prefix: String,
        /// The datacenter.
        dc: Option<String>,
    },
    /// `datacenters`: the answer is a sorted list of names.
    Datacenters {
        /// Drop datacenters that fail a consistent query.
        ignore_failing: bool,
    },
    /// `file`: the contents of a local file.
    File {
        /// The path.
        path: String,
    },
}

/// A health status accepted by `service`'s `|filter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthFilter {
    /// `any`: every instance.
    Any,
    /// `critical`.
    Critical,
    /// `maintenance`.
    Maintenance,
    /// `passing` (the default; asked of the server with `?passing`).
    Passing,
    /// `warning`.
    Warning,
}

impl HealthFilter {
    /// The filter's name in a query string.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthFilter::Any => "any",
            HealthFilter::Critical => "critical",
            HealthFilter::Maintenance => "maintenance",
            HealthFilter::Passing => "passing",
            HealthFilter::Warning => "warning",
        }
    }

    /// Whether an instance whose aggregated status is `status` passes the filters.
    pub fn accepts(filters: &[HealthFilter], status: &str) -> bool {
        filters.iter().any(|f| *f == HealthFilter::Any || f.as_str() == status)
    }
}

/// Why a query function's argument string was refused. The texts are consul-template's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    /// The string does not match the function's grammar.
    #[error("{kind}: invalid format: {}", crate::go_quote::quote(.text))]
    InvalidFormat {
        /// The dependency kind (`health.service`, `kv.get`, …).
        kind: &'static str,
        /// The string refused.
        text: String,
    },
    /// An unknown health filter.
    #[error("health.service: invalid filter: {} in {}", crate::go_quote::quote(.filter), crate::go_quote::quote(.text))]
    InvalidFilter {
        /// The filter refused.
        filter: String,
        /// The whole string.
        text: String,
    },
    /// A `?` parameter other than `ns`, `partition`, `peer` and `sameness-group`.
    #[error("{kind}: invalid query parameter: {}", crate::go_quote::quote(.param))]
    InvalidQuery {
        /// The dependency kind.
        kind: &'static str,
        /// The parameter refused.
        param: String,
    },
    /// A required part is empty.
    #[error("{kind}: {what} is empty")]
    Empty {
        /// The dependency kind.
        kind: &'static str,
        /// What is missing.
        what: &'static str,
    },
}

const TAG_RE: &str = r"(?:(?P<tag>[[:word:]=:.\-]+)\.)?";
const SERVICE_NAME_RE: &str = r"(?P<name>[[:word:]\-_]+)";
const NODE_NAME_RE: &str = r"(?P<name>[[:word:].\-_]+)?";
const QUERY_RE: &str = r"(?:\?(?P<query>[[:word:]\-_=&]+))?";
const DC_RE: &str = r"(?:@(?P<dc>[[:word:].\-_]+))?";
const NEAR_RE: &str = r"(?:~(?P<near>[[:word:].\-_]+))?";
const FILTER_RE: &str = r"(?:\|(?P<filter>[[:word:],]+))?";
const KEY_RE: &str = r"/?(?P<key>[^@]+)";
const PREFIX_RE: &str = r"/?(?P<prefix>[^@]*)";

/// The query parameters consul-template accepts after `?`.
const QUERY_PARAMS: &[&str] = &["ns", "partition", "peer", "sameness-group"];

fn regex(cell: &'static OnceLock<Regex>, parts: &[&str]) -> &'static Regex {
    cell.get_or_init(|| {
        let pattern = format!(r"\A{}\z", parts.concat());
        // SAFETY-INVARIANT: the patterns are the constants above, tested by `dependency_*`.
        Regex::new(&pattern).expect("constant dependency pattern compiles")
    })
}

fn group(captures: &regex::Captures<'_>, name: &str) -> Option<String> {
    captures.name(name).map(|m| m.as_str().to_string()).filter(|s| !s.is_empty())
}

fn parse_query(
    kind: &'static str,
    query: Option<String>,
) -> Result<BTreeMap<String, String>, DependencyError> {
    let mut params = BTreeMap::new();
    for pair in query.iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !QUERY_PARAMS.contains(&k) {
            return Err(DependencyError::InvalidQuery { kind, param: k.to_string() });
        }
        params.insert(k.to_string(), v.to_string());
    }
    Ok(params)
}

impl Dependency {
    /// `service`/`connect`: `"[tag.]name[?query][@dc][~near][|filter,…]"`.
    pub fn parse_service(text: &str, connect: bool) -> Result<Dependency, DependencyError> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let re = regex(&RE, &[TAG_RE, SERVICE_NAME_RE, QUERY_RE, DC_RE, NEAR_RE, FILTER_RE]);
        let kind = "health.service";
        let captures =
            re.captures(text).ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
        let mut status_filter = Vec::new();
        match group(&captures, "filter") {
            Some(filter) => {
                for f in filter.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    status_filter.push(parse_filter(f).ok_or_else(|| DependencyError::InvalidFilter {
                        filter: f.to_string(),
                        text: text.to_string(),
                    })?);
                }
                status_filter.sort();
            }
            None => status_filter.push(HealthFilter::Passing),
        }
        Ok(Dependency::Service {
            name: group(&captures, "name").unwrap_or_default(),
            tag: group(&captures, "tag"),
            dc: group(&captures, "dc"),
            near: group(&captures, "near"),
            status_filter,
            query: parse_query(kind, group(&captures, "query"))?,
            connect,
        })
    }

    /// `services`: `"[?query][@dc]"`.
    pub fn parse_services(text: &str) -> Result<Dependency, DependencyError> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let kind = "catalog.services";
        let captures = regex(&RE, &[QUERY_RE, DC_RE])
            .captures(text)
            .ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
        Ok(Dependency::Services {
            dc: group(&captures, "dc"),
            query: parse_query(kind, group(&captures, "query"))?,
        })
    }

    /// `node`: `"[name][?query][@dc]"`.
    pub fn parse_node(text: &str) -> Result<Dependency, DependencyError> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let kind = "catalog.node";
        let captures = regex(&RE, &[NODE_NAME_RE, QUERY_RE, DC_RE])
            .captures(text)
            .ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
        Ok(Dependency::Node {
            name: group(&captures, "name"),
            dc: group(&captures, "dc"),
            query: parse_query(kind, group(&captures, "query"))?,
        })
    }

    /// `nodes`: `"[?query][@dc][~near]"`.
    pub fn parse_nodes(text: &str) -> Result<Dependency, DependencyError> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let kind = "catalog.nodes";
        let captures = regex(&RE, &[QUERY_RE, DC_RE, NEAR_RE])
            .captures(text)
            .ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
        Ok(Dependency::Nodes {
            dc: group(&captures, "dc"),
            near: group(&captures, "near"),
            query: parse_query(kind, group(&captures, "query"))?,
        })
    }

    /// `key`, `keyOrDefault`: `"path[@dc]"`. As in consul-template, the key pattern `[^@]+`
    /// also swallows any `?query`.
    pub fn parse_key(text: &str) -> Result<Dependency, DependencyError> {
        let (path, dc) = parse_key_like(text, "kv.get")?;
        Ok(Dependency::Key { path, dc })
    }

    /// `ls`, `safeLs`, `tree`, `safeTree`: `"prefix[@dc]"` (the prefix may be empty).
    pub fn parse_key_prefix(text: &str) -> Result<Dependency, DependencyError> {
        static RE: OnceLock<Regex> = OnceLock::new();
        let kind = "kv.list";
        let captures = regex(&RE, &[PREFIX_RE, DC_RE])
            .captures(text)
            .ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
        Ok(Dependency::KeyPrefix {
            prefix: group(&captures, "prefix").unwrap_or_default(),
            dc: group(&captures, "dc"),
        })
    }
}

fn parse_key_like(text: &str, kind: &'static str) -> Result<(String, Option<String>), DependencyError> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let captures = regex(&RE, &[KEY_RE, DC_RE])
        .captures(text)
        .ok_or_else(|| DependencyError::InvalidFormat { kind, text: text.into() })?;
    let path = group(&captures, "key").ok_or(DependencyError::Empty { kind, what: "key" })?;
    Ok((path, group(&captures, "dc")))
}

fn parse_filter(f: &str) -> Option<HealthFilter> {
    Some(match f {
        "any" => HealthFilter::Any,
        "passing" => HealthFilter::Passing,
        "warning" => HealthFilter::Warning,
        "critical" => HealthFilter::Critical,
        "maintenance" => HealthFilter::Maintenance,
        _ => return None,
    })
}

impl std::fmt::Display for Dependency {
    /// consul-template's `String()` of the dependency (`health.service(web@dc1|passing)`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |dc: &Option<String>| dc.as_ref().map(|d| format!("@{d}")).unwrap_or_default();
        let near = |n: &Option<String>| n.as_ref().map(|d| format!("~{d}")).unwrap_or_default();
        match self {
            Dependency::Service { name, tag, dc, near: n, status_filter, connect, .. } => {
                let tag = tag.as_ref().map(|t| format!("{t}.")).unwrap_or_default();
                let filters: Vec<&str> = status_filter.iter().map(|s| s.as_str()).collect();
                let kind = if *connect { "health.connect" } else { "health.service" };
                write!(f, "{kind}({tag}{name}{}{}|{})", at(dc), near(n), filters.join(","))
            }
            Dependency::Services { dc, .. } => write!(f, "catalog.services({})", at(dc)),
            Dependency::Node { name, dc, .. } => {
                write!(f, "catalog.node({}{})", name.as_deref().unwrap_or(""), at(dc))
            }
            Dependency::Nodes { dc, near: n, .. } => write!(f, "catalog.nodes({}{})", at(dc), near(n)),
            Dependency::Key { path, dc } => write!(f, "kv.get({path}{})", at(dc)),
            Dependency::KeyPrefix { prefix, dc } => write!(f, "kv.list({prefix}{})", at(dc)),
            Dependency::Datacenters { ignore_failing } => {
                write!(f, "catalog.datacenters(ignoreFailing={ignore_failing})")
            }
            Dependency::File { path } => write!(f, "file({path})"),
        }
    }
}
