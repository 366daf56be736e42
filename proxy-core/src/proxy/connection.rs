//! One accepted connection: origin, caller, protocol, then HTTP or TCP handling.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::detect::{self, Detected};
use super::egress::Source;
use super::request_framing::RequestFramingGuard;
use super::{http, l4_route, tcp, Proxy};
use crate::config::{AppProtocol, ProxyConfig};
use crate::identity::{Origin, Workload};
use crate::metrics::TcpLabels;

/// What is known about a connection once it is accepted.
#[derive(Debug)]
pub struct ConnContext {
    pub origin: Origin,
    pub peer: SocketAddr,
    /// The caller, as known when the connection was accepted.
    pub caller: Option<Arc<Workload>>,
    /// Where this connection's upstream connections come from (the caller's netns).
    pub source: Source,
    /// The dialled Service port, `namespace/name:port` (also its metrics label).
    service: Arc<str>,
}

impl ConnContext {
    /// The caller as of `config` (falls back to the one known at accept time).
    pub fn caller_in(&self, config: &ProxyConfig) -> Option<Arc<Workload>> {
        config.workload(self.origin.pod_cgroup).cloned().or_else(|| self.caller.clone())
    }

    pub fn caller_namespace(&self) -> Option<Arc<str>> {
        self.caller.as_ref().map(|w| w.namespace.clone())
    }

    pub fn caller_name(&self) -> Option<Arc<str>> {
        self.caller.as_ref().map(|w| w.name.clone())
    }

    pub fn service_label(&self) -> &str {
        &self.service
    }

    /// The dialled Service port as a shared metrics label.
    pub fn service_arc(&self) -> &Arc<str> {
        &self.service
    }

    /// The TCP metrics labels of this connection.
    pub fn tcp_labels(&self) -> TcpLabels {
        let (namespace, workload) = match &self.caller {
            Some(w) => (w.namespace.clone(), w.workload.clone()),
            None => (Arc::from(""), Arc::from("")),
        };
        TcpLabels { caller_namespace: namespace, caller_workload: workload, service: self.service.clone() }
    }
}

pub(super) async fn handle(proxy: Arc<Proxy>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::debug!(%error, "accepted socket has no local address");
            return;
        }
    };
    let origin = match proxy.resolver.resolve(peer, local) {
        Ok(origin) => origin,
        Err(error) => {
            // Not a redirected connection (or its record is gone): never guess.
            tracing::warn!(%error, "rejecting connection without a kernel redirect record");
            tcp::reset(stream);
            return;
        }
    };
    let config = proxy.config.load();
    let Some(service) = config.service(origin.destination).cloned() else {
        tracing::warn!(dialled = %origin.destination, "dialled address is not a known Service port; resetting");
        tcp::reset(stream);
        return;
    };
    let caller = config.workload(origin.pod_cgroup).cloned();
    let ctx = Arc::new(ConnContext {
        origin,
        peer,
        caller,
        source: proxy.upstream.source(origin.pod_cgroup),
        service: format!("{}:{}", service.service, service.port).into(),
    });
    if proxy.access_log.should_log() {
        tracing::info!(
            target: "ambit::access",
            kind = "connection",
            caller_namespace = ctx.caller_namespace().as_deref().unwrap_or(""),
            caller_pod = ctx.caller_name().as_deref().unwrap_or(""),
            caller_workload = ctx.caller.as_ref().map(|w| &*w.workload).unwrap_or(""),
            caller_cgroup = origin.pod_cgroup.0,
            client = %peer,
            service = %ctx.service,
            dialled = %origin.destination,
        );
    }
    drop(config);

    // TLSRoutes/TCPRoutes for this caller's scope: routed per connection, whatever the
    // port's protocol (also `appProtocol: http` with only L4 routes attached).
    let caller_namespace = ctx.caller_namespace();
    if let Some(l4) = service.routes.l4_for_caller(caller_namespace.as_deref().unwrap_or("")).cloned() {
        l4_route::serve(&proxy, &ctx, stream, l4).await;
        return;
    }

    let http = match service.protocol {
        AppProtocol::Http | AppProtocol::H2c => true,
        AppProtocol::Tcp => false,
        AppProtocol::Detect => match detect::detect(&stream, proxy.options.detect_timeout).await {
            Ok(Detected::Http1 | Detected::Http2) => true,
            Ok(Detected::Opaque) => false,
            Err(error) => {
                tracing::debug!(%error, "connection failed during protocol detection");
                return;
            }
        },
    };
    if http {
        serve_http(proxy, ctx, stream, shutdown).await;
    } else {
        let endpoint = service.endpoints.pick();
        tcp::passthrough(&proxy, &ctx, stream, endpoint).await;
    }
}

async fn serve_http(proxy: Arc<Proxy>, ctx: Arc<ConnContext>, stream: TcpStream, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(proxy.options.max_header_bytes.max(8192)).keep_alive(true);
    builder.http2().max_header_list_size(proxy.options.max_header_bytes as u32);
    let service = hyper::service::service_fn({
        let proxy = proxy.clone();
        move |request| {
            let proxy = proxy.clone();
            let ctx = ctx.clone();
            async move { Ok::<_, std::convert::Infallible>(http::handle(proxy, ctx, request).await) }
        }
    });
    // HTTP/1 requests with ambiguous framing get 400 before hyper sees them.
    let io = RequestFramingGuard::new(stream, proxy.options.max_header_bytes);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
