//! What the store keeps of an EndpointSlice: the Service it belongs to, its ports and
//! the addresses of its ready endpoints, parsed. Nothing else of it is read (zones,
//! hints, node names, hostnames, unready endpoints).

use std::net::IpAddr;
use std::num::NonZeroU16;
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};

use super::intern::intern;
use super::SERVICE_NAME_LABEL;

/// An EndpointSlice as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSlice {
    pub resource_version: Option<Box<str>>,
    /// The Service named by its `kubernetes.io/service-name` label (None: no label).
    pub service: Option<Box<str>>,
    pub ports: Box<[SlicePort]>,
    /// The IP addresses of its ready endpoints (an unset `ready` counts as ready), in
    /// order; addresses that are not IPs (FQDN slices) are left out.
    pub ready: Box<[IpAddr]>,
}

/// One port of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// Its name (never empty).
    pub name: Option<Arc<str>>,
    /// None when unset, 0 or out of range: the Service port it names gets no endpoints
    /// from this slice.
    pub port: Option<NonZeroU16>,
}

impl From<&EndpointPort> for SlicePort {
    fn from(p: &EndpointPort) -> Self {
        Self {
            name: p.name.as_deref().filter(|n| !n.is_empty()).map(intern),
            port: p.port.and_then(|p| u16::try_from(p).ok()).and_then(NonZeroU16::new),
        }
    }
}

impl From<&EndpointSlice> for StoredSlice {
    fn from(slice: &EndpointSlice) -> Self {
        let ready = slice
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()))
            .collect();
        Self {
            resource_version: slice.metadata.resource_version.as_deref().map(Into::into),
            service: slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(|s| s.as_str().into()),
            ports: slice.ports.iter().flatten().map(SlicePort::from).collect(),
            ready,
        }
    }
}

impl StoredSlice {
    /// The first port named `name` (both unnamed match when `unnamed_matches`).
    pub fn port_named(&self, name: Option<&str>, unnamed_matches: bool) -> Option<&SlicePort> {
        self.ports.iter().find(|p| p.name.as_deref() == name && (name.is_some() || unnamed_matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ready_ip_addresses_and_ports() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s-1", "labels": {"kubernetes.io/service-name": "s"}, "resourceVersion": "3"},
            "addressType": "IPv4",
            "ports": [{"name": "", "port": 8080}, {"name": "a", "port": 0}, {"name": "b", "port": 70000}],
            "endpoints": [
                {"addresses": ["10.0.0.1", "name.example"], "conditions": {"ready": true}, "nodeName": "n", "zone": "z"},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]},
                {"addresses": []}
            ]
        }))
        .unwrap();
        let s = StoredSlice::from(&slice);
        assert_eq!(s.service.as_deref(), Some("s"));
        assert_eq!(s.resource_version.as_deref(), Some("3"));
        assert_eq!(&*s.ready, ["10.0.0.1".parse::<IpAddr>().unwrap(), "10.0.0.3".parse().unwrap()]);
        assert_eq!(s.port_named(None, true).and_then(|p| p.port).map(NonZeroU16::get), Some(8080));
        assert!(s.port_named(None, false).is_none(), "an unnamed port matches only a Service's single port");
        assert_eq!(s.port_named(Some("a"), false).map(|p| p.port), Some(None));
        assert_eq!(s.port_named(Some("b"), false).map(|p| p.port), Some(None));
    }
}
