//! The `AuthorizationPolicy` custom resource.
//!
//! [`AuthorizationPolicy`] (with its spec types) is the schema: the CRD in
//! `daemonset/crds/` is generated from it. The agent stores what it reads as a
//! [`PolicyObject`], whose spec is kept as JSON until [`super::compile`] checks it, so
//! that one malformed policy gets an `Accepted=False` status instead of breaking a watch
//! or a manifests directory.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who may call the pods a policy selects (GEP-3779, with Ambit's DENY action,
/// Namespace sources and HTTP attributes).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "ambit.dev",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    plural = "authorizationpolicies",
    namespaced,
    status = "PolicyStatusSpec"
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    /// Exactly one reference of kind Pod (group ""), with a label selector over the
    /// policy's namespace (`{}`: every pod of the namespace).
    pub target_refs: Vec<TargetRef>,
    /// ALLOW: only requests matching a rule are allowed. DENY: requests matching a rule are refused.
    pub action: ActionSpec,
    /// The rules (ORed). Omitted or empty: an ALLOW policy allows nothing, a DENY policy denies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RuleSpec>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ActionSpec {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
}

/// GEP-3779's PolicyTargetReferenceWithLabelSelectors, for Pods only.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// "" (or "core").
    #[serde(default)]
    pub group: String,
    /// "Pod".
    pub kind: String,
    /// Must be empty: pods are chosen by `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelectorSpec>,
}

/// A metav1.LabelSelector.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<SelectorRequirementSpec>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirementSpec {
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// One rule: its sources, network attributes and HTTP attributes must all match.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    /// Omitted: any caller with a mesh identity. Empty: no caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_attributes: Option<NetworkAttributes>,
    /// Ambit's addition (GEP-3779 defers L7): the rule then applies per HTTP request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_attributes: Option<HttpAttributes>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceType {
    ServiceAccount,
    /// Ambit's addition: every service account of a namespace.
    Namespace,
    #[serde(rename = "SPIFFE")]
    Spiffe,
}

/// A caller: the field named by `type` must be set, and only it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    #[serde(rename = "type")]
    pub type_: SourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,
    /// A namespace name; `*`, `prefix*` and `*suffix` are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `spiffe://<trust-domain>/<path>`, or with a `*` at one end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// Defaults to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `*` for every service account of the namespace; `prefix*` and `*suffix` are allowed.
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAttributes {
    /// Destination pod ports (1-65535). Omitted: every port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<i32>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpAttributes {
    /// Upper-case HTTP methods. Omitted: every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Omitted: every path. Values must be normalised absolute paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<PathSpec>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PathSpec {
    #[serde(rename = "type")]
    pub type_: PathType,
    pub value: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PathType {
    Exact,
    PathPrefix,
}

/// The status the elected agent writes: GEP-713-style conditions (`Accepted`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatusSpec {
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
}

/// A metav1.Condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True" or "False".
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// An AuthorizationPolicy as read (watch or manifest), its spec not checked yet.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct PolicyObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
    /// Every other top-level field (`apiVersion`, `kind` and `status` are expected; any
    /// other one is reported as unknown).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl PolicyObject {
    /// A top-level field an AuthorizationPolicy does not have, if any.
    pub fn unknown_field(&self) -> Option<&str> {
        self.other.keys().map(String::as_str).find(|k| !matches!(*k, "apiVersion" | "kind" | "status"))
    }
}

impl k8s_openapi::Resource for PolicyObject {
    const API_VERSION: &'static str = "ambit.dev/v1alpha1";
    const GROUP: &'static str = "ambit.dev";
    const KIND: &'static str = "AuthorizationPolicy";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "authorizationpolicies";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PolicyObject {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
