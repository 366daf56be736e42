//! The data path: accepting redirected connections, recovering their origin,
//! detecting the protocol, and proxying HTTP (routed by GAMMA rules) or TCP
//! (passthrough).

mod access_log;
pub(crate) mod body;
mod caller;
pub(crate) mod client_hello;
mod connection;
mod cors_reply;
mod deadline;
mod detect;
mod drain;
mod egress;
mod headers;
mod http;
mod http1_park;
mod http1_pool;
mod http2_pool;
pub(crate) mod idle;
mod in_flight;
mod l4_route;
mod limits;
mod local_authz;
mod local_reply;
mod mesh_path;
mod mirror_body;
mod mirrors;
pub(crate) mod request_framing;
mod retry;
mod tcp;
mod upstream;
mod upstream_stream;
mod wake_gate;

pub use access_log::{AccessLog, InvalidSample};
pub use caller::{Caller, CallerKey};
pub use detect::Detected;
pub use mesh_path::MeshPath;
pub use upstream_stream::UpstreamStream;
pub use retry::{BudgetLimits, REPLAY_BODY_LIMIT};
pub use limits::{ConnectionTimeouts, Http2Limits, MirrorLimits};
pub use egress::{node_socket, NodeSockets, SocketFactory, SocketFuture, Source};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConfigHandle;
use crate::hbone::{HboneMetrics, HboneOptions, HbonePool, Inbound, InboundGate, InboundPolicy};
use crate::tls::MeshTls;
use crate::identity::OriginResolver;
use crate::limits::{Budgets, Limit, LimitOptions};
use crate::metrics::ProxyMetrics;
use crate::rate_limited_log::KeyedRateLimitedLog;

/// Tunables of the data path.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// How long to wait for a client's first bytes on a port without appProtocol before
    /// treating the connection as opaque TCP (server-first protocols send nothing).
    pub detect_timeout: Duration,
    /// Timeout for connecting to a backend endpoint.
    pub connect_timeout: Duration,
    /// Largest request head accepted (bigger gets 431).
    pub max_header_bytes: usize,
    /// Idle upstream HTTP/1.1 connections kept per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Idle upstream connections are closed after this long (a periodic reaper closes
    /// them even when their endpoint is not used again).
    pub idle_timeout: Duration,
    /// Downstream and passthrough timeouts.
    pub timeouts: ConnectionTimeouts,
    /// Downstream HTTP/2 limits.
    pub http2: Http2Limits,
    /// RequestMirror bounds.
    pub mirrors: MirrorLimits,
    /// Caps on connections and in-flight requests, per caller pod and node-wide.
    pub limits: LimitOptions,
    /// HBONE: port, trust domain, handshake timeout, streams per connection.
    pub hbone: HboneOptions,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(5),
            max_header_bytes: 64 * 1024,
            max_idle_per_endpoint: 64,
            idle_timeout: Duration::from_secs(90),
            timeouts: ConnectionTimeouts::default(),
            http2: Http2Limits::default(),
            mirrors: MirrorLimits::default(),
            limits: LimitOptions::default(),
            hbone: HboneOptions::default(),
        }
    }
}

/// One per-node proxy: shared by every listener and connection.
pub struct Proxy {
    config: ConfigHandle,
    resolver: Arc<dyn OriginResolver>,
    options: ProxyOptions,
    upstream: Arc<upstream::Upstreams>,
    mirrors: mirrors::MirrorSlots,
    access_log: Arc<AccessLog>,
    /// None when metrics are switched off (`--no-metrics`).
    metrics: Option<Arc<ProxyMetrics>>,
    budgets: Budgets,
    /// GEP-3388 retry budgets, per backend.
    retry_budgets: retry::RetryBudgets,
    /// One warning per cap and caller namespace per 10 s.
    limit_warnings: KeyedRateLimitedLog<(Limit, Arc<str>)>,
    /// The mesh side (None: no mesh TLS; mesh pods are then unreachable, never
    /// reached in plaintext).
    mesh: Option<ProxyMesh>,
}

/// What a proxy needs to take part in the mesh.
#[derive(Clone)]
pub struct MeshSetup {
    /// The node's certificates (the agent's certificate store).
    pub tls: Arc<dyn MeshTls>,
    /// An inbound authorization hook, consulted after the AuthorizationPolicies of
    /// `ProxyConfig::authorization` (`hbone::AllowAll`: nothing more).
    pub policy: Arc<dyn InboundPolicy>,
    /// HBONE metrics (`HboneMetrics::register`, or a default unregistered one).
    pub metrics: Arc<HboneMetrics>,
}

struct ProxyMesh {
    tls: Arc<dyn MeshTls>,
    gate: Arc<InboundGate>,
    pool: Arc<HbonePool>,
}

/// How often a refusal by one cap for one caller namespace is logged at most.
const LIMIT_WARNING_PERIOD: Duration = Duration::from_secs(10);

impl Proxy {
    pub fn new(config: ConfigHandle, resolver: Arc<dyn OriginResolver>, options: ProxyOptions) -> Arc<Self> {
        Self::with_metrics(config, resolver, options, None)
    }

    /// A proxy that records its traffic in `metrics` (None: no metrics at all).
    pub fn with_metrics(
        config: ConfigHandle,
        resolver: Arc<dyn OriginResolver>,
        options: ProxyOptions,
        metrics: Option<Arc<ProxyMetrics>>,
    ) -> Arc<Self> {
        Self::with_sockets(config, resolver, options, metrics, Arc::new(NodeSockets))
    }

    /// A proxy whose upstream sockets `sockets` makes (see [`SocketFactory`]).
    pub fn with_sockets(
        config: ConfigHandle,
        resolver: Arc<dyn OriginResolver>,
        options: ProxyOptions,
        metrics: Option<Arc<ProxyMetrics>>,
        sockets: Arc<dyn SocketFactory>,
    ) -> Arc<Self> {
        Self::build(config, resolver, options, metrics, sockets, None)
    }

    /// A proxy in the mesh: mesh pods (`ProxyConfig::mesh`) on other nodes are reached
    /// through HBONE tunnels with the caller's identity, those on this node through
    /// the same inbound gate as tunnelled streams (without TLS). Serve the inbound side
    /// with [`Proxy::hbone_inbound`].
    pub fn with_mesh(
        config: ConfigHandle,
        resolver: Arc<dyn OriginResolver>,
        options: ProxyOptions,
        metrics: Option<Arc<ProxyMetrics>>,
        sockets: Arc<dyn SocketFactory>,
        mesh: MeshSetup,
    ) -> Arc<Self> {
        Self::build(config, resolver, options, metrics, sockets, Some(mesh))
    }

    fn build(
        config: ConfigHandle,
        resolver: Arc<dyn OriginResolver>,
        options: ProxyOptions,
        metrics: Option<Arc<ProxyMetrics>>,
        sockets: Arc<dyn SocketFactory>,
        mesh: Option<MeshSetup>,
    ) -> Arc<Self> {
        let mesh = mesh.map(|setup| ProxyMesh {
            gate: InboundGate::new(config.clone(), setup.policy, setup.metrics.clone()),
            pool: HbonePool::new(setup.tls.clone(), sockets.clone(), options.hbone.pool(options.connect_timeout), setup.metrics),
            tls: setup.tls,
        });
        let access_log = Arc::<AccessLog>::default();
        let mesh_upstreams = mesh.as_ref().map(|m| upstream::MeshUpstreams {
            pool: m.pool.clone(),
            gate: m.gate.clone(),
            access_log: access_log.clone(),
        });
        let connects = metrics.as_ref().map(|m| m.upstream_connects()).unwrap_or_default();
        let upstream = Arc::new(upstream::Upstreams::new(&options, sockets, config.clone(), mesh_upstreams, connects));
        upstream::Upstreams::start_reaper(&upstream);
        let mirrors = mirrors::MirrorSlots::new(&options.mirrors);
        let budgets = Budgets::new(options.limits);
        let limit_warnings = KeyedRateLimitedLog::new(LIMIT_WARNING_PERIOD);
        Arc::new(Self {
            config,
            resolver,
            options,
            upstream,
            mirrors,
            access_log,
            metrics,
            budgets,
            retry_budgets: retry::RetryBudgets::new(BudgetLimits::default()),
            limit_warnings,
            mesh,
        })
    }

    /// The inbound HBONE server of this node (None without mesh TLS): it shares the
    /// proxy's configuration, gate and metrics. Serve it on the HBONE port.
    pub fn hbone_inbound(&self) -> Option<Arc<Inbound>> {
        let mesh = self.mesh.as_ref()?;
        let options = self.options.hbone.inbound(self.options.connect_timeout, self.options.timeouts.stream_idle);
        Some(Inbound::with_access_log(mesh.tls.clone(), mesh.gate.clone(), options, self.access_log.clone()))
    }

    /// The inbound gate (None without mesh TLS): its enforcer and open streams.
    pub fn inbound_gate(&self) -> Option<&Arc<InboundGate>> {
        self.mesh.as_ref().map(|m| &m.gate)
    }

    /// The outbound tunnel pool (None without mesh TLS).
    pub fn hbone_pool(&self) -> Option<&Arc<HbonePool>> {
        self.mesh.as_ref().map(|m| &m.pool)
    }

    /// The metrics this proxy records (None when switched off).
    pub fn metrics(&self) -> Option<&Arc<ProxyMetrics>> {
        self.metrics.as_ref()
    }

    /// Mirror requests dropped so far because the node-wide cap was reached.
    pub fn mirrors_dropped(&self) -> u64 {
        self.mirrors.dropped()
    }

    pub fn config(&self) -> &ConfigHandle {
        &self.config
    }

    /// The connection and request budgets (per caller and node-wide).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Counts a refusal by `limit` of a caller in `caller_namespace` ("" when unknown)
    /// and logs it at a bounded rate.
    fn refused(&self, limit: Limit, caller_namespace: &Arc<str>, caller_pod: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.limit_rejected(limit.label(), caller_namespace);
        }
        if let Some(suppressed) = self.limit_warnings.check(&(limit, caller_namespace.clone())) {
            tracing::warn!(
                limit = limit.label(),
                caller_namespace = &**caller_namespace,
                caller_pod,
                suppressed,
                "refused: over the limit (further refusals for this limit and namespace are logged at most every 10 s)"
            );
        }
    }

    /// Runtime switch for access logs.
    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// Accepts connections until `shutdown` fires, then waits for open connections to
    /// finish, at most `drain` long.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken, drain: Duration) {
        let tasks = TaskTracker::new();
        let local = listener.local_addr().ok();
        tracing::info!(listen = ?local, "proxy listening");
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let proxy = self.clone();
                        let token = shutdown.child_token();
                        tasks.spawn(async move { connection::handle(proxy, stream, peer, token).await });
                    }
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        tasks.close();
        if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
            tracing::warn!(open = tasks.len(), "drain period over; closing remaining connections");
        }
    }
}

/// Binds a listening socket suitable for the proxy (SO_REUSEADDR, large backlog; IPv6
/// sockets are v6-only so that a v4 and a v6 listener can share a port).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(bind_shared(addr, 4096)?)
}

/// Binds a non-blocking listening socket with SO_REUSEPORT (and SO_REUSEADDR; IPv6
/// sockets v6-only) and `backlog`.
///
/// SO_REUSEPORT lets a second agent (a rolling upgrade's successor, same user) bind the
/// same address while the first still serves: the kernel spreads new connections over
/// both listeners, and when one closes, `net.ipv4.tcp_migrate_req=1` moves its queued
/// connections to the other instead of resetting them.
pub fn bind_shared(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
