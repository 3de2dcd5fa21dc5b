//! Address helpers: bit arithmetic over both families, Go's address and flag formatting, Go's
//! `net.IP` predicates, and go-sockaddr's sort orders.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::rfc::{in_rfc, RFC_6890};
use super::{
    Flags, IfAddr, GO_FLAG_BROADCAST, GO_FLAG_LOOPBACK, GO_FLAG_MULTICAST, GO_FLAG_POINT_TO_POINT, GO_FLAG_UP,
};

pub(super) fn family_bits(ip: IpAddr) -> u32 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

pub(super) fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(v.to_bits()),
        IpAddr::V6(v) => v.to_bits(),
    }
}

pub(super) fn from_bits(v: u128, bits: u32) -> IpAddr {
    if bits == 32 {
        IpAddr::V4(Ipv4Addr::from_bits(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from_bits(v))
    }
}

pub(super) fn full_mask(bits: u32) -> u128 {
    u128::MAX >> (128 - bits)
}

/// The netmask of a `prefix`-bit network in a `bits`-wide family, in the low `bits` bits.
pub(super) fn prefix_mask(prefix: u8, bits: u32) -> u128 {
    let prefix = u32::from(prefix).min(bits);
    let host = bits - prefix;
    full_mask(bits) & u128::MAX.checked_shl(host).unwrap_or(0)
}

/// Go's `net.IP.String()`: IPv4-mapped IPv6 addresses print as IPv4.
pub(super) fn go_ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v.to_string(),
        },
        IpAddr::V4(v) => v.to_string(),
    }
}

pub(super) fn address(a: &IfAddr) -> String {
    go_ip_string(a.addr)
}

pub(super) fn join_addresses(list: &[IfAddr]) -> String {
    list.iter().map(address).collect::<Vec<_>>().join(" ")
}

/// go-sockaddr's `SockAddr.String()`: `addr/prefix`, or the bare address for a host network.
pub(super) fn sockaddr_string(a: &IfAddr) -> String {
    let bits = family_bits(a.addr);
    if u32::from(a.prefix_len) >= bits {
        address(a)
    } else {
        format!("{}/{}", address(a), a.prefix_len)
    }
}

pub(super) fn go_flags(f: &Flags) -> u8 {
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
pub(super) fn go_flags_string(f: &Flags) -> String {
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

pub(super) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[0] == 127,
        IpAddr::V6(v) => v == Ipv6Addr::LOCALHOST,
    }
}

pub(super) fn is_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[0] & 0xf0 == 0xe0,
        IpAddr::V6(v) => v.octets()[0] == 0xff,
    }
}

pub(super) fn is_unspecified(ip: IpAddr) -> bool {
    ip.is_unspecified()
}

pub(super) fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[..2] == [169, 254],
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub(super) fn is_link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v) => v.octets()[0] == 0xff && v.octets()[1] & 0x0f == 0x02,
    }
}

pub(super) fn is_interface_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v) => v.octets()[0] == 0xff && v.octets()[1] & 0x0f == 0x01,
    }
}

pub(super) fn is_global_unicast(ip: IpAddr) -> bool {
    ip != IpAddr::V4(Ipv4Addr::BROADCAST)
        && !is_unspecified(ip)
        && !is_loopback(ip)
        && !is_multicast(ip)
        && !is_link_local_unicast(ip)
}

// Sort comparators: `Less` puts the first argument first; `Equal` defers to the next key.

pub(super) fn cmp_address(p: &IfAddr, q: &IfAddr) -> Ordering {
    if p.addr.is_ipv4() != q.addr.is_ipv4() {
        return Ordering::Equal;
    }
    addr_bits(p.addr).cmp(&addr_bits(q.addr))
}

pub(super) fn cmp_type(p: &IfAddr, q: &IfAddr) -> Ordering {
    family_bits(p.addr).cmp(&family_bits(q.addr))
}

/// go-sockaddr compares netmasks, so a shorter prefix (a larger network) sorts first.
pub(super) fn cmp_size(p: &IfAddr, q: &IfAddr) -> Ordering {
    if p.addr.is_ipv4() != q.addr.is_ipv4() {
        return Ordering::Equal;
    }
    p.prefix_len.cmp(&q.prefix_len)
}

/// RFC 6890 addresses first; across families only the first argument's membership counts.
pub(super) fn cmp_private(p: &IfAddr, q: &IfAddr) -> Ordering {
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
pub(super) fn merge_sort(mut items: Vec<IfAddr>, cmp: &dyn Fn(&IfAddr, &IfAddr) -> Ordering) -> Vec<IfAddr> {
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
