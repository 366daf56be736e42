//! The mesh directory: which workload identity each pod IP of the cluster has, and
//! which node proxy accepts tunnels for it, without every agent watching every Pod.
//!
//! Secure naming needs, for every endpoint a caller may be sent to, the service
//! account of the pod behind it and its node's address. Watching whole Pod objects
//! cluster-wide from every agent costs memory and API-server bandwidth that grow with
//! the cluster. Instead the signer (one Deployment, which watches Pods anyway to
//! authorise signing requests) publishes one small cluster-scoped `MeshNode` object per
//! node: the node's addresses and, per pod on it, its IPs, namespace and service
//! account. Agents watch `MeshNode`s only, and take their own node's pods from their
//! own (node-scoped) Pod watch.
//!
//! Only the signer may write `MeshNode`s: an agent that could write them could send
//! other nodes' traffic to itself. Node addresses come from the pods' `status.hostIPs`,
//! written by the kubelet.

mod model;
mod publish;

pub use model::{DirectoryEntry, MeshNode, MeshNodeSpec, MANAGED_BY};
pub use publish::{directory, Publisher};
