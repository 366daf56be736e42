//! AuthorizationPolicies -> proxy-core's [`Authorization`] table for the pods of this
//! node, and each policy's `Accepted` condition.
//!
//! A pod of this node in the mesh gets, keyed by each of its IPs, the accepted policies
//! of its namespace whose selector matches its labels, sorted by name. Policies never
//! reach across namespaces: a policy only selects pods of its own namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ambit_proxy_core::authz::{Action, Authorization, PolicyName, WorkloadPolicies};
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::status::{Condition, ConditionType, Reason};
use super::{pod_in_mesh, NodeView};
use crate::authz::{compile, CompiledPolicy};
use crate::cluster::{ClusterState, ObjectKey};

/// One policy's status: its `Accepted` condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub namespace: String,
    pub name: String,
    /// metadata.generation, written as the condition's observedGeneration.
    pub generation: Option<i64>,
    pub accepted: Condition,
}

impl PolicyStatus {
    pub fn ok(&self) -> bool {
        self.accepted.status
    }
}

/// The table and the statuses.
#[derive(Debug, Default)]
pub struct PolicyTranslation {
    pub authorization: Authorization,
    pub status: Vec<PolicyStatus>,
}

/// Every policy of the store, checked: the valid ones by namespace (sorted by name), and
/// every policy's status.
pub fn compile_all(state: &ClusterState) -> (BTreeMap<&str, Vec<CompiledPolicy>>, Vec<PolicyStatus>) {
    let mut by_namespace: BTreeMap<&str, Vec<CompiledPolicy>> = BTreeMap::new();
    let mut statuses = Vec::new();
    for (key, object) in &state.authorization_policies {
        let name = PolicyName::new(&key.namespace, &key.name);
        let compiled = match object.unknown_field() {
            Some(field) => Err(format!("{field}: unknown field")),
            None if object.spec.is_null() => Err("spec: required".to_string()),
            None => compile(&name, &object.spec),
        };
        let accepted = match compiled {
            Ok(compiled) => {
                let message = format!("{:?} policy with {} rule(s)", compiled.policy.action, compiled.policy.rules.len());
                by_namespace.entry(key.namespace.as_str()).or_default().push(compiled);
                Condition::new(ConditionType::Accepted, true, Reason::Accepted, message)
            }
            Err(message) => Condition::new(ConditionType::Accepted, false, Reason::Invalid, message),
        };
        statuses.push(PolicyStatus {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            generation: object.metadata.generation,
            accepted,
        });
    }
    (by_namespace, statuses)
}

/// The policies of the pods of this node, and every policy's status.
pub fn translate_policies(state: &ClusterState, node: &NodeView<'_>) -> PolicyTranslation {
    let (by_namespace, status) = compile_all(state);
    let mut by_pod = HashMap::new();
    for (key, pod) in &state.pods {
        if !local_meshed(state, node, pod) {
            continue;
        }
        let Some(workload) = pod_policies(key, pod, &by_namespace) else { continue };
        for ip in pod_ips(pod) {
            by_pod.insert(ip, workload.clone());
        }
    }
    PolicyTranslation { authorization: Authorization { by_pod }, status }
}

/// The policies selecting one pod (None: none does, the pod is open).
pub fn pod_policies(key: &ObjectKey, pod: &Pod, by_namespace: &BTreeMap<&str, Vec<CompiledPolicy>>) -> Option<Arc<WorkloadPolicies>> {
    let labels = pod.metadata.labels.as_ref();
    let policies: Vec<_> = by_namespace
        .get(key.namespace.as_str())?
        .iter()
        .filter(|c| c.selector.matches(labels))
        .map(|c| c.policy.clone())
        .collect();
    (!policies.is_empty()).then(|| Arc::new(WorkloadPolicies::new(policies)))
}

/// A pod of the mesh on this node with its own IPs (not host-network).
fn local_meshed(state: &ClusterState, node: &NodeView<'_>, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let pod_node = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
    let elsewhere = matches!((node.node_name, pod_node), (Some(this), Some(theirs)) if this != theirs);
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    pod_in_mesh(state, pod) && !elsewhere && !host_network
}

/// Every IP of a pod (`status.podIP` and `status.podIPs`), IPv4 as plain IPv4.
pub fn pod_ips(pod: &Pod) -> BTreeSet<IpAddr> {
    let Some(status) = pod.status.as_ref() else { return BTreeSet::new() };
    status
        .pod_ip
        .iter()
        .chain(status.pod_ips.iter().flatten().map(|p| &p.ip))
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect()
}

/// The local pod IPs that an ALLOW policy selects: they accept only mesh traffic (a
/// plaintext caller has no identity, so no rule can allow it). For the STRICT guard.
pub fn allow_selected_pods(authorization: &Authorization) -> BTreeSet<IpAddr> {
    authorization
        .by_pod
        .iter()
        .filter(|(_, workload)| workload.policies.iter().any(|p| p.action == Action::Allow))
        .map(|(ip, _)| *ip)
        .collect()
}
