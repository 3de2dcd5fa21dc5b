//! Template failures in Go's and go-sockaddr's words: syntax, type, call, RFC and math errors,
//! each at a byte position of the template.

use std::fmt;

use muster_core::go_quote::{quote, quote_ascii};

use super::TEMPLATE_NAME;

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

/// A failure at a byte position of the template. `node` is set for execution failures: Go names
/// the node that failed (`at <include "a" "b">`).
#[derive(Debug)]
pub(super) struct Fault {
    pub(super) pos: usize,
    pub(super) node: Option<String>,
    pub(super) msg: String,
}

impl Fault {
    pub(super) fn parse(pos: usize, msg: impl fmt::Display) -> Fault {
        Fault { pos, node: None, msg: msg.to_string() }
    }

    /// Go's wording: `template: NAME:LINE: msg` when parsing, and
    /// `template: NAME:LINE:COL: executing "NAME" at <node>: msg` when executing.
    pub(super) fn render(&self, template: &str) -> String {
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
pub(super) enum SyntaxError {
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
pub(super) enum TypeError {
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
pub(super) enum CallError {
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
pub(super) enum RfcError {
    /// Not an unsigned number.
    #[error("unable to parse RFC number {}: {}", quote(.0), parse_uint_error(.0))]
    NotANumber(String),
    /// A number go-sockaddr has no table for.
    #[error("unsupported RFC {0}")]
    Unknown(u64),
}

/// A `math` operation or operand that go-sockaddr's `IfAddrMath` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum MathError {
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
