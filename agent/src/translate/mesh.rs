//! The mesh's pods as tunnel destinations, and the identities this node must hold.
//!
//! A pod is a mesh destination when its namespace is enrolled, it is not opted out, it
//! does not use the host network (its address is then its node's), and it has a pod IP.
//! A pod on another node also needs its node's address (`status.hostIP(s)`): that is
//! where its node proxy accepts HBONE tunnels. Its identity is the SPIFFE ID of its
//! service account: the identity the callee's node must present (secure naming).
//!
//! This node holds one certificate per identity of its own mesh pods (host-network pods
//! included: they call out too).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ambit_proxy_core::identity::{SpiffeId, SpiffeIdError, TrustDomain};
use k8s_openapi::api::core::v1::Pod;

use super::{pod_in_mesh, NodeView};
use crate::cluster::{ClusterState, ObjectKey, StoredMeshNode};

/// One pod a tunnel can reach, as [`mesh_view`] hands it to the caller's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshPod {
    pub identity: SpiffeId,
    /// Its node's address of the pod IP's family (None: this node).
    pub node: Option<IpAddr>,
}

/// The mesh seen from one node, each destination made into the caller's `T`.
#[derive(Debug)]
pub struct MeshView<T> {
    /// Every mesh pod's IPs (both families) → its entry.
    pub destinations: HashMap<IpAddr, T>,
    /// The identities of this node's mesh pods.
    pub local_identities: BTreeSet<SpiffeId>,
    pub problems: Vec<String>,
}

/// Builds the view for `node` (None node name: every pod is local). Each destination
/// goes straight into the view's table as `entry(ip, pod)` makes it (None: left out),
/// so that at mesh scale (100,000 pods) no second table is built and copied.
/// Identities are shared between the pods that have the same one.
pub fn mesh_view<T>(
    state: &ClusterState,
    node: &NodeView<'_>,
    trust_domain: &TrustDomain,
    mut entry: impl FnMut(IpAddr, MeshPod) -> Option<T>,
) -> MeshView<T> {
    let mut view = MeshView { destinations: HashMap::with_capacity(directory_ips(state)), local_identities: BTreeSet::new(), problems: Vec::new() };
    // The IPs pods hold, and which pod holds each (the first one; a later one is reported).
    let mut claimed: HashMap<IpAddr, &ObjectKey> = HashMap::new();
    for (key, pod) in &state.pods {
        if !pod_in_mesh(state, pod) {
            continue;
        }
        let identity = match identity_of(pod, key, trust_domain) {
            Ok(id) => id,
            Err(problem) => {
                view.problems.push(problem);
                continue;
            }
        };
        let local = is_local(pod, node);
        if local {
            view.local_identities.insert(identity.clone());
        }
        if host_network(pod) {
            continue;
        }
        for (ip, pod_node) in pod_destinations(key, pod, local, &mut view.problems) {
            if let Some(first) = claimed.get(&ip) {
                view.problems.push(format!("pods {first} and {key} both claim IP {ip}: keeping {first}"));
                continue;
            }
            claimed.insert(ip, key);
            if let Some(made) = entry(ip, MeshPod { identity: identity.clone(), node: pod_node }) {
                view.destinations.insert(ip, made);
            }
        }
    }
    if let Some(this) = node.node_name {
        let mut identities = Identities::new(state, trust_domain);
        for (name, mesh_node) in state.mesh_nodes.iter().filter(|(name, _)| name.as_str() != this) {
            add_directory(&mut view, &claimed, &mut identities, name, mesh_node, &mut entry);
        }
    }
    view
}

/// How many IPs the directory lists (the table's size, give or take this node's pods).
fn directory_ips(state: &ClusterState) -> usize {
    state.mesh_nodes.values().flat_map(|n| n.workloads.iter()).map(|w| w.ips.len()).sum()
}

/// The identities of directory entries by (namespace, service account), made once
/// each; None for namespaces outside the mesh.
struct Identities<'a> {
    state: &'a ClusterState,
    trust_domain: &'a TrustDomain,
    made: HashMap<(&'a str, &'a str), Option<Result<SpiffeId, SpiffeIdError>>>,
}

impl<'a> Identities<'a> {
    fn new(state: &'a ClusterState, trust_domain: &'a TrustDomain) -> Self {
        Self { state, trust_domain, made: HashMap::new() }
    }

    fn get(&mut self, namespace: &'a str, service_account: &'a str) -> Option<&Result<SpiffeId, SpiffeIdError>> {
        let (state, trust_domain) = (self.state, self.trust_domain);
        self.made
            .entry((namespace, service_account))
            .or_insert_with(|| {
                state.namespace_enrolled(namespace).then(|| SpiffeId::new(trust_domain.clone(), namespace, service_account))
            })
            .as_ref()
    }
}

/// The pods of another node from the mesh directory (Kubernetes mode), unless this
/// node's own Pod watch already placed the address.
fn add_directory<'a, T>(
    view: &mut MeshView<T>,
    claimed: &HashMap<IpAddr, &ObjectKey>,
    identities: &mut Identities<'a>,
    node: &str,
    mesh_node: &'a StoredMeshNode,
    entry: &mut impl FnMut(IpAddr, MeshPod) -> Option<T>,
) {
    for workload in mesh_node.workloads.iter() {
        let identity = match identities.get(&workload.namespace, &workload.service_account) {
            None => continue,
            Some(Ok(id)) => id,
            Some(Err(e)) => {
                view.problems.push(format!("mesh directory of node {node}: {e}"));
                continue;
            }
        };
        for ip in workload.ips.iter().copied() {
            let Some(host) = mesh_node.address_for(ip) else { continue };
            if claimed.contains_key(&ip) || view.destinations.contains_key(&ip) {
                continue;
            }
            if let Some(made) = entry(ip, MeshPod { identity: identity.clone(), node: Some(host) }) {
                view.destinations.insert(ip, made);
            }
        }
    }
}

/// A mesh pod's IPs with its node's address of each one's family (None: this node);
/// a remote pod's IP without a node address of its family is reported and left out.
fn pod_destinations(key: &ObjectKey, pod: &Pod, local: bool, problems: &mut Vec<String>) -> Vec<(IpAddr, Option<IpAddr>)> {
    let hosts = ips(pod, |s| (s.host_ip.as_deref(), s.host_ips.as_ref().map(|v| v.iter().map(|h| h.ip.as_str()).collect())));
    let mut out = Vec::new();
    for ip in ips(pod, |s| (s.pod_ip.as_deref(), s.pod_ips.as_ref().map(|v| v.iter().map(|p| p.ip.as_str()).collect()))) {
        if local {
            out.push((ip, None));
            continue;
        }
        match hosts.iter().find(|h| h.is_ipv4() == ip.is_ipv4()) {
            Some(host) => out.push((ip, Some(*host))),
            None => problems.push(format!(
                "pod {key} is on another node but has no status.hostIP of its address family: calls to {ip} are not tunnelled"
            )),
        }
    }
    out
}

fn identity_of(pod: &Pod, key: &ObjectKey, trust_domain: &TrustDomain) -> Result<SpiffeId, String> {
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    SpiffeId::new(trust_domain.clone(), &key.namespace, account).map_err(|e| format!("pod {key}: no workload identity: {e}"))
}

pub(crate) fn is_local(pod: &Pod, node: &NodeView<'_>) -> bool {
    let theirs = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
    match (node.node_name, theirs) {
        (Some(this), Some(theirs)) => this == theirs,
        _ => true,
    }
}

pub(crate) fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The parsed IPs of a pod's status field pair (singular and plural), deduplicated.
pub(crate) fn ips(
    pod: &Pod,
    field: impl Fn(&k8s_openapi::api::core::v1::PodStatus) -> (Option<&str>, Option<Vec<&str>>),
) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return vec![] };
    let (one, many) = field(status);
    let mut out: Vec<IpAddr> = one.into_iter().chain(many.unwrap_or_default()).filter_map(|s| s.parse().ok()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(yaml: &str) -> ClusterState {
        let (mut state, mut errors) = (ClusterState::new(), Vec::new());
        crate::manifests::parse_text(std::path::Path::new("pods.yaml"), yaml).load_into(&mut state, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        state
    }

    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: here, namespace: shop, uid: u1}
spec: {nodeName: n1, serviceAccountName: catalog, containers: []}
status: {podIP: 10.244.1.2, hostIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: there, namespace: shop, uid: u2}
spec: {nodeName: n2, containers: []}
status: {podIPs: [{ip: 10.244.2.2}, {ip: "fd44::2"}], hostIPs: [{ip: 10.77.0.2}, {ip: "fd77::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lost, namespace: shop, uid: u3}
spec: {nodeName: n3, containers: []}
status: {podIP: 10.244.3.2}
---
apiVersion: v1
kind: Pod
metadata: {name: outside, namespace: other, uid: u4}
spec: {nodeName: n2, containers: []}
status: {podIP: 10.244.2.9, hostIP: 10.77.0.2}
---
apiVersion: ambit.dev/v1alpha1
kind: MeshNode
metadata: {name: n4}
spec:
  addresses: [10.77.0.4]
  workloads:
  - {namespace: shop, serviceAccount: cart, ips: [10.244.4.7]}
  - {namespace: other, serviceAccount: default, ips: [10.244.4.8]}
---
apiVersion: ambit.dev/v1alpha1
kind: MeshNode
metadata: {name: n1}
spec:
  addresses: [10.77.0.1]
  workloads:
  - {namespace: shop, serviceAccount: ghost, ips: [10.244.1.99]}
"#;

    #[test]
    fn remote_pods_are_reached_through_their_node() {
        let state = state(PODS);
        let none = |_: &str, _: Option<&str>| None;
        let view = mesh_view(&state, &NodeView { node_name: Some("n1"), cgroups: &none }, &TrustDomain::new("td").unwrap(), |_, pod| Some(pod));
        let at = |ip: &str| view.destinations.get(&ip.parse::<IpAddr>().unwrap()).cloned();
        let here = at("10.244.1.2").unwrap();
        assert_eq!((here.node, here.identity.to_string()), (None, "spiffe://td/ns/shop/sa/catalog".to_string()));
        assert_eq!(at("10.244.2.2").unwrap().node, Some("10.77.0.2".parse().unwrap()));
        assert_eq!(at("fd44::2").unwrap().node, Some("fd77::2".parse().unwrap()));
        assert_eq!(at("10.244.2.2").unwrap().identity.service_account(), "default");
        assert!(at("10.244.3.2").is_none(), "a remote pod without hostIP cannot be tunnelled to");
        assert!(view.problems.iter().any(|p| p.contains("shop/lost")), "{:?}", view.problems);
        assert!(at("10.244.2.9").is_none(), "not enrolled: not a mesh destination");
        assert_eq!(at("10.244.4.7").unwrap().node, Some("10.77.0.4".parse().unwrap()), "from the directory");
        assert_eq!(at("10.244.4.7").unwrap().identity.service_account(), "cart");
        assert!(at("10.244.4.8").is_none(), "directory entries of namespaces outside the mesh are ignored");
        assert!(at("10.244.1.99").is_none(), "this node's own directory entry is ignored: its Pod watch is authoritative");
        let local: Vec<String> = view.local_identities.iter().map(ToString::to_string).collect();
        assert_eq!(local, ["spiffe://td/ns/shop/sa/catalog"]);
    }
}
