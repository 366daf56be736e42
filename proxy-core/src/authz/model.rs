//! The compiled policy model: what the agent hands the data plane.
//!
//! Semantics (GEP-3779 for ALLOW, Istio's for DENY):
//! * a workload that no policy selects is open;
//! * a request that matches any rule of a DENY policy selecting the workload is denied;
//! * otherwise, when any ALLOW policy selects the workload, the request is allowed only
//!   if it matches a rule of one of them;
//! * a rule matches when its sources, ports and HTTP conditions all match; an omitted
//!   list matches anything, an empty source list matches nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use super::index::PolicyIndex;

/// `namespace/name` of an AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PolicyName {
    /// Shared strings: decisions clone names on every allowed request.
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl PolicyName {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: Arc::from(namespace), name: Arc::from(name) }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    Allow,
    Deny,
}

/// One compiled policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub name: PolicyName,
    pub action: Action,
    /// The policy applies when any rule matches. No rules: an ALLOW policy allows
    /// nothing, a DENY policy denies nothing.
    pub rules: Vec<Rule>,
}

/// One rule: all of its conditions must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// `None`: any caller with a verified identity. `Some(empty)`: no caller.
    pub sources: Option<Vec<Source>>,
    /// Destination (pod) ports; empty: any port.
    pub ports: Vec<u16>,
    /// HTTP conditions; `None`: the rule is decided per connection (L4).
    pub http: Option<HttpConditions>,
}

/// Who a rule names. Every pattern is matched against the caller's verified identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// A service account of the policy's trust domain (`name` `*`: a whole namespace).
    ServiceAccount { namespace: NamePattern, name: NamePattern },
    /// Every service account of a namespace of the policy's trust domain.
    Namespace(NamePattern),
    /// A full SPIFFE ID (any trust domain), exact or with a `*` at one end.
    Spiffe(NamePattern),
}

/// A name with an optional `*` at one end (Istio's wildcard rule).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NamePattern {
    Any,
    Exact(String),
    /// `foo*`
    Prefix(String),
    /// `*foo`
    Suffix(String),
}

/// HTTP conditions of a rule (an Ambit extension: GEP-3779 defers L7).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HttpConditions {
    /// Upper-case method names; empty: any method.
    pub methods: Vec<String>,
    /// Empty: any path. Paths are matched after normalisation.
    pub paths: Vec<PathMatch>,
}

/// A path condition, already normalised by the agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    Exact(String),
    /// Segment-wise prefix, as HTTPRoute's PathPrefix.
    Prefix(String),
}

/// The policies selecting one pod of this node.
#[derive(Debug, Default, serde::Serialize)]
pub struct WorkloadPolicies {
    pub policies: Vec<Arc<Policy>>,
    /// The per-request index of `policies`, built on first use (see [`super::index`]).
    #[serde(skip)]
    index: OnceLock<PolicyIndex>,
}

/// A clone builds its own index when first used.
impl Clone for WorkloadPolicies {
    fn clone(&self) -> Self {
        Self::new(self.policies.clone())
    }
}

impl PartialEq for WorkloadPolicies {
    fn eq(&self, other: &Self) -> bool {
        self.policies == other.policies
    }
}

impl Eq for WorkloadPolicies {}

impl WorkloadPolicies {
    pub fn new(policies: Vec<Arc<Policy>>) -> Self {
        Self { policies, index: OnceLock::new() }
    }

    /// The index of `policies` (built once; `policies` must not change afterwards).
    pub(crate) fn index(&self) -> &PolicyIndex {
        self.index.get_or_init(|| PolicyIndex::new(&self.policies))
    }
}

/// Every policy of this node, by the address of the pod it selects (IPv4 as plain IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Authorization {
    pub by_pod: HashMap<IpAddr, Arc<WorkloadPolicies>>,
}

impl Authorization {
    /// The policies selecting the pod at `pod`, if any.
    pub fn for_pod(&self, pod: IpAddr) -> Option<&Arc<WorkloadPolicies>> {
        self.by_pod.get(&pod)
    }
}
