//! Mesh modes: which of this node's pods are STRICT (guarded in the kernel).
//!
//! The namespace label `ambit.dev/mesh-mode` (`strict` or `permissive`, default
//! permissive) sets the mode of a namespace's pods; the pod annotation of the same name
//! overrides it. Values are case-insensitive (`STRICT` as in Istio works too).
//!
//! Bad values fail safe: an invalid pod annotation leaves the pod in its namespace's
//! mode, an invalid namespace label makes the namespace STRICT. Both are reported as
//! problems (logged, listed in `/config_dump`).
//!
//! Guarded are the pod IPs of STRICT pods of this node that are in the mesh (enrolled
//! namespace, not opted out, not finished) and have their own network namespace
//! (hostNetwork pods share the node's address and cannot be guarded).

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use super::mesh::{host_network, ips, is_local};
use super::{pod_in_mesh, NodeView};
use crate::cluster::ClusterState;

/// Namespace label and pod annotation that choose the mode.
pub const MESH_MODE_KEY: &str = "ambit.dev/mesh-mode";

/// How a pod accepts connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum MeshMode {
    /// Plaintext from outside the mesh is accepted (the default).
    #[default]
    Permissive,
    /// Only connections through the node proxy (with a verified mesh identity).
    Strict,
}

impl MeshMode {
    /// Parses a label or annotation value (case-insensitive); None when invalid.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "strict" => Some(MeshMode::Strict),
            "permissive" => Some(MeshMode::Permissive),
            _ => None,
        }
    }
}

/// The guarded pod IPs of this node, and what was wrong on the way.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GuardedPods {
    pub ips: BTreeSet<IpAddr>,
    pub problems: Vec<String>,
}

/// The mode of namespace `ns` (STRICT when its label is invalid, reported).
pub fn namespace_mode(state: &ClusterState, ns: &str, problems: &mut Vec<String>) -> MeshMode {
    let value = state
        .namespaces
        .get(ns)
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|labels| labels.get(MESH_MODE_KEY));
    match value {
        None => MeshMode::default(),
        Some(v) => MeshMode::parse(v).unwrap_or_else(|| {
            problems.push(format!(
                "namespace {ns}: label {MESH_MODE_KEY}={v:?} is neither strict nor permissive: treating the namespace as strict"
            ));
            MeshMode::Strict
        }),
    }
}

/// The mode of `pod`: its annotation, else its namespace's (an invalid annotation is
/// reported and ignored).
pub fn pod_mode(state: &ClusterState, pod: &Pod, problems: &mut Vec<String>) -> MeshMode {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let inherited = namespace_mode(state, ns, problems);
    let Some(value) = pod.metadata.annotations.as_ref().and_then(|a| a.get(MESH_MODE_KEY)) else {
        return inherited;
    };
    MeshMode::parse(value).unwrap_or_else(|| {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        problems.push(format!(
            "pod {ns}/{name}: annotation {MESH_MODE_KEY}={value:?} is neither strict nor permissive: keeping the namespace's mode ({inherited:?})"
        ));
        inherited
    })
}

/// The IPs of this node's STRICT mesh pods.
pub fn guarded_pods(state: &ClusterState, node: &NodeView<'_>) -> GuardedPods {
    let mut out = GuardedPods::default();
    let mut namespace_problems = Vec::new();
    for pod in state.pods.values() {
        if !pod_in_mesh(state, pod) || !is_local(pod, node) || host_network(pod) {
            continue;
        }
        if pod_mode(state, pod, &mut namespace_problems) == MeshMode::Strict {
            out.ips.extend(ips(pod, |s| {
                (s.pod_ip.as_deref(), s.pod_ips.as_ref().map(|v| v.iter().map(|p| p.ip.as_str()).collect()))
            }));
        }
    }
    // A namespace's bad label is reported once, not once per pod.
    namespace_problems.sort();
    namespace_problems.dedup();
    out.problems = namespace_problems;
    out
}
