//! Services and their ready endpoints, indexed for translation.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ambit_proxy_core::config::{AppProtocol, EndpointSet, ServiceRef};

use crate::cluster::{ClusterIps, ClusterState, ObjectKey, StoredService, StoredServicePort, StoredSlice};

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
    /// `clusterIP: None` and no address: not redirected, and not a problem.
    pub headless: bool,
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

/// The EndpointSlices by the (namespace, Service name) they are labelled with, in one
/// pass: looking them up per Service would cost Services × slices at cluster scale.
fn slices_by_service(state: &ClusterState) -> HashMap<(&str, &str), Vec<&StoredSlice>> {
    let mut by_service: HashMap<(&str, &str), Vec<&StoredSlice>> = HashMap::new();
    for (key, slice) in &state.endpoint_slices {
        if let Some(service) = slice.service.as_deref() {
            by_service.entry((key.namespace.as_str(), service)).or_default().push(slice);
        }
    }
    by_service
}

fn service_info(key: &ObjectKey, svc: &StoredService, slices: &[&StoredSlice], problems: &mut Vec<String>) -> ServiceInfo {
    problems.extend(svc.invalid.iter().map(|v| v.problem(key)));
    let ports = svc
        .ports
        .iter()
        .map(|sp| PortInfo {
            port: sp.port.get(),
            name: sp.name.clone(),
            protocol: sp.protocol,
            tcp: sp.tcp,
            endpoints: Arc::new(EndpointSet::new(ready_endpoints(slices, sp, svc.single_port))),
        })
        .collect();
    ServiceInfo {
        service: ServiceRef::new(key.namespace.as_str(), key.name.as_str()),
        ips: svc.cluster_ips.addresses().to_vec(),
        headless: svc.cluster_ips == ClusterIps::Headless,
        ports,
    }
}

/// Ready endpoint addresses of one Service port: from each slice, the port with the same
/// name (both unnamed when the Service has a single port), times the slice's ready
/// addresses.
fn ready_endpoints(slices: &[&StoredSlice], sp: &StoredServicePort, single_port: bool) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for slice in slices {
        let Some(port) = slice.port_named(sp.name.as_deref(), single_port).and_then(|p| p.port) else {
            continue;
        };
        addrs.extend(slice.ready.iter().map(|ip| SocketAddr::new(*ip, port.get())));
    }
    addrs
}
