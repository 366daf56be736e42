//! The mesh destinations: pods whose traffic is tunnelled (HBONE), by pod IP.

use std::net::SocketAddr;

use crate::identity::SpiffeId;

/// Where a mesh pod lives and who it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeshDestination {
    /// The HBONE address (`node ip:15008`) of the node hosting the pod.
    pub node: SocketAddr,
    /// The pod's service account identity: what its node must present (secure naming).
    pub identity: SpiffeId,
    /// True when the pod runs on this node (calls to it do not leave the node).
    pub on_this_node: bool,
    /// The pod is guarded in the kernel (STRICT): only the node's own sockets may open
    /// connections to it, so same-node calls are dialled from the node's address, not
    /// from the caller pod's network namespace. Meaningful only with `on_this_node`.
    pub guarded: bool,
}
