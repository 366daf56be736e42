//! Ambit's network-namespace test bed.
//!
//! A [`TestBed`](bed::TestBed) plays the cluster's part for the agent under test:
//! it turns Deployments into pods (each a network namespace plus a kubelet-style
//! cgroup running the echo server), allocates Service cluster IPs, builds
//! EndpointSlices, writes every object as Kubernetes YAML into a manifests
//! directory, and lets tests run clients inside pods.
//!
//! There is no kube-proxy: the node namespace has `unreachable` routes for the
//! cluster-IP ranges, so a cluster-IP connection that the agent does not
//! redirect fails at once with EHOSTUNREACH.
//!
//! A bed has one node by default; with [`BedOptions::nodes`](bed::BedOptions::nodes)
//! it has several, joined by a bridged cluster network ([`cluster_net`]), each with
//! its own pod range, cgroup subtree and agent ([`RunningAgent::start_on`]); see
//! [`bed`] for the topology and [`capture`] to look at the frames between nodes.

pub mod abuse_client;
pub mod agent;
pub mod apiserver_bridge;
pub mod apiserver_relay;
pub mod bed;
pub mod bed_node;
pub mod binaries;
pub mod capture;
pub mod cgroup;
pub mod client;
pub mod cluster;
pub mod cluster_net;
pub mod container;
pub mod conformance;
pub mod echo_client;
pub mod echo_server;
pub mod grpc_wire;
pub mod join;
pub mod kubectl;
pub mod load_output;
pub mod long_stream;
pub mod manifests;
pub mod mesh_ca;
pub mod mesh_certs;
pub mod tls_probe;
pub mod netns;
pub mod pod;
pub mod resolve;

pub use agent::{AgentMode, AgentOptions, RunningAgent};
pub use apiserver_bridge::BedApiServer;
pub use bed::{BedOptions, TestBed};
pub use bed_node::BedNode;
pub use capture::{Capture, Captured, Wire};
pub use cgroup::CgroupLayout;
pub use kubectl::Kubectl;
pub use mesh_ca::MeshCa;
pub use container::AgentPodSpec;
pub use client::{ClientOutput, ClientRequest, ClientTarget, RequestResult};
pub use pod::{Pod, PodSpec};
