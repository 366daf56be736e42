//! Identity-based authorization on the callee's node (AuthorizationPolicy, shaped
//! after GEP-3779): the compiled policies per local pod, and their evaluation.
//!
//! The agent resolves each policy's Pod selector to the pods of this node and hands
//! the result over as an [`Authorization`] table in the [`crate::config::ProxyConfig`].
//! Nothing here knows Kubernetes objects.

mod decision;
mod enforcer;
mod http_filter;
mod index;
mod model;
mod open_streams;
mod path;

pub use decision::{decide, decide_stream, stream_needs_http, Attempt, Decider, Decision, HttpAttempt};
pub use enforcer::{describe, Enforcer, Level, StreamVerdict};
pub use index::CallerView;
pub use http_filter::{request_with_path, serve_filtered, FilterTarget};
pub use open_streams::{Closer, OpenStreams, Registration, StreamEntry};
pub use path::{normalize, PathRejection};

pub use model::{
    Action, Authorization, HttpConditions, NamePattern, PathMatch, Policy, PolicyName, Rule, Source,
    WorkloadPolicies,
};
