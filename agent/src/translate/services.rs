//! Services and their ready endpoints, indexed for translation.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_proxy_core::config::{AppProtocol, EndpointSet, ServiceRef};
use k8s_openapi::api::core::v1::{Service, ServicePort as K8sServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::cluster::{ClusterState, ObjectKey, SERVICE_NAME_LABEL};

/// One port of a Service, with its ready endpoints.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub port: u16,
    pub name: Option<Arc<str>>,
    pub protocol: AppProtocol,
    /// Whether the port is TCP (only TCP ports are redirected and routed).
    pub tcp: bool,
    pub endpoints: Arc<EndpointSet>,
}

/// A Service as translation sees it.
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    pub service: ServiceRef,
    /// Cluster IPs (empty for headless Services).
    pub ips: Vec<IpAddr>,
    pub ports: Vec<PortInfo>,
}

impl ServiceInfo {
    pub fn port(&self, port: u16) -> Option<&PortInfo> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Every Service by namespace/name.
#[derive(Debug, Default)]
pub struct ServiceIndex {
    pub services: BTreeMap<ObjectKey, ServiceInfo>,
}

impl ServiceIndex {
    pub fn build(state: &ClusterState, problems: &mut Vec<String>) -> Self {
        let slices = slices_by_service(state);
        let mut services = BTreeMap::new();
        for (key, svc) in &state.services {
            let of_service = slices.get(&(key.namespace.as_str(), key.name.as_str())).map(Vec::as_slice).unwrap_or_default();
            services.insert(key.clone(), service_info(key, svc, of_service, problems));
        }
        Self { services }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&ServiceInfo> {
        self.services.get(&ObjectKey::new(namespace, name))
    }
}

fn cluster_ips(key: &ObjectKey, svc: &Service, problems: &mut Vec<String>) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else { return vec![] };
    let mut raw: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
    if raw.is_empty() {
        raw.extend(spec.cluster_ip.as_deref());
    }
    let mut ips = Vec::new();
    for ip in raw {
        if ip.is_empty() || ip.eq_ignore_ascii_case("none") {
            continue;
        }
        match ip.parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => problems.push(format!("Service {key}: cluster IP {ip:?} is not an IP address")),
        }
    }
    ips
}

/// The EndpointSlices by the (namespace, Service name) they are labelled with, in one
/// pass: looking them up per Service would cost Services × slices at cluster scale.
fn slices_by_service(state: &ClusterState) -> HashMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for (key, slice) in &state.endpoint_slices {
        if let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
            by_service.entry((key.namespace.as_str(), service.as_str())).or_default().push(slice);
        }
    }
    by_service
}

fn service_info(key: &ObjectKey, svc: &Service, slices: &[&EndpointSlice], problems: &mut Vec<String>) -> ServiceInfo {
    let service = ServiceRef::new(key.namespace.as_str(), key.name.as_str());
    let ips = cluster_ips(key, svc, problems);
    let spec_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).map(Vec::as_slice).unwrap_or(&[]);
    let mut ports = Vec::new();
    for sp in spec_ports {
        let Ok(port) = u16::try_from(sp.port) else {
            problems.push(format!("Service {key}: port {} is out of range", sp.port));
            continue;
        };
        if port == 0 {
            problems.push(format!("Service {key}: port 0 is not valid"));
            continue;
        }
        let name = sp.name.as_deref().filter(|n| !n.is_empty()).map(Arc::<str>::from);
        ports.push(PortInfo {
            port,
            protocol: AppProtocol::from_app_protocol(sp.app_protocol.as_deref()),
            tcp: sp.protocol.as_deref().is_none_or(|p| p.eq_ignore_ascii_case("TCP")),
            endpoints: Arc::new(EndpointSet::new(ready_endpoints(slices, sp, spec_ports.len()))),
            name,
        });
    }
    ServiceInfo { service, ips, ports }
}

/// Ready endpoint addresses of one Service port: from each slice, the port with the same
/// name (both unnamed when the Service has a single unnamed port), times the slice's
/// ready addresses (an unset `ready` counts as ready).
fn ready_endpoints(slices: &[&EndpointSlice], sp: &K8sServicePort, service_port_count: usize) -> Vec<SocketAddr> {
    let wanted = sp.name.as_deref().filter(|n| !n.is_empty());
    let mut addrs = Vec::new();
    for slice in slices {
        let slice_ports = slice.ports.as_deref().unwrap_or(&[]);
        let target = slice_ports.iter().find(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty());
            name == wanted && (wanted.is_some() || service_port_count == 1)
        });
        let Some(port) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    addrs.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    addrs
}
