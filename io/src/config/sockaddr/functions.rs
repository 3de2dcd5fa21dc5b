//! go-sockaddr's list functions and attributes: argument type checks, the `include`/`exclude`
//! selectors' flag tests, `unique`, `offset`, `math` and `attr`.

use std::net::IpAddr;

use regex::{Regex, RegexBuilder};

use super::addr::{
    addr_bits, family_bits, from_bits, full_mask, go_flags, go_flags_string, go_ip_string, is_global_unicast,
    is_interface_local_multicast, is_link_local_multicast, is_link_local_unicast, is_loopback, is_multicast,
    is_unspecified, prefix_mask, sockaddr_string,
};
use super::error::{CallError, MathError, TypeError};
use super::eval::{Param, Value};
use super::rfc::is_forwardable;
use super::{
    IfAddr, GO_FLAG_BROADCAST, GO_FLAG_LOOPBACK, GO_FLAG_MULTICAST, GO_FLAG_POINT_TO_POINT, GO_FLAG_UP,
    REGEX_SIZE_MAX,
};

/// A parameter's type check. `literal` is the source text when the argument is a literal, for
/// Go's two wordings (`expected string; found 3` vs `wrong type for value; ...`).
pub(super) fn check_type(value: Value, param: Param, literal: Option<String>) -> Result<Value, TypeError> {
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
pub(super) fn compile(what: &'static str, pattern: &str) -> Result<Regex, CallError> {
    let build =
        |unicode: bool| RegexBuilder::new(pattern).unicode(unicode).size_limit(REGEX_SIZE_MAX).build();
    build(true).or_else(|first| build(false).map_err(|_| first)).map_err(|e| {
        let why =
            e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        CallError::Regexp { what, pattern: pattern.to_owned(), why }
    })
}

/// go-sockaddr's `IfByFlag`: all listed interface flags, or any listed address property.
pub(super) struct FlagTest {
    check_flags: bool,
    /// Go `net.Flags` bits that must all be set.
    mask: u8,
    attrs: Vec<fn(IpAddr) -> bool>,
    forwardable: bool,
}

impl FlagTest {
    pub(super) fn parse(spec: &str) -> Result<FlagTest, CallError> {
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

    pub(super) fn matches(&self, a: &IfAddr) -> bool {
        (self.check_flags && go_flags(&a.flags) & self.mask == self.mask)
            || self.attrs.iter().any(|f| f(a.addr))
            || (self.forwardable && is_forwardable(a))
    }
}

pub(super) fn unique(attr: &str, list: &[IfAddr]) -> Result<Vec<IfAddr>, CallError> {
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

pub(super) fn offset(n: i64, list: &[IfAddr]) -> Result<Vec<IfAddr>, CallError> {
    let magnitude = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    if magnitude > list.len() {
        return Err(CallError::Offset { offset: magnitude, count: list.len() });
    }
    let start = if n < 0 { list.len() - magnitude } else { magnitude };
    Ok(list[start..].to_vec())
}

/// go-sockaddr's `IfAddrMath`.
pub(super) fn math(op: &str, value: &str, a: &IfAddr) -> Result<IfAddr, CallError> {
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
pub(super) fn attribute(attr: &str, a: &IfAddr) -> Result<String, CallError> {
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
