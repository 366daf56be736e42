//! AuthorizationPolicy fixtures for the enforcement tests: compiled policies, and a
//! node proxy (data path and HBONE inbound on one loopback address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::authz::{Action, Authorization, HttpConditions, NamePattern, PathMatch, Policy, PolicyName, Rule, Source, WorkloadPolicies};
use ambit_proxy_core::config::{ConfigHandle, MeshDestination, ProxyConfig};
use ambit_proxy_core::hbone::{AllowAll, HboneMetrics};
use ambit_proxy_core::identity::SpiffeId;
use ambit_proxy_core::metrics::DecisionLabels;
use ambit_proxy_core::proxy::{bind, MeshSetup, NodeSockets, Proxy, ProxyOptions};
use tokio_util::sync::CancellationToken;

use super::mesh_pki::TestMeshTls;
use super::FixedOrigin;

pub fn name(policy: &str) -> PolicyName {
    PolicyName { namespace: "server-ns".into(), name: policy.into() }
}

pub fn policy(policy: &str, action: Action, rules: Vec<Rule>) -> Arc<Policy> {
    Arc::new(Policy { name: name(policy), action, rules })
}

/// A rule naming sources, for any port, L4 only.
pub fn from(sources: Vec<Source>) -> Rule {
    Rule { sources: Some(sources), ports: vec![], http: None }
}

pub fn service_account(namespace: &str, name: &str) -> Source {
    Source::ServiceAccount { namespace: NamePattern::Exact(namespace.into()), name: NamePattern::Exact(name.into()) }
}

pub fn namespace(namespace: &str) -> Source {
    Source::Namespace(NamePattern::Exact(namespace.into()))
}

/// A rule allowing `source` to `GET` paths under `/api`.
pub fn get_api(source: Source) -> Rule {
    let http = HttpConditions { methods: vec!["GET".into()], paths: vec![PathMatch::Prefix("/api".into())] };
    Rule { sources: Some(vec![source]), ports: vec![], http: Some(http) }
}

/// The policies of one pod.
pub fn authorization(pod: SocketAddr, policies: Vec<Arc<Policy>>) -> Arc<Authorization> {
    Arc::new(Authorization { by_pod: HashMap::from([(pod.ip(), Arc::new(WorkloadPolicies::new(policies)))]) })
}

/// `pod` as a mesh pod of `identity` on the node whose HBONE address is `hbone`.
pub fn with_pod(mut config: ProxyConfig, pod: SocketAddr, identity: &SpiffeId, hbone: SocketAddr, on_this_node: bool) -> ProxyConfig {
    config.mesh.insert(pod.ip(), MeshDestination { node: hbone, identity: identity.clone(), on_this_node, guarded: false });
    config
}

pub fn decision(policy: &str, rule: &str, decision: &'static str, reason: &'static str, level: &'static str) -> DecisionLabels {
    let policy = if policy.is_empty() { String::new() } else { name(policy).to_string() };
    DecisionLabels { policy: policy.into(), rule: rule.into(), decision, reason, level }
}

pub struct Node {
    pub proxy: Arc<Proxy>,
    /// The data path listener.
    pub addr: SocketAddr,
    /// The inbound HBONE server.
    pub hbone: SocketAddr,
    pub metrics: Arc<HboneMetrics>,
    pub config: ConfigHandle,
    shutdown: CancellationToken,
}

impl Node {
    /// Inbound streams open on this node now.
    pub fn proxy_open_streams(&self) -> usize {
        self.proxy.inbound_gate().map_or(0, |gate| gate.open_streams().len())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A node proxy on `ip` with the certificates of `tls`.
pub async fn node(ip: &str, tls: Arc<TestMeshTls>) -> Node {
    let config = ConfigHandle::default();
    let metrics = Arc::new(HboneMetrics::default());
    let setup = MeshSetup { tls, policy: Arc::new(AllowAll), metrics: metrics.clone() };
    let options = ProxyOptions { detect_timeout: Duration::from_millis(100), ..ProxyOptions::default() };
    let proxy = Proxy::with_mesh(config.clone(), Arc::new(FixedOrigin), options, None, Arc::new(NodeSockets), setup);
    let shutdown = CancellationToken::new();
    let listener = bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy.clone().serve(listener, shutdown.clone(), Duration::from_secs(1)));
    let hbone_listener = bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let hbone = hbone_listener.local_addr().unwrap();
    tokio::spawn(proxy.hbone_inbound().unwrap().serve(hbone_listener, shutdown.clone()));
    Node { proxy, addr, hbone, metrics, config, shutdown }
}
