//! This machine's interface addresses, with their flags and the default route's interface,
//! read from if-addrs, `/sys/class/net` and `/proc/net/*route` as go-sockaddr lists them.

use std::net::IpAddr;

use super::{Flags, IfAddr};

/// This machine's interfaces: if-addrs for names, addresses and netmasks; the default-route
/// interface from /proc/net/route (IPv4) and /proc/net/ipv6_route; flags from
/// `/sys/class/net/<if>/flags` (IFF_UP=0x1, BROADCAST=0x2, LOOPBACK=0x8, POINTOPOINT=0x10,
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

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::*;

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
