//! Every Kubernetes API permission the signer uses (checked against
//! `daemonset/signer-clusterrole.yaml` and `signer-role.yaml` by the manifest tests, as
//! the agent's are against its roles).

use crate::kubernetes::rbac::{Permission, WatchPermissions};

const fn p(group: &'static str, resource: &'static str, verb: &'static str) -> Permission {
    Permission { group, resource, verb }
}

/// Watching the requests it signs (field-selected by signerName).
pub const CSRS: WatchPermissions = WatchPermissions { list: p("certificates.k8s.io", "certificatesigningrequests", "list"), watch: p("certificates.k8s.io", "certificatesigningrequests", "watch") };
/// Writing the Approved/Denied condition.
pub const CSR_APPROVAL_UPDATE: Permission = p("certificates.k8s.io", "certificatesigningrequests/approval", "update");
/// Writing the certificate or the Failed condition.
pub const CSR_STATUS_UPDATE: Permission = p("certificates.k8s.io", "certificatesigningrequests/status", "update");
/// The API server's extra checks on approving and signing for a signerName (limited to
/// [`SIGNER_NAME`](super::SIGNER_NAME) by `resourceNames`).
pub const SIGNER_APPROVE: Permission = p("certificates.k8s.io", "signers", "approve");
pub const SIGNER_SIGN: Permission = p("certificates.k8s.io", "signers", "sign");
/// Node authorization: which service accounts run on which node.
pub const PODS: WatchPermissions = WatchPermissions { list: p("", "pods", "list"), watch: p("", "pods", "watch") };
/// The trust bundle ConfigMap in the agents' namespace.
pub const CONFIGMAP_GET: Permission = p("", "configmaps", "get");
pub const CONFIGMAP_CREATE: Permission = p("", "configmaps", "create");
pub const CONFIGMAP_UPDATE: Permission = p("", "configmaps", "update");
/// The mesh directory ([`crate::directory`]): one `MeshNode` per node, listed at start,
/// then created, patched and deleted as pods come and go.
pub const MESH_NODES_LIST: Permission = p("ambit.dev", "meshnodes", "list");
pub const MESH_NODES_CREATE: Permission = p("ambit.dev", "meshnodes", "create");
pub const MESH_NODES_PATCH: Permission = p("ambit.dev", "meshnodes", "patch");
pub const MESH_NODES_DELETE: Permission = p("ambit.dev", "meshnodes", "delete");

/// The cluster-wide permissions (the signer's ClusterRole), without the signer-name ones.
pub const CLUSTER: &[Permission] = &[
    CSRS.list,
    CSRS.watch,
    CSR_APPROVAL_UPDATE,
    CSR_STATUS_UPDATE,
    PODS.list,
    PODS.watch,
    MESH_NODES_LIST,
    MESH_NODES_CREATE,
    MESH_NODES_PATCH,
    MESH_NODES_DELETE,
];
/// Granted only for `resourceNames: [ambit.dev/workload]` in the ClusterRole.
pub const SIGNER_NAMED: &[Permission] = &[SIGNER_APPROVE, SIGNER_SIGN];
/// Granted in the agents' namespace only (the signer's Role); get and update are limited
/// to the bundle's name, create cannot be.
pub const NAMESPACED: &[Permission] = &[CONFIGMAP_GET, CONFIGMAP_CREATE, CONFIGMAP_UPDATE];
