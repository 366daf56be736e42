//! Route status: per route and Service parent, the Accepted and ResolvedRefs conditions
//! (and PartiallyInvalid when rules were dropped), as the Gateway API defines them.

use std::fmt;

use ambit_proxy_core::routes::RouteKind;
use serde::Serialize;

/// Condition types written on a route's parent status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConditionType {
    Accepted,
    ResolvedRefs,
    /// Some rules were invalid and were dropped; the rest are served.
    PartiallyInvalid,
}

/// Condition reasons (the Gateway API's RouteConditionReason values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Reason {
    Accepted,
    NotAllowedByListeners,
    NoMatchingParent,
    UnsupportedValue,
    /// Another route type (GRPCRoute beats HTTPRoute) owns the same Service port (GEP-1426).
    Conflicted,
    ResolvedRefs,
    RefNotPermitted,
    InvalidKind,
    BackendNotFound,
    UnsupportedProtocol,
    /// An AuthorizationPolicy that does not pass validation (GEP-713's Invalid).
    Invalid,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::Conflicted => "Conflicted",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::InvalidKind => "InvalidKind",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
            Reason::Invalid => "Invalid",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One status condition. `status` is the condition's truth ("True"/"False" in YAML).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    #[serde(serialize_with = "as_k8s_bool")]
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

fn as_k8s_bool<S: serde::Serializer>(value: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *value { "True" } else { "False" })
}

impl Condition {
    pub fn new(type_: ConditionType, status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Self { type_, status, reason, message: message.into() }
    }
}

/// A parentRef exactly as the route wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub port: Option<i32>,
    pub section_name: Option<String>,
}

impl fmt::Display for ParentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_deref().unwrap_or("Gateway"))?;
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name)?,
            None => write!(f, " {}", self.name)?,
        }
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        if let Some(section) = &self.section_name {
            write!(f, " sectionName {section}")?;
        }
        Ok(())
    }
}

/// The status of a route for one of its Service parents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    pub parent_ref: ParentRef,
    pub controller_name: String,
    pub conditions: Vec<Condition>,
}

impl ParentStatus {
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Accepted=True.
    pub fn accepted(&self) -> bool {
        self.condition(ConditionType::Accepted).is_some_and(|c| c.status)
    }

    /// Accepted=True, ResolvedRefs=True and no rule dropped.
    pub fn fully_ok(&self) -> bool {
        self.accepted()
            && self.condition(ConditionType::ResolvedRefs).is_none_or(|c| c.status)
            && self.condition(ConditionType::PartiallyInvalid).is_none_or(|c| !c.status)
    }
}

/// The status the agent computes for one HTTPRoute or GRPCRoute (only its Service parents).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteStatus {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    /// metadata.generation, to be written as each condition's observedGeneration.
    pub generation: Option<i64>,
    pub parents: Vec<ParentStatus>,
}

impl RouteStatus {
    /// Every parent fully OK.
    pub fn ok(&self) -> bool {
        self.parents.iter().all(ParentStatus::fully_ok)
    }
}
