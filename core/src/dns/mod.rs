//! The DNS interface, sans-IO (`../shared/reference/consul-behaviour.md` §2): one query packet
//! in, against the catalog, one answer packet out (or "recurse", or nothing). The io shell owns
//! the sockets (UDP and TCP on port 8600) and the recursors; hickory-proto owns the wire format.
//!
//! Names, right to left: the domain (`consul.`, or the alternative domain), an optional
//! datacenter, then a kind label: `[tag.]<svc>.service`, `_<svc>._<tag>.service` (RFC 2782;
//! `_tcp` means no tag, and `.service` may be left out), `<node>.node` (dotted names allowed),
//! `<hex>.addr`; PTR under `in-addr.arpa` and `ip6.arpa`; SOA and NS at the domain's apex.
//!
//! Service answers drop every instance with a critical check (node-level ones included: a failed
//! node's `serfHealth`), and warning ones too with `only_passing`; they are deduplicated and
//! shuffled from the caller's [`Rng`]. No such name, or nothing healthy: NXDOMAIN with the SOA;
//! a name without records of the asked type: NOERROR with the SOA (NODATA). Answers over UDP
//! without EDNS are cut to `udp_answer_limit` records and trimmed to 512 bytes; with EDNS to the
//! client's buffer; over TCP to 64 KiB. TC is set only with `enable_truncate` (Consul's default
//! is off, so clients do not retry over TCP; many users want it on).
//!
//! A hostname where an address belongs (an external service) answers a CNAME, followed as
//! Consul's `resolveCNAME` does: inside the domain here (at most [`CHASE_DEPTH_MAX`] deep), and
//! outside it through the recursors. Those are the io shell's, so that takes two passes: the
//! first answers [`Handled::Resolve`] with the names to look up, the second gets the recursors'
//! replies as [`Resolved`] and never asks again.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::{BTreeMap, BTreeSet};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use serde::{Deserialize, Serialize};

use crate::acl::Authorizer;
use crate::fsm::{Catalog, Health, Instance};
use crate::Rng;

/// A DNS message without EDNS may be this long over UDP (RFC 1035).
pub const UDP_BYTES_MAX: usize = 512;
/// The longest answer over TCP (Consul's 65,535 less the length prefix and headroom).
pub const TCP_BYTES_MAX: usize = 65_523;
/// The most answers over UDP without EDNS, whatever `udp_answer_limit` says.
pub const UDP_ANSWERS_MAX: usize = 8;
/// The most servers an NS answer names (Consul's).
pub const NAME_SERVERS_MAX: usize = 3;
/// The EDNS buffer size muster advertises in its answers.
pub const EDNS_PAYLOAD_BYTES: u16 = 4096;
/// How many hostnames inside the domain are followed one after another (Consul's
/// `maxRecursionLevelDefault`): a service whose address names another service ends here.
pub const CHASE_DEPTH_MAX: u8 = 3;
/// The most records one followed hostname adds to an answer without EDNS (Consul's
/// `maxRecurseRecords`).
pub const CHASED_RECORDS_NO_EDNS_MAX: usize = 5;
/// The most hostnames outside the domain one query has the recursors look up.
pub const CHASED_NAMES_MAX: usize = 8;

/// The DNS interface's settings (Consul's `dns_config` and friends). A client agent sends
/// its own with each query it forwards to a server, so that answers follow its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The domain, lowercase, without the trailing dot (`consul`).
    pub domain: String,
    /// The alternative domain, likewise; empty for none.
    pub alt_domain: String,
    /// This agent's datacenter.
    pub datacenter: String,
    /// TTL of node, address and NS answers, seconds.
    pub node_ttl_secs: u32,
    /// TTL of service answers, seconds, by service name: exact names, `prefix*` (the longest
    /// prefix wins), or `*`.
    pub service_ttl_secs: BTreeMap<String, u32>,
    /// Leave out instances with a warning check as well as critical ones.
    pub only_passing: bool,
    /// The most answers over UDP without EDNS (Consul's `udp_answer_limit`, 3).
    pub udp_answer_limit: usize,
    /// The most A/AAAA answers to a service lookup; 0: no limit.
    pub a_record_limit: usize,
    /// Set TC when an answer was trimmed.
    pub enable_truncate: bool,
    /// Recursors are configured: names outside the domain are recursed, and RA is set.
    pub recursion: bool,
    /// The SOA's timers.
    pub soa: Soa,
    /// Node meta as TXT records in the Additional section of node and SRV answers (Consul's
    /// `enable_additional_node_meta_txt`, on by default).
    pub node_meta_txt: bool,
}

impl Config {
    /// A service answer's TTL: the exact name's, else the longest matching `prefix*`'s, else
    /// `*`'s, else 0.
    fn service_ttl(&self, service: &str) -> u32 {
        let ttls = &self.service_ttl_secs;
        if let Some(ttl) = ttls.get(service) {
            return *ttl;
        }
        let prefixed = ttls
            .iter()
            .filter_map(|(key, ttl)| Some((key.strip_suffix('*')?, ttl)))
            .filter(|(prefix, _)| !prefix.is_empty() && service.starts_with(prefix))
            .max_by_key(|(prefix, _)| prefix.len());
        prefixed.map(|(_, ttl)| *ttl).or_else(|| ttls.get("*").copied()).unwrap_or(0)
    }
}

/// The SOA record's timers (Consul's `dns_config.soa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Soa {
    /// Seconds.
    pub refresh: u32,
    /// Seconds.
    pub retry: u32,
    /// Seconds.
    pub expire: u32,
    /// Seconds; also the SOA record's own TTL.
    pub min_ttl: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            domain: "consul".into(),
            alt_domain: String::new(),
            datacenter: "dc1".into(),
            node_ttl_secs: 0,
            service_ttl_secs: BTreeMap::new(),
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            enable_truncate: false,
            recursion: false,
            soa: Soa { refresh: 3600, retry: 600, expire: 86_400, min_ttl: 0 },
            node_meta_txt: true,
        }
    }
}

/// How the query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// A datagram: answers are cut to fit one.
    Udp,
    /// A TCP stream: up to [`TCP_BYTES_MAX`].
    Tcp,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handled {
    /// Send this.
    Answer(Vec<u8>),
    /// A name outside the domain, with recursors configured: ask them, and answer what they
    /// answer (or [`servfail`] when none does).
    Recurse,
    /// The answer points at these hostnames outside the domain (lowercase, fully qualified):
    /// ask the recursors for each ([`address_query`]), then handle the packet again with
    /// their replies. Never the answer to a second pass.
    Resolve(Vec<String>),
    /// Too broken to answer (not even a header): drop it.
    Drop,
}

/// What the recursors replied for the names a first pass asked about ([`Handled::Resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Each name asked (lowercase, fully qualified) with the reply packet; empty when no
    /// recursor answered.
    replies: BTreeMap<String, Vec<u8>>,
}

impl Resolved {
    /// Records `reply` (empty: none came) as the recursors' answer for `name`.
    pub fn insert(&mut self, name: String, reply: Vec<u8>) {
        self.replies.insert(name, reply);
    }

    /// The CNAME, A and AAAA records of the reply for `name` that lead from `name` (it, or a
    /// name a kept CNAME points at): `None` when it was not asked, nothing when no reply came
    /// or it does not parse. The reply is from the network: a record about any other name is
    /// left out (Consul passes the recursor's whole answer on).
    fn records(&self, name: &str) -> Option<Vec<Record>> {
        let reply = self.replies.get(name)?;
        let Ok(message) = Message::from_vec(reply) else { return Some(Vec::new()) };
        if message.metadata.response_code != ResponseCode::NoError {
            return Some(Vec::new());
        }
        let Ok(asked) = Name::from_ascii(name) else { return Some(Vec::new()) };
        let mut chain = BTreeSet::from([asked.to_lowercase()]);
        let mut kept = vec![false; message.answers.len()];
        // Each round keeps the records named so far; a chain is no longer than the records.
        for _ in 0..message.answers.len() {
            let mut grew = false;
            for (record, kept) in message.answers.iter().zip(kept.iter_mut()) {
                if *kept || !chain.contains(&record.name.to_lowercase()) {
                    continue;
                }
                match &record.data {
                    RData::CNAME(CNAME(target)) => {
                        chain.insert(target.to_lowercase());
                        (*kept, grew) = (true, true);
                    }
                    RData::A(_) | RData::AAAA(_) => *kept = true,
                    _ => {}
                }
            }
            if !grew {
                break;
            }
        }
        let records = message.answers.into_iter().zip(kept).filter_map(|(r, kept)| kept.then_some(r));
        Some(records.collect())
    }
}

/// The query the recursors are sent for `name` (Consul asks them for A records), with `id`;
/// `None` when `name` is not a name.
pub fn address_query(name: &str, id: u16) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    message.to_vec().ok()
}

/// Answers `packet` from `catalog`. `now_unix_secs` is the SOA serial; `rng` shuffles
/// instances (the same seed on both passes of a [`Handled::Resolve`] picks the same ones).
/// `resolved` is `None` on a first pass and the recursors' replies on a second. Never panics on
/// any input.
pub fn handle(
    packet: &[u8],
    transport: Transport,
    catalog: &Catalog,
    config: &Config,
    rng: &mut Rng,
    now_unix_secs: u32,
    resolved: Option<&Resolved>,
) -> Handled {
    handle_as(packet, transport, catalog, config, rng, now_unix_secs, resolved, None)
}

/// [`handle`], answering only with what `authorizer` may read when ACLs are on (Consul's DNS
/// token): a node with `node:read`, a service instance with `node:read` on its node and
/// `service:read` on it. What it may not read does not exist (NXDOMAIN), as in Consul.
#[allow(clippy::too_many_arguments, reason = "handle's arguments and the one it adds")]
pub fn handle_as(
    packet: &[u8],
    transport: Transport,
    catalog: &Catalog,
    config: &Config,
    rng: &mut Rng,
    now_unix_secs: u32,
    resolved: Option<&Resolved>,
    authorizer: Option<&Authorizer>,
) -> Handled {
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => return error_for_bytes(packet, ResponseCode::FormErr),
    };
    if request.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = config.recursion;
    response.metadata.authoritative = true;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD_BYTES);
        response.set_edns(edns);
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return encode(response, Transport::Tcp, config, &request);
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(response, Transport::Tcp, config, &request);
    };
    response.add_query(query.clone());
    let context =
        Context { catalog, config, now_unix_secs, resolved, edns: request.edns.is_some(), authorizer };
    let lookup = Lookup::new(&context, query.clone(), CHASE_DEPTH_MAX);
    let mut chases = Chases::default();
    let outcome = lookup.answer(rng, &mut chases);
    if resolved.is_none() && !chases.wanted.is_empty() {
        return Handled::Resolve(chases.wanted);
    }
    match outcome {
        Outcome::Records { answers, additionals } => {
            if answers.is_empty() {
                response.add_authority(lookup.soa_record());
            }
            response.insert_answers(answers);
            response.insert_additionals(additionals);
        }
        Outcome::NxDomain => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.add_authority(lookup.soa_record());
        }
        Outcome::Code(code) => response.metadata.response_code = code,
        Outcome::Outside if config.recursion => return Handled::Recurse,
        Outcome::Outside => response.metadata.response_code = ResponseCode::Refused,
    }
    echo_client_subnet(&request, &mut response);
    encode(response, transport, config, &request)
}

/// Echoes the query's EDNS client subnet (RFC 7871) with scope 0, as Consul does for every
/// answer but a prepared query's: no answer here depends on where the client is.
fn echo_client_subnet(request: &Message, response: &mut Message) {
    let Some(EdnsOption::Subnet(subnet)) = request.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet))
    else {
        return;
    };
    if let Some(edns) = response.edns.as_mut() {
        let echoed = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), 0);
        edns.options_mut().insert(EdnsOption::Subnet(echoed));
    }
}

/// SERVFAIL for `packet` (every recursor failed), or [`Handled::Drop`] if it has no header.
pub fn servfail(packet: &[u8]) -> Handled {
    error_for_bytes(packet, ResponseCode::ServFail)
}

/// An answer with `code` to whatever `packet` is: its ID and question when they can be read,
/// nothing at all when not even a header is there.
fn error_for_bytes(packet: &[u8], code: ResponseCode) -> Handled {
    if let Ok(request) = Message::from_vec(packet) {
        let mut response = Message::error_msg(request.metadata.id, request.metadata.op_code, code);
        response.add_queries(request.queries.iter().cloned());
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        return response.to_vec().map_or(Handled::Drop, Handled::Answer);
    }
    let Some(id) = packet.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return Handled::Drop };
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        // Not a query's header (too short, or an answer: never answer answers).
        return Handled::Drop;
    }
    Message::error_msg(id, OpCode::Query, code).to_vec().map_or(Handled::Drop, Handled::Answer)
}

/// What a lookup found.
enum Outcome {
    /// These records (none: NODATA).
    Records { answers: Vec<Record>, additionals: Vec<Record> },
    /// No such name.
    NxDomain,
    /// Answer with this code and nothing else.
    Code(ResponseCode),
    /// Not a name of ours.
    Outside,
}

/// What every lookup of one query shares (a followed hostname is a lookup of its own).
struct Context<'a> {
    catalog: &'a Catalog,
    config: &'a Config,
    now_unix_secs: u32,
    /// The recursors' replies, on a second pass.
    resolved: Option<&'a Resolved>,
    /// The query carried EDNS (followed hostnames may then add more records).
    edns: bool,
    /// What the DNS token may read, with ACLs on.
    authorizer: Option<&'a Authorizer>,
}

impl Context<'_> {
    fn sees_node(&self, node: &str) -> bool {
        self.authorizer.is_none_or(|authorizer| authorizer.node_read(node))
    }

    fn sees_instance(&self, instance: &Instance<'_>) -> bool {
        self.sees_node(&instance.node.node)
            && self.authorizer.is_none_or(|authorizer| authorizer.service_read(&instance.service.service))
    }
}

struct Lookup<'a> {
    catalog: &'a Catalog,
    config: &'a Config,
    context: &'a Context<'a>,
    query: Query,
    /// The query's name, lowercase, without the trailing dot (computed once per query).
    name: String,
    /// Whether it is under the alternative domain (answers then name that domain).
    in_alt_domain: bool,
    /// How many more hostnames inside the domain may be followed from here.
    depth: u8,
}

/// What following hostnames found and needs, for one query (both passes follow the same names
/// in the same order: the same seed draws the same instances).
#[derive(Default)]
struct Chases {
    /// Names outside the domain for the recursors, in the order they were met.
    wanted: Vec<String>,
    /// The records of each name followed (lowercase, fully qualified): a name many answers
    /// point at is followed once, and at most [`CHASED_NAMES_MAX`] names are followed.
    found: BTreeMap<String, Vec<Record>>,
}

impl<'a> Lookup<'a> {
    fn new(context: &'a Context<'a>, query: Query, depth: u8) -> Lookup<'a> {
        let mut name = query.name().to_lowercase().to_ascii();
        if name.ends_with('.') {
            name.pop();
        }
        let alt = context.config.alt_domain.as_str();
        let in_alt_domain = !alt.is_empty()
            && (name == alt || name.strip_suffix(alt).is_some_and(|rest| rest.ends_with('.')));
        Lookup {
            catalog: context.catalog,
            config: context.config,
            context,
            query,
            name,
            in_alt_domain,
            depth,
        }
    }

    fn answer(&self, rng: &mut Rng, chases: &mut Chases) -> Outcome {
        let qtype = self.query.query_type();
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return Outcome::Code(ResponseCode::NotImp);
        }
        if self.query.query_class() != DNSClass::IN && self.query.query_class() != DNSClass::ANY {
            return Outcome::Code(ResponseCode::Refused);
        }
        let name = self.name.as_str();
        if let Some(reverse) = name.strip_suffix(".in-addr.arpa").or_else(|| name.strip_suffix(".ip6.arpa")) {
            return self.ptr(reverse, name.ends_with(".ip6.arpa"));
        }
        let Some(inside) = self.strip_domain(name) else { return Outcome::Outside };
        if inside.is_empty() {
            return self.apex(qtype, rng);
        }
        let labels: Vec<&str> = inside.split('.').collect();
        let Some(kind_at) = labels.iter().rposition(|l| {
            matches!(*l, "service" | "node" | "addr" | "query" | "connect" | "ingress" | "virtual")
        }) else {
            // RFC 2782 without `.service`: `_svc._tcp[.dc]`.
            if labels.len() >= 2 && labels[0].starts_with('_') && labels[1].starts_with('_') {
                return match self.datacenter(&labels[2..]) {
                    Ok(()) => self.service(&labels[..2], qtype, rng, chases),
                    Err(outcome) => outcome,
                };
            }
            return Outcome::NxDomain;
        };
        if let Err(outcome) = self.datacenter(&labels[kind_at + 1..]) {
            return outcome;
        }
        let before = &labels[..kind_at];
        if before.is_empty() {
            return Outcome::NxDomain;
        }
        match labels[kind_at] {
            "service" => self.service(before, qtype, rng, chases),
            "node" => self.node(&before.join("."), qtype, rng, chases),
            "addr" if before.len() == 1 => self.addr(before[0], qtype),
            // Prepared queries and the mesh's names are not kept by this agent.
            _ => Outcome::NxDomain,
        }
    }

    /// The name without the domain (or the alternative one), or `None` when it is in neither.
    fn strip_domain<'n>(&self, name: &'n str) -> Option<&'n str> {
        [&self.config.domain, &self.config.alt_domain].into_iter().filter(|d| !d.is_empty()).find_map(
            |domain| {
                if name == domain {
                    Some("")
                } else {
                    name.strip_suffix(domain.as_str())?.strip_suffix('.')
                }
            },
        )
    }

    /// The domain answering: the one the query used (Consul since 1.11), for names we build.
    fn domain(&self) -> &str {
        if self.in_alt_domain {
            &self.config.alt_domain
        } else {
            &self.config.domain
        }
    }

    /// Whether the labels after the kind name this datacenter (or none).
    fn datacenter(&self, after: &[&str]) -> Result<(), Outcome> {
        match after {
            [] => Ok(()),
            [dc] if *dc == self.config.datacenter.to_ascii_lowercase() => Ok(()),
            // Another datacenter (no path to it) or a malformed name.
            _ => Err(Outcome::NxDomain),
        }
    }

    fn apex(&self, qtype: RecordType, rng: &mut Rng) -> Outcome {
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        if matches!(qtype, RecordType::SOA | RecordType::ANY) {
            answers.push(self.soa_record());
        }
        if matches!(qtype, RecordType::NS | RecordType::ANY) {
            let (ns, addrs) = self.name_servers(rng);
            answers.extend(ns);
            additionals.extend(addrs);
        }
        Outcome::Records { answers, additionals }
    }

    /// NS records for the domain: up to three servers (nodes carrying the `consul` service)
    /// drawn at random, with their addresses.
    fn name_servers(&self, rng: &mut Rng) -> (Vec<Record>, Vec<Record>) {
        let owner = self.fqdn(self.domain());
        let mut ns = Vec::new();
        let mut addrs = Vec::new();
        let (_, servers) = self.catalog.health_service(crate::reconcile::SERVER_SERVICE, &[], false);
        let mut servers: Vec<&Instance<'_>> =
            servers.iter().filter(|i| is_dns_label(&i.node.node) && self.context.sees_instance(i)).collect();
        shuffle(&mut servers, rng);
        for instance in servers.into_iter().take(NAME_SERVERS_MAX) {
            let target = self.fqdn(&format!(
                "{}.node.{}.{}",
                instance.node.node,
                self.config.datacenter,
                self.domain()
            ));
            ns.push(Record::from_rdata(
                owner.clone(),
                self.config.node_ttl_secs,
                RData::NS(NS(target.clone())),
            ));
            if let Some(record) =
                address_record(&target, &instance.node.address, self.config.node_ttl_secs, RecordType::ANY)
            {
                addrs.push(record);
            }
        }
        (ns, addrs)
    }

    fn soa_record(&self) -> Record {
        let domain = self.domain();
        let soa = SOA::new(
            self.fqdn(&format!("ns.{domain}")),
            self.fqdn(&format!("hostmaster.{domain}")),
            self.context.now_unix_secs,
            i32::try_from(self.config.soa.refresh).unwrap_or(i32::MAX),
            i32::try_from(self.config.soa.retry).unwrap_or(i32::MAX),
            i32::try_from(self.config.soa.expire).unwrap_or(i32::MAX),
            self.config.soa.min_ttl,
        );
        Record::from_rdata(self.fqdn(domain), self.config.soa.min_ttl, RData::SOA(soa))
    }

    fn node(&self, name: &str, qtype: RecordType, rng: &mut Rng, chases: &mut Chases) -> Outcome {
        let found = self.catalog.node(name).or_else(|| {
            // Names are matched case-insensitively, as Consul's catalog does.
            self.catalog.nodes().1.into_iter().find(|n| n.node.eq_ignore_ascii_case(name))
        });
        let Some(node) = found.filter(|node| self.context.sees_node(&node.node)) else {
            return Outcome::NxDomain;
        };
        let owner = self.query.name().clone();
        let ttl = self.config.node_ttl_secs;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let addresses =
            matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME);
        if addresses {
            let record = address_record(&owner, &node.address, ttl, qtype);
            if let Some(RData::CNAME(CNAME(target))) = record.as_ref().map(|r| &r.data) {
                let chased = self.chase(target, rng, chases);
                answers.extend(record);
                answers.extend(chased);
            } else {
                answers.extend(record);
            }
        }
        if matches!(qtype, RecordType::TXT | RecordType::ANY) {
            answers.extend(meta_records(&owner, node, ttl));
        } else if addresses && self.config.node_meta_txt {
            additionals.extend(meta_records(&owner, node, ttl));
        }
        Outcome::Records { answers, additionals }
    }

    /// The records a hostname `target` stands for, as Consul's `resolveCNAME` finds them: a
    /// lookup of its own when it is inside the domain (`depth` allowing), else what the
    /// recursors replied; without EDNS at most [`CHASED_RECORDS_NO_EDNS_MAX`]. Met on a first
    /// pass, a name outside the domain is wanted from the recursors.
    fn chase(&self, target: &Name, rng: &mut Rng, chases: &mut Chases) -> Vec<Record> {
        let text = target.to_lowercase().to_ascii();
        if let Some(records) = chases.found.get(&text) {
            return records.clone();
        }
        if chases.found.len() >= CHASED_NAMES_MAX {
            return Vec::new();
        }
        let mut records = if self.strip_domain(text.trim_end_matches('.')).is_some() {
            // At depth 0 a loop of names (or a very long chain) ends: the CNAME alone.
            let query = Query::query(target.clone(), RecordType::ANY);
            let inner = self.depth.checked_sub(1).map(|depth| Lookup::new(self.context, query, depth));
            match inner.map(|lookup| lookup.answer(rng, chases)) {
                Some(Outcome::Records { answers, .. }) => answers,
                _ => Vec::new(),
            }
        } else {
            match self.context.resolved.map(|resolved| resolved.records(&text)) {
                Some(records) => records.unwrap_or_default(),
                None => {
                    if self.config.recursion && !chases.wanted.contains(&text) {
                        chases.wanted.push(text.clone());
                    }
                    Vec::new()
                }
            }
        };
        if !self.context.edns {
            records.truncate(CHASED_RECORDS_NO_EDNS_MAX);
        }
        chases.found.insert(text, records.clone());
        records
    }

    /// [`Self::chase`] for a service answer: every record carries the service's TTL.
    fn chase_for_service(&self, target: &Name, ttl: u32, rng: &mut Rng, chases: &mut Chases) -> Vec<Record> {
        let mut records = self.chase(target, rng, chases);
        for record in &mut records {
            record.ttl = ttl;
        }
        records
    }

    fn addr(&self, hex: &str, qtype: RecordType) -> Outcome {
        let Some(ip) = ip_of_hex(hex) else { return Outcome::NxDomain };
        let wanted = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        let mut answers = Vec::new();
        if qtype == wanted || qtype == RecordType::ANY {
            answers.extend(address_record(
                self.query.name(),
                &ip.to_string(),
                self.config.node_ttl_secs,
                qtype,
            ));
        }
        Outcome::Records { answers, additionals: Vec::new() }
    }

    fn service(&self, before: &[&str], qtype: RecordType, rng: &mut Rng, chases: &mut Chases) -> Outcome {
        // `_svc._tag` (RFC 2782; `_tcp` is no tag), else `[tag.]svc` with every leading label
        // one tag.
        let (service, tag) = match before {
            [svc, tag] if svc.starts_with('_') && tag.starts_with('_') => {
                let tag = &tag[1..];
                (&svc[1..], (tag != "tcp").then(|| tag.to_owned()))
            }
            [rest @ .., svc] => (*svc, (!rest.is_empty()).then(|| rest.join("."))),
            [] => return Outcome::NxDomain,
        };
        let tags: Vec<&str> = tag.as_deref().into_iter().collect();
        let (_, mut instances) = self.catalog.health_service(service, &tags, false);
        if instances.is_empty() {
            // Service names are matched case-insensitively, as Consul's catalog does.
            let services = self.catalog.services().1;
            if let Some(actual) = services.keys().find(|s| s.eq_ignore_ascii_case(service) && **s != service)
            {
                instances = self.catalog.health_service(actual, &tags, false).1;
            }
        }
        let mut seen = BTreeSet::new();
        let mut healthy: Vec<&Instance<'_>> = instances
            .iter()
            .filter(|i| self.context.sees_instance(i))
            .filter(|i| {
                !i.checks.iter().any(|c| {
                    c.status == Health::Critical || (self.config.only_passing && c.status == Health::Warning)
                })
            })
            .filter(|i| seen.insert((&i.node.node, &i.service.address, i.service.port)))
            .collect();
        if healthy.is_empty() {
            return Outcome::NxDomain;
        }
        shuffle(&mut healthy, rng);
        let ttl = self.config.service_ttl(service);
        let owner = self.query.name().clone();
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        match qtype {
            RecordType::SRV => {
                let mut described = BTreeSet::new();
                for instance in &healthy {
                    let (target, address) = self.srv_target(instance);
                    let warning = instance.checks.iter().any(|c| c.status == Health::Warning);
                    let weights = &instance.service.weights;
                    let weight = if warning { weights.warning } else { weights.passing };
                    let weight = u16::try_from(weight).unwrap_or(u16::MAX);
                    let srv = SRV::new(1, weight, instance.service.port, target.clone());
                    answers.push(Record::from_rdata(owner.clone(), ttl, RData::SRV(srv)));
                    match address {
                        Some(address) => {
                            additionals.extend(address_record(&target, &address, ttl, RecordType::ANY));
                        }
                        None => additionals.extend(self.chase_for_service(&target, ttl, rng, chases)),
                    }
                    if self.config.node_meta_txt && described.insert(&instance.node.node) {
                        let node_name = self.node_name(&instance.node.node);
                        additionals.extend(meta_records(&node_name, instance.node, ttl));
                    }
                }
            }
            RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::CNAME => {
                // Addresses win: a hostname (a CNAME, which may not share its name with other
                // records) answers only when no instance has an IP, the first one drawn.
                let mut hostname = None;
                for instance in &healthy {
                    let address = instance_address(instance);
                    if address.parse::<IpAddr>().is_err() {
                        hostname = hostname.or(Some(address));
                    } else if let Some(record) = address_record(&owner, address, ttl, qtype) {
                        answers.push(record);
                        if answers.len() == self.config.a_record_limit {
                            break;
                        }
                    }
                }
                if let (true, Some(hostname)) = (answers.is_empty(), hostname) {
                    let record = address_record(&owner, hostname, ttl, qtype);
                    if let Some(RData::CNAME(CNAME(target))) = record.as_ref().map(|r| &r.data) {
                        let chased = self.chase_for_service(target, ttl, rng, chases);
                        answers.extend(record);
                        answers.extend(chased);
                    }
                }
            }
            _ => {}
        }
        Outcome::Records { answers, additionals }
    }

    /// `<node>.node.<dc>.<domain>`: the name SRV answers give a node.
    fn node_name(&self, node: &str) -> Name {
        self.fqdn(&format!("{node}.node.{}.{}", self.config.datacenter, self.domain()))
    }

    /// An SRV record's target, and the address to give for it in Additional: the node's name
    /// when the service uses the node's address, `<hex>.addr` when it has an IP of its own, or
    /// the service's hostname (no address given).
    fn srv_target(&self, instance: &Instance<'_>) -> (Name, Option<String>) {
        let (dc, domain) = (&self.config.datacenter, self.domain());
        let address = instance_address(instance);
        match address.parse::<IpAddr>() {
            Ok(ip)
                if !instance.service.address.is_empty()
                    && instance.service.address != instance.node.address =>
            {
                (self.fqdn(&format!("{}.addr.{dc}.{domain}", hex_of_ip(ip))), Some(address.to_owned()))
            }
            Ok(_) => (self.node_name(&instance.node.node), Some(address.to_owned())),
            Err(_) => (self.fqdn(address), None),
        }
    }

    fn ptr(&self, reverse: &str, v6: bool) -> Outcome {
        let ip = if v6 {
            let nibbles: String = reverse.split('.').rev().collect();
            ip_of_hex(&nibbles)
        } else {
            let octets: Vec<&str> = reverse.split('.').rev().collect();
            octets.join(".").parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        };
        let Some(ip) = ip else { return Outcome::Outside };
        let text = ip.to_string();
        let (dc, domain) = (&self.config.datacenter, &self.config.domain);
        let owner = self.query.name().clone();
        let ttl = self.config.node_ttl_secs;
        let nodes: Vec<Record> = self
            .catalog
            .nodes()
            .1
            .into_iter()
            .filter(|n| n.address == text && self.context.sees_node(&n.node))
            .map(|n| {
                let target = self.fqdn(&format!("{}.node.{dc}.{domain}", n.node));
                Record::from_rdata(owner.clone(), ttl, RData::PTR(PTR(target)))
            })
            .collect();
        if nodes.is_empty() {
            // Not one of ours: a recursor may know it.
            return Outcome::Outside;
        }
        let answers =
            if matches!(self.query.query_type(), RecordType::PTR | RecordType::ANY) { nodes } else { vec![] };
        Outcome::Records { answers, additionals: Vec::new() }
    }

    /// `text` as a fully qualified name (labels that cannot be names give the root).
    fn fqdn(&self, text: &str) -> Name {
        let mut name = Name::from_ascii(text).unwrap_or_else(|_| Name::root());
        name.set_fqdn(true);
        name
    }
}

/// Fisher-Yates from the caller's seeded generator.
fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// An A or AAAA record for `address` (a CNAME when it is a hostname), if `qtype` asks for it.
fn address_record(owner: &Name, address: &str, ttl: u32, qtype: RecordType) -> Option<Record> {
    let rdata = match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if matches!(qtype, RecordType::A | RecordType::ANY) => RData::A(A(ip)),
        Ok(IpAddr::V6(ip)) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(ip)),
        Ok(_) => return None,
        Err(_) => {
            let mut target = Name::from_ascii(address).ok()?;
            target.set_fqdn(true);
            RData::CNAME(CNAME(target))
        }
    };
    Some(Record::from_rdata(owner.clone(), ttl, rdata))
}

/// A node's meta as TXT records named `owner`, one a key (RFC 1464 `key=value`; a key starting
/// `rfc1035-` gives its value alone), as Consul's `generateMeta`.
fn meta_records(owner: &Name, node: &crate::fsm::Node, ttl: u32) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(key, value)| {
            let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
                value.clone()
            } else {
                format!("{key}={value}")
            };
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(vec![text])))
        })
        .collect()
}

/// The address an instance answers on: the service's own, else its node's.
fn instance_address<'a>(instance: &'a Instance<'_>) -> &'a str {
    if instance.service.address.is_empty() {
        &instance.node.address
    } else {
        &instance.service.address
    }
}

/// `<hex>.addr` names: 8 hex digits for IPv4, 32 for IPv6.
fn ip_of_hex(hex: &str) -> Option<IpAddr> {
    let value = u128::from_str_radix(hex, 16).ok()?;
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(u32::try_from(value).ok()?))),
        32 => Some(IpAddr::V6(Ipv6Addr::from(value))),
        _ => None,
    }
}

fn hex_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{:08x}", u32::from(ip)),
        IpAddr::V6(ip) => format!("{:032x}", u128::from(ip)),
    }
}

/// Whether `name` can be one DNS label (node names that cannot are left out of NS answers).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `response` encoded, cut to what `transport` (and the request's EDNS) allows.
fn encode(mut response: Message, transport: Transport, config: &Config, request: &Message) -> Handled {
    let limit = match (transport, &request.edns) {
        (Transport::Tcp, _) => TCP_BYTES_MAX,
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()).clamp(UDP_BYTES_MAX, TCP_BYTES_MAX),
        (Transport::Udp, None) => UDP_BYTES_MAX,
    };
    let mut trimmed = false;
    if transport == Transport::Udp && request.edns.is_none() {
        let most = config.udp_answer_limit.clamp(1, UDP_ANSWERS_MAX);
        if response.answers.len() > most {
            response.answers.truncate(most);
            trimmed = true;
        }
    }
    loop {
        if trimmed {
            sync_additionals(&mut response);
        }
        let Ok(bytes) = response.to_vec() else {
            let mut failed =
                Message::error_msg(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail);
            failed.add_queries(response.queries.iter().cloned());
            return failed.to_vec().map_or(Handled::Drop, Handled::Answer);
        };
        if bytes.len() <= limit {
            if trimmed && config.enable_truncate {
                response.metadata.truncation = true;
                return response.to_vec().map_or(Handled::Drop, Handled::Answer);
            }
            return Handled::Answer(bytes);
        }
        trimmed = true;
        if !response.additionals.is_empty() && response.answers.len() <= 1 {
            response.additionals.clear();
        } else if response.answers.pop().is_none() {
            response.authorities.clear();
        }
    }
}

/// After trimming, keeps only the Additional records that name an SRV target still answered,
/// or a name one of those CNAMEs to (Consul's `syncExtra`).
fn sync_additionals(response: &mut Message) {
    let mut targets: BTreeSet<Name> = response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.clone()),
            _ => None,
        })
        .collect();
    if targets.is_empty() && !response.answers.is_empty() {
        return;
    }
    // Each round adds the targets of kept CNAMEs; a chain is no longer than the records.
    for _ in 0..response.additionals.len() {
        let before = targets.len();
        for record in &response.additionals {
            if let (true, RData::CNAME(CNAME(target))) = (targets.contains(&record.name), &record.data) {
                targets.insert(target.clone());
            }
        }
        if targets.len() == before {
            break;
        }
    }
    response.additionals.retain(|r| targets.contains(&r.name));
}

#[cfg(test)]
mod tests;
