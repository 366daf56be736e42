//! The data path: accepting redirected connections, recovering their origin,
//! detecting the protocol, and proxying HTTP (routed by GAMMA rules) or TCP
//! (passthrough).

mod access_log;
mod body;
pub(crate) mod client_hello;
mod connection;
mod detect;
mod headers;
mod http;
mod l4_route;
mod local_reply;
mod mirror_body;
pub(crate) mod request_framing;
mod tcp;
mod upstream;

pub use access_log::{AccessLog, InvalidSample};
pub use detect::Detected;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ConfigHandle;
use crate::identity::OriginResolver;
use crate::metrics::ProxyMetrics;

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
    /// Idle upstream connections are closed after this long.
    pub idle_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            detect_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(5),
            max_header_bytes: 64 * 1024,
            max_idle_per_endpoint: 64,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// One per-node proxy: shared by every listener and connection.
pub struct Proxy {
    config: ConfigHandle,
    resolver: Arc<dyn OriginResolver>,
    options: ProxyOptions,
    upstream: Arc<upstream::Upstreams>,
    access_log: AccessLog,
    /// None when metrics are switched off (`--no-metrics`).
    metrics: Option<Arc<ProxyMetrics>>,
}

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
        let upstream = Arc::new(upstream::Upstreams::new(&options));
        Arc::new(Self { config, resolver, options, upstream, access_log: AccessLog::default(), metrics })
    }

    /// The metrics this proxy records (None when switched off).
    pub fn metrics(&self) -> Option<&Arc<ProxyMetrics>> {
        self.metrics.as_ref()
    }

    pub fn config(&self) -> &ConfigHandle {
        &self.config
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
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}
