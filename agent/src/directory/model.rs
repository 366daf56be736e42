//! The `MeshNode` resource (`ambit.dev/v1alpha1`, cluster-scoped, one per node).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `app.kubernetes.io/managed-by` value on the `MeshNode`s the signer publishes.
pub const MANAGED_BY: &str = "ambit-signer";

/// One node of the mesh: where its proxy accepts tunnels, and the identities of its pods.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(group = "ambit.dev", version = "v1alpha1", kind = "MeshNode", plural = "meshnodes")]
#[serde(rename_all = "camelCase")]
pub struct MeshNodeSpec {
    /// The node's addresses (at most one per family), from its pods' `status.hostIPs`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The node's pods that have their own IPs (host-network pods excluded), sorted.
    #[serde(default)]
    pub workloads: Vec<DirectoryEntry>,
}

/// One pod: its IPs and its identity's parts.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub namespace: String,
    pub service_account: String,
    pub ips: Vec<String>,
}
