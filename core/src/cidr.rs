//! Address ranges (`10.0.0.0/8`, `fd00::/8`), for the gossip pools' allowed sources (Consul's
//! `serf_lan_allowed_cidrs`): values only, no sockets.

use core::net::IpAddr;

/// A network: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_bits: u8,
}

/// Why a range did not parse: the text, quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before the `/` is not an IP address.
    #[error("invalid CIDR address {0:?}")]
    Address(String),
    /// The prefix is not a number of bits the address has.
    #[error("invalid CIDR prefix in {0:?}")]
    Prefix(String),
}

impl Cidr {
    /// Parses `address/bits` (an address alone is the one address), refusing a prefix longer
    /// than the address.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (address, bits) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| CidrError::Address(text.to_owned()))?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match bits {
            None => width,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= width)
                .ok_or_else(|| CidrError::Prefix(text.to_owned()))?,
        };
        Ok(Cidr { network, prefix_bits })
    }

    /// Whether `ip` is in the range (an IPv4 address never matches an IPv6 range, nor the
    /// other way round, except IPv4-mapped IPv6 addresses, which count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix_bits,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), self.prefix_bits)
            }
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_matches(a: u128, b: u128, bits: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(bits));
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_what_their_prefix_says() {
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains("10.255.1.2".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(ten.contains("::ffff:10.1.1.1".parse().unwrap()), "IPv4-mapped counts as IPv4");
        assert!(!ten.contains("fd00::1".parse().unwrap()));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(
            one.contains("192.168.1.7".parse().unwrap()) && !one.contains("192.168.1.8".parse().unwrap())
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("ten/8").is_err());
    }
}
