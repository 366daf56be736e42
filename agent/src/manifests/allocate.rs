//! Cluster IPs for Services in manifests that were never applied to an API server.
//!
//! `check` and `explain` read manifests as a user writes them, and a Service written by
//! hand has no `clusterIP`: the API server allocates one on creation. To judge the
//! routes as a cluster would, such Services get a placeholder address from 240.0.0.0/4
//! (reserved, never routed), the way the API server would allocate one. Headless
//! Services (`clusterIP: None`) keep none. The running agent never does this: there, a
//! Service without an address is not redirected and is reported.

use std::net::Ipv4Addr;

use crate::cluster::ClusterState;

/// First placeholder address.
const PLACEHOLDER_BASE: Ipv4Addr = Ipv4Addr::new(240, 0, 0, 1);

/// Gives every non-headless Service without a cluster IP a placeholder one; returns the
/// `namespace/name = address` assignments made.
pub fn allocate_missing_cluster_ips(state: &mut ClusterState) -> Vec<String> {
    let mut next = u32::from(PLACEHOLDER_BASE);
    let mut assigned = Vec::new();
    for (key, service) in state.services.iter_mut() {
        let has_ip = service.spec.as_ref().is_some_and(|spec| {
            spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty())
                || spec.cluster_ips.as_ref().is_some_and(|ips| ips.iter().any(|ip| !ip.is_empty()))
        });
        if has_ip {
            continue;
        }
        let spec = std::sync::Arc::make_mut(service).spec.get_or_insert_with(Default::default);
        let ip = Ipv4Addr::from(next).to_string();
        next += 1;
        spec.cluster_ip = Some(ip.clone());
        spec.cluster_ips = Some(vec![ip.clone()]);
        assigned.push(format!("{key} = {ip}"));
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterObject;
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};

    fn service(name: &str, cluster_ip: Option<&str>) -> ClusterObject {
        let mut s = Service::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s.spec = Some(ServiceSpec { cluster_ip: cluster_ip.map(Into::into), ..Default::default() });
        ClusterObject::Service(s)
    }

    #[test]
    fn only_services_without_an_address_get_a_placeholder() {
        let mut state = ClusterState::new();
        state.insert(service("unset", None)).unwrap();
        state.insert(service("headless", Some("None"))).unwrap();
        state.insert(service("set", Some("10.96.0.1"))).unwrap();
        let assigned = allocate_missing_cluster_ips(&mut state);
        assert_eq!(assigned, vec!["ns/unset = 240.0.0.1".to_string()]);
        let ip = |name: &str| {
            state.services.values().find(|s| s.metadata.name.as_deref() == Some(name)).unwrap().spec.as_ref().unwrap().cluster_ip.clone()
        };
        assert_eq!(ip("headless").as_deref(), Some("None"));
        assert_eq!(ip("set").as_deref(), Some("10.96.0.1"));
    }
}
