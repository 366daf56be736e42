//! The configuration snapshot the proxy serves from, and the handle that swaps it.
//!
//! A snapshot is immutable. The agent builds a whole new one on every change and
//! publishes it with [`ConfigHandle::store`]; each new request (also on connections that
//! are already open) reads the current snapshot, in-flight requests keep the one they
//! started with.

mod dump;
mod mesh;
mod service;
mod route_set;

pub use mesh::MeshDestination;
pub use route_set::{Decision, RouteSet, ScopeRoutes};
pub use service::{AppProtocol, EndpointSet, ServicePort, ServiceRef};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::identity::{CgroupId, Workload};

/// Service ports by cluster IP and port.
///
/// Hashed with the standard library's SipHash, which resists hash flooding. A faster
/// hasher (foldhash) was measured in its place (session 7, `route_lookup` example):
/// no difference within the noise, cold or hot, since the lookup's time is its cache
/// misses; SipHash of a socket address is a few nanoseconds.
pub type ServiceMap = HashMap<SocketAddr, Arc<ServicePort>>;

/// One immutable view of everything the proxy needs.
#[derive(Debug, Default)]
pub struct ProxyConfig {
    /// Service ports by cluster IP and port (IPv4 addresses as plain IPv4).
    pub services: ServiceMap,
    /// Enrolled workloads by pod cgroup id.
    pub workloads: HashMap<CgroupId, Arc<Workload>>,
    /// Mesh pods by pod IP (IPv4 as plain IPv4): connections to them are tunnelled
    /// (HBONE) with the caller's identity. Endpoints not in here stay plaintext.
    pub mesh: HashMap<IpAddr, MeshDestination>,
    /// AuthorizationPolicies by the pod of this node they select (enforced by the
    /// inbound side). A pod not in here is open.
    pub authorization: Arc<crate::authz::Authorization>,
    /// Increases with every published snapshot.
    pub version: u64,
}

impl ProxyConfig {
    pub fn service(&self, dialled: SocketAddr) -> Option<&Arc<ServicePort>> {
        self.services.get(&crate::identity::canonical(dialled))
    }

    pub fn workload(&self, cgroup: CgroupId) -> Option<&Arc<Workload>> {
        self.workloads.get(&cgroup)
    }

    /// The mesh pod at `endpoint`'s address, if it is one.
    pub fn mesh_destination(&self, endpoint: SocketAddr) -> Option<&MeshDestination> {
        self.mesh.get(&crate::identity::canonical(endpoint).ip())
    }
}

/// Shared, lock-free access to the current [`ProxyConfig`], and a signal on every
/// publication (for what must react to a change, e.g. closing connections a new
/// authorization policy refuses).
#[derive(Clone, Debug)]
pub struct ConfigHandle {
    current: Arc<ArcSwap<ProxyConfig>>,
    /// Counts publications.
    published: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ConfigHandle {
    fn default() -> Self {
        Self::new(ProxyConfig::default())
    }
}

impl ConfigHandle {
    pub fn new(initial: ProxyConfig) -> Self {
        Self { current: Arc::new(ArcSwap::from_pointee(initial)), published: Arc::new(tokio::sync::watch::Sender::new(0)) }
    }

    /// The current snapshot, owned (a reference count on the shared snapshot).
    pub fn load(&self) -> Arc<ProxyConfig> {
        self.current.load_full()
    }

    /// The current snapshot, borrowed: the data path's per-request read. Usually no
    /// reference count is touched (arc-swap's per-thread slots; past those it falls
    /// back to one). Keep it for a request, not for a connection.
    pub fn current(&self) -> arc_swap::Guard<Arc<ProxyConfig>> {
        self.current.load()
    }

    /// Publishes a new snapshot; new requests see it at once.
    pub fn store(&self, config: ProxyConfig) {
        self.current.store(Arc::new(config));
        self.published.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Changes (marked seen at subscription): `changed().await` returns after the
    /// next [`ConfigHandle::store`].
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }
}
