//! A single, loosely typed view of HTTPRoute and GRPCRoute rules.
//!
//! The generated Gateway API types have a distinct struct for every place a filter or
//! backendRef can appear (rule, backendRef, HTTP, gRPC). Their JSON shapes are the same,
//! so translation reads all of them through these mirrors, re-decoded from the
//! generated types with serde. Enumerations are kept as strings so that values this
//! agent does not know are reported (UnsupportedValue) rather than failing.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A route rule; `M` is the match type (HTTP or gRPC).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec<M> {
    pub name: Option<String>,
    #[serde(default = "Vec::new")]
    pub matches: Vec<M>,
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRefSpec>,
    pub timeouts: Option<TimeoutsSpec>,
    /// GEP-1731 (experimental channel; HTTPRoute only).
    pub retry: Option<RetrySpec>,
    /// Every other field the rule sets (`sessionPersistence`, ...): none is supported,
    /// and each is reported rather than ignored (see [`super::fields`]).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchSpec {
    pub path: Option<PathSpec>,
    #[serde(default)]
    pub headers: Vec<ValueMatchSpec>,
    #[serde(default)]
    pub query_params: Vec<ValueMatchSpec>,
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMatchSpec {
    pub method: Option<GrpcMethodSpec>,
    #[serde(default)]
    pub headers: Vec<ValueMatchSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GrpcMethodSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PathSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub value: Option<String>,
}

/// A header or query parameter match.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValueMatchSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterSpec {
    #[serde(rename = "type")]
    pub type_: String,
    pub request_header_modifier: Option<HeaderModifierSpec>,
    pub response_header_modifier: Option<HeaderModifierSpec>,
    pub request_redirect: Option<RedirectSpec>,
    pub url_rewrite: Option<RewriteSpec>,
    pub request_mirror: Option<MirrorSpec>,
    pub extension_ref: Option<ExtensionRefSpec>,
    pub cors: Option<CorsSpec>,
}

/// GEP-1767 CORS filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsSpec {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExtensionRefSpec {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HeaderModifierSpec {
    #[serde(default)]
    pub set: Vec<NameValue>,
    #[serde(default)]
    pub add: Vec<NameValue>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectSpec {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifierSpec>,
    pub port: Option<i64>,
    pub status_code: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifierSpec {
    #[serde(rename = "type")]
    pub type_: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RewriteSpec {
    pub hostname: Option<String>,
    pub path: Option<PathModifierSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSpec {
    pub backend_ref: BackendRefSpec,
    pub percent: Option<i64>,
    pub fraction: Option<FractionSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FractionSpec {
    pub numerator: i64,
    pub denominator: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackendRefSpec {
    pub group: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<i64>,
    #[serde(default)]
    pub filters: Vec<FilterSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeoutsSpec {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RetrySpec {
    pub attempts: Option<i64>,
    pub backoff: Option<String>,
    pub codes: Option<Vec<i64>>,
}

/// Re-decodes a generated API value into one of the mirrors above.
pub fn mirror<T: Serialize + ?Sized, U: DeserializeOwned>(value: &T) -> Result<U, String> {
    let json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    serde_json::from_value(json).map_err(|e| e.to_string())
}
