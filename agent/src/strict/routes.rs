//! Finding the node-side interface of a pod: the interface of the most specific
//! (non-gateway) route to the pod's address in this network namespace's routing table
//! (`/proc/thread-self/net/route`, `/proc/thread-self/net/ipv6_route`).
//!
//! CNIs that route each pod through its own veth (Calico, Cilium, the ptp plugin, the
//! test bed) install a /32 (/128) route per pod on its host-side veth. Bridge CNIs
//! (one route for the bridge) are not supported: the route names the bridge, which the
//! guard refuses (see [`host_interface`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `RTF_GATEWAY`: the route goes through a next hop, not straight to the pod.
const RTF_GATEWAY: u32 = 0x2;
/// `RTF_REJECT` (unreachable, blackhole, prohibit routes).
const RTF_REJECT: u32 = 0x200;

/// One usable route: destination prefix and interface.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    dest: IpAddr,
    prefix: u8,
    iface: String,
}

impl Route {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.dest, ip) {
            (IpAddr::V4(d), IpAddr::V4(a)) => masked_v4(d, self.prefix) == masked_v4(a, self.prefix),
            (IpAddr::V6(d), IpAddr::V6(a)) => masked_v6(d, self.prefix) == masked_v6(a, self.prefix),
            _ => false,
        }
    }
}

fn masked_v4(a: Ipv4Addr, prefix: u8) -> u32 {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    u32::from(a) & mask
}

fn masked_v6(a: Ipv6Addr, prefix: u8) -> u128 {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
    u128::from(a) & mask
}

/// Routes of `/proc/net/route` (IPv4): hex fields, addresses in the kernel's byte order.
fn parse_v4(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, mask) = (f.first()?, f.get(1)?, f.get(3)?, f.get(7)?);
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let dest = Ipv4Addr::from(u32::from_str_radix(dest, 16).ok()?.to_ne_bytes());
            let mask = Ipv4Addr::from(u32::from_str_radix(mask, 16).ok()?.to_ne_bytes());
            let prefix = u32::from(mask).leading_ones() as u8;
            usable(flags, iface).then(|| Route { dest: IpAddr::V4(dest), prefix, iface: iface.to_string() })
        })
        .collect()
}

/// Routes of `/proc/net/ipv6_route`: destination (32 hex), prefix (hex), ..., flags, interface.
fn parse_v6(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, prefix, flags, iface) = (f.first()?, f.get(1)?, f.get(8)?, f.get(9)?);
            let dest = Ipv6Addr::from(u128::from_str_radix(dest, 16).ok()?);
            let prefix = u8::from_str_radix(prefix, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            usable(flags, iface).then(|| Route { dest: IpAddr::V6(dest), prefix, iface: iface.to_string() })
        })
        .collect()
}

fn usable(flags: u32, iface: &str) -> bool {
    flags & (RTF_GATEWAY | RTF_REJECT) == 0 && iface != "lo"
}

/// The routing table of this network namespace, read once per sync.
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads both families' tables (a missing IPv6 table means no IPv6 routes).
    pub fn read() -> std::io::Result<Self> {
        let mut routes = parse_v4(&std::fs::read_to_string("/proc/thread-self/net/route")?);
        routes.extend(parse_v6(&std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap_or_default()));
        Ok(Self { routes })
    }

    /// The node-side interface of the pod with address `ip`: the interface of the most
    /// specific route to it, which must be a host route (/32, /128) — a wider route
    /// names a bridge or an uplink, where the guard would not see only this pod's
    /// traffic.
    pub fn host_interface(&self, ip: IpAddr) -> Result<&str, String> {
        let host_prefix = if ip.is_ipv4() { 32 } else { 128 };
        match self.routes.iter().filter(|r| r.contains(ip)).max_by_key(|r| r.prefix) {
            None => Err(format!("no route to {ip} in the node's routing table")),
            Some(r) if r.prefix != host_prefix => Err(format!(
                "the route to {ip} is {}/{} via {} (not a per-pod host route; bridge CNIs are not supported)",
                r.dest, r.prefix, r.iface
            )),
            Some(r) => Ok(r.iface.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
vp2\t0200F40A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n\
eth0\t0020F40A\t0200000A\t0003\t0\t0\t0\t00E0FFFF\t0\t0\t0\n\
lo\t0000600A\t00000000\t0201\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    const V6: &str = "fd440000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001      vp2\n\
fd770000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
fd770000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n";

    fn table() -> RouteTable {
        let mut routes = parse_v4(V4);
        routes.extend(parse_v6(V6));
        RouteTable { routes }
    }

    #[test]
    fn finds_the_per_pod_veth_of_both_families() {
        let t = table();
        assert_eq!(t.host_interface("10.244.0.2".parse().unwrap()), Ok("vp2"));
        assert_eq!(t.host_interface("fd44::2".parse().unwrap()), Ok("vp2"));
    }

    #[test]
    fn refuses_gateways_wider_routes_and_missing_routes() {
        let t = table();
        // Another node's pod: a gateway route, not usable.
        assert!(t.host_interface("10.244.32.5".parse().unwrap()).is_err());
        // Only the /24 of eth0 covers it.
        assert!(t.host_interface("10.0.0.9".parse().unwrap()).unwrap_err().contains("not a per-pod host route"));
        assert!(t.host_interface("192.0.2.1".parse().unwrap()).unwrap_err().contains("no route"));
        // lo is never a pod's interface.
        assert!(t.host_interface("fd77::1".parse().unwrap()).is_err());
    }
}
