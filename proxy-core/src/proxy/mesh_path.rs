//! How an endpoint is reached: plaintext (not a mesh pod), in-process to the inbound
//! gate (a mesh pod on this node) or through an HBONE tunnel (a mesh pod elsewhere).

use std::net::SocketAddr;

use crate::config::ProxyConfig;
use crate::identity::SpiffeId;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MeshPath {
    Plain,
    /// `guarded`: the pod is STRICT, dial it from the node's address.
    Local { expected: SpiffeId, guarded: bool },
    Hbone { node: SocketAddr, expected: SpiffeId },
}

impl MeshPath {
    pub fn of(config: &ProxyConfig, endpoint: SocketAddr) -> Self {
        match config.mesh_destination(endpoint) {
            None => MeshPath::Plain,
            Some(pod) if pod.on_this_node => MeshPath::Local { expected: pod.identity.clone(), guarded: pod.guarded },
            Some(pod) => MeshPath::Hbone { node: pod.node, expected: pod.identity.clone() },
        }
    }

    /// `none`, `local` or `hbone`.
    pub fn tunnel(&self) -> &'static str {
        match self {
            MeshPath::Plain => "none",
            MeshPath::Local { .. } => "local",
            MeshPath::Hbone { .. } => "hbone",
        }
    }

    /// The destination pod's identity (None outside the mesh).
    pub fn destination_identity(&self) -> Option<&SpiffeId> {
        match self {
            MeshPath::Plain => None,
            MeshPath::Local { expected, .. } | MeshPath::Hbone { expected, .. } => Some(expected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshDestination;
    use crate::identity::TrustDomain;

    #[test]
    fn a_guarded_local_pod_is_dialled_from_the_node() {
        let id = SpiffeId::new(TrustDomain::new("cluster.local").unwrap(), "shop", "catalog").unwrap();
        let node: SocketAddr = "10.77.0.1:15008".parse().unwrap();
        let mut config = ProxyConfig::default();
        for (ip, guarded) in [("10.244.0.2", true), ("10.244.0.3", false)] {
            let pod = MeshDestination { node, identity: id.clone(), on_this_node: true, guarded };
            config.mesh.insert(ip.parse().unwrap(), pod);
        }
        let path = |ip: &str| MeshPath::of(&config, format!("{ip}:8080").parse().unwrap());
        assert_eq!(path("10.244.0.2"), MeshPath::Local { expected: id.clone(), guarded: true });
        assert_eq!(path("10.244.0.3"), MeshPath::Local { expected: id, guarded: false });
        assert_eq!(path("10.244.0.4"), MeshPath::Plain);
    }
}
