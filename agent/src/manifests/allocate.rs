//! Cluster IPs for Services in manifests that were never applied to an API server.
//!
//! `check` and `explain` read manifests as a user writes them, and a Service written by
//! hand has no `clusterIP`: the API server allocates one on creation. To judge the
//! routes as a cluster would, such Services get a placeholder address from 240.0.0.0/4
//! (reserved, never routed), the way the API server would allocate one. Headless
//! Services (`clusterIP: None`) keep none. The running agent never does this: there, a
//! Service without an address is not redirected and is reported.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::cluster::{ClusterIps, ClusterState};

/// First placeholder address.
const PLACEHOLDER_BASE: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 1);

/// Gives every Service without a cluster IP written (not headless) a placeholder one;
/// returns the `namespace/name = address` assignments made.
pub fn allocate_missing_cluster_ips(state: &mut ClusterState) -> Vec<String> {
    let mut assigned = Vec::new();
    let unset = state.services.make_mut().iter_mut().filter(|(_, s)| s.cluster_ips == ClusterIps::Unset);
    for (next, (key, service)) in (u32::from(PLACEHOLDER_BASE)..).zip(unset) {
        let ip = Ipv4Addr::from(next);
        Arc::make_mut(service).cluster_ips = ClusterIps::Assigned([IpAddr::V4(ip)].into());
        assigned.push(format!("{key} = {ip}"));
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterObject, ObjectKey};
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};

    fn service(name: &str, cluster_ip: Option<&str>) -> ClusterObject {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.spec = Some(ServiceSpec { cluster_ip: cluster_ip.map(Into::into), ..Default::default() });
        ClusterObject::service(s)
    }

    #[test]
    fn only_services_without_an_address_get_a_placeholder() {
        let mut state = ClusterState::new();
        state.insert(service("unset", None)).unwrap();
        state.insert(service("headless", Some("None"))).unwrap();
        state.insert(service("set", Some("10.96.0.1"))).unwrap();
        let assigned = allocate_missing_cluster_ips(&mut state);
        assert_eq!(assigned, vec!["ns/unset = 240.0.0.1".to_string()]);
        let ips = |name: &str| state.services[&ObjectKey::new("ns", name)].cluster_ips.clone();
        assert_eq!(ips("unset").addresses(), ["240.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(ips("headless"), ClusterIps::Headless);
        assert_eq!(ips("set").addresses(), ["10.96.0.1".parse::<IpAddr>().unwrap()]);
    }
}
