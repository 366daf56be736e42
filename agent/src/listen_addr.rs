//! Parsing a listen address given as `IP:PORT`, where an IPv6 address may come without
//! brackets (as `$(HOST_IP):15020` expands to in a DaemonSet on an IPv6 node).

use std::net::{IpAddr, SocketAddr};

/// `127.0.0.1:15020`, `[fd00::1]:15020` or `fd00::1:15020` (the last colon separates
/// the port).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let invalid = || format!("{text:?} is not IP:PORT");
    let (ip, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_with_or_without_brackets() {
        assert_eq!(parse_listen_addr("10.0.0.1:15020").unwrap(), "10.0.0.1:15020".parse().unwrap());
        assert_eq!(parse_listen_addr("[fd00::1]:15020").unwrap(), "[fd00::1]:15020".parse().unwrap());
        assert_eq!(parse_listen_addr("fd00::1:15020").unwrap(), "[fd00::1]:15020".parse().unwrap());
        for bad in ["", "10.0.0.1", "10.0.0.1:", "host:80", "10.0.0.1:99999", "10.0.0.1,fd00::1:15020"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }
}
