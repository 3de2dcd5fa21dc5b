//! The RFC tables as data (go-sockaddr's `rfc.go`), the forwarding blacklist, and the network
//! membership tests over them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addr::{addr_bits, family_bits, prefix_mask};
use super::error::RfcError;
use super::IfAddr;

/// RFC 6890 special-purpose blocks as go-sockaddr lists them (it widens 2001::/23 to /16).
pub(super) const RFC_6890: &[Cidr] = &[
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

/// A network in the RFC tables: family, base address bits and prefix length.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cidr {
    v6: bool,
    base: u128,
    prefix: u8,
}

impl Cidr {
    /// Whether `a`'s whole network lies inside this one (go-sockaddr's `Contains`).
    pub(super) fn contains(&self, a: &IfAddr) -> bool {
        let bits = if self.v6 { 128 } else { 32 };
        a.addr.is_ipv6() == self.v6
            && a.prefix_len >= self.prefix
            && addr_bits(a.addr) & prefix_mask(self.prefix, bits)
                == self.base & prefix_mask(self.prefix, bits)
    }
}

pub(super) const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    Cidr { v6: false, base: Ipv4Addr::new(a, b, c, d).to_bits() as u128, prefix }
}

#[allow(clippy::too_many_arguments)]
pub(super) const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, prefix: u8) -> Cidr {
    Cidr { v6: true, base: Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits(), prefix }
}

pub(super) fn in_rfc(nets: &[Cidr], a: &IfAddr) -> bool {
    nets.iter().any(|n| n.contains(a))
}

pub(super) fn rfc_networks(number: &str) -> Result<&'static [Cidr], RfcError> {
    let n: u64 = number.parse().map_err(|_| RfcError::NotANumber(number.to_owned()))?;
    RFCS.iter().find(|(rfc, _)| u64::from(*rfc) == n).map(|(_, nets)| *nets).ok_or(RfcError::Unknown(n))
}

/// go-sockaddr's "forwardable": outside its non-forwardable blocks taken from RFC 6890.
pub(super) fn is_forwardable(a: &IfAddr) -> bool {
    !in_rfc(FORWARDING_BLACKLIST, a)
}

/// A `network` selector argument: a CIDR or a bare address (a host network).
pub(super) fn parse_network(text: &str) -> Option<Cidr> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let bits = family_bits(ip) as u8;
    let prefix = prefix.unwrap_or(bits);
    (prefix <= bits).then(|| Cidr { v6: ip.is_ipv6(), base: addr_bits(ip), prefix })
}
