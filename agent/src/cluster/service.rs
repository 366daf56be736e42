//! What the store keeps of a Service: its cluster IPs and ports, parsed, and what of
//! them could not be kept (reported at each translation, as before they were parsed
//! there).

use std::net::IpAddr;
use std::num::NonZeroU16;
use std::sync::Arc;

use ambit_proxy_core::config::AppProtocol;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use super::intern::intern;
use super::ObjectKey;

/// A Service as stored: what translation, `check` and `explain` read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredService {
    pub resource_version: Option<Box<str>>,
    pub cluster_ips: ClusterIps,
    /// The valid ports, in declaration order.
    pub ports: Box<[StoredServicePort]>,
    /// The Service declares exactly one port (valid or not): an unnamed port then takes
    /// an EndpointSlice's unnamed port.
    pub single_port: bool,
    /// Values that were dropped, in the order they were met.
    pub invalid: Box<[InvalidValue]>,
}

/// The addresses a Service was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterIps {
    /// None written (a manifest never applied to an API server).
    Unset,
    /// `clusterIP: None` and no address.
    Headless,
    /// Written; the ones that are IP addresses, without duplicates (possibly none).
    Assigned(Box<[IpAddr]>),
}

/// One valid port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredServicePort {
    pub port: NonZeroU16,
    /// Its name (never empty).
    pub name: Option<Arc<str>>,
    pub protocol: AppProtocol,
    /// Whether the port is TCP (only TCP ports are redirected and routed).
    pub tcp: bool,
}

/// A value of a Service that translation cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidValue {
    ClusterIp(Box<str>),
    PortOutOfRange(i32),
    PortZero,
}

impl InvalidValue {
    /// The problem translation reports for the Service at `key`.
    pub fn problem(&self, key: &ObjectKey) -> String {
        match self {
            InvalidValue::ClusterIp(ip) => format!("Service {key}: cluster IP {ip:?} is not an IP address"),
            InvalidValue::PortOutOfRange(port) => format!("Service {key}: port {port} is out of range"),
            InvalidValue::PortZero => format!("Service {key}: port 0 is not valid"),
        }
    }
}

impl ClusterIps {
    /// The usable addresses (none for unset and headless Services).
    pub fn addresses(&self) -> &[IpAddr] {
        match self {
            ClusterIps::Assigned(ips) => ips,
            ClusterIps::Unset | ClusterIps::Headless => &[],
        }
    }

    fn from_spec(spec: Option<&ServiceSpec>, invalid: &mut Vec<InvalidValue>) -> Self {
        let Some(spec) = spec else { return ClusterIps::Unset };
        let written = spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || spec.cluster_ips.iter().flatten().any(|ip| !ip.is_empty());
        if !written {
            return ClusterIps::Unset;
        }
        let mut raw: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
        if raw.is_empty() {
            raw.extend(spec.cluster_ip.as_deref());
        }
        let mut ips = Vec::new();
        for ip in raw.into_iter().filter(|ip| !ip.is_empty() && !ip.eq_ignore_ascii_case("none")) {
            match ip.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => invalid.push(InvalidValue::ClusterIp(ip.into())),
            }
        }
        let headless = spec.cluster_ip.as_deref().is_some_and(|ip| ip.eq_ignore_ascii_case("none"));
        if ips.is_empty() && headless {
            ClusterIps::Headless
        } else {
            ClusterIps::Assigned(ips.into())
        }
    }
}

impl StoredServicePort {
    fn from_spec(sp: &ServicePort, invalid: &mut Vec<InvalidValue>) -> Option<Self> {
        let Ok(port) = u16::try_from(sp.port) else {
            invalid.push(InvalidValue::PortOutOfRange(sp.port));
            return None;
        };
        let Some(port) = NonZeroU16::new(port) else {
            invalid.push(InvalidValue::PortZero);
            return None;
        };
        Some(Self {
            port,
            name: sp.name.as_deref().filter(|n| !n.is_empty()).map(intern),
            protocol: AppProtocol::from_app_protocol(sp.app_protocol.as_deref()),
            tcp: sp.protocol.as_deref().is_none_or(|p| p.eq_ignore_ascii_case("TCP")),
        })
    }
}

impl From<&Service> for StoredService {
    fn from(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        let mut invalid = Vec::new();
        let cluster_ips = ClusterIps::from_spec(spec, &mut invalid);
        let declared = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let ports = declared.iter().filter_map(|sp| StoredServicePort::from_spec(sp, &mut invalid)).collect();
        Self {
            resource_version: svc.metadata.resource_version.as_deref().map(Into::into),
            cluster_ips,
            ports,
            single_port: declared.len() == 1,
            invalid: invalid.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(spec: serde_json::Value) -> StoredService {
        let svc: Service = serde_json::from_value(serde_json::json!({"metadata": {"name": "s"}, "spec": spec})).unwrap();
        StoredService::from(&svc)
    }

    #[test]
    fn addresses_are_parsed_once_and_invalid_ones_kept_for_the_report() {
        let s = stored(serde_json::json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "x", "fd00::1", "10.0.0.1"]}));
        assert_eq!(s.cluster_ips.addresses(), ["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
        assert_eq!(&*s.invalid, [InvalidValue::ClusterIp("x".into())]);
        assert_eq!(s.invalid[0].problem(&ObjectKey::new("ns", "s")), "Service ns/s: cluster IP \"x\" is not an IP address");
    }

    #[test]
    fn unset_headless_and_unusable_addresses_differ() {
        assert_eq!(stored(serde_json::json!({})).cluster_ips, ClusterIps::Unset);
        assert_eq!(stored(serde_json::json!({"clusterIP": "", "clusterIPs": [""]})).cluster_ips, ClusterIps::Unset);
        assert_eq!(stored(serde_json::json!({"clusterIP": "None", "clusterIPs": ["None"]})).cluster_ips, ClusterIps::Headless);
        assert_eq!(stored(serde_json::json!({"clusterIP": "bad"})).cluster_ips, ClusterIps::Assigned([].into()));
        let none = Service::default();
        assert_eq!(StoredService::from(&none).cluster_ips, ClusterIps::Unset);
    }

    #[test]
    fn invalid_ports_are_dropped_and_counted() {
        let s = stored(serde_json::json!({"ports": [{"port": 0}, {"port": 70000}, {"name": "", "port": 80, "protocol": "udp", "appProtocol": "HTTP"}]}));
        assert_eq!(&*s.invalid, [InvalidValue::PortZero, InvalidValue::PortOutOfRange(70000)]);
        assert_eq!(s.ports.len(), 1);
        assert!(!s.single_port);
        let p = &s.ports[0];
        assert_eq!((p.port.get(), p.name.clone(), p.protocol, p.tcp), (80, None, AppProtocol::Http, false));
        assert!(stored(serde_json::json!({"ports": [{"port": 80}]})).single_port);
    }
}
