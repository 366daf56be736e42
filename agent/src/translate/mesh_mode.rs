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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::PodCgroup;
    use crate::translate::CgroupLookup;

    struct NoCgroups;
    impl CgroupLookup for NoCgroups {
        fn find(&self, _: &str, _: Option<&str>) -> Option<PodCgroup> {
            None
        }
    }

    fn state(yaml: &str) -> ClusterState {
        let (mut state, mut errors) = (ClusterState::new(), Vec::new());
        crate::manifests::parse_text(std::path::Path::new("pods.yaml"), yaml).load_into(&mut state, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        state
    }

    fn guarded(yaml: &str) -> GuardedPods {
        guarded_pods(&state(yaml), &NodeView { node_name: Some("n1"), cgroups: &NoCgroups })
    }

    fn pod(name: &str, ns: &str, node: &str, ip: &str, annotation: Option<&str>) -> String {
        let annotations = annotation.map(|a| format!(", annotations: {{ambit.dev/mesh-mode: {a}}}")).unwrap_or_default();
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, uid: {name}{annotations}}}\nspec: {{nodeName: {node}, containers: []}}\nstatus: {{podIPs: [{{ip: \"{ip}\"}}]}}\n"
        )
    }

    fn namespace(name: &str, mode: Option<&str>) -> String {
        let mode = mode.map(|m| format!(", ambit.dev/mesh-mode: {m}")).unwrap_or_default();
        format!("---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{ambit.dev/mesh: enabled{mode}}}}}\n")
    }

    fn ips(g: &GuardedPods) -> Vec<String> {
        g.ips.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn strict_namespaces_guard_their_local_pods_and_pods_override() {
        let yaml = [
            namespace("locked", Some("strict")),
            namespace("open", None),
            pod("a", "locked", "n1", "10.244.0.2", None),
            pod("b", "locked", "n1", "10.244.0.3", Some("permissive")),
            pod("c", "locked", "n2", "10.244.32.2", None),
            pod("d", "open", "n1", "fd44::4", Some("STRICT")),
            pod("e", "open", "n1", "10.244.0.5", None),
        ]
        .concat();
        let g = guarded(&yaml);
        assert_eq!(ips(&g), ["10.244.0.2", "fd44::4"]);
        assert!(g.problems.is_empty(), "{:?}", g.problems);
    }

    #[test]
    fn pods_outside_the_mesh_are_never_guarded() {
        let yaml = [
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: plain, labels: {ambit.dev/mesh-mode: strict}}\n".to_string(),
            pod("a", "plain", "n1", "10.244.0.2", Some("strict")),
        ]
        .concat();
        assert!(guarded(&yaml).ips.is_empty());
    }

    #[test]
    fn invalid_values_fail_safe_and_are_reported() {
        let yaml = [
            namespace("typo", Some("strcit")),
            namespace("open", None),
            pod("a", "typo", "n1", "10.244.0.2", None),
            pod("b", "typo", "n1", "10.244.0.3", None),
            pod("c", "open", "n1", "10.244.0.4", Some("yes")),
        ]
        .concat();
        let g = guarded(&yaml);
        // A bad namespace label makes it STRICT; a bad annotation keeps the namespace's mode.
        assert_eq!(ips(&g), ["10.244.0.2", "10.244.0.3"]);
        assert_eq!(g.problems.len(), 2, "{:?}", g.problems);
        assert!(g.problems.iter().any(|p| p.contains("namespace typo") && p.contains("strict")));
        assert!(g.problems.iter().any(|p| p.contains("pod open/c")));
    }
}
