//! Identity-based authorization on the callee's node (AuthorizationPolicy, shaped
//! after GEP-3779): the compiled policies per local pod, and their evaluation.
//!
//! The agent resolves each policy's Pod selector to the pods of this node and hands
//! the result over as an [`Authorization`] table in the [`crate::config::ProxyConfig`].
//! Nothing here knows Kubernetes objects.

mod decision;
mod model;

pub use decision::{decide, Attempt, Decider, Decision, HttpAttempt};

pub use model::{
    Action, Authorization, HttpConditions, NamePattern, PathMatch, Policy, PolicyName, Rule, Source,
    WorkloadPolicies,
};
