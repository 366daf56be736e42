//! The pod-address placeholder of `request.host` (see `shared/conformance/README.md`,
//! "Placeholders"): `{pod-ip:<app>-<version>}[:<port>]` names the first pod of the mesh
//! namespace `gateway-conformance-mesh` with labels `app=<app>,version=<version>`.
//!
//! Ambit's own cases (`tests/conformance/`) add one: `{unique}` in a request header
//! value is replaced by a value no other request of the run carries, so that a case
//! counting requests per key on the echo server (`x-echo-fail-key`) starts afresh on
//! every attempt.

use std::net::IpAddr;

use anyhow::{bail, Result};

use crate::bed::TestBed;

/// The namespace whose pods a placeholder names.
pub const POD_IP_NAMESPACE: &str = "gateway-conformance-mesh";

const OPEN: &str = "{pod-ip:";

/// The header-value placeholder for a value unique to each request.
pub const UNIQUE: &str = "{unique}";

/// `value` with every `{unique}` replaced by a value unique to this call (within the
/// process; the process id and start time keep runs apart).
pub fn with_unique(value: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static STARTED: std::sync::LazyLock<u128> = std::sync::LazyLock::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    });
    if !value.contains(UNIQUE) {
        return value.to_owned();
    }
    let token = format!("{}-{}-{}", std::process::id(), *STARTED, NEXT.fetch_add(1, Ordering::Relaxed));
    value.replace(UNIQUE, &token)
}

/// The pod a placeholder names: its `app` and `version` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub app: String,
    pub version: String,
}

impl PodRef {
    /// The label selector of the named pod.
    pub fn labels(&self) -> [(&str, &str); 2] {
        [("app", self.app.as_str()), ("version", self.version.as_str())]
    }
}

/// A parsed `request.host`: a placeholder with its optional port suffix, or `None` when
/// the host has no placeholder (it is then dialled as written).
fn parse(host: &str) -> Result<Option<(PodRef, &str)>> {
    let Some(rest) = host.strip_prefix(OPEN) else {
        if host.contains(OPEN) {
            bail!("request.host {host:?}: a pod-ip placeholder must start the host");
        }
        return Ok(None);
    };
    let Some((name, suffix)) = rest.split_once('}') else { bail!("request.host {host:?}: unterminated pod-ip placeholder") };
    let Some((app, version)) = name.split_once('-') else {
        bail!("request.host {host:?}: the placeholder must name <app>-<version>")
    };
    if app.is_empty() || version.is_empty() {
        bail!("request.host {host:?}: empty app or version in the placeholder");
    }
    if !suffix.is_empty() && !valid_port_suffix(suffix) {
        bail!("request.host {host:?}: after the placeholder only :<port> may follow");
    }
    Ok(Some((PodRef { app: app.into(), version: version.into() }, suffix)))
}

fn valid_port_suffix(suffix: &str) -> bool {
    suffix.strip_prefix(':').is_some_and(|port| port.parse::<u16>().is_ok())
}

/// The pod a host's placeholder names, if it has one.
pub fn pod_ref(host: &str) -> Result<Option<PodRef>> {
    Ok(parse(host)?.map(|(pod, _)| pod))
}

/// `host` with its placeholder replaced by the address `lookup` gives for the named pod;
/// an IPv6 address is bracketed (as upstream's `Ipv6SafeHost`). A host without a
/// placeholder is returned unchanged.
pub fn resolve_host(host: &str, lookup: impl FnOnce(&PodRef) -> Result<IpAddr>) -> Result<String> {
    let Some((pod, suffix)) = parse(host)? else { return Ok(host.to_owned()) };
    let address = match lookup(&pod)? {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    Ok(format!("{address}{suffix}"))
}

/// [`resolve_host`] against a bed: the placeholder becomes the named pod's IPv4 address.
pub fn resolve_in_bed(bed: &TestBed, host: &str) -> Result<String> {
    resolve_host(host, |pod| Ok(IpAddr::V4(bed.first_pod(POD_IP_NAMESPACE, &pod.labels())?.ipv4)))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn unique_values_differ_per_call_and_plain_values_stay() {
        let a = with_unique("retry-{unique}");
        let b = with_unique("retry-{unique}");
        assert!(a.starts_with("retry-") && !a.contains(UNIQUE), "{a}");
        assert_ne!(a, b);
        assert_eq!(with_unique("plain"), "plain");
    }

    fn v4(_: &PodRef) -> Result<IpAddr> {
        Ok(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 7)))
    }

    #[test]
    fn a_plain_host_is_unchanged() {
        assert_eq!(resolve_host("echo-v1.gateway-conformance-mesh:8080", v4).unwrap(), "echo-v1.gateway-conformance-mesh:8080");
        assert_eq!(pod_ref("echo").unwrap(), None);
    }

    #[test]
    fn the_placeholder_names_app_and_version() {
        let pod = pod_ref("{pod-ip:echo-v2}:8080").unwrap().unwrap();
        assert_eq!(pod, PodRef { app: "echo".into(), version: "v2".into() });
        assert_eq!(pod.labels(), [("app", "echo"), ("version", "v2")]);
    }

    #[test]
    fn ipv4_with_and_without_port() {
        assert_eq!(resolve_host("{pod-ip:echo-v2}", v4).unwrap(), "10.244.0.7");
        assert_eq!(resolve_host("{pod-ip:echo-v2}:8080", v4).unwrap(), "10.244.0.7:8080");
    }

    #[test]
    fn ipv6_is_bracketed() {
        let v6 = |_: &PodRef| Ok(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)));
        assert_eq!(resolve_host("{pod-ip:echo-v1}:80", v6).unwrap(), "[fd00::7]:80");
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        for host in ["{pod-ip:echo-v2", "{pod-ip:echo}", "{pod-ip:-v2}", "{pod-ip:echo-v2}x", "{pod-ip:echo-v2}:http", "a{pod-ip:echo-v2}"] {
            assert!(resolve_host(host, v4).is_err(), "{host} should be rejected");
        }
    }

    #[test]
    fn lookup_errors_propagate() {
        let missing = |pod: &PodRef| -> Result<IpAddr> { bail!("no pod {}-{}", pod.app, pod.version) };
        let error = resolve_host("{pod-ip:echo-v3}", missing).unwrap_err();
        assert!(format!("{error}").contains("echo-v3"));
    }
}
