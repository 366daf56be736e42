//! Service name resolution for clients inside pods, the way a pod's
//! `resolv.conf` would do it: a hosts file written by the bed plus the
//! Kubernetes search path `<ns>.svc.cluster.local svc.cluster.local cluster.local`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The cluster domain used by the bed.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// A parsed hosts file: fully qualified name → addresses (in file order).
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    entries: BTreeMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// Parses `/etc/hosts`-style text: `ADDRESS NAME [NAME...]`, `#` comments.
    pub fn parse(text: &str) -> Result<Hosts> {
        let mut entries: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let addr: IpAddr = words
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("hosts line {}: bad address", n + 1))?;
            for name in words {
                entries.entry(name.to_ascii_lowercase()).or_default().push(addr);
            }
        }
        Ok(Hosts { entries })
    }

    /// Reads and parses a hosts file.
    pub fn load(path: &Path) -> Result<Hosts> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading hosts file {}", path.display()))?;
        Hosts::parse(&text)
    }

    /// Renders entries as hosts-file text.
    pub fn render(entries: &[(IpAddr, String)]) -> String {
        let mut out = String::from("# written by the ambit test bed\n");
        for (addr, name) in entries {
            out.push_str(&format!("{addr} {name}\n"));
        }
        out
    }

    /// Resolves `host` as seen from a pod in `namespace`.
    ///
    /// IP literals pass through. Otherwise names with fewer than 5 dots try the
    /// search path first, then the name as given (`ndots:5`). IPv4 answers are
    /// preferred unless `prefer_ipv6`.
    pub fn resolve(&self, host: &str, namespace: &str, prefer_ipv6: bool) -> Result<IpAddr> {
        let host = host.trim_end_matches('.').trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        let lower = host.to_ascii_lowercase();
        let mut candidates = Vec::new();
        if lower.matches('.').count() < 5 {
            for suffix in [
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ] {
                candidates.push(format!("{lower}.{suffix}"));
            }
        }
        candidates.push(lower.clone());
        for name in &candidates {
            if let Some(addrs) = self.entries.get(name) {
                let pick = addrs
                    .iter()
                    .find(|a| a.is_ipv6() == prefer_ipv6)
                    .or_else(|| addrs.first());
                if let Some(a) = pick {
                    return Ok(*a);
                }
            }
        }
        bail!("cannot resolve {host:?} from namespace {namespace:?} (tried {candidates:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_resolution() {
        let h = Hosts::parse(
            "10.96.0.10 echo.mesh.svc.cluster.local\nfd96::a echo.mesh.svc.cluster.local\n10.96.0.11 other.app.svc.cluster.local\n",
        )
        .unwrap();
        let v4: IpAddr = "10.96.0.10".parse().unwrap();
        for q in ["echo", "echo.mesh", "echo.mesh.svc", "echo.mesh.svc.cluster.local", "ECHO.mesh."] {
            assert_eq!(h.resolve(q, "mesh", false).unwrap(), v4, "{q}");
        }
        assert_eq!(h.resolve("echo", "mesh", true).unwrap(), "fd96::a".parse::<IpAddr>().unwrap());
        assert!(h.resolve("echo", "app", false).is_err());
        assert_eq!(h.resolve("other.app", "mesh", false).unwrap(), "10.96.0.11".parse::<IpAddr>().unwrap());
        assert_eq!(h.resolve("10.1.2.3", "x", false).unwrap(), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(h.resolve("[fd44::2]", "x", false).unwrap(), "fd44::2".parse::<IpAddr>().unwrap());
    }
}
