//! go-sockaddr templates, as Consul evaluates them in `bind_addr`, `client_addr`,
//! `advertise_addr*`, `addresses.*`, `serf_lan`/`serf_wan`, `recursors` and `retry_join`.
//!
//! Consul hands such a string to hashicorp/go-sockaddr's `template.Parse`, which runs it through
//! Go's `text/template` with the list of this machine's interface addresses as the dot and with
//! go-sockaddr's functions (`GetPrivateIP`, `include`, `sort`, `join`, ...) in scope. This module
//! implements the subset of `text/template` those templates use (text, `{{ }}` actions with
//! `{{-`/`-}}` trimming, comments, pipelines, parenthesised sub-pipelines, string, raw-string,
//! integer and boolean literals, and the dot) and re-implements go-sockaddr's functions over a
//! caller-supplied interface list, so that evaluation is a pure function and testable.
//!
//! Where go-sockaddr behaves surprisingly, this module follows go-sockaddr, because a template
//! that works with Consul must give the same addresses here:
//! - `sort "size"` puts *larger* networks (shorter prefixes) first: go-sockaddr compares netmasks.
//! - `include "flag" "a|b"` requires every interface flag listed (`up`, `broadcast`, ...) *or*
//!   any listed address property (`forwardable`, `loopback`, ...), and `down` matches everything.
//! - `include "type" "ipv4|ipv6"`, `"network" "a|b"` and `"rfc" "a|b"` test every alternative
//!   separately, so an address can appear once per alternative, and `exclude` lists an address
//!   once for each alternative it is outside of.
//! - RFC 6890 contains all of `2001::/16`, so most global IPv6 addresses are "private".
//! - `GetInterfaceIPs` (plural) does not drop non-forwardable addresses; `GetInterfaceIP` does.
//!
//! Not supported (each is a clear parse error, never a panic): `if`/`range`/`with` and other
//! control actions, variables, field access, Go's builtin functions (`printf`, `len`, ...),
//! floating-point and character literals, `unix` sockets (interfaces only carry IPs). Printing a
//! whole list (`{{ GetAllInterfaces }}`) is an execution error, because Go would print its
//! internal structure, which is never a usable address.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use muster_core::go_quote::{quote, quote_ascii};
use regex::{Regex, RegexBuilder};

/// One address of one network interface, as go-sockaddr's IfAddr sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Kernel interface index; interfaces are listed in this order.
    pub index: u32,
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length of the address's network.
    pub prefix_len: u8,
    /// Interface flags.
    pub flags: Flags,
    /// Whether this address's interface holds the default route.
    pub default_route: bool,
}

/// Interface flags, as Go's `net.Flags`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// IFF_UP.
    pub up: bool,
    /// IFF_BROADCAST.
    pub broadcast: bool,
    /// IFF_LOOPBACK.
    pub loopback: bool,
    /// IFF_POINTOPOINT.
    pub point_to_point: bool,
    /// IFF_MULTICAST.
    pub multicast: bool,
}

/// A template that failed to parse or to execute.
///
/// Displays as Consul words it: `unable to parse template "<t>": <why>` or
/// `unable to execute sockaddr input "<t>": <why>`, where `<why>` follows Go's `text/template`
/// (`template: sockaddr.Parse:1: function "Foo" not defined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Not a template: bad syntax, or beyond the subset and the limits this module takes.
    #[error("unable to parse template {}: {why}", quote_ascii(template))]
    Parse {
        /// The template.
        template: String,
        /// Go's `text/template` message, with the line.
        why: String,
    },
    /// A template that parsed but failed while running (a function refused its arguments).
    #[error("unable to execute sockaddr input {}: {why}", quote_ascii(template))]
    Execute {
        /// The template.
        template: String,
        /// Go's `text/template` message, with the line, column and failing node.
        why: String,
    },
}

/// This machine's interfaces: if-addrs for names, addresses and netmasks; the default-route
/// interface from /proc/net/route (IPv4) and /proc/net/ipv6_route; flags from
/// /sys/class/net/<if>/flags (IFF_UP=0x1, BROADCAST=0x2, LOOPBACK=0x8, POINTOPOINT=0x10,
/// MULTICAST=0x1000); missing files degrade gracefully (up = true, others from if-addrs).
///
/// Like go-sockaddr (which asks `ip route`), only one interface is the default-route one: the
/// first IPv4 default route's, or if there is none the first IPv6 default route's.
pub fn system_interfaces() -> std::io::Result<Vec<IfAddr>> {
    let default_name = default_route_interface();
    let mut out: Vec<IfAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|iface| {
            let (addr, prefix_len, has_broadcast) = match &iface.addr {
                if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen, a.broadcast.is_some()),
                if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen, false),
            };
            let flags = sys_flags(&iface.name).unwrap_or(Flags {
                up: true,
                broadcast: has_broadcast,
                loopback: iface.is_loopback(),
                point_to_point: false,
                multicast: false,
            });
            let index = iface.index.or_else(|| sys_index(&iface.name)).unwrap_or(0);
            IfAddr {
                default_route: default_name.as_deref() == Some(iface.name.as_str()),
                name: iface.name,
                index,
                addr,
                prefix_len,
                flags,
            }
        })
        .collect();
    // Go lists interface by interface in index order; getifaddrs lists all IPv4 addresses first.
    out.sort_by_key(|a| a.index);
    Ok(out)
}

/// Evaluates a template (text and `{{ }}` actions mixed, as Go's text/template; a string with no
/// `{{` is returned as is) against `interfaces`; the caller splits the output on whitespace.
pub fn render(template: &str, interfaces: &[IfAddr]) -> Result<String, TemplateError> {
    if !template.contains("{{") {
        return Ok(template.to_string());
    }
    let unparsable =
        |f: Fault| TemplateError::Parse { template: template.to_string(), why: f.render(template) };
    let failed =
        |f: Fault| TemplateError::Execute { template: template.to_string(), why: f.render(template) };
    if template.len() > TEMPLATE_LEN_MAX {
        let msg = format!("template is {} bytes long; the limit is {TEMPLATE_LEN_MAX}", template.len());
        return Err(unparsable(Fault { pos: 0, node: None, msg }));
    }
    let nodes = parse(template).map_err(unparsable)?;
    let eval = Eval::new(interfaces);
    let mut out = String::new();
    for node in &nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Action(pipeline) => match eval.pipeline(pipeline).map_err(failed)? {
                Value::Str(s) => out.push_str(&s),
                Value::Int(i) => out.push_str(&i.to_string()),
                Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                Value::List(_) => {
                    let fault = Fault {
                        pos: pipeline.pos(),
                        node: Some(pipeline.to_string()),
                        msg: "cannot print a list of interface addresses; pipe it to attr or join".into(),
                    };
                    return Err(failed(fault));
                }
            },
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Interfaces from the operating system.

/// Name of the interface holding the default route, if any.
fn default_route_interface() -> Option<String> {
    const RTF_UP: u32 = 0x1;
    const RTF_REJECT: u32 = 0x200;
    if let Ok(table) = std::fs::read_to_string("/proc/net/route") {
        // Columns: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [iface, dest, _gw, flags, _, _, _, mask, ..] = cols[..] else { continue };
            let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
            if dest == "00000000" && mask == "00000000" && flags & RTF_UP != 0 {
                return Some(iface.to_string());
            }
        }
    }
    if let Ok(table) = std::fs::read_to_string("/proc/net/ipv6_route") {
        // Columns: dest dest_len src src_len next_hop metric refcnt use flags iface.
        for line in table.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [dest, dest_len, _, _, _, _, _, _, flags, iface] = cols[..] else { continue };
            let flags = u32::from_str_radix(flags, 16).unwrap_or(0);
            // The kernel keeps `::/0` reject routes on `lo`; those are not a way out.
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && iface != "lo";
            if dest.bytes().all(|b| b == b'0') && dest_len == "00" && usable {
                return Some(iface.to_string());
            }
        }
    }
    None
}

/// Flags from `/sys/class/net/<name>/flags`, or `None` when unreadable.
fn sys_flags(name: &str) -> Option<Flags> {
    const IFF_UP: u32 = 0x1;
    const IFF_BROADCAST: u32 = 0x2;
    const IFF_LOOPBACK: u32 = 0x8;
    const IFF_POINTOPOINT: u32 = 0x10;
    const IFF_MULTICAST: u32 = 0x1000;
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    let text = text.trim();
    let bits = u32::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16).ok()?;
    Some(Flags {
        up: bits & IFF_UP != 0,
        broadcast: bits & IFF_BROADCAST != 0,
        loopback: bits & IFF_LOOPBACK != 0,
        point_to_point: bits & IFF_POINTOPOINT != 0,
        multicast: bits & IFF_MULTICAST != 0,
    })
}

/// Index from `/sys/class/net/<name>/ifindex`, for when if-addrs does not know it.
fn sys_index(name: &str) -> Option<u32> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Template syntax.

/// A failure at a byte position of the template. `node` is set for execution failures: Go names
/// the node that failed (`at <include "a" "b">`).
#[derive(Debug)]
struct Fault {
    pos: usize,
    node: Option<String>,
    msg: String,
}

impl Fault {
    fn parse(pos: usize, msg: impl fmt::Display) -> Fault {
        Fault { pos, node: None, msg: msg.to_string() }
    }

    /// Go's wording: `template: NAME:LINE: msg` when parsing, and
    /// `template: NAME:LINE:COL: executing "NAME" at <node>: msg` when executing.
    fn render(&self, template: &str) -> String {
        let pos = self.pos.min(template.len());
        let before = template.get(..pos).unwrap_or("");
        let line = 1 + before.matches('\n').count();
        match &self.node {
            None => format!("template: {TEMPLATE_NAME}:{line}: {}", self.msg),
            Some(node) => {
                let col = pos - before.rfind('\n').map_or(0, |i| i + 1);
                format!(
                    "template: {TEMPLATE_NAME}:{line}:{col}: executing \"{TEMPLATE_NAME}\" at <{node}>: {}",
                    self.msg
                )
            }
        }
    }
}

/// A template's text that does not lex or parse, in Go's `text/template` words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SyntaxError {
    /// A quoted string's escape that Go does not take.
    #[error("invalid syntax")]
    Escape,
    /// A double-quoted string with no closing quote on its line.
    #[error("unterminated quoted string")]
    UnterminatedString,
    /// A number with a fraction or an exponent.
    #[error("floating-point numbers are not supported")]
    Float,
    /// A number whose digits do not fit its base.
    #[error("illegal number syntax: {}", quote(.0))]
    Number(String),
    /// A number beyond `i64`.
    #[error("integer overflow: {}", quote(.0))]
    Overflow(String),
    /// A control word (`if`, `range`, ...) this module does not run.
    #[error("{} is not supported in sockaddr templates", quote(.0))]
    Control(String),
    /// One of Go's builtin functions, which this module does not run.
    #[error("function {} is not supported in sockaddr templates", quote(.0))]
    Builtin(String),
    /// A word that names no function.
    #[error("function {} not defined", quote(.0))]
    Undefined(String),
}

/// An argument of the wrong type, in Go's two wordings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TypeError {
    /// A literal argument (its source text) where another type is wanted.
    #[error("expected {expected}; found {found}")]
    Literal {
        /// What the parameter takes, in words.
        expected: &'static str,
        /// The literal as written.
        found: String,
    },
    /// A computed argument of another Go type.
    #[error("wrong type for value; expected {expected}; got {got}")]
    Value {
        /// The parameter's Go type.
        expected: &'static str,
        /// The argument's Go type.
        got: &'static str,
    },
}

/// A go-sockaddr function that refused its arguments, in go-sockaddr's words; Go prefixes it
/// with `error calling <function>: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CallError {
    /// `GetDefaultInterfaces` with no default route.
    #[error("no default interface found")]
    NoDefaultInterface,
    /// A selector regexp that does not compile.
    #[error("unable to compile {what} regexp {}: {why}", quote_ascii(pattern))]
    Regexp {
        /// Which selector: `name`, `address` or `port`.
        what: &'static str,
        /// The pattern.
        pattern: String,
        /// The regex crate's complaint, on one line.
        why: String,
    },
    /// A `network` selector argument that is not an address or a CIDR.
    #[error("unable to create an IP address from {}: invalid IPAddr {}", quote_ascii(.0), .0)]
    Network(String),
    /// An `rfc` selector argument that names no known RFC.
    #[error("unable to lookup RFC number {}: {source}", quote(number))]
    Rfc {
        /// The argument.
        number: String,
        /// Why it names none.
        source: RfcError,
    },
    /// A `size` selector argument that is not an unsigned number.
    #[error("invalid exclude size argument ({}): {}", quote(.0), parse_uint_error(.0))]
    Size(String),
    /// A `size` selector beyond an IPv4 prefix.
    #[error("mask size out of bounds for IPv4 address: {0}")]
    MaskSizeIpv4(u64),
    /// A `size` selector beyond an IPv6 prefix.
    #[error("mask size out of bounds for IPv6 address: {0}")]
    MaskSizeIpv6(u64),
    /// A `type` selector argument naming an unknown type.
    #[error("unsupported type {} {}", quote(bad), quote(arg))]
    Type {
        /// The unknown type.
        bad: String,
        /// The whole argument.
        arg: String,
    },
    /// An `include` or `exclude` selector that does not exist.
    #[error("invalid {verb} selector {}", quote(selector))]
    Selector {
        /// `include` or `exclude`.
        verb: &'static str,
        /// The selector.
        selector: String,
    },
    /// A `sort` key that does not exist.
    #[error("unknown sort type: {}", quote(.0))]
    SortKey(String),
    /// A `flag` selector argument naming an unknown flag.
    #[error("unknown interface flag: {}", quote_ascii(.0))]
    Flag(String),
    /// A `unique` attribute other than `address` or `name`.
    #[error("unsupported unique constraint {}", quote_ascii(.0))]
    Unique(String),
    /// An `offset` beyond the list.
    #[error(
        "unable to seek past the end of the interface array: offset ({offset}) exceeds the number of \
         interfaces ({count})"
    )]
    Offset {
        /// The offset's magnitude.
        offset: usize,
        /// How many interface addresses the list holds.
        count: usize,
    },
    /// A `math` operation that cannot be done on one address.
    #[error("unable to perform an IPMath operation on {address} {interface}: {source}")]
    Math {
        /// The address with its prefix length.
        address: String,
        /// Its interface's name.
        interface: String,
        /// What is wrong with the operation.
        source: MathError,
    },
    /// An `attr` or `join` attribute that does not exist.
    #[error("unsupported attribute name {}", quote(.0))]
    Attribute(String),
    /// `attr` applied to something other than a list of interface addresses.
    #[error("unable to obtain attribute {attr} from type {go_type} ({shown})")]
    AttributeOfNonList {
        /// The attribute.
        attr: String,
        /// The value's Go type.
        go_type: &'static str,
        /// The value as Go prints it.
        shown: String,
    },
    /// Arguments that reached a function unchecked: a bug in this module, never the template's.
    #[error("internal error: arguments of {0} not checked")]
    Unchecked(&'static str),
}

/// An `rfc` selector argument that names no known RFC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum RfcError {
    /// Not an unsigned number.
    #[error("unable to parse RFC number {}: {}", quote(.0), parse_uint_error(.0))]
    NotANumber(String),
    /// A number go-sockaddr has no table for.
    #[error("unsupported RFC {0}")]
    Unknown(u64),
}

/// A `math` operation or operand that go-sockaddr's `IfAddrMath` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum MathError {
    /// `address` and `network` take a signed offset.
    #[error("sign (+/-) is required for operation {}", quote(op))]
    Unsigned {
        /// The operation.
        op: String,
    },
    /// A signed offset that is not a number, or beyond the address family.
    #[error(
        "unable to convert {} to int for operation {}: {}",
        quote(value),
        quote(op),
        parse_int_error(value)
    )]
    NotAnInt {
        /// The operand.
        value: String,
        /// The operation.
        op: String,
    },
    /// A `mask` length that is not an unsigned number.
    #[error(
        "unable to convert {} to int for operation {}: {}",
        quote(value),
        quote(op),
        parse_uint_error(value)
    )]
    NotAUint {
        /// The operand.
        value: String,
        /// The operation.
        op: String,
    },
    /// A `mask` length beyond the address family.
    #[error("parameter for operation {} on {}", quote(op), mask_range(*ipv4))]
    MaskLength {
        /// The operation.
        op: String,
        /// Whether the address is IPv4.
        ipv4: bool,
    },
    /// An operation go-sockaddr does not have.
    #[error("unsupported math operation: {}", quote(.0))]
    Unsupported(String),
}

/// The range a `mask` length must lie in, in go-sockaddr's words (its IPv6 message really says
/// 64).
fn mask_range(ipv4: bool) -> &'static str {
    if ipv4 {
        "ipv4 addresses must be between 0 and 32"
    } else {
        "ipv6 addresses must be between 0 and 64"
    }
}

enum Node {
    Text(String),
    Action(Pipeline),
}

struct Pipeline {
    commands: Vec<Command>,
}

struct Command {
    /// First operand is the function (or a lone value); the rest are its arguments.
    operands: Vec<Operand>,
}

struct Operand {
    pos: usize,
    kind: OperandKind,
}

enum OperandKind {
    Func(Func),
    /// A string literal: its value and its source text (Go prints the latter in errors).
    Str(String, String),
    Int(i64, String),
    Bool(bool),
    Dot,
    Pipe(Pipeline),
}

impl Pipeline {
    fn pos(&self) -> usize {
        self.commands.first().map_or(0, Command::pos)
    }
}

impl Command {
    fn pos(&self) -> usize {
        self.operands.first().map_or(0, |o| o.pos)
    }
}

impl OperandKind {
    fn is_literal(&self) -> bool {
        matches!(self, OperandKind::Str(..) | OperandKind::Int(..) | OperandKind::Bool(_) | OperandKind::Dot)
    }
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, cmd) in self.commands.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{cmd}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.operands.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", op.kind)?;
        }
        Ok(())
    }
}

impl fmt::Display for OperandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperandKind::Func(func) => f.write_str(func.name()),
            OperandKind::Str(_, text) | OperandKind::Int(_, text) => f.write_str(text),
            OperandKind::Bool(b) => write!(f, "{b}"),
            OperandKind::Dot => f.write_str("."),
            OperandKind::Pipe(p) => write!(f, "({p})"),
        }
    }
}

#[derive(Debug)]
enum Tok {
    Pipe,
    LParen,
    RParen,
    Str(String, String),
    Int(i64, String),
    Bool(bool),
    Dot,
    Ident(String),
    /// The end of the action.
    Close,
}

struct Token {
    pos: usize,
    tok: Tok,
}

/// Splits the template into text and parsed actions.
fn parse(src: &str) -> Result<Vec<Node>, Fault> {
    let mut nodes = Vec::new();
    let mut rest_start = 0;
    let mut trim_next = false;
    let mut actions = 0usize;
    loop {
        let Some(open) = src[rest_start..].find("{{").map(|i| rest_start + i) else {
            let mut text = &src[rest_start..];
            if trim_next {
                text = text.trim_start_matches(GO_SPACE);
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text.to_string()));
            }
            return Ok(nodes);
        };
        actions += 1;
        if actions > ACTIONS_MAX {
            return Err(Fault::parse(open, format!("more than {ACTIONS_MAX} actions")));
        }
        let mut text = &src[rest_start..open];
        if trim_next {
            text = text.trim_start_matches(GO_SPACE);
        }
        let mut pos = open + 2;
        // `{{- ` trims: the dash must be followed by a space, or it starts a negative number.
        let bytes = src.as_bytes();
        if bytes.get(pos) == Some(&b'-')
            && bytes.get(pos + 1).is_some_and(|b| GO_SPACE.contains(&char::from(*b)))
        {
            text = text.trim_end_matches(GO_SPACE);
            pos += 2;
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text.to_string()));
        }
        if src[pos..].starts_with("/*") {
            let (end, trim) = skip_comment(src, pos)?;
            rest_start = end;
            trim_next = trim;
            continue;
        }
        let (tokens, end, trim) = lex_action(src, pos)?;
        let mut parser = Parser { toks: &tokens, i: 0, depth: 0 };
        let pipeline = parser.pipeline(false)?;
        nodes.push(Node::Action(pipeline));
        rest_start = end;
        trim_next = trim;
    }
}

/// Skips `/* ... */` followed by `}}` or ` -}}`; returns the end and whether to trim after it.
fn skip_comment(src: &str, pos: usize) -> Result<(usize, bool), Fault> {
    let Some(close) = src[pos + 2..].find("*/").map(|i| pos + 2 + i + 2) else {
        return Err(Fault::parse(pos, "unclosed comment"));
    };
    let after = &src[close..];
    if let Some(stripped) = after.strip_prefix("}}") {
        return Ok((src.len() - stripped.len(), false));
    }
    let trimmed = after.trim_start_matches(GO_SPACE);
    if trimmed.len() < after.len() {
        if let Some(stripped) = trimmed.strip_prefix("-}}") {
            return Ok((src.len() - stripped.len(), true));
        }
    }
    Err(Fault::parse(close, "comment ends before closing delimiter"))
}

/// Lexes one action starting after `{{` (and its trim marker); returns its tokens (ending in
/// `Close`), the position after `}}`, and whether the following text is trimmed.
fn lex_action(src: &str, start: usize) -> Result<(Vec<Token>, usize, bool), Fault> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = start;
    loop {
        let space_start = i;
        while i < bytes.len() && GO_SPACE.contains(&char::from(bytes[i])) {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(Fault::parse(i, "unclosed action"));
        }
        let rest = &src[i..];
        if rest.starts_with("}}") {
            toks.push(Token { pos: i, tok: Tok::Close });
            return Ok((toks, i + 2, false));
        }
        if i > space_start && rest.starts_with("-}}") {
            toks.push(Token { pos: i, tok: Tok::Close });
            return Ok((toks, i + 3, true));
        }
        let c = rest.chars().next().unwrap_or('\0');
        let next = rest[c.len_utf8()..].chars().next();
        let pos = i;
        let tok = match c {
            '|' => {
                i += 1;
                Tok::Pipe
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '"' => {
                let (value, len) = lex_quoted(rest).map_err(|m| Fault::parse(pos, m))?;
                i += len;
                Tok::Str(value, rest[..len].to_string())
            }
            '`' => {
                let Some(end) = rest[1..].find('`') else {
                    return Err(Fault::parse(pos, "unterminated raw quoted string"));
                };
                i += end + 2;
                Tok::Str(rest[1..end + 1].to_string(), rest[..end + 2].to_string())
            }
            '\'' => return Err(Fault::parse(pos, "character constants are not supported")),
            '$' => return Err(Fault::parse(pos, "variables are not supported")),
            '.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                return Err(Fault::parse(pos, "floating-point numbers are not supported"));
            }
            '.' if next.is_some_and(|n| n.is_alphanumeric() || n == '_') => {
                return Err(Fault::parse(pos, "field access is not supported"));
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '0'..='9' | '+' | '-' if c.is_ascii_digit() || next.is_some_and(|n| n.is_ascii_digit()) => {
                let len = rest[1..]
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                    .map_or(rest.len(), |n| n + 1);
                let text = &rest[..len];
                i += len;
                Tok::Int(parse_go_int(text).map_err(|m| Fault::parse(pos, m))?, text.to_string())
            }
            c if c.is_alphabetic() || c == '_' => {
                let len = rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_')).unwrap_or(rest.len());
                i += len;
                match &rest[..len] {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    word => Tok::Ident(word.to_string()),
                }
            }
            ':' | '=' => return Err(Fault::parse(pos, "variables are not supported")),
            c => return Err(Fault::parse(pos, format!("unrecognized character in action: {}", go_char(c)))),
        };
        toks.push(Token { pos, tok });
    }
}

/// Lexes a Go double-quoted string at the start of `s`; returns its value and source length.
fn lex_quoted(s: &str) -> Result<(String, usize), SyntaxError> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let simple = match e {
                    'a' => Some('\x07'),
                    'b' => Some('\x08'),
                    'f' => Some('\x0c'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\x0b'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    _ => None,
                };
                if let Some(ch) = simple {
                    out.push(ch);
                    continue;
                }
                let (digits, radix) = match e {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return Err(SyntaxError::Escape),
                };
                let mut code = if radix == 8 { e.to_digit(8).unwrap_or(0) } else { 0 };
                for _ in 0..digits {
                    let Some(d) = chars.next().and_then(|(_, d)| d.to_digit(radix)) else {
                        return Err(SyntaxError::Escape);
                    };
                    code = code.saturating_mul(radix).saturating_add(d);
                }
                // `\x` and octal escapes are bytes; only ASCII ones make valid UTF-8 on their own.
                let byte_escape = e == 'x' || radix == 8;
                match char::from_u32(code) {
                    Some(ch) if !byte_escape || code < 0x80 => out.push(ch),
                    _ if byte_escape && code <= 0xff => out.push(char::REPLACEMENT_CHARACTER),
                    _ => return Err(SyntaxError::Escape),
                }
            }
            c => out.push(c),
        }
    }
    Err(SyntaxError::UnterminatedString)
}

/// Parses an integer as Go's `strconv.ParseInt(s, 0, 64)`: sign, `0x`/`0o`/`0b`/leading-0 octal.
fn parse_go_int(text: &str) -> Result<i64, SyntaxError> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    let digits = digits.replace('_', "");
    if digits.contains(['.', 'e', 'p']) && radix != 16 || digits.contains('.') {
        return Err(SyntaxError::Float);
    }
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(SyntaxError::Number(text.to_owned()));
    }
    let overflow = || SyntaxError::Overflow(text.to_owned());
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|_| overflow())?;
    let value = if neg { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.ok_or_else(overflow)
}

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    /// Parses commands separated by `|` up to the action's end, or up to `)` when `in_paren`.
    fn pipeline(&mut self, in_paren: bool) -> Result<Pipeline, Fault> {
        let mut commands: Vec<Command> = Vec::new();
        let mut operands: Vec<Operand> = Vec::new();
        loop {
            let Some(token) = self.toks.get(self.i) else {
                let pos = self.toks.last().map_or(0, |t| t.pos);
                return Err(Fault::parse(pos, "unclosed action"));
            };
            self.i += 1;
            let pos = token.pos;
            let kind = match &token.tok {
                Tok::Pipe | Tok::Close | Tok::RParen => {
                    let ends = match token.tok {
                        Tok::Pipe => false,
                        Tok::Close if in_paren => return Err(Fault::parse(pos, "unclosed left paren")),
                        Tok::RParen if !in_paren => {
                            return Err(Fault::parse(pos, "unexpected \")\" in command"))
                        }
                        _ => true,
                    };
                    if operands.is_empty() {
                        if !ends {
                            return Err(Fault::parse(pos, "unexpected \"|\" in command"));
                        }
                        if commands.is_empty() {
                            return Err(Fault::parse(pos, "missing value for command"));
                        }
                        // Go accepts a trailing `|` before the end of the action.
                    } else {
                        let stage = commands.len() + 1;
                        if stage > 1 && operands[0].kind.is_literal() {
                            let msg = format!("non executable command in pipeline stage {stage}");
                            return Err(Fault::parse(operands[0].pos, msg));
                        }
                        if stage > PIPELINE_COMMANDS_MAX {
                            let msg = format!("more than {PIPELINE_COMMANDS_MAX} commands in a pipeline");
                            return Err(Fault::parse(operands[0].pos, msg));
                        }
                        commands.push(Command { operands: std::mem::take(&mut operands) });
                    }
                    if ends {
                        return Ok(Pipeline { commands });
                    }
                    continue;
                }
                Tok::LParen => {
                    if self.depth >= PAREN_DEPTH_MAX {
                        return Err(Fault::parse(
                            pos,
                            format!("parentheses nested deeper than {PAREN_DEPTH_MAX}"),
                        ));
                    }
                    self.depth += 1;
                    let inner = self.pipeline(true)?;
                    self.depth -= 1;
                    OperandKind::Pipe(inner)
                }
                Tok::Str(value, text) => OperandKind::Str(value.clone(), text.clone()),
                Tok::Int(value, text) => OperandKind::Int(*value, text.clone()),
                Tok::Bool(b) => OperandKind::Bool(*b),
                Tok::Dot => OperandKind::Dot,
                Tok::Ident(word) => OperandKind::Func(Func::resolve(word).map_err(|m| Fault::parse(pos, m))?),
            };
            if operands.len() >= OPERANDS_MAX {
                return Err(Fault::parse(pos, format!("more than {OPERANDS_MAX} arguments in a command")));
            }
            operands.push(Operand { pos, kind });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Functions.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    GetAllInterfaces,
    GetDefaultInterfaces,
    GetPrivateInterfaces,
    GetPublicInterfaces,
    GetPrivateIp,
    GetPrivateIps,
    GetPublicIp,
    GetPublicIps,
    GetInterfaceIp,
    GetInterfaceIps,
    Include,
    Exclude,
    Sort,
    Unique,
    Limit,
    Offset,
    Math,
    Attr,
    Join,
}

/// The type a function parameter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Str,
    Uint,
    Int,
    List,
    /// `attr` takes a list or (in Go) a single address, and reports other types itself.
    Any,
}

impl Func {
    const ALL: [Func; 19] = [
        Func::GetAllInterfaces,
        Func::GetDefaultInterfaces,
        Func::GetPrivateInterfaces,
        Func::GetPublicInterfaces,
        Func::GetPrivateIp,
        Func::GetPrivateIps,
        Func::GetPublicIp,
        Func::GetPublicIps,
        Func::GetInterfaceIp,
        Func::GetInterfaceIps,
        Func::Include,
        Func::Exclude,
        Func::Sort,
        Func::Unique,
        Func::Limit,
        Func::Offset,
        Func::Math,
        Func::Attr,
        Func::Join,
    ];

    fn resolve(word: &str) -> Result<Func, SyntaxError> {
        if let Some(f) = Func::ALL.into_iter().find(|f| f.name() == word) {
            return Ok(f);
        }
        const CONTROL: [&str; 11] =
            ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"];
        const GO_BUILTINS: [&str; 19] = [
            "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println",
            "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
        ];
        if CONTROL.contains(&word) {
            Err(SyntaxError::Control(word.to_owned()))
        } else if GO_BUILTINS.contains(&word) {
            Err(SyntaxError::Builtin(word.to_owned()))
        } else {
            Err(SyntaxError::Undefined(word.to_owned()))
        }
    }

    fn name(self) -> &'static str {
        match self {
            Func::GetAllInterfaces => "GetAllInterfaces",
            Func::GetDefaultInterfaces => "GetDefaultInterfaces",
            Func::GetPrivateInterfaces => "GetPrivateInterfaces",
            Func::GetPublicInterfaces => "GetPublicInterfaces",
            Func::GetPrivateIp => "GetPrivateIP",
            Func::GetPrivateIps => "GetPrivateIPs",
            Func::GetPublicIp => "GetPublicIP",
            Func::GetPublicIps => "GetPublicIPs",
            Func::GetInterfaceIp => "GetInterfaceIP",
            Func::GetInterfaceIps => "GetInterfaceIPs",
            Func::Include => "include",
            Func::Exclude => "exclude",
            Func::Sort => "sort",
            Func::Unique => "unique",
            Func::Limit => "limit",
            Func::Offset => "offset",
            Func::Math => "math",
            Func::Attr => "attr",
            Func::Join => "join",
        }
    }

    fn params(self) -> &'static [Param] {
        use Param::*;
        match self {
            Func::GetAllInterfaces
            | Func::GetDefaultInterfaces
            | Func::GetPrivateInterfaces
            | Func::GetPublicInterfaces
            | Func::GetPrivateIp
            | Func::GetPrivateIps
            | Func::GetPublicIp
            | Func::GetPublicIps => &[],
            Func::GetInterfaceIp | Func::GetInterfaceIps => &[Str],
            Func::Include | Func::Exclude | Func::Math | Func::Join => &[Str, Str, List],
            Func::Sort | Func::Unique => &[Str, List],
            Func::Limit => &[Uint, List],
            Func::Offset => &[Int, List],
            Func::Attr => &[Str, Any],
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<IfAddr>),
}

impl Value {
    /// The Go type name, for error messages.
    fn go_type(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "int",
            Value::Bool(_) => "bool",
            Value::List(_) => "sockaddr.IfAddrs",
        }
    }
}

/// Evaluates parsed pipelines against one interface list.
struct Eval<'a> {
    all: &'a [IfAddr],
    /// Names of the interfaces holding the default route (go-sockaddr matches by name).
    default_names: BTreeSet<&'a str>,
}

impl<'a> Eval<'a> {
    fn new(all: &'a [IfAddr]) -> Eval<'a> {
        let default_names = all.iter().filter(|a| a.default_route).map(|a| a.name.as_str()).collect();
        Eval { all, default_names }
    }

    fn pipeline(&self, p: &Pipeline) -> Result<Value, Fault> {
        let mut piped: Option<Value> = None;
        for cmd in &p.commands {
            piped = Some(self.command(cmd, piped.take())?);
        }
        piped.ok_or_else(|| Fault::parse(p.pos(), "missing value for command"))
    }

    fn command(&self, cmd: &Command, piped: Option<Value>) -> Result<Value, Fault> {
        let Some(head) = cmd.operands.first() else {
            return Err(Fault::parse(cmd.pos(), "missing value for command"));
        };
        match &head.kind {
            OperandKind::Func(f) => self.call(*f, head.pos, cmd, &cmd.operands[1..], piped),
            kind if cmd.operands.len() > 1 || piped.is_some() => Err(Fault {
                pos: head.pos,
                node: Some(kind.to_string()),
                msg: format!("can't give argument to non-function {kind}"),
            }),
            _ => self.operand(head),
        }
    }

    fn operand(&self, op: &Operand) -> Result<Value, Fault> {
        Ok(match &op.kind {
            OperandKind::Str(s, _) => Value::Str(s.clone()),
            OperandKind::Int(i, _) => Value::Int(*i),
            OperandKind::Bool(b) => Value::Bool(*b),
            OperandKind::Dot => Value::List(self.all.to_vec()),
            OperandKind::Pipe(p) => self.pipeline(p)?,
            OperandKind::Func(f) => {
                let cmd = Command { operands: Vec::new() };
                self.call(*f, op.pos, &cmd, &[], None)?
            }
        })
    }

    /// Calls `f` with `args` and then the piped value, checking count and types as Go does.
    fn call(
        &self,
        f: Func,
        pos: usize,
        cmd: &Command,
        args: &[Operand],
        piped: Option<Value>,
    ) -> Result<Value, Fault> {
        let params = f.params();
        let got = args.len() + usize::from(piped.is_some());
        if got != params.len() {
            let msg = format!("wrong number of args for {}: want {} got {got}", f.name(), params.len());
            return Err(Fault { pos, node: Some(f.name().to_string()), msg });
        }
        let mut values = Vec::with_capacity(params.len());
        for (op, &param) in args.iter().zip(params) {
            let value = self.operand(op)?;
            let literal = if op.kind.is_literal() { Some(op.kind.to_string()) } else { None };
            values.push(check_type(value, param, literal).map_err(|e| Fault {
                pos: op.pos,
                node: Some(op.kind.to_string()),
                msg: e.to_string(),
            })?);
        }
        if let (Some(value), Some(&param)) = (piped, params.last()) {
            let node = if cmd.operands.is_empty() { f.name().to_string() } else { cmd.to_string() };
            values.push(check_type(value, param, None).map_err(|e| Fault {
                pos,
                node: Some(node),
                msg: e.to_string(),
            })?);
        }
        self.apply(f, values).map_err(|e| {
            let node = if cmd.operands.is_empty() { f.name().to_string() } else { cmd.to_string() };
            Fault { pos, node: Some(node), msg: format!("error calling {}: {e}", f.name()) }
        })
    }

    fn apply(&self, f: Func, values: Vec<Value>) -> Result<Value, CallError> {
        use Value::{Int, List, Str};
        let out = match (f, values.as_slice()) {
            (Func::GetAllInterfaces, []) => List(self.all.to_vec()),
            (Func::GetDefaultInterfaces, []) => List(self.default_interfaces()?),
            (Func::GetPrivateInterfaces, []) => List(self.private_or_public(true)),
            (Func::GetPublicInterfaces, []) => List(self.private_or_public(false)),
            (Func::GetPrivateIp, []) => {
                Str(self.private_or_public(true).first().map(address).unwrap_or_default())
            }
            (Func::GetPublicIp, []) => {
                Str(self.private_or_public(false).first().map(address).unwrap_or_default())
            }
            (Func::GetPrivateIps, []) => Str(join_addresses(&self.ips(true))),
            (Func::GetPublicIps, []) => Str(join_addresses(&self.ips(false))),
            (Func::GetInterfaceIp, [Str(re)]) => {
                Str(self.interface_ips(re, true)?.first().map(address).unwrap_or_default())
            }
            (Func::GetInterfaceIps, [Str(re)]) => Str(join_addresses(&self.interface_ips(re, false)?)),
            (Func::Include, [Str(sel), Str(arg), List(l)]) => List(self.filter("include", sel, arg, l)?.0),
            (Func::Exclude, [Str(sel), Str(arg), List(l)]) => List(self.filter("exclude", sel, arg, l)?.1),
            (Func::Sort, [Str(keys), List(l)]) => List(self.sort_by_keys(keys, l.clone())?),
            (Func::Unique, [Str(attr), List(l)]) => List(unique(attr, l)?),
            (Func::Limit, [Int(n), List(l)]) => {
                List(l.iter().take(usize::try_from(*n).unwrap_or(usize::MAX)).cloned().collect())
            }
            (Func::Offset, [Int(n), List(l)]) => List(offset(*n, l)?),
            (Func::Math, [Str(op), Str(arg), List(l)]) => {
                List(l.iter().map(|a| math(op, arg, a)).collect::<Result<_, _>>()?)
            }
            (Func::Attr, [Str(attr), List(l)]) => Str(match l.first() {
                Some(a) => attribute(attr, a)?,
                None => String::new(),
            }),
            (Func::Attr, [Str(attr), other]) => {
                let shown = match other {
                    Str(s) => s.clone(),
                    Int(i) => i.to_string(),
                    Value::Bool(b) => b.to_string(),
                    List(_) => String::new(),
                };
                return Err(CallError::AttributeOfNonList {
                    attr: attr.clone(),
                    go_type: other.go_type(),
                    shown,
                });
            }
            (Func::Join, [Str(attr), Str(sep), List(l)]) => {
                Str(l.iter().map(|a| attribute(attr, a)).collect::<Result<Vec<_>, _>>()?.join(sep))
            }
            // SAFETY-INVARIANT: `call` checked the count and types against `params()`.
            (f, _) => return Err(CallError::Unchecked(f.name())),
        };
        Ok(out)
    }

    fn default_interfaces(&self) -> Result<Vec<IfAddr>, CallError> {
        if self.default_names.is_empty() {
            return Err(CallError::NoDefaultInterface);
        }
        Ok(self.all.iter().filter(|a| self.default_names.contains(a.name.as_str())).cloned().collect())
    }

    /// go-sockaddr's GetPrivateInterfaces / GetPublicInterfaces: forwardable, up, sorted
    /// default-first then by type then size, and inside (or outside) RFC 6890.
    fn private_or_public(&self, private: bool) -> Vec<IfAddr> {
        let candidates: Vec<IfAddr> =
            self.all.iter().filter(|a| is_forwardable(a) && a.flags.up).cloned().collect();
        let sorted = merge_sort(candidates, &|p, q| {
            self.cmp_default(p, q).then_with(|| cmp_type(p, q)).then_with(|| cmp_size(p, q))
        });
        sorted.into_iter().filter(|a| in_rfc(RFC_6890, a) == private).collect()
    }

    /// go-sockaddr's GetPrivateIPs / GetPublicIPs: every address sorted by type then size, inside
    /// RFC 6890 and forwardable (private), or outside RFC 6890 (public).
    fn ips(&self, private: bool) -> Vec<IfAddr> {
        let sorted = merge_sort(self.all.to_vec(), &|p, q| cmp_type(p, q).then_with(|| cmp_size(p, q)));
        sorted
            .into_iter()
            .filter(|a| in_rfc(RFC_6890, a) == private && (!private || is_forwardable(a)))
            .collect()
    }

    /// go-sockaddr's GetInterfaceIP(s): interfaces whose name matches `re`, sorted `+type,+size`;
    /// the singular form keeps forwardable addresses only.
    fn interface_ips(&self, re: &str, forwardable_only: bool) -> Result<Vec<IfAddr>, CallError> {
        let re = compile("name", re)?;
        let matched: Vec<IfAddr> = self
            .all
            .iter()
            .filter(|a| re.is_match(&a.name) && (!forwardable_only || is_forwardable(a)))
            .cloned()
            .collect();
        Ok(merge_sort(matched, &|p, q| cmp_type(p, q).then_with(|| cmp_size(p, q))))
    }

    /// `include`/`exclude`: returns (matched, remainder) as go-sockaddr's `IfBy*` functions do.
    fn filter(
        &self,
        verb: &'static str,
        selector: &str,
        arg: &str,
        list: &[IfAddr],
    ) -> Result<(Vec<IfAddr>, Vec<IfAddr>), CallError> {
        let mut matched = Vec::new();
        let mut rest = Vec::new();
        let mut split =
            |keep: bool, a: &IfAddr| if keep { matched.push(a.clone()) } else { rest.push(a.clone()) };
        match selector.to_lowercase().as_str() {
            "address" => {
                let re = compile("address", arg)?;
                list.iter().for_each(|a| split(re.is_match(&sockaddr_string(a)), a));
            }
            "name" => {
                let re = compile("name", arg)?;
                list.iter().for_each(|a| split(re.is_match(&a.name), a));
            }
            "port" => {
                // Interface addresses carry no port; go-sockaddr matches the regexp against "0".
                let re = compile("port", arg)?;
                list.iter().for_each(|a| split(re.is_match("0"), a));
            }
            "flag" | "flags" => {
                let test = FlagTest::parse(arg)?;
                list.iter().for_each(|a| split(test.matches(a), a));
            }
            "network" => {
                for net in arg.split('|') {
                    let cidr = parse_network(net).ok_or_else(|| CallError::Network(net.to_owned()))?;
                    list.iter().for_each(|a| split(cidr.contains(a), a));
                }
            }
            "rfc" | "rfcs" => {
                for number in arg.split('|') {
                    let nets = rfc_networks(number)
                        .map_err(|source| CallError::Rfc { number: number.to_owned(), source })?;
                    list.iter().for_each(|a| split(in_rfc(nets, a), a));
                }
            }
            "size" => {
                let size: u64 = arg.parse().map_err(|_| CallError::Size(arg.to_owned()))?;
                for a in list {
                    match a.addr {
                        IpAddr::V4(_) if size > 32 => return Err(CallError::MaskSizeIpv4(size)),
                        IpAddr::V6(_) if size > 128 => return Err(CallError::MaskSizeIpv6(size)),
                        _ => split(u64::from(a.prefix_len) == size, a),
                    }
                }
            }
            "type" => {
                let lower = arg.to_lowercase();
                let types: Vec<&str> = lower.split('|').collect();
                if let Some(bad) = types.iter().find(|t| !matches!(**t, "ip" | "ipv4" | "ipv6" | "unix")) {
                    return Err(CallError::Type { bad: (*bad).to_owned(), arg: arg.to_owned() });
                }
                for a in list {
                    for t in &types {
                        let keep = match *t {
                            "ip" => true,
                            "ipv4" => a.addr.is_ipv4(),
                            "ipv6" => a.addr.is_ipv6(),
                            _ => false,
                        };
                        split(keep, a);
                    }
                }
            }
            _ => return Err(CallError::Selector { verb, selector: selector.to_owned() }),
        }
        Ok((matched, rest))
    }

    /// `sort "k1,-k2"`.
    fn sort_by_keys(&self, keys: &str, list: Vec<IfAddr>) -> Result<Vec<IfAddr>, CallError> {
        type Cmp<'e> = Box<dyn Fn(&IfAddr, &IfAddr) -> Ordering + 'e>;
        let mut cmps: Vec<Cmp<'_>> = Vec::new();
        for clause in keys.split(',') {
            let lower = clause.trim().to_lowercase();
            let (descending, key) = match lower.as_bytes().first() {
                Some(b'-') => (true, &lower[1..]),
                Some(b'+') => (false, &lower[1..]),
                _ => (false, lower.as_str()),
            };
            let cmp: Cmp<'_> = match key {
                "address" => Box::new(cmp_address),
                "default" => Box::new(|p, q| self.cmp_default(p, q)),
                "name" => Box::new(|p: &IfAddr, q: &IfAddr| p.name.cmp(&q.name)),
                "port" => Box::new(|_, _| Ordering::Equal),
                "private" => Box::new(cmp_private),
                "size" => Box::new(cmp_size),
                "type" => Box::new(cmp_type),
                _ => return Err(CallError::SortKey(clause.to_owned())),
            };
            cmps.push(if descending { Box::new(move |p, q| cmp(p, q).reverse()) } else { cmp });
        }
        Ok(merge_sort(list, &|p, q| {
            cmps.iter().map(|c| c(p, q)).find(|o| *o != Ordering::Equal).unwrap_or(Ordering::Equal)
        }))
    }

    fn cmp_default(&self, p: &IfAddr, q: &IfAddr) -> Ordering {
        let pd = self.default_names.contains(p.name.as_str());
        let qd = self.default_names.contains(q.name.as_str());
        qd.cmp(&pd)
    }
}

/// A parameter's type check. `literal` is the source text when the argument is a literal, for
/// Go's two wordings (`expected string; found 3` vs `wrong type for value; ...`).
fn check_type(value: Value, param: Param, literal: Option<String>) -> Result<Value, TypeError> {
    let ok = match (&value, param) {
        (_, Param::Any) | (Value::Str(_), Param::Str) | (Value::Int(_), Param::Int) => true,
        (Value::List(_), Param::List) => true,
        (Value::Int(i), Param::Uint) => *i >= 0,
        _ => false,
    };
    if ok {
        return Ok(value);
    }
    let (expected, go_name) = match param {
        Param::Str => ("string", "string"),
        Param::Uint => ("unsigned integer", "uint"),
        Param::Int => ("integer", "int"),
        Param::List | Param::Any => ("sockaddr.IfAddrs", "sockaddr.IfAddrs"),
    };
    match literal {
        Some(found) if param != Param::List => Err(TypeError::Literal { expected, found }),
        _ => Err(TypeError::Value { expected: go_name, got: value.go_type() }),
    }
}

/// Compiles a selector regexp. Go's RE2 syntax is close to the regex crate's; patterns needing
/// Unicode tables this build leaves out (such as `(?i)`) are retried in ASCII mode, which suits
/// interface names and addresses.
fn compile(what: &'static str, pattern: &str) -> Result<Regex, CallError> {
    let build =
        |unicode: bool| RegexBuilder::new(pattern).unicode(unicode).size_limit(REGEX_SIZE_MAX).build();
    build(true).or_else(|first| build(false).map_err(|_| first)).map_err(|e| {
        let why =
            e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        CallError::Regexp { what, pattern: pattern.to_owned(), why }
    })
}

/// go-sockaddr's `IfByFlag`: all listed interface flags, or any listed address property.
struct FlagTest {
    check_flags: bool,
    /// Go `net.Flags` bits that must all be set.
    mask: u8,
    attrs: Vec<fn(IpAddr) -> bool>,
    forwardable: bool,
}

impl FlagTest {
    fn parse(spec: &str) -> Result<FlagTest, CallError> {
        let mut t = FlagTest { check_flags: false, mask: 0, attrs: Vec::new(), forwardable: false };
        for name in spec.to_lowercase().split('|') {
            match name {
                "broadcast" => (t.check_flags, t.mask) = (true, t.mask | GO_FLAG_BROADCAST),
                // Go clears the bit in the wanted mask, so "down" alone asks for nothing.
                "down" => (t.check_flags, t.mask) = (true, t.mask & !GO_FLAG_UP),
                "forwardable" => t.forwardable = true,
                "global unicast" => t.attrs.push(is_global_unicast),
                "interface-local multicast" => t.attrs.push(is_interface_local_multicast),
                "link-local multicast" => t.attrs.push(is_link_local_multicast),
                "link-local unicast" => t.attrs.push(is_link_local_unicast),
                "loopback" => {
                    (t.check_flags, t.mask) = (true, t.mask | GO_FLAG_LOOPBACK);
                    t.attrs.push(is_loopback);
                }
                "multicast" => {
                    (t.check_flags, t.mask) = (true, t.mask | GO_FLAG_MULTICAST);
                    t.attrs.push(is_multicast);
                }
                "point-to-point" => (t.check_flags, t.mask) = (true, t.mask | GO_FLAG_POINT_TO_POINT),
                "unspecified" => t.attrs.push(is_unspecified),
                "up" => (t.check_flags, t.mask) = (true, t.mask | GO_FLAG_UP),
                _ => return Err(CallError::Flag(name.to_owned())),
            }
        }
        Ok(t)
    }

    fn matches(&self, a: &IfAddr) -> bool {
        (self.check_flags && go_flags(&a.flags) & self.mask == self.mask)
            || self.attrs.iter().any(|f| f(a.addr))
            || (self.forwardable && is_forwardable(a))
    }
}

fn unique(attr: &str, list: &[IfAddr]) -> Result<Vec<IfAddr>, CallError> {
    let lower = attr.to_lowercase();
    let mut out: Vec<IfAddr> = Vec::new();
    let mut last = String::new();
    for a in list {
        let key = match lower.as_str() {
            "address" => sockaddr_string(a),
            "name" => a.name.clone(),
            _ => return Err(CallError::Unique(attr.to_owned())),
        };
        if last.is_empty() || last != key {
            last = key;
            out.push(a.clone());
        }
    }
    Ok(out)
}

fn offset(n: i64, list: &[IfAddr]) -> Result<Vec<IfAddr>, CallError> {
    let magnitude = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    if magnitude > list.len() {
        return Err(CallError::Offset { offset: magnitude, count: list.len() });
    }
    let start = if n < 0 { list.len() - magnitude } else { magnitude };
    Ok(list[start..].to_vec())
}

/// go-sockaddr's `IfAddrMath`.
fn math(op: &str, value: &str, a: &IfAddr) -> Result<IfAddr, CallError> {
    let (prefix_len, bits) = math_bits(op, value, a).map_err(|source| CallError::Math {
        address: sockaddr_string(a),
        interface: a.name.clone(),
        source,
    })?;
    Ok(IfAddr { addr: from_bits(bits, family_bits(a.addr)), prefix_len, ..a.clone() })
}

/// The prefix length and address bits `op` with `value` makes of `a`.
fn math_bits(op: &str, value: &str, a: &IfAddr) -> Result<(u8, u128), MathError> {
    let bits = family_bits(a.addr);
    let mask = prefix_mask(a.prefix_len, bits);
    let addr = addr_bits(a.addr);
    let parse_signed = |max_bits: u32| -> Result<i64, MathError> {
        if !value.trim_start().starts_with(['+', '-']) {
            return Err(MathError::Unsigned { op: op.to_owned() });
        }
        let parsed: Option<i64> = value.parse().ok();
        let limit = 1i128 << (max_bits - 1);
        parsed
            .filter(|v| i128::from(*v) >= -limit && i128::from(*v) < limit)
            .ok_or_else(|| MathError::NotAnInt { value: value.to_owned(), op: op.to_owned() })
    };
    Ok(match op.to_lowercase().as_str() {
        "address" if bits == 32 => {
            let i = parse_signed(33)?;
            (a.prefix_len, u128::from((addr as u32).wrapping_add(i as u32)))
        }
        "address" => {
            let i = parse_signed(64)?;
            (a.prefix_len, addr.wrapping_add(i128::from(i) as u128))
        }
        "network" if bits == 32 => {
            let i = parse_signed(33)?;
            let (net, mask32) = ((addr & mask) as u32, mask as u32);
            let wrapped = if i >= 0 { i } else { 1 + i + i64::from(!mask32) };
            (a.prefix_len, u128::from(net.wrapping_add(wrapped as u32 & !mask32)))
        }
        "network" => {
            let i = parse_signed(64)?;
            let net = addr & mask;
            if i > 0 {
                (a.prefix_len, net.wrapping_add(i as u128 & !mask))
            } else {
                let last = net | !mask;
                let back = (-i128::from(i) - 1) as u128 & !mask;
                (a.prefix_len, last.wrapping_sub(back))
            }
        }
        "mask" => {
            let n: u32 = value
                .parse()
                .map_err(|_| MathError::NotAUint { value: value.to_owned(), op: op.to_owned() })?;
            if n > bits {
                return Err(MathError::MaskLength { op: op.to_owned(), ipv4: bits == 32 });
            }
            let n = n as u8;
            (n.min(a.prefix_len), addr & prefix_mask(n, bits))
        }
        _ => return Err(MathError::Unsupported(op.to_owned())),
    })
}

/// go-sockaddr's attribute lookup for one interface address.
fn attribute(attr: &str, a: &IfAddr) -> Result<String, CallError> {
    let lower = attr.to_lowercase();
    let bits = family_bits(a.addr);
    let mask = prefix_mask(a.prefix_len, bits);
    let addr = addr_bits(a.addr);
    let net = addr & mask;
    let last = net | (!mask & full_mask(bits));
    let show = |v: u128| go_ip_string(from_bits(v, bits));
    let v4 = bits == 32;
    Ok(match lower.as_str() {
        "name" if !a.name.is_empty() => a.name.clone(),
        "flags" => go_flags_string(&a.flags),
        "address" | "host" => show(addr),
        "binary" => format!("{addr:0width$b}", width = bits as usize),
        "hex" => format!("{addr:0width$x}", width = bits as usize / 4),
        "first_usable" if v4 && a.prefix_len < 31 => show(net + 1),
        "first_usable" => show(net),
        "last_usable" if v4 && a.prefix_len < 31 => show(last - 1),
        "last_usable" => show(last),
        "mask_bits" => a.prefix_len.min(bits as u8).to_string(),
        "netmask" => show(mask),
        "network" => show(net),
        "octets" => match a.addr {
            IpAddr::V4(ip) => ip.octets().iter().map(u8::to_string).collect::<Vec<_>>().join(" "),
            IpAddr::V6(ip) => ip.octets().iter().map(u8::to_string).collect::<Vec<_>>().join(" "),
        },
        "port" => "0".to_string(),
        "broadcast" if v4 => show(last),
        "size" => match bits - u32::from(a.prefix_len.min(bits as u8)) {
            128 => "340282366920938463463374607431768211456".to_string(),
            host_bits => (1u128 << host_bits).to_string(),
        },
        "uint32" if v4 => addr.to_string(),
        "uint128" if !v4 => addr.to_string(),
        "string" => sockaddr_string(a),
        "type" => if v4 { "IPv4" } else { "IPv6" }.to_string(),
        _ => return Err(CallError::Attribute(attr.to_owned())),
    })
}

// ---------------------------------------------------------------------------------------------
// Addresses, networks and RFC tables.

/// A network in the RFC tables: family, base address bits and prefix length.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    v6: bool,
    base: u128,
    prefix: u8,
}

impl Cidr {
    /// Whether `a`'s whole network lies inside this one (go-sockaddr's `Contains`).
    fn contains(&self, a: &IfAddr) -> bool {
        let bits = if self.v6 { 128 } else { 32 };
        a.addr.is_ipv6() == self.v6
            && a.prefix_len >= self.prefix
            && addr_bits(a.addr) & prefix_mask(self.prefix, bits)
                == self.base & prefix_mask(self.prefix, bits)
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    Cidr { v6: false, base: Ipv4Addr::new(a, b, c, d).to_bits() as u128, prefix }
}

#[allow(clippy::too_many_arguments)]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, prefix: u8) -> Cidr {
    Cidr { v6: true, base: Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits(), prefix }
}

fn in_rfc(nets: &[Cidr], a: &IfAddr) -> bool {
    nets.iter().any(|n| n.contains(a))
}

fn rfc_networks(number: &str) -> Result<&'static [Cidr], RfcError> {
    let n: u64 = number.parse().map_err(|_| RfcError::NotANumber(number.to_owned()))?;
    RFCS.iter().find(|(rfc, _)| u64::from(*rfc) == n).map(|(_, nets)| *nets).ok_or(RfcError::Unknown(n))
}

/// go-sockaddr's "forwardable": outside its non-forwardable blocks taken from RFC 6890.
fn is_forwardable(a: &IfAddr) -> bool {
    !in_rfc(FORWARDING_BLACKLIST, a)
}

/// A `network` selector argument: a CIDR or a bare address (a host network).
fn parse_network(text: &str) -> Option<Cidr> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let bits = family_bits(ip) as u8;
    let prefix = prefix.unwrap_or(bits);
    (prefix <= bits).then(|| Cidr { v6: ip.is_ipv6(), base: addr_bits(ip), prefix })
}

fn family_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(v.to_bits()),
        IpAddr::V6(v) => v.to_bits(),
    }
}

fn from_bits(v: u128, bits: u32) -> IpAddr {
    if bits == 32 {
        IpAddr::V4(Ipv4Addr::from_bits(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from_bits(v))
    }
}

fn full_mask(bits: u32) -> u128 {
    u128::MAX >> (128 - bits)
}

/// The netmask of a `prefix`-bit network in a `bits`-wide family, in the low `bits` bits.
fn prefix_mask(prefix: u8, bits: u32) -> u128 {
    let prefix = u32::from(prefix).min(bits);
    let host = bits - prefix;
    full_mask(bits) & u128::MAX.checked_shl(host).unwrap_or(0)
}

/// Go's `net.IP.String()`: IPv4-mapped IPv6 addresses print as IPv4.
fn go_ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v.to_string(),
        },
        IpAddr::V4(v) => v.to_string(),
    }
}

fn address(a: &IfAddr) -> String {
    go_ip_string(a.addr)
}

fn join_addresses(list: &[IfAddr]) -> String {
    list.iter().map(address).collect::<Vec<_>>().join(" ")
}

/// go-sockaddr's `SockAddr.String()`: `addr/prefix`, or the bare address for a host network.
fn sockaddr_string(a: &IfAddr) -> String {
    let bits = family_bits(a.addr);
    if u32::from(a.prefix_len) >= bits {
        address(a)
    } else {
        format!("{}/{}", address(a), a.prefix_len)
    }
}

fn go_flags(f: &Flags) -> u8 {
    let mut bits = 0;
    for (set, bit) in [
        (f.up, GO_FLAG_UP),
        (f.broadcast, GO_FLAG_BROADCAST),
        (f.loopback, GO_FLAG_LOOPBACK),
        (f.point_to_point, GO_FLAG_POINT_TO_POINT),
        (f.multicast, GO_FLAG_MULTICAST),
    ] {
        if set {
            bits |= bit;
        }
    }
    bits
}

/// Go's `net.Flags.String()`.
fn go_flags_string(f: &Flags) -> String {
    let names: Vec<&str> = [
        (f.up, "up"),
        (f.broadcast, "broadcast"),
        (f.loopback, "loopback"),
        (f.point_to_point, "pointtopoint"),
        (f.multicast, "multicast"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

// Go's `net.IP` predicates.

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[0] == 127,
        IpAddr::V6(v) => v == Ipv6Addr::LOCALHOST,
    }
}

fn is_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[0] & 0xf0 == 0xe0,
        IpAddr::V6(v) => v.octets()[0] == 0xff,
    }
}

fn is_unspecified(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[..2] == [169, 254],
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v) => v.octets()[0] == 0xff && v.octets()[1] & 0x0f == 0x02,
    }
}

fn is_interface_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v) => v.octets()[0] == 0xff && v.octets()[1] & 0x0f == 0x01,
    }
}

fn is_global_unicast(ip: IpAddr) -> bool {
    ip != IpAddr::V4(Ipv4Addr::BROADCAST)
        && !is_unspecified(ip)
        && !is_loopback(ip)
        && !is_multicast(ip)
        && !is_link_local_unicast(ip)
}

// Sort comparators: `Less` puts the first argument first; `Equal` defers to the next key.

fn cmp_address(p: &IfAddr, q: &IfAddr) -> Ordering {
    if p.addr.is_ipv4() != q.addr.is_ipv4() {
        return Ordering::Equal;
    }
    addr_bits(p.addr).cmp(&addr_bits(q.addr))
}

fn cmp_type(p: &IfAddr, q: &IfAddr) -> Ordering {
    family_bits(p.addr).cmp(&family_bits(q.addr))
}

/// go-sockaddr compares netmasks, so a shorter prefix (a larger network) sorts first.
fn cmp_size(p: &IfAddr, q: &IfAddr) -> Ordering {
    if p.addr.is_ipv4() != q.addr.is_ipv4() {
        return Ordering::Equal;
    }
    p.prefix_len.cmp(&q.prefix_len)
}

/// RFC 6890 addresses first; across families only the first argument's membership counts.
fn cmp_private(p: &IfAddr, q: &IfAddr) -> Ordering {
    let p_in = in_rfc(RFC_6890, p);
    if p.addr.is_ipv4() != q.addr.is_ipv4() {
        return if p_in { Ordering::Less } else { Ordering::Equal };
    }
    q_before(p_in, in_rfc(RFC_6890, q))
}

fn q_before(p_in: bool, q_in: bool) -> Ordering {
    match (p_in, q_in) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// A stable merge sort. go-sockaddr's comparators are not total orders (different address
/// families compare "equal" by some keys), and std's sorts may panic on those.
fn merge_sort(mut items: Vec<IfAddr>, cmp: &dyn Fn(&IfAddr, &IfAddr) -> Ordering) -> Vec<IfAddr> {
    if items.len() <= 1 {
        return items;
    }
    let right = items.split_off(items.len() / 2);
    let left = merge_sort(items, cmp);
    let right = merge_sort(right, cmp);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_right = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => cmp(r, l) == Ordering::Less,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => return out,
        };
        out.extend(if take_right { right.next() } else { left.next() });
    }
}

// ---------------------------------------------------------------------------------------------
// Go formatting helpers.

/// Go's `%#U`-like rendering of a character for lexer errors: `U+0040 '@'`.
fn go_char(c: char) -> String {
    format!("U+{:04X} '{c}'", c as u32)
}

fn parse_uint_error(s: &str) -> String {
    let kind = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!("strconv.ParseUint: parsing {}: {kind}", muster_core::go_quote::quote(s))
}

fn parse_int_error(s: &str) -> String {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let kind = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!("strconv.ParseInt: parsing {}: {kind}", muster_core::go_quote::quote(s))
}

// ---------------------------------------------------------------------------------------------
// Constants.

/// Go's template name in go-sockaddr, which appears in every error.
const TEMPLATE_NAME: &str = "sockaddr.Parse";

/// Characters `{{-`/`-}}` trim, as Go's lexer (`spaceChars`).
const GO_SPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// Longest template accepted: config values are short, and this bounds every other cost.
const TEMPLATE_LEN_MAX: usize = 16 * 1024;

/// Most `{{ }}` actions in one template; real ones have one or two.
const ACTIONS_MAX: usize = 64;

/// Most commands in one pipeline (`a | b | c`); real ones have under ten.
const PIPELINE_COMMANDS_MAX: usize = 32;

/// Most operands in one command; go-sockaddr's functions take at most three.
const OPERANDS_MAX: usize = 16;

/// Deepest parenthesis nesting; bounds the parser's and evaluator's recursion.
const PAREN_DEPTH_MAX: usize = 8;

/// Compiled-size cap for a selector regexp, well above any interface-name pattern.
const REGEX_SIZE_MAX: usize = 1 << 20;

/// Go's `net.Flags` bit order, which `include "flag"` masks against.
const GO_FLAG_UP: u8 = 1 << 0;
const GO_FLAG_BROADCAST: u8 = 1 << 1;
const GO_FLAG_LOOPBACK: u8 = 1 << 2;
const GO_FLAG_POINT_TO_POINT: u8 = 1 << 3;
const GO_FLAG_MULTICAST: u8 = 1 << 4;

/// RFC 6890 special-purpose blocks as go-sockaddr lists them (it widens 2001::/23 to /16).
const RFC_6890: &[Cidr] = &[
    v4(0, 0, 0, 0, 8),
    v4(10, 0, 0, 0, 8),
    v4(100, 64, 0, 0, 10),
    v4(127, 0, 0, 0, 8),
    v4(169, 254, 0, 0, 16),
    v4(172, 16, 0, 0, 12),
    v4(192, 0, 0, 0, 24),
    v4(192, 0, 0, 0, 29),
    v4(192, 0, 2, 0, 24),
    v4(192, 88, 99, 0, 24),
    v4(192, 168, 0, 0, 16),
    v4(198, 18, 0, 0, 15),
    v4(198, 51, 100, 0, 24),
    v4(203, 0, 113, 0, 24),
    v4(240, 0, 0, 0, 4),
    v4(255, 255, 255, 255, 32),
    v6(0, 0, 0, 0, 0, 0, 0, 1, 128),
    v6(0, 0, 0, 0, 0, 0, 0, 0, 128),
    v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96),
    v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96),
    v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64),
    v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 16),
    v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16),
    v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7),
    v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10),
];

/// go-sockaddr's non-forwardable blocks (its pseudo-RFC "ForwardingBlacklist").
const FORWARDING_BLACKLIST: &[Cidr] = &[
    v4(0, 0, 0, 0, 8),
    v4(127, 0, 0, 0, 8),
    v4(169, 254, 0, 0, 16),
    v4(192, 0, 0, 0, 24),
    v4(192, 0, 2, 0, 24),
    v4(198, 51, 100, 0, 24),
    v4(203, 0, 113, 0, 24),
    v4(240, 0, 0, 0, 4),
    v4(255, 255, 255, 255, 32),
    v6(0, 0, 0, 0, 0, 0, 0, 1, 128),
    v6(0, 0, 0, 0, 0, 0, 0, 0, 128),
    v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96),
    v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32),
    v6(0x2001, 0x10, 0, 0, 0, 0, 0, 0, 28),
    v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10),
];

/// The RFCs `include "rfc" "N"` knows, as go-sockaddr's `KnownRFCs`.
const RFCS: &[(u32, &[Cidr])] = &[
    (919, &[v4(255, 255, 255, 255, 32)]),
    (1112, &[v4(224, 0, 0, 0, 4)]),
    (1122, &[v4(0, 0, 0, 0, 8), v4(127, 0, 0, 0, 8)]),
    (1918, &[v4(10, 0, 0, 0, 8), v4(172, 16, 0, 0, 12), v4(192, 168, 0, 0, 16)]),
    (2544, &[v4(198, 18, 0, 0, 15)]),
    (2765, &[v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96)]),
    (2928, &[v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 16)]),
    (3056, &[v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16)]),
    (3068, &[v4(192, 88, 99, 0, 24), v6(0x2002, 0xc058, 0x6301, 0, 0, 0, 0, 0, 120)]),
    (3171, &[v4(224, 0, 0, 0, 4)]),
    (
        3330,
        &[
            v4(0, 0, 0, 0, 8),
            v4(10, 0, 0, 0, 8),
            v4(127, 0, 0, 0, 8),
            v4(169, 254, 0, 0, 16),
            v4(172, 16, 0, 0, 12),
            v4(192, 0, 2, 0, 24),
            v4(192, 88, 99, 0, 24),
            v4(192, 168, 0, 0, 16),
            v4(198, 18, 0, 0, 15),
            v4(224, 0, 0, 0, 4),
            v4(240, 0, 0, 0, 4),
        ],
    ),
    (3849, &[v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32)]),
    (3927, &[v4(169, 254, 0, 0, 16)]),
    (4038, &[v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96)]),
    (4193, &[v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7)]),
    (
        4291,
        &[
            v6(0, 0, 0, 0, 0, 0, 0, 0, 128),
            v6(0, 0, 0, 0, 0, 0, 0, 1, 128),
            v6(0, 0, 0, 0, 0, 0, 0, 0, 96),
            v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96),
            v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10),
            v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10),
            v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8),
        ],
    ),
    (4380, &[v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32)]),
    (4773, &[v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 23)]),
    (4843, &[v6(0x2001, 0x10, 0, 0, 0, 0, 0, 0, 28)]),
    (5180, &[v6(0x2001, 0x200, 0, 0, 0, 0, 0, 0, 48)]),
    (5735, &[v4(192, 0, 2, 0, 24), v4(198, 51, 100, 0, 24), v4(203, 0, 113, 0, 24), v4(198, 18, 0, 0, 15)]),
    (5737, &[v4(192, 0, 2, 0, 24), v4(198, 51, 100, 0, 24), v4(203, 0, 113, 0, 24)]),
    (6052, &[v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96)]),
    (6333, &[v4(192, 0, 0, 0, 29)]),
    (6598, &[v4(100, 64, 0, 0, 10)]),
    (6666, &[v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64)]),
    (6890, RFC_6890),
    (7335, &[v4(192, 0, 0, 0, 29)]),
];

#[cfg(test)]
mod tests {
    use super::*;

    const UP: Flags =
        Flags { up: true, broadcast: false, loopback: false, point_to_point: false, multicast: false };
    const LOOPBACK: Flags = Flags { loopback: true, ..UP };
    const ETHERNET: Flags = Flags { broadcast: true, multicast: true, ..UP };

    fn ifa(name: &str, index: u32, addr: &str, prefix_len: u8, flags: Flags, default_route: bool) -> IfAddr {
        let addr = addr.parse().expect("fixture address");
        IfAddr { name: name.into(), index, addr, prefix_len, flags, default_route }
    }

    /// Listed as go-sockaddr lists them: interface by interface, in index order.
    fn fixture() -> Vec<IfAddr> {
        vec![
            ifa("lo", 1, "127.0.0.1", 8, LOOPBACK, false),
            ifa("lo", 1, "::1", 128, LOOPBACK, false),
            ifa("eth0", 2, "10.0.0.5", 24, ETHERNET, true),
            ifa("eth0", 2, "fe80::1", 64, ETHERNET, true),
            ifa("eth0", 2, "2001:db8::5", 64, ETHERNET, true),
            ifa("eth1", 3, "192.168.1.9", 24, UP, false),
            ifa("docker0", 4, "172.17.0.1", 16, UP, false),
            // 203.0.113/24 is in RFC 6890 but not forwardable: neither private nor public.
            ifa("eth2", 5, "203.0.113.7", 24, UP, false),
            ifa("eth3", 6, "198.100.50.2", 24, UP, false),
        ]
    }

    const ALL: &str =
        "127.0.0.1 ::1 10.0.0.5 fe80::1 2001:db8::5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2";

    fn ok(template: &str) -> String {
        render(template, &fixture()).unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    fn err(template: &str) -> String {
        match render(template, &fixture()) {
            Ok(out) => panic!("{template}: expected an error, got {out:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn joined(pipeline: &str) -> String {
        ok(&format!("{{{{ {pipeline} | join \"address\" \" \" }}}}"))
    }

    #[test]
    fn sources() {
        assert_eq!(ok("{{ GetPrivateIP }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetPublicIP }}"), "198.100.50.2");
        assert_eq!(ok("{{ GetPrivateIPs }}"), "172.17.0.1 10.0.0.5 192.168.1.9");
        assert_eq!(ok("{{ GetPublicIPs }}"), "198.100.50.2");
        assert_eq!(joined("GetAllInterfaces"), ALL);
        assert_eq!(joined("."), ALL);
        assert_eq!(joined("GetDefaultInterfaces"), "10.0.0.5 fe80::1 2001:db8::5");
        // Default route first, then IPv4 before IPv6, then larger networks first.
        assert_eq!(joined("GetPrivateInterfaces"), "10.0.0.5 172.17.0.1 192.168.1.9");
        assert_eq!(joined("GetPublicInterfaces"), "198.100.50.2");
        assert_eq!(ok("{{ GetInterfaceIP \"eth0\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetInterfaceIP \"lo\" }}"), "");
        assert_eq!(ok("{{ GetInterfaceIP \"^eth[12]$\" }}"), "192.168.1.9");
        assert_eq!(ok("{{ GetInterfaceIP \"nothing\" }}"), "");
        assert_eq!(ok("{{ GetInterfaceIPs \"eth0\" }}"), "10.0.0.5 fe80::1 2001:db8::5");
        assert_eq!(ok("{{ GetInterfaceIPs \"lo\" }}"), "127.0.0.1 ::1");
    }

    #[test]
    fn sources_without_addresses_or_default_route() {
        let lo_only: Vec<IfAddr> = fixture().into_iter().filter(|a| a.name == "lo").collect();
        assert_eq!(render("{{ GetPrivateIP }}", &lo_only).as_deref(), Ok(""));
        assert_eq!(render("{{ GetPublicIPs }}", &lo_only).as_deref(), Ok(""));
        let e =
            render("{{ GetDefaultInterfaces | attr \"address\" }}", &lo_only).expect_err("no default route");
        assert!(
            e.to_string().ends_with("error calling GetDefaultInterfaces: no default interface found"),
            "{e}"
        );
        assert_eq!(render("{{ GetAllInterfaces | attr \"address\" }}", &[]).as_deref(), Ok(""));
    }

    #[test]
    fn consul_documentation_examples() {
        assert_eq!(
            ok("{{ GetPrivateInterfaces | exclude \"type\" \"ipv6\" | join \"address\" \" \" }}"),
            "10.0.0.5 172.17.0.1 192.168.1.9"
        );
        assert_eq!(
            ok("{{ GetAllInterfaces | include \"flags\" \"loopback\" | join \"address\" \" \" }}"),
            "127.0.0.1 ::1"
        );
        assert_eq!(
            ok(
                r#"{{ GetAllInterfaces | include "name" "^eth" | include "flags" "forwardable|up" | attr "address" }}"#
            ),
            "10.0.0.5"
        );
        assert_eq!(
            ok("{{ GetPrivateInterfaces | include \"network\" \"10.0.0.0/8\" | attr \"address\" }}"),
            "10.0.0.5"
        );
    }

    #[test]
    fn include_exclude_address_name_port() {
        assert_eq!(joined("GetAllInterfaces | include \"address\" `^192\\.`"), "192.168.1.9");
        assert_eq!(joined("GetAllInterfaces | include \"address\" \"/64$\""), "fe80::1 2001:db8::5");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"address\" \":\""),
            "127.0.0.1 10.0.0.5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | include \"name\" \"^(lo|docker0)$\""),
            "127.0.0.1 ::1 172.17.0.1"
        );
        assert_eq!(joined("GetAllInterfaces | exclude \"NAME\" \"^eth\""), "127.0.0.1 ::1 172.17.0.1");
        assert_eq!(joined("GetAllInterfaces | include \"port\" \"^0$\""), ALL);
        assert_eq!(joined("GetAllInterfaces | exclude \"port\" \"0\""), "");
        assert_eq!(joined(r#"GetAllInterfaces | include "name" `(?i)^DOCKER\d$`"#), "172.17.0.1");
        assert!(err("{{ GetAllInterfaces | include \"name\" \"(\" }}")
            .contains("unable to compile name regexp \"(\""));
    }

    #[test]
    fn include_exclude_flags() {
        let eth0 = "10.0.0.5 fe80::1 2001:db8::5";
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"broadcast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flags\" \"up|broadcast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"multicast\""), eth0);
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"link-local unicast\""), "fe80::1");
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"global unicast\""),
            "10.0.0.5 2001:db8::5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"forwardable\""),
            "10.0.0.5 192.168.1.9 172.17.0.1 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | exclude \"flag\" \"loopback\""),
            &ALL["127.0.0.1 ::1 ".len()..]
        );
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"unspecified|point-to-point\""), "");
        assert_eq!(
            joined("GetAllInterfaces | include \"flag\" \"link-local multicast|interface-local multicast\""),
            ""
        );
        // go-sockaddr clears a bit it never set, so "down" asks for nothing and keeps everything.
        assert_eq!(joined("GetAllInterfaces | include \"flag\" \"down\""), ALL);
        assert!(err("{{ GetAllInterfaces | include \"flag\" \"bogus\" }}")
            .ends_with("unknown interface flag: \"bogus\""));
    }

    #[test]
    fn include_exclude_network_rfc_size_type() {
        assert_eq!(
            joined("GetAllInterfaces | include \"network\" \"10.0.0.0/8|192.168.0.0/16\""),
            "10.0.0.5 192.168.1.9"
        );
        assert_eq!(joined("GetAllInterfaces | include \"network\" \"fe80::/10\""), "fe80::1");
        // A /16 interface network is not inside the /32 host network.
        assert_eq!(joined("GetAllInterfaces | include \"network\" \"172.17.0.1\""), "");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"network\" \"10.0.0.0/8\""),
            ALL.replace("10.0.0.5 ", "")
        );
        assert!(err("{{ GetAllInterfaces | include \"network\" \"nope\" }}")
            .contains("unable to create an IP address from \"nope\""));

        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"1918\""), "10.0.0.5 192.168.1.9 172.17.0.1");
        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"5737\""), "203.0.113.7");
        assert_eq!(joined("GetAllInterfaces | include \"rfcs\" \"3927|4291\""), "::1 fe80::1");
        assert_eq!(joined("GetAllInterfaces | include \"rfc\" \"6598\""), "");
        assert_eq!(joined("GetAllInterfaces | exclude \"rfc\" \"6890\""), "198.100.50.2");
        assert!(err("{{ GetAllInterfaces | include \"rfc\" \"1234\" }}")
            .ends_with("unable to lookup RFC number \"1234\": unsupported RFC 1234"));
        assert!(err("{{ GetAllInterfaces | include \"rfc\" \"x\" }}")
            .contains("unable to parse RFC number \"x\""));

        assert_eq!(
            joined("GetAllInterfaces | include \"size\" \"24\""),
            "10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2"
        );
        // As in go-sockaddr, a size beyond 32 fails on any IPv4 address in the list.
        assert!(err("{{ GetAllInterfaces | include \"size\" \"64\" }}")
            .ends_with("out of bounds for IPv4 address: 64"));
        assert_eq!(
            joined("GetAllInterfaces | include \"type\" \"ipv6\" | include \"size\" \"64\""),
            "fe80::1 2001:db8::5"
        );
        assert!(err("{{ GetAllInterfaces | include \"size\" \"33\" }}")
            .ends_with("mask size out of bounds for IPv4 address: 33"));

        assert_eq!(joined("GetAllInterfaces | include \"type\" \"IPv6\""), "::1 fe80::1 2001:db8::5");
        assert_eq!(
            joined("GetAllInterfaces | exclude \"type\" \"ipv6\""),
            "127.0.0.1 10.0.0.5 192.168.1.9 172.17.0.1 203.0.113.7 198.100.50.2"
        );
        assert_eq!(joined("GetAllInterfaces | include \"type\" \"ip\""), ALL);
        assert_eq!(joined("GetAllInterfaces | include \"type\" \"unix\""), "");
        assert!(err("{{ GetAllInterfaces | include \"type\" \"bogus\" }}")
            .ends_with("unsupported type \"bogus\" \"bogus\""));
    }

    #[test]
    fn unknown_selector() {
        let e = err("{{ GetAllInterfaces | include \"bogus\" \"x\" }}");
        assert_eq!(
            e,
            "unable to execute sockaddr input \"{{ GetAllInterfaces | include \\\"bogus\\\" \\\"x\\\" }}\": \
             template: sockaddr.Parse:1:22: executing \"sockaddr.Parse\" at <include \"bogus\" \"x\">: \
             error calling include: invalid include selector \"bogus\""
        );
        assert!(err("{{ GetAllInterfaces | exclude \"bogus\" \"x\" }}")
            .ends_with("invalid exclude selector \"bogus\""));
    }

    #[test]
    fn sort_orders() {
        let v4 = "GetAllInterfaces | include \"type\" \"ipv4\"";
        assert_eq!(
            joined(&format!("{v4} | sort \"address\"")),
            "10.0.0.5 127.0.0.1 172.17.0.1 192.168.1.9 198.100.50.2 203.0.113.7"
        );
        assert_eq!(
            joined(&format!("{v4} | sort \"-address\"")),
            "203.0.113.7 198.100.50.2 192.168.1.9 172.17.0.1 127.0.0.1 10.0.0.5"
        );
        assert_eq!(
            joined(&format!("{v4} | sort \"private,+address\"")),
            "10.0.0.5 127.0.0.1 172.17.0.1 192.168.1.9 203.0.113.7 198.100.50.2"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"name\""),
            "172.17.0.1 10.0.0.5 fe80::1 2001:db8::5 192.168.1.9 203.0.113.7 198.100.50.2 127.0.0.1 ::1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"-name\""),
            "127.0.0.1 ::1 198.100.50.2 203.0.113.7 192.168.1.9 10.0.0.5 fe80::1 2001:db8::5 172.17.0.1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"type,size\""),
            "127.0.0.1 172.17.0.1 10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2 fe80::1 2001:db8::5 ::1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \" -type , -size \""),
            "::1 fe80::1 2001:db8::5 10.0.0.5 192.168.1.9 203.0.113.7 198.100.50.2 172.17.0.1 127.0.0.1"
        );
        assert_eq!(
            joined("GetAllInterfaces | sort \"default,port,name\""),
            "10.0.0.5 fe80::1 2001:db8::5 172.17.0.1 192.168.1.9 203.0.113.7 198.100.50.2 127.0.0.1 ::1"
        );
        assert!(err("{{ GetAllInterfaces | sort \"bogus\" }}").ends_with("unknown sort type: \"bogus\""));
    }

    #[test]
    fn unique_limit_offset() {
        assert_eq!(
            ok("{{ GetAllInterfaces | unique \"name\" | join \"name\" \" \" }}"),
            "lo eth0 eth1 docker0 eth2 eth3"
        );
        assert_eq!(joined("GetAllInterfaces | unique \"address\""), ALL);
        assert!(err("{{ GetAllInterfaces | unique \"size\" }}")
            .ends_with("unsupported unique constraint \"size\""));
        assert_eq!(joined("GetAllInterfaces | limit 2"), "127.0.0.1 ::1");
        assert_eq!(joined("GetAllInterfaces | limit 0"), "");
        assert_eq!(joined("GetAllInterfaces | limit 100"), ALL);
        assert_eq!(joined("GetAllInterfaces | offset 7"), "203.0.113.7 198.100.50.2");
        assert_eq!(joined("GetAllInterfaces | offset -1"), "198.100.50.2");
        assert_eq!(joined("GetAllInterfaces | offset 2 | limit 1"), "10.0.0.5");
        assert!(err("{{ GetAllInterfaces | offset 10 }}")
            .ends_with("offset (10) exceeds the number of interfaces (9)"));
        assert!(err("{{ GetAllInterfaces | limit -1 }}")
            .ends_with("at <-1>: expected unsigned integer; found -1"));
        assert!(err("{{ GetAllInterfaces | limit \"1\" }}")
            .ends_with("at <\"1\">: expected unsigned integer; found \"1\""));
    }

    #[test]
    fn attributes() {
        let eth0 = |attr: &str| ok(&format!("{{{{ GetDefaultInterfaces | attr \"{attr}\" }}}}"));
        for (attr, want) in [
            ("address", "10.0.0.5"),
            ("ADDRESS", "10.0.0.5"),
            ("name", "eth0"),
            ("flags", "up|broadcast|multicast"),
            ("network", "10.0.0.0"),
            ("netmask", "255.255.255.0"),
            ("mask_bits", "24"),
            ("size", "256"),
            ("broadcast", "10.0.0.255"),
            ("first_usable", "10.0.0.1"),
            ("last_usable", "10.0.0.254"),
            ("host", "10.0.0.5"),
            ("port", "0"),
            ("type", "IPv4"),
            ("string", "10.0.0.5/24"),
            ("hex", "0a000005"),
            ("binary", "00001010000000000000000000000101"),
            ("octets", "10 0 0 5"),
            ("uint32", "167772165"),
        ] {
            assert_eq!(eth0(attr), want, "{attr}");
        }
        let v6 = |attr: &str| {
            ok(&format!("{{{{ GetAllInterfaces | include \"address\" \"db8\" | attr \"{attr}\" }}}}"))
        };
        for (attr, want) in [
            ("address", "2001:db8::5"),
            ("network", "2001:db8::"),
            ("netmask", "ffff:ffff:ffff:ffff::"),
            ("size", "18446744073709551616"),
            ("first_usable", "2001:db8::"),
            ("last_usable", "2001:db8::ffff:ffff:ffff:ffff"),
            ("type", "IPv6"),
            ("string", "2001:db8::5/64"),
            ("hex", "20010db8000000000000000000000005"),
            ("uint128", "42540766411282592856903984951653826565"),
        ] {
            assert_eq!(v6(attr), want, "{attr}");
        }
        assert_eq!(ok("{{ GetAllInterfaces | include \"name\" \"lo\" | attr \"string\" }}"), "127.0.0.1/8");
        assert_eq!(ok("{{ GetAllInterfaces | include \"type\" \"ipv6\" | attr \"string\" }}"), "::1");
        assert_eq!(ok("{{ GetAllInterfaces | include \"name\" \"none\" | attr \"address\" }}"), "");
        assert_eq!(ok("{{ GetPrivateInterfaces | join \"name\" \",\" }}"), "eth0,docker0,eth1");
        assert!(err("{{ GetDefaultInterfaces | attr \"bogus\" }}")
            .ends_with("unsupported attribute name \"bogus\""));
        assert!(err("{{ GetAllInterfaces | include \"address\" \"db8\" | attr \"broadcast\" }}")
            .contains("unsupported attribute"));
        assert!(err("{{ GetPrivateIP | attr \"address\" }}")
            .ends_with("unable to obtain attribute address from type string (10.0.0.5)"));
    }

    #[test]
    fn math() {
        let eth0 = "GetPrivateInterfaces | include \"name\" \"eth0\"";
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"address\" \"+5\" | attr \"address\" }}}}")),
            "10.0.0.10"
        );
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"address\" \"-6\" | attr \"address\" }}}}")),
            "9.255.255.255"
        );
        assert_eq!(ok(&format!("{{{{ {eth0} | math \"network\" \"+2\" | attr \"address\" }}}}")), "10.0.0.2");
        assert_eq!(
            ok(&format!("{{{{ {eth0} | math \"network\" \"-1\" | attr \"address\" }}}}")),
            "10.0.0.255"
        );
        assert_eq!(ok(&format!("{{{{ {eth0} | math \"mask\" \"16\" | attr \"string\" }}}}")), "10.0.0.0/16");
        let db8 = "GetAllInterfaces | include \"address\" \"db8\"";
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"address\" \"+1\" | attr \"address\" }}}}")),
            "2001:db8::6"
        );
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"network\" \"+1\" | attr \"address\" }}}}")),
            "2001:db8::1"
        );
        assert_eq!(
            ok(&format!("{{{{ {db8} | math \"network\" \"-1\" | attr \"address\" }}}}")),
            "2001:db8::ffff:ffff:ffff:ffff"
        );
        assert!(err(&format!("{{{{ {eth0} | math \"address\" \"5\" }}}}"))
            .ends_with("sign (+/-) is required for operation \"address\""));
        assert!(err(&format!("{{{{ {eth0} | math \"mask\" \"33\" }}}}")).contains("must be between 0 and 32"));
        assert!(err(&format!("{{{{ {eth0} | math \"bogus\" \"+1\" }}}}"))
            .ends_with("unsupported math operation: \"bogus\""));
    }

    #[test]
    fn template_syntax() {
        for plain in ["", "10.0.0.1", "abc}}", "{ {x} }", "unix:///tmp/consul.sock"] {
            assert_eq!(ok(plain), plain);
        }
        assert_eq!(ok("a {{ GetPrivateIP }} b"), "a 10.0.0.5 b");
        assert_eq!(ok("a \n {{- GetPrivateIP -}} \t b"), "a10.0.0.5b");
        assert_eq!(ok("{{/* a comment */}}c{{- /* another */ -}} d"), "cd");
        assert_eq!(ok("{{ GetInterfaceIP \"eth\\x30\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetInterfaceIP `eth0` }}"), "10.0.0.5");
        assert_eq!(ok("{{ \"tab\\there \\\"q\\\" \\\\ \\u00e9\" }}"), "tab\there \"q\" \\ é");
        assert_eq!(ok("{{ attr \"address\" (GetPrivateInterfaces) }}"), "10.0.0.5");
        assert_eq!(ok("{{ join \"address\" \" \" GetPublicInterfaces }}"), "198.100.50.2");
        assert_eq!(ok("{{ (GetPrivateInterfaces | limit 1) | attr \"address\" }}"), "10.0.0.5");
        assert_eq!(ok("{{ GetAllInterfaces | offset 0x8 | attr \"address\" }}"), "198.100.50.2");
        assert_eq!(ok("{{ 3 }} {{ -4 }} {{ \"x\" }} {{ true }}"), "3 -4 x true");
        assert_eq!(ok("{{ GetPrivateIP | }}"), "10.0.0.5");
        assert_eq!(ok("{{\n  GetPrivateInterfaces\n  | attr \"address\"\n}}"), "10.0.0.5");
        assert_eq!(ok("{{GetPrivateIP}}{{GetPublicIP}}"), "10.0.0.5198.100.50.2");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            err("{{ Foo }}"),
            "unable to parse template \"{{ Foo }}\": template: sockaddr.Parse:1: function \"Foo\" not defined"
        );
        assert_eq!(
            err("{{ GetPrivateIP"),
            "unable to parse template \"{{ GetPrivateIP\": template: sockaddr.Parse:1: unclosed action"
        );
        assert!(err("a\n{{ Foo }}").ends_with("template: sockaddr.Parse:2: function \"Foo\" not defined"));
        for (template, why) in [
            ("{{ }}", "missing value for command"),
            ("{{ | }}", "unexpected \"|\" in command"),
            ("{{ ( GetAllInterfaces }}", "unclosed left paren"),
            ("{{ GetAllInterfaces ) }}", "unexpected \")\" in command"),
            ("{{ GetAllInterfaces | \"x\" }}", "non executable command in pipeline stage 2"),
            ("{{ \"abc }}", "unterminated quoted string"),
            ("{{ `abc }}", "unterminated raw quoted string"),
            ("{{ \"a\\q\" }}", "invalid syntax"),
            ("{{ 99999999999999999999 }}", "integer overflow: \"99999999999999999999\""),
            ("{{ 1.5 }}", "floating-point numbers are not supported"),
            ("{{ 'a' }}", "character constants are not supported"),
            ("{{ range . }}x{{ end }}", "\"range\" is not supported in sockaddr templates"),
            ("{{ if true }}x{{ end }}", "\"if\" is not supported in sockaddr templates"),
            ("{{ $x := 1 }}", "variables are not supported"),
            ("{{ .Name }}", "field access is not supported"),
            ("{{ printf \"%s\" \"x\" }}", "function \"printf\" is not supported in sockaddr templates"),
            ("{{ GetPrivateIP @ }}", "unrecognized character in action: U+0040 '@'"),
            ("{{/* x }}", "unclosed comment"),
            ("{{/* x */ }}", "comment ends before closing delimiter"),
        ] {
            let e = err(template);
            assert!(e.starts_with("unable to parse template "), "{template}: {e}");
            assert!(e.ends_with(why), "{template}: {e}");
        }
    }

    #[test]
    fn execution_errors() {
        assert!(err("{{ GetInterfaceIP }}").ends_with(
            "template: sockaddr.Parse:1:3: executing \"sockaddr.Parse\" at <GetInterfaceIP>: \
             wrong number of args for GetInterfaceIP: want 1 got 0"
        ));
        assert!(err("{{ GetInterfaceIP 3 }}").ends_with(
            "template: sockaddr.Parse:1:18: executing \"sockaddr.Parse\" at <3>: expected string; found 3"
        ));
        assert!(err("{{ GetAllInterfaces | join \"a\" }}")
            .ends_with("wrong number of args for join: want 3 got 2"));
        assert!(err("{{ \"x\" \"y\" }}").ends_with("at <\"x\">: can't give argument to non-function \"x\""));
        assert!(err("{{ GetPrivateIP | limit 1 }}")
            .ends_with("wrong type for value; expected sockaddr.IfAddrs; got string"));
        let e = err("{{ GetAllInterfaces }}");
        assert!(e.starts_with("unable to execute sockaddr input \"{{ GetAllInterfaces }}\": "), "{e}");
        assert!(e.contains("cannot print a list"), "{e}");
    }

    #[test]
    fn limits() {
        let long = format!("{{{{ GetPrivateIP }}}}{}", " ".repeat(TEMPLATE_LEN_MAX));
        assert!(err(&long).contains("the limit is"));
        let many = format!("{{{{ GetAllInterfaces{} }}}}", " | limit 9".repeat(PIPELINE_COMMANDS_MAX));
        assert!(err(&many).contains("commands in a pipeline"));
        let deep = format!(
            "{{{{ {}GetPrivateIP{} }}}}",
            "(".repeat(PAREN_DEPTH_MAX + 1),
            ")".repeat(PAREN_DEPTH_MAX + 1)
        );
        assert!(err(&deep).contains("nested deeper"));
        let shallow =
            format!("{{{{ {}GetPrivateIP{} }}}}", "(".repeat(PAREN_DEPTH_MAX), ")".repeat(PAREN_DEPTH_MAX));
        assert_eq!(ok(&shallow), "10.0.0.5");
        assert!(err(&"{{ 1 }}".repeat(ACTIONS_MAX + 1)).contains("actions"));
    }

    /// Every prefix of every template above, plus a few mutations, either renders or errors.
    #[test]
    fn truncated_and_mutated_templates_never_panic() {
        let seeds = [
            r#"{{ GetAllInterfaces | include "name" "^eth" | include "flags" "forwardable|up" | attr "address" }}"#,
            "{{- /* c */ -}} {{ (GetPrivateInterfaces | sort \"-size,name\") | math \"network\" \"-1\" | join `a` \"\\x41\\u00e9\" -}}",
            r#"{{ GetAllInterfaces | offset -2 | limit 0x1 | unique "name" | exclude "rfc" "6890|1918" | attr "octets" }}"#,
            r#"{{ attr "address" (GetAllInterfaces | include "network" "::/0|0.0.0.0/0") }} {{ GetInterfaceIPs "é" }}"#,
        ];
        let interfaces = fixture();
        for seed in seeds {
            for (i, _) in seed.char_indices() {
                let _ = render(&seed[..i], &interfaces);
                let _ = render(&seed[i..], &interfaces);
                for insert in ["}}", "{{", "\"", "(", ")", "|", "-", "`", " -}}"] {
                    let mutated = format!("{}{insert}{}", &seed[..i], &seed[i..]);
                    let _ = render(&mutated, &interfaces);
                }
            }
        }
    }

    #[test]
    fn odd_interface_values_do_not_panic() {
        let odd = vec![
            ifa("x", 0, "0.0.0.0", 0, Flags::default(), true),
            ifa("y", 0, "::", 0, Flags::default(), false),
            ifa("z", 0, "255.255.255.255", 200, Flags::default(), false),
            ifa("w", 0, "::ffff:1.2.3.4", 255, Flags::default(), false),
        ];
        for attr in [
            "address",
            "size",
            "network",
            "netmask",
            "first_usable",
            "last_usable",
            "broadcast",
            "string",
            "uint128",
        ] {
            let _ = render(&format!("{{{{ GetAllInterfaces | join \"{attr}\" \" \" }}}}"), &odd);
        }
        for op in [
            "address \"+1\"",
            "address \"-1\"",
            "network \"+1\"",
            "network \"-1\"",
            "network \"-0\"",
            "mask \"0\"",
        ] {
            let _ = render(&format!("{{{{ GetAllInterfaces | math {op} | join \"string\" \" \" }}}}"), &odd);
        }
        assert_eq!(render("{{ GetAllInterfaces | attr \"size\" }}", &odd).as_deref(), Ok("4294967296"));
        assert_eq!(
            render("{{ GetAllInterfaces | offset 1 | attr \"size\" }}", &odd).as_deref(),
            Ok("340282366920938463463374607431768211456")
        );
        assert_eq!(
            render("{{ GetAllInterfaces | offset 3 | attr \"address\" }}", &odd).as_deref(),
            Ok("1.2.3.4")
        );
        let _ = render(
            r#"{{ GetPrivateIPs }} {{ GetPublicIPs }} {{ GetPrivateIP }} {{ GetDefaultInterfaces | sort "private,address,default" | join "address" " " }}"#,
            &odd,
        );
    }

    #[test]
    fn system_interfaces_include_loopback() {
        let interfaces = system_interfaces().expect("list interfaces");
        assert!(interfaces.iter().any(|a| a.addr.is_loopback()), "{interfaces:?}");
        assert!(interfaces.windows(2).all(|w| w[0].index <= w[1].index));
        assert!(render(
            "{{ GetAllInterfaces | include \"flag\" \"loopback\" | attr \"address\" }}",
            &interfaces
        )
        .is_ok_and(|a| a.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())));
    }
}
