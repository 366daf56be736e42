//! How the proxy reaches each endpoint a request may go to: tunnelled over HBONE to
//! the endpoint's node, handed over in-process on the caller's own node, or plaintext
//! (outside the mesh). Only with the mesh on (the agent holds a certificate source);
//! without it every call is plaintext.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ambit_proxy_core::identity::{SpiffeId, TrustDomain};

use crate::cluster::{ClusterState, ObjectKey};
use crate::translate::mesh::mesh_view;
use crate::translate::NodeView;

/// How one endpoint is reached from the caller's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// Another node: HTTP/2 CONNECT over mutual TLS to `node`'s HBONE port, whose proxy
    /// must present `identity`; the caller's identity is presented.
    Hbone { node: IpAddr, identity: SpiffeId },
    /// The caller's own node: no TLS; the caller's kernel-attested identity is handed
    /// to the inbound side in process.
    SameNode { identity: SpiffeId },
    /// Not a mesh pod: plaintext from the caller's own address.
    Plaintext,
}

/// One endpoint and its wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointWire {
    pub endpoint: SocketAddr,
    pub wire: Wire,
}

/// The wire to each of `endpoints` for a caller pod on the node the manifests place it
/// on (the caller's identity in `trust_domain`).
pub fn wires(state: &ClusterState, caller: &ObjectKey, endpoints: &[SocketAddr], trust_domain: &TrustDomain) -> Vec<EndpointWire> {
    let caller_node = state.pods.get(caller).and_then(|p| p.spec.as_ref()).and_then(|s| s.node_name.as_deref());
    let no_cgroups = |_: &str, _: Option<&str>| None;
    let view = mesh_view(state, &NodeView { node_name: caller_node, cgroups: &no_cgroups }, trust_domain, |_, pod| Some(pod));
    endpoints
        .iter()
        .map(|endpoint| {
            let wire = match view.destinations.get(&endpoint.ip()) {
                None => Wire::Plaintext,
                Some(pod) => match pod.node {
                    Some(node) => Wire::Hbone { node, identity: pod.identity.clone() },
                    None => Wire::SameNode { identity: pod.identity.clone() },
                },
            };
            EndpointWire { endpoint: *endpoint, wire }
        })
        .collect()
}

impl fmt::Display for EndpointWire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.wire {
            Wire::Hbone { node, identity } => write!(
                f,
                "{}: tunnelled (HBONE, mutual TLS) to node {node}; its proxy must present {identity}",
                self.endpoint
            ),
            Wire::SameNode { identity } => {
                write!(f, "{}: same node: in process, no TLS, caller's identity kept (callee {identity})", self.endpoint)
            }
            Wire::Plaintext => write!(f, "{}: plaintext (not a mesh pod)", self.endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, uid: u0}
spec: {nodeName: n1, containers: []}
status: {podIP: 10.244.1.9, hostIP: 10.77.0.1}
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
spec: {nodeName: n2, serviceAccountName: catalog, containers: []}
status: {podIP: 10.244.2.2, hostIP: 10.77.0.2}
"#;

    #[test]
    fn tells_tunnelled_same_node_and_plaintext_endpoints_apart() {
        let (mut state, mut errors) = (ClusterState::new(), Vec::new());
        crate::manifests::parse_text(std::path::Path::new("pods.yaml"), PODS).load_into(&mut state, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let td = TrustDomain::new("cluster.local").unwrap();
        let endpoints: Vec<SocketAddr> = ["10.244.1.2:8080", "10.244.2.2:8080", "10.9.9.9:80"].iter().map(|a| a.parse().unwrap()).collect();
        let wires = wires(&state, &ObjectKey::new("shop", "web"), &endpoints, &td);
        let catalog = SpiffeId::new(td, "shop", "catalog").unwrap();
        assert_eq!(wires[0].wire, Wire::SameNode { identity: catalog.clone() });
        assert_eq!(wires[1].wire, Wire::Hbone { node: "10.77.0.2".parse().unwrap(), identity: catalog });
        assert_eq!(wires[2].wire, Wire::Plaintext);
        assert!(wires[1].to_string().contains("tunnelled (HBONE, mutual TLS) to node 10.77.0.2"), "{}", wires[1]);
    }
}
