//! Ambit's node agent as a library (the `ambit-agent` binary is a thin CLI over it).
//!
//! - [`cluster`]: the Kubernetes objects the agent reads, held in one store that both
//!   standalone (manifests directory) and Kubernetes (watch) modes fill.
//! - [`manifests`]: reading and watching a directory of Kubernetes YAML.
//! - [`cgroups`]: finding the cgroup2 mount and each pod's cgroup from its UID.
//! - [`translate`]: turning the store into proxy-core's configuration, the eBPF maps'
//!   contents and route status.
//! - [`redirect`]: loading, pinning and feeding the eBPF connect hooks.
//! - [`strict`]: STRICT mesh mode in the kernel (tc egress on guarded pods' veths).
//! - [`egress`]: upstream sockets in the caller pod's network namespace.
//! - [`directory`]: the mesh directory (`MeshNode`s): every pod IP's identity and node.
//! - [`authz`]: the AuthorizationPolicy resource: its CRD, validation and compilation.
//! - [`signer`]: `ambit-agent signer`, Kubernetes mode's certificate signer.

pub mod authz;
pub mod ca;
pub mod cgroups;
pub mod cpus;
pub mod check;
pub mod data_runtime;
pub mod cluster;
pub mod directory;
pub mod duration;
pub mod egress;
pub mod kubernetes;
pub mod listen_addr;
pub mod explain;
pub mod manifests;
pub mod redirect;
pub mod signer;
pub mod translate;

/// Namespace label that opts a namespace into the mesh.
pub const MESH_LABEL: &str = "ambit.dev/mesh";
/// Value of [`MESH_LABEL`] that enrolls a namespace.
pub const MESH_ENABLED: &str = "enabled";
/// Pod annotation that opts a single pod out of the mesh when set to "disabled".
pub const MESH_POD_ANNOTATION: &str = "ambit.dev/mesh";
/// The controllerName written in route status.
pub const CONTROLLER_NAME: &str = "ambit.dev/mesh";

pub mod admin;
pub mod endpoints;
pub mod handover;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod standalone;
pub mod strict;
