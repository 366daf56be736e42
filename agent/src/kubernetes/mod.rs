//! Kubernetes mode (`ambit-agent run`): watching the API server, electing one route
//! status writer, writing route status.
//!
//! - [`feed`]: one watcher per kind (Namespaces, this node's Pods, Services,
//!   EndpointSlices, HTTPRoutes, GRPCRoutes) into one [`ClusterState`](crate::cluster::ClusterState),
//!   published after the initial lists and (debounced) after each change.
//! - [`lease`]: leader election through the `ambit-status-writer` Lease.
//! - [`status`]: writing `status.parents[]` for controllerName `ambit.dev/mesh`;
//!   [`policy_status`]: AuthorizationPolicies' `Accepted` condition, by the same leader.
//! - [`rbac`]: every API permission used (checked against `daemonset/clusterrole.yaml`).
//! - [`run`]: the `run` subcommand tying them to a [`Node`](crate::node::Node).
//! - [`csr_source`]: workload certificates from the CertificateSigningRequest API
//!   (Ambit's signer, [`crate::signer`]); [`trust_bundle`]: the CA bundle it publishes;
//!   [`follow`]: following one object with get + watch; [`mesh`]: `run --mesh`, the
//!   node's mesh options from both.
//!
//! # What is cached per object
//!
//! Objects are trimmed ([`strip`]) before they are stored. For most kinds, metadata
//! keeps name, namespace, uid, generation, resourceVersion, labels and `ambit.dev/*`
//! annotations (managedFields, ownerReferences, finalizers, other annotations and
//! timestamps are dropped). Services, EndpointSlices and `MeshNode`s, the kinds a large
//! cluster has many of, are converted to compact forms instead (see
//! [`crate::cluster`]): of their metadata only the key and resourceVersion remain.
//!
//! | kind | kept |
//! |---|---|
//! | Namespace | nothing (labels decide enrollment) |
//! | Pod (this node only) | `spec.nodeName`, `spec.serviceAccountName`, `spec.hostNetwork`, `status.phase`, `status.qosClass`, `status.podIP(s)` |
//! | Service | cluster IPs parsed (or unset, or headless); valid ports (number, name, appProtocol, whether TCP); the invalid values, to report them |
//! | EndpointSlice | the `kubernetes.io/service-name` label; ports (name, number); the IPs of ready endpoints |
//! | MeshNode | addresses and workloads (namespace, service account, IPs), parsed |
//! | HTTPRoute, GRPCRoute | `spec` (status dropped: the status writer reads it fresh) |
//! | AuthorizationPolicy | `spec` as JSON, checked at translation (status dropped) |
//!
//! Only the current objects are held (kube's watcher keeps no cache of its own); a
//! snapshot is cloned for each debounced publication.

pub mod client;
pub mod csr_source;
pub mod feed;
pub mod follow;
pub mod lease;
pub mod mesh;
pub mod policy_status;
pub mod rbac;
pub mod run;
pub mod status;
pub mod strip;
pub mod trust_bundle;

pub use client::{client, ApiServer};
pub use csr_source::{CsrOptions, KubernetesCsr};
pub use trust_bundle::{watch_trust_bundle, TrustBundle, TrustBundleWatch};
pub use feed::{ClusterFeed, FeedOptions, Snapshot};
pub use lease::{LeaderElector, LeaseConfig, LEASE_NAME};
pub use run::{run, KubeArgs};
pub use status::{Desired, RouteId, StatusWriter, WriteOutcome};
