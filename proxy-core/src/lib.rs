//! Ambit's data plane as a library.
//!
//! The agent feeds it a [`config::ProxyConfig`] snapshot (Services, their endpoints,
//! the compiled GAMMA routes per caller scope, and the workloads known by cgroup) and
//! an [`identity::OriginResolver`] that tells, for an accepted connection, which
//! Service address the caller dialled and which pod cgroup it came from. Nothing in
//! here knows about Kubernetes or eBPF.

pub mod authz;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod hbone;
pub mod identity;
pub mod limits;
pub mod metrics;
mod per_thread;
pub mod proxy;
pub mod rate_limited_log;
pub mod routes;
pub mod tls;
