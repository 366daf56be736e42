//! Which service accounts have pods on which nodes: the signer's node authorization
//! reads nothing else of the Pods it watches (cluster-wide, stripped to this on arrival).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;

/// Where one pod runs and as whom.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Placement {
    pub namespace: String,
    pub service_account: String,
    pub node: String,
}

impl Placement {
    /// A scheduled pod that has not finished; `None` for one that is not on a node yet or
    /// whose containers have all terminated (it no longer runs as its account there).
    pub fn of(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        let node = spec.node_name.clone().filter(|n| !n.is_empty())?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let service_account = spec.service_account_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into());
        Some(Self { namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()), service_account, node })
    }
}

/// The placements of every running pod, by pod (namespace, name).
#[derive(Debug, Default, Clone)]
pub struct PodIndex {
    pods: BTreeMap<(String, String), Placement>,
    placements: BTreeMap<Placement, usize>,
}

impl PodIndex {
    /// Adds or updates a pod (a finished or unscheduled one is removed).
    pub fn apply(&mut self, pod: &Pod) {
        let key = key(pod);
        self.remove_key(&key);
        if let Some(placement) = Placement::of(pod) {
            *self.placements.entry(placement.clone()).or_default() += 1;
            self.pods.insert(key, placement);
        }
    }

    pub fn delete(&mut self, pod: &Pod) {
        self.remove_key(&key(pod));
    }

    fn remove_key(&mut self, key: &(String, String)) {
        if let Some(old) = self.pods.remove(key) {
            if let Some(count) = self.placements.get_mut(&old) {
                *count -= 1;
                if *count == 0 {
                    self.placements.remove(&old);
                }
            }
        }
    }

    /// Whether a pod of `namespace`/`service_account` runs on `node`.
    pub fn runs_on(&self, namespace: &str, service_account: &str, node: &str) -> bool {
        let wanted = Placement { namespace: namespace.into(), service_account: service_account.into(), node: node.into() };
        self.placements.contains_key(&wanted)
    }

    /// The nodes running pods of `namespace`/`service_account` (for denial messages).
    pub fn nodes_of(&self, namespace: &str, service_account: &str) -> BTreeSet<&str> {
        self.placements.keys().filter(|p| p.namespace == namespace && p.service_account == service_account).map(|p| p.node.as_str()).collect()
    }
}

fn key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pod(ns: &str, name: &str, sa: &str, node: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"nodeName": node, "serviceAccountName": sa, "containers": []},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn tracks_running_pods_per_account_and_node() {
        let mut index = PodIndex::default();
        index.apply(&pod("shop", "a", "catalog", "node-1", "Running"));
        index.apply(&pod("shop", "b", "catalog", "node-1", "Pending"));
        assert!(index.runs_on("shop", "catalog", "node-1"));
        assert!(!index.runs_on("shop", "catalog", "node-2"));
        index.delete(&pod("shop", "a", "catalog", "node-1", "Running"));
        assert!(index.runs_on("shop", "catalog", "node-1"), "pod b is still there");
        index.apply(&pod("shop", "b", "catalog", "node-1", "Succeeded"));
        assert!(!index.runs_on("shop", "catalog", "node-1"), "a finished pod no longer counts");
        index.apply(&pod("shop", "c", "catalog", "node-2", "Running"));
        assert_eq!(index.nodes_of("shop", "catalog"), BTreeSet::from(["node-2"]));
    }
}
