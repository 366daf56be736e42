//! Converting between std socket addresses and the maps' 16-byte forms.

use std::net::{IpAddr, SocketAddr};

use ambit_ebpf_common::{Addr, ConnKey, ServiceKey};

/// The 16-byte map form of `ip`: IPv4 becomes IPv4-mapped IPv6.
pub fn to_map_addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A map address and port as a socket address, IPv4-mapped ones as plain IPv4.
pub fn from_map_addr(addr: Addr, port: u16) -> SocketAddr {
    ambit_proxy_core::identity::canonical(SocketAddr::new(IpAddr::V6(addr.into()), port))
}

/// The `AMBIT_SERVICES` key for a VIP:port.
pub fn service_key(service: SocketAddr) -> ServiceKey {
    ServiceKey::new(to_map_addr(service.ip()), service.port())
}

/// The `AMBIT_CONNS` key for a connection the proxy accepted.
pub fn conn_key(peer: SocketAddr, local: SocketAddr) -> ConnKey {
    ConnKey {
        client_addr: to_map_addr(peer.ip()),
        proxy_addr: to_map_addr(local.ip()),
        client_port: peer.port(),
        proxy_port: local.port(),
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v4_mapped_give_the_same_key() {
        let a = conn_key("10.0.0.1:4000".parse().unwrap(), "10.55.0.1:15001".parse().unwrap());
        let b = conn_key(
            "[::ffff:10.0.0.1]:4000".parse().unwrap(),
            "[::ffff:10.55.0.1]:15001".parse().unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.client_addr, ambit_ebpf_common::v4_mapped([10, 0, 0, 1]));
    }

    #[test]
    fn map_addresses_round_trip() {
        for s in ["10.96.0.1:80", "[fd00::1]:443"] {
            let sa: SocketAddr = s.parse().unwrap();
            assert_eq!(from_map_addr(to_map_addr(sa.ip()), sa.port()), sa);
        }
    }
}
